//! The `batch` processor: merges small batches into larger ones (fewer, bigger exports) and
//! splits oversized ones, flushing on size or after a timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ByteSize, ComponentConfig, ConfigErrors, Diagnostic, Duration, SignalKind};
use sluice_pipeline::queue::{PushError, SizedQueue};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DeliveryError, DynConsumer,
    FactoryInfo, Lifecycle, ProcessorFactory, Signal, SignalConsumer, StartError, WrapConsumer,
    decode_config,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `processors: batch:`, with the OTel Collector's keys and defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that trigger a send (default 8192; 0 sends on
    /// the timeout only).
    pub send_batch_size: usize,
    /// Upper bound on items in one outgoing batch; larger ones are split (default 0: none).
    pub send_batch_max_size: usize,
    /// Longest time data waits for a batch to fill (default 200ms).
    pub timeout: Duration,
    /// Upper bound on one outgoing batch's encoded size; larger ones are split (default 3MiB;
    /// 0: none). Keeps batches under the 4 MiB message limit OTLP/gRPC servers (the OTel
    /// Collector's included) apply by default, with room for the estimate after splits.
    pub send_batch_max_bytes: ByteSize,
    /// How much data may wait inside the processor before senders are made to wait
    /// (default 32MiB).
    pub buffer_size: ByteSize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration(StdDuration::from_millis(200)),
            send_batch_max_bytes: ByteSize(3 * 1024 * 1024),
            buffer_size: ByteSize(32 * 1024 * 1024),
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
        let (flushes, flush_requests) = tokio::sync::mpsc::unbounded_channel();
        let processor = Arc::new(BatchProcessor::<S> {
            flushes,
            flush_requests: Mutex::new(Some(flush_requests)),
            input: Arc::new(SizedQueue::new(self.cfg.buffer_size.0 as usize)),
            next,
            cfg: self.cfg.clone(),
            task: Mutex::new(None),
            sent_by_size: self.ctx.telemetry.metrics.counter(
                "otelcol_processor_batch_batch_size_trigger_send",
                "Number of times the batch was sent due to a size trigger",
                &[("processor", &self.name)],
            ),
            sent_by_timeout: self.ctx.telemetry.metrics.counter(
                "otelcol_processor_batch_timeout_trigger_send",
                "Number of times the batch was sent due to a timeout trigger",
                &[("processor", &self.name)],
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
    task: Mutex<Option<JoinHandle<()>>>,
    /// Flush requests to the batching task; each is answered once everything pending at the
    /// time has been handed to the next stage.
    flushes: tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
    flush_requests:
        Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>>>,
    sent_by_size: Counter,
    sent_by_timeout: Counter,
}

#[async_trait]
impl<S: Signal> Consumer<S> for BatchProcessor<S> {
    async fn consume(&self, batch: Batch<S>) {
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

/// The batching loop's state, separate from the task so it can be tested without timers.
struct Accumulator<S: Signal> {
    pending: Option<Batch<S>>,
    limits: Limits,
}

struct Limits {
    send_batch_size: usize,
    max_items: usize,
    max_bytes: usize,
}

impl<S: Signal> Accumulator<S> {
    fn new(cfg: &BatchConfig) -> Self {
        Accumulator {
            pending: None,
            limits: Limits {
                send_batch_size: cfg.send_batch_size,
                max_items: if cfg.send_batch_max_size == 0 {
                    usize::MAX
                } else {
                    cfg.send_batch_max_size
                },
                max_bytes: if cfg.send_batch_max_bytes.0 == 0 {
                    usize::MAX
                } else {
                    cfg.send_batch_max_bytes.0 as usize
                },
            },
        }
    }

    /// Adds a batch; returns the batches that are now full.
    fn add(&mut self, batch: Batch<S>) -> Vec<Batch<S>> {
        match &mut self.pending {
            Some(p) => p.merge(batch),
            None => self.pending = Some(batch),
        }
        let mut ready = Vec::new();
        while let Some(p) = &mut self.pending {
            let limits = &self.limits;
            let by_count = limits.send_batch_size > 0 && p.items() >= limits.send_batch_size;
            let by_bytes = p.bytes() > limits.max_bytes;
            if !(by_count || by_bytes) {
                break;
            }
            // As in the OTel Collector, `send_batch_size` only triggers a send: without caps
            // the whole accumulated batch goes as it is.
            ready.push(p.split_front_within(limits.max_items, limits.max_bytes));
            if p.items() == 0 {
                // split_front took everything, acknowledgements included.
                self.pending = None;
            }
        }
        ready
    }

    /// Everything still pending, split to the caps.
    fn flush(&mut self) -> Vec<Batch<S>> {
        let Some(mut p) = self.pending.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while p.items() > self.limits.max_items || p.bytes() > self.limits.max_bytes {
            out.push(p.split_front_within(self.limits.max_items, self.limits.max_bytes));
        }
        // Nothing left to send (the split took it all): settle instead of exporting nothing.
        if p.is_empty() {
            p.settle(&Ok(()));
        } else {
            out.push(p);
        }
        out
    }
}

impl<S: Signal> BatchProcessor<S> {
    async fn run(
        input: Arc<SizedQueue<Batch<S>>>,
        next: DynConsumer<S>,
        cfg: BatchConfig,
        by_size: Counter,
        by_timeout: Counter,
        mut flushes: tokio::sync::mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut acc = Accumulator::<S>::new(&cfg);
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                item = input.pop() => match item {
                    Some(batch) => {
                        let ready = acc.add(batch);
                        by_size.add(ready.len() as u64);
                        for b in ready {
                            next.consume(b).await;
                        }
                        deadline = match (&acc.pending, deadline) {
                            (None, _) => None,
                            (Some(_), Some(d)) => Some(d),
                            (Some(_), None) => Some(Instant::now() + cfg.timeout.0),
                        };
                    }
                    None => {
                        for b in acc.flush() {
                            next.consume(b).await;
                        }
                        return;
                    }
                },
                Some(done) = flushes.recv() => {
                    // What senders already handed over counts as pending too.
                    while let Some(batch) = input.try_pop() {
                        for b in acc.add(batch) {
                            next.consume(b).await;
                        }
                    }
                    for b in acc.flush() {
                        next.consume(b).await;
                    }
                    deadline = None;
                    let _ = done.send(());
                }
                () = timer => {
                    by_timeout.add(1);
                    for b in acc.flush() {
                        next.consume(b).await;
                    }
                    deadline = None;
                }
            }
        }
    }
}

#[async_trait]
impl<S: Signal> Lifecycle for BatchProcessor<S> {
    async fn start(&self) -> Result<(), StartError> {
        let task = tokio::spawn(Self::run(
            self.input.clone(),
            self.next.clone(),
            self.cfg.clone(),
            self.sent_by_size.clone(),
            self.sent_by_timeout.clone(),
            self.flush_requests
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .ok_or_else(|| StartError::new("batch", "started twice"))?,
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
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use sluice_pipeline::{Ack, Logs};

    fn logs(n: usize) -> Batch<Logs> {
        Batch::from_resources(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// `n` log records as a received protobuf request (not decoded).
    fn proto(n: usize) -> Batch<Logs> {
        let mut bytes = Vec::new();
        sluice_pipeline::codec::encode_proto::<Logs>(logs(n).resources(), &mut bytes);
        Batch::<Logs>::from_proto(bytes.into()).unwrap()
    }

    fn cfg(size: usize, max: usize) -> BatchConfig {
        BatchConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            ..BatchConfig::default()
        }
    }

    #[test]
    fn sends_when_size_is_reached_and_splits_to_max() {
        let mut acc = Accumulator::<Logs>::new(&cfg(10, 15));
        assert!(acc.add(logs(4)).is_empty());
        let ready = acc.add(logs(30));
        let sizes: Vec<usize> = ready.iter().map(|b| b.items()).collect();
        assert_eq!(sizes, vec![15, 15]);
        assert_eq!(acc.pending.as_ref().map(|p| p.items()), Some(4));
        let rest: Vec<usize> = acc.flush().iter().map(|b| b.items()).collect();
        assert_eq!(rest, vec![4]);
    }

    /// The size only triggers: without a cap, everything accumulated goes in one batch, and
    /// protobuf requests go as their bytes.
    #[test]
    fn without_a_cap_the_whole_accumulated_batch_goes_undecoded() {
        let mut acc = Accumulator::<Logs>::new(&cfg(10, 0));
        assert!(acc.add(proto(6)).is_empty());
        let ready = acc.add(proto(7));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].items(), 13);
        assert_eq!(ready[0].encoded().map(|chunks| chunks.len()), Some(2));
        assert!(acc.pending.is_none());
    }

    /// Caps on requests that arrived as protobuf cut between requests, so no batch is
    /// decoded; the caps hold, and every request is answered when its own batch is through.
    #[tokio::test]
    async fn caps_cut_protobuf_batches_between_requests() {
        let one = proto(10).bytes();
        let mut c = cfg(25, 0);
        c.send_batch_max_bytes = ByteSize((one * 2 + one / 2) as u64);
        let mut acc = Accumulator::<Logs>::new(&c);
        let mut waiters = Vec::new();
        let mut ready = Vec::new();
        for _ in 0..5 {
            let (ack, waiter) = Ack::new();
            waiters.push(waiter);
            ready.extend(acc.add(proto(10).with_ack(ack)));
        }
        ready.extend(acc.flush());
        let sizes: Vec<usize> = ready.iter().map(|b| b.items()).collect();
        assert_eq!(sizes, vec![20, 20, 10]);
        for batch in &ready {
            assert!(batch.bytes() <= c.send_batch_max_bytes.0 as usize);
            assert!(
                batch.encoded().is_some(),
                "a cut between requests decodes nothing"
            );
        }
        // The first batch answers the first two requests and no other.
        let mut ready = ready.into_iter();
        ready.next().unwrap().settle(&Ok(()));
        let mut waiters = waiters.into_iter();
        assert_eq!(waiters.next().unwrap().await, Ok(()));
        assert_eq!(waiters.next().unwrap().await, Ok(()));
        let mut third = waiters.next().unwrap();
        assert!(futures::poll!(&mut third).is_pending());
        for batch in ready {
            batch.settle(&Ok(()));
        }
        assert_eq!(third.await, Ok(()));

        // A request larger than the cap is cut inside (decoded), still within the cap.
        let mut acc = Accumulator::<Logs>::new(&c);
        let pieces = acc.add(proto(100));
        assert!(pieces.len() >= 3);
        assert!(
            pieces
                .iter()
                .all(|b| b.bytes() <= c.send_batch_max_bytes.0 as usize)
        );
    }

    #[test]
    fn byte_cap_splits_a_large_batch() {
        let mut c = cfg(0, 0);
        let one = logs(100);
        c.send_batch_max_bytes = ByteSize((one.bytes() / 4) as u64);
        let mut acc = Accumulator::<Logs>::new(&c);
        assert!(acc.add(one).len() >= 3);
        for b in acc.flush() {
            assert!(b.bytes() <= c.send_batch_max_bytes.0 as usize);
        }
    }

    #[tokio::test]
    async fn acknowledgement_waits_for_every_piece() {
        let mut acc = Accumulator::<Logs>::new(&cfg(5, 5));
        let (ack, waiter) = Ack::new();
        let ready = acc.add(logs(12).with_ack(ack));
        assert_eq!(ready.len(), 2);
        for b in ready {
            b.settle(&Ok(()));
        }
        let rest = acc.flush();
        assert_eq!(rest.len(), 1);
        for b in rest {
            b.settle(&Ok(()));
        }
        assert_eq!(waiter.await, Ok(()));
    }

    struct Collect(Mutex<Vec<usize>>);
    #[async_trait]
    impl Consumer<Logs> for Collect {
        async fn consume(&self, batch: Batch<Logs>) {
            self.0.lock().unwrap().push(batch.items());
            batch.settle(&Ok(()));
        }
    }

    #[tokio::test]
    async fn flush_hands_on_everything_pending_without_stopping() {
        let next = Arc::new(Collect(Mutex::new(Vec::new())));
        let mut c = cfg(1000, 0);
        c.timeout = Duration(StdDuration::from_secs(3600));
        let builder = Builder {
            cfg: c,
            name: "batch".into(),
            ctx: BuildContext::default(),
            lifecycle: Mutex::new(None),
        };
        let consumer = builder.wrap::<Logs>(next.clone()).unwrap();
        let lifecycle = builder.lifecycle.lock().unwrap().take().unwrap();
        lifecycle.start().await.unwrap();
        consumer.consume(logs(3)).await;
        consumer.consume(logs(4)).await;
        lifecycle
            .flush(Instant::now() + StdDuration::from_secs(10))
            .await;
        assert_eq!(next.0.lock().unwrap().iter().sum::<usize>(), 7);
        // Still running: later data is batched and flushed again.
        consumer.consume(logs(2)).await;
        lifecycle
            .flush(Instant::now() + StdDuration::from_secs(10))
            .await;
        assert_eq!(next.0.lock().unwrap().iter().sum::<usize>(), 9);
        lifecycle
            .shutdown(Instant::now() + StdDuration::from_secs(1))
            .await;
    }

    #[tokio::test]
    async fn an_empty_batch_is_settled_not_exported() {
        let mut acc = Accumulator::<Logs>::new(&cfg(10, 0));
        let (ack, waiter) = Ack::new();
        assert!(
            acc.add(Batch::<Logs>::from_resources(vec![]).with_ack(ack))
                .is_empty()
        );
        assert!(acc.flush().is_empty());
        assert_eq!(waiter.await, Ok(()));
    }
}
