//! `tls` (and the deprecated `auth.tls`): the OTel Collector's `configtls` client settings,
//! turned into librdkafka's OpenSSL properties.

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_config::Duration;

use crate::Problem;

/// `tls:` — TLS to the brokers. Present (even empty) turns TLS on.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Plaintext after all, unless a CA is also given (as the OTel Collector). Default false.
    #[serde(default)]
    pub insecure: bool,
    /// TLS without verifying the broker's certificate (testing only). Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The name to verify the broker's certificate against. librdkafka has no way to set it;
    /// refused with an explanation rather than verifying a different name.
    #[serde(default)]
    pub server_name_override: Option<String>,
    /// CA bundle (file) that verifies the brokers; the system's roots when no CA is given.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// CA bundle (PEM text).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Client certificate for mutual TLS (file).
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Client certificate (PEM text).
    #[serde(default)]
    pub cert_pem: Option<String>,
    /// Client key (file).
    #[serde(default)]
    pub key_file: Option<String>,
    /// Client key (PEM text).
    #[serde(default)]
    pub key_pem: Option<String>,
    /// Trust the system's roots as well as `ca_file`/`ca_pem`. Default false.
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    /// Lowest TLS version, "1.2" by default. librdkafka's OpenSSL 3 speaks 1.2 and 1.3 and
    /// cannot be narrowed: "1.0"/"1.1" change nothing, "1.3" is refused.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Highest TLS version, "1.3" by default; a lower one is refused (see `min_version`).
    #[serde(default)]
    pub max_version: Option<String>,
    /// TLS 1.2 cipher suites by their Go (IANA) names. Default: OpenSSL's safe list.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Allow the suites Go deems insecure in `cipher_suites`. Default false.
    #[serde(default)]
    pub include_insecure_cipher_suites: bool,
    /// ECDHE curves in preference order (P256, P384, P521, X25519, X25519MLKEM768).
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    /// Re-reading the certificate files periodically: see the no-effect list (librdkafka reads
    /// them when the client starts).
    #[serde(default)]
    pub reload_interval: Option<Duration>,
    /// A key held in a TPM: refused when enabled (librdkafka reads keys from files or PEM).
    #[serde(default)]
    pub tpm: Option<TpmSettings>,
}

/// `tls.tpm`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmSettings {
    /// Whether the key is in a TPM. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The TPM device or socket.
    #[serde(default)]
    pub path: Option<String>,
    /// The TPM owner authorization.
    #[serde(default)]
    pub owner_auth: Option<String>,
    /// The key's authorization.
    #[serde(default)]
    pub auth: Option<String>,
}

