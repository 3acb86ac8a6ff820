//! The exporter helper every exporter goes through (ARCHITECTURE.md §5): a size-bounded sending queue
//! with several consumers, retries with exponential backoff, and a per-attempt timeout. An
//! exporter only implements [`Export`]: one attempt to send one batch.

mod persistent;
mod retry;
mod settings;

pub use retry::Backoff;
pub use settings::{
    HelperSettings, QueueBatchSettings, QueueSettings, RetrySettings, Sizer, take_common,
};

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ack::{DeliveryError, Outcome};
use crate::batch::{Batch, settle_all};
use crate::batching::{BatchingCounters, FlushRequest};
use crate::component::{BuildContext, BuiltExporter, Lifecycle, StartError};
use crate::consumer::{AckPoint, Consumer, DynConsumer, SignalConsumer};
use crate::queue::{PushError, SizedQueue};
use crate::signal::{Logs, Metrics, PerSignal, Signal, SignalKind, Traces};
use crate::telemetry::{Counter, Gauge};

/// One attempt to send one batch to a destination.
#[async_trait]
pub trait Export<S: Signal>: Send + Sync + 'static {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError>;
}

struct Stats {
    sent: Counter,
    failed: Counter,
    enqueue_failed: Counter,
    queue_size: Gauge,
}

struct Inner<S: Signal> {
    name: String,
    export: Arc<dyn Export<S>>,
    settings: HelperSettings,
    queue: Option<Arc<SizedQueue<Batch<S>>>>,
    /// With `sending_queue.batch`: the merged batches on their way from the batching task to
    /// the consumers (at most one per consumer waits here).
    merged: Option<Arc<SizedQueue<Batch<S>>>>,
    /// Flush requests to the batching task.
    batcher_flush: Mutex<Option<tokio::sync::mpsc::UnboundedSender<FlushRequest>>>,
    /// Set instead of `queue` when `sending_queue.storage` names a `file_storage` extension.
    persistent: Option<persistent::Persistent>,
    stats: Stats,
    /// Items taken into the queue and not yet finished (sent or given up), so a flush can
    /// wait for the queue to be empty *and* the workers idle. Items, not batches: the
    /// batching task merges and cuts batches on their way.
    unfinished: tokio::sync::watch::Sender<usize>,
}

/// Wraps an [`Export`] with queue, retry and timeout; consumes batches for one signal.
pub struct ExportHelper<S: Signal> {
    inner: Arc<Inner<S>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    batcher: Mutex<Option<JoinHandle<()>>>,
    /// Held for reading by every inline send; shutdown takes it for writing to wait them out.
    inline_sends: Arc<tokio::sync::RwLock<()>>,
}

/// Items a destination refused in an OTLP partial success: logged and counted, never retried
/// (the destination said it will not take them).
pub struct PartialRejections {
    exporter: String,
    counters: PerSignal<Counter>,
}

impl PartialRejections {
    pub fn new(exporter: &str, ctx: &BuildContext) -> Self {
        let counters = PerSignal::new(|signal| {
            let item = match signal {
                SignalKind::Traces => Traces::ITEM_NAME,
                SignalKind::Metrics => Metrics::ITEM_NAME,
                SignalKind::Logs => Logs::ITEM_NAME,
            };
            ctx.telemetry.metrics.counter(
                &format!("sluice_exporter_partially_rejected_{item}"),
                &format!("Number of {item} the destination rejected in a partial success"),
                &[("exporter", exporter)],
            )
        });
        PartialRejections {
            exporter: exporter.to_string(),
            counters,
        }
    }

    pub fn record<S: Signal>(&self, response: &S::Response) {
        if let Some((count, message)) = S::rejected(response) {
            self.counters.get(S::KIND).add(count.max(0) as u64);
            tracing::warn!(exporter = %self.exporter, rejected = count, message, "destination rejected part of the data");
        }
    }
}

