//! `exporters: kafka:` — the OTel Collector Kafka exporter's own keys (partitioning, headers,
//! the producer), plus sluice's `producer.idempotent`. The client keys (brokers, `tls`,
//! `auth`, ...) and the signal sections are the ones both Kafka components share, in
//! `sluice-kafka-client`; `timeout`, `sending_queue` and `retry_on_failure` are read by the
//! runtime.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_config::{Duration, Optional};
use sluice_kafka_client::{Encoding, Problem, Shared, Side};
use sluice_pipeline::SignalKind;
use sluice_pipeline::config_keys::NoEffect;

/// The exporter's keys that cannot mean anything in sluice, and why.
pub const NO_EFFECT: &[NoEffect] = &[NoEffect::new(
    "producer.max_broker_write_bytes",
    "librdkafka sizes its produce requests from producer.max_message_bytes; franz-go's separate cap on one request has no counterpart",
)];

/// The exporter's own keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaExporterConfig {
    /// A resource attribute whose value, when present, is the topic for that resource's data.
    #[serde(default)]
    pub topic_from_attribute: Option<String>,
    /// Client metadata keys (the request headers a receiver kept with `include_metadata`)
    /// whose values become record headers.
    #[serde(default)]
    pub include_metadata_keys: Vec<String>,
    /// Headers set on every record.
    #[serde(default)]
    pub record_headers: RecordHeaders,
    /// Add the `otelcol.signal` header (`traces`, `metrics`, `logs`) to every record
    /// (default false).
    #[serde(default)]
    pub signal_header: bool,
    /// One message per trace, keyed by its hex trace id (default false).
    #[serde(default)]
    pub partition_traces_by_id: bool,
    /// One message per resource, keyed by the OTel Collector's hash of its attributes
    /// (default false).
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    /// As above, for logs (default false).
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    /// One message per trace id of the log records, keyed by it (default false).
    #[serde(default)]
    pub partition_logs_by_trace_id: bool,
    /// How records are spread over partitions.
    #[serde(default)]
    pub record_partitioner: RecordPartitionerSection,
    /// The producer.
    #[serde(default)]
    pub producer: ProducerSettings,
}

/// `record_headers`: a map, or a list of `{key, value}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RecordHeaders {
    Map(BTreeMap<String, String>),
    List(Vec<RecordHeader>),
}

impl Default for RecordHeaders {
    fn default() -> Self {
        RecordHeaders::Map(BTreeMap::new())
    }
}

/// One `record_headers` entry in the list form.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordHeader {
    /// The header name.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl RecordHeaders {
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            RecordHeaders::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            RecordHeaders::List(l) => l.iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
        }
    }
}

/// An empty section whose presence is the setting (`round_robin: {}`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {}

/// `record_partitioner:` — at most one of its keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPartitionerSection {
    /// Keyed records by a hash of the key, keyless ones on a sticky partition (the default,
    /// with the `sarama_compat` hasher).
    #[serde(default)]
    pub sticky_key: Optional<StickyKey>,
    /// Records spread evenly, keys ignored.
    #[serde(default)]
    pub round_robin: Optional<Flag>,
    /// Records to the least busy partition, keys ignored.
    #[serde(default)]
    pub least_backup: Optional<Flag>,
    /// A partitioner extension: refused, sluice has none.
    #[serde(default)]
    pub extension: Option<String>,
}

/// `record_partitioner.sticky_key`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyKey {
    /// `sarama_compat` (default: FNV-1a as sarama and the OTel Collector) or `murmur2` (as the
    /// Java client).
    #[serde(default)]
    pub hasher: Option<String>,
}

/// Where keyed records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionStrategy {
    /// sarama's hash of the key: the OTel Collector's default.
    SaramaCompat,
    /// Kafka's Java client's murmur2 hash of the key.
    Murmur2,
    /// Keys ignored: a partition per record, evenly on average. librdkafka hands keyless records
    /// to no partitioner of ours, so round-robin and least-backup are spread at random.
    Spread,
}

