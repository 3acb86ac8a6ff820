//! The helper's persistent sending queue (`sending_queue.storage`): batches are written to a
//! `file_storage` write-ahead log before the sender is answered, and consumers deliver them
//! from disk. Shutdown leaves whatever is undelivered in the log for the next start.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::settings::{DEFAULT_MERGE, MERGE_MAX_BYTES, QueueBatchSettings};
use super::{Inner, Sizer, queue_full};
use crate::ack::DeliveryError;
use crate::batch::{Batch, settle_all};
use crate::component::{BuildContext, StartError};
use crate::signal::Signal;
use crate::storage::{
    AppendError, Claim, FileStorage, PersistentQueue, QueueMetrics, QueueOptions, ReadError,
};

pub(super) struct Persistent {
    /// The storage id as configured, for messages.
    storage_id: String,
    /// `None` when the id names no enabled `file_storage` extension; start then fails.
    storage: Option<FileStorage>,
    queue: OnceLock<Arc<PersistentQueue>>,
    metrics: QueueMetrics,
    /// Set at shutdown: retries stop waiting and leave their record in the log.
    stop: watch::Sender<bool>,
}

impl Persistent {
    pub(super) fn new(
        exporter: &str,
        signal: &str,
        storage_id: &str,
        ctx: &BuildContext,
    ) -> Persistent {
        let labels = [("exporter", exporter), ("data_type", signal)];
        let metrics = &ctx.telemetry.metrics;
        Persistent {
            storage_id: storage_id.to_string(),
            storage: ctx.storage.get(storage_id).cloned(),
            queue: OnceLock::new(),
            metrics: QueueMetrics {
                damaged: metrics.counter(
                    "sluice_persistent_queue_damaged_records",
                    "Damaged ranges of the persistent queue's log (torn writes, flipped bits) that were quarantined and skipped",
                    &labels,
                ),
                lost_segments: metrics.counter(
                    "sluice_persistent_queue_lost_segments",
                    "Log files of the persistent queue found missing at start (deleted, or lost by the filesystem) whose undelivered records are lost",
                    &labels,
                ),
                disk_bytes: metrics.gauge(
                    "sluice_persistent_queue_disk_bytes",
                    "Bytes of log files the persistent queue holds on disk",
                    &labels,
                ),
            },
            stop: watch::Sender::new(false),
        }
    }

    /// The `file_storage` extension's `max_size`, if the extension exists.
    pub(super) fn disk_cap(&self) -> Option<u64> {
        self.storage.as_ref().map(|s| s.config.max_size.0)
    }

    pub(super) fn queue(&self) -> Option<&Arc<PersistentQueue>> {
        self.queue.get()
    }

    pub(super) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Opens the log (replaying what an earlier run left) on a blocking thread.
    pub(super) async fn open<S: Signal>(&self, inner: &Inner<S>) -> Result<(), StartError> {
        let name = &inner.name;
        let storage = self.storage.as_ref().ok_or_else(|| {
            StartError::new(
                name,
                format!(
                    "sending_queue.storage `{}` is not a file_storage extension listed in service.extensions",
                    self.storage_id
                ),
            )
        })?;
        let cfg = &storage.config;
        let max_disk = cfg.max_size.0.max(1);
        let queue = &inner.settings.queue;
        let opts = QueueOptions {
            directory: storage.queue_directory(name, S::KIND),
            fsync: cfg.fsync,
            fsync_interval: cfg.fsync_interval.0,
            max_disk,
            // Whole segments are reclaimed, so several must fit under the cap.
            segment_size: cfg.segment_size.0.clamp(1, (max_disk / 4).max(1)),
            capacity: queue.capacity().max(1),
            sizer: queue.sizer,
            create_directory: cfg.create_directory,
        };
        let directory = opts.directory.clone();
        let metrics = self.metrics.clone();
        let opened = tokio::task::spawn_blocking(move || PersistentQueue::open(opts, metrics))
            .await
            .map_err(|e| StartError::new(name, format!("opening the persistent queue: {e}")))?;
        let (q, report) = opened.map_err(|e| StartError::new(name, e.to_string()))?;
        if report.records > 0 {
            tracing::info!(
                exporter = %name,
                records = report.records,
                items = report.items,
                item = S::ITEM_NAME,
                directory = %directory.display(),
                "replaying undelivered data from the persistent queue"
            );
        }
        if report.damaged > 0 {
            tracing::warn!(
                exporter = %name,
                damaged = report.damaged,
                directory = %directory.display(),
                "persistent queue had damaged records; they were quarantined and the intact ones are delivered"
            );
        }
        if report.lost_segments > 0 {
            tracing::warn!(
                exporter = %name,
                files = report.lost_segments,
                records = report.lost_records,
                directory = %directory.display(),
                "persistent queue files were missing; the records in them are lost, the rest is delivered"
            );
        }
        let _ = self.queue.set(Arc::new(q));
        Ok(())
    }

