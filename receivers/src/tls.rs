//! Server-side TLS for receivers: settings with the OTel Collector's keys, and an acceptor that
//! runs handshakes off the accept loop (a client that stalls its handshake must not stop others
//! from connecting), feeding both axum and tonic.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use serde::Deserialize;
use sluice_pipeline::tls::{self, PemSource, Reloading};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// `tls:` of a receiver protocol: configtls.ServerConfig's keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsSettings {
    /// PEM certificate chain the server presents (or inline, `cert_pem`).
    pub cert_file: Option<PathBuf>,
    pub cert_pem: Option<String>,
    /// PEM private key of that certificate (or inline, `key_pem`).
    pub key_file: Option<PathBuf>,
    pub key_pem: Option<String>,
    /// PEM CAs of client certificates; when set, clients must present a certificate signed by
    /// one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// Re-read `client_ca_file` when it changes, so rotated client CAs apply without a
    /// restart.
    pub client_ca_file_reload: bool,
    /// Oldest and newest TLS version offered (default 1.2 and 1.3; 1.0 and 1.1 mean 1.2).
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// TLS 1.2 suites allowed, by their Go names (TLS 1.3 suites cannot be chosen, as in Go).
    pub cipher_suites: Vec<String>,
    /// Key exchange groups, in order: `X25519`, `P256`, `P384`.
    pub curve_preferences: Vec<String>,
    /// Go's insecure suites (RC4, 3DES, CBC): sluice's TLS library has none, so `true` is
    /// refused rather than quietly not honoured.
    pub include_insecure_cipher_suites: bool,
    /// Re-read the certificate and key this often (default: never).
    pub reload_interval: Option<sluice_config::Duration>,
    /// A server's trust roots for its own outgoing checks: a server never uses them (Go's
    /// servers ignore them too); accepted so shared TLS blocks load.
    pub ca_file: Option<PathBuf>,
    pub ca_pem: Option<String>,
    pub include_system_ca_certs_pool: bool,
    /// Keys held in a TPM: refused when enabled.
    pub tpm: Option<serde_yaml_tpm::Tpm>,
}

/// configtls's `tpm` section.
mod serde_yaml_tpm {
    use serde::Deserialize;

    #[derive(Clone, Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Tpm {
        pub enabled: bool,
        pub path: Option<String>,
        pub owner_auth: Option<String>,
        pub auth: Option<String>,
    }
}

impl ServerTlsSettings {
    fn cert(&self) -> PemSource<'_> {
        PemSource {
            file: self.cert_file.as_deref(),
            pem: self.cert_pem.as_deref(),
            name: "cert",
        }
    }

    fn key(&self) -> PemSource<'_> {
        PemSource {
            file: self.key_file.as_deref(),
            pem: self.key_pem.as_deref(),
            name: "key",
        }
    }

    fn check(&self) -> Result<(), String> {
        for (a, b, what) in [
            (self.cert_file.is_some(), self.cert_pem.is_some(), "cert"),
            (self.key_file.is_some(), self.key_pem.is_some(), "key"),
            (self.ca_file.is_some(), self.ca_pem.is_some(), "ca"),
        ] {
            if a && b {
                return Err(format!("{what}_file and {what}_pem cannot both be set"));
            }
        }
        if self.cert_file.is_none() && self.cert_pem.is_none() {
            return Err("a server needs its certificate: set cert_file or cert_pem".into());
        }
        if self.key_file.is_none() && self.key_pem.is_none() {
            return Err("a server needs its key: set key_file or key_pem".into());
        }
        if self.client_ca_file_reload && self.client_ca_file.is_none() {
            return Err("client_ca_file_reload needs client_ca_file".into());
        }
        if self.tpm.as_ref().is_some_and(|t| t.enabled) {
            return Err("keys held in a TPM are not supported; use key_file or key_pem".into());
        }
        if self.include_insecure_cipher_suites {
            return Err(
                "include_insecure_cipher_suites: sluice's TLS library has no insecure \
                        suites (only AEAD ones), so they cannot be offered"
                    .into(),
            );
        }
        Ok(())
    }

    /// The rustls configuration, offering `alpn` protocols. Errors name the key or file at
    /// fault.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
        self.check()?;
        let provider = tls::crypto_provider(&self.cipher_suites, &self.curve_preferences)?;
        let versions =
            tls::protocol_versions(self.min_version.as_deref(), self.max_version.as_deref())?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = match &self.client_ca_file {
            Some(path) => {
                let path = path.clone();
                let verifier_provider = provider.clone();
                let load = move || client_verifier(&path, verifier_provider.clone());
                if self.client_ca_file_reload {
                    // The digest is taken before loading: a change landing in between is then
                    // seen at the next check rather than never.
                    let digest = content_digest(self.client_ca_file.as_deref());
                    let current = load()?;
                    builder.with_client_cert_verifier(Arc::new(ReloadingClientCa {
                        file: self.client_ca_file.clone().unwrap_or_default(),
                        load: Box::new(load),
                        current: Mutex::new(CaState {
                            checked: Instant::now(),
                            digest,
                            verifier: current,
                        }),
                    }))
                } else {
                    builder.with_client_cert_verifier(load()?)
                }
            }
            None => builder.with_no_client_auth(),
        };
        let every = self.reload_interval.map(|d| d.0).filter(|d| !d.is_zero());
        let settings = self.clone();
        let key_provider = provider.clone();
        let keys = Reloading::new(every, move || {
            tls::certified_key(settings.cert(), settings.key(), &key_provider)
        })?;
        let mut config = builder.with_cert_resolver(Arc::new(ServerCertificate(keys)));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

