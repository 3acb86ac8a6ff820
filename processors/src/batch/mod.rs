//! The `batch` processor: merges small batches into larger ones (fewer, bigger exports) and
//! splits oversized ones, flushing on size or after a timeout.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ByteSize, ComponentConfig, ConfigErrors, Diagnostic, Duration, SignalKind};
use sluice_pipeline::batch::settle_all;
use sluice_pipeline::batching::{self, BatchLimits, BatchingCounters, FlushRequest, PartitionKey};
use sluice_pipeline::exporter::Sizer;
use sluice_pipeline::metadata::ClientMetadata;
use sluice_pipeline::queue::{PushError, SizedQueue};
use sluice_pipeline::telemetry::{Counter, Gauge};
use sluice_pipeline::{
    Ack, AckPoint, AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DeliveryError,
    DynConsumer, FactoryInfo, Lifecycle, ProcessorFactory, Signal, SignalConsumer, StartError,
    WrapConsumer, decode_config,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `processors: batch:`, with the OTel Collector's keys and defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that trigger a send (default 8192). As in the
    /// OTel Collector, 0 sends every request on at once (cut to `send_batch_max_size`).
    pub send_batch_size: usize,
    /// Upper bound on items in one outgoing batch; larger ones are split (default 0: none).
    pub send_batch_max_size: usize,
    /// Longest time data waits for a batch to fill (default 200ms); 0 sends every request on
    /// at once, as `send_batch_size: 0` does.
    pub timeout: Duration,
    /// Upper bound on one outgoing batch's encoded size; larger ones are split (default 3MiB;
    /// 0: none). Keeps batches under the 4 MiB message limit OTLP/gRPC servers (the OTel
    /// Collector's included) apply by default, with room for the estimate after splits.
    pub send_batch_max_bytes: ByteSize,
    /// How much data may wait inside the processor before senders are made to wait
    /// (default 32MiB).
    pub buffer_size: ByteSize,
    /// Client metadata keys (receivers' `include_metadata`): one batch per distinct
    /// combination of their values, each keeping those keys for the stages after (default
    /// none: one batch).
    pub metadata_keys: Vec<String>,
    /// Most distinct combinations of `metadata_keys` values over the process's life; data of
    /// a new combination beyond it is refused permanently (default 1000; 0: no limit).
    pub metadata_cardinality_limit: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration(StdDuration::from_millis(200)),
            send_batch_max_bytes: ByteSize(3 * 1024 * 1024),
            buffer_size: ByteSize(32 * 1024 * 1024),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

pub struct BatchProcessorFactory;

impl ProcessorFactory for BatchProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "batch",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "merges data into larger batches by size or timeout",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let cfg: BatchConfig = decode_config(config)?;
        let mut seen = BTreeSet::new();
        for key in &cfg.metadata_keys {
            if !seen.insert(key.to_ascii_lowercase()) {
                return Err(sluice_pipeline::config_keys::problem(
                    config,
                    "metadata_keys",
                    format!(
                        "duplicate entry in metadata_keys: `{key}` (keys are not case-sensitive)"
                    ),
                )
                .into());
            }
        }
        if cfg.send_batch_max_size > 0 && cfg.send_batch_max_size < cfg.send_batch_size {
            return Err(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.send_batch_max_size", config.path),
                format!(
                    "send_batch_max_size ({}) must be 0 or at least send_batch_size ({})",
                    cfg.send_batch_max_size, cfg.send_batch_size
                ),
            )
            .into());
        }
        let builder = Builder {
            cfg,
            name: config.id.to_string(),
            ctx: ctx.clone(),
            lifecycle: Mutex::new(None),
        };
        let consumer = next.wrap(&builder)?;
        let lifecycle = builder.lifecycle.lock().ok().and_then(|mut l| l.take());
        Ok(BuiltStage {
            consumer,
            lifecycle,
        })
    }
}

struct Builder {
    cfg: BatchConfig,
    name: String,
    ctx: BuildContext,
    lifecycle: Mutex<Option<Arc<dyn Lifecycle>>>,
}

