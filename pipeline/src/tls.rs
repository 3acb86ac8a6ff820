//! What the OTel Collector's `configtls` keys mean for both sides of a connection: receivers'
//! servers and exporters' clients share the cipher suites, curves and versions they allow,
//! how certificates are read (files or inline PEM) and how they are re-read on
//! `reload_interval`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};

/// The TLS 1.2 suites sluice's TLS library has, by their Go names (Go spells the ChaCha
/// suites both ways).
fn tls12_suite(name: &str) -> Option<rustls::CipherSuite> {
    use rustls::CipherSuite as C;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

fn version_rank(key: &str, text: &str) -> Result<u8, String> {
    match text {
        "1.0" | "1.1" | "1.2" => Ok(2),
        "1.3" => Ok(3),
        other => Err(format!(
            "{key} `{other}` is not a TLS version; use 1.0, 1.1, 1.2 or 1.3"
        )),
    }
}

/// The provider with the suites (`cipher_suites`) and groups (`curve_preferences`) allowed.
/// TLS 1.3 suites cannot be chosen, as in Go.
pub fn crypto_provider(
    cipher_suites: &[String],
    curve_preferences: &[String],
) -> Result<Arc<CryptoProvider>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for name in cipher_suites {
            match tls12_suite(name) {
                Some(s) => wanted.push(s),
                None if name.starts_with("TLS_AES_") || name.starts_with("TLS_CHACHA20_") => {}
                None => {
                    return Err(format!(
                        "cipher_suites: `{name}` is not available; sluice's TLS has only \
                         AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305)"
                    ));
                }
            }
        }
        provider
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || wanted.contains(&s.suite()));
    }
    if !curve_preferences.is_empty() {
        let all = provider.kx_groups.clone();
        let mut groups = Vec::new();
        for name in curve_preferences {
            let group = match name.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "P256" | "CurveP256" => rustls::NamedGroup::secp256r1,
                "P384" | "CurveP384" => rustls::NamedGroup::secp384r1,
                other => {
                    return Err(format!(
                        "curve_preferences: `{other}` is not available; use X25519, P256 or P384"
                    ));
                }
            };
            if let Some(g) = all.iter().find(|g| g.name() == group) {
                groups.push(*g);
            }
        }
        provider.kx_groups = groups;
    }
    Ok(Arc::new(provider))
}

/// The protocol versions between `min_version` (default 1.2) and `max_version` (default
/// 1.3). 1.0 and 1.1 as a minimum mean 1.2: sluice's TLS library has nothing older.
pub fn protocol_versions(
    min_version: Option<&str>,
    max_version: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let min = min_version.map_or(Ok(2), |v| version_rank("min_version", v))?;
    let max = max_version.map_or(Ok(3), |v| version_rank("max_version", v))?;
    if matches!(max_version, Some("1.0" | "1.1")) {
        return Err(
            "max_version below 1.2 cannot be honoured: sluice speaks TLS 1.2 and 1.3 only".into(),
        );
    }
    if min > max {
        return Err("min_version is above max_version".into());
    }
    let mut out = Vec::new();
    if max >= 3 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 2 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

pub fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

/// The certificates of a PEM document; `key` (and `path`, when not empty) name it in errors.
pub fn pem_certificates(
    pem: &[u8],
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let named = if path.as_os_str().is_empty() {
        key.to_string()
    } else {
        format!("{key} {}", path.display())
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{named}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{named} holds no certificate"));
    }
    Ok(certs)
}

/// Where a certificate or key comes from: `*_file` or inline `*_pem`.
#[derive(Clone, Copy, Debug)]
pub struct PemSource<'a> {
    pub file: Option<&'a Path>,
    pub pem: Option<&'a str>,
    /// The keys' stem, for errors (`cert` for `cert_file`/`cert_pem`).
    pub name: &'static str,
}

impl PemSource<'_> {
    fn bytes(&self) -> Result<Option<(Vec<u8>, String)>, String> {
        match (self.file, self.pem) {
            (Some(path), _) => {
                let key = format!("{}_file", self.name);
                Ok(Some((
                    read(path, &key)?,
                    format!("{key} {}", path.display()),
                )))
            }
            (None, Some(pem)) => Ok(Some((
                pem.as_bytes().to_vec(),
                format!("{}_pem", self.name),
            ))),
            (None, None) => Ok(None),
        }
    }

    /// The certificates it holds (`None` when neither key is set).
    pub fn certificates(&self) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
        let Some((bytes, named)) = self.bytes()? else {
            return Ok(None);
        };
        pem_certificates(&bytes, &named, Path::new("")).map(Some)
    }
}

/// A certificate chain and its key, signed with `provider`'s key loader.
pub fn certified_key(
    cert: PemSource<'_>,
    key: PemSource<'_>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = cert
        .certificates()?
        .ok_or_else(|| format!("no certificate ({0}_file or {0}_pem)", cert.name))?;
    let (bytes, named) = key
        .bytes()?
        .ok_or_else(|| format!("no key ({0}_file or {0}_pem)", key.name))?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("{named}: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{named}: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    // A certificate and key read a moment apart (a reload between the two writes of a
    // rotation) may not belong together: refused here, so the last good pair stays in use.
    certified
        .keys_match()
        .map_err(|e| format!("{} and {named} do not belong together: {e}", cert.name))?;
    Ok(Arc::new(certified))
}

/// A value loaded from files, loaded again once `every` has passed since the last load. A
/// failed reload keeps the last good value (and says so in the log) and is tried again at
/// the next use after `every`, so a half-written rotation never takes the server down.
pub struct Reloading<T> {
    every: Option<Duration>,
    load: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    current: Mutex<(Instant, T)>,
}

impl<T: Clone> Reloading<T> {
    pub fn new(
        every: Option<Duration>,
        load: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let first = load()?;
        Ok(Reloading {
            every,
            load: Box::new(load),
            current: Mutex::new((Instant::now(), first)),
        })
    }

    pub fn get(&self) -> T {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(every) = self.every
            && current.0.elapsed() >= every
        {
            current.0 = Instant::now();
            match (self.load)() {
                Ok(v) => current.1 = v,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload TLS files; keeping the last ones")
                }
            }
        }
        current.1.clone()
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("every", &self.every)
            .finish()
    }
}

/// `insecure_skip_verify`: any server certificate is accepted, but handshake signatures are
/// still checked with `provider`'s algorithms.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
