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
}

impl Default for HelperSettings {
    fn default() -> Self {
        HelperSettings {
            queue: QueueSettings::default(),
            retry: RetrySettings::default(),
            timeout: StdDuration::from_secs(5),
        }
    }
}
