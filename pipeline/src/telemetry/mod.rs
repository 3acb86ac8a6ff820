//! Self-telemetry: Prometheus-text metrics under the OTel Collector's names, and health.

mod health;
mod metrics;
mod server;

pub use health::{Health, HealthState};
pub use metrics::{Counter, Gauge, MetricsRegistry};
pub use server::{
    DEFAULT_HEALTH_ENDPOINT, DEFAULT_METRICS_ADDRESS, LogEncoding, TelemetryConfig, serve_health,
    serve_metrics,
};

use std::sync::Arc;

/// What every component gets for reporting about itself.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub metrics: Arc<MetricsRegistry>,
    pub health: Health,
}
