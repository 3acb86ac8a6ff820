//! Checking OTLP protobuf without decoding it: one pass over the bytes that accepts exactly
//! what `prost` would decode into `opentelemetry-proto`'s types, and counts resources and
//! items on the way. A batch whose request passed this check can travel as its bytes and be
//! decoded only if a component looks inside (see `Batch`); when none does, the collector
//! never allocates for the request's contents.
//!
//! "Exactly what prost accepts" is the contract: a lazily decoded batch must not fail to
//! decode after its sender was told it was accepted. The rules below follow prost 0.14:
//! every known field must arrive with its wire type (repeated numbers also packed), strings
//! must be UTF-8, varints at most 10 bytes, a length must stay inside its message, groups of
//! unknown fields must close with their own tag, and messages and groups nest at most 100
//! deep, counted as prost counts them. The unit tests compare the two on mutated input.

use crate::signal::SignalKind;

/// What a check found: the number of `Resource*` messages and of items (spans, metric data
/// points, log records), counted as the decoded data would count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub resources: usize,
    pub items: usize,
}

/// Why bytes are not a valid OTLP export request: what is wrong, where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem} (field {field} of {message}, at byte {offset})")]
pub struct WireError {
    problem: Problem,
    field: u32,
    message: &'static str,
    offset: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum Problem {
    #[error("a varint is cut off or longer than 10 bytes")]
    Varint,
    #[error("a field key is larger than 32 bits")]
    Key,
    #[error("wire type {0} does not exist")]
    UnknownWireType(u8),
    #[error("field number 0 is not allowed")]
    FieldZero,
    #[error("wire type {got} where the field has wire type {want}")]
    WrongWireType { got: u8, want: u8 },
    #[error("the field runs past the end of its message")]
    Truncated,
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("packed fixed-width values do not fill their field")]
    PackedWidth,
    #[error("an end-group tag without its start")]
    EndGroup,
    #[error("messages nest more than 100 deep")]
    TooDeep,
}

/// Declares the messages once: the enum, the list of all of them (in declaration order, so a
/// message's index is its discriminant) and their protobuf names for error messages.
macro_rules! messages {
    ($($msg:ident => $name:literal,)*) => {
        /// The messages of the three OTLP export requests.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        enum Msg {
            $($msg,)*
        }

        const ALL_MESSAGES: &[Msg] = &[$(Msg::$msg,)*];

        fn message_name(msg: Msg) -> &'static str {
            match msg {
                $(Msg::$msg => $name,)*
            }
        }
    };
}

messages! {
    TraceRequest => "ExportTraceServiceRequest",
    MetricsRequest => "ExportMetricsServiceRequest",
    LogsRequest => "ExportLogsServiceRequest",
    ResourceSpans => "ResourceSpans",
    ScopeSpans => "ScopeSpans",
    Span => "Span",
    SpanEvent => "Span.Event",
    SpanLink => "Span.Link",
    Status => "Status",
    ResourceMetrics => "ResourceMetrics",
    ScopeMetrics => "ScopeMetrics",
    Metric => "Metric",
    Gauge => "Gauge",
    Sum => "Sum",
    Histogram => "Histogram",
    ExponentialHistogram => "ExponentialHistogram",
    Summary => "Summary",
    NumberDataPoint => "NumberDataPoint",
    HistogramDataPoint => "HistogramDataPoint",
    ExponentialHistogramDataPoint => "ExponentialHistogramDataPoint",
    Buckets => "ExponentialHistogramDataPoint.Buckets",
    SummaryDataPoint => "SummaryDataPoint",
    ValueAtQuantile => "SummaryDataPoint.ValueAtQuantile",
    Exemplar => "Exemplar",
    ResourceLogs => "ResourceLogs",
    ScopeLogs => "ScopeLogs",
    LogRecord => "LogRecord",
    Resource => "Resource",
    EntityRef => "EntityRef",
    InstrumentationScope => "InstrumentationScope",
    KeyValue => "KeyValue",
    AnyValue => "AnyValue",
    ArrayValue => "ArrayValue",
    KeyValueList => "KeyValueList",
}

/// How a known field is encoded.
#[derive(Clone, Copy, Debug)]
enum Field {
    /// int32/64, uint32/64, sint32, bool, enum.
    Varint,
    /// fixed64, sfixed64, double.
    Fixed64,
    /// fixed32.
    Fixed32,
    Str,
    Bytes,
    /// repeated fixed64 or double: one value per field, or packed.
    RepeatedFixed64,
    /// repeated uint64: one value per field, or packed.
    RepeatedVarint,
    Message(Msg),
    /// A message that is one item (span, log record, data point).
    Item(Msg),
    /// One of the `data` oneof of `Metric`: its items are the metric's, but only those of
    /// the variant that came last count, as decoding replaces a different variant.
    MetricData(Msg),
}

impl Field {
    /// Whether prost decodes this field from the wire type.
    const fn accepts(self, wire: u8) -> bool {
        match self {
            Field::RepeatedFixed64 => wire == WIRE_FIXED64 || wire == WIRE_LEN,
            Field::RepeatedVarint => wire == WIRE_VARINT || wire == WIRE_LEN,
            _ => wire == self.wire(),
        }
    }

