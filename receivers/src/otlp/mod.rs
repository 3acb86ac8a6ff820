//! The OTLP receiver: gRPC and HTTP (protobuf and JSON) for traces, metrics and logs.

mod answer_headers;
mod config;
mod connections;
mod grpc;
mod http;
#[cfg(test)]
mod tests;
mod unpack;

pub use config::{
    GrpcConfig, GrpcKeepalive, HttpConfig, KeepaliveEnforcementPolicy, KeepaliveServerParameters,
    OtlpConfig, Protocols,
};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use connections::ConnectionReport;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic};
use sluice_pipeline::config_keys::{NoEffect, decode_section};
use sluice_pipeline::consumer::DEFAULT_ADMISSION_WAIT;
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, DeliveryError, DynConsumer, FactoryInfo, Lifecycle, Outcome, Receiver,
    ReceiverFactory, ReceiverOutputs, Signal, SignalKind, StartError, deliver,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Keys of the collector's OTLP receiver that mean nothing for sluice's.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "protocols.*.tls.ca_file",
        "a server's own trust roots are never used (client certificates are checked against client_ca_file)",
    ),
    NoEffect::new(
        "protocols.*.tls.ca_pem",
        "a server's own trust roots are never used (client certificates are checked against client_ca_file)",
    ),
    NoEffect::new(
        "protocols.*.tls.include_system_ca_certs_pool",
        "a server's own trust roots are never used (client certificates are checked against client_ca_file)",
    ),
    NoEffect::new(
        "protocols.*.dialer",
        "a client's dialing settings; a server does not dial",
    ),
    NoEffect::new(
        "protocols.grpc.read_buffer_size",
        "a Go gRPC server buffer size; sluice's HTTP/2 server sizes its buffers itself",
    ),
    NoEffect::new(
        "protocols.grpc.write_buffer_size",
        "a Go gRPC server buffer size; sluice's HTTP/2 server sizes its buffers itself",
    ),
];

pub struct OtlpReceiverFactory;

impl ReceiverFactory for OtlpReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "otlp",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "OTLP over gRPC and HTTP (protobuf and JSON)",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        Ok(self.build_otlp(config, outputs, ctx)?)
    }
}

impl OtlpReceiverFactory {
    /// [`ReceiverFactory::build`] with the concrete type, for callers that need
    /// [`OtlpReceiver::bound_addresses`] (in-process tests listening on port 0).
    pub fn build_otlp(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<OtlpReceiver>, ConfigErrors> {
        let cfg: OtlpConfig = decode_section(config, NO_EFFECT, &ctx.warnings)?;
        if cfg.protocols.grpc.is_none() && cfg.protocols.http.is_none() {
            return Err(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.protocols", config.path),
                "enable at least one protocol: `grpc:` and/or `http:`",
            )
            .into());
        }
        for (protocol, max_connections) in [
            (
                "grpc",
                cfg.protocols.grpc.as_ref().map(|g| g.max_connections),
            ),
            (
                "http",
                cfg.protocols.http.as_ref().map(|h| h.max_connections),
            ),
        ] {
            if max_connections == Some(0) {
                return Err(Diagnostic::new(
                    Some(config.node.pos.clone()),
                    format!("{}.protocols.{protocol}.max_connections", config.path),
                    "must be at least 1",
                )
                .into());
            }
        }
        if let Some(http) = &cfg.protocols.http {
            let at = |key: &str| {
                let mut node = config.node.get_path(["protocols", "http"]);
                for part in key.split('.') {
                    node = node.and_then(|n| n.get(part.split('[').next().unwrap_or(part)));
                }
                Some(node.unwrap_or(&config.node).pos.clone())
            };
            if let Some((i, name)) = http.unknown_compression() {
                return Err(Diagnostic::new(
                    at("compression_algorithms"),
                    format!("{}.protocols.http.compression_algorithms[{i}]", config.path),
                    format!(
                        "unknown compression `{name}`; sluice decompresses gzip, zstd, zlib, \
                         deflate, snappy, x-snappy-framed, lz4 and \"\" (none)"
                    ),
                )
                .into());
            }
            if let Err((key, why)) = answer_headers::AnswerHeaders::from_config(http) {
                return Err(Diagnostic::new(
                    at(&key),
                    format!("{}.protocols.http.{key}", config.path),
                    why,
                )
                .into());
            }
            if answer_headers::AnswerHeaders::headers_without_origins(http) {
                ctx.warnings.push(Diagnostic::new(
                    at("cors"),
                    format!("{}.protocols.http.cors.allowed_headers", config.path),
                    "has no effect while cors.allowed_origins is empty: CORS is off",
                ));
            }
            for (key, path) in [
                ("traces_url_path", &http.traces_url_path),
                ("metrics_url_path", &http.metrics_url_path),
                ("logs_url_path", &http.logs_url_path),
            ] {
                if !path.starts_with('/') {
                    return Err(Diagnostic::new(
                        Some(config.node.pos.clone()),
                        format!("{}.protocols.http.{key}", config.path),
                        format!("`{path}` must start with `/`"),
                    )
                    .into());
                }
            }
        }
        // Certificates are read now, so a bad file is a configuration error `validate` reports.
        let tls =
            |protocol: &str, settings: Option<&crate::tls::ServerTlsSettings>, alpn: &[&[u8]]| {
                settings
                    .map(|t| t.server_config(alpn))
                    .transpose()
                    .map_err(|e| {
                        ConfigErrors::from(Diagnostic::new(
                            Some(config.node.pos.clone()),
                            format!("{}.protocols.{protocol}.tls", config.path),
                            e,
                        ))
                    })
            };
        let grpc_tls = tls(
            "grpc",
            cfg.protocols.grpc.as_ref().and_then(|g| g.tls.as_ref()),
            &[b"h2"],
        )?;
        let http_tls = tls(
            "http",
            cfg.protocols.http.as_ref().and_then(|h| h.tls.as_ref()),
            &[b"h2", b"http/1.1"],
        )?;
        let name = config.id.to_string();
        ctx.admission.report_to(&ctx.telemetry.metrics);
        let metrics = &ctx.telemetry.metrics;
        Ok(Arc::new(OtlpReceiver {
            grpc_connections: ConnectionReport::new(metrics, &name, "grpc"),
            http_connections: ConnectionReport::new(metrics, &name, "http"),
            admission: ctx.admission.clone(),
            grpc_tls,
            http_tls,
            name: name.clone(),
            config: cfg,
            outputs: Outputs {
                traces: outputs.traces.map(|c| SignalSink::new(c, &name, ctx)),
                metrics: outputs.metrics.map(|c| SignalSink::new(c, &name, ctx)),
                logs: outputs.logs.map(|c| SignalSink::new(c, &name, ctx)),
            },
            running: Mutex::new(None),
        }))
    }
}