impl WrapConsumer for Builder {
    type Error = ConfigErrors;
    fn wrap<S: Signal + SignalConsumer>(
        &self,
        next: DynConsumer<S>,
    ) -> Result<DynConsumer<S>, ConfigErrors> {
        let (flushes, flush_requests) = mpsc::unbounded_channel();
        let metrics = &self.ctx.telemetry.metrics;
        let labels = [("processor", self.name.as_str())];
        let processor = Arc::new(BatchProcessor::<S> {
            flushes,
            flush_requests: Mutex::new(Some(flush_requests)),
            input: Arc::new(SizedQueue::new(self.cfg.buffer_size.0 as usize)),
            next,
            cfg: self.cfg.clone(),
            name: self.name.clone(),
            task: Mutex::new(None),
            counters: BatchingCounters {
                by_size: Some(metrics.counter(
                    "otelcol_processor_batch_batch_size_trigger_send",
                    "Number of times the batch was sent due to a size trigger",
                    &labels,
                )),
                by_timeout: Some(metrics.counter(
                    "otelcol_processor_batch_timeout_trigger_send",
                    "Number of times the batch was sent due to a timeout trigger",
                    &labels,
                )),
            },
            held: Arc::new(AtomicUsize::new(0)),
            partitions: Arc::new(Mutex::new(BTreeSet::new())),
            cardinality: metrics.gauge(
                "otelcol_processor_batch_metadata_cardinality",
                "Number of distinct metadata value combinations being processed",
                &labels,
            ),
            lost: metrics.counter(
                &format!("sluice_processor_dropped_{}", S::ITEM_NAME),
                &format!(
                    "Number of {} a processor dropped after their senders were answered",
                    S::ITEM_NAME
                ),
                &[
                    ("processor", self.name.as_str()),
                    ("reason", "permanent_error"),
                ],
            ),
        });
        if let Ok(mut l) = self.lifecycle.lock() {
            *l = Some(processor.clone());
        }
        Ok(processor)
    }
}

pub struct BatchProcessor<S: Signal> {
    input: Arc<SizedQueue<Batch<S>>>,
    next: DynConsumer<S>,
    cfg: BatchConfig,
    name: String,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Flush requests to the batching task; each is answered once everything pending at the
    /// time has been handed to the next stage.
    flushes: mpsc::UnboundedSender<FlushRequest>,
    flush_requests: Mutex<Option<mpsc::UnboundedReceiver<FlushRequest>>>,
    counters: BatchingCounters,
    /// Items the batching task holds (accumulated, or being handed on).
    held: Arc<AtomicUsize>,
    lost: Counter,
    /// Every combination of `metadata_keys` values seen, to apply the cardinality limit.
    partitions: Arc<Mutex<BTreeSet<PartitionKey>>>,
    cardinality: Gauge,
}

impl<S: Signal> BatchProcessor<S> {
    /// Whether each request goes on at once instead of waiting to be merged.
    fn immediate(&self) -> bool {
        self.cfg.send_batch_size == 0 || self.cfg.timeout.0.is_zero()
    }

    /// Refuses a request of a new metadata combination beyond the cardinality limit.
    fn admit_partition(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        if self.cfg.metadata_keys.is_empty() {
            return Ok(());
        }
        let key = ClientMetadata::partition_key(batch.metadata(), &self.cfg.metadata_keys);
        let mut seen = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) {
            return Ok(());
        }
        let limit = self.cfg.metadata_cardinality_limit;
        if limit > 0 && seen.len() >= limit {
            return Err(DeliveryError::permanent(format!(
                "{}: too many batcher metadata-value combinations (metadata_cardinality_limit {limit})",
                self.name
            )));
        }
        seen.insert(key);
        self.cardinality
            .set(i64::try_from(seen.len()).unwrap_or(i64::MAX));
        Ok(())
    }
    fn limits(&self) -> BatchLimits {
        self.cfg.limits()
    }

    /// Answers the senders once their data is in the buffer: only used when everything
    /// after this processor answers on memory too, so holding the data here is no less safe
    /// than the queue it is going to (ARCHITECTURE.md, "Delivery guarantees").
    async fn hold(&self, mut batch: Batch<S>) {
        let acks = batch.take_acks();
        let size = batch.bytes();
        let outcome = match self.input.push(batch, size).await {
            Ok(()) => Ok(()),
            Err(PushError::Closed(_) | PushError::Full(_)) => {
                Err(DeliveryError::retryable("batch processor is shutting down"))
            }
        };
        settle_all(acks, &outcome);
    }

    /// Each request goes on at once, cut to the caps: with `timeout: 0` or `send_batch_size:
    /// 0`, and in front of a persistent queue, where the request must reach the log before its
    /// answer (the exporter's queue merges records when it reads them back).
    async fn pass_on(&self, mut batch: Batch<S>) {
        let limits = self.limits();
        let max_items = if limits.max == 0 {
            usize::MAX
        } else {
            limits.max
        };
        let max_bytes = if limits.max_bytes == 0 {
            usize::MAX
        } else {
            limits.max_bytes
        };
        while batch.items() > max_items || batch.bytes() > max_bytes {
            self.next
                .consume(batch.split_front_within(max_items, max_bytes))
                .await;
        }
        if batch.is_empty() {
            batch.settle(&Ok(()));
        } else {
            self.next.consume(batch).await;
        }
    }
}

