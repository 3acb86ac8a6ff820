use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use sluice_config::{ByteSize, Duration};

use super::connections::ConnectionPolicy;
use super::unpack::Compression;
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
    /// confignet's transport: `tcp` (default), `tcp4` or `tcp6`; the family follows from
    /// the address `endpoint` resolves to.
    pub transport: ServerTransport,
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
    /// sluice's own key: how long a new connection has to send its first request, TLS and
    /// HTTP/2 handshakes included (default 10s; 0 = no limit). Connections that stay silent
    /// would otherwise hold a file descriptor and a `max_connections` slot forever.
    pub read_header_timeout: Duration,
    /// sluice's own key: connections served at once on each listening address (default
    /// 4096); the ones over it are closed as soon as they are accepted.
    pub max_connections: usize,
    /// configgrpc's `keepalive` keys.
    pub keepalive: GrpcKeepalive,
    /// Keep the request's metadata (gRPC metadata, i.e. its HTTP/2 headers) with its data,
    /// for processors and exporters that act on it (`batch` `metadata_keys`, `attributes`
    /// `from_context`...) (default false).
    pub include_metadata: bool,
}

/// The network a server listens on. Unix sockets, which the collector also offers
/// there, are refused with this list rather than quietly served over TCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerTransport {
    #[default]
    Tcp,
    Tcp4,
    Tcp6,
}

/// `protocols.http.cors`: which web pages may send OTLP from a browser.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to send (`https://app.example.com`; one `*` stands for any run of
    /// characters, `*` alone for every origin). Empty: CORS is off.
    pub allowed_origins: Vec<String>,
    /// Request headers a page may send besides `Accept`, `Content-Type`, `X-Requested-With`
    /// and `Origin` (`*`: any).
    pub allowed_headers: Vec<String>,
    /// How long, in seconds, a browser may keep a preflight's answer (default 0: the
    /// browser's own default).
    pub max_age: u64,
    /// Answer headers a page's script may read besides the CORS-safelisted ones
    /// (`Access-Control-Expose-Headers`).
    pub exposed_headers: Vec<String>,
}

/// What the HTTP server decompresses when `compression_algorithms` is not set: the
/// collector's list.
pub const DEFAULT_COMPRESSION_ALGORITHMS: &[&str] =
    &["", "gzip", "zstd", "zlib", "snappy", "deflate", "lz4"];

/// The default of `max_connections`, for both protocols.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The default of `read_header_timeout`, for both protocols.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of HTTP `idle_timeout` and gRPC `keepalive.server_parameters.max_connection_idle`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            transport: ServerTransport::Tcp,
            max_recv_msg_size_mib: 4,
            tls: None,
            max_concurrent_streams: 100,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            keepalive: GrpcKeepalive::default(),
            include_metadata: false,
        }
    }
}

/// `protocols.grpc.keepalive`, with configgrpc's keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepalive {
    pub server_parameters: KeepaliveServerParameters,
    pub enforcement_policy: KeepaliveEnforcementPolicy,
}

/// `keepalive.server_parameters`. A zero duration means what it means to grpc-go: no limit
/// for the `max_connection_*` keys, grpc-go's default for `time` and `timeout`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    /// A connection without a request in progress for this long is told to go away (GOAWAY).
    /// Default 120s, where grpc-go has no limit: idle connections cost a file descriptor each.
    pub max_connection_idle: Duration,
    /// Any connection is told to go away after this long (default: never).
    pub max_connection_age: Duration,
    /// After `max_connection_age`, requests in progress get this long before the connection is
    /// closed (default: as long as they take).
    pub max_connection_age_grace: Duration,
    /// A connection silent for this long is pinged (default 2h).
    pub time: Duration,
    /// A ping not answered within this closes the connection (default 20s).
    pub timeout: Duration,
}

impl Default for KeepaliveServerParameters {
    fn default() -> Self {
        KeepaliveServerParameters {
            max_connection_idle: DEFAULT_IDLE_TIMEOUT,
            max_connection_age: Duration::default(),
            max_connection_age_grace: Duration::default(),
            time: Duration::default(),
            timeout: Duration::default(),
        }
    }
}

/// `keepalive.enforcement_policy`: accepted for compatibility with collector configs, not
/// enforced (sluice answers every client ping; the HTTP/2 layer keeps at most one answer
/// pending, so a ping flood costs little).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveEnforcementPolicy {
    pub min_time: Duration,
    pub permit_without_stream: bool,
}