    pub(super) fn update_gauges<S: Signal>(&self, inner: &Inner<S>) {
        if let Some(q) = self.queue.get() {
            inner.stats.queue_size.set(q.pending().2 as i64);
        }
    }

    /// Stops retries and hand-outs; the caller then waits for the workers and calls
    /// [`Persistent::finish`].
    pub(super) fn stop(&self) {
        self.stop.send_replace(true);
        if let Some(q) = self.queue.get() {
            q.close();
        }
    }

    /// Writes the final watermark and stops the writer; reports what stays for next time.
    pub(super) async fn finish<S: Signal>(&self, inner: &Inner<S>) {
        let Some(q) = self.queue.get() else { return };
        q.finish().await;
        let (records, items, _) = q.pending();
        if records > 0 {
            tracing::info!(
                exporter = %inner.name,
                records,
                items,
                item = S::ITEM_NAME,
                "{items} {} kept in the persistent queue for the next start",
                S::ITEM_NAME
            );
        }
        self.update_gauges(inner);
    }
}

/// Writes a batch to the log and answers its senders once it is there (or, with
/// `wait_for_delivery`, once it is delivered).
pub(super) async fn enqueue<S: Signal>(inner: &Inner<S>, p: &Persistent, mut batch: Batch<S>) {
    let items = batch.items();
    let acks = batch.take_acks();
    let Some(q) = p.queue() else {
        let error = DeliveryError::retryable("the persistent queue is not open");
        settle_all(acks, &Err(error));
        return;
    };
    let mut payload = Vec::new();
    batch.write_proto(&mut payload);
    drop(batch);
    let settings = &inner.settings.queue;
    let (carried, answer_now) = if settings.wait_for_delivery {
        (acks, Vec::new())
    } else {
        (Vec::new(), acks)
    };
    let count = u32::try_from(items).unwrap_or(u32::MAX);
    let outcome = match q
        .append(payload, count, carried, settings.block_on_overflow)
        .await
    {
        Ok(()) => Ok(()),
        Err((error, returned)) => {
            let error = match error {
                AppendError::Full => {
                    inner.stats.enqueue_failed.add(items as u64);
                    queue_full()
                }
                AppendError::Closed => DeliveryError::retryable("exporter is shutting down"),
                // Refused like a full queue: the sender backs off and retries, and the space
                // comes back as the log is delivered.
                AppendError::NoSpace(e) => {
                    inner.stats.enqueue_failed.add(items as u64);
                    DeliveryError::Throttled {
                        reason: format!("no space left for the persistent queue: {e}"),
                        retry_after: Duration::from_secs(1),
                    }
                }
                AppendError::Io(e) => {
                    inner.stats.enqueue_failed.add(items as u64);
                    tracing::error!(exporter = %inner.name, error = %e, "cannot write to the persistent queue");
                    DeliveryError::retryable(format!("cannot write to the persistent queue: {e}"))
                }
                e @ AppendError::TooLarge(_) => {
                    inner.stats.enqueue_failed.add(items as u64);
                    DeliveryError::permanent(e.to_string())
                }
            };
            settle_all(returned, &Err(error.clone()));
            Err(error)
        }
    };
    p.update_gauges(inner);
    settle_all(answer_now, &outcome);
}

