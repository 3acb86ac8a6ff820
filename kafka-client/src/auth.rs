//! `auth`: SASL (and its deprecated `plain_text` form), Kerberos, and the deprecated `auth.tls`.

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::Problem;
use crate::tls::TlsSettings;

/// `auth:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// SASL authentication.
    #[serde(default)]
    pub sasl: Option<SaslSettings>,
    /// SASL/PLAIN, the OTel Collector's form before v0.123 (`sasl` with `mechanism: PLAIN`).
    #[serde(default)]
    pub plain_text: Option<PlainTextSettings>,
    /// TLS, the OTel Collector's place for it before v0.124; used only when the top-level
    /// `tls` is absent.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Kerberos (SASL/GSSAPI): refused, sluice's librdkafka is built without it.
    #[serde(default)]
    pub kerberos: Option<KerberosSettings>,
}

/// `auth.sasl`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// Required for PLAIN and SCRAM.
    #[serde(default)]
    pub username: Option<String>,
    /// Required for PLAIN and SCRAM.
    #[serde(default)]
    pub password: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`OAUTHBEARER` with librdkafka's own OIDC
    /// settings under `librdkafka:`).
    pub mechanism: String,
    /// The SASL handshake version: see the no-effect list (librdkafka negotiates it).
    #[serde(default)]
    pub version: Option<i64>,
    /// For `AWS_MSK_IAM_OAUTHBEARER`, which sluice refuses.
    #[serde(default)]
    pub aws_msk: Option<AwsMskSettings>,
    /// For `OAUTHBEARER` through an extension, which sluice does not have.
    #[serde(default)]
    pub oauthbearer_token_source: Option<String>,
    /// The briefly existing (2025) OIDC-file token source: refused when given.
    #[serde(default)]
    pub oidc_file: Option<IgnoredAny>,
}

/// `auth.sasl.aws_msk`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsMskSettings {
    /// The MSK cluster's region.
    #[serde(default)]
    pub region: Option<String>,
    /// The broker address, for the removed `AWS_MSK_IAM` mechanism.
    #[serde(default)]
    pub broker_addr: Option<String>,
}

/// `auth.plain_text`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainTextSettings {
    /// The SASL/PLAIN user.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// `auth.kerberos`: accepted as written so the refusal can say why.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KerberosSettings {
    /// Kerberos service name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Kerberos realm.
    #[serde(default)]
    pub realm: Option<String>,
    /// Use the keytab instead of the password.
    #[serde(default)]
    pub use_keytab: bool,
    /// Kerberos user.
    #[serde(default)]
    pub username: Option<String>,
    /// Kerberos password.
    #[serde(default)]
    pub password: Option<String>,
    /// krb5.conf.
    #[serde(default)]
    pub config_file: Option<String>,
    /// The keytab.
    #[serde(default)]
    pub keytab_file: Option<String>,
    /// Disable PA-FX-FAST.
    #[serde(default)]
    pub disable_fast_negotiation: bool,
}

impl AuthSettings {
    /// The SASL mechanism and credentials, or why they cannot be used. `librdkafka` is the
    /// component's pass-through map, where librdkafka's own OAUTHBEARER/OIDC settings live.
    pub fn sasl(
        &self,
        librdkafka: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<Vec<(&'static str, String)>>, Problem> {
        if self.kerberos.is_some() {
            return Err(Problem::new(
                "auth.kerberos",
                "Kerberos (SASL/GSSAPI) is not available: sluice's Kafka client (librdkafka) is built without it; authenticate with SASL PLAIN or SCRAM, or with mutual TLS",
            ));
        }
        let sasl = match (&self.sasl, &self.plain_text) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    "auth.plain_text",
                    "give either auth.sasl or the older auth.plain_text, not both",
                ));
            }
            (None, Some(p)) => {
                return Ok(Some(vec![
                    ("sasl.mechanism", "PLAIN".into()),
                    ("sasl.username", p.username.clone()),
                    ("sasl.password", p.password.clone()),
                ]));
            }
            (None, None) => return Ok(None),
            (Some(s), None) => s,
        };
        if sasl.oidc_file.is_some() {
            return Err(Problem::new(
                "auth.sasl.oidc_file",
                "OIDC token files are not supported; use librdkafka's OIDC client (mechanism: OAUTHBEARER with sasl.oauthbearer.* under `librdkafka:`)",
            ));
        }
        let mechanism = sasl.mechanism.to_ascii_uppercase();
        match mechanism.as_str() {
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                let (Some(user), Some(password)) = (&sasl.username, &sasl.password) else {
                    return Err(Problem::new(
                        "auth.sasl",
                        format!("{mechanism} needs a username and a password"),
                    ));
                };
                Ok(Some(vec![
                    ("sasl.mechanism", mechanism),
                    ("sasl.username", user.clone()),
                    ("sasl.password", password.clone()),
                ]))
            }
            "AWS_MSK_IAM_OAUTHBEARER" | "AWS_MSK_IAM" => Err(Problem::new(
                "auth.sasl.mechanism",
                format!(
                    "{mechanism} is not supported: sluice cannot sign AWS IAM tokens; use SASL/SCRAM-SHA-512 (MSK supports it with AWS Secrets Manager) or mutual TLS"
                ),
            )),
            "OAUTHBEARER" => {
                if let Some(source) = &sasl.oauthbearer_token_source {
                    return Err(Problem::new(
                        "auth.sasl.oauthbearer_token_source",
                        format!(
                            "sluice has no `{source}` extension to take tokens from; use librdkafka's OIDC client instead (sasl.oauthbearer.method: oidc and sasl.oauthbearer.* under `librdkafka:`)"
                        ),
                    ));
                }
                if librdkafka
                    .get("sasl.oauthbearer.method")
                    .map(String::as_str)
                    != Some("oidc")
                {
                    return Err(Problem::new(
                        "auth.sasl.mechanism",
                        "OAUTHBEARER needs a token source: set librdkafka's OIDC client under `librdkafka:` (sasl.oauthbearer.method: oidc, sasl.oauthbearer.client.id, .client.secret, .token.endpoint.url)",
                    ));
                }
                Ok(Some(vec![("sasl.mechanism", mechanism)]))
            }
            _ => Err(Problem::new(
                "auth.sasl.mechanism",
                format!(
                    "must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER, not `{}`",
                    sasl.mechanism
                ),
            )),
        }
    }
}