    /// The wire type an error names as expected (the unpacked one for repeated numbers).
    const fn wire(self) -> u8 {
        match self {
            Field::Varint | Field::RepeatedVarint => WIRE_VARINT,
            Field::Fixed64 | Field::RepeatedFixed64 => WIRE_FIXED64,
            Field::Fixed32 => WIRE_FIXED32,
            Field::Str
            | Field::Bytes
            | Field::Message(_)
            | Field::Item(_)
            | Field::MetricData(_) => WIRE_LEN,
        }
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

/// prost's recursion limit.
const DEPTH_LIMIT: u32 = 100;

/// [`schema`] as a table built at compile time, keyed by the first byte of a field's key.
/// Entries are there only for one-byte keys (field numbers 1 to 15, nearly every field sent)
/// whose wire type the field accepts, so one load both reads the key and checks it. Every
/// other key takes the full path ([`schema`] itself), which also says what is wrong with it.
static BY_KEY: [[Option<Field>; 256]; ALL_MESSAGES.len()] = {
    let mut table = [[None; 256]; ALL_MESSAGES.len()];
    let mut m = 0;
    while m < ALL_MESSAGES.len() {
        let mut key = 0;
        while key < 128 {
            let (tag, wire) = (key >> 3, (key & 7) as u8);
            if let Some(kind) = schema(ALL_MESSAGES[m], tag as u32)
                && kind.accepts(wire)
            {
                table[ALL_MESSAGES[m] as usize][key] = Some(kind);
            }
            key += 1;
        }
        m += 1;
    }
    table
};

const fn schema(msg: Msg, tag: u32) -> Option<Field> {
    use Field::*;
    use Msg as M;
    let f = match (msg, tag) {
        (M::TraceRequest, 1) => Message(M::ResourceSpans),
        (M::MetricsRequest, 1) => Message(M::ResourceMetrics),
        (M::LogsRequest, 1) => Message(M::ResourceLogs),

        (M::ResourceSpans, 1) | (M::ResourceMetrics, 1) | (M::ResourceLogs, 1) => {
            Message(M::Resource)
        }
        (M::ResourceSpans, 2) => Message(M::ScopeSpans),
        (M::ResourceMetrics, 2) => Message(M::ScopeMetrics),
        (M::ResourceLogs, 2) => Message(M::ScopeLogs),
        (M::ResourceSpans | M::ResourceMetrics | M::ResourceLogs, 3) => Str,

        (M::ScopeSpans | M::ScopeMetrics | M::ScopeLogs, 1) => Message(M::InstrumentationScope),
        (M::ScopeSpans, 2) => Item(M::Span),
        (M::ScopeMetrics, 2) => Message(M::Metric),
        (M::ScopeLogs, 2) => Item(M::LogRecord),
        (M::ScopeSpans | M::ScopeMetrics | M::ScopeLogs, 3) => Str,

        (M::Span, 1 | 2 | 4) => Bytes,
        (M::Span, 3 | 5) => Str,
        (M::Span, 6 | 10 | 12 | 14) => Varint,
        (M::Span, 7 | 8) => Fixed64,
        (M::Span, 9) => Message(M::KeyValue),
        (M::Span, 11) => Message(M::SpanEvent),
        (M::Span, 13) => Message(M::SpanLink),
        (M::Span, 15) => Message(M::Status),
        (M::Span, 16) => Fixed32,
        (M::SpanEvent, 1) => Fixed64,
        (M::SpanEvent, 2) => Str,
        (M::SpanEvent, 3) => Message(M::KeyValue),
        (M::SpanEvent, 4) => Varint,
        (M::SpanLink, 1 | 2) => Bytes,
        (M::SpanLink, 3) => Str,
        (M::SpanLink, 4) => Message(M::KeyValue),
        (M::SpanLink, 5) => Varint,
        (M::SpanLink, 6) => Fixed32,
        (M::Status, 2) => Str,
        (M::Status, 3) => Varint,

        (M::Metric, 1..=3) => Str,
        (M::Metric, 5) => MetricData(M::Gauge),
        (M::Metric, 7) => MetricData(M::Sum),
        (M::Metric, 9) => MetricData(M::Histogram),
        (M::Metric, 10) => MetricData(M::ExponentialHistogram),
        (M::Metric, 11) => MetricData(M::Summary),
        (M::Metric, 12) => Message(M::KeyValue),
        (M::Gauge | M::Sum, 1) => Item(M::NumberDataPoint),
        (M::Histogram, 1) => Item(M::HistogramDataPoint),
        (M::ExponentialHistogram, 1) => Item(M::ExponentialHistogramDataPoint),
        (M::Summary, 1) => Item(M::SummaryDataPoint),
        (M::Sum, 2 | 3) | (M::Histogram | M::ExponentialHistogram, 2) => Varint,
        (M::NumberDataPoint, 7) => Message(M::KeyValue),
        (M::NumberDataPoint, 2 | 3 | 4 | 6) => Fixed64,
        (M::NumberDataPoint, 5) => Message(M::Exemplar),
        (M::NumberDataPoint, 8) => Varint,
        (M::HistogramDataPoint, 9) => Message(M::KeyValue),
        (M::HistogramDataPoint, 2..=5 | 11 | 12) => Fixed64,
        (M::HistogramDataPoint, 6 | 7) => RepeatedFixed64,
        (M::HistogramDataPoint, 8) => Message(M::Exemplar),
        (M::HistogramDataPoint, 10) => Varint,
        (M::ExponentialHistogramDataPoint, 1) => Message(M::KeyValue),
        (M::ExponentialHistogramDataPoint, 2..=5 | 7 | 12..=14) => Fixed64,
        (M::ExponentialHistogramDataPoint, 6 | 10) => Varint,
        (M::ExponentialHistogramDataPoint, 8 | 9) => Message(M::Buckets),
        (M::ExponentialHistogramDataPoint, 11) => Message(M::Exemplar),
        (M::Buckets, 1) => Varint,
        (M::Buckets, 2) => RepeatedVarint,
        (M::SummaryDataPoint, 7) => Message(M::KeyValue),
        (M::SummaryDataPoint, 2..=5) => Fixed64,
        (M::SummaryDataPoint, 6) => Message(M::ValueAtQuantile),
        (M::SummaryDataPoint, 8) => Varint,
        (M::ValueAtQuantile, 1 | 2) => Fixed64,
        (M::Exemplar, 7) => Message(M::KeyValue),
        (M::Exemplar, 2 | 3 | 6) => Fixed64,
        (M::Exemplar, 4 | 5) => Bytes,

        (M::LogRecord, 1 | 11) => Fixed64,
        (M::LogRecord, 2 | 7) => Varint,
        (M::LogRecord, 3 | 12) => Str,
        (M::LogRecord, 5) => Message(M::AnyValue),
        (M::LogRecord, 6) => Message(M::KeyValue),
        (M::LogRecord, 8) => Fixed32,
        (M::LogRecord, 9 | 10) => Bytes,

        (M::Resource, 1) => Message(M::KeyValue),
        (M::Resource, 2) => Varint,
        (M::Resource, 3) => Message(M::EntityRef),
        (M::EntityRef, 1..=4) => Str,
        (M::InstrumentationScope, 1 | 2) => Str,
        (M::InstrumentationScope, 3) => Message(M::KeyValue),
        (M::InstrumentationScope, 4) => Varint,
        (M::KeyValue, 1) => Str,
        (M::KeyValue, 2) => Message(M::AnyValue),
        (M::KeyValue, 3) => Varint,
        (M::AnyValue, 1) => Str,
        (M::AnyValue, 2 | 3 | 8) => Varint,
        (M::AnyValue, 4) => Fixed64,
        (M::AnyValue, 5) => Message(M::ArrayValue),
        (M::AnyValue, 6) => Message(M::KeyValueList),
        (M::AnyValue, 7) => Bytes,
        (M::ArrayValue, 1) => Message(M::AnyValue),
        (M::KeyValueList, 1) => Message(M::KeyValue),
        _ => return None,
    };
    Some(f)
}

fn root(signal: SignalKind) -> Msg {
    match signal {
        SignalKind::Traces => Msg::TraceRequest,
        SignalKind::Metrics => Msg::MetricsRequest,
        SignalKind::Logs => Msg::LogsRequest,
    }
}

/// Checks that `bytes` is an OTLP export request of `signal` that decodes, and counts it.
pub fn scan(signal: SignalKind, bytes: &[u8]) -> Result<Scanned, WireError> {
    scan_boxed(signal, bytes).map_err(|e| *e)
}

fn scan_boxed(signal: SignalKind, bytes: &[u8]) -> Scan<Scanned> {
    let scanner = Scanner { base: bytes };
    let msg = root(signal);
    let mut at = Cursor { buf: bytes, pos: 0 };
    let mut scanned = Scanned::default();
    while !at.done() {
        let (tag, wire, kind) = scanner.field_long(&mut at, msg)?;
        match kind {
            Some(Field::Message(resource)) => {
                let body = scanner.delimited(&mut at, msg, tag)?;
                // The request's own fields have the whole budget; each message below it one
                // less.
                scanned.items += scanner.message(resource, body, DEPTH_LIMIT - 1)?;
                scanned.resources += 1;
            }
            _ => scanner.skip(&mut at, wire, tag, DEPTH_LIMIT, msg)?,
        }
    }
    Ok(scanned)
}

type Scan<T> = Result<T, Box<WireError>>;

/// A position in the bytes of one message: reading stops at the message's end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Keys and lengths are nearly always one byte: that case stays inline.
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        match self.buf.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Some(u64::from(byte))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // The tenth byte holds the 64th bit only.
                return (i < 9 || byte < 2).then_some(value);
            }
        }
        None
    }

    #[inline(always)]
    fn advance(&mut self, width: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(width)?)?;
        self.pos += width;
        Some(bytes)
    }
}

