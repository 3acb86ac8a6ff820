//! The keys both Kafka components have (the OTel Collector's `configkafka.ClientConfig`, the
//! signal sections and their legacy top-level forms), decoded once here for both.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sluice_config::{
    ComponentConfig, ConfigErrors, Duration, Map, Node, Optional, SignalKind, Value,
};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect, decode_section};

use crate::Problem;
use crate::auth::{AuthSettings, apply_security};
use crate::encoding::{Encoding, Side};
use crate::tls::TlsSettings;

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

    fn is_empty(&self) -> bool {
        match self {
            Brokers::One(b) => b.trim().is_empty(),
            Brokers::Many(list) => list.iter().all(|b| b.trim().is_empty()),
        }
    }
}

pub fn default_brokers() -> Brokers {
    Brokers::One("localhost:9092".into())
}

/// The OTel Collector's client id, so broker ACLs and quotas written for it apply to sluice.
pub fn default_client_id() -> String {
    "otel-collector".into()
}

fn default_conn_idle_timeout() -> Duration {
    Duration(StdDuration::from_secs(9 * 60))
}

/// `metadata:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSettings {
    /// Keep metadata of every topic of the cluster (true) or only of those in use (false).
    /// Unset, librdkafka's default: only those in use, as the OTel Collector's franz-go client.
    #[serde(default)]
    pub full: Option<bool>,
    /// How often cluster metadata is refreshed (default 10m); also how often a receiver with
    /// regular-expression `topics` looks for new matching topics.
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: Duration,
    /// `metadata.retry`.
    #[serde(default)]
    pub retry: MetadataRetrySettings,
}

fn default_refresh_interval() -> Duration {
    Duration(StdDuration::from_secs(10 * 60))
}

impl Default for MetadataSettings {
    fn default() -> Self {
        MetadataSettings {
            full: None,
            refresh_interval: default_refresh_interval(),
            retry: MetadataRetrySettings::default(),
        }
    }
}

/// `metadata.retry` (`max` is in the no-effect list).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRetrySettings {
    /// Wait before retrying a failed request (librdkafka's `retry.backoff.ms`, 100ms unless
    /// set; the OTel Collector's 250ms).
    #[serde(default)]
    pub backoff: Option<Duration>,
}

/// `traces:`, `metrics:` or `logs:` of either component. The receiver reads `topics`,
/// `exclude_topics`, `encoding` (and the deprecated `topic`, `exclude_topic`); the exporter
/// `topic`, `encoding` and the metadata keys. A key of the other side is a configuration error
/// that says so.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSection {
    /// Exporter: the topic (default otlp_spans, otlp_metrics, otlp_logs). Receiver: one topic
    /// to consume, the form before v0.142 of `topics`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Receiver: the topics to consume. If an entry starts with `^`, every entry is a regular
    /// expression matched against topic names, as the OTel Collector reads them.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Receiver: regular expressions of topics to leave out; only with regular-expression
    /// `topics`.
    #[serde(default)]
    pub exclude_topics: Option<Vec<String>>,
    /// Receiver: one `exclude_topics` entry, the v0.141 form.
    #[serde(default)]
    pub exclude_topic: Option<String>,
    /// The payload format (default otlp_proto).
    #[serde(default)]
    pub encoding: Option<String>,
    /// Exporter: the client metadata key naming the topic (sluice carries no client metadata
    /// yet: refused).
    #[serde(default)]
    pub topic_from_metadata_key: Option<String>,
    /// Exporter: the client metadata key whose value is the record key (refused, as above).
    #[serde(default)]
    pub message_key_from_metadata_key: Option<String>,
}

/// What a receiver consumes for one signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSelection {
    /// Topic names, or regular expressions when `patterns` is set.
    pub topics: Vec<String>,
    /// Whether `topics` are regular expressions (some entry starts with `^`).
    pub patterns: bool,
    /// Regular expressions of topics to leave out.
    pub exclude: Vec<String>,
}