/// Where one signal goes, with its accepted/refused counters per transport.
pub(crate) struct SignalSink<S: Signal> {
    consumer: DynConsumer<S>,
    grpc: TransportStats,
    http: TransportStats,
}

struct TransportStats {
    accepted: Counter,
    refused: Counter,
}

#[derive(Clone, Copy)]
pub(crate) enum Transport {
    Grpc,
    Http,
}

impl<S: Signal> SignalSink<S> {
    fn new(consumer: DynConsumer<S>, receiver: &str, ctx: &BuildContext) -> Arc<Self> {
        let metrics = &ctx.telemetry.metrics;
        let item = S::ITEM_NAME;
        let stats = |transport: &str| TransportStats {
            accepted: metrics.counter(
                &format!("otelcol_receiver_accepted_{item}"),
                &format!("Number of {item} successfully pushed into the pipeline"),
                &[("receiver", receiver), ("transport", transport)],
            ),
            refused: metrics.counter(
                &format!("otelcol_receiver_refused_{item}"),
                &format!("Number of {item} that could not be pushed into the pipeline"),
                &[("receiver", receiver), ("transport", transport)],
            ),
        };
        Arc::new(SignalSink {
            consumer,
            grpc: stats("grpc"),
            http: stats("http"),
        })
    }

    /// Hands a request's data to the pipeline and waits for its acknowledgement.
    pub(crate) async fn accept(&self, batch: Batch<S>, transport: Transport) -> Outcome {
        let items = batch.items() as u64;
        let outcome = deliver(&self.consumer, batch, DEFAULT_ADMISSION_WAIT).await;
        let stats = match transport {
            Transport::Grpc => &self.grpc,
            Transport::Http => &self.http,
        };
        match &outcome {
            Ok(()) => stats.accepted.add(items),
            Err(e) => {
                stats.refused.add(items);
                tracing::debug!(error = %e, items, "request refused");
            }
        }
        outcome
    }
}

pub(crate) struct Outputs {
    pub traces: Option<Arc<SignalSink<sluice_pipeline::Traces>>>,
    pub metrics: Option<Arc<SignalSink<sluice_pipeline::Metrics>>>,
    pub logs: Option<Arc<SignalSink<sluice_pipeline::Logs>>>,
}

struct Running {
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    bound: BoundAddresses,
}

/// The addresses a started receiver actually listens on (port 0 resolved).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundAddresses {
    pub grpc: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
}

pub struct OtlpReceiver {
    name: String,
    /// Consulted before a request's bytes are read.
    admission: sluice_pipeline::admission::Admission,
    grpc_tls: Option<Arc<rustls::ServerConfig>>,
    http_tls: Option<Arc<rustls::ServerConfig>>,
    grpc_connections: ConnectionReport,
    http_connections: ConnectionReport,
    config: OtlpConfig,
    outputs: Outputs,
    running: Mutex<Option<Running>>,
}

/// A request's headers as client metadata (`include_metadata`): every header, its name
/// lower-cased, values that are not text left out.
pub(crate) fn client_metadata(
    headers: &::http::HeaderMap,
) -> sluice_pipeline::metadata::SharedMetadata {
    let mut metadata = sluice_pipeline::metadata::ClientMetadata::default();
    for (name, value) in headers {
        if let Ok(text) = value.to_str() {
            metadata.add(name.as_str(), text);
        }
    }
    Arc::new(metadata)
}

