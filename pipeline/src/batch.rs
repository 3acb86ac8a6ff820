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
    acks: Vec<AckSpan>,
}

/// An acknowledgement and the items of this batch that came from its request, as the range
/// `start..end` of item positions. Merging appends data in order, so a sender's items stay
/// contiguous; a split then hands each half only the acknowledgements whose items it carries,
/// and a request is answered as soon as its own items are through, not when the whole
/// accumulated batch is.
struct AckSpan {
    ack: Ack,
    start: usize,
    end: usize,
}

impl AckSpan {
    fn branch(&self) -> AckSpan {
        AckSpan {
            ack: self.ack.clone(),
            start: self.start,
            end: self.end,
        }
    }
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

    /// Adds the acknowledgement of the request all of this batch's items came from.
    pub fn with_ack(mut self, ack: Ack) -> Self {
        self.acks.push(AckSpan {
            ack,
            start: 0,
            end: self.items,
        });
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
        let items = item_count::<S>(&self.resources);
        if items != self.items {
            // Items were dropped or added: which position came from which request is no
            // longer known, so every acknowledgement now waits for the whole batch.
            for span in &mut self.acks {
                span.start = 0;
                span.end = items;
            }
        }
        self.items = items;
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
        let offset = self.items;
        let acks = std::mem::take(&mut other.acks)
            .into_iter()
            .map(|span| AckSpan {
                start: span.start + offset,
                end: span.end + offset,
                ack: span.ack,
            });
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

    /// Moves the first `max_items` items into a new batch. Each half carries the
    /// acknowledgements of the requests whose items it holds; a request split across the cut
    /// is in both, so its sender hears back only when both halves are delivered.
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
        let mut front_acks = Vec::new();
        let mut rest_acks = Vec::new();
        for span in std::mem::take(&mut self.acks) {
            if span.end <= front_items {
                front_acks.push(span);
                continue;
            }
            if span.start < front_items {
                front_acks.push(span.branch());
            }
            rest_acks.push(AckSpan {
                start: span.start.saturating_sub(front_items),
                end: span.end - front_items,
                ack: span.ack,
            });
        }
        self.acks = rest_acks;
        Batch {
            resources: Arc::new(front),
            items: front_items,
            bytes: front_bytes,
            acks: front_acks,
        }
    }

    /// A copy for another fan-out branch: shares the data, adds an acknowledgement branch.
    pub fn fork(&self) -> Batch<S> {
        Batch {
            resources: self.resources.clone(),
            items: self.items,
            bytes: self.bytes,
            acks: self.acks.iter().map(AckSpan::branch).collect(),
        }
    }

    /// Takes the acknowledgements out, e.g. to settle them when the data is queued rather
    /// than when it is delivered.
    pub fn take_acks(&mut self) -> Vec<Ack> {
        std::mem::take(&mut self.acks)
            .into_iter()
            .map(|span| span.ack)
            .collect()
    }

    /// Settles every acknowledgement this batch carries and drops the data.
    pub fn settle(mut self, outcome: &Outcome) {
        settle_all(self.take_acks(), outcome);
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

    /// A batch processor cuts accumulated requests at its size: a request whose items are all
    /// in the first piece is answered when that piece is delivered, without waiting for the
    /// rest; one cut in two waits for both pieces.
    #[tokio::test]
    async fn a_split_answers_only_the_requests_whose_items_it_carries() {
        let (a, mut wa) = Ack::new();
        let (b, mut wb) = Ack::new();
        let (c, mut wc) = Ack::new();
        let mut acc = Batch::<Logs>::new(logs(4), 40).with_ack(a);
        acc.merge(Batch::<Logs>::new(logs(4), 40).with_ack(b));
        acc.merge(Batch::<Logs>::new(logs(4), 40).with_ack(c));
        let first = acc.split_front(6);
        assert_eq!((first.items(), acc.items()), (6, 6));
        first.settle(&Ok(()));
        assert_eq!(futures::poll!(&mut wa), std::task::Poll::Ready(Ok(())));
        assert!(
            futures::poll!(&mut wb).is_pending(),
            "b is cut across both pieces"
        );
        assert!(futures::poll!(&mut wc).is_pending());
        let second = acc.split_front(2);
        second.settle(&Ok(()));
        assert_eq!(futures::poll!(&mut wb), std::task::Poll::Ready(Ok(())));
        assert!(futures::poll!(&mut wc).is_pending());
        acc.settle(&Ok(()));
        assert_eq!(wc.await, Ok(()));
    }

    #[tokio::test]
    async fn changing_the_item_count_makes_every_request_wait_for_the_whole_batch() {
        let (a, mut wa) = Ack::new();
        let (b, wb) = Ack::new();
        let mut acc = Batch::<Logs>::new(logs(4), 40).with_ack(a);
        acc.merge(Batch::<Logs>::new(logs(4), 40).with_ack(b));
        acc.resources_mut().push(logs(1).remove(0));
        acc.recount();
        let first = acc.split_front(4);
        first.settle(&Ok(()));
        assert!(futures::poll!(&mut wa).is_pending());
        acc.settle(&Ok(()));
        assert_eq!(wa.await, Ok(()));
        assert_eq!(wb.await, Ok(()));
    }
}