/// Wires one exporter object that serves every signal: a helper (queue, retry, timeout) per
/// signal asked for, all around the same object (one file, one connection).
pub fn export_signals<E>(
    name: &str,
    settings: &HelperSettings,
    signals: &[SignalKind],
    exporter: Arc<E>,
    ctx: &BuildContext,
) -> BuiltExporter
where
    E: Export<Traces> + Export<Metrics> + Export<Logs>,
{
    fn one<S: SignalConsumer, E: Export<S>>(
        name: &str,
        settings: &HelperSettings,
        exporter: Arc<E>,
        ctx: &BuildContext,
        built: &mut BuiltExporter,
    ) {
        let (consumer, lifecycle) =
            ExportHelper::<S>::new(name, settings.clone(), exporter, ctx).parts();
        built.consumers.push(S::to_any(consumer));
        built.lifecycles.push(lifecycle);
    }
    let mut built = BuiltExporter {
        consumers: Vec::new(),
        lifecycles: Vec::new(),
    };
    for signal in signals {
        match signal {
            SignalKind::Traces => {
                one::<Traces, E>(name, settings, exporter.clone(), ctx, &mut built)
            }
            SignalKind::Metrics => {
                one::<Metrics, E>(name, settings, exporter.clone(), ctx, &mut built)
            }
            SignalKind::Logs => one::<Logs, E>(name, settings, exporter.clone(), ctx, &mut built),
        }
    }
    built
}

impl<S: Signal> ExportHelper<S> {
    pub fn new(
        name: &str,
        settings: HelperSettings,
        export: Arc<dyn Export<S>>,
        ctx: &BuildContext,
    ) -> Arc<Self> {
        let metrics = &ctx.telemetry.metrics;
        let item = S::ITEM_NAME;
        let labels = [("exporter", name)];
        let queue_labels = [("exporter", name), ("data_type", S::KIND.as_str())];
        let persistent = match (&settings.queue.storage, settings.queue.enabled) {
            (Some(storage), true) => Some(persistent::Persistent::new(
                name,
                S::KIND.as_str(),
                storage,
                ctx,
            )),
            _ => None,
        };
        let queue = (settings.queue.enabled && persistent.is_none())
            .then(|| Arc::new(SizedQueue::new(settings.queue.capacity() as usize)));
        let merged = (queue.is_some() && settings.queue.batch.is_some())
            .then(|| Arc::new(SizedQueue::new(settings.queue.num_consumers.max(1))));
        let capacity = match (&queue, &persistent) {
            (Some(q), _) => Some(q.capacity() as i64),
            // Without a queue_size of its own a persistent queue is bounded by its disk cap.
            (None, Some(p)) => match settings.queue.queue_size {
                Some(size) => Some(size.0 as i64),
                None => p.disk_cap().map(|cap| cap as i64),
            },
            (None, None) => None,
        };
        if let Some(capacity) = capacity {
            metrics
                .gauge(
                    "otelcol_exporter_queue_capacity",
                    "Fixed capacity of the sending queue, in the sizer's unit",
                    &queue_labels,
                )
                .set(capacity);
        }
        let stats = Stats {
            sent: metrics.counter(
                &format!("otelcol_exporter_sent_{item}"),
                &format!("Number of {item} successfully sent to destination"),
                &labels,
            ),
            failed: metrics.counter(
                &format!("otelcol_exporter_send_failed_{item}"),
                &format!("Number of {item} in failed attempts to send to destination"),
                &labels,
            ),
            enqueue_failed: metrics.counter(
                &format!("otelcol_exporter_enqueue_failed_{item}"),
                &format!("Number of {item} failed to be added to the sending queue"),
                &labels,
            ),
            queue_size: metrics.gauge(
                "otelcol_exporter_queue_size",
                "Current size of the sending queue, in the sizer's unit",
                &queue_labels,
            ),
        };
        Arc::new(ExportHelper {
            inner: Arc::new(Inner {
                name: name.to_string(),
                export,
                settings,
                queue,
                merged,
                batcher_flush: Mutex::new(None),
                persistent,
                stats,
                unfinished: tokio::sync::watch::Sender::new(0),
            }),
            workers: Mutex::new(Vec::new()),
            batcher: Mutex::new(None),
            inline_sends: Arc::new(tokio::sync::RwLock::new(())),
        })
    }

    /// The helper as a pipeline consumer and as a lifecycle (both are the same object).
    pub fn parts(self: &Arc<Self>) -> (DynConsumer<S>, Arc<dyn Lifecycle>) {
        (self.clone(), self.clone())
    }

