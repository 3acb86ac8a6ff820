//! Merging small batches into larger ones and cutting large ones down, by size or after a
//! timeout: the logic of the `batch` processor and of an exporter's `sending_queue.batch`,
//! written once.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::batch::Batch;
use crate::exporter::Sizer;
use crate::metadata::ClientMetadata;
use crate::queue::SizedQueue;
use crate::signal::Signal;
use crate::telemetry::Counter;

/// When a batch is sent and how large it may be.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// What `send_at` and `max` count.
    pub sizer: Sizer,
    /// Send as soon as this much has accumulated (0: only on the timeout or a flush).
    pub send_at: usize,
    /// Most of the sizer's unit in one outgoing batch (0: no limit); larger ones are cut.
    pub max: usize,
    /// Most bytes in one outgoing batch whatever the sizer (0: no limit), so a batch stays
    /// under the message limits of the servers it goes to.
    pub max_bytes: usize,
}

fn or_unlimited(n: usize) -> usize {
    if n == 0 { usize::MAX } else { n }
}

/// A request is one unit of the `requests` sizer however much it holds.
struct Sized<S: Signal> {
    batch: Batch<S>,
    requests: usize,
}

/// The accumulating state, separate from timers and tasks so it can be tested alone.
pub struct Accumulator<S: Signal> {
    pending: Option<Sized<S>>,
    limits: BatchLimits,
}

impl<S: Signal> Accumulator<S> {
    pub fn new(limits: BatchLimits) -> Self {
        Accumulator {
            pending: None,
            limits,
        }
    }

    fn measure(&self, sized: &Sized<S>) -> usize {
        match self.limits.sizer {
            Sizer::Items => sized.batch.items(),
            Sizer::Bytes => sized.batch.bytes(),
            Sizer::Requests => sized.requests,
        }
    }

    /// Items and bytes a cut may take, for the sizer's cap.
    fn caps(&self) -> (usize, usize) {
        let max_bytes = or_unlimited(self.limits.max_bytes);
        match self.limits.sizer {
            Sizer::Items => (or_unlimited(self.limits.max), max_bytes),
            Sizer::Bytes => (usize::MAX, max_bytes.min(or_unlimited(self.limits.max))),
            Sizer::Requests => (usize::MAX, max_bytes),
        }
    }

    /// Items held now.
    pub fn items(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.batch.items())
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_none()
    }

    /// Adds a batch; returns the batches that are now ready to go.
    pub fn add(&mut self, batch: Batch<S>) -> Vec<Batch<S>> {
        let mut ready = Vec::new();
        // The requests sizer caps how many requests one batch merges: a full one goes first.
        if self.limits.sizer == Sizer::Requests
            && self.limits.max > 0
            && self
                .pending
                .as_ref()
                .is_some_and(|p| p.requests >= self.limits.max)
        {
            ready.extend(self.flush());
        }
        match &mut self.pending {
            Some(p) => {
                p.batch.merge(batch);
                p.requests += 1;
            }
            None => self.pending = Some(Sized { batch, requests: 1 }),
        }
        let (max_items, max_bytes) = self.caps();
        while let Some(p) = &self.pending {
            let triggered = self.limits.send_at > 0 && self.measure(p) >= self.limits.send_at;
            let over = p.batch.items() > max_items || p.batch.bytes() > max_bytes;
            if !(triggered || over) {
                break;
            }
            let Some(p) = &mut self.pending else { break };
            // As in the OTel Collector the trigger only starts a send: without caps the
            // whole accumulated batch goes as it is.
            ready.push(p.batch.split_front_within(max_items, max_bytes));
            if p.batch.items() == 0 {
                // The cut took everything, acknowledgements included.
                self.pending = None;
            } else {
                p.requests = 1;
            }
        }
        ready
    }

    /// Everything still pending, cut to the caps.
    pub fn flush(&mut self) -> Vec<Batch<S>> {
        let Some(Sized { batch: mut p, .. }) = self.pending.take() else {
            return Vec::new();
        };
        let (max_items, max_bytes) = self.caps();
        let mut out = Vec::new();
        while p.items() > max_items || p.bytes() > max_bytes {
            out.push(p.split_front_within(max_items, max_bytes));
        }
        // Nothing left to send (the cuts took it all): settle instead of exporting nothing.
        if p.is_empty() {
            p.settle(&Ok(()));
        } else {
            out.push(p);
        }
        out
    }
}

