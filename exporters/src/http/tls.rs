use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use serde::Deserialize;
use sluice_config::Duration as ConfigDuration;
use sluice_pipeline::tls::{
    self, AcceptAnyCertificate, PemSource, Reloading, pem_certificates, read,
};

/// `tls:` of a client, with the OTel Collector's keys (configtls.ClientConfig).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file of the CAs that sign the server's certificate (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// The same CAs written inline as PEM.
    pub ca_pem: Option<String>,
    /// PEM certificate (chain) for client authentication; needs a key.
    pub cert_file: Option<PathBuf>,
    /// The client certificate inline as PEM.
    pub cert_pem: Option<String>,
    /// PEM private key for client authentication.
    pub key_file: Option<PathBuf>,
    /// The client key inline as PEM.
    pub key_pem: Option<String>,
    /// No TLS at all (gRPC exporters; for HTTP the URL's scheme decides).
    pub insecure: bool,
    /// Accept any server certificate. For testing only: it removes the protection TLS gives.
    pub insecure_skip_verify: bool,
    /// Verify the server's certificate against this name instead of the URL's host.
    pub server_name_override: Option<String>,
    /// Trust the system's roots as well as `ca_file`/`ca_pem` (default false: only those).
    pub include_system_ca_certs_pool: bool,
    /// Lowest TLS version: `1.2` (default) or `1.3`; `1.0` and `1.1` mean 1.2, the lowest
    /// sluice speaks.
    pub min_version: Option<String>,
    /// Highest TLS version: `1.2` or `1.3` (default).
    pub max_version: Option<String>,
    /// TLS 1.2 cipher suites allowed, by their Go names (default: every suite sluice has,
    /// all of them AEAD). TLS 1.3 suites are always allowed, as in Go.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups in order of preference: `X25519`, `P256`, `P384`.
    pub curve_preferences: Vec<String>,
    /// Re-read the CA, certificate and key files this often (default: never).
    pub reload_interval: Option<ConfigDuration>,
    /// Keys held in a TPM: refused unless `enabled: false`.
    pub tpm: Option<TpmSettings>,
}

/// `tls.tpm`: only accepted when off.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpmSettings {
    pub enabled: bool,
    pub path: Option<String>,
    pub owner_auth: Option<String>,
    pub auth: Option<String>,
}

impl TlsSettings {
    /// The provider with the suites and groups these settings allow.
    fn provider(&self) -> Result<Arc<CryptoProvider>, String> {
        tls::crypto_provider(&self.cipher_suites, &self.curve_preferences)
    }

    fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
        tls::protocol_versions(self.min_version.as_deref(), self.max_version.as_deref())
    }

    /// Whether a client certificate is configured.
    fn has_client_certificate(&self) -> bool {
        self.cert_file.is_some() || self.cert_pem.is_some()
    }

    /// Every problem of these settings that can be seen without building them.
    pub fn check(&self) -> Result<(), String> {
        if self.ca_file.is_some() && self.ca_pem.is_some() {
            return Err("ca_file and ca_pem cannot both be set".into());
        }
        if self.cert_file.is_some() && self.cert_pem.is_some() {
            return Err("cert_file and cert_pem cannot both be set".into());
        }
        if self.key_file.is_some() && self.key_pem.is_some() {
            return Err("key_file and key_pem cannot both be set".into());
        }
        let key = self.key_file.is_some() || self.key_pem.is_some();
        if self.has_client_certificate() != key {
            return Err("a client certificate (cert_file/cert_pem) and its key \
                        (key_file/key_pem) go together"
                .into());
        }
        if self.tpm.as_ref().is_some_and(|t| t.enabled) {
            return Err("keys held in a TPM are not supported; use key_file or key_pem".into());
        }
        Ok(())
    }

    /// A rustls client configuration for these settings. Errors name the file at fault.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        self.check()?;
        let provider = self.provider()?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| format!("TLS setup: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(AcceptAnyCertificate(provider.clone()))
        } else {
            let name = match &self.server_name_override {
                Some(name) => Some(
                    ServerName::try_from(name.clone())
                        .map_err(|e| format!("server_name_override `{name}`: {e}"))?,
                ),
                None => None,
            };
            let roots = Reloading::new(self.reload(), {
                let settings = self.clone();
                let provider = provider.clone();
                move || {
                    let roots = Arc::new(settings.roots()?);
                    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                        .build()
                        .map_err(|e| format!("TLS setup: {e}"))
                }
            })?;
            Arc::new(Verifier { roots, name })
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        if !self.has_client_certificate() {
            return Ok(builder.with_no_client_auth());
        }
        let settings = self.clone();
        let keys = Reloading::new(self.reload(), move || settings.certified_key(&provider))?;
        Ok(builder.with_client_cert_resolver(Arc::new(ClientCertificate(keys))))
    }

    fn reload(&self) -> Option<Duration> {
        self.reload_interval.map(|d| d.0).filter(|d| !d.is_zero())
    }

    fn certified_key(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
        tls::certified_key(
            PemSource {
                file: self.cert_file.as_deref(),
                pem: self.cert_pem.as_deref(),
                name: "cert",
            },
            PemSource {
                file: self.key_file.as_deref(),
                pem: self.key_pem.as_deref(),
                name: "key",
            },
            provider,
        )
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        let configured = match (&self.ca_file, &self.ca_pem) {
            (Some(path), _) => Some(pem_certificates(&read(path, "ca_file")?, "ca_file", path)?),
            (None, Some(pem)) => Some(pem_certificates(pem.as_bytes(), "ca_pem", Path::new(""))?),
            (None, None) => None,
        };
        let system = configured.is_none() || self.include_system_ca_certs_pool;
        if let Some(certs) = configured {
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
        }
        if system {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(cert);
            }
        }
        Ok(roots)
    }
}

/// The client certificate, re-read per `reload_interval`.
#[derive(Debug)]
struct ClientCertificate(Reloading<Arc<CertifiedKey>>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the chain against the (reloaded) roots, and against a configured name when
/// `server_name_override` is set.
#[derive(Debug)]
struct Verifier {
    roots: Reloading<Arc<WebPkiServerVerifier>>,
    name: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().unwrap_or(server_name);
        self.roots
            .get()
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.roots.get().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.roots.get().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.roots.get().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> TlsSettings {
        let node = sluice_config::parse_yaml("t.yaml", yaml).unwrap();
        sluice_config::decode(&node, "tls").unwrap()
    }

    #[test]
    fn versions_suites_and_groups() {
        let s = settings("min_version: \"1.3\"\n");
        assert_eq!(s.versions().unwrap(), vec![&rustls::version::TLS13]);
        let s = settings("max_version: \"1.2\"\n");
        assert_eq!(s.versions().unwrap(), vec![&rustls::version::TLS12]);
        assert!(settings("max_version: \"1.1\"\n").versions().is_err());
        assert!(
            settings("min_version: \"1.3\"\nmax_version: \"1.2\"\n")
                .versions()
                .is_err()
        );
        assert!(settings("min_version: \"2.0\"\n").versions().is_err());
        let s = settings("cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n");
        let p = s.provider().unwrap();
        assert!(
            p.cipher_suites
                .iter()
                .all(|c| c.version() == &rustls::version::TLS13
                    || c.suite() == rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        );
        assert!(
            settings("cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n")
                .provider()
                .is_err()
        );
        let p = settings("curve_preferences: [P384, X25519]\n")
            .provider()
            .unwrap();
        assert_eq!(p.kx_groups[0].name(), rustls::NamedGroup::secp384r1);
        assert!(settings("curve_preferences: [P521]\n").provider().is_err());
    }

    #[test]
    fn inline_and_file_forms_are_checked() {
        assert!(settings("ca_file: a\nca_pem: b\n").check().is_err());
        assert!(settings("cert_pem: a\n").check().is_err());
        assert!(settings("tpm:\n  enabled: true\n").check().is_err());
        assert!(settings("tpm:\n  enabled: false\n").check().is_ok());
        let e = settings("ca_pem: not a certificate\n")
            .client_config()
            .unwrap_err();
        assert!(e.contains("ca_pem"), "{e}");
    }
}
