//! `receivers: kafka:` with the OTel Collector Kafka receiver's keys, plus a pass-through map
//! of librdkafka properties.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;
pub use sluice_kafka_client::{AuthSettings, Brokers};
use sluice_kafka_client::{default_brokers, default_client_id};
use sluice_pipeline::SignalKind;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    #[serde(default = "default_brokers")]
    pub brokers: Brokers,
    /// Topic for every signal, unless a signal's own section names one.
    #[serde(default)]
    pub topic: Option<String>,
    /// Encoding for every signal, unless a signal's own section or the message's
    /// `sluice.encoding` header says otherwise.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalSection,
    #[serde(default)]
    pub metrics: SignalSection,
    #[serde(default)]
    pub logs: SignalSection,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Where a group without a committed offset starts: `latest` (default) or `earliest`.
    #[serde(default)]
    pub initial_offset: InitialOffset,
    /// Where messages that cannot be decoded are copied before being skipped.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Messages of one partition handed to the pipeline before the oldest of them is
    /// acknowledged (default 1: a partition's messages go through in order, one at a time,
    /// while different partitions proceed side by side). Offsets are committed in order
    /// whatever this is: only up to the oldest message not yet acknowledged.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_per_partition: usize,
    #[serde(default)]
    pub auth: AuthSettings,
    /// librdkafka properties set as given, last.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

fn default_max_in_flight() -> usize {
    1
}

fn default_group_id() -> String {
    "otel-collector".into()
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSection {
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    OtlpProto,
    OtlpJson,
    /// Logs only: each message becomes one log record with the payload as a bytes body.
    Raw,
    /// Logs only: each message becomes one log record with the payload (UTF-8) as a string body.
    Text,
}

impl Encoding {
    pub fn from_header(value: &[u8]) -> Option<Self> {
        Some(match value {
            b"otlp_proto" => Encoding::OtlpProto,
            b"otlp_json" => Encoding::OtlpJson,
            b"raw" => Encoding::Raw,
            b"text" => Encoding::Text,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

impl KafkaReceiverConfig {
    pub fn topic(&self, signal: SignalKind) -> String {
        let section = match signal {
            SignalKind::Traces => &self.traces,
            SignalKind::Metrics => &self.metrics,
            SignalKind::Logs => &self.logs,
        };
        sluice_kafka_client::topic_for(signal, section.topic.as_deref(), self.topic.as_deref())
    }

    pub fn encoding(&self, signal: SignalKind) -> Encoding {
        let section = match signal {
            SignalKind::Traces => &self.traces,
            SignalKind::Metrics => &self.metrics,
            SignalKind::Logs => &self.logs,
        };
        section.encoding.or(self.encoding).unwrap_or_default()
    }

    pub fn validate(&self, signals: &[SignalKind]) -> Result<(), (&'static str, String)> {
        for signal in signals {
            if matches!(self.encoding(*signal), Encoding::Raw | Encoding::Text)
                && *signal != SignalKind::Logs
            {
                return Err((
                    "encoding",
                    format!(
                        "`raw` and `text` are for logs only, not {}",
                        signal.as_str()
                    ),
                ));
            }
            if self.topic(*signal).is_empty() {
                return Err(("topic", "must not be empty".into()));
            }
        }
        if self.group_id.is_empty() {
            return Err(("group_id", "must not be empty".into()));
        }
        if self.max_in_flight_per_partition == 0 {
            return Err(("max_in_flight_per_partition", "must be at least 1".into()));
        }
        Ok(())
    }

    /// Properties shared by the consumer and the dead-letter producer.
    fn common(&self) -> Result<ClientConfig, (&'static str, String)> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.joined())
            .set("client.id", &self.client_id);
        self.auth.apply(&mut c)?;
        Ok(c)
    }

    pub fn consumer_config(&self) -> Result<ClientConfig, (&'static str, String)> {
        let mut c = self.common()?;
        c.set("group.id", &self.group_id)
            .set(
                "auto.offset.reset",
                match self.initial_offset {
                    InitialOffset::Latest => "latest",
                    InitialOffset::Earliest => "earliest",
                },
            )
            // Offsets are stored only once the pipeline acknowledged a message; the automatic
            // commit (also run on partition revocation and on close) commits only those.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false");
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        Ok(c)
    }

    pub fn dead_letter_config(&self) -> Result<ClientConfig, (&'static str, String)> {
        let mut c = self.common()?;
        c.set("acks", "all");
        Ok(c)
    }
}