impl BatchConfig {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            sizer: Sizer::Items,
            send_at: self.send_batch_size,
            max: self.send_batch_max_size,
            max_bytes: self.send_batch_max_bytes.0 as usize,
        }
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for BatchProcessor<S> {
    async fn consume(&self, batch: Batch<S>) {
        if let Err(refused) = self.admit_partition(&batch) {
            batch.settle(&Err(refused));
            return;
        }
        if self.immediate() {
            return self.pass_on(batch).await;
        }
        match self.next.ack_point() {
            AckPoint::Memory => self.hold(batch).await,
            AckPoint::Stored => self.pass_on(batch).await,
            AckPoint::Delivered => {
                // The answer waits for delivery anyway: batch with the acknowledgements
                // riding along.
                let size = batch.bytes();
                if let Err(PushError::Closed(batch) | PushError::Full(batch)) =
                    self.input.push(batch, size).await
                {
                    batch.settle(&Err(DeliveryError::retryable(
                        "batch processor is shutting down",
                    )));
                }
            }
        }
    }

    fn ack_point(&self) -> AckPoint {
        self.next.ack_point()
    }
}

/// First wait before handing on again a batch the next stage refused; doubles up to 1 s.
const RETRY_FIRST: StdDuration = StdDuration::from_millis(50);
const RETRY_MAX: StdDuration = StdDuration::from_secs(1);

/// Hands a batch whose senders were already answered to the next stage. Nobody is left to
/// tell of a refusal, so a full queue behind (throttled) or a transient failure is waited
/// out here, holding the batch and so pushing back on new data; only a permanent refusal
/// (an invalid item a later processor rejects) loses it, counted and logged.
async fn hand_on_answered<S: Signal>(
    next: &DynConsumer<S>,
    batch: Batch<S>,
    name: &str,
    lost: &Counter,
) {
    let mut wait = RETRY_FIRST;
    loop {
        let (ack, waiter) = Ack::new();
        next.consume(batch.fork().with_ack(ack)).await;
        match waiter.await {
            Ok(()) => return,
            Err(DeliveryError::Permanent { reason }) => {
                lost.add(batch.items() as u64);
                tracing::error!(processor = %name, items = batch.items(), error = %reason, "the next stage refused batched data permanently; it is dropped");
                return;
            }
            Err(DeliveryError::Throttled { retry_after, .. }) => {
                tokio::time::sleep(retry_after.min(RETRY_MAX)).await;
            }
            Err(DeliveryError::Retryable { .. }) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

#[async_trait]
impl<S: Signal> Lifecycle for BatchProcessor<S> {
    async fn start(&self) -> Result<(), StartError> {
        let flushes = self
            .flush_requests
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .ok_or_else(|| StartError::new(&self.name, "started twice"))?;
        let next = self.next.clone();
        let name = self.name.clone();
        let lost = self.lost.clone();
        let task = tokio::spawn(batching::run(
            self.input.clone(),
            self.limits(),
            self.cfg.metadata_keys.clone(),
            self.cfg.timeout.0,
            flushes,
            self.counters.clone(),
            self.held.clone(),
            move |batch: Batch<S>| {
                let next = next.clone();
                let name = name.clone();
                let lost = lost.clone();
                async move {
                    if batch.has_acks() {
                        next.consume(batch).await;
                    } else {
                        hand_on_answered(&next, batch, &name, &lost).await;
                    }
                }
            },
        ));
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        Ok(())
    }

    async fn flush(&self, deadline: Instant) {
        let (done, answered) = tokio::sync::oneshot::channel();
        if self.flushes.send(done).is_ok() {
            // An error means the task is gone (shut down): nothing is left to flush.
            let _ = tokio::time::timeout_at(deadline, answered).await;
        }
    }

    /// Flushes what is pending into the next stage, then stops.
    async fn shutdown(&self, deadline: Instant) {
        self.input.close();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                // Data whose senders were answered is lost here; count it and say so.
                let left: usize = self.input.drain().iter().map(Batch::items).sum::<usize>()
                    + self.held.load(Ordering::Relaxed);
                if left > 0 {
                    self.lost.add(left as u64);
                    tracing::error!(
                        processor = %self.name,
                        lost = left,
                        item = S::ITEM_NAME,
                        "shutdown timeout reached with data still in the batch processor; it is lost"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
