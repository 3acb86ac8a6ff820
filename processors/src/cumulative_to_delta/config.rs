use regex::Regex;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Duration};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect, decode_section, problem};

const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "include.regexp",
        "a cache of regex matches in the Collector; sluice matches without one",
    ),
    NoEffect::new(
        "exclude.regexp",
        "a cache of regex matches in the Collector; sluice matches without one",
    ),
];

/// `processors: cumulativetodelta:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CumulativeToDeltaConfig {
    /// Forget a stream not seen for this long (default 0: never, bounded by sluice's stream cap).
    #[serde(default)]
    pub max_staleness: Duration,
    /// The first point of a stream: `auto` (default: sent only when its start time is set,
    /// after sluice started and before its timestamp), `keep` (always sent), `drop` (kept
    /// only as the base of the next delta).
    #[serde(default)]
    pub initial_value: InitialValue,
    /// Convert only these metrics (default: all).
    #[serde(default)]
    pub include: MatchMetrics,
    /// Never convert these.
    #[serde(default)]
    pub exclude: MatchMetrics,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialValue {
    #[default]
    Auto,
    Keep,
    Drop,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchMetrics {
    /// Metric names (exact, or regexes with `match_type: regexp`).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// `strict` or `regexp`; needed with `metrics`.
    #[serde(default)]
    pub match_type: Option<MatchType>,
    /// `sum`, `histogram`, `exponentialhistogram`.
    #[serde(default)]
    pub metric_types: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    Strict,
    Regexp,
}

/// A checked include or exclude list.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    names: Vec<String>,
    regexes: Vec<Regex>,
    types: Vec<String>,
}

impl Matcher {
    /// Whether the list names this metric (by name and type).
    pub fn matches(&self, name: &str, kind: &str) -> bool {
        let name_ok = (self.names.is_empty() && self.regexes.is_empty())
            || self.names.iter().any(|n| n == name)
            || self.regexes.iter().any(|r| r.is_match(name));
        let type_ok = self.types.is_empty() || self.types.iter().any(|t| t == kind);
        name_ok && type_ok
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.regexes.is_empty() && self.types.is_empty()
    }
}

pub struct Settings {
    pub max_staleness: std::time::Duration,
    pub initial_value: InitialValue,
    pub include: Matcher,
    pub exclude: Matcher,
}

const TYPES: [&str; 3] = ["sum", "histogram", "exponentialhistogram"];

pub fn decode(
    config: &ComponentConfig,
    warnings: &ConfigWarnings,
) -> Result<Settings, ConfigErrors> {
    let cfg: CumulativeToDeltaConfig = decode_section(config, NO_EFFECT, warnings)?;
    let mut errors = Vec::new();
    let mut build = |key: &str, m: &MatchMetrics| {
        let mut out = Matcher::default();
        if !m.metrics.is_empty() && m.match_type.is_none() {
            errors.push(problem(
                config,
                &format!("{key}.match_type"),
                "match_type must be set if metrics are supplied",
            ));
        }
        if m.metrics.is_empty() && m.match_type.is_some() {
            errors.push(problem(
                config,
                &format!("{key}.metrics"),
                "metrics must be supplied if match_type is set",
            ));
        }
        for t in &m.metric_types {
            let t = t.to_ascii_lowercase();
            if !TYPES.contains(&t.as_str()) {
                errors.push(problem(
                    config,
                    &format!("{key}.metric_types"),
                    format!(
                        "unsupported metric type `{t}`; use sum, histogram or exponentialhistogram"
                    ),
                ));
            }
            out.types.push(t);
        }
        match m.match_type {
            Some(MatchType::Regexp) => {
                for r in &m.metrics {
                    match Regex::new(r) {
                        Ok(re) => out.regexes.push(re),
                        Err(e) => errors.push(problem(
                            config,
                            &format!("{key}.metrics"),
                            format!("invalid regex `{r}`: {e}"),
                        )),
                    }
                }
            }
            _ => out.names = m.metrics.clone(),
        }
        out
    };
    let include = build("include", &cfg.include);
    let exclude = build("exclude", &cfg.exclude);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Settings {
        max_staleness: cfg.max_staleness.0,
        initial_value: cfg.initial_value,
        include,
        exclude,
    })
}