/// Binds every address a name resolves to (`localhost` is often both 127.0.0.1 and ::1, and
/// clients try either); it is enough that one of them binds.
pub(crate) async fn bind_all(endpoint: &str) -> std::io::Result<Vec<TcpListener>> {
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host(sluice_pipeline::net::listen_address(endpoint))
            .await?
            .collect();
    let mut listeners = Vec::new();
    let mut last_error = None;
    for address in addresses {
        match TcpListener::bind(address).await {
            Ok(l) => listeners.push(l),
            Err(e) => last_error = Some(e),
        }
    }
    if listeners.is_empty() {
        return Err(last_error.unwrap_or_else(|| {
            std::io::Error::other(format!("`{endpoint}` resolves to no address"))
        }));
    }
    Ok(listeners)
}

#[async_trait]
impl Lifecycle for OtlpReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let (stop, stopped) = watch::channel(false);
        let mut servers = Vec::new();
        let mut bound = BoundAddresses::default();
        self.warn_if_connections_exceed_open_files();
        if let Some(grpc) = &self.config.protocols.grpc {
            let listeners = bind_all(&grpc.endpoint).await.map_err(|e| {
                StartError::new(
                    &self.name,
                    format!("cannot listen on {} (grpc): {e}", grpc.endpoint),
                )
            })?;
            for listener in listeners {
                tracing::info!(receiver = %self.name, address = ?listener.local_addr().ok(), "OTLP/gRPC listening");
                bound.grpc.extend(listener.local_addr().ok());
                servers.push(grpc::serve(
                    listener,
                    self.grpc_tls.clone(),
                    grpc,
                    &self.outputs,
                    &self.admission,
                    self.grpc_connections.clone(),
                    stopped.clone(),
                ));
            }
        }
        if let Some(http) = &self.config.protocols.http {
            let listeners = bind_all(&http.endpoint).await.map_err(|e| {
                StartError::new(
                    &self.name,
                    format!("cannot listen on {} (http): {e}", http.endpoint),
                )
            })?;
            for listener in listeners {
                tracing::info!(receiver = %self.name, address = ?listener.local_addr().ok(), "OTLP/HTTP listening");
                bound.http.extend(listener.local_addr().ok());
                servers.push(http::serve(
                    listener,
                    self.http_tls.clone(),
                    http,
                    &self.outputs,
                    &self.admission,
                    self.http_connections.clone(),
                    stopped.clone(),
                ));
            }
        }
        if let Ok(mut running) = self.running.lock() {
            *running = Some(Running {
                stop,
                servers,
                bound,
            });
        }
        Ok(())
    }

    /// Stops accepting connections and lets requests in flight finish (their data is then in
    /// the pipeline, which drains next).
    async fn shutdown(&self, deadline: Instant) {
        let Some(running) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let _ = running.stop.send(true);
        let aborts: Vec<_> = running.servers.iter().map(|s| s.abort_handle()).collect();
        if tokio::time::timeout_at(deadline, futures::future::join_all(running.servers))
            .await
            .is_err()
        {
            tracing::warn!(receiver = %self.name, "requests still in flight at the shutdown deadline");
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

impl OtlpReceiver {
    /// Connections over the open-file limit fail to be accepted (sluice then pauses and
    /// retries): say so up front, as the limit is easy to raise and hard to guess at.
    fn warn_if_connections_exceed_open_files(&self) {
        let p = &self.config.protocols;
        let max_connections = p.grpc.as_ref().map_or(0, |g| g.max_connections)
            + p.http.as_ref().map_or(0, |h| h.max_connections);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        if let Some(open_files) = limit
            && max_connections as u64 >= open_files
        {
            tracing::warn!(
                receiver = %self.name,
                max_connections,
                open_files,
                "max_connections (summed over the protocols) reach the open-file limit: \
                 connections beyond it cannot be accepted; raise the limit (ulimit -n) or \
                 lower max_connections"
            );
        }
    }

    /// Where the receiver listens while started (empty before `start` and after `shutdown`).
    pub fn bound_addresses(&self) -> BoundAddresses {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.bound.clone()))
            .unwrap_or_default()
    }
}

impl Receiver for OtlpReceiver {
    fn listen_addresses(&self) -> Vec<String> {
        let p = &self.config.protocols;
        p.grpc
            .iter()
            .map(|g| g.endpoint.clone())
            .chain(p.http.iter().map(|h| h.endpoint.clone()))
            .collect()
    }
}

/// A future that completes once shutdown is signalled.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The seconds to put in Retry-After / RetryInfo for an error, if any.
pub(crate) fn retry_after(error: &DeliveryError) -> Option<std::time::Duration> {
    match error {
        DeliveryError::Throttled { retry_after, .. } => Some(*retry_after),
        DeliveryError::Retryable { retry_after, .. } => *retry_after,
        DeliveryError::Permanent { .. } => None,
    }
}
