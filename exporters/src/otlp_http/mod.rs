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
use sluice_pipeline::codec::encode_json;
use sluice_pipeline::exporter::{
    Export, HelperSettings, PartialRejections, QueueSettings, RetrySettings, export_signals,
};
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, PerSignal,
    Signal, decode_config,
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
        let mut urls: PerSignal<Option<reqwest::Url>> = PerSignal::default();
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
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                    *urls.get_mut(*signal) = Some(u)
                }
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
            local_delivery: false,
        };
        let exporter = Arc::new(OtlpHttpExporter {
            client,
            headers,
            urls,
            encoding: cfg.encoding,
            compression: cfg.compression,
            rejected: PartialRejections::new(&name, ctx),
        });
        Ok(export_signals(&name, &settings, signals, exporter, ctx))
    }
}

/// One destination serving every signal, each at its own URL.
pub struct OtlpHttpExporter {
    client: reqwest::Client,
    headers: HeaderMap,
    urls: PerSignal<Option<reqwest::Url>>,
    encoding: Encoding,
    compression: Compression,
    rejected: PartialRejections,
}

impl OtlpHttpExporter {
    fn body<S: Signal>(&self, batch: &Batch<S>) -> Result<Vec<u8>, DeliveryError> {
        let mut body = Vec::new();
        match self.encoding {
            Encoding::Proto => batch.write_proto(&mut body),
            Encoding::Json => encode_json::<S>(batch.resources(), &mut body).map_err(|e| {
                DeliveryError::permanent(format!("cannot encode as OTLP/JSON: {e}"))
            })?,
        }
        self.compression
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
            json_response::<S>(body)
        } else {
            S::Response::decode(body).ok()
        };
        if let Some(response) = response {
            self.rejected.record::<S>(&response);
        }
    }
}

/// An OTLP/JSON export response. OTLP/JSON writes 64-bit integers as decimal strings
/// (`"rejectedSpans": "2"`), which the serde types do not take; numbers are accepted too.
fn json_response<S: Signal>(body: &[u8]) -> Option<S::Response> {
    let mut doc = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    if let Some(partial) = doc
        .get_mut("partialSuccess")
        .and_then(|p| p.as_object_mut())
    {
        for (key, value) in partial.iter_mut() {
            if key.starts_with("rejected")
                && let Some(n) = value.as_str().and_then(|s| s.trim().parse::<i64>().ok())
            {
                *value = n.into();
            }
        }
    }
    serde_json::from_value(doc).ok()
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
        let Some(url) = self.urls.get(S::KIND) else {
            return Err(DeliveryError::permanent(format!(
                "no URL configured for {}",
                S::KIND
            )));
        };
        let body = self.body(batch)?;
        let mut request = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .header(
                CONTENT_TYPE,
                match self.encoding {
                    Encoding::Proto => "application/x-protobuf",
                    Encoding::Json => "application/json",
                },
            );
        if let Some(encoding) = self.compression.header() {
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
        let body = http::read_body(response, 1024 * 1024).await;
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
