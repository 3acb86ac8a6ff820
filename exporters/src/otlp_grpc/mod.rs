//! The `otlp_grpc` exporter (alias `otlp`): OTLP over gRPC. Batches are encoded once from the
//! pipeline's data and sent as bytes, so no request struct is built per export.

pub(crate) mod codec;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Duration, Optional, SignalKind};
use sluice_pipeline::config_keys::{NoEffect, decode_section, problem};
use sluice_pipeline::exporter::{Export, HelperSettings, PartialRejections, export_signals};
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Signal,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::http::{HeaderList, TlsSettings};
use codec::RawCodec;

/// Keys of the Collector's `otlp_grpc` exporter that cannot mean anything for sluice.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "read_buffer_size",
        "a buffer size of grpc-go; sluice's HTTP/2 client sizes its buffers itself",
    ),
    NoEffect::new(
        "write_buffer_size",
        "a buffer size of grpc-go; sluice's HTTP/2 client sizes its buffers itself",
    ),
    NoEffect::new(
        "tls.include_insecure_cipher_suites",
        "sluice's TLS has no insecure cipher suites to add",
    ),
];

/// `exporters: otlp_grpc:` (or `otlp:`), with the OTel Collector's keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// `host:port`, or with a scheme: `https://` always uses TLS; `http://` and no scheme use
    /// TLS unless `tls.insecure: true` (as in the OTel Collector). `dns:///host:port` and
    /// `passthrough:///host:port` are accepted.
    pub endpoint: String,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: GrpcCompression,
    /// Extra request metadata (a map, or a list of `{name, value}`), e.g. an API key.
    #[serde(default)]
    pub headers: HeaderList,
    #[serde(default)]
    pub tls: TlsSettings,
    /// HTTP/2 pings that keep the connection alive and find a dead one (off unless present).
    #[serde(default)]
    pub keepalive: Optional<Keepalive>,
    /// Wait, within the export's timeout, for the connection to come up instead of failing at
    /// once while it is down (default false).
    #[serde(default)]
    pub wait_for_ready: bool,
    /// `pick_first` or `round_robin`: sluice keeps one connection, so either is the first.
    #[serde(default)]
    pub balancer_name: Option<String>,
    /// The `:authority` sent instead of the endpoint's host:port.
    #[serde(default)]
    pub authority: Option<String>,
    /// User-Agent header (default sluice's own).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Authenticator extensions: refused with a clear error (not supported yet).
    #[serde(default)]
    pub auth: Option<serde::de::IgnoredAny>,
    /// Middleware extensions: only an empty list is accepted.
    #[serde(default)]
    pub middlewares: Vec<serde::de::IgnoredAny>,
}

/// `keepalive`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    /// Ping after this much idle time (default 10s).
    pub time: Duration,
    /// Close the connection when a ping is not answered within this (default 10s).
    pub timeout: Duration,
    /// Ping even with no call in flight (default false).
    pub permit_without_stream: bool,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            time: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            permit_without_stream: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrpcCompression {
    #[default]
    Gzip,
    Zstd,
    /// Accepted by the Collector; refused here with a clear error.
    Snappy,
    #[serde(alias = "")]
    None,
}

pub struct OtlpGrpcExporterFactory;

impl ExporterFactory for OtlpGrpcExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "otlp_grpc",
            aliases: &["otlp"],
            signals: &SignalKind::ALL,
            description: "sends OTLP over gRPC",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: OtlpGrpcConfig = decode_section(config, NO_EFFECT, &ctx.warnings)?;
        let mut errors =
            crate::otlp_http::extension_problems(config, cfg.auth.is_some(), cfg.middlewares.len());
        if cfg.compression == GrpcCompression::Snappy {
            errors.push(problem(
                config,
                "compression",
                "snappy is not available for gRPC in sluice; use gzip or zstd",
            ));
        }
        if let Some(name) = &cfg.balancer_name
            && !matches!(name.as_str(), "pick_first" | "round_robin")
        {
            errors.push(problem(
                config,
                "balancer_name",
                format!("unknown balancer `{name}`; known: pick_first, round_robin"),
            ));
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in &cfg.headers.0 {
            let key = AsciiMetadataKey::from_str(&name.to_ascii_lowercase());
            let value = AsciiMetadataValue::from_str(value);
            match (key, value) {
                (Ok(k), Ok(v)) => {
                    metadata.insert(k, v);
                }
                (Err(e), _) => errors.push(problem(
                    config,
                    "headers",
                    format!("header name `{name}`: {e}"),
                )),
                (_, Err(e)) => errors.push(problem(
                    config,
                    "headers",
                    format!("header `{name}` value: {e}"),
                )),
            }
        }
        let target = Target::parse(&cfg);
        if let Ok(t) = &target
            && t.plaintext_asked_for_but_tls
        {
            ctx.warnings.push(problem(
                config,
                "endpoint",
                format!(
                    "`http://` does not turn TLS off for gRPC (as in the OTel Collector): sluice \
                     connects to {} with TLS. Set `tls.insecure: true` for plaintext",
                    t.address
                ),
            ));
        }
        if let Some(name) = cfg.balancer_name.as_deref().filter(|n| *n == "round_robin") {
            ctx.warnings.push(problem(
                config,
                "balancer_name",
                format!(
                    "accepted; `{name}` has no effect in sluice: it keeps one HTTP/2 connection \
                     per exporter and multiplexes every call on it"
                ),
            ));
        }
        let channel = target.and_then(|t| connect(&cfg, &t));
        let channel = match channel {
            Ok(c) if errors.is_empty() => c,
            Ok(_) => return Err(ConfigErrors(errors)),
            Err((key, message)) => {
                errors.push(problem(config, key, message));
                return Err(ConfigErrors(errors));
            }
        };
        let compression = match cfg.compression {
            GrpcCompression::Gzip => Some(CompressionEncoding::Gzip),
            GrpcCompression::Zstd => Some(CompressionEncoding::Zstd),
            GrpcCompression::None | GrpcCompression::Snappy => None,
        };
        let name = config.id.to_string();
        let exporter = Arc::new(OtlpGrpcExporter {
            channel,
            metadata,
            compression,
            wait_for_ready: cfg.wait_for_ready,
            rejected: PartialRejections::new(&name, ctx),
        });
        Ok(export_signals(&name, &settings, signals, exporter, ctx))
    }
}

