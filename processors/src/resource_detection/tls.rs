//! TLS for the detectors that speak HTTPS: the Kubernetes API (the service account's CA), the
//! OpenShift API (its `tls:` settings), and the cloud APIs (the system's roots).

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_pipeline::tls::AcceptAnyCertificate;

use super::config::ClientTlsConfig;

/// What a TLS client trusts and shows.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM of the CAs to trust; none means the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and key to authenticate with.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Trust any certificate (the `insecure_skip_verify` / `insecure-skip-tls-verify` knobs).
    pub insecure_skip_verify: bool,
    /// Trust the system's roots as well as `ca_pem`.
    pub also_system_roots: bool,
}

/// The options a `tls:` block describes; its files are read now. `default_ca` is trusted when
/// the block names no CA (the service account's CA for the Kubernetes API).
pub fn options_from(
    cfg: &ClientTlsConfig,
    default_ca: Option<Vec<u8>>,
) -> Result<TlsOptions, String> {
    let read =
        |key: &str, path: &str| std::fs::read(path).map_err(|e| format!("tls.{key} `{path}`: {e}"));
    let ca_pem = match (&cfg.ca_file, &cfg.ca_pem) {
        (_, Some(pem)) => Some(pem.as_bytes().to_vec()),
        (Some(path), None) => Some(read("ca_file", path)?),
        (None, None) => default_ca,
    };
    let cert = match (&cfg.cert_file, &cfg.cert_pem) {
        (_, Some(pem)) => Some(pem.as_bytes().to_vec()),
        (Some(path), None) => Some(read("cert_file", path)?),
        (None, None) => None,
    };
    let key = match (&cfg.key_file, &cfg.key_pem) {
        (_, Some(pem)) => Some(pem.as_bytes().to_vec()),
        (Some(path), None) => Some(read("key_file", path)?),
        (None, None) => None,
    };
    let client_cert_pem = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(
                "tls: a client certificate needs its key, and a key its certificate".into(),
            );
        }
    };
    Ok(TlsOptions {
        ca_pem,
        client_cert_pem,
        insecure_skip_verify: cfg.insecure_skip_verify,
        also_system_roots: cfg.include_system_ca_certs_pool,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration with the system's roots, built once: loading the system store reads
/// many files.
pub fn system_roots() -> Result<Arc<rustls::ClientConfig>, String> {
    static SHARED: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| client_config(&TlsOptions::default()))
        .clone()
}

/// A rustls client configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let mut roots = roots(options.ca_pem.as_deref())?;
        if options.also_system_roots && options.ca_pem.is_some() {
            roots.extend(system_store().roots);
        }
        builder.with_root_certificates(roots)
    };
    let config = match &options.client_cert_pem {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            if chain.is_empty() {
                return Err("client certificate: no certificate in the PEM".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("CA certificates: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificates: {e}"))?;
            }
            if roots.is_empty() {
                return Err("CA certificates: no certificate in the PEM".into());
            }
        }
        None => roots = system_store(),
    }
    Ok(roots)
}

fn system_store() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system store may hold certificates rustls cannot use; those are skipped.
        let _ = roots.add(cert);
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::http::{Client, Request};
    use crate::resource_detection::tests::metadata_server::{
        Answer, CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM, MetadataServer,
    };
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn trusts_the_given_ca_and_only_it() {
        let server = MetadataServer::start_tls(|_| Answer::new(200, "over tls")).await;
        let trusting = client_config(&TlsOptions {
            ca_pem: Some(CA_PEM.to_vec()),
            ..Default::default()
        })
        .unwrap();
        let answer = Client::default()
            .with_tls(trusting)
            .send(Request::get(server.url(), WAIT))
            .await
            .unwrap();
        assert_eq!(answer.text(), "over tls");
        // The system's roots do not know the test CA.
        let err = Client::default()
            .send(Request::get(server.url(), WAIT))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
        // Unless verification is off.
        let anything = client_config(&TlsOptions {
            insecure_skip_verify: true,
            ..Default::default()
        })
        .unwrap();
        assert!(
            Client::default()
                .with_tls(anything)
                .send(Request::get(server.url(), WAIT))
                .await
                .is_ok()
        );
    }

    #[test]
    fn client_certificates_and_bad_pems() {
        assert!(
            client_config(&TlsOptions {
                ca_pem: Some(CA_PEM.to_vec()),
                client_cert_pem: Some((CLIENT_CERT_PEM.to_vec(), CLIENT_KEY_PEM.to_vec())),
                ..Default::default()
            })
            .is_ok()
        );
        let err = client_config(&TlsOptions {
            ca_pem: Some(b"not a pem".to_vec()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("CA"), "{err}");
        let err = client_config(&TlsOptions {
            client_cert_pem: Some((CLIENT_CERT_PEM.to_vec(), b"no key".to_vec())),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("key"), "{err}");
        let err = options_from(
            &ClientTlsConfig {
                cert_file: Some("/c.pem".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(err.contains("cert_file"), "{err}");
        let err = options_from(
            &ClientTlsConfig {
                cert_pem: Some("x".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(err.contains("needs its key"), "{err}");
    }
}
