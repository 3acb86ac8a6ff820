use std::time::Duration as StdDuration;

use serde::Deserialize;
use sluice_config::{
    ByteSize, ComponentConfig, ConfigErrors, Diagnostic, Duration, Optional, Value, decode_all,
};

/// `sending_queue`: the in-memory queue in front of an exporter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Queue batches and send them from background consumers (default true). When false each
    /// batch is sent inline and its sender waits for delivery.
    pub enabled: bool,
    /// Batches sent concurrently (default 10).
    pub num_consumers: usize,
    /// Capacity in the sizer's unit. Default: 64MiB of encoded OTLP for a memory queue; for a
    /// persistent queue no limit of its own, so the `file_storage` disk cap (`max_size`) is
    /// what fills up during a long outage. A plain number with no `sizer` counts requests, as
    /// in the OTel Collector.
    pub queue_size: Option<ByteSize>,
    /// What `queue_size` counts: `bytes` (default), `items` or `requests`.
    pub sizer: Sizer,
    /// When full, make senders wait, which reaches clients as 429 / RESOURCE_EXHAUSTED
    /// (default true). When false a full queue refuses the batch at once, counted in
    /// `otelcol_exporter_enqueue_failed_*`; nothing is dropped silently either way.
    #[serde(alias = "blocking")]
    pub block_on_overflow: bool,
    /// Answer the sender only once the data is delivered, not when it is queued (default
    /// false). `wait_for_result` is the OTel Collector's name for it.
    #[serde(alias = "wait_for_result")]
    pub wait_for_delivery: bool,
    /// A `file_storage` extension id (e.g. `file_storage/queue`): keep the queue in a
    /// crash-safe log on disk instead of memory (default none). The sender is answered once
    /// the batch is in the log (per the extension's `fsync`), undelivered data survives
    /// restarts and crashes, and `queue_size` then bounds what waits on disk.
    pub storage: Option<String>,
    /// Batching after the queue, as the OTel Collector's `sending_queue.batch` (default
    /// none). Present (even empty) turns it on: queued batches are merged until `min_size`
    /// or `flush_timeout`, and cut to `max_size`. Because it batches what the queue already
    /// holds, the sender's answer never waits for it, and with a persistent queue every
    /// request is in the log before it is merged.
    pub batch: Optional<QueueBatchSettings>,
}

/// `sending_queue.batch`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchSettings {
    /// Longest a partial batch waits for more (default 200ms).
    pub flush_timeout: Duration,
    /// Send once this much is merged, in `sizer` units (default 8192).
    pub min_size: u64,
    /// Most in one send, in `sizer` units; larger batches are cut (default 0: no limit).
    pub max_size: u64,
    /// What `min_size` and `max_size` count: `items` (default), `bytes` or `requests`.
    pub sizer: Sizer,
    /// Batching per client: one batch per distinct combination of these metadata keys.
    pub partition: PartitionSettings,
}

/// `sending_queue.batch.partition`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartitionSettings {
    /// Client metadata keys (receivers' `include_metadata`): requests with different values
    /// are batched apart, and a batch keeps these keys (default none).
    pub metadata_keys: Vec<String>,
}

impl Default for QueueBatchSettings {
    fn default() -> Self {
        QueueBatchSettings {
            flush_timeout: Duration(StdDuration::from_millis(200)),
            min_size: 8192,
            max_size: 0,
            sizer: Sizer::Items,
            partition: PartitionSettings::default(),
        }
    }
}

/// What a persistent queue's consumer merges from records already waiting when no
/// `sending_queue.batch` is set: the `batch` processor's defaults, so data that a `batch`
/// processor passed straight to the log (to answer only once it is on disk) still goes out
/// in batches of the size it would have made, without waiting for more.
pub const DEFAULT_MERGE: QueueBatchSettings = QueueBatchSettings {
    flush_timeout: Duration(StdDuration::ZERO),
    min_size: 8192,
    max_size: 8192,
    sizer: Sizer::Items,
    partition: PartitionSettings {
        metadata_keys: Vec::new(),
    },
};

/// Merged sends stay under this many bytes whatever the sizer, as the `batch` processor's
/// `send_batch_max_bytes` default: under the 4 MiB message limit of OTLP/gRPC servers.
pub const MERGE_MAX_BYTES: usize = 3 * 1024 * 1024;

