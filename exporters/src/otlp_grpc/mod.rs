//! The `otlp_grpc` exporter (alias `otlp`): OTLP over gRPC. Batches are encoded once from the
//! pipeline's data and sent as bytes, so no request struct is built per export.

mod codec;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, SignalKind};
use sluice_pipeline::exporter::{
    Export, HelperSettings, PartialRejections, QueueSettings, RetrySettings, export_signals,
};
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Signal,
    decode_config,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::http::TlsSettings;
use codec::RawCodec;

/// `exporters: otlp_grpc:` (or `otlp:`), with the OTel Collector's keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// `host:port` (TLS unless `tls.insecure`), or a URL whose scheme decides: `http://` is
    /// plaintext, `https://` TLS.
    pub endpoint: String,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: GrpcCompression,
    /// Extra request metadata, e.g. an API key.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Limit on one export call (default 5s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default)]
    pub tls: TlsSettings,
    /// Accepted for compatibility; sluice uses one connection per exporter.
    #[serde(default)]
    pub balancer_name: Option<String>,
    #[serde(default)]
    pub sending_queue: QueueSettings,
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
}

fn default_timeout() -> Duration {
    Duration(StdDuration::from_secs(5))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrpcCompression {
    #[default]
    Gzip,
    Zstd,
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
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: OtlpGrpcConfig = decode_config(config)?;
        let at = |key: &str, message: String| {
            Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.{key}", config.path),
                message,
            )
        };
        let channel =
            connect(&cfg).map_err(|(key, message)| ConfigErrors::from(at(key, message)))?;
        let mut metadata = MetadataMap::new();
        for (name, value) in &cfg.headers {
            let key = AsciiMetadataKey::from_str(&name.to_ascii_lowercase()).map_err(|e| {
                ConfigErrors::from(at("headers", format!("header name `{name}`: {e}")))
            })?;
            let value = AsciiMetadataValue::from_str(value).map_err(|e| {
                ConfigErrors::from(at("headers", format!("header `{name}` value: {e}")))
            })?;
            metadata.insert(key, value);
        }
        let compression = match cfg.compression {
            GrpcCompression::Gzip => Some(CompressionEncoding::Gzip),
            GrpcCompression::Zstd => Some(CompressionEncoding::Zstd),
            GrpcCompression::None => None,
        };
        let name = config.id.to_string();
        let settings = HelperSettings {
            queue: cfg.sending_queue,
            retry: cfg.retry_on_failure,
            timeout: cfg.timeout.0,
            local_delivery: false,
        };
        let exporter = Arc::new(OtlpGrpcExporter {
            channel,
            metadata,
            compression,
            rejected: PartialRejections::new(&name, ctx),
        });
        Ok(export_signals(&name, &settings, signals, exporter, ctx))
    }
}

/// A lazily connected channel: the collector starts even when the destination is down (the
/// queue and retries take care of that).
fn connect(cfg: &OtlpGrpcConfig) -> Result<Channel, (&'static str, String)> {
    let (tls, url) = match cfg.endpoint.split_once("://") {
        Some(("http", _)) => (false, cfg.endpoint.clone()),
        Some(("https", _)) => (true, cfg.endpoint.clone()),
        Some((scheme, _)) => {
            return Err((
                "endpoint",
                format!("scheme must be http or https, not {scheme}"),
            ));
        }
        None if cfg.tls.insecure => (false, format!("http://{}", cfg.endpoint)),
        None => (true, format!("https://{}", cfg.endpoint)),
    };
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| ("endpoint", format!("`{}`: {e}", cfg.endpoint)))?
        .connect_timeout(StdDuration::from_secs(10))
        .tcp_nodelay(true);
    if !tls {
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
        grpc.ready()
            .await
            .map_err(|e| DeliveryError::retryable(format!("cannot connect: {e}")))?;
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