/// `producer:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// Largest message, before compression (default 1000000); bigger batches are split.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// `all` (default here, unlike the OTel Collector's 1: the acknowledgement then means the
    /// data is on every in-sync replica), or 0, 1, -1.
    #[serde(default)]
    pub required_acks: RequiredAcks,
    /// `none` (default), `gzip`, `snappy`, `lz4`, `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// `compression_params.level`.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// How long a partition waits for more records before sending (default 10ms).
    #[serde(default = "default_linger")]
    pub linger: Duration,
    /// Most records per produce request (default 10000; 0, Sarama's "no limit": 1000000).
    #[serde(default = "default_flush_max_messages")]
    pub flush_max_messages: usize,
    /// Let the broker create a missing topic on first use (default true).
    #[serde(default = "yes")]
    pub allow_auto_topic_creation: bool,
    /// Exactly-once per partition within a producer session (sluice's own key). Default:
    /// on when `required_acks` is all, which it needs.
    #[serde(default)]
    pub idempotent: Option<bool>,
}

/// `producer.compression_params`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// The codec's level (default -1, the codec's own default).
    #[serde(default)]
    pub level: Option<i32>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            max_message_bytes: default_max_message_bytes(),
            required_acks: RequiredAcks::default(),
            compression: Compression::default(),
            compression_params: CompressionParams::default(),
            linger: default_linger(),
            flush_max_messages: default_flush_max_messages(),
            allow_auto_topic_creation: true,
            idempotent: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_max_message_bytes() -> usize {
    1_000_000
}
fn default_linger() -> Duration {
    Duration(StdDuration::from_millis(10))
}
fn default_flush_max_messages() -> usize {
    10_000
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

    /// The levels librdkafka takes for the codec (-1 is always its default).
    fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::None | Compression::Snappy => -1..=-1,
            Compression::Gzip => -1..=9,
            Compression::Lz4 | Compression::Zstd => -1..=12,
        }
    }
}

/// What one signal's batches become.
#[derive(Clone, Debug)]
pub struct Target {
    pub topic: String,
    pub encoding: Encoding,
    /// Client metadata key whose first value, when the request carried it, is the topic
    /// (before `topic_from_attribute` and `topic`, as upstream).
    pub topic_from_metadata_key: Option<String>,
    /// Client metadata key whose first value, when present, is every message's key.
    pub message_key_from_metadata_key: Option<String>,
}

/// Everything the exporter runs with, checked.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub client: ClientConfig,
    pub strategy: PartitionStrategy,
    pub targets: Vec<(SignalKind, Target)>,
    pub headers: Vec<(String, String)>,
}

