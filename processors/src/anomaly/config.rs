//! `connectors: anomaly:` settings, their defaults and their checks (with key paths).

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration};
use sluice_pipeline::decode_config;

/// Warm-up when no season is set: enough points for the mean and deviation to settle.
pub const DEFAULT_WARMUP: usize = 30;
/// Longest season accepted: the seasonal state is `season` numbers per series.
pub const MAX_SEASON: usize = 10_080;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// `alert.rule` of the events; the connector's id when empty.
    pub name: String,
    /// Only these metrics are watched (all gauges and sums when empty).
    pub metrics: Vec<String>,
    /// Points per seasonal period (e.g. 1440 for a daily cycle of one-minute points); 0: none.
    pub season: usize,
    /// Level smoothing, in (0, 1].
    pub alpha: f64,
    /// Trend smoothing, in [0, 1]; 0 keeps no trend.
    pub beta: f64,
    /// Seasonal smoothing, in [0, 1].
    pub gamma: f64,
    /// Smoothing of the deviation estimate, in (0, 1].
    pub deviation_alpha: f64,
    /// Half-width of the band, in deviations.
    pub sensitivity: f64,
    /// Smallest half-width of the band, in the metric's unit, so a flat series does not alert
    /// on its first wiggle.
    pub min_deviation: f64,
    /// Points outside the band in a row that fire; points inside in a row that resolve.
    pub min_consecutive: usize,
    /// Points a series must have before it can alert (default 2 seasons, or 30).
    pub warmup: Option<usize>,
    /// Most series tracked; points of further series are not evaluated, and counted.
    pub max_series: usize,
    /// A series whose newest point is this far behind the newest point of any series is
    /// forgotten when room is needed for a new one (data time, not arrival time); 0: never.
    pub forget_after: Duration,
    /// Also emit `<metric>.forecast`, `.lower` and `.upper` gauges (needs a metrics pipeline
    /// that receives from this connector).
    pub forecast: bool,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            name: String::new(),
            metrics: Vec::new(),
            season: 0,
            alpha: 0.2,
            beta: 0.02,
            gamma: 0.1,
            deviation_alpha: 0.1,
            sensitivity: 3.0,
            min_deviation: 0.0,
            min_consecutive: 2,
            warmup: None,
            max_series: 10_000,
            forget_after: Duration::from_secs(3600),
            forecast: false,
        }
    }
}

impl AnomalyConfig {
    pub fn warmup(&self) -> usize {
        self.warmup.unwrap_or(if self.season > 0 {
            (2 * self.season).max(DEFAULT_WARMUP)
        } else {
            DEFAULT_WARMUP
        })
    }
}

/// Decodes and checks the section.
pub fn load(config: &ComponentConfig) -> Result<AnomalyConfig, ConfigErrors> {
    let cfg: AnomalyConfig = decode_config(config)?;
    let mut errors = ConfigErrors::default();
    let mut err = |key: &str, message: String| {
        let pos = config
            .node
            .get_path([key])
            .map(|n| n.pos.clone())
            .unwrap_or_else(|| config.pos.clone());
        errors.push(Diagnostic::new(
            Some(pos),
            format!("{}.{key}", config.path),
            message,
        ));
    };
    let unit = |v: f64| (0.0..=1.0).contains(&v);
    if !(unit(cfg.alpha) && cfg.alpha > 0.0) {
        err(
            "alpha",
            format!("alpha must be in (0, 1], got {}", cfg.alpha),
        );
    }
    if !unit(cfg.beta) {
        err("beta", format!("beta must be in [0, 1], got {}", cfg.beta));
    }
    if !unit(cfg.gamma) {
        err(
            "gamma",
            format!("gamma must be in [0, 1], got {}", cfg.gamma),
        );
    }
    if !(unit(cfg.deviation_alpha) && cfg.deviation_alpha > 0.0) {
        err(
            "deviation_alpha",
            format!(
                "deviation_alpha must be in (0, 1], got {}",
                cfg.deviation_alpha
            ),
        );
    }
    if !(cfg.sensitivity.is_finite() && cfg.sensitivity > 0.0) {
        err(
            "sensitivity",
            format!(
                "sensitivity must be a positive number of deviations, got {}",
                cfg.sensitivity
            ),
        );
    }
    if !(cfg.min_deviation.is_finite() && cfg.min_deviation >= 0.0) {
        err(
            "min_deviation",
            format!("min_deviation must be 0 or more, got {}", cfg.min_deviation),
        );
    }
    if cfg.min_consecutive == 0 {
        err(
            "min_consecutive",
            "min_consecutive must be at least 1".into(),
        );
    }
    if cfg.season == 1 || cfg.season > MAX_SEASON {
        err(
            "season",
            format!(
                "season must be 0 (none) or 2..={MAX_SEASON} points, got {}",
                cfg.season
            ),
        );
    }
    if let Some(w) = cfg.warmup {
        // The first season only initialises the seasonal profile; one more point is needed
        // to have a forecast at all.
        let least = if cfg.season > 0 { cfg.season + 1 } else { 2 };
        if w < least {
            err(
                "warmup",
                format!(
                    "warmup must be at least {least} points with season {}, got {w}",
                    cfg.season
                ),
            );
        }
    }
    if cfg.max_series == 0 {
        err("max_series", "max_series must be at least 1".into());
    }
    errors.into_result(cfg)
}