/// Asks a batching loop to hand on everything it holds; answered once it has.
pub type FlushRequest = oneshot::Sender<()>;

/// What a batching loop reports: why it sent.
#[derive(Clone, Default)]
pub struct BatchingCounters {
    pub by_size: Option<Counter>,
    pub by_timeout: Option<Counter>,
}

/// The values of the metadata keys a batcher partitions by; empty when it does not.
pub type PartitionKey = Vec<Option<Vec<String>>>;

/// One accumulator per distinct combination of the values of `keys` in the batches'
/// client metadata, each with its own timeout (the OTel Collector's `metadata_keys`).
/// Without keys there is one partition, and merged batches keep no client metadata unless
/// every request of the batch had the same.
pub struct Partitions<S: Signal> {
    keys: Vec<String>,
    limits: BatchLimits,
    open: BTreeMap<PartitionKey, (Accumulator<S>, Option<Instant>)>,
}

impl<S: Signal> Partitions<S> {
    pub fn new(limits: BatchLimits, keys: Vec<String>) -> Self {
        Partitions {
            keys,
            limits,
            open: BTreeMap::new(),
        }
    }

    /// Adds a batch to its partition; returns the batches now ready. A new partition's
    /// timeout starts with its first data.
    pub fn add(&mut self, mut batch: Batch<S>, timeout: Duration) -> Vec<Batch<S>> {
        let key = ClientMetadata::partition_key(batch.metadata(), &self.keys);
        if !self.keys.is_empty() {
            let kept = batch
                .metadata()
                .map(|m| Arc::new(m.restricted_to(&self.keys)));
            batch.set_metadata(kept);
        }
        let limits = self.limits;
        let (acc, deadline) = self
            .open
            .entry(key.clone())
            .or_insert_with(|| (Accumulator::new(limits), None));
        let ready = acc.add(batch);
        if acc.is_empty() {
            self.open.remove(&key);
        } else if deadline.is_none() {
            *deadline = Some(Instant::now() + timeout);
        }
        ready
    }

    /// Everything held, in every partition.
    pub fn flush(&mut self) -> Vec<Batch<S>> {
        std::mem::take(&mut self.open)
            .into_values()
            .flat_map(|(mut acc, _)| acc.flush())
            .collect()
    }

    /// What the partitions whose timeout has passed hold.
    pub fn flush_due(&mut self, now: Instant) -> Vec<Batch<S>> {
        let due: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(_, (_, d))| d.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            if let Some((mut acc, _)) = self.open.remove(&key) {
                out.extend(acc.flush());
            }
        }
        out
    }

    /// The earliest timeout of a partition holding data.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().filter_map(|(_, d)| *d).min()
    }

    pub fn items(&self) -> usize {
        self.open.values().map(|(a, _)| a.items()).sum()
    }
}

