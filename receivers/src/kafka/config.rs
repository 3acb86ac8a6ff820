//! `receivers: kafka:` — the OTel Collector Kafka receiver's own keys (consumer group, fetching,
//! marking, header extraction, error backoff), plus sluice's `dead_letter_topic` and
//! `max_in_flight_per_partition`. The client keys (brokers, `tls`, `auth`, ...) and the signal
//! sections are the ones both Kafka components share, in `sluice-kafka-client`.

use std::time::Duration as StdDuration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_config::Duration;
use sluice_kafka_client::{Encoding, Problem, Shared, Side, TopicSelection};
use sluice_pipeline::SignalKind;
use sluice_pipeline::config_keys::NoEffect;
use sluice_pipeline::exporter::RetrySettings;

/// The receiver's keys that cannot mean anything in sluice, and why.
pub const NO_EFFECT: &[NoEffect] = &[NoEffect::new(
    "partition_processing",
    "sluice always processes each partition on its own and in order, with up to max_in_flight_per_partition of its messages in the pipeline",
)];

/// The receiver's own keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    /// The consumer group (default otel-collector).
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Static group membership: a restart within the session timeout keeps the partitions.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Where a group without a committed offset starts: `latest` (default) or `earliest`.
    #[serde(default)]
    pub initial_offset: InitialOffset,
    /// How long the group waits for a silent member before reassigning its partitions
    /// (default 10s).
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Duration,
    /// How often the member tells the group it is alive (default 3s).
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: Duration,
    /// One partition assignor (the form before v0.154 of `group_rebalance_strategies`).
    #[serde(default)]
    pub group_rebalance_strategy: Option<String>,
    /// Partition assignors the member offers, in order: `range`, `roundrobin`,
    /// `cooperative-sticky` (the default), `sticky`.
    #[serde(default)]
    pub group_rebalance_strategies: Option<Vec<String>>,
    /// Bytes the broker waits for before answering a fetch (default 1).
    #[serde(default = "default_min_fetch_size")]
    pub min_fetch_size: i32,
    /// Bytes fetched per partition, the Sarama-era name of `max_partition_fetch_size`.
    #[serde(default)]
    pub default_fetch_size: Option<i32>,
    /// Most bytes in one fetch answer (default 1048576; 0: librdkafka's own limit).
    #[serde(default = "default_max_fetch_size")]
    pub max_fetch_size: i32,
    /// Most bytes per partition in one fetch answer (default 1048576).
    #[serde(default)]
    pub max_partition_fetch_size: Option<i32>,
    /// How long the broker may wait for `min_fetch_size` bytes (default 250ms).
    #[serde(default = "default_max_fetch_wait")]
    pub max_fetch_wait: Duration,
    /// Periodic offset commits.
    #[serde(default)]
    pub autocommit: AutoCommit,
    /// When a message counts as consumed. Absent, and with `error_backoff` absent too, sluice
    /// marks after the pipeline took it, retries refusals until they succeed and skips what
    /// fails for good (at least once); present, the OTel Collector's semantics and defaults.
    #[serde(default)]
    pub message_marking: Option<MessageMarking>,
    /// Copying Kafka headers to resource attributes.
    #[serde(default)]
    pub header_extraction: HeaderExtraction,
    /// Retrying a message the pipeline refused (see `message_marking` for the default).
    #[serde(default)]
    pub error_backoff: Option<ErrorBackoff>,
    /// Optional self-metrics.
    #[serde(default)]
    pub telemetry: Telemetry,
    /// Where messages that cannot be decoded are copied before being skipped (sluice's own).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Messages of one partition handed to the pipeline before the oldest of them is
    /// acknowledged (default 1: a partition's messages go through in order, one at a time,
    /// while different partitions proceed side by side). Offsets are committed in order
    /// whatever this is: only up to the oldest message not yet acknowledged.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_per_partition: usize,
}

fn default_group_id() -> String {
    "otel-collector".into()
}
fn default_session_timeout() -> Duration {
    Duration(StdDuration::from_secs(10))
}
fn default_heartbeat_interval() -> Duration {
    Duration(StdDuration::from_secs(3))
}
fn default_min_fetch_size() -> i32 {
    1
}
fn default_max_fetch_size() -> i32 {
    1_048_576
}
fn default_max_fetch_wait() -> Duration {
    Duration(StdDuration::from_millis(250))
}
fn default_max_in_flight() -> usize {
    1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

/// `autocommit:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoCommit {
    /// Commit marked offsets every `interval` (default true). Off, each message's offset is
    /// committed as soon as it is marked, and on partition revocation and shutdown.
    #[serde(default = "yes")]
    pub enable: bool,
    /// How often marked offsets are committed (default 1s).
    #[serde(default = "default_commit_interval")]
    pub interval: Duration,
}