/// Sets `security.protocol` with the SASL and TLS properties.
pub fn apply_security(
    auth: &AuthSettings,
    tls: Option<&TlsSettings>,
    librdkafka: &std::collections::BTreeMap<String, String>,
    c: &mut ClientConfig,
) -> Result<(), Problem> {
    let (tls, tls_key) = match (tls, &auth.tls) {
        (Some(t), _) => (Some(t), "tls"),
        (None, Some(t)) => (Some(t), "auth.tls"),
        (None, None) => (None, "tls"),
    };
    let tls = tls.filter(|t| t.enabled());
    let sasl = auth.sasl(librdkafka)?;
    let protocol = match (&sasl, tls) {
        (None, None) => "plaintext",
        (None, Some(_)) => "ssl",
        (Some(_), None) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    for (k, v) in sasl.into_iter().flatten() {
        c.set(k, v);
    }
    if let Some(t) = tls {
        t.apply(tls_key, c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn security(auth: AuthSettings, tls: Option<TlsSettings>) -> Result<ClientConfig, Problem> {
        let mut c = ClientConfig::new();
        apply_security(&auth, tls.as_ref(), &BTreeMap::new(), &mut c).map(|()| c)
    }

    fn sasl(mechanism: &str) -> SaslSettings {
        SaslSettings {
            username: Some("u".into()),
            password: Some("p".into()),
            mechanism: mechanism.into(),
            version: None,
            aws_msk: None,
            oauthbearer_token_source: None,
            oidc_file: None,
        }
    }

    #[test]
    fn plain_text_is_sasl_plain_and_top_level_tls_wins_over_auth_tls() {
        let c = security(
            AuthSettings {
                plain_text: Some(PlainTextSettings {
                    username: "u".into(),
                    password: "p".into(),
                }),
                tls: Some(TlsSettings {
                    ca_file: Some("old.pem".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Some(TlsSettings {
                ca_file: Some("new.pem".into()),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("ssl.ca.location"), Some("new.pem"));
        // The deprecated place still works alone; `insecure` without a CA means plaintext.
        let c = security(
            AuthSettings {
                tls: Some(TlsSettings {
                    ca_file: Some("old.pem".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(c.get("ssl.ca.location"), Some("old.pem"));
        let c = security(
            AuthSettings::default(),
            Some(TlsSettings {
                insecure: true,
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
    }

    #[test]
    fn mechanisms_sluice_cannot_do_are_refused_with_what_to_use() {
        for (auth, key, says) in [
            (
                AuthSettings {
                    kerberos: Some(KerberosSettings::default()),
                    ..Default::default()
                },
                "auth.kerberos",
                "GSSAPI",
            ),
            (
                AuthSettings {
                    sasl: Some(sasl("AWS_MSK_IAM_OAUTHBEARER")),
                    ..Default::default()
                },
                "auth.sasl.mechanism",
                "SCRAM-SHA-512",
            ),
            (
                AuthSettings {
                    sasl: Some(sasl("OAUTHBEARER")),
                    ..Default::default()
                },
                "auth.sasl.mechanism",
                "oidc",
            ),
            (
                AuthSettings {
                    sasl: Some(sasl("GSSAPI")),
                    ..Default::default()
                },
                "auth.sasl.mechanism",
                "PLAIN",
            ),
        ] {
            let e = security(auth, None).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.message.contains(says), "{}", e.message);
        }
        let c = security(
            AuthSettings {
                sasl: Some(sasl("scram-sha-512")),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
    }
}
