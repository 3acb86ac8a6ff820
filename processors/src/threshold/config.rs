//! `connectors: threshold:` and compiling it into checked rules.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use regex::Regex;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, Node};
use sluice_pipeline::decode_config;

use super::glob::Glob;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdConfig {
    pub rules: Vec<RuleConfig>,
    /// Series tracked at once, over all rules; new series beyond it are counted and ignored.
    pub max_series: usize,
    /// How often absence and `repeat_interval` are checked.
    pub check_interval: Duration,
    /// A series silent this long is forgotten (its memory freed, a firing alert resolved).
    pub forget_after: Duration,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            rules: Vec::new(),
            max_series: 10_000,
            check_interval: Duration::from_secs(10),
            forget_after: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    pub name: Option<String>,
    pub metric: Option<String>,
    #[serde(rename = "match")]
    pub matching: MatchConfig,
    pub group_by: Option<Vec<String>>,
    pub value: Option<String>,
    pub above: Option<Levels>,
    pub below: Option<Levels>,
    #[serde(rename = "for")]
    pub hold: Duration,
    pub clear: Option<f64>,
    pub repeat_interval: Duration,
    pub absent_for: Option<Duration>,
    pub absent_severity: Option<Severity>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    pub resource: BTreeMap<String, MatchValue>,
    pub attributes: BTreeMap<String, MatchValue>,
}

/// A plain value means equality with the attribute's value as text; `{regex: ...}` a regular
/// expression that must match the whole text.
#[derive(Clone, Debug)]
pub enum MatchValue {
    Regex(String),
    Equals(String),
}

impl<'de> Deserialize<'de> for MatchValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MatchValueVisitor)
    }
}

/// Hand-written rather than `untagged`, so a typo names the key instead of "no variant matched".
struct MatchValueVisitor;

