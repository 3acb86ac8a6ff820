//! The `otlp_http` exporter (alias `otlphttp`): OTLP over HTTP to any OTLP backend or another
//! collector, protobuf or JSON, compressed, with the OTLP retry rules.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Optional, SignalKind};
use sluice_pipeline::codec::encode_json;
use sluice_pipeline::config_keys::{NoEffect, decode_section, problem};
use sluice_pipeline::exporter::{Export, HelperSettings, PartialRejections, export_signals};
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, PerSignal,
    Signal,
};

use crate::http::{
    self, ClientSettings, Compression, CompressionParams, CookieJar, CookiesSettings, HeaderList,
    TlsSettings,
};

/// Keys of the Collector's `otlp_http` exporter that cannot mean anything for sluice.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "read_buffer_size",
        "a buffer size of Go's HTTP transport; sluice's client sizes its buffers itself",
    ),
    NoEffect::new(
        "write_buffer_size",
        "a buffer size of Go's HTTP transport; sluice's client sizes its buffers itself",
    ),
    NoEffect::new(
        "profiles_endpoint",
        "sluice has no profiles signal, so no profiles are ever sent",
    ),
    NoEffect::new(
        "tls.include_insecure_cipher_suites",
        "sluice's TLS has no insecure cipher suites to add",
    ),
];

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
    /// Full URL for metrics, instead of `endpoint` + `/v1/metrics`.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, instead of `endpoint` + `/v1/logs`.
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// `gzip` (default), `zstd`, `snappy`, `x-snappy-framed`, `zlib`, `deflate`, `lz4` or
    /// `none`.
    #[serde(default)]
    pub compression: Compression,
    /// The codec's `level`.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Extra request headers (a map, or a list of `{name, value}`), e.g. an API key.
    #[serde(default)]
    pub headers: HeaderList,
    #[serde(default)]
    pub tls: TlsSettings,
    /// An HTTP proxy for every request (default: `HTTPS_PROXY` / `HTTP_PROXY`).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Idle connections kept in all (default 100; 0: no limit).
    #[serde(default)]
    pub max_idle_conns: Option<usize>,
    /// Idle connections kept per host (default: no limit of its own).
    #[serde(default)]
    pub max_idle_conns_per_host: Option<usize>,
    /// Requests in flight at most, which bounds the connections over HTTP/1.1 (default 0:
    /// no limit).
    #[serde(default)]
    pub max_conns_per_host: usize,
    /// Idle connections are closed after this (default 90s).
    #[serde(default)]
    pub idle_conn_timeout: Option<sluice_config::Duration>,
    /// A new connection for every request (default false).
    #[serde(default)]
    pub disable_keep_alives: bool,
    /// Offer HTTP/2 on TLS connections (default true).
    #[serde(default)]
    pub force_attempt_http2: Option<bool>,
    /// Ping an HTTP/2 connection idle for this long (default 0: off).
    #[serde(default)]
    pub http2_read_idle_timeout: Option<sluice_config::Duration>,
    /// Close the connection when a ping is not answered within this (default 15s).
    #[serde(default)]
    pub http2_ping_timeout: Option<sluice_config::Duration>,
    /// Keep cookies the server sets and send them back (off unless present).
    #[serde(default)]
    pub cookies: Optional<CookiesSettings>,
    /// Authenticator extensions: refused with a clear error (not supported yet).
    #[serde(default)]
    pub auth: Option<serde::de::IgnoredAny>,
    /// Middleware extensions: only an empty list is accepted.
    #[serde(default)]
    pub middlewares: Vec<serde::de::IgnoredAny>,
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

    /// A request may take 30 s, as in the OTel Collector's `otlphttp`.
    fn helper_defaults(&self) -> HelperSettings {
        HelperSettings {
            timeout: StdDuration::from_secs(30),
            ..HelperSettings::default()
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: OtlpHttpConfig = decode_section(config, NO_EFFECT, &ctx.warnings)?;
        let at = |key: &str, message: String| -> Diagnostic { problem(config, key, message) };
        let mut errors = Vec::new();
        errors.extend(extension_problems(
            config,
            cfg.auth.is_some(),
            cfg.middlewares.len(),
        ));
        if let Err(e) = cfg.compression.check_level(cfg.compression_params.level) {
            errors.push(at("compression_params.level", e));
        }
        let connections = ClientSettings {
            proxy_url: cfg.proxy_url.clone(),
            max_idle_conns: cfg.max_idle_conns,
            max_idle_conns_per_host: cfg.max_idle_conns_per_host,
            max_conns_per_host: cfg.max_conns_per_host,
            idle_conn_timeout: cfg.idle_conn_timeout,
            disable_keep_alives: cfg.disable_keep_alives,
            force_attempt_http2: cfg.force_attempt_http2,
            http2_read_idle_timeout: cfg.http2_read_idle_timeout,
            http2_ping_timeout: cfg.http2_ping_timeout,
        };
        let client = connections.client(&cfg.tls, settings.timeout).map_err(|e| {
            at(
                if e.starts_with("proxy_url") {
                    "proxy_url"
                } else {
                    "tls"
                },
                e,
            )
        });
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
        let exporter = Arc::new(OtlpHttpExporter {
            client,
            headers,
            urls,
            encoding: cfg.encoding,
            compression: cfg.compression,
            level: cfg.compression_params.level,
            in_flight: connections.in_flight_limit(),
            cookies: cfg.cookies.is_some().then(CookieJar::default),
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
    level: i32,
    /// `max_conns_per_host`: requests in flight at most.
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
    cookies: Option<CookieJar>,
    rejected: PartialRejections,
}

/// `auth` and `middlewares` name extensions sluice does not have yet: a clear error rather
/// than sending without the authentication the config asks for.
pub(crate) fn extension_problems(
    config: &ComponentConfig,
    auth: bool,
    middlewares: usize,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if auth {
        out.push(problem(
            config,
            "auth",
            "authenticator extensions are not supported yet; put the credentials in `headers` \
             (e.g. `Authorization: Bearer ${env:TOKEN}`)",
        ));
    }
    if middlewares > 0 {
        out.push(problem(
            config,
            "middlewares",
            "middleware extensions are not supported yet",
        ));
    }
    out
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
            .compress_at(body, self.level)
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
        if let Some(cookie) = self.cookies.as_ref().and_then(CookieJar::header) {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        let _permit = match &self.in_flight {
            Some(limit) => Some(limit.clone().acquire_owned().await.map_err(|_| {
                DeliveryError::retryable("the exporter is shutting down".to_string())
            })?),
            None => None,
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(jar) = &self.cookies {
            jar.store(&headers);
        }
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