fn yes() -> bool {
    true
}
fn default_commit_interval() -> Duration {
    Duration(StdDuration::from_secs(1))
}

impl Default for AutoCommit {
    fn default() -> Self {
        AutoCommit {
            enable: true,
            interval: default_commit_interval(),
        }
    }
}

/// `message_marking:` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageMarking {
    /// Mark after the pipeline answered (true) or before handing the message over (false,
    /// the OTel Collector's default: a crash or a failure loses the message).
    #[serde(default)]
    pub after: Option<bool>,
    /// With `after`: mark (skip) a message that failed with a retryable error once
    /// `error_backoff` gives up (default false: its partition stops there).
    #[serde(default)]
    pub on_error: Option<bool>,
    /// With `after`: mark (skip) a message that failed for good, e.g. undecodable (default:
    /// `on_error`).
    #[serde(default)]
    pub on_permanent_error: Option<bool>,
}

/// `header_extraction:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderExtraction {
    /// Copy the `headers` below to resource attributes `kafka.header.<name>` (default false).
    #[serde(default)]
    pub extract_headers: bool,
    /// Header names to copy (exact match; the first header of a name is used).
    #[serde(default)]
    pub headers: Vec<String>,
}

/// `error_backoff:` — the OTel Collector's `configretry` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBackoff {
    /// Retry a refused message (default false when the section is written).
    #[serde(default)]
    pub enabled: bool,
    /// First wait (default 5s).
    #[serde(default = "default_initial_interval")]
    pub initial_interval: Duration,
    /// Jitter factor (default 0.5).
    #[serde(default = "default_randomization")]
    pub randomization_factor: f64,
    /// Growth of the wait (default 1.5).
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Longest wait (default 30s).
    #[serde(default = "default_max_interval")]
    pub max_interval: Duration,
    /// Give up after this long; 0 never gives up (default 5m).
    #[serde(default = "default_max_elapsed")]
    pub max_elapsed_time: Duration,
}

fn default_initial_interval() -> Duration {
    Duration(StdDuration::from_secs(5))
}
fn default_randomization() -> f64 {
    0.5
}
fn default_multiplier() -> f64 {
    1.5
}
fn default_max_interval() -> Duration {
    Duration(StdDuration::from_secs(30))
}
fn default_max_elapsed() -> Duration {
    Duration(StdDuration::from_secs(300))
}

/// `telemetry:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// `telemetry.metrics`.
    #[serde(default)]
    pub metrics: TelemetryMetrics,
}

/// `telemetry.metrics`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMetrics {
    /// Produce-to-receive delay of records: `sluice_receiver_kafka_records_delay_milliseconds_total`
    /// (sum) and `sluice_receiver_kafka_delayed_records_total` (count). Default off.
    #[serde(default)]
    pub kafka_receiver_records_delay: MetricToggle,
}

/// `enabled:` of an optional metric.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricToggle {
    /// Whether the metric is recorded (default false).
    #[serde(default)]
    pub enabled: bool,
}

/// When a message counts as consumed, resolved from `message_marking`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marking {
    pub after: bool,
    pub on_error: bool,
    pub on_permanent_error: bool,
}

/// What one signal's messages are: where they come from and how they are encoded.
#[derive(Clone, Debug)]
pub struct SignalRoute {
    pub signal: SignalKind,
    pub topics: TopicSelection,
    pub encoding: Encoding,
}

/// Everything the receiver runs with, checked.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub routes: Vec<SignalRoute>,
    pub consumer: ClientConfig,
    pub dead_letter: Option<(String, ClientConfig)>,
    pub marking: Marking,
    pub retry: RetrySettings,
    pub headers: Vec<String>,
    pub autocommit: bool,
    /// How often regular-expression topics are matched against the cluster's topics.
    pub refresh: StdDuration,
    pub delay_metric: bool,
    /// Accepted with a caveat: shown as warnings.
    pub notes: Vec<Problem>,
}