impl KafkaExporterConfig {
    fn strategy(&self) -> Result<PartitionStrategy, Problem> {
        let p = &self.record_partitioner;
        let set = [
            p.sticky_key.is_some(),
            p.round_robin.is_some(),
            p.least_backup.is_some(),
            p.extension.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set > 1 {
            return Err(Problem::new(
                "record_partitioner",
                "at most one record_partitioner strategy may be configured",
            ));
        }
        if let Some(id) = &p.extension {
            return Err(Problem::new(
                "record_partitioner.extension",
                format!(
                    "sluice has no partitioner extensions (`{id}`); use sticky_key (sarama_compat or murmur2), round_robin or least_backup"
                ),
            ));
        }
        if p.round_robin.is_some() || p.least_backup.is_some() {
            return Ok(PartitionStrategy::Spread);
        }
        match p.sticky_key.as_ref().and_then(|s| s.hasher.as_deref()) {
            None | Some("") | Some("sarama_compat") => Ok(PartitionStrategy::SaramaCompat),
            Some("murmur2") => Ok(PartitionStrategy::Murmur2),
            Some(other) => Err(Problem::new(
                "record_partitioner.sticky_key.hasher",
                format!("must be sarama_compat or murmur2, not `{other}`"),
            )),
        }
    }

    /// Whether the producer is idempotent: as configured, else when every replica acks.
    pub fn idempotent(&self) -> bool {
        self.producer
            .idempotent
            .unwrap_or(self.producer.required_acks.is_all())
    }

    /// Checks everything and builds the producer's settings; `message_timeout` is the
    /// exporter's `timeout`: how long one message may wait for the broker's confirmation before
    /// the attempt fails and the retry settings take over.
    pub fn resolve(
        &self,
        shared: &Shared,
        signals: &[SignalKind],
        message_timeout: StdDuration,
    ) -> Result<Resolved, Problem> {
        let mut targets = Vec::new();
        for signal in [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs] {
            let section = shared.section(signal);
            let name = signal.as_str();
            if section.message_key_from_metadata_key.is_some() {
                let exclusive = match signal {
                    SignalKind::Traces => self.partition_traces_by_id,
                    SignalKind::Metrics => self.partition_metrics_by_resource_attributes,
                    SignalKind::Logs => {
                        self.partition_logs_by_resource_attributes
                            || self.partition_logs_by_trace_id
                    }
                };
                if exclusive {
                    return Err(Problem::new(
                        format!("{name}.message_key_from_metadata_key"),
                        format!(
                            "{name}.message_key_from_metadata_key cannot be combined with the partition_* keys of {name}"
                        ),
                    ));
                }
            }
            let topic = shared.exporter_topic(signal)?;
            let encoding = shared.encoding(signal, Side::Exporter)?;
            if signals.contains(&signal) {
                targets.push((
                    signal,
                    Target {
                        topic,
                        encoding,
                        topic_from_metadata_key: section
                            .topic_from_metadata_key
                            .clone()
                            .filter(|k| !k.is_empty()),
                        message_key_from_metadata_key: section
                            .message_key_from_metadata_key
                            .clone()
                            .filter(|k| !k.is_empty()),
                    },
                ));
            }
        }
        if self.partition_logs_by_resource_attributes && self.partition_logs_by_trace_id {
            return Err(Problem::new(
                "partition_logs_by_trace_id",
                "partition_logs_by_resource_attributes and partition_logs_by_trace_id cannot both be enabled",
            ));
        }
        let headers = self.record_headers.pairs();
        if let Some((k, _)) = headers.iter().find(|(k, _)| k.is_empty()) {
            return Err(Problem::new(
                "record_headers",
                format!("header name `{k}` must not be empty"),
            ));
        }
        let strategy = self.strategy()?;
        let p = &self.producer;
        if p.max_message_bytes < 1000 || p.max_message_bytes > i32::MAX as usize - 4096 {
            return Err(Problem::new(
                "producer.max_message_bytes",
                "must be at least 1000 (librdkafka's minimum) and fit in 32 bits",
            ));
        }
        let acks = p
            .required_acks
            .value()
            .map_err(|e| Problem::new("producer.required_acks", e))?;
        if p.idempotent == Some(true) && !p.required_acks.is_all() {
            return Err(Problem::new(
                "producer.idempotent",
                "the idempotent producer needs `required_acks: all`; set `idempotent: false` to use fewer acks",
            ));
        }
        // 0 was "no limit" in the Sarama era: librdkafka's largest.
        let flush_max_messages = match p.flush_max_messages {
            0 => 1_000_000,
            n if n > 1_000_000 => {
                return Err(Problem::new(
                    "producer.flush_max_messages",
                    "must be at most 1000000 (0: no limit)",
                ));
            }
            n => n,
        };
        if p.linger.0 > StdDuration::from_secs(900) {
            return Err(Problem::new("producer.linger", "must be at most 15m"));
        }
        let level = p.compression_params.level.unwrap_or(-1);
        if !p.compression.levels().contains(&level) {
            return Err(Problem::new(
                "producer.compression_params.level",
                format!(
                    "{} takes levels {:?} (-1: the codec's default), not {level}",
                    p.compression.as_str(),
                    p.compression.levels()
                ),
            ));
        }
        let mut c = shared.client_config()?;
        c.set("acks", acks)
            .set("enable.idempotence", self.idempotent().to_string())
            .set("compression.codec", p.compression.as_str())
            .set("compression.level", level.to_string())
            // Headroom for key and headers above the payload limit the exporter enforces.
            .set(
                "message.max.bytes",
                (p.max_message_bytes + 4096).to_string(),
            )
            // An expired message fails its export attempt (retryable), so it is never lost
            // silently: the helper retries it and a long outage backs up into its queue.
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().max(1).to_string(),
            )
            .set("linger.ms", p.linger.0.as_millis().to_string())
            .set("batch.num.messages", flush_max_messages.to_string())
            .set(
                "allow.auto.create.topics",
                p.allow_auto_topic_creation.to_string(),
            );
        match strategy {
            // Installed on the producer itself (producer.rs).
            PartitionStrategy::SaramaCompat => {}
            PartitionStrategy::Murmur2 => {
                c.set("partitioner", "murmur2_random");
            }
            PartitionStrategy::Spread => {
                c.set("partitioner", "random");
            }
        }
        shared.passthrough(&mut c);
        Ok(Resolved {
            client: c,
            strategy,
            targets,
            headers,
        })
    }
}