/// First wait after a failed read of the log; doubles up to [`READ_RETRY_MAX`].
const READ_RETRY_FIRST: Duration = Duration::from_millis(100);
const READ_RETRY_MAX: Duration = Duration::from_secs(10);

/// What became of reading a claimed record.
enum Read {
    Payload(Vec<u8>),
    /// The record can never be read: give up on it.
    Unreadable(ReadError),
    /// Shutting down (or the read kept failing until then): the record stays in the log.
    Stopped,
    /// The reading thread died; the claim was handed back.
    Released,
}

/// Reads a claimed record, retrying transient I/O errors until they pass or shutdown:
/// the record was acknowledged to its sender, so an EIO must not drop it.
async fn read_claim<S: Signal>(
    inner: &Inner<S>,
    q: &Arc<PersistentQueue>,
    claim: &mut Option<Claim>,
    stop: &mut watch::Receiver<bool>,
) -> Read {
    let mut wait = READ_RETRY_FIRST;
    loop {
        if *stop.borrow() {
            return Read::Stopped;
        }
        let Some(at) = claim.as_ref().map(Claim::location) else {
            return Read::Released;
        };
        let reader = q.clone();
        match tokio::task::spawn_blocking(move || reader.read_at(at)).await {
            Ok(Ok(payload)) => return Read::Payload(payload),
            Ok(Err(e @ ReadError::Io(..))) => {
                tracing::warn!(exporter = %inner.name, error = %e, retry_in = ?wait, "cannot read a record of the persistent queue; will retry");
            }
            Ok(Err(e)) => return Read::Unreadable(e),
            Err(e) => {
                // The claim must not be dropped while in flight: it would pin the watermark
                // and keep flush waiting until its deadline. Hand it back and carry on.
                tracing::error!(exporter = %inner.name, error = %e, "reading a record of the persistent queue failed; handing it back");
                if let Some(claim) = claim.take() {
                    q.release(claim);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        if claim.is_none() {
            return Read::Released;
        }
        wait = (wait * 2).min(READ_RETRY_MAX);
    }
}

/// What became of loading one claimed record.
enum Loaded<S: Signal> {
    Batch(Batch<S>),
    /// Unreadable or invalid: counted, reported and completed as failed.
    Skipped,
    /// Shutting down: the record was handed back and stays in the log.
    Stopped,
    /// Handed back after the reading thread died: someone picks it up again.
    Released,
}

/// Reads a claimed record and checks it; on success the caller keeps the claim.
async fn load<S: Signal>(
    inner: &Inner<S>,
    q: &Arc<PersistentQueue>,
    claim: &mut Option<Claim>,
    stop: &mut watch::Receiver<bool>,
) -> Loaded<S> {
    let Some(p) = inner.persistent.as_ref() else {
        return Loaded::Stopped;
    };
    let read = read_claim(inner, q, claim, stop).await;
    let fail = |claim: Claim, error: String| {
        inner.stats.failed.add(u64::from(claim.items));
        q.complete(claim, &Err(DeliveryError::permanent(error)));
        p.update_gauges(inner);
    };
    match (read, claim.take()) {
        (Read::Payload(bytes), Some(c)) => {
            // Checked, not decoded: the record goes out as the bytes that came in.
            match Batch::<S>::from_proto(bytes.into()) {
                Ok(batch) => {
                    *claim = Some(c);
                    Loaded::Batch(batch)
                }
                Err(e) => {
                    tracing::error!(exporter = %inner.name, error = %e, "a persistent queue record is not valid OTLP; skipping it");
                    fail(c, e.to_string());
                    Loaded::Skipped
                }
            }
        }
        (Read::Unreadable(e), Some(c)) => {
            // The disk changed under us (damage) or the record's file is gone (a bug:
            // segments holding undone records are never reclaimed). It cannot be delivered:
            // count it, say so and move on.
            match &e {
                ReadError::Gone => {
                    tracing::error!(exporter = %inner.name, error = %e, items = c.items, "bug: a persistent queue record's file was reclaimed before delivery; skipping it")
                }
                _ => {
                    tracing::error!(exporter = %inner.name, error = %e, items = c.items, "damaged record in the persistent queue; skipping it")
                }
            }
            fail(c, e.to_string());
            Loaded::Skipped
        }
        (Read::Stopped, Some(c)) => {
            q.release(c);
            Loaded::Stopped
        }
        _ => Loaded::Released,
    }
}

/// Records merged into one send, and their claims.
struct Merge<S: Signal> {
    batch: Option<Batch<S>>,
    claims: Vec<Claim>,
    requests: usize,
}

impl<S: Signal> Merge<S> {
    fn measure(&self, sizer: Sizer) -> usize {
        let Some(b) = &self.batch else { return 0 };
        match sizer {
            Sizer::Items => b.items(),
            Sizer::Bytes => b.bytes(),
            Sizer::Requests => self.requests,
        }
    }

    /// Whether adding `claim` would take the send past its caps (a first record always fits).
    fn would_overflow(&self, claim: &Claim, settings: &QueueBatchSettings) -> bool {
        let Some(b) = &self.batch else { return false };
        let max = usize::try_from(settings.max_size).unwrap_or(usize::MAX);
        let over_max = max > 0
            && match settings.sizer {
                Sizer::Items => b.items() + claim.items as usize > max,
                Sizer::Bytes => b.bytes() + claim.bytes() > max,
                Sizer::Requests => self.requests >= max,
            };
        over_max || b.bytes() + claim.bytes() > MERGE_MAX_BYTES
    }

    fn add(&mut self, batch: Batch<S>, claim: Claim) {
        match &mut self.batch {
            Some(b) => b.merge(batch),
            None => self.batch = Some(batch),
        }
        self.claims.push(claim);
        self.requests += 1;
    }

    fn release(self, q: &PersistentQueue) {
        for claim in self.claims {
            q.release(claim);
        }
    }
}

/// One consumer: takes records from the log, merges those already waiting (or, with
/// `sending_queue.batch`, those that come within `flush_timeout`) into one send, sends it
/// with retries, and marks them done.
pub(super) async fn work<S: Signal>(inner: Arc<Inner<S>>) {
    let Some(p) = inner.persistent.as_ref() else {
        return;
    };
    let Some(q) = p.queue().cloned() else { return };
    let settings = inner
        .settings
        .queue
        .batch
        .0
        .clone()
        .unwrap_or(DEFAULT_MERGE);
    let mut stop = p.stop_signal();
    while let Some(first) = q.pop().await {
        let deadline = tokio::time::Instant::now() + settings.flush_timeout.0;
        let mut merge = Merge::<S> {
            batch: None,
            claims: Vec::new(),
            requests: 0,
        };
        let mut next = Some(first);
        loop {
            if let Some(claim) = next.take() {
                if merge.would_overflow(&claim, &settings) {
                    q.release(claim);
                    break;
                }
                let mut held = Some(claim);
                match load(&inner, &q, &mut held, &mut stop).await {
                    Loaded::Batch(batch) => {
                        if let Some(claim) = held {
                            merge.add(batch, claim);
                        }
                    }
                    Loaded::Skipped | Loaded::Released => {}
                    Loaded::Stopped => {
                        merge.release(&q);
                        return;
                    }
                }
            }
            if settings.min_size > 0
                && merge.measure(settings.sizer)
                    >= usize::try_from(settings.min_size).unwrap_or(usize::MAX)
            {
                break;
            }
            next = q.try_pop();
            if next.is_none() {
                if merge.batch.is_none() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    claim = q.pop() => match claim {
                        Some(claim) => next = Some(claim),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
        let Some(batch) = merge.batch.take() else {
            continue;
        };
        match inner.send_until(&batch, Some(stop.clone())).await {
            Some(outcome) => {
                for claim in merge.claims {
                    q.complete(claim, &outcome);
                }
            }
            // Shutting down mid-retry: the records stay in the log for the next start.
            None => {
                merge.release(&q);
                break;
            }
        }
        p.update_gauges(&inner);
    }
}