/// librdkafka's assignor names for the OTel Collector's strategy names, and whether each is
/// cooperative (librdkafka cannot offer cooperative and eager assignors together).
fn assignor(name: &str) -> Option<(&'static str, bool)> {
    Some(match name {
        "range" => ("range", false),
        "roundrobin" => ("roundrobin", false),
        "cooperative-sticky" | "sticky" => ("cooperative-sticky", true),
        _ => return None,
    })
}

fn ms(d: &Duration) -> String {
    d.0.as_millis().to_string()
}

impl KafkaReceiverConfig {
    fn marking_and_retry(&self) -> (Marking, RetrySettings) {
        if self.message_marking.is_none() && self.error_backoff.is_none() {
            // Sluice's default: at least once. Nothing is marked before the pipeline has it,
            // a refusal is retried for as long as it lasts, and what can never succeed is
            // skipped rather than stopping its partition for good.
            return (
                Marking {
                    after: true,
                    on_error: false,
                    on_permanent_error: true,
                },
                RetrySettings {
                    enabled: true,
                    initial_interval: Duration(StdDuration::from_millis(100)),
                    max_interval: Duration(StdDuration::from_secs(5)),
                    max_elapsed_time: Duration(StdDuration::ZERO),
                    ..RetrySettings::default()
                },
            );
        }
        let m = self.message_marking.clone().unwrap_or_default();
        let on_error = m.on_error.unwrap_or(false);
        let marking = Marking {
            after: m.after.unwrap_or(false),
            on_error,
            on_permanent_error: m.on_permanent_error.unwrap_or(on_error),
        };
        let retry = match &self.error_backoff {
            Some(b) => RetrySettings {
                enabled: b.enabled,
                initial_interval: b.initial_interval,
                max_interval: b.max_interval,
                max_elapsed_time: b.max_elapsed_time,
                multiplier: b.multiplier,
                randomization_factor: b.randomization_factor,
            },
            None => RetrySettings {
                enabled: false,
                ..RetrySettings::default()
            },
        };
        (marking, retry)
    }

