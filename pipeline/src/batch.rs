//! The unit that flows through a pipeline: OTLP data of one signal plus the acknowledgements
//! of every request it came from.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use prost::Message;

use crate::ack::{Ack, Outcome};
use crate::admission::Permit;
use crate::codec::{DecodeError, cut_request, encode_proto, encoded_proto_len, scan};
use crate::metadata::{ClientMetadata, SharedMetadata};
use crate::signal::{Signal, item_count, split_front};

/// A batch of one signal. The data sits behind an `Arc` so fan-out to several exporters shares
/// it; a processor that edits it gets a private copy only when it is shared
/// ([`Batch::resources_mut`]).
///
/// Data that arrived as OTLP protobuf stays in that form, checked but not decoded
/// ([`Batch::from_proto`]), until a component asks for [`Batch::resources`]. A pipeline
/// whose components only batch, queue, forward or discard never decodes it, and an exporter
/// that sends OTLP protobuf can send [`Batch::encoded`] as it is. Components need not know
/// which form they hold.
///
/// A batch from a receiver also holds admission budget for the memory its data takes once
/// decoded ([`Batch::hold`]) for as long as it exists, whether or not a component ever decodes
/// it: cuts share it out, merges add it up, and a copy for another branch reserves as much
/// again.
pub struct Batch<S: Signal> {
    data: Arc<Data<S>>,
    items: usize,
    bytes: usize,
    acks: Vec<AckSpan>,
    /// Usually one permit; more only when data of different admission states was merged.
    reserved: Vec<Permit>,
    /// What the receiver knew of the client (`include_metadata`), while every request merged
    /// into the batch had the same.
    metadata: Option<SharedMetadata>,
}

enum Data<S: Signal> {
    Decoded(Vec<S::Resource>),
    Encoded(Encoded<S>),
}

/// Export requests that passed [`scan`]: their concatenation is one valid request (protobuf
/// appends repeated fields), so merging batches appends chunks, and a batch can be cut
/// between two of them without decoding either.
struct Encoded<S: Signal> {
    chunks: Vec<Chunk>,
    resources: usize,
    decoded: OnceLock<Vec<S::Resource>>,
}

#[derive(Clone)]
struct Chunk {
    request: Bytes,
    items: usize,
    resources: usize,
    /// The scan's bound on what decoding this chunk allocates.
    decoded: usize,
}

impl Chunk {
    fn scanned<S: Signal>(request: Bytes) -> Result<Chunk, DecodeError> {
        let scanned = scan(S::KIND, &request)?;
        Ok(Chunk {
            request,
            items: scanned.items,
            resources: scanned.resources,
            decoded: scanned.decoded_bytes,
        })
    }
}

impl<S: Signal> Clone for Data<S> {
    fn clone(&self) -> Self {
        match self {
            Data::Decoded(resources) => Data::Decoded(resources.clone()),
            Data::Encoded(e) => Data::Encoded(Encoded {
                chunks: e.chunks.clone(),
                resources: e.resources,
                decoded: e.decoded.clone(),
            }),
        }
    }
}

impl<S: Signal> Default for Data<S> {
    fn default() -> Self {
        Data::Decoded(Vec::new())
    }
}

impl<S: Signal> Encoded<S> {
    fn resources(&self) -> &[S::Resource] {
        self.decoded
            .get_or_init(|| decode_chunks::<S>(&self.chunks))
    }

    fn into_resources(self) -> Vec<S::Resource> {
        match self.decoded.into_inner() {
            Some(resources) => resources,
            None => decode_chunks::<S>(&self.chunks),
        }
    }
}

/// Decodes chunks that [`scan`] accepted, which cannot fail: the scan accepts exactly what
/// the decoder does (its tests compare the two). Should they ever disagree, the error is
/// logged and the chunk's data is missing from the batch, which is all that can be done
/// this late.
fn decode_chunks<S: Signal>(chunks: &[Chunk]) -> Vec<S::Resource> {
    let mut request = S::Request::default();
    for chunk in chunks {
        if let Err(e) = request.merge(chunk.request.clone()) {
            tracing::error!(
                error = %e,
                bytes = chunk.request.len(),
                "OTLP data that passed the protobuf check failed to decode; its items are lost \
                 (a bug: please report it)"
            );
        }
    }
    S::from_request(request)
}

impl<S: Signal> Data<S> {
    fn resources(&self) -> &[S::Resource] {
        match self {
            Data::Decoded(resources) => resources,
            Data::Encoded(e) => e.resources(),
        }
    }

