//! The HTTP side of a scrape config: client (TLS, proxy, redirects, HTTP/2), authentication
//! and headers, read again from their files at every request as Prometheus does.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{
    Authorization, BasicAuth, HeaderValues, HttpSdConfig, ScrapeConfig, TlsConfig,
};

/// How a request is authenticated.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Basic(BasicAuth),
    Scheme {
        scheme: String,
        credentials: Option<String>,
        file: Option<String>,
    },
}

impl Auth {
    pub fn from_config(
        basic: &Option<BasicAuth>,
        authorization: &Option<Authorization>,
        bearer: &Option<String>,
        bearer_file: &Option<String>,
    ) -> Auth {
        if let Some(b) = basic {
            return Auth::Basic(b.clone());
        }
        if let Some(a) = authorization {
            return Auth::Scheme {
                scheme: a.kind.clone().unwrap_or_else(|| "Bearer".into()),
                credentials: a.credentials.clone(),
                file: a.credentials_file.clone(),
            };
        }
        if bearer.is_some() || bearer_file.is_some() {
            return Auth::Scheme {
                scheme: "Bearer".into(),
                credentials: bearer.clone(),
                file: bearer_file.clone(),
            };
        }
        Auth::None
    }

    /// The `Authorization` header value, reading files now.
    pub fn header(&self) -> Result<Option<HeaderValue>, String> {
        let value = match self {
            Auth::None => return Ok(None),
            Auth::Basic(b) => {
                let user = match &b.username_file {
                    Some(f) => read_secret(f)?,
                    None => b.username.clone(),
                };
                let password = match (&b.password_file, &b.password) {
                    (Some(f), _) => read_secret(f)?,
                    (None, Some(p)) => p.clone(),
                    (None, None) => String::new(),
                };
                use base64::Engine as _;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            }
            Auth::Scheme {
                scheme,
                credentials,
                file,
            } => {
                let secret = match (file, credentials) {
                    (Some(f), _) => read_secret(f)?,
                    (None, Some(c)) => c.clone(),
                    (None, None) => String::new(),
                };
                format!("{scheme} {secret}")
            }
        };
        HeaderValue::from_str(&value)
            .map(Some)
            .map_err(|_| "the credentials are not a valid header value".into())
    }
}

fn read_secret(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {path}: {e}"))
}

/// `http_headers`, with values from files read now.
pub fn extra_headers(
    headers: &Option<BTreeMap<String, HeaderValues>>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let Some(headers) = headers else {
        return Ok(map);
    };
    for (name, values) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name `{name}`: {e}"))?;
        let mut all: Vec<String> = values.values.clone();
        all.extend(values.secrets.iter().cloned());
        for file in &values.files {
            all.push(read_secret(file)?);
        }
        for value in all {
            let v = HeaderValue::from_str(&value)
                .map_err(|_| format!("header `{name}`: not a valid value"))?;
            map.append(header.clone(), v);
        }
    }
    Ok(map)
}

/// Checks that the credentials can be built now, so a wrong path is a config error.
pub fn check_auth(auth: &Auth) -> Result<(), String> {
    auth.header().map(|_| ())
}

/// Puts the credentials on a header map.
pub fn authorize(headers: &mut HeaderMap, auth: &Auth) -> Result<(), String> {
    if let Some(v) = auth.header()? {
        headers.insert(AUTHORIZATION, v);
    }
    Ok(())
}

/// The HTTP client settings Prometheus' `HTTPClientConfig` shares between a scrape config and
/// each `http_sd_configs` entry: each of them gets a client of its own from these.
pub struct ClientOptions<'a> {
    pub tls: &'a TlsConfig,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    pub proxy_url: &'a Option<String>,
    pub no_proxy: &'a Option<String>,
    pub proxy_from_environment: bool,
}

impl<'a> ClientOptions<'a> {
    pub fn of_scrape(sc: &'a ScrapeConfig) -> Self {
        ClientOptions {
            tls: &sc.tls_config,
            follow_redirects: sc.follow_redirects,
            enable_http2: sc.enable_http2,
            proxy_url: &sc.proxy_url,
            no_proxy: &sc.no_proxy,
            proxy_from_environment: sc.proxy_from_environment,
        }
    }

    pub fn of_http_sd(sd: &'a HttpSdConfig) -> Self {
        ClientOptions {
            tls: &sd.tls_config,
            follow_redirects: sd.follow_redirects,
            enable_http2: sd.enable_http2,
            proxy_url: &sd.proxy_url,
            no_proxy: &sd.no_proxy,
            proxy_from_environment: sd.proxy_from_environment,
        }
    }
}

pub fn build_client(options: &ClientOptions<'_>) -> Result<reqwest::Client, String> {
    let tls = tls_config(options.tls)?;
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(if options.follow_redirects.unwrap_or(true) {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .pool_max_idle_per_host(2);
    if !options.enable_http2.unwrap_or(true) {
        builder = builder.http1_only();
    }
    match options.proxy_url {
        Some(url) => {
            let mut proxy =
                reqwest::Proxy::all(url).map_err(|e| format!("proxy_url `{url}`: {e}"))?;
            if let Some(no_proxy) = options.no_proxy {
                proxy = proxy.no_proxy(reqwest::NoProxy::from_string(no_proxy));
            }
            builder = builder.proxy(proxy);
        }
        None if !options.proxy_from_environment => builder = builder.no_proxy(),
        None => {}
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A rustls client configuration from Prometheus' `tls_config`.
pub fn tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = {
        let min = tls.min_version.as_deref().unwrap_or("TLS12");
        let max = tls.max_version.as_deref().unwrap_or("TLS13");
        let mut v = Vec::new();
        if min != "TLS13" && max != "TLS10" && max != "TLS11" {
            v.push(&rustls::version::TLS12);
        }
        if max == "TLS13" {
            v.push(&rustls::version::TLS13);
        }
        if v.is_empty() {
            return Err("tls_config: no TLS version left between min_version and max_version (sluice speaks TLS 1.2 and 1.3)".into());
        }
        v
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem: Option<Vec<u8>> = match (&tls.ca, &tls.ca_file) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(file)) => {
            Some(std::fs::read(file).map_err(|e| format!("tls_config.ca_file {file}: {e}"))?)
        }
        (None, None) => None,
    };
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("tls_config CA: {e}"))?;
                roots.add(cert).map_err(|e| format!("tls_config CA: {e}"))?;
            }
            if roots.is_empty() {
                return Err("tls_config: the CA holds no certificate".into());
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
        match &tls.server_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("tls_config.server_name `{name}`: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NamedVerifier {
                        inner: verifier,
                        name,
                    }))
            }
            None => builder.with_webpki_verifier(verifier),
        }
    };
    let cert_pem = pem_source(&tls.cert, &tls.cert_file, "cert")?;
    let key_pem = pem_source(&tls.key, &tls.key_file, "key")?;
    match (cert_pem, key_pem) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls_config cert: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("tls_config key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls_config client certificate: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("tls_config: a client certificate and its key go together".into()),
    }
}

fn pem_source(
    text: &Option<String>,
    file: &Option<String>,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    match (text, file) {
        (Some(t), _) => Ok(Some(t.as_bytes().to_vec())),
        (None, Some(f)) => std::fs::read(f)
            .map(Some)
            .map_err(|e| format!("tls_config.{what}_file {f}: {e}")),
        (None, None) => Ok(None),
    }
}

#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is taken (signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