/// The keys of both components: client settings and the signal sections.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shared {
    /// Bootstrap servers (default localhost:9092).
    #[serde(default = "default_brokers")]
    pub brokers: Brokers,
    /// The client id brokers see (default otel-collector).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// The Kafka version to assume (e.g. 2.1.0). librdkafka asks the broker what it supports;
    /// this is its answer for brokers too old to be asked (`broker.version.fallback`).
    #[serde(default)]
    pub protocol_version: Option<String>,
    /// Resolve the bootstrap servers to their canonical names before connecting (SASL and
    /// Kerberos setups behind aliases). Default false.
    #[serde(default)]
    pub resolve_canonical_bootstrap_servers_only: bool,
    /// This client's rack, for rack-aware fetching (`client.rack`).
    #[serde(default)]
    pub rack_id: Option<String>,
    /// Close broker connections idle this long (default 9m).
    #[serde(default = "default_conn_idle_timeout")]
    pub conn_idle_timeout: Duration,
    /// TLS to the brokers; present (even empty) turns it on.
    #[serde(default)]
    pub tls: Optional<TlsSettings>,
    /// SASL, Kerberos, and the older place of `tls`.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Cluster metadata.
    #[serde(default)]
    pub metadata: MetadataSettings,
    /// librdkafka properties set as given, after everything else (sluice's own key).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
    /// One topic for every signal whose section names none (the form before v0.124).
    #[serde(default)]
    pub topic: Option<String>,
    /// One encoding for every signal whose section names none (the form before v0.124).
    #[serde(default)]
    pub encoding: Option<String>,
    /// `traces:`.
    #[serde(default)]
    pub traces: SignalSection,
    /// `metrics:`.
    #[serde(default)]
    pub metrics: SignalSection,
    /// `logs:`.
    #[serde(default)]
    pub logs: SignalSection,
}

/// The top-level keys [`Shared`] decodes; the rest of a section is the component's own.
const SHARED_KEYS: &[&str] = &[
    "brokers",
    "client_id",
    "protocol_version",
    "resolve_canonical_bootstrap_servers_only",
    "rack_id",
    "use_leader_epoch",
    "conn_idle_timeout",
    "tls",
    "auth",
    "metadata",
    "librdkafka",
    "topic",
    "encoding",
    "traces",
    "metrics",
    "logs",
    "profiles",
];

/// Keys of both components that cannot mean anything with librdkafka, and why.
const SHARED_NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "use_leader_epoch",
        "librdkafka has no switch for KIP-320 leader epochs; it uses them where the broker supports them",
    ),
    NoEffect::new(
        "auth.sasl.version",
        "librdkafka negotiates the SASL handshake version (a no-op in the OTel Collector since v0.153 too)",
    ),
    NoEffect::new(
        "metadata.retry.max",
        "librdkafka retries metadata requests until they succeed, metadata.retry.backoff apart",
    ),
    NoEffect::new(
        "tls.reload_interval",
        "librdkafka reads certificate files when the client starts; restart sluice after renewing them",
    ),
    NoEffect::new(
        "auth.tls.reload_interval",
        "librdkafka reads certificate files when the client starts; restart sluice after renewing them",
    ),
    NoEffect::new("profiles", "sluice has no profiles signal"),
];

/// A copy of `config` holding only the top-level keys `keep` says yes to.
fn part(config: &ComponentConfig, keep: impl Fn(&str) -> bool) -> ComponentConfig {
    let mut part = config.clone();
    if let Value::Map(map) = &config.node.value {
        part.node = Node::new(
            Value::Map(Map {
                entries: map
                    .entries
                    .iter()
                    .filter(|(k, _)| keep(&k.name))
                    .cloned()
                    .collect(),
            }),
            config.node.pos.clone(),
        );
    } else if !matches!(config.node.value, Value::Null) && keep("") {
        // Not a section at all: the component's own decoding reports it.
        return part;
    } else {
        part.node = Node::empty_map(config.node.pos.clone());
    }
    part
}

