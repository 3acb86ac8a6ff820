//! The `prometheus` exporter: serves the metrics it receives on an HTTP endpoint for
//! Prometheus to scrape, named by the OTel → Prometheus rules, with `target_info`, delta sums
//! and histograms accumulated to cumulative ones, and series expiring when not updated.

mod accumulator;
mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Duration, SignalKind};
use sluice_pipeline::config_keys::{NoEffect, decode_section, problem};
use sluice_pipeline::exporter::{Export, ExportHelper, HelperSettings};
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Lifecycle,
    Metrics, SignalConsumer, StartError,
};
use tokio::time::Instant;

use crate::otel_to_prometheus::{
    ResourceConstantLabels, ResourceLabels, ResourceToTelemetry, Translation, TranslationStrategy,
    sanitize_label,
};
use accumulator::Accumulator;
use render::Format;

const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "read_timeout",
        "a timeout of Go's HTTP server; scrape responses are built in memory and written at once",
    ),
    NoEffect::new(
        "read_header_timeout",
        "a timeout of Go's HTTP server; scrape responses are built in memory and written at once",
    ),
    NoEffect::new(
        "write_timeout",
        "a timeout of Go's HTTP server; scrape responses are built in memory and written at once",
    ),
    NoEffect::new("idle_timeout", "a timeout of Go's HTTP server"),
    NoEffect::new(
        "keep_alives_enabled",
        "a connection knob of Go's HTTP server",
    ),
    NoEffect::new("max_request_body_size", "a scrape is a GET without a body"),
    NoEffect::new(
        "include_metadata",
        "a scrape carries no data, so there is no client metadata to keep",
    ),
    NoEffect::new(
        "compression_algorithms",
        "it lists request encodings accepted; a scrape has no request body (responses are gzipped when the scraper asks)",
    ),
    NoEffect::new(
        "cors",
        "browsers do not scrape metrics; CORS headers change nothing for Prometheus",
    ),
    NoEffect::new(
        "response_headers",
        "headers on scrape responses change nothing for Prometheus",
    ),
];

/// `exporters: prometheus:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    /// Where to serve `/metrics`, e.g. `0.0.0.0:8889` (required; `:8889` means every interface).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Server TLS: refused, see the error.
    #[serde(default)]
    pub tls: Option<serde::de::IgnoredAny>,
    /// Authenticator extensions: refused, see the error.
    #[serde(default)]
    pub auth: Option<serde::de::IgnoredAny>,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: String,
    /// Labels on every series.
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
    /// Write each sample's timestamp (default false).
    #[serde(default)]
    pub send_timestamps: bool,
    /// Forget series not updated for this long (default 5m).
    #[serde(default)]
    pub metric_expiration: Option<Duration>,
    /// Every resource attribute as a label (default off).
    #[serde(default)]
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Which resource attributes become labels (`included`, `excluded`).
    #[serde(default)]
    pub resource_constant_labels: Option<ResourceConstantLabels>,
    /// Answer in OpenMetrics when the scraper asks for it (default false).
    #[serde(default)]
    pub enable_open_metrics: bool,
    /// Leave out `otel_scope_name`/`otel_scope_version` labels (default false).
    #[serde(default)]
    pub without_scope_info: bool,
    /// Deprecated: `false` means `translation_strategy: UnderscoreEscapingWithoutSuffixes`.
    #[serde(default)]
    pub add_metric_suffixes: Option<bool>,
    #[serde(default)]
    pub translation_strategy: Option<TranslationStrategy>,
}

pub struct PrometheusExporterFactory;