/// Where to connect and how, from `endpoint` and `tls.insecure`.
#[derive(Debug, PartialEq)]
struct Target {
    /// `host:port`.
    address: String,
    tls: bool,
    /// `http://` without `tls.insecure`: the user may expect plaintext, but upstream (and
    /// sluice) use TLS.
    plaintext_asked_for_but_tls: bool,
}

impl Target {
    fn parse(cfg: &OtlpGrpcConfig) -> Result<Target, (&'static str, String)> {
        let endpoint = cfg.endpoint.trim();
        let (scheme, address) = match endpoint.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, endpoint),
        };
        let address = match scheme {
            None | Some("http") | Some("https") => address,
            // gRPC resolver URIs: the name after the (empty) authority.
            Some("dns") | Some("passthrough") => address.trim_start_matches('/'),
            Some("unix") => {
                return Err((
                    "endpoint",
                    "unix sockets are not supported yet; use host:port".into(),
                ));
            }
            Some(other) => {
                return Err((
                    "endpoint",
                    format!(
                        "scheme `{other}` is not supported; use host:port, http(s)://host:port or dns:///host:port"
                    ),
                ));
            }
        };
        let address = address.trim_end_matches('/').to_string();
        if address.is_empty() {
            return Err(("endpoint", "must name a host and port".into()));
        }
        let tls = scheme == Some("https") || !cfg.tls.insecure;
        Ok(Target {
            plaintext_asked_for_but_tls: scheme == Some("http") && tls,
            address,
            tls,
        })
    }
}

/// A lazily connected channel: the collector starts even when the destination is down (the
/// queue and retries take care of that).
fn connect(cfg: &OtlpGrpcConfig, target: &Target) -> Result<Channel, (&'static str, String)> {
    let scheme = if target.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}", target.address);
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| ("endpoint", format!("`{}`: {e}", cfg.endpoint)))?
        .connect_timeout(StdDuration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(keepalive) = cfg.keepalive.as_ref() {
        endpoint = endpoint
            .http2_keep_alive_interval(keepalive.time.0)
            .keep_alive_timeout(keepalive.timeout.0)
            .keep_alive_while_idle(keepalive.permit_without_stream);
    }
    if let Some(authority) = &cfg.authority {
        let origin = format!("{scheme}://{authority}")
            .parse::<http::Uri>()
            .map_err(|e| ("authority", format!("`{authority}`: {e}")))?;
        endpoint = endpoint.origin(origin);
    }
    if let Some(agent) = &cfg.user_agent {
        endpoint = endpoint
            .user_agent(agent.as_str())
            .map_err(|e| ("user_agent", format!("`{agent}`: {e}")))?;
    }
    if !target.tls {
        return Ok(endpoint.connect_lazy());
    }
    let mut tls_config = cfg.tls.client_config().map_err(|e| ("tls", e))?;
    tls_config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(endpoint.connect_with_connector_lazy(codec::TlsConnector::new(tls_config)))
}

/// One connection serving every signal.
pub struct OtlpGrpcExporter {
    channel: Channel,
    metadata: MetadataMap,
    compression: Option<CompressionEncoding>,
    /// Keep trying to connect until the attempt's timeout instead of failing at once.
    wait_for_ready: bool,
    rejected: PartialRejections,
}

