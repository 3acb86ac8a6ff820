//! Cutting one OTLP export request into smaller ones without decoding it: at resource, scope
//! and item boundaries, copying bytes. Every OTLP export request has the same shape:
//! `repeated Resource* = 1`; a `Resource*` is `resource = 1`, `repeated Scope* = 2`,
//! `schema_url = 3`; a `Scope*` is `scope = 1`, `repeated <item> = 2`, `schema_url = 3`,
//! where the item is a span, a metric or a log record. Of each `Resource*` and `Scope*` a
//! piece holds items of, it carries every field but the children (so the resource or scope,
//! the schema URL and any field unknown to us), so each piece decodes to the same resources
//! and scopes with part of the items, and the pieces together hold every item once, in order.
//! Metrics are cut between metrics, never between the data points of one.

use crate::signal::SignalKind;

use super::scan::metric_points;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

/// The key of field 2 (the children of a `Resource*` or `Scope*`) and of field 1 (the
/// resources of a request), both length-delimited.
const KEY_CHILDREN: u8 = 2 << 3 | WIRE_LEN;
const KEY_RESOURCE: u8 = 1 << 3 | WIRE_LEN;

/// Cuts `request`, an export request of `signal` that passed [`super::scan`], into requests
/// of at most `max_items` items and `max_bytes` bytes each (one item larger than that, or a
/// metric with more points, is a piece of its own). Pieces are filled in order, each as full
/// as the caps allow. Fields of the request itself other than its resources (unknown to us,
/// and ignored by decoding) go with the first piece. `None` when the bytes do not have the
/// shape above, which bytes that passed the scan always have.
pub fn cut_request(
    signal: SignalKind,
    request: &[u8],
    max_items: usize,
    max_bytes: usize,
) -> Option<Vec<Vec<u8>>> {
    let mut cutter = Cutter {
        signal,
        max_items,
        max_bytes,
        pieces: Vec::new(),
        piece: Piece::default(),
    };
    let mut root_extra = Vec::new();
    let mut pos = 0;
    while pos < request.len() {
        let field = next_field(request, &mut pos)?;
        match field.body {
            Some(body) if field.tag == 1 => cutter.resource(field.raw, body)?,
            _ => root_extra.extend_from_slice(field.raw),
        }
    }
    let mut pieces = cutter.finish();
    if !root_extra.is_empty() {
        match pieces.first_mut() {
            Some(first) => first.extend_from_slice(&root_extra),
            None => pieces.push(root_extra),
        }
    }
    Some(pieces)
}

/// One field: its number, its bytes (key included), and its contents if length-delimited.
struct RawField<'a> {
    tag: u32,
    raw: &'a [u8],
    body: Option<&'a [u8]>,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn advance(buf: &[u8], pos: &mut usize, width: usize) -> Option<()> {
    let end = pos.checked_add(width)?;
    (end <= buf.len()).then(|| *pos = end)
}

/// Skips the value of a field with key (`tag`, `wire`) whose key was just read.
fn skip_value<'a>(buf: &'a [u8], pos: &mut usize, tag: u32, wire: u8) -> Option<Option<&'a [u8]>> {
    match wire {
        WIRE_VARINT => varint(buf, pos).map(|_| None),
        WIRE_FIXED64 => advance(buf, pos, 8).map(|()| None),
        WIRE_FIXED32 => advance(buf, pos, 4).map(|()| None),
        WIRE_LEN => {
            let len = usize::try_from(varint(buf, pos)?).ok()?;
            let start = *pos;
            advance(buf, pos, len)?;
            Some(Some(&buf[start..*pos]))
        }
        WIRE_START_GROUP => loop {
            let key = varint(buf, pos)?;
            let (inner_tag, inner_wire) = (u32::try_from(key >> 3).ok()?, (key & 7) as u8);
            if inner_wire == WIRE_END_GROUP {
                return (inner_tag == tag).then_some(None);
            }
            skip_value(buf, pos, inner_tag, inner_wire)?;
        },
        _ => None,
    }
}

fn next_field<'a>(buf: &'a [u8], pos: &mut usize) -> Option<RawField<'a>> {
    let start = *pos;
    let key = varint(buf, pos)?;
    let (tag, wire) = (u32::try_from(key >> 3).ok()?, (key & 7) as u8);
    let body = skip_value(buf, pos, tag, wire)?;
    Some(RawField {
        tag,
        raw: &buf[start..*pos],
        body: body.filter(|_| wire == WIRE_LEN),
    })
}