impl<'de> serde::de::Visitor<'de> for MatchValueVisitor {
    type Value = MatchValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value to compare with, or {regex: \"...\"}")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MatchValue, E> {
        Ok(MatchValue::Equals(v.to_string()))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<MatchValue, E> {
        Ok(MatchValue::Equals(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MatchValue, E> {
        Ok(MatchValue::Equals(v.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MatchValue, E> {
        Ok(MatchValue::Equals(v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MatchValue, E> {
        Ok(MatchValue::Equals(v.to_string()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MatchValue, A::Error> {
        let mut regex = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "regex" {
                return Err(serde::de::Error::unknown_field(&key, &["regex"]));
            }
            regex = Some(map.next_value::<String>()?);
        }
        regex
            .map(MatchValue::Regex)
            .ok_or_else(|| serde::de::Error::missing_field("regex"))
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Levels {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What number a data point turns into.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueKind {
    /// Gauges as they are, monotonic sums and delta sums as a rate per second, non-monotonic
    /// cumulative sums (levels such as memory in use) as they are, histograms their mean.
    Auto,
    /// The point's own value, for gauges and sums.
    Last,
    /// Change per second, for sums and gauges.
    Rate,
    /// Histogram sum / count.
    Mean,
    /// Histogram quantile in (0, 1), estimated from the buckets.
    Quantile(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }

    /// True when `v` is strictly past `level` on the alerting side.
    pub fn breaches(self, v: f64, level: f64) -> bool {
        match self {
            Direction::Above => v > level,
            Direction::Below => v < level,
        }
    }

    pub fn op(self) -> &'static str {
        match self {
            Direction::Above => ">",
            Direction::Below => "<",
        }
    }
}

pub enum Matcher {
    Equals(String),
    Regex(Regex),
}

impl Matcher {
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Equals(v) => v == text,
            Matcher::Regex(r) => r.is_match(text),
        }
    }
}

/// The threshold part of a rule.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub direction: Direction,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// The alert resolves once the value is strictly past this, away from the alerting side.
    pub clear: f64,
}

impl Limits {
    /// The highest severity `v` breaches.
    pub fn level(&self, v: f64) -> Option<Severity> {
        if self.critical.is_some_and(|c| self.direction.breaches(v, c)) {
            Some(Severity::Critical)
        } else if self.warning.is_some_and(|w| self.direction.breaches(v, w)) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    pub fn threshold(&self, s: Severity) -> f64 {
        match s {
            Severity::Critical => self.critical.or(self.warning),
            Severity::Warning => self.warning.or(self.critical),
        }
        .unwrap_or(self.clear)
    }

    pub fn clears(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v < self.clear,
            Direction::Below => v > self.clear,
        }
    }
}

pub struct Rule {
    pub name: String,
    pub metric: Glob,
    pub resource: Vec<(String, Matcher)>,
    pub attributes: Vec<(String, Matcher)>,
    pub group_by: Option<Vec<String>>,
    pub value: ValueKind,
    pub limits: Option<Limits>,
    pub hold: StdDuration,
    pub repeat_interval: StdDuration,
    pub absent_for: Option<StdDuration>,
    pub absent_severity: Severity,
}

pub struct Compiled {
    pub rules: Vec<Rule>,
    pub max_series: usize,
    pub check_interval: StdDuration,
    pub forget_after: StdDuration,
}

fn parse_value_kind(text: &str) -> Option<ValueKind> {
    match text {
        "auto" | "value" => Some(ValueKind::Auto),
        "last" => Some(ValueKind::Last),
        "rate" => Some(ValueKind::Rate),
        "mean" => Some(ValueKind::Mean),
        _ => {
            let p: f64 = text.strip_prefix('p')?.parse().ok()?;
            (p > 0.0 && p < 100.0).then_some(ValueKind::Quantile(p / 100.0))
        }
    }
}

/// Collects diagnostics positioned at the key they are about.
struct Report<'a> {
    config: &'a ComponentConfig,
    errors: ConfigErrors,
}

impl Report<'_> {
    fn node(&self, rule: usize, keys: &[&str]) -> Option<&Node> {
        let mut node = self
            .config
            .node
            .get_path(["rules"])
            .and_then(Node::as_seq)?
            .get(rule)?;
        for k in keys {
            node = node.get_path([*k])?;
        }
        Some(node)
    }

    fn error(&mut self, rule: usize, keys: &[&str], message: impl Into<String>) {
        // Point at the deepest key that is written, so a missing key names its rule.
        let mut pos = None;
        for depth in (0..=keys.len()).rev() {
            if let Some(n) = self.node(rule, &keys[..depth]) {
                pos = Some(n.pos.clone());
                break;
            }
        }
        let mut path = format!("{}.rules[{rule}]", self.config.path);
        for k in keys {
            path.push('.');
            path.push_str(k);
        }
        self.errors.push(Diagnostic::new(
            pos.or_else(|| Some(self.config.pos.clone())),
            path,
            message,
        ));
    }
}

fn compile_matchers(
    report: &mut Report<'_>,
    rule: usize,
    section: &str,
    map: &BTreeMap<String, MatchValue>,
) -> Vec<(String, Matcher)> {
    let mut out = Vec::new();
    for (key, value) in map {
        let matcher = match value {
            MatchValue::Regex(regex) => match Regex::new(&format!("^(?:{regex})$")) {
                Ok(r) => Matcher::Regex(r),
                Err(e) => {
                    report.error(
                        rule,
                        &["match", section, key, "regex"],
                        format!("invalid regex: {e}"),
                    );
                    continue;
                }
            },
            MatchValue::Equals(v) => Matcher::Equals(v.clone()),
        };
        out.push((key.clone(), matcher));
    }
    out
}

fn compile_limits(report: &mut Report<'_>, i: usize, r: &RuleConfig) -> Option<Limits> {
    let (direction, levels, key) = match (r.above, r.below) {
        (Some(_), Some(_)) => {
            report.error(
                i,
                &["below"],
                "set either `above` or `below`, not both (write two rules)",
            );
            return None;
        }
        (Some(l), None) => (Direction::Above, l, "above"),
        (None, Some(l)) => (Direction::Below, l, "below"),
        (None, None) => {
            if r.absent_for.is_none() {
                report.error(
                    i,
                    &[],
                    "a rule needs `above` or `below` (with `warning` and/or `critical`), or `absent_for`",
                );
            }
            if r.clear.is_some() {
                report.error(i, &["clear"], "`clear` needs `above` or `below`");
            }
            return None;
        }
    };
    let mut ok = true;
    for (name, v) in [("warning", levels.warning), ("critical", levels.critical)] {
        if v.is_some_and(|v| !v.is_finite()) {
            report.error(i, &[key, name], "must be a finite number");
            ok = false;
        }
    }
    let least = match (levels.warning, levels.critical) {
        (None, None) => {
            report.error(i, &[key], "set `warning`, `critical` or both");
            return None;
        }
        (Some(w), Some(c)) => {
            if !direction.breaches(c, w) {
                report.error(
                    i,
                    &[key, "critical"],
                    format!(
                        "critical ({c}) must be {} warning ({w}) in an `{key}` rule",
                        if direction == Direction::Above {
                            "greater than"
                        } else {
                            "less than"
                        }
                    ),
                );
                ok = false;
            }
            w
        }
        (Some(w), None) => w,
        (None, Some(c)) => c,
    };
    let clear = r.clear.unwrap_or(least);
    if !clear.is_finite() || direction.breaches(clear, least) {
        report.error(
            i,
            &["clear"],
            format!(
                "clear ({clear}) must not be {} the lowest level ({least}): the alert could never resolve while firing",
                direction.as_str()
            ),
        );
        ok = false;
    }
    ok.then_some(Limits {
        direction,
        warning: levels.warning,
        critical: levels.critical,
        clear,
    })
}

impl Compiled {
    pub fn build(config: &ComponentConfig) -> Result<Compiled, ConfigErrors> {
        let cfg: ThresholdConfig = decode_config(config)?;
        let mut report = Report {
            config,
            errors: ConfigErrors::default(),
        };
        let mut rules = Vec::with_capacity(cfg.rules.len());
        let mut names = BTreeMap::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let name = match r.name.as_deref().map(str::trim) {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => {
                    report.error(i, &["name"], "every rule needs a `name`");
                    String::new()
                }
            };
            if !name.is_empty()
                && let Some(first) = names.insert(name.clone(), i)
            {
                report.error(
                    i,
                    &["name"],
                    format!("rule name `{name}` is already used by rules[{first}]"),
                );
            }
            let metric = match r.metric.as_deref() {
                Some(m) if !m.is_empty() => Glob::new(m),
                _ => {
                    report.error(
                        i,
                        &["metric"],
                        "every rule needs a `metric` (a name or glob)",
                    );
                    Glob::new("")
                }
            };
            let value = match r.value.as_deref() {
                None => ValueKind::Auto,
                Some(text) => parse_value_kind(text).unwrap_or_else(|| {
                    report.error(
                        i,
                        &["value"],
                        format!(
                            "unknown value `{text}`; expected auto, last, rate, mean, p50, p90, p95 or p99"
                        ),
                    );
                    ValueKind::Auto
                }),
            };
            let resource = compile_matchers(&mut report, i, "resource", &r.matching.resource);
            let attributes = compile_matchers(&mut report, i, "attributes", &r.matching.attributes);
            let limits = compile_limits(&mut report, i, r);
            if let Some(a) = r.absent_for {
                if a.0.is_zero() {
                    report.error(i, &["absent_for"], "must be greater than 0");
                } else if a.0 >= cfg.forget_after.0 {
                    report.error(
                        i,
                        &["absent_for"],
                        format!(
                            "must be shorter than `forget_after` ({}), or the series is forgotten before it counts as absent",
                            cfg.forget_after
                        ),
                    );
                }
            }
            if r.absent_severity.is_some() && r.absent_for.is_none() {
                report.error(
                    i,
                    &["absent_severity"],
                    "`absent_severity` needs `absent_for`",
                );
            }
            if let Some(g) = &r.group_by
                && g.iter().any(|k| k.is_empty())
            {
                report.error(i, &["group_by"], "attribute names must not be empty");
            }
            rules.push(Rule {
                name,
                metric,
                resource,
                attributes,
                group_by: r.group_by.clone(),
                value,
                limits,
                hold: r.hold.0,
                repeat_interval: r.repeat_interval.0,
                absent_for: r.absent_for.map(|d| d.0),
                absent_severity: r.absent_severity.unwrap_or(Severity::Critical),
            });
        }
        if cfg.rules.is_empty() {
            report.errors.push(Diagnostic::new(
                Some(config.pos.clone()),
                format!("{}.rules", config.path),
                "the threshold connector needs at least one rule",
            ));
        }
        if cfg.max_series == 0 {
            report.errors.push(Diagnostic::new(
                config.node.get_path(["max_series"]).map(|n| n.pos.clone()),
                format!("{}.max_series", config.path),
                "must be at least 1",
            ));
        }
        if cfg.check_interval.0.is_zero() {
            report.errors.push(Diagnostic::new(
                config
                    .node
                    .get_path(["check_interval"])
                    .map(|n| n.pos.clone()),
                format!("{}.check_interval", config.path),
                "must be greater than 0",
            ));
        }
        report.errors.into_result(Compiled {
            rules,
            max_series: cfg.max_series,
            check_interval: cfg.check_interval.0,
            forget_after: cfg.forget_after.0,
        })
    }
}