struct Scanner<'a> {
    base: &'a [u8],
}

impl<'a> Scanner<'a> {
    /// Where an error is, given as a position in a sub-slice of the request: the offset is
    /// worked out here, on the error path only.
    #[cold]
    #[inline(never)]
    fn fail(
        &self,
        problem: Problem,
        msg: Msg,
        field: u32,
        buf: &[u8],
        pos: usize,
    ) -> Box<WireError> {
        let start = (buf.as_ptr() as usize).saturating_sub(self.base.as_ptr() as usize);
        Box::new(WireError {
            problem,
            field,
            message: message_name(msg),
            offset: start + pos.min(buf.len()),
        })
    }

    #[inline(always)]
    fn key(&self, at: &mut Cursor<'a>, msg: Msg) -> Scan<(u32, u8)> {
        let start = at.pos;
        let key = at
            .varint()
            .ok_or_else(|| self.fail(Problem::Varint, msg, 0, at.buf, start))?;
        let Ok(key) = u32::try_from(key) else {
            return Err(self.fail(Problem::Key, msg, 0, at.buf, start));
        };
        let wire = (key & 7) as u8;
        let tag = key >> 3;
        if wire > WIRE_FIXED32 {
            return Err(self.fail(Problem::UnknownWireType(wire), msg, tag, at.buf, start));
        }
        if tag == 0 {
            return Err(self.fail(Problem::FieldZero, msg, 0, at.buf, start));
        }
        Ok((tag, wire))
    }

    #[inline(always)]
    fn varint(&self, at: &mut Cursor<'a>, msg: Msg, tag: u32) -> Scan<u64> {
        let start = at.pos;
        at.varint()
            .ok_or_else(|| self.fail(Problem::Varint, msg, tag, at.buf, start))
    }

    #[inline(always)]
    fn fixed(&self, at: &mut Cursor<'a>, width: usize, msg: Msg, tag: u32) -> Scan<()> {
        match at.advance(width) {
            Some(_) => Ok(()),
            None => Err(self.fail(Problem::Truncated, msg, tag, at.buf, at.pos)),
        }
    }