/// The fields of a message other than its children (field 2), concatenated: what a piece
/// repeats of a resource or scope it holds part of.
fn header(body: &[u8]) -> Option<Vec<u8>> {
    let mut header = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let field = next_field(body, &mut pos)?;
        if field.tag != 2 || field.body.is_none() {
            header.extend_from_slice(field.raw);
        }
    }
    Some(header)
}

/// The children (field 2) of a message, one by one: read as they are needed, never all
/// held at once (half a million empty spans are a megabyte).
fn children(body: &[u8]) -> impl Iterator<Item = Option<RawField<'_>>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < body.len() {
            let Some(field) = next_field(body, &mut pos) else {
                // Stops the walk; the caller sees the `None`.
                pos = body.len();
                return Some(None);
            };
            if field.tag == 2 && field.body.is_some() {
                return Some(Some(field));
            }
        }
        None
    })
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Bytes of a length-delimited field with a one-byte key and `len` bytes of contents.
fn field_len(len: usize) -> usize {
    1 + varint_len(len) + len
}

fn put_field(out: &mut Vec<u8>, key: u8, body: &[u8]) {
    out.push(key);
    let mut n = body.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(body);
}

/// The piece being filled: finished resources, and the contents of the resource and scope it
/// is adding items to, if any, with whether anything went into them (a resource or scope
/// reopened for the next piece but left empty there is dropped, not sent as an extra empty
/// one).
#[derive(Default)]
struct Piece {
    done: Vec<u8>,
    resource: Option<Vec<u8>>,
    resource_filled: bool,
    scope: Option<Vec<u8>>,
    scope_filled: bool,
    items: usize,
}

impl Piece {
    /// Its size once `extra` more bytes are in the innermost open message.
    fn size_with(&self, extra: usize) -> usize {
        let scope = self.scope.as_ref().map(|s| field_len(s.len() + extra));
        let resource = self
            .resource
            .as_ref()
            .map(|r| field_len(r.len() + scope.unwrap_or(extra)));
        self.done.len() + resource.unwrap_or(extra)
    }

    fn close_scope(&mut self) {
        if let (Some(scope), Some(resource)) = (self.scope.take(), self.resource.as_mut())
            && self.scope_filled
        {
            put_field(resource, KEY_CHILDREN, &scope);
            self.resource_filled = true;
        }
        self.scope_filled = false;
    }

    fn close(&mut self) {
        self.close_scope();
        if let Some(resource) = self.resource.take()
            && self.resource_filled
        {
            put_field(&mut self.done, KEY_RESOURCE, &resource);
        }
        self.resource_filled = false;
    }

    /// Whether nothing has gone into it yet: then even what does not fit goes in, alone.
    fn is_empty(&self) -> bool {
        self.done.is_empty() && !self.resource_filled && !self.scope_filled
    }
}

struct Cutter {
    signal: SignalKind,
    max_items: usize,
    max_bytes: usize,
    pieces: Vec<Vec<u8>>,
    piece: Piece,
}

impl Cutter {
    fn fits(&self, items: usize, extra: usize) -> bool {
        self.piece.items.saturating_add(items) <= self.max_items
            && self.piece.size_with(extra) <= self.max_bytes
    }

    /// Ends the piece being filled, if anything is in it, and starts another in the same
    /// resource and scope (their headers, none of their children yet).
    fn next_piece(&mut self, resource_header: Option<&[u8]>, scope_header: Option<&[u8]>) {
        if self.piece.is_empty() {
            return;
        }
        self.piece.close();
        self.pieces.push(std::mem::take(&mut self.piece.done));
        self.piece.items = 0;
        self.piece.resource = resource_header.map(<[u8]>::to_vec);
        self.piece.scope = scope_header.map(<[u8]>::to_vec);
    }

    fn item_count(&self, item: &[u8]) -> Option<usize> {
        match self.signal {
            SignalKind::Metrics => metric_points(item).ok(),
            SignalKind::Traces | SignalKind::Logs => Some(1),
        }
    }

