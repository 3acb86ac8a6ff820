//! `connectors: span_metrics:` (or `spanmetrics:`) in the OTel Collector's shape, checked with
//! key paths.

use regex::Regex;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, Node, Optional};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect, decode_section, problem};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// Prefix of the metric names (`<namespace>.calls`, `.duration`, `.events`); empty for
    /// bare names. Default `traces.span.metrics`.
    pub namespace: String,
    pub histogram: HistogramConfig,
    /// Extra dimensions on every metric, looked up on the span, then on its resource.
    pub dimensions: Vec<Dimension>,
    /// Extra dimensions on the calls metric only.
    pub calls_dimensions: Vec<Dimension>,
    /// Default dimensions to leave out (`service.name`, `span.name`, `span.kind`,
    /// `status.code`, `collector.instance.id`).
    pub exclude_dimensions: Vec<String>,
    /// `AGGREGATION_TEMPORALITY_DELTA`, or cumulative (the default, and what any other text
    /// means, as in the OTel Collector).
    pub aggregation_temporality: String,
    /// How often the metrics are sent downstream. Default 60s.
    pub metrics_flush_interval: Duration,
    /// Cumulative: a resource's metrics stop being sent once no span of it came for this
    /// long. 0 (default): never.
    pub metrics_expiration: Duration,
    /// Cumulative: a series stops being sent once no span of it came for this long. 0
    /// (default): never.
    pub series_expiration: Duration,
    /// Delta: how many series remember their last flush time (the start of their next
    /// point). Default 1000.
    pub metric_timestamp_cache_size: Option<i64>,
    /// How many resources are kept (least recently seen dropped first). Default 1000.
    pub resource_metrics_cache_size: i64,
    /// The resource attributes that tell resources apart (all when empty).
    pub resource_metrics_key_attributes: Vec<String>,
    /// Most series per resource and metric; spans of further series are counted in one
    /// series with `otel.metric.overflow=true`. 0 (default): no limit.
    pub aggregation_cardinality_limit: i64,
    pub exemplars: ExemplarsConfig,
    pub events: EventsConfig,
    /// Spans of these instrumentation scopes get `span.instrumentation.scope.name` and
    /// `.version` dimensions.
    pub include_instrumentation_scope: Vec<String>,
    /// Keep the spans' resource attributes on the metrics' resource: they always are in
    /// sluice, as in the OTel Collector unless its alpha `excludeResourceMetrics` gate is on.
    pub add_resource_attributes: bool,
    /// Adds `sampling.method` (`extrapolated` for spans whose W3C `tracestate` carries an
    /// OpenTelemetry sampling threshold, else `counted`).
    pub enable_metrics_sampling_method: bool,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            namespace: "traces.span.metrics".into(),
            histogram: HistogramConfig::default(),
            dimensions: Vec::new(),
            calls_dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            aggregation_temporality: CUMULATIVE.into(),
            metrics_flush_interval: Duration::from_secs(60),
            metrics_expiration: Duration::from_secs(0),
            series_expiration: Duration::from_secs(0),
            metric_timestamp_cache_size: None,
            resource_metrics_cache_size: 1000,
            resource_metrics_key_attributes: Vec::new(),
            aggregation_cardinality_limit: 0,
            exemplars: ExemplarsConfig::default(),
            events: EventsConfig::default(),
            include_instrumentation_scope: Vec::new(),
            add_resource_attributes: false,
            enable_metrics_sampling_method: false,
        }
    }
}