    /// Waits for the workers until `deadline`, then aborts those still running.
    async fn stop_workers(&self, deadline: Instant) {
        let workers: Vec<JoinHandle<()>> = match self.workers.lock() {
            Ok(mut w) => w.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        let finished = tokio::time::timeout_at(deadline, futures::future::join_all(workers)).await;
        if finished.is_err() {
            for abort in &aborts {
                abort.abort();
            }
            // Aborting takes effect at the tasks' next await; wait for that so nothing
            // touches the queue after it is finished.
            for abort in aborts {
                while !abort.is_finished() {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

impl<S: Signal> Inner<S> {
    fn weight(&self, batch: &Batch<S>) -> usize {
        match self.settings.queue.sizer {
            Sizer::Bytes => batch.bytes(),
            Sizer::Items => batch.items(),
            Sizer::Requests => 1,
        }
    }

    fn count_lost(&self, items: usize) {
        if items == 0 {
            return;
        }
        self.stats.failed.add(items as u64);
        tracing::error!(
            exporter = %self.name,
            lost = items,
            item = S::ITEM_NAME,
            "shutdown timeout reached with data still queued in memory; it is lost"
        );
    }

    fn update_queue_gauge(&self) {
        if let Some(q) = &self.queue {
            self.stats.queue_size.set(q.size() as i64);
        }
    }

    /// Sends with retries; the final outcome is counted and logged here.
    async fn send(&self, batch: &Batch<S>) -> Outcome {
        match self.send_until(batch, None).await {
            Some(outcome) => outcome,
            None => Err(DeliveryError::retryable(
                "collector shut down before the data was delivered",
            )),
        }
    }

    /// Like `send`, but gives up waiting between attempts once `stop` turns true, returning
    /// `None` (the caller keeps the data).
    async fn send_until(
        &self,
        batch: &Batch<S>,
        mut stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Option<Outcome> {
        let mut backoff = Backoff::new(&self.settings.retry);
        loop {
            // A panic in an exporter is a bug; it must cost this batch, not the consumer
            // task, which would leave the queue accepting data nobody sends.
            let attempt = tokio::time::timeout(
                self.settings.timeout,
                std::panic::AssertUnwindSafe(self.export.export(batch)).catch_unwind(),
            )
            .await;
            let error = match attempt {
                Ok(Ok(Ok(()))) => {
                    self.stats.sent.add(batch.items() as u64);
                    return Some(Ok(()));
                }
                Ok(Ok(Err(e))) => e,
                Ok(Err(panic)) => DeliveryError::permanent(format!(
                    "the exporter failed unexpectedly (a bug, please report it): {}",
                    panic_message(panic.as_ref())
                )),
                Err(_) => DeliveryError::retryable(format!(
                    "export attempt timed out after {:?}",
                    self.settings.timeout
                )),
            };
            let retry_in = match &error {
                DeliveryError::Permanent { .. } => None,
                DeliveryError::Retryable { retry_after, .. } => backoff.next(*retry_after),
                DeliveryError::Throttled { retry_after, .. } => backoff.next(Some(*retry_after)),
            };
            match retry_in {
                Some(wait) => {
                    tracing::warn!(exporter = %self.name, error = %error, retry_in = ?wait, "export failed, will retry");
                    match stop.as_mut() {
                        Some(stop) => {
                            tokio::select! {
                                () = tokio::time::sleep(wait) => {}
                                _ = stop.wait_for(|s| *s) => return None,
                            }
                        }
                        None => tokio::time::sleep(wait).await,
                    }
                }
                None => {
                    self.stats.failed.add(batch.items() as u64);
                    tracing::error!(
                        exporter = %self.name,
                        error = %error,
                        permanent = error.is_permanent(),
                        items = batch.items(),
                        "export failed; dropping data"
                    );
                    return Some(Err(error));
                }
            }
        }
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for ExportHelper<S> {
    async fn consume(&self, mut batch: Batch<S>) {
        let inner = &self.inner;
        if let Some(p) = &inner.persistent {
            persistent::enqueue(inner, p, batch).await;
            return;
        }
        let Some(queue) = &inner.queue else {
            // Without a queue the sender waits for delivery; the send runs in its own task so
            // the receiver's admission wait does not cut retries short. Shutdown waits for it.
            let inner = self.inner.clone();
            let in_flight = self.inline_sends.clone().read_owned().await;
            tokio::spawn(async move {
                let outcome = inner.send(&batch).await;
                batch.settle(&outcome);
                drop(in_flight);
            });
            return;
        };
        let items = batch.items() as u64;
        // By default the sender is answered once the data is queued; with wait_for_delivery the
        // acknowledgements ride along and are settled by the consumer that sends it.
        let acks = if inner.settings.queue.wait_for_delivery {
            Vec::new()
        } else {
            batch.take_acks()
        };
        let weight = inner.weight(&batch);
        let count = batch.items();
        inner.unfinished.send_modify(|n| *n += count);
        let pushed = if inner.settings.queue.block_on_overflow {
            queue.push(batch, weight).await
        } else {
            queue.try_push(batch, weight)
        };
        if pushed.is_err() {
            inner
                .unfinished
                .send_modify(|n| *n = n.saturating_sub(count));
        }
        let outcome = match pushed {
            Ok(()) => Ok(()),
            Err(PushError::Full(batch)) => {
                inner.stats.enqueue_failed.add(items);
                batch.settle(&Err(queue_full()));
                Err(queue_full())
            }
            Err(PushError::Closed(batch)) => {
                let error = DeliveryError::retryable("exporter is shutting down");
                batch.settle(&Err(error.clone()));
                Err(error)
            }
        };
        inner.update_queue_gauge();
        settle_all(acks, &outcome);
    }

    fn ack_point(&self) -> AckPoint {
        let queue = &self.inner.settings.queue;
        if self.inner.settings.local_delivery && !queue.wait_for_delivery {
            AckPoint::Memory
        } else if !queue.enabled || queue.wait_for_delivery {
            AckPoint::Delivered
        } else if self.inner.persistent.is_some() {
            AckPoint::Stored
        } else {
            AckPoint::Memory
        }
    }
}

/// The message a panic carried, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

fn queue_full() -> DeliveryError {
    DeliveryError::Throttled {
        reason: "sending queue is full".into(),
        retry_after: std::time::Duration::from_secs(1),
    }
}

#[async_trait]
impl<S: Signal> Lifecycle for ExportHelper<S> {
    async fn start(&self) -> Result<(), StartError> {
        if let Some(p) = &self.inner.persistent {
            p.open(&self.inner).await?;
            p.update_gauges(&self.inner);
            let mut workers = self
                .workers
                .lock()
                .map_err(|_| StartError::new(&self.inner.name, "worker list poisoned"))?;
            for _ in 0..self.inner.settings.queue.num_consumers.max(1) {
                workers.push(tokio::spawn(persistent::work(self.inner.clone())));
            }
            return Ok(());
        }
        let Some(queue) = self.inner.queue.clone() else {
            return Ok(());
        };
        // The consumers take from the queue, or from the batching task's output.
        let source = match (&self.inner.merged, self.inner.settings.queue.batch.as_ref()) {
            (Some(merged), Some(batch)) => {
                let batch = batch.clone();
                let (flushes, flush_requests) = tokio::sync::mpsc::unbounded_channel();
                if let Ok(mut f) = self.inner.batcher_flush.lock() {
                    *f = Some(flushes);
                }
                let out = merged.clone();
                let inner = self.inner.clone();
                let task = tokio::spawn(async move {
                    let gauge = inner.clone();
                    crate::batching::run(
                        queue,
                        batch.limits(),
                        batch.partition.metadata_keys.clone(),
                        batch.flush_timeout.0,
                        flush_requests,
                        BatchingCounters::default(),
                        Arc::new(AtomicUsize::new(0)),
                        move |b: Batch<S>| {
                            let out = out.clone();
                            let gauge = gauge.clone();
                            async move {
                                gauge.update_queue_gauge();
                                if let Err(PushError::Closed(b) | PushError::Full(b)) =
                                    out.push(b, 1).await
                                {
                                    // Only after the consumers were stopped at the deadline;
                                    // shutdown counts it among the unfinished items.
                                    b.settle(&Err(DeliveryError::retryable(
                                        "collector shut down before the data was delivered",
                                    )));
                                }
                            }
                        },
                    )
                    .await;
                    // Everything is handed on: the consumers end once they have sent it.
                    if let Some(merged) = &inner.merged {
                        merged.close();
                    }
                });
                if let Ok(mut b) = self.batcher.lock() {
                    *b = Some(task);
                }
                merged.clone()
            }
            _ => queue,
        };
        let mut workers = self
            .workers
            .lock()
            .map_err(|_| StartError::new(&self.inner.name, "worker list poisoned"))?;
        for _ in 0..self.inner.settings.queue.num_consumers.max(1) {
            let inner = self.inner.clone();
            let source = source.clone();
            workers.push(tokio::spawn(async move {
                while let Some(batch) = source.pop().await {
                    inner.update_queue_gauge();
                    let outcome = inner.send(&batch).await;
                    let items = batch.items();
                    batch.settle(&outcome);
                    inner
                        .unfinished
                        .send_modify(|n| *n = n.saturating_sub(items));
                }
            }));
        }
        Ok(())
    }

    /// Waits until every batch accepted so far has been sent or given up on (retries
    /// included, up to `deadline`).
    async fn flush(&self, deadline: Instant) {
        let idle = async {
            if let Some(q) = self.inner.persistent.as_ref().and_then(|p| p.queue()) {
                q.wait_empty().await;
            } else if self.inner.queue.is_some() {
                // A partial batch waiting for its timeout is handed on now.
                let batcher = self.inner.batcher_flush.lock().ok().and_then(|f| f.clone());
                if let Some(batcher) = batcher {
                    let (done, answered) = tokio::sync::oneshot::channel();
                    if batcher.send(done).is_ok() {
                        let _ = answered.await;
                    }
                }
                let mut unfinished = self.inner.unfinished.subscribe();
                let _ = unfinished.wait_for(|n| *n == 0).await;
            } else {
                // Every inline send holds a read guard; the write guard waits them out.
                drop(self.inline_sends.write().await);
            }
        };
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            tracing::warn!(exporter = %self.inner.name, "flush deadline reached with data still being sent");
        }
    }

    async fn shutdown(&self, deadline: Instant) {
        if let Some(p) = &self.inner.persistent {
            // Undelivered records are safe in the log: stop handing them out, let sends in
            // progress finish until the deadline, and keep the rest for the next start.
            p.stop();
            self.stop_workers(deadline).await;
            p.finish(&self.inner).await;
            return;
        }
        let Some(queue) = &self.inner.queue else {
            if tokio::time::timeout_at(deadline, self.inline_sends.write())
                .await
                .is_err()
            {
                tracing::error!(exporter = %self.inner.name, "shutdown timeout reached with sends in flight");
            }
            return;
        };
        queue.close();
        // The batching task hands on the rest of the queue and ends; then the consumers.
        let batcher = self.batcher.lock().ok().and_then(|mut b| b.take());
        if let Some(batcher) = batcher {
            let abort = batcher.abort_handle();
            if tokio::time::timeout_at(deadline, batcher).await.is_err() {
                abort.abort();
            }
        }
        if let Some(merged) = &self.inner.merged {
            merged.close();
        }
        self.stop_workers(deadline).await;
        // Whatever is left now (the deadline passed, or the workers are gone) is lost: what
        // is still queued, what the batching task held and what was being sent.
        let mut left = queue.drain();
        if let Some(merged) = &self.inner.merged {
            left.extend(merged.drain());
        }
        let error = DeliveryError::retryable("collector shut down before the data was delivered");
        for batch in left {
            batch.settle(&Err(error.clone()));
        }
        let unfinished = *self.inner.unfinished.borrow();
        self.inner.count_lost(unfinished);
        self.inner.update_queue_gauge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::deliver;
    use crate::signal::Logs;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Fails `failures` times with a retryable error, then succeeds.
    struct Flaky {
        failures: AtomicUsize,
        calls: AtomicUsize,
        permanent: bool,
    }

    #[async_trait]
    impl Export<Logs> for Flaky {
        async fn export(&self, _batch: &Batch<Logs>) -> Result<(), DeliveryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.permanent {
                return Err(DeliveryError::permanent("bad request"));
            }
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(DeliveryError::Retryable {
                    reason: "busy".into(),
                    retry_after: Some(Duration::from_millis(5)),
                });
            }
            Ok(())
        }
    }

    struct Panics(AtomicUsize);

    #[async_trait]
    impl Export<Logs> for Panics {
        async fn export(&self, _batch: &Batch<Logs>) -> Result<(), DeliveryError> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("exporter bug");
            }
            Ok(())
        }
    }

    /// A panicking export fails its batch, and the consumer goes on sending the next ones.
    #[tokio::test]
    async fn a_panicking_export_fails_its_batch_and_the_consumer_lives_on() {
        let export = Arc::new(Panics(AtomicUsize::new(0)));
        let ctx = BuildContext::default();
        let mut s = settings(true, true);
        s.queue.num_consumers = 1;
        let helper = ExportHelper::<Logs>::new("test", s, export.clone(), &ctx);
        let (consumer, lifecycle) = helper.parts();
        lifecycle.start().await.unwrap();
        let first = deliver(
            &consumer,
            Batch::from_resources(two_logs()),
            Duration::from_secs(5),
        )
        .await;
        assert!(
            matches!(first, Err(DeliveryError::Permanent { .. })),
            "{first:?}"
        );
        let second = deliver(
            &consumer,
            Batch::from_resources(two_logs()),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(second, Ok(()));
        lifecycle
            .shutdown(Instant::now() + Duration::from_secs(1))
            .await;
    }

    fn settings(queue: bool, wait: bool) -> HelperSettings {
        let mut s = HelperSettings::default();
        s.queue.enabled = queue;
        s.queue.wait_for_delivery = wait;
        s.retry.initial_interval = sluice_config::Duration(Duration::from_millis(1));
        s
    }

    #[tokio::test]
    async fn retries_honour_retry_after_then_succeed() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(2),
            calls: AtomicUsize::new(0),
            permanent: false,
        });
        let ctx = BuildContext::default();
        let helper = ExportHelper::<Logs>::new("test", settings(true, true), flaky.clone(), &ctx);
        let (consumer, lifecycle) = helper.parts();
        lifecycle.start().await.unwrap();
        let outcome = deliver(
            &consumer,
            Batch::from_resources(vec![]),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        lifecycle
            .shutdown(Instant::now() + Duration::from_secs(1))
            .await;
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_reach_the_sender() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            permanent: true,
        });
        let ctx = BuildContext::default();
        let helper = ExportHelper::<Logs>::new("test", settings(false, false), flaky.clone(), &ctx);
        let (consumer, _) = helper.parts();
        let outcome = deliver(
            &consumer,
            Batch::from_resources(two_logs()),
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(outcome, Err(DeliveryError::Permanent { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        let text = ctx.telemetry.metrics.render();
        assert!(
            text.contains("otelcol_exporter_send_failed_log_records_total{exporter=\"test\"} 2"),
            "{text}"
        );
    }

    /// Holds every export until released, to see flush wait for in-flight sends.
    struct Gate(tokio::sync::Semaphore, AtomicUsize);

    #[async_trait]
    impl Export<Logs> for Gate {
        async fn export(&self, _batch: &Batch<Logs>) -> Result<(), DeliveryError> {
            let permit = self.0.acquire().await;
            drop(permit);
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn flush_waits_for_queued_and_in_flight_sends() {
        for queued in [true, false] {
            let gate = Arc::new(Gate(tokio::sync::Semaphore::new(0), AtomicUsize::new(0)));
            let ctx = BuildContext::default();
            let helper =
                ExportHelper::<Logs>::new("test", settings(queued, false), gate.clone(), &ctx);
            let (consumer, lifecycle) = helper.parts();
            lifecycle.start().await.unwrap();
            for _ in 0..3 {
                consumer.consume(Batch::from_resources(two_logs())).await;
            }
            // Nothing can be sent yet: the flush gives up at its deadline.
            lifecycle
                .flush(Instant::now() + Duration::from_millis(20))
                .await;
            assert_eq!(gate.1.load(Ordering::SeqCst), 0);
            gate.0.add_permits(100);
            lifecycle
                .flush(Instant::now() + Duration::from_secs(10))
                .await;
            assert_eq!(gate.1.load(Ordering::SeqCst), 3, "queued={queued}");
            lifecycle
                .shutdown(Instant::now() + Duration::from_secs(1))
                .await;
        }
    }

    fn persistent_ctx(dir: &std::path::Path) -> BuildContext {
        let config = crate::storage::FileStorageConfig {
            directory: dir.to_path_buf(),
            ..Default::default()
        };
        BuildContext {
            storage: crate::storage::StorageExtensions::new([crate::storage::FileStorage {
                id: "file_storage".into(),
                config,
            }]),
            ..BuildContext::default()
        }
    }

    fn persistent_settings(wait: bool) -> HelperSettings {
        let mut s = settings(true, wait);
        s.queue.storage = Some("file_storage".into());
        s.queue.num_consumers = 2;
        s
    }

    /// Counts the log records it accepts.
    struct Sink(AtomicUsize);

    #[async_trait]
    impl Export<Logs> for Sink {
        async fn export(&self, batch: &Batch<Logs>) -> Result<(), DeliveryError> {
            self.0.fetch_add(batch.items(), Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn persistent_queue_acknowledges_when_stored_and_delivers_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = persistent_ctx(dir.path());
        let down = Arc::new(Flaky {
            failures: AtomicUsize::new(usize::MAX),
            calls: AtomicUsize::new(0),
            permanent: false,
        });
        let helper = ExportHelper::<Logs>::new("out", persistent_settings(false), down, &ctx);
        let (consumer, lifecycle) = helper.parts();
        lifecycle.start().await.unwrap();
        for _ in 0..3 {
            let outcome = deliver(
                &consumer,
                Batch::from_resources(two_logs()),
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(outcome, Ok(()));
        }
        // Retrying forever against a dead destination: shutdown leaves the data on disk.
        lifecycle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        let text = ctx.telemetry.metrics.render();
        let queued: i64 = text
            .lines()
            .find(|l| l.starts_with("otelcol_exporter_queue_size{exporter=\"out\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap();
        assert!(queued > 0, "{text}");

        let sink = Arc::new(Sink(AtomicUsize::new(0)));
        let helper =
            ExportHelper::<Logs>::new("out", persistent_settings(false), sink.clone(), &ctx);
        let (_, lifecycle) = helper.parts();
        lifecycle.start().await.unwrap();
        lifecycle
            .flush(Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 6);
        lifecycle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
    }

    #[tokio::test]
    async fn persistent_queue_with_wait_for_delivery_answers_after_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = persistent_ctx(dir.path());
        let gate = Arc::new(Gate(tokio::sync::Semaphore::new(0), AtomicUsize::new(0)));
        let helper =
            ExportHelper::<Logs>::new("out", persistent_settings(true), gate.clone(), &ctx);
        let (consumer, lifecycle) = helper.parts();
        lifecycle.start().await.unwrap();
        let pending = tokio::spawn(async move {
            deliver(
                &consumer,
                Batch::from_resources(two_logs()),
                Duration::from_secs(5),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pending.is_finished());
        gate.0.add_permits(10);
        assert_eq!(pending.await.unwrap(), Ok(()));
        assert_eq!(gate.1.load(Ordering::SeqCst), 1);
        lifecycle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
    }

    /// A record was acknowledged once it was in the log, so failing to read it back (EIO, or
    /// the blocking reader dying) must delay its delivery, never drop it.
    #[tokio::test]
    async fn persistent_queue_read_failures_are_retried_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = persistent_ctx(dir.path());
        let sink = Arc::new(Sink(AtomicUsize::new(0)));
        let helper =
            ExportHelper::<Logs>::new("out", persistent_settings(false), sink.clone(), &ctx);
        let (consumer, lifecycle) = helper.parts();
        lifecycle.start().await.unwrap();
        let queue = helper
            .inner
            .persistent
            .as_ref()
            .and_then(|p| p.queue())
            .unwrap()
            .clone();
        use crate::storage::ReadFault;
        queue.inject_read_faults(&[ReadFault::Io, ReadFault::Panic, ReadFault::Io]);
        let outcome = deliver(
            &consumer,
            Batch::from_resources(two_logs()),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome, Ok(()));
        lifecycle
            .flush(Instant::now() + Duration::from_secs(20))
            .await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 2);
        let text = ctx.telemetry.metrics.render();
        assert!(
            !text.contains("otelcol_exporter_send_failed_log_records_total{exporter=\"out\"} 2"),
            "{text}"
        );
        lifecycle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
    }

    #[tokio::test]
    async fn a_storage_that_is_not_enabled_fails_the_start() {
        let ctx = BuildContext::default();
        let sink = Arc::new(Sink(AtomicUsize::new(0)));
        let helper = ExportHelper::<Logs>::new("out", persistent_settings(false), sink, &ctx);
        let error = helper.parts().1.start().await.unwrap_err();
        assert!(error.to_string().contains("file_storage"), "{error}");
    }

    fn two_logs() -> Vec<opentelemetry_proto::tonic::logs::v1::ResourceLogs> {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 2],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }
}