    fn assignment_strategy(&self, notes: &mut Vec<Problem>) -> Result<String, Problem> {
        let (key, names) = match (
            &self.group_rebalance_strategies,
            &self.group_rebalance_strategy,
        ) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    "group_rebalance_strategy",
                    "give either group_rebalance_strategies or the older group_rebalance_strategy, not both",
                ));
            }
            (Some(list), None) => ("group_rebalance_strategies", list.clone()),
            (None, Some(one)) => ("group_rebalance_strategy", vec![one.clone()]),
            // The OTel Collector's default since it moved to franz-go, so sluice and collectors
            // can share a group.
            (None, None) => return Ok("cooperative-sticky".into()),
        };
        let mut chosen: Vec<&str> = Vec::new();
        let mut cooperative = None;
        for name in &names {
            let (librdkafka, is_cooperative) = assignor(name).ok_or_else(|| {
                Problem::new(
                    key,
                    format!(
                        "`{name}` is not range, roundrobin, sticky or cooperative-sticky (sluice has no balancer extensions)"
                    ),
                )
            })?;
            if name == "sticky" {
                notes.push(Problem::new(
                    key,
                    "`sticky` is used as cooperative-sticky: librdkafka has no eager sticky assignor (it assigns the same way, but cannot share a group with members offering only `sticky`)",
                ));
            }
            if cooperative.is_some_and(|c| c != is_cooperative) {
                return Err(Problem::new(
                    key,
                    "librdkafka cannot offer cooperative-sticky together with range or roundrobin",
                ));
            }
            cooperative = Some(is_cooperative);
            if !chosen.contains(&librdkafka) {
                chosen.push(librdkafka);
            }
        }
        if chosen.is_empty() {
            return Err(Problem::new(key, "must name at least one strategy"));
        }
        Ok(chosen.join(","))
    }

    /// Checks everything and builds the librdkafka settings, for the signals that have a
    /// pipeline.
    pub fn resolve(&self, shared: &Shared, signals: &[SignalKind]) -> Result<Resolved, Problem> {
        let mut notes = Vec::new();
        let mut routes = Vec::new();
        for signal in [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs] {
            // Every section is checked, so a mistake shows before a pipeline uses it.
            let topics = shared.receiver_topics(signal)?;
            let encoding = shared.encoding(signal, Side::Receiver)?;
            if signals.contains(&signal) {
                routes.push(SignalRoute {
                    signal,
                    topics,
                    encoding,
                });
            }
        }
        if self.group_id.is_empty() {
            return Err(Problem::new("group_id", "must not be empty"));
        }
        if self.max_in_flight_per_partition == 0 {
            return Err(Problem::new(
                "max_in_flight_per_partition",
                "must be at least 1",
            ));
        }
        if self.min_fetch_size < 1 {
            return Err(Problem::new("min_fetch_size", "must be at least 1"));
        }
        if self.max_fetch_size < 0
            || (self.max_fetch_size > 0 && self.max_fetch_size < self.min_fetch_size)
        {
            return Err(Problem::new(
                "max_fetch_size",
                "must be 0 (no limit of sluice's) or at least min_fetch_size",
            ));
        }
        let partition_fetch = match (self.max_partition_fetch_size, self.default_fetch_size) {
            (Some(n), _) => Some(("max_partition_fetch_size", n)),
            (None, Some(n)) => Some(("default_fetch_size", n)),
            (None, None) => None,
        };
        if let Some((key, n)) = partition_fetch
            && n < 1
        {
            return Err(Problem::new(key, "must be at least 1"));
        }
        if self.session_timeout.0.is_zero() || self.heartbeat_interval.0 >= self.session_timeout.0 {
            return Err(Problem::new(
                "heartbeat_interval",
                "must be shorter than session_timeout",
            ));
        }
        if self.max_fetch_wait.0 > StdDuration::from_secs(300) {
            return Err(Problem::new("max_fetch_wait", "must be at most 5m"));
        }
        if self.autocommit.interval.0.is_zero() {
            return Err(Problem::new(
                "autocommit.interval",
                "must be greater than 0",
            ));
        }
        if self.header_extraction.extract_headers && self.header_extraction.headers.is_empty() {
            notes.push(Problem::new(
                "header_extraction.headers",
                "extract_headers is on but no header is named: nothing is extracted",
            ));
        }
        let (marking, retry) = self.marking_and_retry();
        let strategy = self.assignment_strategy(&mut notes)?;

        let mut consumer = shared.client_config()?;
        consumer
            .set("group.id", &self.group_id)
            .set(
                "auto.offset.reset",
                match self.initial_offset {
                    InitialOffset::Latest => "latest",
                    InitialOffset::Earliest => "earliest",
                },
            )
            .set("session.timeout.ms", ms(&self.session_timeout))
            .set("heartbeat.interval.ms", ms(&self.heartbeat_interval))
            .set("partition.assignment.strategy", strategy)
            .set("fetch.min.bytes", self.min_fetch_size.to_string())
            .set("fetch.wait.max.ms", ms(&self.max_fetch_wait))
            // Offsets are stored only once a message is marked; the commits (periodic, on
            // revocation, on close) send only those.
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", self.autocommit.enable.to_string())
            .set("auto.commit.interval.ms", ms(&self.autocommit.interval));
        if self.max_fetch_size > 0 {
            consumer.set("fetch.max.bytes", self.max_fetch_size.to_string());
            // librdkafka wants a fetch to hold at least one message of its own maximum size.
            if self.max_fetch_size < 1_000_000 {
                consumer.set(
                    "message.max.bytes",
                    self.max_fetch_size.max(1000).to_string(),
                );
            }
        }
        consumer.set(
            "max.partition.fetch.bytes",
            partition_fetch.map_or(1_048_576, |(_, n)| n).to_string(),
        );
        if let Some(id) = &self.group_instance_id {
            consumer.set("group.instance.id", id);
        }
        shared.passthrough(&mut consumer);

        let dead_letter = match &self.dead_letter_topic {
            Some(topic) if topic.is_empty() => {
                return Err(Problem::new("dead_letter_topic", "must not be empty"));
            }
            Some(topic) => {
                let mut producer = shared.client_config()?;
                producer.set("acks", "all");
                shared.passthrough(&mut producer);
                Some((topic.clone(), producer))
            }
            None => None,
        };
        Ok(Resolved {
            routes,
            consumer,
            dead_letter,
            marking,
            retry,
            headers: if self.header_extraction.extract_headers {
                self.header_extraction.headers.clone()
            } else {
                Vec::new()
            },
            autocommit: self.autocommit.enable,
            refresh: shared.metadata.refresh_interval.0,
            delay_metric: self.telemetry.metrics.kafka_receiver_records_delay.enabled,
            notes,
        })
    }
}