impl ExporterFactory for PrometheusExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "prometheus",
            aliases: &[],
            signals: &[SignalKind::Metrics],
            description: "serves metrics for Prometheus to scrape",
        }
    }

    /// Data is only held in memory for the next scrape: no queue unless one is configured,
    /// and taking a batch is final, as in front of a memory queue.
    fn helper_defaults(&self) -> HelperSettings {
        let mut settings = HelperSettings {
            local_delivery: true,
            ..HelperSettings::default()
        };
        settings.queue.enabled = false;
        settings
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        _signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: PrometheusExporterConfig = decode_section(config, NO_EFFECT, &ctx.warnings)?;
        let mut errors = Vec::new();
        let endpoint = match &cfg.endpoint {
            Some(e) if !e.is_empty() => sluice_pipeline::net::listen_address(e),
            _ => {
                errors.push(problem(
                    config,
                    "endpoint",
                    "set `endpoint`, e.g. `0.0.0.0:8889`",
                ));
                String::new()
            }
        };
        if cfg.tls.is_some() {
            errors.push(problem(config, "tls", "serving the scrape endpoint over TLS is not supported yet; put a TLS proxy in front or scrape over the local network"));
        }
        if cfg.auth.is_some() {
            errors.push(problem(
                config,
                "auth",
                "authenticator extensions are not supported yet",
            ));
        }
        if cfg.resource_to_telemetry_conversion.enabled && cfg.resource_constant_labels.is_some() {
            errors.push(problem(config, "resource_constant_labels", "cannot configure both resource_to_telemetry_conversion and resource_constant_labels; resource_to_telemetry_conversion is deprecated"));
        }
        let strategy =
            TranslationStrategy::resolve(cfg.translation_strategy, cfg.add_metric_suffixes);
        let const_labels: Vec<(String, String)> = cfg
            .const_labels
            .iter()
            .map(|(k, v)| {
                (
                    if strategy.escapes() {
                        sanitize_label(k)
                    } else {
                        k.clone()
                    },
                    v.clone(),
                )
            })
            .collect();
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let name = config.id.to_string();
        let state = Arc::new(State {
            accumulator: Mutex::new(Accumulator::default()),
            translation: Translation {
                namespace: cfg.namespace.clone(),
                strategy,
                resource_labels: ResourceLabels::from_settings(
                    &cfg.resource_to_telemetry_conversion,
                    cfg.resource_constant_labels.as_ref(),
                ),
                scope_labels: !cfg.without_scope_info,
            },
            expiration: cfg
                .metric_expiration
                .map(|d| d.0)
                .unwrap_or(StdDuration::from_secs(300)),
            send_timestamps: cfg.send_timestamps,
            open_metrics: cfg.enable_open_metrics,
            const_labels,
            target_info_name: if cfg.namespace.is_empty() {
                "target_info".into()
            } else {
                format!("{}_target_info", cfg.namespace)
            },
        });
        let (consumer, lifecycle) =
            ExportHelper::<Metrics>::new(&name, settings, Arc::new(Accumulate(state.clone())), ctx)
                .parts();
        let server = Arc::new(Server {
            name,
            endpoint,
            state,
            running: Mutex::new(None),
        });
        Ok(BuiltExporter {
            consumers: vec![Metrics::to_any(consumer)],
            lifecycles: vec![lifecycle, server],
        })
    }
}

struct State {
    accumulator: Mutex<Accumulator>,
    translation: Translation,
    expiration: StdDuration,
    send_timestamps: bool,
    open_metrics: bool,
    const_labels: Vec<(String, String)>,
    target_info_name: String,
}

impl State {
    fn scrape(&self, headers: &HeaderMap) -> (Format, Vec<u8>, bool) {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let format = if self.open_metrics && accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        let text = {
            let mut acc = self.accumulator.lock().unwrap_or_else(|p| p.into_inner());
            acc.expire(self.expiration);
            render::render(
                &acc,
                &render::Options {
                    format,
                    send_timestamps: self.send_timestamps,
                    const_labels: &self.const_labels,
                    target_info_name: &self.target_info_name,
                },
            )
        };
        let gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if encoder.write_all(text.as_bytes()).is_ok()
                && let Ok(body) = encoder.finish()
            {
                return (format, body, true);
            }
        }
        (format, text.into_bytes(), false)
    }
}

struct Accumulate(Arc<State>);

#[async_trait]
impl Export<Metrics> for Accumulate {
    async fn export(&self, batch: &Batch<Metrics>) -> Result<(), DeliveryError> {
        let mut acc = self.0.accumulator.lock().unwrap_or_else(|p| p.into_inner());
        acc.add(batch.resources(), &self.0.translation);
        Ok(())
    }
}

struct Server {
    name: String,
    endpoint: String,
    state: Arc<State>,
    running: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

#[async_trait]
impl Lifecycle for Server {
    async fn start(&self) -> Result<(), StartError> {
        let listener = tokio::net::TcpListener::bind(&self.endpoint)
            .await
            .map_err(|e| {
                StartError::new(
                    &self.name,
                    format!("cannot listen on {}: {e}", self.endpoint),
                )
            })?;
        let state = self.state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| {
                let state = state.clone();
                async move {
                    let (format, body, gzip) = state.scrape(&headers);
                    let mut response = (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, format.content_type())],
                        body,
                    )
                        .into_response();
                    if gzip {
                        response.headers_mut().insert(
                            header::CONTENT_ENCODING,
                            header::HeaderValue::from_static("gzip"),
                        );
                    }
                    response
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(exporter = %name, error = %e, "the scrape endpoint stopped");
            }
        });
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, task));
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let Some((stop, task)) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let _ = stop.send(());
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
}
