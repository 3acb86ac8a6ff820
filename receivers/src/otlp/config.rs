use serde::{Deserialize, Deserializer};
use sluice_config::ByteSize;

use crate::tls::ServerTlsSettings;

/// `receivers: otlp:`, with the OTel Collector's keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub protocols: Protocols,
}

/// A protocol is served when its key is present, even with no value (`grpc:`), as in the
/// OTel Collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    #[serde(deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `protocols.grpc`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address (default `localhost:4317`).
    pub endpoint: String,
    /// Largest message accepted, in MiB, both as declared in its gRPC prefix (checked before it
    /// is read) and after decompression (default 4, as in the collector). A larger one is
    /// refused with RESOURCE_EXHAUSTED without RetryInfo, so clients do not retry it.
    pub max_recv_msg_size_mib: u64,
    /// Serve TLS with this certificate (and require client certificates when
    /// `client_ca_file` is set).
    pub tls: Option<ServerTlsSettings>,
    /// Concurrent requests (HTTP/2 streams) one connection may have open (default 100): bounds
    /// what a single client can hold in memory at once.
    pub max_concurrent_streams: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            max_recv_msg_size_mib: 4,
            tls: None,
            max_concurrent_streams: 100,
        }
    }
}

/// `protocols.http`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address (default `localhost:4318`).
    pub endpoint: String,
    /// Largest body accepted, both as sent and after decompression (default 20MiB).
    pub max_request_body_size: ByteSize,
    /// Default `/v1/traces`.
    pub traces_url_path: String,
    /// Default `/v1/metrics`.
    pub metrics_url_path: String,
    /// Default `/v1/logs`.
    pub logs_url_path: String,
    /// Serve HTTPS with this certificate (and require client certificates when
    /// `client_ca_file` is set).
    pub tls: Option<ServerTlsSettings>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            max_request_body_size: ByteSize(20 * 1024 * 1024),
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            tls: None,
        }
    }
}
