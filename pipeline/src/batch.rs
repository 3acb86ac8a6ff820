//! The unit that flows through a pipeline: decoded OTLP data of one signal plus the
//! acknowledgements of every request it came from.

use std::sync::Arc;

use prost::Message;

use crate::ack::{Ack, Outcome};
use crate::signal::{Signal, item_count, split_front};

/// A batch of one signal. The data sits behind an `Arc` so fan-out to several exporters shares
/// it; a processor that edits it gets a private copy only when it is shared
/// ([`Batch::resources_mut`]). Fields are private so an encoded-bytes form can be added later
/// without touching components.
pub struct Batch<S: Signal> {
    resources: Arc<Vec<S::Resource>>,
    items: usize,
    bytes: usize,
    acks: Vec<Ack>,
}

impl<S: Signal> Batch<S> {
    /// A batch from decoded data whose encoded size is already known (a receiver knows the
    /// request's size without re-encoding it).
    pub fn new(resources: Vec<S::Resource>, bytes: usize) -> Self {
        let items = item_count::<S>(&resources);
        Batch {
            resources: Arc::new(resources),
            items,
            bytes,
            acks: Vec::new(),
        }
    }

    /// A batch whose size is measured by encoding it: for data made inside the collector.
    pub fn from_resources(resources: Vec<S::Resource>) -> Self {
        let bytes = resources.iter().map(|r| r.encoded_len() + 5).sum();
        Self::new(resources, bytes)
    }

    pub fn with_ack(mut self, ack: Ack) -> Self {
        self.acks.push(ack);
        self
    }

    /// Items: spans, metric data points or log records.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Size of the data as OTLP protobuf, in bytes (exact from receivers, estimated after splits).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0 && self.resources.is_empty()
    }

    pub fn resources(&self) -> &[S::Resource] {
        &self.resources
    }

    /// Mutable data; the caller must call [`Batch::recount`] if it changed items.
    pub fn resources_mut(&mut self) -> &mut Vec<S::Resource> {
        Arc::make_mut(&mut self.resources)
    }

    /// Recomputes item count and encoded size after the data was edited.
    pub fn recount(&mut self) {
        self.items = item_count::<S>(&self.resources);
        self.bytes = self.resources.iter().map(|r| r.encoded_len() + 5).sum();
    }

    /// The data as an owned vector (copied only if another branch still shares it).
    pub fn take_resources(&mut self) -> Vec<S::Resource> {
        let shared = std::mem::take(&mut self.resources);
        self.items = 0;
        self.bytes = 0;
        Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Appends another batch: data and acknowledgements.
    pub fn merge(&mut self, mut other: Batch<S>) {
        let items = other.items;
        let bytes = other.bytes;
        let acks = std::mem::take(&mut other.acks);
        if self.resources.is_empty() {
            self.resources = std::mem::take(&mut other.resources);
        } else {
            let data = other.take_resources();
            self.resources_mut().extend(data);
        }
        self.items += items;
        self.bytes += bytes;
        self.acks.extend(acks);
    }

    /// Moves the first `max_items` items into a new batch. Both halves keep a handle on every
    /// acknowledgement, so the senders hear back only when both halves are delivered.
    pub fn split_front(&mut self, max_items: usize) -> Batch<S> {
        if max_items >= self.items {
            let acks = std::mem::take(&mut self.acks);
            let resources = std::mem::take(&mut self.resources);
            let moved = Batch {
                resources,
                items: self.items,
                bytes: self.bytes,
                acks,
            };
            self.items = 0;
            self.bytes = 0;
            return moved;
        }
        let front = split_front::<S>(self.resources_mut(), max_items);
        let front_items = item_count::<S>(&front);
        // Proportional estimate: exact sizes would cost a full encode of both halves.
        let front_bytes = self.bytes.saturating_mul(front_items) / self.items.max(1);
        self.items -= front_items;
        self.bytes -= front_bytes.min(self.bytes);
        Batch {
            resources: Arc::new(front),
            items: front_items,
            bytes: front_bytes,
            acks: self.acks.clone(),
        }
    }

    /// A copy for another fan-out branch: shares the data, adds an acknowledgement branch.
    pub fn fork(&self) -> Batch<S> {
        Batch {
            resources: self.resources.clone(),
            items: self.items,
            bytes: self.bytes,
            acks: self.acks.clone(),
        }
    }

    /// Takes the acknowledgements out, e.g. to settle them when the data is queued rather
    /// than when it is delivered.
    pub fn take_acks(&mut self) -> Vec<Ack> {
        std::mem::take(&mut self.acks)
    }

    /// Settles every acknowledgement this batch carries and drops the data.
    pub fn settle(mut self, outcome: &Outcome) {
        settle_all(std::mem::take(&mut self.acks), outcome);
    }
}

pub fn settle_all(acks: Vec<Ack>, outcome: &Outcome) {
    for ack in acks {
        ack.settle(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Logs;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn logs(n: usize) -> Vec<ResourceLogs> {
        vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[tokio::test]
    async fn split_halves_share_the_acknowledgement() {
        let (ack, waiter) = Ack::new();
        let mut batch = Batch::<Logs>::new(logs(10), 1000).with_ack(ack);
        let front = batch.split_front(4);
        assert_eq!((front.items(), batch.items()), (4, 6));
        assert_eq!(front.bytes() + batch.bytes(), 1000);
        front.settle(&Ok(()));
        batch.settle(&Ok(()));
        assert_eq!(waiter.await, Ok(()));
    }

    #[tokio::test]
    async fn merge_keeps_every_ack_and_fork_shares_data() {
        let (a, wa) = Ack::new();
        let (b, wb) = Ack::new();
        let mut first = Batch::<Logs>::new(logs(2), 10).with_ack(a);
        first.merge(Batch::<Logs>::new(logs(3), 20).with_ack(b));
        assert_eq!((first.items(), first.bytes()), (5, 30));
        let copy = first.fork();
        assert!(std::ptr::eq(
            copy.resources().as_ptr(),
            first.resources().as_ptr()
        ));
        copy.settle(&Ok(()));
        first.settle(&Err(crate::DeliveryError::permanent("no")));
        assert!(wa.await.is_err());
        assert!(wb.await.is_err());
    }
}