/// Takes batches from `input`, merges them (per partition of `metadata_keys`) and hands each
/// full one to `send`, or what a partition has accumulated once `timeout` has passed since the
/// first of it arrived. Ends when `input` is closed and empty, after handing on the rest.
/// `held` tracks the items it holds, for counting what a forced stop loses.
#[allow(clippy::too_many_arguments)]
pub async fn run<S, F, Fut>(
    input: Arc<SizedQueue<Batch<S>>>,
    limits: BatchLimits,
    metadata_keys: Vec<String>,
    timeout: Duration,
    mut flushes: mpsc::UnboundedReceiver<FlushRequest>,
    counters: BatchingCounters,
    held: Arc<AtomicUsize>,
    mut send: F,
) where
    S: Signal,
    F: FnMut(Batch<S>) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let mut parts = Partitions::<S>::new(limits, metadata_keys);
    let count = |counter: &Option<Counter>, n: usize| {
        if let Some(c) = counter {
            c.add(n as u64);
        }
    };
    loop {
        let deadline = parts.next_deadline();
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            item = input.pop() => match item {
                Some(batch) => {
                    let ready = parts.add(batch, timeout);
                    held.store(parts.items() + ready.iter().map(Batch::items).sum::<usize>(), Ordering::Relaxed);
                    count(&counters.by_size, ready.len());
                    for b in ready {
                        send(b).await;
                    }
                    held.store(parts.items(), Ordering::Relaxed);
                }
                None => {
                    for b in parts.flush() {
                        send(b).await;
                    }
                    held.store(0, Ordering::Relaxed);
                    return;
                }
            },
            Some(done) = flushes.recv() => {
                // What senders already handed over counts as pending too.
                while let Some(batch) = input.try_pop() {
                    for b in parts.add(batch, timeout) {
                        send(b).await;
                    }
                }
                for b in parts.flush() {
                    send(b).await;
                }
                held.store(0, Ordering::Relaxed);
                let _ = done.send(());
            }
            () = timer => {
                count(&counters.by_timeout, 1);
                for b in parts.flush_due(Instant::now()) {
                    send(b).await;
                }
                held.store(parts.items(), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Ack;
    use crate::signal::Logs;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

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
        crate::codec::encode_proto::<Logs>(logs(n).resources(), &mut bytes);
        Batch::<Logs>::from_proto(bytes.into()).unwrap()
    }

    fn items(send_at: usize, max: usize) -> BatchLimits {
        BatchLimits {
            sizer: Sizer::Items,
            send_at,
            max,
            max_bytes: 0,
        }
    }

    #[test]
    fn sends_when_size_is_reached_and_cuts_to_max() {
        let mut acc = Accumulator::<Logs>::new(items(10, 15));
        assert!(acc.add(logs(4)).is_empty());
        let ready = acc.add(logs(30));
        let sizes: Vec<usize> = ready.iter().map(|b| b.items()).collect();
        assert_eq!(sizes, vec![15, 15]);
        assert_eq!(acc.items(), 4);
        let rest: Vec<usize> = acc.flush().iter().map(|b| b.items()).collect();
        assert_eq!(rest, vec![4]);
    }

    /// The size only triggers: without a cap, everything accumulated goes in one batch, and
    /// protobuf requests go as their bytes.
    #[test]
    fn without_a_cap_the_whole_accumulated_batch_goes_undecoded() {
        let mut acc = Accumulator::<Logs>::new(items(10, 0));
        assert!(acc.add(proto(6)).is_empty());
        let ready = acc.add(proto(7));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].items(), 13);
        assert_eq!(ready[0].encoded().map(|chunks| chunks.len()), Some(2));
        assert!(acc.is_empty());
    }

    /// Caps on requests that arrived as protobuf cut between requests, so no batch is
    /// decoded; the caps hold, and every request is answered when its own batch is through.
    #[tokio::test]
    async fn caps_cut_protobuf_batches_between_requests() {
        let one = proto(10).bytes();
        let limits = BatchLimits {
            max_bytes: one * 2 + one / 2,
            ..items(25, 0)
        };
        let mut acc = Accumulator::<Logs>::new(limits);
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
            assert!(batch.bytes() <= limits.max_bytes);
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
        let mut acc = Accumulator::<Logs>::new(limits);
        let pieces = acc.add(proto(100));
        assert!(pieces.len() >= 3);
        assert!(pieces.iter().all(|b| b.bytes() <= limits.max_bytes));
    }

    #[test]
    fn byte_cap_splits_a_large_batch() {
        let one = logs(100);
        let limits = BatchLimits {
            max_bytes: one.bytes() / 4,
            ..items(0, 0)
        };
        let mut acc = Accumulator::<Logs>::new(limits);
        assert!(acc.add(one).len() >= 3);
        for b in acc.flush() {
            assert!(b.bytes() <= limits.max_bytes);
        }
    }

    #[test]
    fn bytes_sizer_triggers_and_caps_in_bytes() {
        let one = proto(10).bytes();
        let mut acc = Accumulator::<Logs>::new(BatchLimits {
            sizer: Sizer::Bytes,
            send_at: one * 3,
            max: one * 2,
            max_bytes: 0,
        });
        assert!(acc.add(proto(10)).is_empty());
        assert!(acc.add(proto(10)).is_empty());
        let ready = acc.add(proto(10));
        let sizes: Vec<usize> = ready.iter().map(|b| b.items()).collect();
        assert_eq!(sizes, vec![20]);
        assert_eq!(acc.items(), 10);
    }

    #[test]
    fn requests_sizer_counts_requests_whatever_their_size() {
        let mut acc = Accumulator::<Logs>::new(BatchLimits {
            sizer: Sizer::Requests,
            send_at: 3,
            max: 0,
            max_bytes: 0,
        });
        assert!(acc.add(logs(100)).is_empty());
        assert!(acc.add(logs(1)).is_empty());
        let ready = acc.add(logs(5));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].items(), 106);

        // `max` in requests: a batch merges at most that many.
        let mut acc = Accumulator::<Logs>::new(BatchLimits {
            sizer: Sizer::Requests,
            send_at: 0,
            max: 2,
            max_bytes: 0,
        });
        assert!(acc.add(logs(1)).is_empty());
        assert!(acc.add(logs(1)).is_empty());
        let ready = acc.add(logs(1));
        assert_eq!(ready.iter().map(Batch::items).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn partitions_by_metadata_keep_tenants_apart_and_keep_their_keys() {
        let tenant = |t: &str, n: usize| {
            let mut m = ClientMetadata::default();
            m.add("x-tenant", t);
            m.add("x-other", "dropped");
            logs(n).with_metadata(Arc::new(m))
        };
        let mut parts = Partitions::<Logs>::new(items(10, 0), vec!["X-Tenant".to_string()]);
        let timeout = Duration::from_secs(60);
        assert!(parts.add(tenant("a", 6), timeout).is_empty());
        assert!(parts.add(tenant("b", 6), timeout).is_empty());
        assert!(parts.add(logs(3), timeout).is_empty());
        let ready = parts.add(tenant("a", 6), timeout);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].items(), 12);
        let m = ready[0].metadata().unwrap();
        assert_eq!(m.get("x-tenant"), Some(&["a".to_string()][..]));
        assert_eq!(m.get("x-other"), None);
        let mut rest: Vec<usize> = parts.flush().iter().map(Batch::items).collect();
        rest.sort();
        assert_eq!(rest, vec![3, 6]);
        // Without keys, different clients' requests merge and the batch speaks for none.
        let mut one = Partitions::<Logs>::new(items(10, 0), Vec::new());
        one.add(tenant("a", 1), timeout);
        one.add(tenant("b", 1), timeout);
        let merged = one.flush();
        assert!(merged[0].metadata().is_none());
    }

    #[tokio::test]
    async fn acknowledgement_waits_for_every_piece() {
        let mut acc = Accumulator::<Logs>::new(items(5, 5));
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

    #[tokio::test]
    async fn an_empty_batch_is_settled_not_exported() {
        let mut acc = Accumulator::<Logs>::new(items(10, 0));
        let (ack, waiter) = Ack::new();
        assert!(
            acc.add(Batch::<Logs>::from_resources(vec![]).with_ack(ack))
                .is_empty()
        );
        assert!(acc.flush().is_empty());
        assert_eq!(waiter.await, Ok(()));
    }
}