/// Decodes a Kafka component's section: the shared keys into [`Shared`], the rest into the
/// component's own `T`, reporting every problem of both; each no-effect key present (shared
/// ones and `own_no_effect`) becomes a warning.
pub fn decode<T: DeserializeOwned>(
    config: &ComponentConfig,
    own_no_effect: &[NoEffect],
    warnings: &ConfigWarnings,
) -> Result<(Shared, T), ConfigErrors> {
    let shared_part = part(config, |k| SHARED_KEYS.contains(&k));
    let own_part = part(config, |k| !SHARED_KEYS.contains(&k));
    let shared = decode_section::<Shared>(&shared_part, SHARED_NO_EFFECT, warnings);
    let own = decode_section::<T>(&own_part, own_no_effect, warnings);
    match (shared, own) {
        (Ok(s), Ok(o)) => Ok((s, o)),
        (Err(mut a), Err(b)) => {
            a.extend(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Whether `v` parses as the OTel Collector (sarama) reads a Kafka version: `0.x.y.z`, or
/// `x.y.z` from 1.0 on.
fn is_kafka_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric
        && if v.starts_with('0') {
            parts.len() == 4 && parts[0] == "0"
        } else {
            parts.len() == 3
        }
}

fn millis(d: StdDuration) -> String {
    d.as_millis().to_string()
}

impl Shared {
    pub fn section(&self, signal: SignalKind) -> &SignalSection {
        match signal {
            SignalKind::Traces => &self.traces,
            SignalKind::Metrics => &self.metrics,
            SignalKind::Logs => &self.logs,
        }
    }

    /// The librdkafka properties of a client with these settings, without the `librdkafka`
    /// pass-through (see [`Shared::passthrough`]), which the component sets last.
    pub fn client_config(&self) -> Result<ClientConfig, Problem> {
        if self.brokers.is_empty() {
            return Err(Problem::new("brokers", "must name at least one broker"));
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.joined())
            .set("client.id", &self.client_id)
            .set("connections.max.idle.ms", millis(self.conn_idle_timeout.0))
            .set(
                "topic.metadata.refresh.interval.ms",
                millis(self.metadata.refresh_interval.0),
            );
        if self.conn_idle_timeout.0.is_zero() {
            return Err(Problem::new("conn_idle_timeout", "must be greater than 0"));
        }
        if self.metadata.refresh_interval.0.is_zero() {
            return Err(Problem::new(
                "metadata.refresh_interval",
                "must be greater than 0",
            ));
        }
        if let Some(v) = &self.protocol_version {
            if !is_kafka_version(v) {
                return Err(Problem::new(
                    "protocol_version",
                    format!("`{v}` is not a Kafka version (e.g. 2.1.0, or 0.10.2.1)"),
                ));
            }
            c.set("broker.version.fallback", v);
        }
        if self.resolve_canonical_bootstrap_servers_only {
            c.set(
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only",
            );
        }
        if let Some(rack) = &self.rack_id {
            c.set("client.rack", rack);
        }
        if let Some(full) = self.metadata.full {
            c.set("topic.metadata.refresh.sparse", (!full).to_string());
        }
        if let Some(backoff) = &self.metadata.retry.backoff {
            let ms = backoff.0.as_millis();
            if !(1..=300_000).contains(&ms) {
                return Err(Problem::new(
                    "metadata.retry.backoff",
                    "must be between 1ms and 5m",
                ));
            }
            c.set("retry.backoff.ms", ms.to_string());
        }
        apply_security(&self.auth, self.tls.as_ref(), &self.librdkafka, &mut c)?;
        Ok(c)
    }

    /// Sets the `librdkafka` pass-through properties: last, so they win.
    pub fn passthrough(&self, c: &mut ClientConfig) {
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
    }

    /// The payload format of `signal`: its section's, else the legacy top-level one, else
    /// otlp_proto.
    pub fn encoding(&self, signal: SignalKind, side: Side) -> Result<Encoding, Problem> {
        let (key, name) = match (&self.section(signal).encoding, &self.encoding) {
            (Some(own), _) => (format!("{}.encoding", signal.as_str()), own.as_str()),
            (None, Some(shared)) => ("encoding".to_string(), shared.as_str()),
            (None, None) => return Ok(Encoding::OtlpProto),
        };
        Encoding::parse(name, signal, side).map_err(|m| Problem::new(key, m))
    }

    /// The exporter's topic for `signal`: its section's, else the legacy top-level one, else
    /// the OTel Collector's default.
    pub fn exporter_topic(&self, signal: SignalKind) -> Result<String, Problem> {
        let section = self.section(signal);
        let name = signal.as_str();
        for (key, set) in [
            ("topics", section.topics.is_some()),
            ("exclude_topics", section.exclude_topics.is_some()),
            ("exclude_topic", section.exclude_topic.is_some()),
        ] {
            if set {
                return Err(Problem::new(
                    format!("{name}.{key}"),
                    format!(
                        "`{key}` is a key of the kafka receiver; the exporter sends {name} to one `topic`"
                    ),
                ));
            }
        }
        let topic = section
            .topic
            .clone()
            .or_else(|| self.topic.clone())
            .unwrap_or_else(|| default_topic(signal).to_string());
        if topic.is_empty() {
            return Err(Problem::new(format!("{name}.topic"), "must not be empty"));
        }
        Ok(topic)
    }

    /// What the receiver consumes for `signal`.
    pub fn receiver_topics(&self, signal: SignalKind) -> Result<TopicSelection, Problem> {
        let section = self.section(signal);
        let name = signal.as_str();
        for (key, set) in [
            (
                "topic_from_metadata_key",
                section.topic_from_metadata_key.is_some(),
            ),
            (
                "message_key_from_metadata_key",
                section.message_key_from_metadata_key.is_some(),
            ),
        ] {
            if set {
                return Err(Problem::new(
                    format!("{name}.{key}"),
                    format!("`{key}` is a key of the kafka exporter, not of the receiver"),
                ));
            }
        }
        let topics = match (&section.topics, &section.topic) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    format!("{name}.topic"),
                    format!("both {name}.topic and {name}.topics cannot be set"),
                ));
            }
            (Some(list), None) => list.clone(),
            (None, Some(one)) => vec![one.clone()],
            (None, None) => vec![
                self.topic
                    .clone()
                    .unwrap_or_else(|| default_topic(signal).to_string()),
            ],
        };
        if topics.is_empty() || topics.iter().any(String::is_empty) {
            return Err(Problem::new(
                format!("{name}.topics"),
                "must name at least one topic, and no empty one",
            ));
        }
        let exclude = match (&section.exclude_topics, &section.exclude_topic) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    format!("{name}.exclude_topic"),
                    format!("both {name}.exclude_topic and {name}.exclude_topics cannot be set"),
                ));
            }
            (Some(list), None) => list.clone(),
            (None, Some(one)) => vec![one.clone()],
            (None, None) => Vec::new(),
        };
        let patterns = topics.iter().any(|t| t.starts_with('^'));
        if !exclude.is_empty() && !patterns {
            return Err(Problem::new(
                format!("{name}.exclude_topics"),
                format!(
                    "{name}.exclude_topics is configured but none of the configured {name}.topics use regex pattern (must start with '^')"
                ),
            ));
        }
        if exclude.iter().any(String::is_empty) {
            return Err(Problem::new(
                format!("{name}.exclude_topics"),
                "contains an empty string, which would match every topic",
            ));
        }
        Ok(TopicSelection {
            topics,
            patterns,
            exclude,
        })
    }
}

