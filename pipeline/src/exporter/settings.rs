use std::time::Duration as StdDuration;

use serde::Deserialize;
use sluice_config::{ByteSize, Duration};

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
    /// what fills up during a long outage.
    pub queue_size: Option<ByteSize>,
    /// What `queue_size` counts: `bytes` (default), `items` or `requests`.
    pub sizer: Sizer,
    /// When full, make senders wait, which reaches clients as 429 / RESOURCE_EXHAUSTED
    /// (default true). When false a full queue refuses the batch at once, counted in
    /// `otelcol_exporter_enqueue_failed_*`; nothing is dropped silently either way.
    pub block_on_overflow: bool,
    /// Answer the sender only once the data is delivered, not when it is queued (default false).
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
    pub batch: Option<QueueBatchSettings>,
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
}

impl Default for QueueBatchSettings {
    fn default() -> Self {
        QueueBatchSettings {
            flush_timeout: Duration(StdDuration::from_millis(200)),
            min_size: 8192,
            max_size: 0,
            sizer: Sizer::Items,
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
            batch: None,
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