/// Go's (IANA) cipher suite names and OpenSSL's, with whether Go counts the suite insecure.
/// TLS 1.3 suites are accepted and left to OpenSSL, as Go ignores them in this list.
const CIPHER_SUITES: &[(&str, Option<&str>, bool)] = &[
    ("TLS_AES_128_GCM_SHA256", None, false),
    ("TLS_AES_256_GCM_SHA384", None, false),
    ("TLS_CHACHA20_POLY1305_SHA256", None, false),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some("ECDHE-ECDSA-AES128-GCM-SHA256"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some("ECDHE-ECDSA-AES256-GCM-SHA384"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some("ECDHE-RSA-AES128-GCM-SHA256"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some("ECDHE-RSA-AES256-GCM-SHA384"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some("ECDHE-ECDSA-CHACHA20-POLY1305"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some("ECDHE-RSA-CHACHA20-POLY1305"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        Some("ECDHE-ECDSA-AES128-SHA"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        Some("ECDHE-ECDSA-AES256-SHA"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        Some("ECDHE-RSA-AES128-SHA"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        Some("ECDHE-RSA-AES256-SHA"),
        false,
    ),
    (
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        Some("AES128-GCM-SHA256"),
        true,
    ),
    (
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        Some("AES256-GCM-SHA384"),
        true,
    ),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", Some("AES128-SHA"), true),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", Some("AES256-SHA"), true),
    (
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        Some("AES128-SHA256"),
        true,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        Some("ECDHE-ECDSA-AES128-SHA256"),
        true,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        Some("ECDHE-RSA-AES128-SHA256"),
        true,
    ),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", Some("DES-CBC3-SHA"), true),
    (
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        Some("ECDHE-RSA-DES-CBC3-SHA"),
        true,
    ),
    ("TLS_RSA_WITH_RC4_128_SHA", Some("RC4-SHA"), true),
    (
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        Some("ECDHE-RSA-RC4-SHA"),
        true,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        Some("ECDHE-ECDSA-RC4-SHA"),
        true,
    ),
];

/// Go's curve names and OpenSSL's group names.
const CURVES: &[(&str, &str)] = &[
    ("P256", "P-256"),
    ("P384", "P-384"),
    ("P521", "P-521"),
    ("X25519", "X25519"),
    ("X25519MLKEM768", "X25519MLKEM768"),
];

/// Where distributions keep their CA bundle, for `include_system_ca_certs_pool` next to a CA
/// of the user's (librdkafka loads the system's roots only when no CA is given).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

fn version_rank(v: &str) -> Option<u8> {
    match v {
        "1.0" => Some(0),
        "1.1" => Some(1),
        "1.2" => Some(2),
        "1.3" => Some(3),
        _ => None,
    }
}

impl TlsSettings {
    /// Whether TLS is used at all: `insecure: true` without a CA means plaintext.
    pub fn enabled(&self) -> bool {
        !(self.insecure && self.ca_file.is_none() && self.ca_pem.is_none())
    }

    /// Sets the `ssl.*` properties. `key` is where the section is (`tls` or `auth.tls`).
    pub fn apply(&self, key: &str, c: &mut ClientConfig) -> Result<(), Problem> {
        let at = |sub: &str| format!("{key}.{sub}");
        if self.ca_file.is_some() && self.ca_pem.is_some() {
            return Err(Problem::new(
                at("ca_pem"),
                "give either ca_file or ca_pem, not both",
            ));
        }
        if self.cert_file.is_some() && self.cert_pem.is_some() {
            return Err(Problem::new(
                at("cert_pem"),
                "give either cert_file or cert_pem, not both",
            ));
        }
        if self.key_file.is_some() && self.key_pem.is_some() {
            return Err(Problem::new(
                at("key_pem"),
                "give either key_file or key_pem, not both",
            ));
        }
        let has_cert = self.cert_file.is_some() || self.cert_pem.is_some();
        let has_key = self.key_file.is_some() || self.key_pem.is_some();
        if has_cert != has_key {
            return Err(Problem::new(
                key,
                "a client certificate needs its key and a key its certificate (cert_file/cert_pem with key_file/key_pem)",
            ));
        }
        if let Some(name) = &self.server_name_override {
            return Err(Problem::new(
                at("server_name_override"),
                format!(
                    "librdkafka cannot verify brokers against another name than their own (`{name}`): give the brokers by the name on their certificates, or set `insecure_skip_verify: true` to skip verification"
                ),
            ));
        }
        if self.tpm.as_ref().is_some_and(|t| t.enabled) {
            return Err(Problem::new(
                at("tpm.enabled"),
                "sluice cannot use a key held in a TPM: give the key as key_file or key_pem",
            ));
        }
        let min = match &self.min_version {
            Some(v) => Some(version_rank(v).ok_or_else(|| {
                Problem::new(
                    at("min_version"),
                    format!("`{v}` is not 1.0, 1.1, 1.2 or 1.3"),
                )
            })?),
            None => None,
        };
        let max = match &self.max_version {
            Some(v) => Some(version_rank(v).ok_or_else(|| {
                Problem::new(
                    at("max_version"),
                    format!("`{v}` is not 1.0, 1.1, 1.2 or 1.3"),
                )
            })?),
            None => None,
        };
        if let (Some(min), Some(max)) = (min, max)
            && max < min
        {
            return Err(Problem::new(
                at("min_version"),
                "min_version cannot be greater than max_version",
            ));
        }
        // librdkafka's OpenSSL speaks TLS 1.2 and 1.3 and offers no setting to narrow that:
        // a range that leaves out either version cannot be honoured.
        if min == Some(3) {
            return Err(Problem::new(
                at("min_version"),
                "librdkafka cannot be limited to TLS 1.3; leave min_version at 1.2 (its lowest, and the default)",
            ));
        }
        if max.is_some_and(|m| m < 3) {
            return Err(Problem::new(
                at("max_version"),
                "librdkafka cannot be kept from TLS 1.3; leave max_version unset or 1.3",
            ));
        }
        if !self.cipher_suites.is_empty() {
            let mut openssl = Vec::new();
            for name in &self.cipher_suites {
                match CIPHER_SUITES.iter().find(|(go, _, _)| go == name) {
                    Some((_, _, true)) if !self.include_insecure_cipher_suites => {
                        return Err(Problem::new(
                            at("cipher_suites"),
                            format!(
                                "`{name}` is an insecure cipher suite; set include_insecure_cipher_suites: true to allow it"
                            ),
                        ));
                    }
                    Some((_, Some(o), _)) => openssl.push(*o),
                    Some((_, None, _)) => {}
                    None => {
                        return Err(Problem::new(
                            at("cipher_suites"),
                            format!(
                                "`{name}` is not a cipher suite name (e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
                            ),
                        ));
                    }
                }
            }
            if !openssl.is_empty() {
                c.set("ssl.cipher.suites", openssl.join(":"));
            }
        }
        if !self.curve_preferences.is_empty() {
            let mut groups = Vec::new();
            for name in &self.curve_preferences {
                let (_, group) = CURVES.iter().find(|(go, _)| go == name).ok_or_else(|| {
                    Problem::new(
                        at("curve_preferences"),
                        format!("`{name}` is not one of P256, P384, P521, X25519, X25519MLKEM768"),
                    )
                })?;
                groups.push(*group);
            }
            c.set("ssl.curves.list", groups.join(":"));
        }
        for (property, value) in [
            ("ssl.certificate.location", &self.cert_file),
            ("ssl.certificate.pem", &self.cert_pem),
            ("ssl.key.location", &self.key_file),
            ("ssl.key.pem", &self.key_pem),
        ] {
            if let Some(v) = value {
                c.set(property, v);
            }
        }
        match (
            &self.ca_file,
            &self.ca_pem,
            self.include_system_ca_certs_pool,
        ) {
            (None, None, _) => {}
            // Both at once was refused above.
            (Some(file), _, false) => {
                c.set("ssl.ca.location", file);
            }
            (None, Some(pem), false) => {
                c.set("ssl.ca.pem", pem);
            }
            (file, pem, true) => {
                // librdkafka loads both a CA location and a CA PEM: the system bundle as the
                // location, the user's CA as PEM text.
                let own = match (file, pem) {
                    (Some(f), _) => std::fs::read_to_string(f).map_err(|e| {
                        Problem::new(at("ca_file"), format!("cannot read `{f}`: {e}"))
                    })?,
                    (None, Some(p)) => p.clone(),
                    (None, None) => String::new(),
                };
                c.set("ssl.ca.pem", own);
                if let Some(bundle) = SYSTEM_CA_BUNDLES
                    .iter()
                    .find(|p| std::path::Path::new(p).is_file())
                {
                    c.set("ssl.ca.location", *bundle);
                }
            }
        }
        if self.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(tls: TlsSettings) -> Result<ClientConfig, Problem> {
        let mut c = ClientConfig::new();
        tls.apply("tls", &mut c).map(|()| c)
    }

    #[test]
    fn files_and_pem_map_to_librdkafka() {
        let c = applied(TlsSettings {
            ca_pem: Some("CA".into()),
            cert_file: Some("c.pem".into()),
            key_pem: Some("KEY".into()),
            cipher_suites: vec![
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_AES_128_GCM_SHA256".into(),
            ],
            curve_preferences: vec!["X25519".into(), "P256".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.get("ssl.ca.pem"), Some("CA"));
        assert_eq!(c.get("ssl.certificate.location"), Some("c.pem"));
        assert_eq!(c.get("ssl.key.pem"), Some("KEY"));
        assert_eq!(
            c.get("ssl.cipher.suites"),
            Some("ECDHE-RSA-AES128-GCM-SHA256")
        );
        assert_eq!(c.get("ssl.curves.list"), Some("X25519:P-256"));
        assert_eq!(c.get("enable.ssl.certificate.verification"), None);
        let c = applied(TlsSettings {
            insecure_skip_verify: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.get("enable.ssl.certificate.verification"), Some("false"));
    }

    #[test]
    fn what_librdkafka_cannot_do_is_refused_with_the_reason() {
        for (tls, key) in [
            (
                TlsSettings {
                    server_name_override: Some("kafka".into()),
                    ..Default::default()
                },
                "tls.server_name_override",
            ),
            (
                TlsSettings {
                    min_version: Some("1.3".into()),
                    ..Default::default()
                },
                "tls.min_version",
            ),
            (
                TlsSettings {
                    max_version: Some("1.2".into()),
                    ..Default::default()
                },
                "tls.max_version",
            ),
            (
                TlsSettings {
                    cipher_suites: vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()],
                    ..Default::default()
                },
                "tls.cipher_suites",
            ),
            (
                TlsSettings {
                    cert_file: Some("c".into()),
                    ..Default::default()
                },
                "tls",
            ),
            (
                TlsSettings {
                    ca_file: Some("a".into()),
                    ca_pem: Some("b".into()),
                    ..Default::default()
                },
                "tls.ca_pem",
            ),
        ] {
            assert_eq!(applied(tls).unwrap_err().key, key);
        }
        assert!(
            applied(TlsSettings {
                cipher_suites: vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()],
                include_insecure_cipher_suites: true,
                min_version: Some("1.2".into()),
                max_version: Some("1.3".into()),
                ..Default::default()
            })
            .is_ok()
        );
        assert!(
            !TlsSettings {
                insecure: true,
                ..Default::default()
            }
            .enabled()
        );
        assert!(
            TlsSettings {
                insecure: true,
                ca_file: Some("ca".into()),
                ..Default::default()
            }
            .enabled()
        );
    }
}