/// The OTLP/gRPC retry rules: these codes are transient; RESOURCE_EXHAUSTED only when the
/// server says when to come back (RetryInfo); every other code is permanent.
pub fn classify(status: &Status) -> DeliveryError {
    // A status tonic made from a local failure (connection refused or reset, TLS handshake,
    // HTTP/2 error) carries that error as its source; a server's answer has none. Network
    // errors are retried whatever code tonic gave them (a failed connection can come back as
    // UNKNOWN "transport error"), and the log names their cause.
    if let Some(source) = std::error::Error::source(status) {
        let mut reason = String::from("transport error");
        let mut add = |text: String| {
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
        };
        add(status.message().to_string());
        let mut cause = Some(source);
        while let Some(e) = cause {
            add(e.to_string());
            cause = e.source();
        }
        return DeliveryError::retryable(reason);
    }
    let reason = format!("server answered {:?}: {}", status.code(), status.message());
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => DeliveryError::Retryable {
            reason,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => DeliveryError::Retryable {
            reason,
            retry_after,
        },
        _ => DeliveryError::permanent(reason),
    }
}

#[async_trait]
impl<S: Signal> Export<S> for OtlpGrpcExporter {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let mut body = Vec::new();
        batch.write_proto(&mut body);
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if let Some(c) = self.compression {
            grpc = grpc.send_compressed(c);
        }
        let mut pause = StdDuration::from_millis(50);
        loop {
            match grpc.ready().await {
                Ok(()) => break,
                // The helper's per-attempt timeout ends the wait.
                Err(_) if self.wait_for_ready => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(StdDuration::from_secs(1));
                    grpc = tonic::client::Grpc::new(self.channel.clone());
                    if let Some(c) = self.compression {
                        grpc = grpc.send_compressed(c);
                    }
                }
                Err(e) => return Err(DeliveryError::retryable(format!("cannot connect: {e}"))),
            }
        }
        let mut request = tonic::Request::new(bytes::Bytes::from(body));
        *request.metadata_mut() = self.metadata.clone();
        let path = http::uri::PathAndQuery::from_static(S::GRPC_METHOD);
        let response = grpc
            .unary(request, path, RawCodec::<S::Response>::default())
            .await
            .map_err(|status| classify(&status))?;
        self.rejected.record::<S>(response.get_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn config(yaml: &str) -> OtlpGrpcConfig {
        let node = sluice_config::parse_yaml("g.yaml", yaml).unwrap();
        sluice_config::decode(&node, "exporters.otlp").unwrap()
    }

    #[test]
    fn the_scheme_follows_the_collector() {
        let t = |yaml: &str| Target::parse(&config(yaml));
        let plain = t("endpoint: http://collector:4317\ntls: {insecure: true}\n").unwrap();
        assert!(!plain.tls);
        assert_eq!(plain.address, "collector:4317");
        let ambiguous = t("endpoint: http://collector:4317\n").unwrap();
        assert!(ambiguous.tls && ambiguous.plaintext_asked_for_but_tls);
        let secure = t("endpoint: https://collector:4317\ntls: {insecure: true}\n").unwrap();
        assert!(secure.tls && !secure.plaintext_asked_for_but_tls);
        assert!(t("endpoint: collector:4317\n").unwrap().tls);
        assert!(
            !t("endpoint: collector:4317\ntls:\n  insecure: true\n")
                .unwrap()
                .tls
        );
        assert_eq!(
            t("endpoint: dns:///collector:4317\n").unwrap().address,
            "collector:4317"
        );
        assert!(t("endpoint: unix:///run/otel.sock\n").is_err());
        assert!(t("endpoint: ftp://x:1\n").is_err());
    }

    #[test]
    fn keepalive_is_on_when_present() {
        assert!(config("endpoint: a:1\n").keepalive.as_ref().is_none());
        let k = config("endpoint: a:1\nkeepalive:\n").keepalive;
        assert_eq!(k.as_ref().unwrap().time.0, StdDuration::from_secs(10));
        let k = config("endpoint: a:1\nkeepalive: {time: 30s, permit_without_stream: true}\n")
            .keepalive;
        assert!(k.as_ref().unwrap().permit_without_stream);
        assert!(
            config("endpoint: a:1\nkeepalive: {enabled: false}\n")
                .keepalive
                .as_ref()
                .is_none()
        );
    }

    #[test]
    fn otlp_grpc_retry_rules() {
        assert!(!classify(&Status::unavailable("x")).is_permanent());
        assert!(!classify(&Status::deadline_exceeded("x")).is_permanent());
        assert!(classify(&Status::invalid_argument("x")).is_permanent());
        assert!(classify(&Status::resource_exhausted("x")).is_permanent());
        // A local transport failure is retried whatever its code.
        let transport = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(transport.code(), Code::Unknown);
        match classify(&transport) {
            DeliveryError::Retryable { reason, .. } => {
                assert!(reason.contains("connection reset"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let with_info = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(StdDuration::from_secs(3))),
        );
        match classify(&with_info) {
            DeliveryError::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(StdDuration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
    }
}
