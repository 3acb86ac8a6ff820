//! Self-telemetry: metrics under the OTel Collector's names (a Prometheus endpoint and OTLP
//! push), the resource they describe, health, and the settings of sluice's own logs.

mod config;
mod health;
mod health_check;
mod log_limit;
mod log_sampling;
mod metrics;
mod push;
mod server;

pub use config::{
    BatchLogProcessor, DEFAULT_HEALTH_ENDPOINT, DEFAULT_METRICS_ADDRESS, Headers, IncludeExclude,
    LogEncoding, LogProcessor, LogSampling, LogsTelemetry, MetricReader, MetricsLevel,
    MetricsTelemetry, Millis, OtlpProtocol, OtlpTarget, PeriodicReader, PullEndpoint,
    PushCompression, PushExporter, ResourceConfig, TelemetryConfig, Temporality, telemetry_problem,
};
pub use health::{Health, HealthState};
pub use health_check::{HealthCheckConfig, HealthRoutes, serve_health};
pub use log_limit::{DEFAULT_LOG_INTERVAL, LogLimiter};
pub use log_sampling::Sampler;
pub use metrics::{
    Counter, FamilySnapshot, Gauge, MetricKind, MetricsRegistry, PromOptions, label_name,
    unix_nanos,
};
pub use push::{
    ConsoleClient, MetricsEncoder, OtlpClient, OtlpClientBuilder, PeriodicPusher, SelfExport,
    resource, scope, string_attribute,
};
pub use server::serve_metrics;

use std::sync::Arc;

/// What every component gets for reporting about itself.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Arc<MetricsRegistry>,
    pub health: Health,
    /// Makes the OTLP clients of `periodic` metric readers; without it such readers are a
    /// config error.
    pub otlp_client: Option<OtlpClientBuilder>,
    /// `service.instance.id` of this run, unless the config sets or removes it.
    pub instance_id: Arc<str>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            metrics: Arc::default(),
            health: Health::default(),
            otlp_client: None,
            instance_id: new_instance_id().into(),
        }
    }
}

/// A random UUID (version 4), as the Collector's `service.instance.id`.
pub fn new_instance_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let bytes: Vec<u8> = a.to_be_bytes().into_iter().chain(b.to_be_bytes()).collect();
    let mut hex = hex::encode(&bytes);
    // Version 4 and the RFC 4122 variant.
    hex.replace_range(12..13, "4");
    let variant = ["8", "9", "a", "b"][fastrand::usize(..4)];
    hex.replace_range(16..17, variant);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
