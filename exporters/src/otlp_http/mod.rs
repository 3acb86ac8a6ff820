//! The `otlp_http` exporter (alias `otlphttp`): OTLP over HTTP to any OTLP backend or another
//! collector, protobuf or JSON, compressed, with the OTLP retry rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, SignalKind};
use sluice_pipeline::codec::{encode_json, encode_proto, encoded_proto_len};
use sluice_pipeline::exporter::{
    Export, ExportHelper, HelperSettings, QueueSettings, RetrySettings,
};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo,
    Logs, Metrics, Signal, SignalConsumer, Traces, decode_config,
};

use crate::http::{self, Compression, TlsSettings};

/// `exporters: otlp_http:` (or `otlphttp:`), with the OTel Collector's keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL; `/v1/traces`, `/v1/metrics` or `/v1/logs` is appended per signal.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, instead of `endpoint` + `/v1/traces`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Extra request headers, e.g. an API key from `${env:...}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Limit on one request (default 30s, as in the collector).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub sending_queue: QueueSettings,
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
}

fn default_timeout() -> Duration {
    Duration(StdDuration::from_secs(30))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

pub struct OtlpHttpExporterFactory;

impl ExporterFactory for OtlpHttpExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "otlp_http",
            aliases: &["otlphttp"],
            signals: &SignalKind::ALL,
            description: "sends OTLP over HTTP (protobuf or JSON)",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: OtlpHttpConfig = decode_config(config)?;
        let at = |key: &str, message: String| {
            Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.{key}", config.path),
                message,
            )
        };
        let mut errors = Vec::new();
        let client = http::client(&cfg.tls, cfg.timeout.0).map_err(|e| at("tls", e));
        let headers = http::headers(&cfg.headers).map_err(|e| at("headers", e));
        let mut urls = Vec::new();
        for signal in signals {
            let (key, explicit, suffix) = match signal {
                SignalKind::Traces => ("traces_endpoint", &cfg.traces_endpoint, "v1/traces"),
                SignalKind::Metrics => ("metrics_endpoint", &cfg.metrics_endpoint, "v1/metrics"),
                SignalKind::Logs => ("logs_endpoint", &cfg.logs_endpoint, "v1/logs"),
            };
            let url = match (explicit, &cfg.endpoint) {
                (Some(url), _) => url.clone(),
                (None, Some(base)) => format!("{}/{suffix}", base.trim_end_matches('/')),
                (None, None) => {
                    errors.push(at("endpoint", format!("set `endpoint` or `{key}`")));
                    continue;
                }
            };
            match reqwest::Url::parse(&url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => urls.push((*signal, u)),
                Ok(u) => errors.push(at(
                    key,
                    format!("`{url}`: scheme must be http or https, not {}", u.scheme()),
                )),
                Err(e) => errors.push(at(
                    if explicit.is_some() { key } else { "endpoint" },
                    format!("`{url}` is not a valid URL: {e}"),
                )),
            }
        }
        let (client, headers) = match (client, headers) {
            (Ok(c), Ok(h)) if errors.is_empty() => (c, h),
            (c, h) => {
                errors.extend(c.err());
                errors.extend(h.err());
                return Err(ConfigErrors(errors));
            }
        };
        let name = config.id.to_string();
        let settings = HelperSettings {
            queue: cfg.sending_queue,
            retry: cfg.retry_on_failure,
            timeout: cfg.timeout.0,
        };
        let mut built = BuiltExporter {
            consumers: Vec::new(),
            lifecycles: Vec::new(),
        };
        for (signal, url) in urls {
            let target = Target {
                client: client.clone(),
                headers: headers.clone(),
                url,
                encoding: cfg.encoding,
                compression: cfg.compression,
            };
            let (consumer, lifecycle) = match signal {
                SignalKind::Traces => helper::<Traces>(&name, target, &settings, ctx),
                SignalKind::Metrics => helper::<Metrics>(&name, target, &settings, ctx),
                SignalKind::Logs => helper::<Logs>(&name, target, &settings, ctx),
            };
            built.consumers.push(consumer);
            built.lifecycles.push(lifecycle);
        }
        Ok(built)
    }
}

