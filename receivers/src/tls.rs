//! Server-side TLS for receivers: settings with the OTel Collector's keys, and an acceptor that
//! runs handshakes off the accept loop (a client that stalls its handshake must not stop others
//! from connecting), feeding both axum and tonic.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// `tls:` of a receiver protocol.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// PEM certificate chain the server presents.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
    /// PEM CAs of client certificates; when set, clients must present a certificate signed by
    /// one of them (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn pem_certs(path: &PathBuf, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {} holds no certificate", path.display()));
    }
    Ok(certs)
}

impl ServerTlsSettings {
    /// The rustls configuration, offering `alpn` protocols. Errors name the file at fault.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = pem_certs(&self.cert_file, "cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| format!("key_file {}: {e}", self.key_file.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = match &self.client_ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in pem_certs(path, "client_ca_file")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("cert_file/key_file: {e}"))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// TLS handshakes in progress at once per listener.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// A TLS connection, usable by axum and by tonic.
pub struct TlsConnection(TlsStream<TcpStream>);

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = Option<std::net::SocketAddr>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

/// Accepts TCP connections and completes their handshakes in the background; finished
/// connections come out of [`TlsListener::next`]. Stops when dropped.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsConnection, std::net::SocketAddr)>,
    local: std::io::Result<std::net::SocketAddr>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> Self {
        let local = listener.local_addr();
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                // Handshakes cost CPU and memory: a flood of them waits here instead.
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    );
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((TlsConnection(tls), peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener {
            ready,
            local,
            acceptor: task,
        }
    }

    pub async fn next(&mut self) -> Option<(TlsConnection, std::net::SocketAddr)> {
        self.ready.recv().await
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (TlsConnection, std::net::SocketAddr) {
        match self.next().await {
            Some(c) => c,
            // The acceptor only ends when the listener is dropped; nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// The listener as the stream of connections tonic serves.
pub fn incoming(
    listener: TlsListener,
) -> impl futures::Stream<Item = Result<TlsConnection, std::io::Error>> {
    futures::stream::unfold(listener, |mut l| async move {
        l.next().await.map(|(c, _)| (Ok(c), l))
    })
}