impl QueueBatchSettings {
    pub fn limits(&self) -> crate::batching::BatchLimits {
        crate::batching::BatchLimits {
            sizer: self.sizer,
            send_at: usize::try_from(self.min_size).unwrap_or(usize::MAX),
            max: usize::try_from(self.max_size).unwrap_or(usize::MAX),
            max_bytes: MERGE_MAX_BYTES,
        }
    }
}

/// The memory queue's capacity when `queue_size` is not set.
const DEFAULT_MEMORY_QUEUE_BYTES: u64 = 64 * 1024 * 1024;

impl QueueSettings {
    /// `queue_size` as configured, or the default for this kind of queue.
    pub fn capacity(&self) -> u64 {
        match (self.queue_size, &self.storage) {
            (Some(size), _) => size.0,
            (None, None) => DEFAULT_MEMORY_QUEUE_BYTES,
            (None, Some(_)) => u64::MAX,
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: true,
            num_consumers: 10,
            queue_size: None,
            sizer: Sizer::Bytes,
            block_on_overflow: true,
            wait_for_delivery: false,
            storage: None,
            batch: Optional::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    #[default]
    Bytes,
    Items,
    Requests,
}

/// `retry_on_failure`, with the OTel Collector's defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    pub enabled: bool,
    /// First wait after a failure (default 5s).
    pub initial_interval: Duration,
    /// Longest wait between attempts (default 30s).
    pub max_interval: Duration,
    /// Give up after this long; 0 retries forever (default 300s).
    pub max_elapsed_time: Duration,
    /// Growth of the wait per attempt (default 1.5).
    pub multiplier: f64,
    /// Jitter: each wait is drawn from interval × [1 − f, 1 + f] (default 0.5).
    pub randomization_factor: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: Duration(StdDuration::from_secs(5)),
            max_interval: Duration(StdDuration::from_secs(30)),
            max_elapsed_time: Duration(StdDuration::from_secs(300)),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// The three helper sections every exporter config carries.
#[derive(Clone, Debug)]
pub struct HelperSettings {
    pub queue: QueueSettings,
    pub retry: RetrySettings,
    /// Limit on one export attempt (default 5s).
    pub timeout: StdDuration,
    /// Delivery is an in-process act that cannot be lost afterwards (writing to sluice's own
    /// log): a stage in front may answer its senders once it holds the data, as in front of a
    /// memory queue, even though this exporter sends inline.
    pub local_delivery: bool,
}

impl Default for HelperSettings {
    fn default() -> Self {
        HelperSettings {
            queue: QueueSettings::default(),
            retry: RetrySettings::default(),
            timeout: StdDuration::from_secs(5),
            local_delivery: false,
        }
    }
}

/// The keys every exporter has (`sending_queue`, `retry_on_failure`, `timeout`), read by the
/// runtime for every exporter so each exporter decodes only its own keys.
const COMMON_KEYS: [&str; 3] = ["sending_queue", "retry_on_failure", "timeout"];

/// Takes the exporter-common keys out of an exporter's section: the section without them,
/// for the exporter's own config type, and the helper settings they give, starting from the
/// exporter's `defaults`. Every problem of the three is reported.
pub fn take_common(
    config: &ComponentConfig,
    defaults: HelperSettings,
) -> Result<(ComponentConfig, HelperSettings), ConfigErrors> {
    let mut settings = defaults;
    let mut errors = Vec::new();
    let at = |key: &str| format!("{}.{key}", config.path);
    if let Some(node) = config.node.get("sending_queue") {
        match decode_all::<QueueSettings>(node, &at("sending_queue")) {
            Ok(mut queue) => {
                // A `queue_size` written as a plain number with no `sizer` comes from an OTel
                // Collector config, where it counts requests; read as bytes it would make a
                // queue of a few KiB. With a unit (`64MiB`) it is bytes.
                let plain_number = node
                    .get("queue_size")
                    .and_then(|n| n.as_str())
                    .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
                if plain_number && node.get("sizer").is_none() {
                    queue.sizer = Sizer::Requests;
                }
                // As in the OTel Collector, a batch with no sizer of its own counts in the
                // queue's unit when the queue's unit was chosen.
                let batch_node = node.get("batch");
                if node.get("sizer").is_some()
                    && batch_node.is_none_or(|b| b.get("sizer").is_none())
                    && let Some(batch) = queue.batch.0.as_mut()
                {
                    batch.sizer = queue.sizer;
                }
                if queue.num_consumers == 0 {
                    errors.push(Diagnostic::new(
                        node.get("num_consumers").map(|n| n.pos.clone()),
                        at("sending_queue.num_consumers"),
                        "must be at least 1",
                    ));
                }
                if let Some(b) = queue.batch.as_ref()
                    && b.max_size > 0
                    && b.max_size < b.min_size
                {
                    errors.push(Diagnostic::new(
                        batch_node.map(|n| n.pos.clone()),
                        at("sending_queue.batch.max_size"),
                        format!(
                            "max_size ({}) must be 0 or at least min_size ({})",
                            b.max_size, b.min_size
                        ),
                    ));
                }
                settings.queue = queue;
            }
            Err(e) => errors.extend(e),
        }
    }
    if let Some(node) = config.node.get("retry_on_failure") {
        match decode_all::<RetrySettings>(node, &at("retry_on_failure")) {
            Ok(retry) => settings.retry = retry,
            Err(e) => errors.extend(e),
        }
    }
    if let Some(node) = config.node.get("timeout") {
        match decode_all::<Duration>(node, &at("timeout")) {
            Ok(timeout) => settings.timeout = timeout.0,
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let mut own = config.clone();
    if let Value::Map(map) = &mut own.node.value {
        map.entries
            .retain(|(k, _)| !COMMON_KEYS.contains(&k.name.as_str()));
    }
    Ok((own, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{ComponentId, ComponentKind, Pos};

    fn section(text: &str) -> ComponentConfig {
        ComponentConfig {
            kind: ComponentKind::Exporter,
            id: ComponentId::new("otlp_http"),
            pos: Pos::new("c.yaml", 1, 1),
            path: "exporters.otlp_http".into(),
            node: sluice_config::parse_yaml("c.yaml", text).unwrap(),
        }
    }

    #[test]
    fn the_common_keys_are_read_and_taken_out_of_the_section() {
        let (own, settings) = take_common(
            &section(
                "endpoint: http://x\ntimeout: 7s\nsending_queue:\n  num_consumers: 3\n  wait_for_result: true\n  batch:\nretry_on_failure: {enabled: false}\n",
            ),
            HelperSettings::default(),
        )
        .unwrap();
        assert_eq!(own.node.as_map().unwrap().entries.len(), 1);
        assert_eq!(settings.timeout, StdDuration::from_secs(7));
        assert_eq!(settings.queue.num_consumers, 3);
        assert!(settings.queue.wait_for_delivery);
        assert!(!settings.retry.enabled);
        let batch = settings.queue.batch.as_ref().unwrap();
        assert_eq!((batch.min_size, batch.sizer), (8192, Sizer::Items));
    }

    #[test]
    fn collector_style_queue_sizes_count_requests() {
        let queue = |text: &str| {
            take_common(&section(text), HelperSettings::default())
                .unwrap()
                .1
                .queue
        };
        let q = queue("sending_queue: {queue_size: 5000}\n");
        assert_eq!((q.sizer, q.capacity()), (Sizer::Requests, 5000));
        let q = queue("sending_queue: {queue_size: 16MiB}\n");
        assert_eq!((q.sizer, q.capacity()), (Sizer::Bytes, 16 * 1024 * 1024));
        let q = queue("sending_queue: {queue_size: 5000, sizer: items, batch: {min_size: 10}}\n");
        assert_eq!(q.sizer, Sizer::Items);
        assert_eq!(q.batch.as_ref().map(|b| b.sizer), Some(Sizer::Items));
    }

    #[test]
    fn every_problem_of_the_common_keys_is_reported() {
        let errors = take_common(
            &section(
                "timeout: soon\nsending_queue: {num_consumer: 3, sizer: pages}\nretry_on_failure: {multiplier: x}\n",
            ),
            HelperSettings::default(),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "exporters.otlp_http.sending_queue.num_consumer",
                "exporters.otlp_http.sending_queue.sizer",
                "exporters.otlp_http.retry_on_failure.multiplier",
                "exporters.otlp_http.timeout",
            ]
        );
    }
}