const CUMULATIVE: &str = "AGGREGATION_TEMPORALITY_CUMULATIVE";
const DELTA: &str = "AGGREGATION_TEMPORALITY_DELTA";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// No duration histogram at all.
    pub disable: bool,
    /// `ms` (default) or `s`: the unit durations are recorded in.
    pub unit: DurationUnit,
    /// Explicit buckets (the default kind).
    pub explicit: Optional<ExplicitBuckets>,
    /// Exponential buckets instead.
    pub exponential: Optional<ExponentialConfig>,
    /// Extra dimensions on the duration histogram only.
    pub dimensions: Vec<Dimension>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitBuckets {
    /// Bucket bounds as durations; default 2ms..15s (the OTel Collector's).
    pub buckets: Option<Vec<Duration>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExponentialConfig {
    /// Most buckets; 0 means the default, 160.
    pub max_size: i32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    /// Attach the trace and span ids of counted spans to the points they went into.
    pub enabled: bool,
    /// Most exemplars per point and flush. Default 5.
    pub max_per_data_point: i64,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        ExemplarsConfig {
            enabled: false,
            max_per_data_point: 5,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Count span events in `<namespace>.events`.
    pub enabled: bool,
    /// Dimensions of the events metric, looked up on the span, the event, then the
    /// resource. At least one when enabled.
    pub dimensions: Vec<Dimension>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum DurationUnit {
    #[default]
    #[serde(rename = "ms")]
    Ms,
    #[serde(rename = "s")]
    S,
}

impl DurationUnit {
    pub fn symbol(self) -> &'static str {
        match self {
            DurationUnit::Ms => "ms",
            DurationUnit::S => "s",
        }
    }

    pub fn from_nanos(self, nanos: u64) -> f64 {
        match self {
            DurationUnit::Ms => nanos as f64 / 1e6,
            DurationUnit::S => nanos as f64 / 1e9,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    Delta,
}

/// One dimension: an attribute `name` (with an optional `default`), or every attribute whose
/// key matches `glob`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dimension {
    pub name: Option<String>,
    /// Used when neither the span nor its resource has the attribute; without one the
    /// attribute is left off.
    pub default: Option<String>,
    /// `*` any text, `?` one character, `[...]` a class, `{a,b}` alternatives.
    pub glob: Option<String>,
}

/// A dimension, checked.
#[derive(Clone, Debug)]
pub enum DimensionRule {
    Named {
        name: String,
        default: Option<String>,
    },
    Glob(Regex),
}

/// The settings the connector runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub raw: SpanMetricsConfig,
    pub temporality: Temporality,
    pub dimensions: Vec<DimensionRule>,
    pub calls_dimensions: Vec<DimensionRule>,
    pub histogram_dimensions: Vec<DimensionRule>,
    pub event_dimensions: Vec<DimensionRule>,
    /// Bucket bounds in the histogram's unit; `None` for exponential buckets.
    pub bounds: Option<Vec<f64>>,
    pub exponential_max_size: usize,
    pub timestamp_cache_size: usize,
    pub resource_cache_size: usize,
    pub cardinality_limit: usize,
    pub max_exemplars: usize,
}

/// The OTel Collector's default bounds, in milliseconds.
const DEFAULT_BOUNDS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

const DEFAULT_EXPONENTIAL_SIZE: usize = 160;
/// The smallest exponential histogram that can hold values spread over any range.
const MIN_EXPONENTIAL_SIZE: i32 = 2;

/// The default dimensions, which configured ones may not repeat.
pub const RESERVED: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

const NO_EFFECT: &[NoEffect] = &[NoEffect::new(
    "dimensions_cache_size",
    "deprecated and unused in the OTel Collector since v0.130; use aggregation_cardinality_limit",
)];

/// Translates a glob into an anchored regular expression.
fn glob_regex(glob: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    let mut braces = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                if !closed {
                    return Err("a `[` is not closed".into());
                }
                re.push(']');
            }
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            ',' if braces > 0 => re.push('|'),
            '\\' => match chars.next() {
                Some(e) => re.push_str(&regex::escape(&e.to_string())),
                None => return Err("the glob ends with `\\`".into()),
            },
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if braces > 0 {
        return Err("a `{` is not closed".into());
    }
    re.push('$');
    Regex::new(&re).map_err(|e| e.to_string())
}

/// Checks one list of dimensions, as the OTel Collector does: `name` or `glob`, not both;
/// no default dimension and no name twice.
fn dimension_rules(
    config: &ComponentConfig,
    key: &str,
    list: &[Dimension],
    errors: &mut ConfigErrors,
) -> Vec<DimensionRule> {
    let mut out = Vec::with_capacity(list.len());
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        // `leaf` is "" for the entry itself or ".name" style for one of its keys.
        let err = |leaf: &str, message: String| {
            let list = config.node.get_path(key.split('.'));
            let entry = list.and_then(Node::as_seq).and_then(|s| s.get(i));
            let node = leaf
                .strip_prefix('.')
                .and_then(|k| entry.and_then(|e| e.get_path([k])))
                .or(entry)
                .or(list);
            let pos = node.map_or_else(|| config.pos.clone(), |n| n.pos.clone());
            Diagnostic::new(
                Some(pos),
                format!("{}.{key}[{i}]{leaf}", config.path),
                message,
            )
        };
        match (&d.name, &d.glob) {
            (Some(_), Some(_)) => errors.push(err(
                "",
                "a dimension has either `name` or `glob`, not both".into(),
            )),
            (None, None) => errors.push(err("", "a dimension needs `name` or `glob`".into())),
            (Some(name), None) if name.is_empty() => {
                errors.push(err(".name", "dimension name is empty".into()))
            }
            (Some(name), None) if RESERVED.contains(&name.as_str()) => errors.push(err(
                ".name",
                format!("duplicate dimension name `{name}`: it is always a dimension; remove it"),
            )),
            (Some(name), None) if seen.contains(&name.as_str()) => {
                errors.push(err(".name", format!("duplicate dimension name `{name}`")))
            }
            (Some(name), None) => {
                seen.push(name);
                out.push(DimensionRule::Named {
                    name: name.clone(),
                    default: d.default.clone(),
                });
            }
            (None, Some(glob)) => {
                if d.default.is_some() {
                    errors.push(err(
                        ".default",
                        "a `glob` dimension takes no `default`".into(),
                    ));
                }
                match glob_regex(glob) {
                    Ok(re) => out.push(DimensionRule::Glob(re)),
                    Err(why) => errors.push(err(".glob", format!("invalid glob `{glob}`: {why}"))),
                }
            }
        }
    }
    out
}

