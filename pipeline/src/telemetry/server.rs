use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Health, HealthState, MetricsRegistry};

pub const DEFAULT_METRICS_ADDRESS: &str = "localhost:8888";
pub const DEFAULT_HEALTH_ENDPOINT: &str = "localhost:13133";

/// `service.telemetry`: the collector's own logs and metrics.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: LogsTelemetry,
    pub metrics: MetricsTelemetry,
}

/// `service.telemetry.logs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// `debug`, `info` (default), `warn`, `error`; `RUST_LOG` overrides it.
    pub level: String,
    /// `console` (human-readable, default) or `json`.
    pub encoding: LogEncoding,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry {
            level: "info".into(),
            encoding: LogEncoding::Console,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

/// `service.telemetry.metrics`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// `none` turns the metrics endpoint off; `basic`, `normal`, `detailed` all serve it.
    pub level: MetricsLevel,
    /// Where Prometheus scrapes `/metrics` (the older collector key). Default `localhost:8888`.
    pub address: Option<String>,
    /// The newer collector form: `readers: [{pull: {exporter: {prometheus: {host, port}}}}]`.
    pub readers: Vec<MetricReader>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    pub pull: PullReader,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: PrometheusEndpoint,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusEndpoint {
    #[serde(default = "default_prometheus_host")]
    pub host: String,
    #[serde(default = "default_prometheus_port")]
    pub port: u16,
}

fn default_prometheus_host() -> String {
    "localhost".into()
}
fn default_prometheus_port() -> u16 {
    8888
}

impl TelemetryConfig {
    /// The metrics address and whether the user chose it (a chosen address that cannot be
    /// bound is an error; the default one being taken only earns a warning).
    pub fn metrics_address(&self) -> Option<(String, bool)> {
        if self.metrics.level == MetricsLevel::None {
            return None;
        }
        if let Some(reader) = self.metrics.readers.first() {
            let p = &reader.pull.exporter.prometheus;
            return Some((format!("{}:{}", p.host, p.port), true));
        }
        match &self.metrics.address {
            Some(a) => Some((a.clone(), true)),
            None => Some((DEFAULT_METRICS_ADDRESS.to_string(), false)),
        }
    }
}

pub fn serve_metrics(listener: TcpListener, registry: Arc<MetricsRegistry>) -> JoinHandle<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    registry.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    })
}

/// Serves `path`: 200 once every component has started, 503 while starting or draining.
pub fn serve_health(listener: TcpListener, path: &str, health: Health) -> JoinHandle<()> {
    let app = Router::new().route(
        path,
        get(move || {
            let health = health.clone();
            async move {
                let state = health.get();
                let (status, text) = match state {
                    HealthState::Ready => (StatusCode::OK, "Server available"),
                    HealthState::Starting => (StatusCode::SERVICE_UNAVAILABLE, "Server not available: starting"),
                    HealthState::Draining => (StatusCode::SERVICE_UNAVAILABLE, "Server not available: shutting down"),
                };
                let body = serde_json::json!({ "status": text, "state": format!("{state:?}").to_lowercase() });
                (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "health endpoint stopped");
        }
    })
}