    /// A length-delimited field's bytes (the key, already read, said so).
    #[inline(always)]
    fn delimited(&self, at: &mut Cursor<'a>, msg: Msg, tag: u32) -> Scan<&'a [u8]> {
        let start = at.pos;
        let len = self.varint(at, msg, tag)?;
        usize::try_from(len)
            .ok()
            .and_then(|len| at.advance(len))
            .ok_or_else(|| self.fail(Problem::Truncated, msg, tag, at.buf, start))
    }

    /// A key that is not one byte naming a known field with a wire type it accepts: read in
    /// full. `None` means an unknown field, which the caller skips.
    #[inline(never)]
    fn field_long(&self, at: &mut Cursor<'a>, msg: Msg) -> Scan<(u32, u8, Option<Field>)> {
        let (tag, wire) = self.key(at, msg)?;
        match schema(msg, tag) {
            Some(kind) if kind.accepts(wire) => Ok((tag, wire, Some(kind))),
            Some(kind) => {
                let problem = Problem::WrongWireType {
                    got: wire,
                    want: kind.wire(),
                };
                Err(self.fail(problem, msg, tag, at.buf, at.pos))
            }
            None => Ok((tag, wire, None)),
        }
    }

    /// Checks the fields of one message; returns its items. `budget` is the nesting prost
    /// still allows below this message (its `DecodeContext`).
    fn message(&self, msg: Msg, bytes: &'a [u8], budget: u32) -> Scan<usize> {
        let mut at = Cursor { buf: bytes, pos: 0 };
        let mut items = 0;
        let mut data_items = 0;
        let mut data_variant = None;
        let by_key = &BY_KEY[msg as usize];
        while let Some(&byte) = at.buf.get(at.pos) {
            // One load reads and checks a one-byte key (nearly every key); from here on the
            // wire type is one the field accepts.
            let (kind, wire, tag) = match by_key[usize::from(byte)] {
                Some(kind) => {
                    at.pos += 1;
                    (kind, byte & 7, u32::from(byte >> 3))
                }
                None => match self.field_long(&mut at, msg)? {
                    (tag, wire, Some(kind)) => (kind, wire, tag),
                    (tag, wire, None) => {
                        self.skip(&mut at, wire, tag, budget, msg)?;
                        continue;
                    }
                },
            };
            match kind {
                Field::Varint => {
                    self.varint(&mut at, msg, tag)?;
                }
                Field::Fixed64 => self.fixed(&mut at, 8, msg, tag)?,
                Field::Fixed32 => self.fixed(&mut at, 4, msg, tag)?,
                Field::Str => {
                    let text = self.delimited(&mut at, msg, tag)?;
                    if !is_utf8(text) {
                        return Err(self.fail(Problem::NotUtf8, msg, tag, text, 0));
                    }
                }
                Field::Bytes => {
                    self.delimited(&mut at, msg, tag)?;
                }
                Field::RepeatedFixed64 => {
                    if wire == WIRE_LEN {
                        let packed = self.delimited(&mut at, msg, tag)?;
                        if packed.len() % 8 != 0 {
                            return Err(self.fail(Problem::PackedWidth, msg, tag, packed, 0));
                        }
                    } else {
                        self.fixed(&mut at, 8, msg, tag)?;
                    }
                }
                Field::RepeatedVarint => {
                    if wire == WIRE_LEN {
                        let packed = self.delimited(&mut at, msg, tag)?;
                        let mut values = Cursor {
                            buf: packed,
                            pos: 0,
                        };
                        while !values.done() {
                            self.varint(&mut values, msg, tag)?;
                        }
                    } else {
                        self.varint(&mut at, msg, tag)?;
                    }
                }
                Field::Message(inner) | Field::Item(inner) | Field::MetricData(inner) => {
                    let start = at.pos;
                    let body = self.delimited(&mut at, msg, tag)?;
                    if budget == 0 {
                        return Err(self.fail(Problem::TooDeep, msg, tag, at.buf, start));
                    }
                    let plain = match inner {
                        // Attributes hold no items, so a plain one needs no further look.
                        Msg::KeyValue => budget >= 2 && plain_attribute(body),
                        Msg::AnyValue => plain_value(body),
                        _ => false,
                    };
                    if plain {
                        continue;
                    }
                    let inner_items = self.message(inner, body, budget - 1)?;
                    match kind {
                        Field::Item(_) => items += 1,
                        Field::MetricData(variant) => {
                            if data_variant == Some(variant) {
                                data_items += inner_items;
                            } else {
                                data_variant = Some(variant);
                                data_items = inner_items;
                            }
                        }
                        _ => items += inner_items,
                    }
                }
            }
        }
        Ok(items + data_items)
    }

    /// Skips an unknown field as prost does, groups included.
    fn skip(&self, at: &mut Cursor<'a>, wire: u8, tag: u32, budget: u32, msg: Msg) -> Scan<()> {
        let start = at.pos;
        if budget == 0 {
            return Err(self.fail(Problem::TooDeep, msg, tag, at.buf, start));
        }
        match wire {
            WIRE_VARINT => {
                self.varint(at, msg, tag)?;
            }
            WIRE_FIXED64 => self.fixed(at, 8, msg, tag)?,
            WIRE_FIXED32 => self.fixed(at, 4, msg, tag)?,
            WIRE_LEN => {
                self.delimited(at, msg, tag)?;
            }
            WIRE_START_GROUP => loop {
                let (inner_tag, inner_wire) = self.key(at, msg)?;
                if inner_wire == WIRE_END_GROUP {
                    if inner_tag != tag {
                        return Err(self.fail(Problem::EndGroup, msg, inner_tag, at.buf, start));
                    }
                    break;
                }
                self.skip(at, inner_wire, inner_tag, budget - 1, msg)?;
            },
            _ => return Err(self.fail(Problem::EndGroup, msg, tag, at.buf, start)),
        }
        Ok(())
    }
}

/// Whether a `KeyValue`'s bytes have the shape nearly every attribute has, and are valid:
/// a UTF-8 key and a plain value ([`plain_value`]), in that order, lengths under 128. Such an
/// attribute is checked here without the general loop's two nested calls (it costs two levels
/// of nesting budget, which the caller checks); anything else, valid or not, goes through the
/// general loop, which also says what is wrong.
#[inline(always)]
fn plain_attribute(body: &[u8]) -> bool {
    let [KEY_STR, key_len @ 0..0x80, rest @ ..] = body else {
        return false;
    };
    let Some((key, rest)) = rest.split_at_checked(usize::from(*key_len)) else {
        return false;
    };
    is_utf8(key)
        && match rest {
            [] => true,
            [KEY_VALUE, value_len @ 0..0x80, value @ ..] => {
                usize::from(*value_len) == value.len() && plain_value(value)
            }
            _ => false,
        }
}

/// Whether an `AnyValue`'s bytes are empty or exactly one valid scalar: a string under 128
/// bytes, bytes, a bool, an int, a double or a string index. Arrays, maps and anything
/// unusual go through the general loop.
#[inline(always)]
fn plain_value(value: &[u8]) -> bool {
    const STRING: u8 = 1 << 3 | WIRE_LEN;
    const BOOL: u8 = 2 << 3 | WIRE_VARINT;
    const INT: u8 = 3 << 3 | WIRE_VARINT;
    const DOUBLE: u8 = 4 << 3 | WIRE_FIXED64;
    const BYTES: u8 = 7 << 3 | WIRE_LEN;
    const STRINDEX: u8 = 8 << 3 | WIRE_VARINT;
    match value {
        [] => true,
        [STRING, len @ 0..0x80, text @ ..] => usize::from(*len) == text.len() && is_utf8(text),
        [BYTES, len @ 0..0x80, bytes @ ..] => usize::from(*len) == bytes.len(),
        [DOUBLE, number @ ..] => number.len() == 8,
        [BOOL | INT | STRINDEX, number @ ..] => {
            let mut at = Cursor {
                buf: number,
                pos: 0,
            };
            at.varint().is_some() && at.done()
        }
        _ => false,
    }
}

/// The keys of `KeyValue`'s two fields: `key` (1, string) and `value` (2, message).
const KEY_STR: u8 = 1 << 3 | WIRE_LEN;
const KEY_VALUE: u8 = 2 << 3 | WIRE_LEN;

/// Attribute keys and values are short and nearly always ASCII, which is checked a word at a
/// time; the general check runs only when a byte is not ASCII.
#[inline(always)]
fn is_utf8(text: &[u8]) -> bool {
    text.is_ascii() || std::str::from_utf8(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Logs, Metrics, Signal, Traces, item_count};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint, exemplar, exponential_histogram_data_point, metric, number_data_point,
        summary_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
    use prost::Message;

    use opentelemetry_proto::tonic::common::v1::ArrayValue as Array;

    fn value(v: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    fn attributes() -> Vec<KeyValue> {
        use any_value::Value::*;
        let nested = KeyValueList {
            values: vec![KeyValue {
                key: "inner".into(),
                value: value(ArrayValue(Array {
                    values: vec![
                        AnyValue {
                            value: Some(IntValue(-3)),
                        },
                        AnyValue {
                            value: Some(BytesValue(vec![0xff, 0])),
                        },
                    ],
                })),
                key_strindex: 2,
            }],
        };
        vec![
            KeyValue {
                key: "s".into(),
                value: value(StringValue("ü-value".into())),
                ..Default::default()
            },
            KeyValue {
                key: "b".into(),
                value: value(BoolValue(true)),
                ..Default::default()
            },
            KeyValue {
                key: "d".into(),
                value: value(DoubleValue(1.5)),
                ..Default::default()
            },
            KeyValue {
                key: "kv".into(),
                value: value(KvlistValue(nested)),
                ..Default::default()
            },
            KeyValue {
                key: "idx".into(),
                value: value(StringValueStrindex(7)),
                ..Default::default()
            },
        ]
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: attributes(),
            dropped_attributes_count: 1,
            entity_refs: vec![EntityRef {
                schema_url: "u".into(),
                r#type: "service".into(),
                id_keys: vec!["service.name".into()],
                description_keys: vec!["d1".into(), "d2".into()],
            }],
        })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: "lib".into(),
            version: "1".into(),
            attributes: attributes(),
            dropped_attributes_count: 2,
        })
    }

    fn traces() -> ExportTraceServiceRequest {
        let span = |n: u8| Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            trace_state: "k=v".into(),
            parent_span_id: vec![1; 8],
            flags: 0x301,
            name: format!("span-{n}"),
            kind: 2,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: attributes(),
            dropped_attributes_count: 1,
            events: vec![span::Event {
                time_unix_nano: 3,
                name: "ev".into(),
                attributes: attributes(),
                dropped_attributes_count: 4,
            }],
            dropped_events_count: 5,
            links: vec![span::Link {
                trace_id: vec![2; 16],
                span_id: vec![3; 8],
                trace_state: "".into(),
                attributes: attributes(),
                dropped_attributes_count: 6,
                flags: 1,
            }],
            dropped_links_count: 7,
            status: Some(Status {
                message: "bad".into(),
                code: 2,
            }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: resource(),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: scope(),
                            spans: vec![span(1), span(2)],
                            schema_url: "s".into(),
                        },
                        ScopeSpans {
                            scope: None,
                            spans: vec![span(3)],
                            schema_url: String::new(),
                        },
                    ],
                    schema_url: "r".into(),
                },
                ResourceSpans::default(),
            ],
        }
    }

    fn metrics() -> ExportMetricsServiceRequest {
        let exemplars = || {
            vec![
                Exemplar {
                    filtered_attributes: attributes(),
                    time_unix_nano: 9,
                    span_id: vec![1; 8],
                    trace_id: vec![2; 16],
                    value: Some(exemplar::Value::AsDouble(0.5)),
                },
                Exemplar {
                    value: Some(exemplar::Value::AsInt(-5)),
                    ..Default::default()
                },
            ]
        };
        let number = |v| NumberDataPoint {
            attributes: attributes(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: exemplars(),
            flags: 1,
            value: Some(v),
        };
        let metric = |name: &str, data| Metric {
            name: name.into(),
            description: "d".into(),
            unit: "1".into(),
            metadata: attributes(),
            data: Some(data),
        };
        let buckets = |offset| {
            Some(exponential_histogram_data_point::Buckets {
                offset,
                bucket_counts: vec![1, 300, u64::MAX],
            })
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: vec![
                        metric(
                            "g",
                            metric::Data::Gauge(Gauge {
                                data_points: vec![
                                    number(number_data_point::Value::AsDouble(1.0)),
                                    number(number_data_point::Value::AsInt(-2)),
                                ],
                            }),
                        ),
                        metric(
                            "s",
                            metric::Data::Sum(Sum {
                                data_points: vec![number(number_data_point::Value::AsInt(3))],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "h",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    attributes: attributes(),
                                    start_time_unix_nano: 1,
                                    time_unix_nano: 2,
                                    count: 3,
                                    sum: Some(4.0),
                                    bucket_counts: vec![1, 2],
                                    explicit_bounds: vec![0.5],
                                    exemplars: exemplars(),
                                    flags: 0,
                                    min: Some(0.1),
                                    max: Some(9.0),
                                }],
                                aggregation_temporality: 1,
                            }),
                        ),
                        metric(
                            "e",
                            metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint {
                                    attributes: attributes(),
                                    count: 4,
                                    sum: Some(1.0),
                                    scale: -3,
                                    zero_count: 1,
                                    positive: buckets(-2),
                                    negative: buckets(5),
                                    flags: 1,
                                    exemplars: exemplars(),
                                    min: Some(-1.0),
                                    max: None,
                                    zero_threshold: 0.001,
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "q",
                            metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    attributes: attributes(),
                                    count: 2,
                                    sum: 3.0,
                                    quantile_values: vec![summary_data_point::ValueAtQuantile {
                                        quantile: 0.5,
                                        value: 1.0,
                                    }],
                                    flags: 0,
                                    ..Default::default()
                                }],
                            }),
                        ),
                        Metric {
                            name: "empty".into(),
                            ..Default::default()
                        },
                    ],
                    schema_url: "s".into(),
                }],
                schema_url: "r".into(),
            }],
        }
    }

    fn logs() -> ExportLogsServiceRequest {
        let record = |body| LogRecord {
            time_unix_nano: 1,
            observed_time_unix_nano: 2,
            severity_number: 9,
            severity_text: "INFO".into(),
            body,
            attributes: attributes(),
            dropped_attributes_count: 1,
            flags: 1,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            event_name: "e".into(),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: vec![
                        record(value(any_value::Value::StringValue("hello".into()))),
                        record(attributes().pop().and_then(|kv| kv.value)),
                        record(None),
                    ],
                    schema_url: "s".into(),
                }],
                schema_url: "r".into(),
            }],
        }
    }

    /// What prost makes of the bytes, in the scan's terms.
    fn decoded<S: Signal>(bytes: &[u8]) -> Option<Scanned> {
        let request = S::Request::decode(bytes).ok()?;
        let resources = S::request_resources(&request);
        Some(Scanned {
            resources: resources.len(),
            items: item_count::<S>(resources),
        })
    }

    fn agrees<S: Signal>(bytes: &[u8]) -> bool {
        scan(S::KIND, bytes).ok() == decoded::<S>(bytes)
    }

    fn assert_agrees<S: Signal>(bytes: &[u8]) {
        assert_eq!(
            scan(S::KIND, bytes).ok(),
            decoded::<S>(bytes),
            "scan and prost disagree on {bytes:02x?}: {:?}",
            scan(S::KIND, bytes)
        );
    }

    #[test]
    fn the_table_holds_every_known_field() {
        for (i, msg) in ALL_MESSAGES.iter().enumerate() {
            assert_eq!(*msg as usize, i, "ALL_MESSAGES is in declaration order");
            for key in 0..256u32 {
                let expected = schema(*msg, key >> 3)
                    .filter(|kind| key < 0x80 && kind.accepts((key & 7) as u8));
                assert_eq!(
                    format!("{:?}", BY_KEY[*msg as usize][key as usize]),
                    format!("{expected:?}"),
                    "{msg:?} key {key:#x}"
                );
            }
        }
    }

    #[test]
    fn valid_requests_are_counted_as_decoding_counts_them() {
        let t = traces().encode_to_vec();
        assert_eq!(
            scan(SignalKind::Traces, &t),
            Ok(Scanned {
                resources: 2,
                items: 3
            })
        );
        let m = metrics().encode_to_vec();
        // 2 gauge + 1 sum + 1 histogram + 1 exponential + 1 summary points; "empty" has none.
        assert_eq!(
            scan(SignalKind::Metrics, &m),
            Ok(Scanned {
                resources: 1,
                items: 6
            })
        );
        let l = logs().encode_to_vec();
        assert_eq!(
            scan(SignalKind::Logs, &l),
            Ok(Scanned {
                resources: 1,
                items: 3
            })
        );
        assert_eq!(scan(SignalKind::Logs, &[]), Ok(Scanned::default()));
        for (bytes, kind) in [(&t, "traces"), (&m, "metrics"), (&l, "logs")] {
            let _ = kind;
            assert_agrees::<Traces>(bytes);
            assert_agrees::<Metrics>(bytes);
            assert_agrees::<Logs>(bytes);
        }
    }

    /// Random damage to valid requests: the scan must accept exactly what prost accepts and
    /// count what prost decodes.
    fn mutations<S: Signal>(valid: Vec<u8>, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        // Bytes that are common keys and lengths, so damage stays plausible often enough to
        // get past the first field.
        const PLAUSIBLE: [u8; 12] = [
            0x00, 0x01, 0x02, 0x08, 0x0a, 0x0b, 0x0c, 0x12, 0x1a, 0x7f, 0x80, 0xff,
        ];
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..rng.usize(1..=3) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.usize(..bytes.len());
                match rng.u8(..6) {
                    0 => bytes[at] = rng.u8(..),
                    1 => bytes[at] = PLAUSIBLE[rng.usize(..PLAUSIBLE.len())],
                    2 => bytes[at] ^= 1 << rng.u8(..8),
                    3 => bytes.insert(at, PLAUSIBLE[rng.usize(..PLAUSIBLE.len())]),
                    4 => {
                        let end = (at + rng.usize(1..8)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    _ => bytes.truncate(at),
                }
            }
            assert_agrees::<S>(&bytes);
            accepted += usize::from(agrees::<S>(&bytes) && scan(S::KIND, &bytes).is_ok());
        }
        // Enough damage was harmless (unknown fields, changed values) to test acceptance too.
        assert!(accepted > 100, "only {accepted} mutations decoded");
    }

    #[test]
    fn damaged_traces_are_rejected_exactly_when_prost_rejects_them() {
        mutations::<Traces>(traces().encode_to_vec(), 1);
    }

    #[test]
    fn damaged_metrics_are_rejected_exactly_when_prost_rejects_them() {
        mutations::<Metrics>(metrics().encode_to_vec(), 2);
    }

    #[test]
    fn damaged_logs_are_rejected_exactly_when_prost_rejects_them() {
        mutations::<Logs>(logs().encode_to_vec(), 3);
    }

    fn key(tag: u32, wire: u8) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire)), &mut out);
        out
    }

    fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = key(tag, WIRE_LEN);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    /// A log request whose one record's body is an array nested `depth` deep.
    fn nested_body(depth: usize) -> Vec<u8> {
        let mut value = len_field(1, b"leaf"); // AnyValue.string_value
        for _ in 0..depth {
            let array = len_field(1, &value); // ArrayValue.values
            value = len_field(5, &array); // AnyValue.array_value
        }
        let record = len_field(5, &value);
        let scope = len_field(2, &record);
        let resource = len_field(2, &scope);
        len_field(1, &resource)
    }

    #[test]
    fn nesting_is_limited_where_prost_limits_it() {
        let mut deepest_accepted = None;
        for depth in 0..60 {
            let bytes = nested_body(depth);
            assert_agrees::<Logs>(&bytes);
            if scan(SignalKind::Logs, &bytes).is_ok() {
                deepest_accepted = Some(depth);
            }
        }
        // The limit is inside the range tried, so both sides of it were compared.
        let deepest = deepest_accepted.expect("shallow bodies decode");
        assert!((40..59).contains(&deepest), "{deepest}");
        let error = scan(SignalKind::Logs, &nested_body(deepest + 1)).unwrap_err();
        assert!(error.to_string().contains("nest more than 100"), "{error}");
    }

    /// A log request whose one record has one attribute whose value is a map nested `depth`
    /// deep, with a plain attribute innermost: the plain path must stop where prost stops.
    fn nested_attribute(depth: usize) -> Vec<u8> {
        let mut attribute = [len_field(1, b"k"), len_field(2, &len_field(1, b"v"))].concat();
        for _ in 0..depth {
            let map = len_field(1, &attribute); // KeyValueList.values
            attribute = [len_field(1, b"k"), len_field(2, &len_field(6, &map))].concat();
        }
        let record = len_field(6, &attribute); // LogRecord.attributes
        let scope = len_field(2, &record);
        let resource = len_field(2, &scope);
        len_field(1, &resource)
    }

    #[test]
    fn plain_attributes_are_limited_in_nesting_as_prost_limits_them() {
        let deepest = (0..40)
            .inspect(|depth| assert_agrees::<Logs>(&nested_attribute(*depth)))
            .filter(|depth| scan(SignalKind::Logs, &nested_attribute(*depth)).is_ok())
            .max()
            .expect("shallow maps decode");
        assert!((20..39).contains(&deepest), "{deepest}");
    }

    /// Attributes in the shape the plain path takes, and near it: each must be judged as
    /// prost judges it, whichever path it takes.
    #[test]
    fn attributes_near_the_plain_shape_are_judged_as_prost_judges_them() {
        let string = |text: &[u8]| len_field(1, text);
        let varint = |tag: u32, bytes: &[u8]| [key(tag, WIRE_VARINT), bytes.to_vec()].concat();
        let long = vec![b'x'; 200];
        let values: Vec<Vec<u8>> = vec![
            vec![],
            string(b"v"),
            string(b""),
            string(&long),
            string("ü".as_bytes()),
            string(&[0xff, 0xfe]),
            len_field(7, &[0xff, 0]),
            len_field(7, &long),
            varint(2, &[1]),
            varint(3, &[0xff; 9]),
            varint(
                3,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            varint(
                3,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            ),
            varint(3, &[0x80]),
            varint(8, &[7]),
            [key(4, WIRE_FIXED64), vec![0; 8]].concat(),
            [key(4, WIRE_FIXED64), vec![0; 7]].concat(),
            [key(4, WIRE_FIXED64), vec![0; 9]].concat(),
            [string(b"a"), varint(3, &[5])].concat(),
            [varint(3, &[5]), string(&[0xff])].concat(),
            key(1, WIRE_VARINT),
            vec![0x0a, 0x05, b'a'],
            vec![0x0a, 0x80, 0x01, b'a'],
        ];
        let keys: Vec<Vec<u8>> = vec![
            string(b"key"),
            string(b""),
            string(&long),
            string(&[0xc3]),
            string("ключ".as_bytes()),
            vec![0x0a, 0x03, b'k'],
        ];
        let mut accepted = 0;
        for attribute_key in &keys {
            for value in &values {
                for attribute in [
                    [attribute_key.clone(), len_field(2, value)].concat(),
                    [len_field(2, value), attribute_key.clone()].concat(),
                    attribute_key.clone(),
                    [attribute_key.clone(), len_field(2, value), varint(3, &[1])].concat(),
                ] {
                    let record = len_field(6, &attribute);
                    let bytes = len_field(1, &len_field(2, &len_field(2, &record)));
                    assert_agrees::<Logs>(&bytes);
                    // The same bytes as a log body (LogRecord.body is an AnyValue).
                    let body = len_field(5, value);
                    let bytes = len_field(1, &len_field(2, &len_field(2, &body)));
                    assert_agrees::<Logs>(&bytes);
                    accepted += usize::from(scan(SignalKind::Logs, &bytes).is_ok());
                }
            }
        }
        assert!(accepted > 50, "{accepted}");
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped_as_prost_skips_them() {
        let valid = logs().encode_to_vec();
        let group = |tag: u32, inner: &[u8], end_tag: u32| {
            let mut g = key(tag, WIRE_START_GROUP);
            g.extend_from_slice(inner);
            g.extend(key(end_tag, WIRE_END_GROUP));
            g
        };
        let mut cases = vec![
            [valid.clone(), key(99, WIRE_VARINT), vec![5]].concat(),
            [valid.clone(), key(99, WIRE_FIXED32), vec![1, 2, 3, 4]].concat(),
            [valid.clone(), key(99, WIRE_FIXED32), vec![1, 2, 3]].concat(),
            [valid.clone(), key(99, WIRE_FIXED64), vec![0; 8]].concat(),
            [valid.clone(), len_field(99, b"xyz")].concat(),
            [valid.clone(), group(99, &[], 99)].concat(),
            [valid.clone(), group(99, &key(3, WIRE_VARINT), 99)].concat(),
            [
                valid.clone(),
                group(99, &[key(3, WIRE_VARINT), vec![1]].concat(), 99),
            ]
            .concat(),
            [valid.clone(), group(99, &group(4, &[], 4), 99)].concat(),
            [valid.clone(), group(99, &[], 98)].concat(),
            [valid.clone(), group(99, &group(4, &[], 5), 99)].concat(),
            [valid.clone(), key(99, WIRE_END_GROUP)].concat(),
            [valid.clone(), key(99, 6)].concat(),
            [valid.clone(), key(1, WIRE_START_GROUP)].concat(),
            [valid.clone(), vec![0x00]].concat(),
            // Known fields with the wrong wire type.
            [valid.clone(), key(1, WIRE_VARINT), vec![1]].concat(),
            len_field(1, &[key(3, WIRE_VARINT), vec![1]].concat()),
            len_field(
                1,
                &len_field(
                    2,
                    &len_field(2, &[key(1, WIRE_FIXED32), vec![0; 4]].concat()),
                ),
            ),
            // A string that is not UTF-8, and one that is.
            len_field(1, &len_field(3, &[0xc3, 0x28])),
            len_field(1, &len_field(3, "é".as_bytes())),
            // An eleven-byte varint and a ten-byte one that overflows 64 bits.
            [key(99, WIRE_VARINT), vec![0x80; 10], vec![0]].concat(),
            [key(99, WIRE_VARINT), vec![0xff; 9], vec![0x02]].concat(),
            [key(99, WIRE_VARINT), vec![0xff; 9], vec![0x01]].concat(),
        ];
        // Groups nested past the depth limit.
        let mut deep = Vec::new();
        for _ in 0..120 {
            deep = group(7, &deep, 7);
        }
        cases.push(deep.clone());
        cases.push(len_field(1, &deep));
        for case in &cases {
            assert_agrees::<Logs>(case);
            assert_agrees::<Traces>(case);
            assert_agrees::<Metrics>(case);
        }
    }

    #[test]
    fn repeated_numbers_are_accepted_packed_and_unpacked() {
        let point = |fields: &[u8]| {
            let point = len_field(1, fields); // Histogram.data_points
            let metric = len_field(9, &point); // Metric.histogram
            let scope = len_field(2, &metric);
            let resource = len_field(2, &scope);
            len_field(1, &resource)
        };
        let exp_point = |buckets: &[u8]| {
            let b = len_field(8, buckets); // ExponentialHistogramDataPoint.positive
            let point = len_field(1, &b);
            let metric = len_field(10, &point);
            let scope = len_field(2, &metric);
            let resource = len_field(2, &scope);
            len_field(1, &resource)
        };
        let cases = [
            point(
                &[
                    key(6, WIRE_FIXED64),
                    vec![1; 8],
                    key(6, WIRE_FIXED64),
                    vec![2; 8],
                ]
                .concat(),
            ),
            point(&len_field(6, &[0; 16])),
            point(&len_field(6, &[0; 15])),
            point(&len_field(7, &[])),
            point(&[key(7, WIRE_VARINT), vec![1]].concat()),
            exp_point(&[key(2, WIRE_VARINT), vec![0x96, 0x01]].concat()),
            exp_point(&len_field(2, &[0x96, 0x01, 0x05])),
            exp_point(&len_field(2, &[0x96, 0x01, 0x85])),
            exp_point(&[key(2, WIRE_FIXED64), vec![0; 8]].concat()),
        ];
        for case in &cases {
            assert_agrees::<Metrics>(case);
        }
        assert!(scan(SignalKind::Metrics, &cases[1]).is_ok());
        assert!(scan(SignalKind::Metrics, &cases[2]).is_err());
    }

    #[test]
    fn a_metric_counts_the_points_of_its_last_data_variant() {
        let number_points = |n: usize| {
            let mut gauge = Vec::new();
            for _ in 0..n {
                gauge.extend(len_field(1, &[]));
            }
            gauge
        };
        // gauge{2} sum{1} gauge{3}: decoding replaces gauge by sum, then sum by a new gauge.
        let metric = [
            len_field(5, &number_points(2)),
            len_field(7, &number_points(1)),
            len_field(5, &number_points(3)),
            // The same variant twice merges: 3 + 4 points.
            len_field(5, &number_points(4)),
        ]
        .concat();
        let request = len_field(1, &len_field(2, &len_field(2, &metric)));
        assert_agrees::<Metrics>(&request);
        assert_eq!(scan(SignalKind::Metrics, &request).unwrap().items, 7);
    }
}
