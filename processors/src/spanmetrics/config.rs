//! `connectors: spanmetrics:` in the OTel Collector's shape, checked with key paths.

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, Node};
use sluice_pipeline::decode_config;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// Prefix of the metric names (`<namespace>.calls`, `<namespace>.duration`).
    pub namespace: String,
    pub histogram: HistogramConfig,
    /// Extra data-point attributes, looked up on the span, then on its resource.
    pub dimensions: Vec<Dimension>,
    pub aggregation_temporality: Temporality,
    /// How often accumulated metrics are sent downstream.
    pub metrics_flush_interval: Duration,
    /// Most distinct series kept; spans of further series are counted in one overflow series
    /// so totals stay exact. `dimensions_cache_size` is accepted as the older spelling.
    #[serde(alias = "dimensions_cache_size")]
    pub aggregation_cardinality_limit: usize,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            namespace: "traces.span.metrics".into(),
            histogram: HistogramConfig::default(),
            dimensions: Vec::new(),
            aggregation_temporality: Temporality::Cumulative,
            metrics_flush_interval: Duration::from_secs(60),
            aggregation_cardinality_limit: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// Unit the duration histogram is recorded in; bucket bounds are durations either way.
    pub unit: DurationUnit,
    pub explicit: ExplicitBuckets,
}

impl Default for HistogramConfig {
    fn default() -> Self {
        HistogramConfig {
            unit: DurationUnit::Ms,
            explicit: ExplicitBuckets::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitBuckets {
    pub buckets: Vec<Duration>,
}

impl Default for ExplicitBuckets {
    /// The OTel Collector spanmetrics connector's default bounds.
    fn default() -> Self {
        let ms = [
            2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000,
        ];
        ExplicitBuckets {
            buckets: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum DurationUnit {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Temporality {
    #[serde(rename = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    #[serde(rename = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    /// Used when neither the span nor its resource has the attribute; without one the
    /// attribute is left off.
    #[serde(default)]
    pub default: Option<String>,
}

/// Decodes and checks the section.
pub fn load(config: &ComponentConfig) -> Result<SpanMetricsConfig, ConfigErrors> {
    let cfg: SpanMetricsConfig = decode_config(config)?;
    let mut errors = ConfigErrors::default();
    let err = |key: &str, message: String| {
        let pos = config
            .node
            .get_path(key.split('.'))
            .map(|n| n.pos.clone())
            .unwrap_or_else(|| config.pos.clone());
        Diagnostic::new(Some(pos), format!("{}.{key}", config.path), message)
    };
    let dim_err = |i: usize, message: String| {
        let pos = config
            .node
            .get_path(["dimensions"])
            .and_then(Node::as_seq)
            .and_then(|s| s.get(i))
            .map(|n| n.get_path(["name"]).unwrap_or(n).pos.clone())
            .unwrap_or_else(|| config.pos.clone());
        Diagnostic::new(
            Some(pos),
            format!("{}.dimensions[{i}].name", config.path),
            message,
        )
    };
    let buckets = &cfg.histogram.explicit.buckets;
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        errors.push(err(
            "histogram.explicit.buckets",
            "bucket bounds must be strictly increasing".into(),
        ));
    }
    if cfg.metrics_flush_interval.0.is_zero() {
        errors.push(err(
            "metrics_flush_interval",
            "metrics_flush_interval must be greater than 0".into(),
        ));
    }
    if cfg.aggregation_cardinality_limit == 0 {
        errors.push(err(
            "aggregation_cardinality_limit",
            "aggregation_cardinality_limit must be at least 1".into(),
        ));
    }
    let reserved = ["service.name", "span.name", "span.kind", "status.code"];
    for (i, d) in cfg.dimensions.iter().enumerate() {
        if d.name.is_empty() {
            errors.push(dim_err(i, "dimension name is empty".into()));
        } else if reserved.contains(&d.name.as_str()) {
            errors.push(dim_err(
                i,
                format!("`{}` is always a dimension; remove it", d.name),
            ));
        } else if cfg.dimensions[..i].iter().any(|o| o.name == d.name) {
            errors.push(dim_err(
                i,
                format!("dimension `{}` is listed twice", d.name),
            ));
        }
    }
    if cfg.namespace.ends_with('.') {
        errors.push(err("namespace", "namespace must not end with `.`".into()));
    }
    errors.into_result(cfg)
}
