//! What sluice's Kafka exporter and receiver share: the broker list, the `auth` section and its
//! translation to librdkafka properties, and the headers that tell a consumer what a message
//! holds. Kept apart so the two ends cannot drift.

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_config::SignalKind;

pub use rdkafka;

/// The topic a signal goes to (exporter) or is read from (receiver): the signal's own section,
/// else the shared `topic`, else the OTel Collector's defaults, so the two ends agree.
pub fn topic_for(signal: SignalKind, own: Option<&str>, shared: Option<&str>) -> String {
    let default = match signal {
        SignalKind::Traces => "otlp_spans",
        SignalKind::Metrics => "otlp_metrics",
        SignalKind::Logs => "otlp_logs",
    };
    own.or(shared).unwrap_or(default).to_string()
}

/// Header naming the signal of a message (`traces`, `metrics`, `logs`).
pub const SIGNAL_HEADER: &str = "sluice.signal";
/// Header naming the encoding of a message (`otlp_proto`, `otlp_json`, `raw`).
pub const ENCODING_HEADER: &str = "sluice.encoding";

/// `brokers: host:port` or a list of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Brokers {
    One(String),
    Many(Vec<String>),
}

impl Brokers {
    pub fn joined(&self) -> String {
        match self {
            Brokers::One(b) => b.clone(),
            Brokers::Many(list) => list.join(","),
        }
    }
}

pub fn default_brokers() -> Brokers {
    Brokers::One("localhost:9092".into())
}
pub fn default_client_id() -> String {
    "sluice".into()
}
/// `auth`: SASL and TLS settings of a Kafka client.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(default)]
    pub sasl: Option<SaslSettings>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    pub username: String,
    pub password: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    /// Skips certificate verification (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl AuthSettings {
    /// Sets `security.protocol` and the SASL/TLS properties. Returns (key, message) on error.
    pub fn apply(&self, c: &mut ClientConfig) -> Result<(), (&'static str, String)> {
        let protocol = match (&self.sasl, &self.tls) {
            (None, None) => "plaintext",
            (None, Some(_)) => "ssl",
            (Some(_), None) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(sasl) = &self.sasl {
            let mechanism = sasl.mechanism.to_ascii_uppercase();
            if !matches!(
                mechanism.as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            ) {
                return Err((
                    "auth.sasl.mechanism",
                    format!(
                        "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not `{}`",
                        sasl.mechanism
                    ),
                ));
            }
            c.set("sasl.mechanism", mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        if let Some(tls) = &self.tls {
            for (key, value) in [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.key.location", &tls.key_file),
            ] {
                if let Some(v) = value {
                    c.set(key, v);
                }
            }
            if tls.insecure_skip_verify {
                c.set("enable.ssl.certificate.verification", "false");
            }
        }
        Ok(())
    }
}