fn client_verifier(
    path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certs = tls::pem_certificates(&tls::read(path, "client_ca_file")?, "client_ca_file", path)?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("client_ca_file {}: {e}", path.display()))
}

/// What the file holds, by content: a rotation is seen even when the modification time
/// does not move (coarse clocks, a Kubernetes secret's symlink swapped for another).
fn content_digest(path: Option<&Path>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path?).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// The certificate the server presents, re-read per `reload_interval`.
#[derive(Debug)]
struct ServerCertificate(Reloading<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

/// How often a handshake looks at the client CA file's modification time.
const CLIENT_CA_CHECK: Duration = Duration::from_secs(1);

struct CaState {
    checked: Instant,
    digest: Option<u64>,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// `client_ca_file_reload`: the verifier is rebuilt when the file changes; a file that does
/// not load keeps the last good CAs (and says so in the log).
struct ReloadingClientCa {
    file: PathBuf,
    load: Box<dyn Fn() -> Result<Arc<dyn ClientCertVerifier>, String> + Send + Sync>,
    current: Mutex<CaState>,
}

impl std::fmt::Debug for ReloadingClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingClientCa")
            .field("file", &self.file)
            .finish()
    }
}

impl ReloadingClientCa {
    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        let mut state = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= CLIENT_CA_CHECK {
            state.checked = Instant::now();
            let now = content_digest(Some(&self.file));
            if now != state.digest {
                state.digest = now;
                match (self.load)() {
                    Ok(v) => state.verifier = v,
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot reload client_ca_file; keeping the last client CAs"
                    ),
                }
            }
        }
        state.verifier.clone()
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the CAs may change under a borrowed list.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate and key (PEM) for `name`, signed by `ca`.
    fn leaf(name: &str, usage: ExtendedKeyUsagePurpose, ca: &Ca) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Decodes through sluice's own config reader, as a config file would be.
    fn settings(yaml: &str) -> ServerTlsSettings {
        let node = sluice_config::parse_yaml("tls.yaml", yaml).unwrap();
        sluice_config::decode_all(&node, "tls").unwrap()
    }

    /// A handshake of a client trusting `trust` (and presenting `client`, if any) with a
    /// server of `config`, over TLS versions `versions`: the certificate the server
    /// presented, or the handshake's error.
    async fn handshake(
        config: Arc<ServerConfig>,
        trust: &str,
        client: Option<(&str, &str)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<Vec<u8>, String> {
        let mut roots = RootCertStore::empty();
        for cert in tls::pem_certificates(trust.as_bytes(), "ca", Path::new("")).unwrap() {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let client_config = match client {
            Some((cert, key)) => {
                let chain = tls::pem_certificates(cert.as_bytes(), "c", Path::new("")).unwrap();
                use rustls::pki_types::pem::PemObject;
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let server = tokio::spawn(async move {
            let mut s = acceptor.accept(b).await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            s.write_all(&byte).await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let result = async {
            let mut c = connector
                .connect(name, a)
                .await
                .map_err(|e| e.to_string())?;
            c.write_all(b"x").await.map_err(|e| e.to_string())?;
            c.flush().await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            c.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            let (_, conn) = c.get_ref();
            Ok(conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .unwrap_or_default())
        }
        .await;
        let _ = server.await;
        result
    }

    fn der(pem: &str) -> Vec<u8> {
        tls::pem_certificates(pem.as_bytes(), "c", Path::new(""))
            .unwrap()
            .remove(0)
            .to_vec()
    }

    #[tokio::test]
    async fn inline_pems_and_the_version_range_are_served() {
        let ca = ca("test CA");
        let (cert, key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth, &ca);
        let yaml = format!(
            "cert_pem: |\n{}\nkey_pem: |\n{}\nmin_version: \"1.3\"\n",
            indent(&cert),
            indent(&key)
        );
        let config = settings(&yaml).server_config(&[]).unwrap();
        let got = handshake(config.clone(), &ca.pem, None, &[&rustls::version::TLS13]).await;
        assert_eq!(got.unwrap(), der(&cert));
        let refused = handshake(config, &ca.pem, None, &[&rustls::version::TLS12]).await;
        assert!(refused.is_err(), "a TLS 1.2 client against min_version 1.3");
    }

    fn indent(pem: &str) -> String {
        pem.lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn the_certificate_is_reread_after_reload_interval() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("test CA");
        let (first, first_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth, &ca);
        let (second, second_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth, &ca);
        let cert_path = dir.path().join("server.pem");
        let key_path = dir.path().join("server-key.pem");
        std::fs::write(&cert_path, &first).unwrap();
        std::fs::write(&key_path, &first_key).unwrap();
        let yaml = format!(
            "cert_file: {}\nkey_file: {}\nreload_interval: 50ms\n",
            cert_path.display(),
            key_path.display()
        );
        let config = settings(&yaml).server_config(&[]).unwrap();
        let all = [&rustls::version::TLS13, &rustls::version::TLS12];
        assert_eq!(
            handshake(config.clone(), &ca.pem, None, &all)
                .await
                .unwrap(),
            der(&first)
        );
        std::fs::write(&cert_path, &second).unwrap();
        std::fs::write(&key_path, &second_key).unwrap();
        // Past the interval (a wait for a condition, not a bound on speed).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            handshake(config, &ca.pem, None, &all).await.unwrap(),
            der(&second)
        );
    }

    #[tokio::test]
    async fn a_rotated_client_ca_applies_with_client_ca_file_reload() {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = ca("server CA");
        let (cert, key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth, &server_ca);
        let old_clients = ca("old client CA");
        let new_clients = ca("new client CA");
        let (client, client_key) = leaf("app", ExtendedKeyUsagePurpose::ClientAuth, &new_clients);
        let client_ca = dir.path().join("client-ca.pem");
        std::fs::write(&client_ca, &old_clients.pem).unwrap();
        std::fs::write(dir.path().join("s.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("k.pem"), &key).unwrap();
        let yaml = format!(
            "cert_file: {0}/s.pem\nkey_file: {0}/k.pem\nclient_ca_file: {1}\nclient_ca_file_reload: true\n",
            dir.path().display(),
            client_ca.display()
        );
        let config = settings(&yaml).server_config(&[]).unwrap();
        let all = [&rustls::version::TLS13, &rustls::version::TLS12];
        let refused = handshake(
            config.clone(),
            &server_ca.pem,
            Some((&client, &client_key)),
            &all,
        )
        .await;
        assert!(refused.is_err(), "a client of a CA not (yet) trusted");
        // Rotated: the file's content changes.
        std::fs::write(&client_ca, &new_clients.pem).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = handshake(
                config.clone(),
                &server_ca.pem,
                Some((&client, &client_key)),
                &all,
            )
            .await;
            if got.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the new client CA never applied");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[test]
    fn problems_name_the_key() {
        let err = |yaml: &str| settings(yaml).server_config(&[]).unwrap_err();
        assert!(err("key_file: /k\n").contains("cert_file or cert_pem"));
        assert!(
            err("cert_file: /c\ncert_pem: x\nkey_file: /k\n").contains("cert_file and cert_pem")
        );
        assert!(err("cert_pem: x\nkey_pem: y\ntpm:\n  enabled: true\n").contains("TPM"));
        assert!(err("cert_pem: x\nkey_pem: y\nmin_version: \"1.4\"\n").contains("min_version"));
        assert!(
            err("cert_pem: x\nkey_pem: y\nclient_ca_file_reload: true\n")
                .contains("client_ca_file_reload needs client_ca_file")
        );
        assert!(
            err("cert_file: /nonexistent/c.pem\nkey_pem: y\n")
                .contains("cert_file /nonexistent/c.pem")
        );
    }
}