/// Decodes and checks the section.
pub fn load(config: &ComponentConfig, warnings: &ConfigWarnings) -> Result<Settings, ConfigErrors> {
    let cfg: SpanMetricsConfig = decode_section(config, NO_EFFECT, warnings)?;
    let mut errors = ConfigErrors::default();
    let err = |key: &str, message: String| problem(config, key, message);

    let temporality = if cfg.aggregation_temporality == DELTA {
        Temporality::Delta
    } else {
        if cfg.aggregation_temporality != CUMULATIVE {
            warnings.push(err(
                "aggregation_temporality",
                format!(
                    "`{}` is not {DELTA}, so the metrics are cumulative (as the OTel \
                     Collector reads it)",
                    cfg.aggregation_temporality
                ),
            ));
        }
        Temporality::Cumulative
    };

    let dimensions = dimension_rules(config, "dimensions", &cfg.dimensions, &mut errors);
    let calls_dimensions = dimension_rules(
        config,
        "calls_dimensions",
        &cfg.calls_dimensions,
        &mut errors,
    );
    let histogram_dimensions = dimension_rules(
        config,
        "histogram.dimensions",
        &cfg.histogram.dimensions,
        &mut errors,
    );
    let event_dimensions = dimension_rules(
        config,
        "events.dimensions",
        &cfg.events.dimensions,
        &mut errors,
    );
    if cfg.events.enabled && cfg.events.dimensions.is_empty() {
        errors.push(err(
            "events",
            "no dimensions configured for events: `events.dimensions` needs at least one".into(),
        ));
    }

    let h = &cfg.histogram;
    if h.explicit.is_some() && h.exponential.is_some() {
        errors.push(err(
            "histogram",
            "use either `explicit` or `exponential` buckets histogram, not both".into(),
        ));
    }
    let bounds = match h.exponential.as_ref() {
        Some(_) => None,
        None => Some(match h.explicit.as_ref().and_then(|e| e.buckets.as_ref()) {
            Some(buckets) => {
                let bounds: Vec<f64> = buckets
                    .iter()
                    .map(|d| {
                        h.unit
                            .from_nanos(u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX))
                    })
                    .collect();
                if bounds.windows(2).any(|w| w[0] >= w[1]) {
                    errors.push(err(
                        "histogram.explicit.buckets",
                        "bucket bounds must be strictly increasing".into(),
                    ));
                }
                bounds
            }
            None => {
                let per_ms = match h.unit {
                    DurationUnit::Ms => 1.0,
                    DurationUnit::S => 1000.0,
                };
                DEFAULT_BOUNDS_MS.iter().map(|b| b / per_ms).collect()
            }
        }),
    };
    let exponential_max_size = match h.exponential.as_ref().map_or(0, |e| e.max_size) {
        0 => DEFAULT_EXPONENTIAL_SIZE,
        n if n < MIN_EXPONENTIAL_SIZE => {
            errors.push(err(
                "histogram.exponential.max_size",
                format!("max_size must be at least {MIN_EXPONENTIAL_SIZE} (or 0 for 160)"),
            ));
            DEFAULT_EXPONENTIAL_SIZE
        }
        n => n as usize,
    };

    if cfg.metrics_flush_interval.0.is_zero() {
        errors.push(err(
            "metrics_flush_interval",
            "metrics_flush_interval must be greater than 0".into(),
        ));
    }
    let timestamp_cache_size = cfg.metric_timestamp_cache_size.unwrap_or(1000);
    if temporality == Temporality::Delta && timestamp_cache_size <= 0 {
        errors.push(err(
            "metric_timestamp_cache_size",
            format!(
                "invalid delta timestamp cache size {timestamp_cache_size}: it must be positive"
            ),
        ));
    }
    if cfg.resource_metrics_cache_size <= 0 {
        errors.push(err(
            "resource_metrics_cache_size",
            "resource_metrics_cache_size must be positive".into(),
        ));
    }
    if cfg.aggregation_cardinality_limit < 0 {
        errors.push(err(
            "aggregation_cardinality_limit",
            "aggregation_cardinality_limit must not be negative (0 means no limit)".into(),
        ));
    }
    let to_usize = |n: i64| usize::try_from(n).unwrap_or(0);
    let settings = Settings {
        temporality,
        dimensions,
        calls_dimensions,
        histogram_dimensions,
        event_dimensions,
        bounds,
        exponential_max_size,
        timestamp_cache_size: to_usize(timestamp_cache_size).max(1),
        resource_cache_size: to_usize(cfg.resource_metrics_cache_size).max(1),
        cardinality_limit: to_usize(cfg.aggregation_cardinality_limit),
        max_exemplars: to_usize(cfg.exemplars.max_per_data_point),
        raw: cfg,
    };
    errors.into_result(settings)
}

#[cfg(test)]
mod tests {
    use super::glob_regex;

    #[test]
    fn globs_match_like_the_collectors() {
        let m = |g: &str, s: &str| glob_regex(g).unwrap().is_match(s);
        assert!(m("k8s.*", "k8s.pod.name"));
        assert!(!m("k8s.*", "host.k8s.x"));
        assert!(m("http.?", "http.a"));
        assert!(m("{aws,gcp}.region", "gcp.region"));
        assert!(m("a[0-9]", "a5"));
        assert!(!m("a[!0-9]", "a5"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(glob_regex("a[").is_err());
        assert!(glob_regex("{a,b").is_err());
    }
}