/// The OTel Collector's topic of each signal, so both ends agree by default.
pub fn default_topic(signal: SignalKind) -> &'static str {
    match signal {
        SignalKind::Traces => "otlp_spans",
        SignalKind::Metrics => "otlp_metrics",
        SignalKind::Logs => "otlp_logs",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{ComponentId, ComponentKind, Pos, parse_yaml};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(default)]
        group_id: Option<String>,
    }

    fn component(yaml: &str) -> ComponentConfig {
        ComponentConfig {
            kind: ComponentKind::Receiver,
            id: ComponentId::new("kafka"),
            pos: Pos::new("t.yaml", 1, 1),
            path: "receivers.kafka".into(),
            node: parse_yaml("t.yaml", yaml).unwrap(),
        }
    }

    fn shared(yaml: &str) -> Shared {
        decode::<Own>(&component(yaml), &[], &ConfigWarnings::default())
            .unwrap()
            .0
    }

    #[test]
    fn shared_and_own_keys_are_decoded_apart_with_every_problem_reported() {
        let warnings = ConfigWarnings::default();
        let (s, own) = decode::<Own>(
            &component("brokers: [a:1, b:2]\ngroup_id: g\nuse_leader_epoch: false\nauth: {sasl: {mechanism: PLAIN, username: u, password: p, version: 1}}"),
            &[],
            &warnings,
        )
        .unwrap();
        assert_eq!(s.brokers.joined(), "a:1,b:2");
        assert_eq!(own.group_id.as_deref(), Some("g"));
        let warned: Vec<String> = warnings.take().into_iter().map(|w| w.path).collect();
        assert_eq!(
            warned,
            [
                "receivers.kafka.use_leader_epoch",
                "receivers.kafka.auth.sasl.version"
            ]
        );
        let err = decode::<Own>(
            &component("brokrs: x\ngroup: g\nclient_id: [1]"),
            &[],
            &warnings,
        )
        .unwrap_err()
        .to_string();
        for key in ["brokrs", "group", "client_id"] {
            assert!(err.contains(key), "{err}");
        }
        // `kafka:` with no value is every default.
        assert!(decode::<Own>(&component(""), &[], &warnings).is_ok());
    }

    #[test]
    fn client_keys_become_librdkafka_properties() {
        let c = shared(
            "client_id: me\nprotocol_version: 2.1.0\nresolve_canonical_bootstrap_servers_only: true\nrack_id: r1\nconn_idle_timeout: 1m\nmetadata: {full: false, refresh_interval: 30s, retry: {backoff: 400ms}}\ntls: {}",
        )
        .client_config()
        .unwrap();
        for (k, v) in [
            ("bootstrap.servers", "localhost:9092"),
            ("client.id", "me"),
            ("broker.version.fallback", "2.1.0"),
            (
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only",
            ),
            ("client.rack", "r1"),
            ("connections.max.idle.ms", "60000"),
            ("topic.metadata.refresh.sparse", "true"),
            ("topic.metadata.refresh.interval.ms", "30000"),
            ("retry.backoff.ms", "400"),
            ("security.protocol", "ssl"),
        ] {
            assert_eq!(c.get(k), Some(v), "{k}");
        }
        let c = shared("").client_config().unwrap();
        assert_eq!(c.get("client.id"), Some("otel-collector"));
        assert_eq!(c.get("connections.max.idle.ms"), Some("540000"));
        assert_eq!(c.get("topic.metadata.refresh.interval.ms"), Some("600000"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("topic.metadata.refresh.sparse"), None);
        for bad in [
            "protocol_version: 2.1",
            "protocol_version: 0.10.2",
            "brokers: []",
        ] {
            assert!(shared(bad).client_config().is_err(), "{bad}");
        }
        assert!(shared("protocol_version: 0.10.2.1").client_config().is_ok());
    }

    #[test]
    fn topics_and_encodings_resolve_as_upstream() {
        let s = shared(
            "topic: legacy\nencoding: otlp_json\nlogs: {topics: ['^app-.*', audit], exclude_topics: ['^app-internal$'], encoding: text}",
        );
        assert_eq!(
            s.receiver_topics(SignalKind::Logs).unwrap(),
            TopicSelection {
                topics: vec!["^app-.*".into(), "audit".into()],
                patterns: true,
                exclude: vec!["^app-internal$".into()],
            }
        );
        assert_eq!(
            s.receiver_topics(SignalKind::Traces).unwrap().topics,
            ["legacy"]
        );
        assert_eq!(s.exporter_topic(SignalKind::Metrics).unwrap(), "legacy");
        assert_eq!(
            s.encoding(SignalKind::Traces, Side::Receiver).unwrap(),
            Encoding::OtlpJson
        );
        assert_eq!(
            s.encoding(SignalKind::Logs, Side::Receiver).unwrap().name(),
            "text"
        );
        assert_eq!(
            s.encoding(SignalKind::Logs, Side::Exporter)
                .unwrap_err()
                .key,
            "logs.encoding"
        );
        let s = shared("");
        assert_eq!(s.exporter_topic(SignalKind::Traces).unwrap(), "otlp_spans");
        assert_eq!(
            s.receiver_topics(SignalKind::Metrics).unwrap().topics,
            ["otlp_metrics"]
        );
        for (yaml, key) in [
            ("logs: {topic: a, topics: [b]}", "logs.topic"),
            (
                "logs: {topics: [a], exclude_topics: [b]}",
                "logs.exclude_topics",
            ),
            (
                "logs: {topics: ['^a'], exclude_topic: b, exclude_topics: [c]}",
                "logs.exclude_topic",
            ),
            ("logs: {topics: []}", "logs.topics"),
            (
                "logs: {message_key_from_metadata_key: k}",
                "logs.message_key_from_metadata_key",
            ),
        ] {
            assert_eq!(
                shared(yaml)
                    .receiver_topics(SignalKind::Logs)
                    .unwrap_err()
                    .key,
                key,
                "{yaml}"
            );
        }
        assert_eq!(
            shared("logs: {topics: [a]}")
                .exporter_topic(SignalKind::Logs)
                .unwrap_err()
                .key,
            "logs.topics"
        );
        // The v0.141 single exclude_topic still works.
        let s = shared("traces: {topics: ['^t'], exclude_topic: '^tx'}");
        assert_eq!(
            s.receiver_topics(SignalKind::Traces).unwrap().exclude,
            ["^tx"]
        );
    }
}
