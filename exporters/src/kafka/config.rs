//! The `kafka` exporter's configuration: the OTel Collector Kafka exporter's keys, plus a
//! pass-through map of librdkafka properties.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_config::Duration;
pub use sluice_kafka_client::{AuthSettings, Brokers};
use sluice_kafka_client::{default_brokers, default_client_id};
use sluice_pipeline::SignalKind;
use sluice_pipeline::exporter::{QueueSettings, RetrySettings};

/// `exporters: kafka:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaExporterConfig {
    #[serde(default = "default_brokers")]
    pub brokers: Brokers,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// One topic for every signal, unless a signal's own section names one.
    #[serde(default)]
    pub topic: Option<String>,
    /// Encoding for every signal, unless a signal's own section names one.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalSection,
    #[serde(default)]
    pub metrics: SignalSection,
    #[serde(default)]
    pub logs: SignalSection,
    /// A resource attribute whose value, when present, is the topic for that resource's data.
    #[serde(default)]
    pub topic_from_attribute: Option<String>,
    #[serde(default)]
    pub partition_traces_by_id: bool,
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    #[serde(default)]
    pub partition_logs_by_trace_id: bool,
    #[serde(default)]
    pub producer: ProducerSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    /// librdkafka properties set as given, last (they win over everything above).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
    /// How long one message may wait for the broker's confirmation before the attempt fails
    /// and the retry settings take over.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default)]
    pub sending_queue: QueueSettings,
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
}

fn default_timeout() -> Duration {
    Duration(StdDuration::from_secs(5))
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
    /// Logs only: each record's body as one message.
    Raw,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::OtlpProto => "otlp_proto",
            Encoding::OtlpJson => "otlp_json",
            Encoding::Raw => "raw",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// `all` (default here, unlike the OTel Collector's 1: the acknowledgement then means the
    /// data is on every in-sync replica), or 0, 1, -1.
    #[serde(default)]
    pub required_acks: RequiredAcks,
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka waits to fill a batch before sending it.
    #[serde(default)]
    pub linger: Option<Duration>,
    /// Messages per produce batch.
    #[serde(default)]
    pub flush_max_messages: Option<usize>,
    /// Exactly-once per partition within a producer session; needs `required_acks: all`.
    #[serde(default = "yes")]
    pub idempotent: bool,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            max_message_bytes: default_max_message_bytes(),
            required_acks: RequiredAcks::default(),
            compression: Compression::default(),
            linger: None,
            flush_max_messages: None,
            idempotent: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_max_message_bytes() -> usize {
    1_000_000
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RequiredAcks {
    Named(AcksName),
    Number(i8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcksName {
    All,
}

impl Default for RequiredAcks {
    fn default() -> Self {
        RequiredAcks::Named(AcksName::All)
    }
}

impl RequiredAcks {
    fn is_all(self) -> bool {
        matches!(self, RequiredAcks::Named(_) | RequiredAcks::Number(-1))
    }
    fn value(self) -> Result<&'static str, String> {
        match self {
            RequiredAcks::Named(_) | RequiredAcks::Number(-1) => Ok("all"),
            RequiredAcks::Number(0) => Ok("0"),
            RequiredAcks::Number(1) => Ok("1"),
            RequiredAcks::Number(n) => Err(format!("must be all, -1, 0 or 1, not {n}")),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl KafkaExporterConfig {
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

    /// Checks what serde cannot. Returns (key, message) on error.
    pub fn validate(&self, signals: &[SignalKind]) -> Result<(), (&'static str, String)> {
        for signal in signals {
            if self.encoding(*signal) == Encoding::Raw && *signal != SignalKind::Logs {
                return Err((
                    "encoding",
                    format!("`raw` is for logs only, not {}", signal.as_str()),
                ));
            }
            if self.topic(*signal).is_empty() {
                return Err(("topic", "must not be empty".into()));
            }
        }
        if self.producer.max_message_bytes < 1000 {
            return Err((
                "producer.max_message_bytes",
                "must be at least 1000 (librdkafka's minimum)".into(),
            ));
        }
        if self.producer.idempotent && !self.producer.required_acks.is_all() {
            return Err((
                "producer.idempotent",
                "the idempotent producer needs `required_acks: all`; set `idempotent: false` to use fewer acks".into(),
            ));
        }
        self.producer
            .required_acks
            .value()
            .map_err(|e| ("producer.required_acks", e))?;
        Ok(())
    }

    /// The librdkafka properties of the producer.
    pub fn client_config(&self) -> Result<ClientConfig, (&'static str, String)> {
        let mut c = ClientConfig::new();
        let p = &self.producer;
        c.set("bootstrap.servers", self.brokers.joined())
            .set("client.id", &self.client_id)
            .set(
                "acks",
                p.required_acks
                    .value()
                    .map_err(|e| ("producer.required_acks", e))?,
            )
            .set("enable.idempotence", p.idempotent.to_string())
            .set("compression.codec", p.compression.as_str())
            // Headroom for key and headers above the payload limit the exporter enforces.
            .set(
                "message.max.bytes",
                (p.max_message_bytes + 4096).to_string(),
            )
            // An expired message fails its export attempt (retryable), so it is never lost
            // silently: the helper retries it and a long outage backs up into its queue.
            .set(
                "message.timeout.ms",
                self.timeout.0.as_millis().max(1).to_string(),
            );
        if let Some(linger) = &p.linger {
            c.set("linger.ms", linger.0.as_millis().to_string());
        }
        if let Some(n) = p.flush_max_messages {
            c.set("batch.num.messages", n.max(1).to_string());
        }
        self.auth.apply(&mut c)?;
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        Ok(c)
    }
}