fn helper<S: Signal + SignalConsumer>(
    name: &str,
    target: Target,
    settings: &HelperSettings,
    ctx: &BuildContext,
) -> (AnyConsumer, Arc<dyn sluice_pipeline::Lifecycle>) {
    let rejected = ctx.telemetry.metrics.counter(
        &format!("sluice_exporter_partially_rejected_{}", S::ITEM_NAME),
        &format!(
            "Number of {} the destination rejected in a partial success",
            S::ITEM_NAME
        ),
        &[("exporter", name)],
    );
    let exporter = Arc::new(OtlpHttpExporter {
        name: name.to_string(),
        target,
        rejected,
    });
    let (consumer, lifecycle) =
        ExportHelper::<S>::new(name, settings.clone(), exporter, ctx).parts();
    (S::to_any(consumer), lifecycle)
}

struct Target {
    client: reqwest::Client,
    headers: HeaderMap,
    url: reqwest::Url,
    encoding: Encoding,
    compression: Compression,
}

pub struct OtlpHttpExporter {
    name: String,
    target: Target,
    rejected: Counter,
}

impl OtlpHttpExporter {
    fn body<S: Signal>(&self, batch: &Batch<S>) -> Result<Vec<u8>, DeliveryError> {
        let mut body = Vec::new();
        match self.target.encoding {
            Encoding::Proto => {
                body.reserve(encoded_proto_len::<S>(batch.resources()));
                encode_proto::<S>(batch.resources(), &mut body);
            }
            Encoding::Json => encode_json::<S>(batch.resources(), &mut body).map_err(|e| {
                DeliveryError::permanent(format!("cannot encode as OTLP/JSON: {e}"))
            })?,
        }
        self.target
            .compression
            .compress(body)
            .map_err(|e| DeliveryError::permanent(format!("cannot compress the request: {e}")))
    }

    /// A success may still carry a partial rejection: that is logged and counted, never
    /// retried (the backend said it will not take those items).
    fn partial_success<S: Signal>(&self, content_type: &str, body: &[u8]) {
        if body.is_empty() {
            return;
        }
        let response = if content_type.starts_with("application/json") {
            serde_json::from_slice::<S::Response>(body).ok()
        } else {
            S::Response::decode(body).ok()
        };
        if let Some((count, message)) = response.as_ref().and_then(S::rejected) {
            self.rejected.add(count.max(0) as u64);
            tracing::warn!(exporter = %self.name, rejected = count, message, "destination rejected part of the data");
        }
    }
}

/// The `message` of a google.rpc.Status error body, for the log.
fn status_message(content_type: &str, body: &[u8]) -> String {
    if content_type.starts_with("application/json") {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(m) = v.get("message").and_then(|m| m.as_str())
        {
            return m.to_string();
        }
    } else if content_type.starts_with("application/x-protobuf")
        && let Ok(status) = tonic_types::Status::decode(body)
    {
        return status.message;
    }
    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()
}

#[async_trait]
impl<S: Signal> Export<S> for OtlpHttpExporter {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let body = self.body(batch)?;
        let t = &self.target;
        let mut request = t
            .client
            .post(t.url.clone())
            .headers(t.headers.clone())
            .header(
                CONTENT_TYPE,
                match t.encoding {
                    Encoding::Proto => "application/x-protobuf",
                    Encoding::Json => "application/json",
                },
            );
        if let Some(encoding) = t.compression.header() {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            self.partial_success::<S>(&content_type, &body);
            return Ok(());
        }
        Err(http::classify(
            status,
            &headers,
            &status_message(&content_type, &body),
        ))
    }
}