    fn into_resources(self) -> Vec<S::Resource> {
        match self {
            Data::Decoded(resources) => resources,
            Data::Encoded(e) => e.into_resources(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Data::Decoded(resources) => resources.is_empty(),
            Data::Encoded(e) => e.resources == 0,
        }
    }
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
            data: Arc::new(Data::Decoded(resources)),
            items,
            bytes,
            acks: Vec::new(),
            reserved: Vec::new(),
            metadata: None,
        }
    }

    /// A batch from an OTLP protobuf export request of this signal (the body of an
    /// `Export*ServiceRequest`), checked but not decoded: it is decoded when a component
    /// first asks for its resources, if one ever does.
    pub fn from_proto(request: Bytes) -> Result<Self, DecodeError> {
        let chunk = Chunk::scanned::<S>(request)?;
        Ok(Batch {
            items: chunk.items,
            bytes: chunk.request.len(),
            data: Arc::new(Data::Encoded(Encoded {
                resources: chunk.resources,
                chunks: vec![chunk],
                decoded: OnceLock::new(),
            })),
            acks: Vec::new(),
            reserved: Vec::new(),
            metadata: None,
        })
    }

    /// For data still in its received form: at least the memory decoding it would take
    /// (see [`crate::codec::Scanned::decoded_bytes`]).
    pub fn decoded_estimate(&self) -> Option<usize> {
        match &*self.data {
            Data::Encoded(e) => Some(e.chunks.iter().map(|c| c.decoded).sum()),
            Data::Decoded(_) => None,
        }
    }

    /// Makes the batch hold `permit` (admission budget for the memory its data takes once
    /// decoded) until the data is dropped.
    pub fn hold(&mut self, permit: Permit) {
        if permit.bytes() == 0 {
            return;
        }
        let permit = self
            .reserved
            .iter_mut()
            .try_fold(permit, |permit, held| held.absorb(permit).err());
        self.reserved.extend(permit);
    }

    /// Budget held for the data (see [`Batch::hold`]).
    pub fn reserved_bytes(&self) -> usize {
        self.reserved.iter().map(Permit::bytes).sum()
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
        self.items == 0 && self.data.is_empty()
    }

    /// The decoded data (decoded now if it is still in its protobuf form).
    pub fn resources(&self) -> &[S::Resource] {
        self.data.resources()
    }

    /// The data as OTLP protobuf export requests of this signal, whose concatenation is one
    /// request, while the batch still holds the bytes it was received as; `None` once a
    /// component has edited it, or if it was never protobuf.
    pub fn encoded(&self) -> Option<Vec<Bytes>> {
        match &*self.data {
            Data::Encoded(e) => Some(e.chunks.iter().map(|c| c.request.clone()).collect()),
            Data::Decoded(_) => None,
        }
    }

    /// Appends the data as one OTLP protobuf export request of this signal: the bytes it was
    /// received as while the batch has them (unknown fields a newer sender added go through
    /// as they came), else encoded now.
    pub fn write_proto(&self, out: &mut Vec<u8>) {
        match &*self.data {
            Data::Encoded(e) => {
                out.reserve(e.chunks.iter().map(|c| c.request.len()).sum());
                for chunk in &e.chunks {
                    out.extend_from_slice(&chunk.request);
                }
            }
            Data::Decoded(resources) => {
                out.reserve(encoded_proto_len::<S>(resources));
                encode_proto::<S>(resources, out);
            }
        }
    }

    /// Mutable data; the caller must call [`Batch::recount`] if it changed items. The
    /// protobuf form, if any, is dropped: it would no longer match.
    pub fn resources_mut(&mut self) -> &mut Vec<S::Resource> {
        if let Data::Encoded(_) = &*self.data {
            let resources = Self::unshare(std::mem::take(&mut self.data));
            self.data = Arc::new(Data::Decoded(resources));
        }
        match Arc::make_mut(&mut self.data) {
            Data::Decoded(resources) => resources,
            Data::Encoded(_) => unreachable!("encoded data was replaced by decoded data above"),
        }
    }

    /// Decoded data of our own: moved out if nobody else holds it, else copied.
    fn unshare(data: Arc<Data<S>>) -> Vec<S::Resource> {
        match Arc::try_unwrap(data) {
            Ok(data) => data.into_resources(),
            Err(shared) => shared.resources().to_vec(),
        }
    }

    /// Recomputes item count and encoded size after the data was edited.
    pub fn recount(&mut self) {
        let items = item_count::<S>(self.resources());
        if items != self.items {
            // Items were dropped or added: which position came from which request is no
            // longer known, so every acknowledgement now waits for the whole batch.
            for span in &mut self.acks {
                span.start = 0;
                span.end = items;
            }
        }
        self.items = items;
        self.bytes = self.resources().iter().map(|r| r.encoded_len() + 5).sum();
    }

    /// The data as an owned vector (copied only if another branch still shares it).
    pub fn take_resources(&mut self) -> Vec<S::Resource> {
        let shared = std::mem::take(&mut self.data);
        self.items = 0;
        self.bytes = 0;
        Self::unshare(shared)
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
        if self.data.is_empty() {
            self.data = std::mem::take(&mut other.data);
        } else if matches!(
            (&*self.data, &*other.data),
            (Data::Encoded(_), Data::Encoded(_))
        ) {
            let theirs = Arc::unwrap_or_clone(std::mem::take(&mut other.data));
            if let (Data::Encoded(ours), Data::Encoded(theirs)) =
                (Arc::make_mut(&mut self.data), theirs)
            {
                ours.chunks.extend(theirs.chunks);
                ours.resources += theirs.resources;
                // Both already decoded (a processor read them): keep the decoded form too.
                if let (Some(decoded), Some(more)) =
                    (ours.decoded.get_mut(), theirs.decoded.into_inner())
                {
                    decoded.extend(more);
                } else {
                    ours.decoded = OnceLock::new();
                }
            }
        } else {
            let data = other.take_resources();
            self.resources_mut().extend(data);
        }
        // Requests from different clients merged: the batch speaks for none of them, as in the
        // OTel Collector, unless a partition by metadata keys kept them together.
        let was_empty = self.items == 0 && self.acks.is_empty() && self.metadata.is_none();
        if was_empty {
            self.metadata = other.metadata.take();
        } else if self.metadata != other.metadata {
            self.metadata = None;
        }
        self.items += items;
        self.bytes += bytes;
        self.acks.extend(acks);
        for permit in std::mem::take(&mut other.reserved) {
            self.hold(permit);
        }
    }

    /// Moves the first `max_items` items into a new batch, with the acknowledgements of the
    /// requests whose items it holds; a request cut in two waits for both halves. Data still
    /// in its received form is cut as bytes ([`Batch::split_front_within`]).
    pub fn split_front(&mut self, max_items: usize) -> Batch<S> {
        if self.is_undecoded() {
            return self.split_front_within(max_items, usize::MAX);
        }
        self.split_front_decoded(max_items)
    }

    /// Whether the data is in its received form and nobody has decoded it yet.
    fn is_undecoded(&self) -> bool {
        matches!(&*self.data, Data::Encoded(e) if e.decoded.get().is_none())
    }

    /// Moves everything into a new batch, leaving this one empty.
    fn take_all(&mut self) -> Batch<S> {
        let moved = Batch {
            data: std::mem::take(&mut self.data),
            items: self.items,
            bytes: self.bytes,
            acks: std::mem::take(&mut self.acks),
            reserved: std::mem::take(&mut self.reserved),
            metadata: self.metadata.clone(),
        };
        self.items = 0;
        self.bytes = 0;
        moved
    }

    fn split_front_decoded(&mut self, max_items: usize) -> Batch<S> {
        if max_items >= self.items {
            return self.take_all();
        }
        let items = self.items;
        let front = split_front::<S>(self.resources_mut(), max_items);
        let front_items = item_count::<S>(&front);
        // Proportional estimate: exact sizes would cost a full encode of both halves.
        let front_bytes = self.bytes.saturating_mul(front_items) / self.items.max(1);
        let reserved = self.share_reserved(front_items, items);
        self.cut(Data::Decoded(front), front_items, front_bytes, reserved)
    }

    /// Moves the front of the batch into a new one of at most `max_items` items and
    /// `max_bytes` bytes. Data still in its received form is cut without decoding it:
    /// between requests, and a request larger than the limits is first cut into requests
    /// within them at resource, scope and item boundaries ([`cut_request`]); only one item
    /// (or one metric) larger than the limits goes alone, over them. Decoded data is cut by
    /// items, its size estimated from the average item.
    pub fn split_front_within(&mut self, max_items: usize, max_bytes: usize) -> Batch<S> {
        if self.items <= max_items && self.bytes <= max_bytes {
            return self.take_all();
        }
        if let Data::Encoded(e) = &*self.data {
            // Data a component has already decoded is not cut as bytes: that would drop the
            // decoded form, to be decoded again. It is still cut between requests.
            let first_fits = e
                .chunks
                .first()
                .is_some_and(|first| first.items <= max_items && first.request.len() <= max_bytes);
            let undecoded = self.is_undecoded();
            if first_fits || (undecoded && self.cut_first_chunk(max_items, max_bytes)) {
                return self.split_chunks(max_items, max_bytes);
            }
        }
        let mut take = max_items.min(self.items).max(1);
        if self.bytes > max_bytes {
            // The most items whose proportional size stays within the cap.
            let fitting = max_bytes as u128 * self.items as u128 / self.bytes as u128;
            take = take.min(usize::try_from(fitting).unwrap_or(usize::MAX).max(1));
        }
        self.split_front_decoded(take)
    }

    /// Makes sure the first chunk is within the limits, cutting it into requests that are if
    /// it is not. False if it could not be cut (never for bytes that passed the scan), and
    /// the caller cuts decoded data instead.
    fn cut_first_chunk(&mut self, max_items: usize, max_bytes: usize) -> bool {
        let Data::Encoded(e) = &*self.data else {
            return false;
        };
        let Some(first) = e.chunks.first() else {
            return false;
        };
        if first.items <= max_items && first.request.len() <= max_bytes {
            return true;
        }
        let Some(pieces) = cut_request(S::KIND, &first.request, max_items, max_bytes) else {
            tracing::error!(
                bytes = first.request.len(),
                "an OTLP request that passed the protobuf check could not be cut; it is decoded \
                 to be cut instead (a bug: please report it)"
            );
            return false;
        };
        if pieces.len() < 2 {
            // One item (or metric) over the limits: nothing smaller to cut it into.
            return true;
        }
        let mut chunks = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match Chunk::scanned::<S>(Bytes::from(piece)) {
                Ok(chunk) => chunks.push(chunk),
                Err(error) => {
                    tracing::error!(%error, "a piece cut from an OTLP request does not pass the protobuf check; the request is decoded to be cut instead (a bug: please report it)");
                    return false;
                }
            }
        }
        let Data::Encoded(e) = Arc::make_mut(&mut self.data) else {
            return false;
        };
        let old = e.chunks.remove(0);
        let new_bytes: usize = chunks.iter().map(|c| c.request.len()).sum();
        e.resources =
            e.resources - old.resources + chunks.iter().map(|c| c.resources).sum::<usize>();
        e.chunks.splice(0..0, chunks);
        // Headers repeated in each piece: the batch grows by what they add.
        self.bytes = self.bytes - old.request.len().min(self.bytes) + new_bytes;
        true
    }

    /// Moves the leading whole chunks that fit the limits (at least one) into a new batch.
    fn split_chunks(&mut self, max_items: usize, max_bytes: usize) -> Batch<S> {
        let Data::Encoded(e) = &*self.data else {
            return self.split_front_decoded(max_items);
        };
        let (mut whole, mut items, mut bytes, mut decoded) = (0, 0, 0, 0);
        for chunk in &e.chunks {
            let fits = items + chunk.items <= max_items && bytes + chunk.request.len() <= max_bytes;
            if whole > 0 && !fits {
                break;
            }
            whole += 1;
            items += chunk.items;
            bytes += chunk.request.len();
            decoded += chunk.decoded;
        }
        if whole == e.chunks.len() {
            return self.take_all();
        }
        let all_decoded: usize = e.chunks.iter().map(|c| c.decoded).sum();
        let front = match Arc::make_mut(&mut self.data) {
            Data::Encoded(e) => {
                let rest = e.chunks.split_off(whole);
                let chunks = std::mem::replace(&mut e.chunks, rest);
                let resources = chunks.iter().map(|c| c.resources).sum();
                e.resources -= resources;
                // The decoded form, if any, would have to be cut too: decoded again if a
                // component asks.
                e.decoded = OnceLock::new();
                Data::Encoded(Encoded {
                    chunks,
                    resources,
                    decoded: OnceLock::new(),
                })
            }
            Data::Decoded(_) => unreachable!("matched as encoded above"),
        };
        let reserved = self.share_reserved(decoded, all_decoded);
        self.cut(front, items, bytes, reserved)
    }

    /// Splits off the share `part / whole` of the budget this batch holds, for a cut that
    /// moves that share of its data (by estimated decoded size, or items).
    fn share_reserved(&mut self, part: usize, whole: usize) -> Vec<Permit> {
        self.reserved
            .iter_mut()
            .map(|permit| {
                let share = if whole == 0 {
                    0
                } else {
                    permit.bytes() as u128 * part.min(whole) as u128 / whole as u128
                };
                permit.split_off(usize::try_from(share).unwrap_or(usize::MAX))
            })
            .collect()
    }

    /// Makes a batch of `front`, the first `front_items` items of this one, already removed
    /// from its data, holding `reserved`. Each half carries the acknowledgements of the
    /// requests whose items it holds; a request split across the cut is in both, so its
    /// sender hears back only when both halves are delivered.
    fn cut(
        &mut self,
        front: Data<S>,
        front_items: usize,
        front_bytes: usize,
        reserved: Vec<Permit>,
    ) -> Batch<S> {
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
            data: Arc::new(front),
            items: front_items,
            bytes: front_bytes,
            acks: front_acks,
            reserved,
            metadata: self.metadata.clone(),
        }
    }

    /// A copy for another fan-out branch: shares the data, adds an acknowledgement branch.
    pub fn fork(&self) -> Batch<S> {
        Batch {
            data: self.data.clone(),
            items: self.items,
            bytes: self.bytes,
            acks: self.acks.iter().map(AckSpan::branch).collect(),
            reserved: self.reserved.iter().map(Permit::duplicate).collect(),
            metadata: self.metadata.clone(),
        }
    }

    /// The client metadata of the request(s) this batch holds, if the receiver kept it.
    pub fn metadata(&self) -> Option<&ClientMetadata> {
        self.metadata.as_deref()
    }

    /// Attaches client metadata (receivers with `include_metadata`).
    pub fn with_metadata(mut self, metadata: SharedMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Replaces the metadata (a partitioned batcher keeps only its keys).
    pub fn set_metadata(&mut self, metadata: Option<SharedMetadata>) {
        self.metadata = metadata;
    }

    /// Whether some sender waits for this batch's outcome.
    pub fn has_acks(&self) -> bool {
        !self.acks.is_empty()
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

    fn proto(resources: Vec<ResourceLogs>) -> Bytes {
        Logs::into_request(resources).encode_to_vec().into()
    }

    /// Protobuf requests stay bytes through merging and whole moves, decode once when read
    /// (shared by fan-out branches), and give up their bytes when edited.
    #[test]
    fn protobuf_data_stays_encoded_until_a_component_looks_inside() {
        let mut first = Batch::<Logs>::from_proto(proto(logs(2))).unwrap();
        assert_eq!((first.items(), first.is_empty()), (2, false));
        first.merge(Batch::<Logs>::from_proto(proto(logs(3))).unwrap());
        assert_eq!(
            (first.items(), first.bytes()),
            (5, proto(logs(2)).len() + proto(logs(3)).len())
        );
        assert_eq!(first.encoded().map(|c| c.len()), Some(2));
        // The chunks concatenated are one request holding everything.
        let joined: Vec<u8> = first.encoded().unwrap().concat();
        let decoded = crate::codec::decode_proto::<Logs>(&joined).unwrap();
        assert_eq!(item_count::<Logs>(&decoded), 5);

        let whole = first.split_front(5);
        assert!(whole.encoded().is_some(), "a whole move keeps the bytes");
        let branch = whole.fork();
        assert_eq!(item_count::<Logs>(branch.resources()), 5);
        assert!(std::ptr::eq(
            branch.resources().as_ptr(),
            whole.resources().as_ptr()
        ));
        assert_eq!(whole.resources(), &decoded[..]);

        let mut edited = whole;
        edited.resources_mut().truncate(1);
        edited.recount();
        assert!(edited.encoded().is_none());
        assert_eq!(
            item_count::<Logs>(branch.resources()),
            5,
            "the branch is untouched"
        );

        // Mixing forms decodes; an empty request makes an empty batch.
        let mut mixed = Batch::<Logs>::new(logs(1), 10);
        mixed.merge(Batch::<Logs>::from_proto(proto(logs(2))).unwrap());
        assert_eq!((mixed.items(), mixed.resources().len()), (3, 2));
        let mut mixed = Batch::<Logs>::from_proto(proto(logs(2))).unwrap();
        mixed.merge(Batch::<Logs>::new(logs(1), 10));
        assert_eq!((mixed.items(), mixed.resources().len()), (3, 2));
        let mut cut = Batch::<Logs>::from_proto(proto(logs(4))).unwrap();
        let front = cut.split_front(1);
        assert_eq!((front.items(), cut.items()), (1, 3));
        assert!(Batch::<Logs>::from_proto(Bytes::new()).unwrap().is_empty());
        assert!(Batch::<Logs>::from_proto(Bytes::from_static(b"\x0a\x05")).is_err());
        // A resource without items is not an empty batch.
        assert!(
            !Batch::<Logs>::from_proto(proto(vec![ResourceLogs::default()]))
                .unwrap()
                .is_empty()
        );
    }

    /// A request larger than the caps is cut as bytes: every piece within the caps, still
    /// encoded, nothing decoded, and the acknowledgement answered once every piece is through.
    #[tokio::test]
    async fn a_request_over_the_caps_is_cut_without_decoding_it() {
        let (ack, waiter) = Ack::new();
        let request = proto(logs(1000));
        let mut batch = Batch::<Logs>::from_proto(request.clone())
            .unwrap()
            .with_ack(ack);
        let mut pieces = Vec::new();
        while !batch.is_empty() {
            let piece = batch.split_front_within(300, 1000);
            assert!(
                piece.items() <= 300 && piece.bytes() <= 1000,
                "{} {}",
                piece.items(),
                piece.bytes()
            );
            assert!(
                piece.is_undecoded(),
                "the piece is still bytes, never decoded"
            );
            pieces.push(piece);
        }
        let items: usize = pieces.iter().map(Batch::items).sum();
        assert_eq!(items, 1000);
        assert!(pieces.len() >= 2);
        let joined: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.encoded().unwrap())
            .flat_map(|c| c.to_vec())
            .collect();
        assert_eq!(
            item_count::<Logs>(&crate::codec::decode_proto::<Logs>(&joined).unwrap()),
            1000
        );
        let last = pieces.pop().unwrap();
        for piece in pieces {
            piece.settle(&Ok(()));
        }
        let mut waiter = waiter;
        assert!(futures::poll!(&mut waiter).is_pending());
        last.settle(&Ok(()));
        assert_eq!(waiter.await, Ok(()));

        // By items alone (`split_front`), too.
        let mut batch = Batch::<Logs>::from_proto(request).unwrap();
        let front = batch.split_front(10);
        assert_eq!((front.items(), batch.items()), (10, 990));
        assert!(front.encoded().is_some() && batch.encoded().is_some());
    }

    /// The budget held for the decoded form goes with the data: shared out by cuts, added up
    /// by merges, taken again by a copy for another branch, and given back when the data is
    /// gone, whatever became of it.
    #[test]
    fn the_budget_held_for_decoded_data_goes_with_it() {
        let admission = crate::admission::Admission::new(1 << 30);
        let held = |batch: &mut Batch<Logs>| {
            let estimate = batch.decoded_estimate().unwrap();
            batch.hold(admission.reserve(estimate).unwrap());
            estimate
        };
        let mut first = Batch::<Logs>::from_proto(proto(logs(100))).unwrap();
        let mut second = Batch::<Logs>::from_proto(proto(logs(50))).unwrap();
        let total = held(&mut first) + held(&mut second);
        assert_eq!(admission.in_flight(), total);
        first.merge(second);
        assert_eq!(first.reserved_bytes(), total);
        let front = first.split_front_within(30, usize::MAX);
        assert_eq!(front.items(), 30);
        assert!(front.reserved_bytes() > 0 && first.reserved_bytes() > 0);
        assert_eq!(front.reserved_bytes() + first.reserved_bytes(), total);
        let copy = front.fork();
        assert_eq!(admission.in_flight(), total + front.reserved_bytes());
        drop(copy);
        let _ = front.resources();
        drop(front);
        let decoded = first.split_front(10);
        drop(first);
        assert!(admission.in_flight() > 0, "the rest is still held");
        drop(decoded);
        assert_eq!(admission.in_flight(), 0);
    }

    /// Reading both before merging (a processor that inspects but does not edit) keeps the
    /// decoded form instead of decoding again later.
    #[test]
    fn merging_decoded_protobuf_batches_keeps_both_forms() {
        let first = Batch::<Logs>::from_proto(proto(logs(2))).unwrap();
        let second = Batch::<Logs>::from_proto(proto(logs(1))).unwrap();
        let _ = (first.resources(), second.resources());
        let mut first = first;
        first.merge(second);
        assert_eq!(first.encoded().map(|c| c.len()), Some(2));
        match &*first.data {
            Data::Encoded(e) => assert_eq!(e.decoded.get().map(|r| r.len()), Some(2)),
            Data::Decoded(_) => panic!("lost the encoded form"),
        }
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