    fn scope_items(&self, scope: &[u8]) -> Option<usize> {
        children(scope).try_fold(0usize, |sum, item| {
            Some(sum + self.item_count(item?.body?)?)
        })
    }

    fn resource(&mut self, raw: &[u8], body: &[u8]) -> Option<()> {
        self.piece.close();
        let mut scopes = 0;
        let mut items = 0;
        for scope in children(body) {
            scopes += 1;
            items += self.scope_items(scope?.body?)?;
        }
        if !self.fits(items, raw.len()) {
            if scopes > 0 {
                return self.cut_resource(body);
            }
            // Nothing to cut it at: whole, in a piece of its own.
            self.next_piece(None, None);
        }
        self.piece.done.extend_from_slice(raw);
        self.piece.items += items;
        Some(())
    }

    fn cut_resource(&mut self, body: &[u8]) -> Option<()> {
        let resource_header = header(body)?;
        self.piece.resource = Some(resource_header.clone());
        for scope in children(body) {
            let scope = scope?;
            let scope_body = scope.body?;
            let items = self.scope_items(scope_body)?;
            self.piece.close_scope();
            let has_children = children(scope_body).next().is_some();
            if !has_children || self.fits(items, scope.raw.len()) {
                if !self.fits(items, scope.raw.len()) {
                    self.next_piece(Some(&resource_header), None);
                }
                self.piece.resource.as_mut()?.extend_from_slice(scope.raw);
                self.piece.resource_filled = true;
                self.piece.items += items;
                continue;
            }
            let scope_header = header(scope_body)?;
            self.piece.scope = Some(scope_header.clone());
            for child in children(scope_body) {
                let child = child?;
                let n = self.item_count(child.body?)?;
                if !self.fits(n, child.raw.len()) {
                    self.next_piece(Some(&resource_header), Some(&scope_header));
                }
                self.piece.scope.as_mut()?.extend_from_slice(child.raw);
                self.piece.scope_filled = true;
                self.piece.items += n;
            }
        }
        self.piece.close();
        Some(())
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.piece.close();
        if !self.piece.done.is_empty() || self.pieces.is_empty() {
            self.pieces.push(self.piece.done);
        }
        self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::random_requests;
    use crate::codec::scan;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// Each item with the resource and scope it belongs to (schema URLs included), in order:
    /// what must survive a cut.
    fn traces_flat(bytes: &[u8]) -> Vec<String> {
        let request = ExportTraceServiceRequest::decode(bytes).unwrap();
        let mut out = Vec::new();
        for r in &request.resource_spans {
            for s in &r.scope_spans {
                for span in &s.spans {
                    out.push(format!(
                        "{:?}{}{:?}{}{span:?}",
                        r.resource, r.schema_url, s.scope, s.schema_url
                    ));
                }
            }
        }
        out
    }

    fn logs_flat(bytes: &[u8]) -> Vec<String> {
        let request = ExportLogsServiceRequest::decode(bytes).unwrap();
        let mut out = Vec::new();
        for r in &request.resource_logs {
            for s in &r.scope_logs {
                for record in &s.log_records {
                    out.push(format!(
                        "{:?}{}{:?}{}{record:?}",
                        r.resource, r.schema_url, s.scope, s.schema_url
                    ));
                }
            }
        }
        out
    }

    fn metrics_flat(bytes: &[u8]) -> Vec<String> {
        let request = ExportMetricsServiceRequest::decode(bytes).unwrap();
        let mut out = Vec::new();
        for r in &request.resource_metrics {
            for s in &r.scope_metrics {
                for metric in &s.metrics {
                    out.push(format!(
                        "{:?}{}{:?}{}{metric:?}",
                        r.resource, r.schema_url, s.scope, s.schema_url
                    ));
                }
            }
        }
        out
    }

    fn flat(signal: SignalKind, bytes: &[u8]) -> Vec<String> {
        match signal {
            SignalKind::Traces => traces_flat(bytes),
            SignalKind::Logs => logs_flat(bytes),
            SignalKind::Metrics => metrics_flat(bytes),
        }
    }

    /// Cuts and checks: every piece passes the scan and keeps to the caps unless it holds a
    /// single item (or metric); and the pieces hold the items in order with their resources
    /// and scopes. Returns how many pieces there are.
    fn assert_cuts(
        signal: SignalKind,
        request: &[u8],
        max_items: usize,
        max_bytes: usize,
    ) -> usize {
        let whole = scan(signal, request).unwrap();
        let pieces = cut_request(signal, request, max_items, max_bytes).unwrap();
        let mut items = 0;
        let mut flat_pieces = Vec::new();
        for piece in &pieces {
            let scanned =
                scan(signal, piece).unwrap_or_else(|e| panic!("piece does not scan: {e}"));
            let units = flat(signal, piece).len();
            assert!(
                (scanned.items <= max_items && piece.len() <= max_bytes) || units <= 1,
                "{} items, {} bytes in a piece of {units} units, caps {max_items}/{max_bytes}",
                scanned.items,
                piece.len()
            );
            items += scanned.items;
            flat_pieces.extend(flat(signal, piece));
        }
        assert_eq!(items, whole.items);
        assert_eq!(flat_pieces, flat(signal, request));
        pieces.len()
    }

    fn empty_spans(resources: usize, scopes: usize, spans: usize) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: (0..resources)
                .map(|r| ResourceSpans {
                    schema_url: format!("r{r}"),
                    scope_spans: (0..scopes)
                        .map(|s| ScopeSpans {
                            schema_url: format!("s{s}"),
                            spans: (0..spans)
                                .map(|i| Span {
                                    name: format!("{r}-{s}-{i}"),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_request_is_cut_at_resources_scopes_and_items_within_the_caps() {
        let request = empty_spans(3, 2, 10);
        // Fits: one piece, the request as it was.
        let pieces = cut_request(SignalKind::Traces, &request, 1000, 1 << 20).unwrap();
        assert_eq!(pieces, vec![request.clone()]);
        // By items: 60 spans in pieces of 7 (the last one of 4).
        assert_eq!(assert_cuts(SignalKind::Traces, &request, 7, usize::MAX), 9);
        // Whole resources when they fit.
        assert_eq!(assert_cuts(SignalKind::Traces, &request, 20, usize::MAX), 3);
        // By bytes.
        for max_bytes in [1, 30, 64, 100, 333, 1000] {
            assert_cuts(SignalKind::Traces, &request, usize::MAX, max_bytes);
        }
        // Unknown fields of the request go with the first piece; decoding ignores them.
        let with_unknown = [request.clone(), vec![0x7a, 1, 0]].concat();
        let pieces = cut_request(SignalKind::Traces, &with_unknown, 7, usize::MAX).unwrap();
        assert!(pieces[0].ends_with(&[0x7a, 1, 0]));
        assert_cuts(SignalKind::Traces, &with_unknown, 7, usize::MAX);
        // Empty resources and scopes survive too.
        let empty = [empty_spans(2, 0, 0), empty_spans(1, 2, 0), request].concat();
        assert_cuts(SignalKind::Traces, &empty, 5, 200);
    }

    #[test]
    fn a_megabyte_of_empty_spans_is_cut_into_pieces_under_the_byte_cap() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); 600_000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let pieces = cut_request(SignalKind::Traces, &request, usize::MAX, 256 * 1024).unwrap();
        assert_eq!(pieces.len(), 5);
        let items: usize = pieces
            .iter()
            .map(|p| scan(SignalKind::Traces, p).unwrap().items)
            .sum();
        assert_eq!(items, 600_000);
        assert!(pieces.iter().all(|p| p.len() <= 256 * 1024));
    }

    /// Random requests of every signal, cut at random caps.
    #[test]
    fn random_requests_cut_into_valid_pieces_that_add_up() {
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..150 {
            let (signal, request) = match round % 3 {
                0 => (
                    SignalKind::Traces,
                    random_requests::traces(&mut rng).encode_to_vec(),
                ),
                1 => (
                    SignalKind::Metrics,
                    random_requests::metrics(&mut rng).encode_to_vec(),
                ),
                _ => (
                    SignalKind::Logs,
                    random_requests::logs(&mut rng).encode_to_vec(),
                ),
            };
            let max_items = if rng.bool() {
                usize::MAX
            } else {
                rng.usize(1..50)
            };
            let max_bytes = if rng.bool() {
                usize::MAX
            } else {
                rng.usize(1..=request.len().max(1))
            };
            assert_cuts(signal, &request, max_items, max_bytes);
        }
    }
}