/// `protocols.http`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address (default `localhost:4318`).
    pub endpoint: String,
    /// confignet's transport, as for gRPC (default `tcp`).
    pub transport: ServerTransport,
    /// Cross-origin requests from web pages (browser SDKs); off unless `allowed_origins`
    /// names at least one origin.
    pub cors: Option<CorsConfig>,
    /// Headers added to every answer.
    pub response_headers: BTreeMap<String, String>,
    /// The `Content-Encoding`s accepted (default: none, `gzip`, `zstd`, `zlib`, `snappy`,
    /// `deflate`, `lz4`); any other is answered 415.
    pub compression_algorithms: Option<Vec<String>>,
    /// Keep the request's headers with its data, for processors and exporters that act on
    /// them (`batch` `metadata_keys`, `attributes` `from_context`...) (default false).
    pub include_metadata: bool,
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
    /// How long a request's body may take to arrive once its headers have (default 30s; 0 =
    /// no limit). Also the fallback of `read_header_timeout` and `idle_timeout` set to 0.
    pub read_timeout: Duration,
    /// How long a new connection has to send its first request's headers, TLS handshake
    /// included (default 10s; 0 = `read_timeout`).
    pub read_header_timeout: Duration,
    /// How long a request may take from its headers to the end of its answer; over it the
    /// connection is closed (default 0 = no limit, as in the collector's OTLP receiver).
    pub write_timeout: Duration,
    /// How long a connection may wait for its next request after an answer (default 120s;
    /// 0 = `read_timeout`).
    pub idle_timeout: Duration,
    /// Whether a connection may carry more than one request (default true).
    pub keep_alives_enabled: bool,
    /// sluice's own key: connections served at once on each listening address (default
    /// 4096); the ones over it are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// The default of HTTP `read_timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            transport: ServerTransport::Tcp,
            cors: None,
            response_headers: BTreeMap::new(),
            compression_algorithms: None,
            include_metadata: false,
            max_request_body_size: ByteSize(20 * 1024 * 1024),
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            tls: None,
            read_timeout: DEFAULT_READ_TIMEOUT,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            write_timeout: Duration::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_alives_enabled: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// A duration of 0 is "not set".
fn nonzero(d: Duration) -> Option<std::time::Duration> {
    Some(d.0).filter(|d| !d.is_zero())
}

impl GrpcConfig {
    pub(crate) fn connection_policy(&self) -> ConnectionPolicy {
        let keepalive = &self.keepalive.server_parameters;
        ConnectionPolicy {
            max_connections: self.max_connections,
            first_request_timeout: nonzero(self.read_header_timeout),
            idle_timeout: nonzero(keepalive.max_connection_idle),
            write_timeout: None,
            max_age: nonzero(keepalive.max_connection_age),
            max_age_grace: nonzero(keepalive.max_connection_age_grace),
            one_request_per_connection: false,
        }
    }
}

impl HttpConfig {
    /// The request encodings accepted, from `compression_algorithms` (names checked by
    /// [`HttpConfig::unknown_compression`]).
    pub(crate) fn compressions(&self) -> Vec<Compression> {
        let names: Vec<&str> = match &self.compression_algorithms {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_COMPRESSION_ALGORITHMS.to_vec(),
        };
        let mut out: Vec<Compression> = names
            .iter()
            .filter_map(|n| Compression::from_name(&n.trim().to_ascii_lowercase()).ok())
            .collect();
        // `snappy` senders exist in both forms; the framed one is told by its first bytes.
        if out.contains(&Compression::Snappy) {
            out.push(Compression::SnappyFramed);
        }
        // An uncompressed body needs no decompressor: upstream passes it on whatever the list
        // says (an empty list turns decompression off, not requests).
        if !out.contains(&Compression::None) {
            out.push(Compression::None);
        }
        out
    }

    /// The first name in `compression_algorithms` sluice cannot decompress, with its index.
    pub(crate) fn unknown_compression(&self) -> Option<(usize, &str)> {
        self.compression_algorithms.as_ref().and_then(|list| {
            list.iter()
                .enumerate()
                .find(|(_, n)| Compression::from_name(&n.trim().to_ascii_lowercase()).is_err())
                .map(|(i, n)| (i, n.as_str()))
        })
    }

    /// How long the body of a request may take to arrive (`None`: no limit).
    pub(crate) fn body_read_timeout(&self) -> Option<std::time::Duration> {
        nonzero(self.read_timeout)
    }

    /// As Go's net/http, which the collector's keys configure: a header or idle timeout of 0
    /// falls back to `read_timeout`.
    pub(crate) fn connection_policy(&self) -> ConnectionPolicy {
        let or_read_timeout = |d: Duration| nonzero(d).or_else(|| self.body_read_timeout());
        ConnectionPolicy {
            max_connections: self.max_connections,
            first_request_timeout: or_read_timeout(self.read_header_timeout),
            idle_timeout: or_read_timeout(self.idle_timeout),
            write_timeout: nonzero(self.write_timeout),
            max_age: None,
            max_age_grace: None,
            one_request_per_connection: !self.keep_alives_enabled,
        }
    }
}
