//! What sluice's Kafka exporter and receiver share, so the two ends cannot drift: the OTel
//! Collector's client keys (brokers, `tls`, `auth`, `metadata`, ...) and their translation to
//! librdkafka properties, the signal sections with their topic and encoding rules, the
//! encodings, and the headers that tell a consumer what a message holds.

mod auth;
pub mod encoding;
mod settings;
mod tls;

pub use auth::{AuthSettings, KerberosSettings, PlainTextSettings, SaslSettings};
pub use encoding::{Charset, Encoding, Side};
pub use rdkafka;
pub use settings::{
    Brokers, MetadataSettings, Shared, SignalSection, TopicSelection, decode, default_brokers,
    default_client_id, default_topic,
};
pub use tls::TlsSettings;

use sluice_config::{ComponentConfig, Diagnostic};

/// Header naming the signal of a message (`traces`, `metrics`, `logs`).
pub const SIGNAL_HEADER: &str = "sluice.signal";
/// Header naming the encoding of a message (`otlp_proto`, `otlp_json`, `raw`, ...).
pub const ENCODING_HEADER: &str = "sluice.encoding";

/// A problem with the value of a key of a Kafka component's section (`key` is dotted,
/// relative to the section).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The problem placed at its key in the component's section.
    pub fn at(&self, config: &ComponentConfig) -> Diagnostic {
        sluice_pipeline::config_keys::problem(config, &self.key, &self.message)
    }
}
