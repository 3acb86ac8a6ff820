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
//!
//! Two things are stricter than prost, as the OTLP specification and the OTel Collector are:
//! trace ids must be 16 bytes and span ids 8 bytes, or empty, wherever they appear.
//!
//! The same pass predicts what decoding would allocate ([`Scanned::decoded_bytes`]), so a
//! receiver can account for the decoded form before anything is decoded: a few bytes of
//! protobuf can stand for a struct of hundreds of bytes (an empty span is 2 bytes on the wire).

use std::cell::Cell;
use std::mem::size_of;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point::Buckets,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::signal::SignalKind;

/// What a check found: the number of `Resource*` messages and of items (spans, metric data
/// points, log records), counted as the decoded data would count them, and an upper bound on
/// the heap memory decoding it takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub resources: usize,
    pub items: usize,
    /// At least the most heap memory that decoding the request into `opentelemetry-proto`'s
    /// types holds at once, during decoding or after (see [`vec_peak`]).
    pub decoded_bytes: usize,
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
    #[error("{name} must be {want} bytes or empty, not {got} bytes")]
    IdLength {
        name: &'static str,
        want: u8,
        got: usize,
    },
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
    /// A trace id (16 bytes) or span id (8 bytes): this many bytes, or none.
    Id(u8),
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
            | Field::Id(_)
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

        (M::Span, 1) => Id(16),
        (M::Span, 2 | 4) => Id(8),
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
        (M::SpanLink, 1) => Id(16),
        (M::SpanLink, 2) => Id(8),
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
        (M::Exemplar, 4) => Id(8),
        (M::Exemplar, 5) => Id(16),

        (M::LogRecord, 1 | 11) => Fixed64,
        (M::LogRecord, 2 | 7) => Varint,
        (M::LogRecord, 3 | 12) => Str,
        (M::LogRecord, 5) => Message(M::AnyValue),
        (M::LogRecord, 6) => Message(M::KeyValue),
        (M::LogRecord, 8) => Fixed32,
        (M::LogRecord, 9) => Id(16),
        (M::LogRecord, 10) => Id(8),

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

/// The name of an id field, for errors.
const fn id_name(msg: Msg, tag: u32) -> &'static str {
    match (msg, tag) {
        (Msg::Span, 1) | (Msg::SpanLink, 1) | (Msg::LogRecord, 9) | (Msg::Exemplar, 5) => {
            "trace_id"
        }
        (Msg::Span, 4) => "parent_span_id",
        _ => "span_id",
    }
}

/// Extra bytes counted per heap allocation: allocators hand out size classes, so an
/// allocation costs somewhat more than what was asked for.
const ALLOCATION_SLACK: usize = 16;

/// What decoding a string or bytes field of `len` bytes allocates, at most: `Vec::reserve`
/// on an empty vector of bytes takes at least 8 (an empty field takes nothing, but is charged
/// all the same, which saves the scan a branch).
const BYTES_ALLOCATION: usize = 8 + ALLOCATION_SLACK;

#[inline(always)]
const fn bytes_heap(len: usize) -> usize {
    len + BYTES_ALLOCATION
}

/// What a plain attribute ([`plain_attribute`]) takes decoded, besides its own bytes (which
/// bound its key's and value's): its place in the `Vec` of attributes ([`vec_peak`]) and two
/// allocations.
const PLAIN_ATTRIBUTE: usize = 3 * size_of::<KeyValue>() + 2 * BYTES_ALLOCATION;

/// A repeated field's place among its message's repeated fields (which element counter it
/// uses) and the size of one decoded element, or `None` for a field that is not repeated.
/// Protobuf lets a repeated field's elements come in any number of runs; decoding appends
/// them all to one `Vec`, so a message's elements are counted together.
const fn repeated(msg: Msg, tag: u32) -> Option<(u8, usize)> {
    use Msg as M;
    let kv = size_of::<KeyValue>();
    let found = match (msg, tag) {
        (M::TraceRequest, 1) => (0, size_of::<ResourceSpans>()),
        (M::MetricsRequest, 1) => (0, size_of::<ResourceMetrics>()),
        (M::LogsRequest, 1) => (0, size_of::<ResourceLogs>()),
        (M::ResourceSpans, 2) => (0, size_of::<ScopeSpans>()),
        (M::ResourceMetrics, 2) => (0, size_of::<ScopeMetrics>()),
        (M::ResourceLogs, 2) => (0, size_of::<ScopeLogs>()),
        (M::ScopeSpans, 2) => (0, size_of::<Span>()),
        (M::ScopeMetrics, 2) => (0, size_of::<Metric>()),
        (M::ScopeLogs, 2) => (0, size_of::<LogRecord>()),
        (M::Span, 9) => (0, kv),
        (M::Span, 11) => (1, size_of::<span::Event>()),
        (M::Span, 13) => (2, size_of::<span::Link>()),
        (M::SpanEvent, 3) | (M::SpanLink, 4) | (M::Metric, 12) => (0, kv),
        (M::Gauge | M::Sum, 1) => (0, size_of::<NumberDataPoint>()),
        (M::Histogram, 1) => (0, size_of::<HistogramDataPoint>()),
        (M::ExponentialHistogram, 1) => (0, size_of::<ExponentialHistogramDataPoint>()),
        (M::Summary, 1) => (0, size_of::<SummaryDataPoint>()),
        (M::NumberDataPoint, 7) => (0, kv),
        (M::NumberDataPoint, 5) => (1, size_of::<Exemplar>()),
        (M::HistogramDataPoint, 9) => (0, kv),
        (M::HistogramDataPoint, 6) => (1, size_of::<u64>()),
        (M::HistogramDataPoint, 7) => (2, size_of::<f64>()),
        (M::HistogramDataPoint, 8) => (3, size_of::<Exemplar>()),
        (M::ExponentialHistogramDataPoint, 1) => (0, kv),
        (M::ExponentialHistogramDataPoint, 11) => (1, size_of::<Exemplar>()),
        (M::Buckets, 2) => (0, size_of::<u64>()),
        (M::SummaryDataPoint, 7) => (0, kv),
        (M::SummaryDataPoint, 6) => (1, size_of::<ValueAtQuantile>()),
        (M::Exemplar, 7) | (M::LogRecord, 6) | (M::InstrumentationScope, 3) => (0, kv),
        (M::Resource, 1) => (0, kv),
        (M::Resource, 3) => (1, size_of::<EntityRef>()),
        (M::EntityRef, 3) => (0, size_of::<String>()),
        (M::EntityRef, 4) => (1, size_of::<String>()),
        (M::ArrayValue, 1) => (0, size_of::<AnyValue>()),
        (M::KeyValueList, 1) => (0, kv),
        _ => return None,
    };
    Some(found)
}

/// Room for every known field number (the largest is 16), so a lookup needs no bounds check.
const TAGS: usize = 32;

/// Per message and field number, which of the message's repeated fields the field is, from
/// 1 (0: not repeated); with [`ELEMENT_CHARGE`] and [`VEC_CHARGE`], [`repeated`] as tables
/// small enough to stay in cache.
static REPEATED_SLOT: [[u8; TAGS]; ALL_MESSAGES.len()] = {
    let mut table = [[0; TAGS]; ALL_MESSAGES.len()];
    let mut m = 0;
    while m < ALL_MESSAGES.len() {
        let mut tag = 0;
        while tag < TAGS {
            if let Some((slot, _)) = repeated(ALL_MESSAGES[m], tag as u32) {
                table[m][tag] = slot + 1;
            }
            tag += 1;
        }
        m += 1;
    }
    table
};

/// Repeated fields of one message, at most.
const SLOTS: usize = 4;

/// What one element of a message's repeated field (by slot) is charged ([`vec_peak`]).
static ELEMENT_CHARGE: [[usize; SLOTS]; ALL_MESSAGES.len()] = slot_table(3, 0);

/// What each `Vec` of a message's repeated field (by slot) is charged besides its elements.
static VEC_CHARGE: [[usize; SLOTS]; ALL_MESSAGES.len()] = slot_table(1, 2 * ALLOCATION_SLACK);

/// Per message and repeated field, `times` its element size plus `plus`.
const fn slot_table(times: usize, plus: usize) -> [[usize; SLOTS]; ALL_MESSAGES.len()] {
    let mut table = [[0; SLOTS]; ALL_MESSAGES.len()];
    let mut m = 0;
    while m < ALL_MESSAGES.len() {
        let mut tag = 0;
        while tag < TAGS {
            if let Some((slot, size)) = repeated(ALL_MESSAGES[m], tag as u32) {
                table[m][slot as usize] = times * size + plus;
            }
            tag += 1;
        }
        m += 1;
    }
    table
}

/// What a `Vec` of `n` elements of `size` bytes, filled one push at a time as prost fills
/// it, holds at once at most, counting both buffers while it moves into a larger one:
/// capacity goes 4, 8, 16, ..., so at the last growth the old buffer (fewer than `n`
/// elements) and the new one (at most `2n - 1`, or 4) are both held, and `3n + 1` elements
/// cover both. The bound adds up: elements that arrive in several runs of one field, or a
/// field of a message that appears twice (decoding merges the two), grow one `Vec` no larger
/// than the sum of the bounds of the parts. [`Scanner::message`] charges it piecewise: three
/// elements per element ([`ELEMENT_CHARGE`]) and one more, with two allocations' slack, per
/// `Vec` ([`VEC_CHARGE`]).
#[cfg(test)]
const fn vec_peak(n: usize, size: usize) -> usize {
    if n == 0 {
        0
    } else {
        (3 * n + 1) * size + 2 * ALLOCATION_SLACK
    }
}

/// The size of a message's decoded struct.
const fn struct_size(msg: Msg) -> usize {
    use Msg as M;
    match msg {
        M::TraceRequest => size_of::<ExportTraceServiceRequest>(),
        M::MetricsRequest => size_of::<ExportMetricsServiceRequest>(),
        M::LogsRequest => size_of::<ExportLogsServiceRequest>(),
        M::ResourceSpans => size_of::<ResourceSpans>(),
        M::ScopeSpans => size_of::<ScopeSpans>(),
        M::Span => size_of::<Span>(),
        M::SpanEvent => size_of::<span::Event>(),
        M::SpanLink => size_of::<span::Link>(),
        M::Status => size_of::<Status>(),
        M::ResourceMetrics => size_of::<ResourceMetrics>(),
        M::ScopeMetrics => size_of::<ScopeMetrics>(),
        M::Metric => size_of::<Metric>(),
        M::Gauge => size_of::<Gauge>(),
        M::Sum => size_of::<Sum>(),
        M::Histogram => size_of::<Histogram>(),
        M::ExponentialHistogram => size_of::<ExponentialHistogram>(),
        M::Summary => size_of::<Summary>(),
        M::NumberDataPoint => size_of::<NumberDataPoint>(),
        M::HistogramDataPoint => size_of::<HistogramDataPoint>(),
        M::ExponentialHistogramDataPoint => size_of::<ExponentialHistogramDataPoint>(),
        M::Buckets => size_of::<Buckets>(),
        M::SummaryDataPoint => size_of::<SummaryDataPoint>(),
        M::ValueAtQuantile => size_of::<ValueAtQuantile>(),
        M::Exemplar => size_of::<Exemplar>(),
        M::ResourceLogs => size_of::<ResourceLogs>(),
        M::ScopeLogs => size_of::<ScopeLogs>(),
        M::LogRecord => size_of::<LogRecord>(),
        M::Resource => size_of::<Resource>(),
        M::EntityRef => size_of::<EntityRef>(),
        M::InstrumentationScope => size_of::<InstrumentationScope>(),
        M::KeyValue => size_of::<KeyValue>(),
        M::AnyValue => size_of::<AnyValue>(),
        M::ArrayValue => size_of::<ArrayValue>(),
        M::KeyValueList => size_of::<KeyValueList>(),
    }
}

/// Nesting levels [`largest_struct_at`] tells apart; deeper ones all hold attribute values.
pub(super) const STRUCT_DEPTHS: usize = 16;

/// Per signal, the largest struct of any message that can sit `depth` messages below the
/// request (the request itself at 0), for `depth` under [`STRUCT_DEPTHS`]; the last entry
/// covers every depth from there on.
static LARGEST_STRUCT: [[usize; STRUCT_DEPTHS]; 3] = [
    largest_by_depth(Msg::TraceRequest),
    largest_by_depth(Msg::MetricsRequest),
    largest_by_depth(Msg::LogsRequest),
];

const fn largest_by_depth(root: Msg) -> [usize; STRUCT_DEPTHS] {
    let mut table = [0; STRUCT_DEPTHS];
    // Which messages are at the current depth, by discriminant.
    let mut level = [false; ALL_MESSAGES.len()];
    level[root as usize] = true;
    let mut depth = 0;
    while depth < 2 * STRUCT_DEPTHS {
        let mut next = [false; ALL_MESSAGES.len()];
        let mut m = 0;
        while m < ALL_MESSAGES.len() {
            if level[m] {
                let size = struct_size(ALL_MESSAGES[m]);
                let slot = if depth < STRUCT_DEPTHS {
                    depth
                } else {
                    STRUCT_DEPTHS - 1
                };
                if size > table[slot] {
                    table[slot] = size;
                }
                let mut tag = 0;
                while tag < TAGS {
                    if let Some(
                        Field::Message(inner) | Field::Item(inner) | Field::MetricData(inner),
                    ) = schema(ALL_MESSAGES[m], tag as u32)
                    {
                        next[inner as usize] = true;
                    }
                    tag += 1;
                }
            }
            m += 1;
        }
        level = next;
        depth += 1;
    }
    table
}

/// The largest struct a message `depth` levels below a request of `signal` can have.
pub(super) fn largest_struct_at(signal: SignalKind, depth: usize) -> usize {
    let table = &LARGEST_STRUCT[root(signal) as usize];
    table[depth.min(STRUCT_DEPTHS - 1)]
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
    let scanner = Scanner {
        base: bytes,
        heap: Cell::new(0),
    };
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
    if scanned.resources > 0 {
        let slot = usize::from(REPEATED_SLOT[msg as usize][1]) - 1;
        scanner.charge(
            scanned.resources * ELEMENT_CHARGE[msg as usize][slot] + VEC_CHARGE[msg as usize][slot],
        );
    }
    scanned.decoded_bytes = scanner.heap.get();
    Ok(scanned)
}

/// The points of one `Metric` (its bytes already passed [`scan`] inside a request): what a
/// cut between metrics moves.
pub(super) fn metric_points(body: &[u8]) -> Result<usize, WireError> {
    let scanner = Scanner {
        base: body,
        heap: Cell::new(0),
    };
    // A metric sits three messages below the request.
    scanner
        .message(Msg::Metric, body, DEPTH_LIMIT - 4)
        .map_err(|e| *e)
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
    /// What decoding what was scanned so far allocates (see [`Scanned::decoded_bytes`]).
    heap: Cell<usize>,
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn charge(&self, bytes: usize) {
        self.heap.set(self.heap.get().wrapping_add(bytes));
    }

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
    /// still allows below this message (its `DecodeContext`). What decoding its strings and
    /// repeated fields allocates is charged to [`Scanner::heap`]; its own struct is charged
    /// by the field that holds it.
    fn message(&self, msg: Msg, bytes: &'a [u8], budget: u32) -> Scan<usize> {
        let mut at = Cursor { buf: bytes, pos: 0 };
        let mut items = 0;
        let mut data_items = 0;
        let mut data_variant = None;
        // What decoding this message's fields allocates, and which of its repeated fields
        // have elements (one bit per slot, from bit 1): each has a `Vec`.
        let mut heap = 0usize;
        let mut vecs: u32 = 0;
        let by_key = &BY_KEY[msg as usize];
        let slots = &REPEATED_SLOT[msg as usize];
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
            // Elements this field adds if it is a repeated one.
            let mut elements = 0;
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
                    heap += bytes_heap(text.len());
                    elements = 1;
                }
                Field::Bytes => {
                    let bytes = self.delimited(&mut at, msg, tag)?;
                    heap += bytes_heap(bytes.len());
                }
                Field::Id(width) => {
                    let start = at.pos;
                    let id = self.delimited(&mut at, msg, tag)?;
                    if !id.is_empty() && id.len() != usize::from(width) {
                        let problem = Problem::IdLength {
                            name: id_name(msg, tag),
                            want: width,
                            got: id.len(),
                        };
                        return Err(self.fail(problem, msg, tag, at.buf, start));
                    }
                    heap += bytes_heap(id.len());
                }
                Field::RepeatedFixed64 => {
                    if wire == WIRE_LEN {
                        let packed = self.delimited(&mut at, msg, tag)?;
                        if packed.len() % 8 != 0 {
                            return Err(self.fail(Problem::PackedWidth, msg, tag, packed, 0));
                        }
                        elements = packed.len() / 8;
                    } else {
                        self.fixed(&mut at, 8, msg, tag)?;
                        elements = 1;
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
                            elements += 1;
                        }
                    } else {
                        self.varint(&mut at, msg, tag)?;
                        elements = 1;
                    }
                }
                Field::Message(inner) | Field::Item(inner) | Field::MetricData(inner) => {
                    let start = at.pos;
                    let body = self.delimited(&mut at, msg, tag)?;
                    if budget == 0 {
                        return Err(self.fail(Problem::TooDeep, msg, tag, at.buf, start));
                    }
                    // Attributes hold no items, so a plain one needs no further look. Every
                    // `KeyValue` field is its message's one repeated field of attributes, in
                    // slot 1.
                    if inner == Msg::KeyValue && budget >= 2 && plain_attribute(body) {
                        heap += body.len() + PLAIN_ATTRIBUTE;
                        vecs |= 1 << 1;
                        continue;
                    }
                    elements = 1;
                    if inner == Msg::AnyValue && plain_value(body) {
                        heap += bytes_heap(body.len());
                    } else {
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
            if elements > 0 {
                // Known fields have small numbers, so the table covers them all.
                let slot = slots[tag as usize % TAGS];
                if slot != 0 {
                    heap += elements * ELEMENT_CHARGE[msg as usize][usize::from(slot - 1)];
                    vecs |= 1 << slot;
                }
            }
        }
        let vec_charge = &VEC_CHARGE[msg as usize];
        while vecs != 0 {
            heap += vec_charge[vecs.trailing_zeros() as usize - 1];
            vecs &= vecs - 1;
        }
        self.charge(heap);
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
pub(super) mod tests {
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

    /// Every occurrence of every id field on the wire, whatever decoding keeps of them (the
    /// last of a singular field): the requests as prost sees them with each id field, and
    /// each message on the way to one, made repeated; other fields are unknown, skipped.
    mod every_id {
        use prost::Message;

        #[derive(Clone, PartialEq, Message)]
        pub struct Request<I: Message + Default + std::fmt::Debug> {
            #[prost(message, repeated, tag = "1")]
            pub resources: Vec<Resource<I>>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct Resource<I: Message + Default + std::fmt::Debug> {
            #[prost(message, repeated, tag = "2")]
            pub scopes: Vec<Scope<I>>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct Scope<I: Message + Default + std::fmt::Debug> {
            #[prost(message, repeated, tag = "2")]
            pub items: Vec<I>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct Span {
            #[prost(bytes = "vec", repeated, tag = "1")]
            pub trace_id: Vec<Vec<u8>>,
            #[prost(bytes = "vec", repeated, tag = "2")]
            pub span_id: Vec<Vec<u8>>,
            #[prost(bytes = "vec", repeated, tag = "4")]
            pub parent_span_id: Vec<Vec<u8>>,
            #[prost(message, repeated, tag = "13")]
            pub links: Vec<Link>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct Link {
            #[prost(bytes = "vec", repeated, tag = "1")]
            pub trace_id: Vec<Vec<u8>>,
            #[prost(bytes = "vec", repeated, tag = "2")]
            pub span_id: Vec<Vec<u8>>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct LogRecord {
            #[prost(bytes = "vec", repeated, tag = "9")]
            pub trace_id: Vec<Vec<u8>>,
            #[prost(bytes = "vec", repeated, tag = "10")]
            pub span_id: Vec<Vec<u8>>,
        }
        /// The gauge, sum, histogram and exponential histogram variants of `data`.
        #[derive(Clone, PartialEq, Message)]
        pub struct Metric {
            #[prost(message, repeated, tag = "5")]
            pub gauge: Vec<Points<NumberPoint>>,
            #[prost(message, repeated, tag = "7")]
            pub sum: Vec<Points<NumberPoint>>,
            #[prost(message, repeated, tag = "9")]
            pub histogram: Vec<Points<HistogramPoint>>,
            #[prost(message, repeated, tag = "10")]
            pub exponential: Vec<Points<ExponentialPoint>>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct Points<P: Message + Default + std::fmt::Debug> {
            #[prost(message, repeated, tag = "1")]
            pub points: Vec<P>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct NumberPoint {
            #[prost(message, repeated, tag = "5")]
            pub exemplars: Vec<Exemplar>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct HistogramPoint {
            #[prost(message, repeated, tag = "8")]
            pub exemplars: Vec<Exemplar>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct ExponentialPoint {
            #[prost(message, repeated, tag = "11")]
            pub exemplars: Vec<Exemplar>,
        }
        #[derive(Clone, PartialEq, Message)]
        pub struct Exemplar {
            #[prost(bytes = "vec", repeated, tag = "4")]
            pub span_id: Vec<Vec<u8>>,
            #[prost(bytes = "vec", repeated, tag = "5")]
            pub trace_id: Vec<Vec<u8>>,
        }

        fn ok(ids: &[Vec<u8>], width: usize) -> bool {
            ids.iter().all(|id| id.is_empty() || id.len() == width)
        }

        fn items<I: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> Option<Vec<I>> {
            let request = Request::<I>::decode(bytes).ok()?;
            let resources = request.resources.into_iter();
            Some(
                resources
                    .flat_map(|r| r.scopes)
                    .flat_map(|s| s.items)
                    .collect(),
            )
        }

        fn exemplars_ok(exemplars: &[Exemplar]) -> bool {
            exemplars
                .iter()
                .all(|e| ok(&e.trace_id, 16) && ok(&e.span_id, 8))
        }

        /// Whether every id on the wire has a valid length (`false` also if prost refuses).
        pub fn valid(signal: super::SignalKind, bytes: &[u8]) -> bool {
            use super::SignalKind;
            match signal {
                SignalKind::Traces => items::<Span>(bytes).is_some_and(|spans| {
                    spans.iter().all(|s| {
                        ok(&s.trace_id, 16)
                            && ok(&s.span_id, 8)
                            && ok(&s.parent_span_id, 8)
                            && s.links
                                .iter()
                                .all(|l| ok(&l.trace_id, 16) && ok(&l.span_id, 8))
                    })
                }),
                SignalKind::Logs => items::<LogRecord>(bytes).is_some_and(|records| {
                    records
                        .iter()
                        .all(|r| ok(&r.trace_id, 16) && ok(&r.span_id, 8))
                }),
                SignalKind::Metrics => items::<Metric>(bytes).is_some_and(|metrics| {
                    metrics.iter().all(|m| {
                        let number = m.gauge.iter().chain(&m.sum).flat_map(|p| &p.points);
                        let histogram = m.histogram.iter().flat_map(|p| &p.points);
                        let exponential = m.exponential.iter().flat_map(|p| &p.points);
                        number.into_iter().all(|p| exemplars_ok(&p.exemplars))
                            && histogram.into_iter().all(|p| exemplars_ok(&p.exemplars))
                            && exponential.into_iter().all(|p| exemplars_ok(&p.exemplars))
                    })
                }),
            }
        }
    }

    /// What prost makes of the bytes, in the scan's terms (resources, items), or `None` if
    /// prost refuses them or they hold an id of the wrong length.
    fn decoded<S: Signal>(bytes: &[u8]) -> Option<(usize, usize)> {
        let request = S::Request::decode(bytes).ok()?;
        let resources = S::request_resources(&request);
        if !every_id::valid(S::KIND, bytes) {
            return None;
        }
        Some((resources.len(), item_count::<S>(resources)))
    }

    fn counted<S: Signal>(bytes: &[u8]) -> Option<(usize, usize)> {
        scan(S::KIND, bytes).ok().map(|s| (s.resources, s.items))
    }

    fn agrees<S: Signal>(bytes: &[u8]) -> bool {
        counted::<S>(bytes) == decoded::<S>(bytes)
    }

    fn assert_agrees<S: Signal>(bytes: &[u8]) {
        assert_eq!(
            counted::<S>(bytes),
            decoded::<S>(bytes),
            "scan and prost disagree on {bytes:02x?}: {:?}",
            scan(S::KIND, bytes)
        );
    }

    /// The scan charges a plain attribute to slot 1 without looking the field up.
    #[test]
    fn every_field_of_attributes_is_its_messages_first_repeated_field() {
        for msg in ALL_MESSAGES {
            for tag in 0..TAGS as u32 {
                if let Some(Field::Message(Msg::KeyValue)) = schema(*msg, tag) {
                    assert_eq!(
                        repeated(*msg, tag),
                        Some((0, size_of::<KeyValue>())),
                        "{msg:?}"
                    );
                }
            }
        }
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
        assert_eq!(counted::<Traces>(&t), Some((2, 3)));
        let m = metrics().encode_to_vec();
        // 2 gauge + 1 sum + 1 histogram + 1 exponential + 1 summary points; "empty" has none.
        assert_eq!(counted::<Metrics>(&m), Some((1, 6)));
        let l = logs().encode_to_vec();
        assert_eq!(counted::<Logs>(&l), Some((1, 3)));
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

    /// Counts the heap memory the current thread holds, and the most it held, so a test can
    /// compare the scan's estimate with what decoding really allocates. A `realloc` counts
    /// as holding both buffers for a moment, as moving the data does.
    pub(in crate::codec) mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn grew(bytes: usize) {
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + bytes as isize);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }

        fn shrank(bytes: usize) {
            let _ = LIVE.try_with(|live| live.set(live.get() - bytes as isize));
        }

        pub struct Counting;

        // SAFETY: every call goes to the system allocator unchanged; only sizes are counted.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                // SAFETY: as the caller promised for `alloc`.
                let ptr = unsafe { System.alloc(layout) };
                if !ptr.is_null() {
                    grew(layout.size());
                }
                ptr
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                // SAFETY: as the caller promised for `alloc_zeroed`.
                let ptr = unsafe { System.alloc_zeroed(layout) };
                if !ptr.is_null() {
                    grew(layout.size());
                }
                ptr
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: as the caller promised for `dealloc`.
                unsafe { System.dealloc(ptr, layout) };
                shrank(layout.size());
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                // SAFETY: as the caller promised for `realloc`.
                let moved = unsafe { System.realloc(ptr, layout, new_size) };
                if !moved.is_null() {
                    grew(new_size);
                    shrank(layout.size());
                }
                moved
            }
        }

        /// Runs `work` and returns what it left allocated and the most it held at once, both
        /// beyond what the thread held before.
        pub fn measure<T>(work: impl FnOnce() -> T) -> (T, usize, usize) {
            let before = LIVE.with(Cell::get);
            PEAK.with(|peak| peak.set(before));
            let out = work();
            let after = LIVE.with(Cell::get);
            let peak = PEAK.with(Cell::get);
            (
                out,
                (after - before).max(0) as usize,
                (peak - before).max(0) as usize,
            )
        }
    }

    #[global_allocator]
    static COUNTING: counting::Counting = counting::Counting;

    /// Decodes as a lazily decoded batch does (from `Bytes`, into the request, then its
    /// resources) and checks the estimate against what that allocated: never less than the
    /// most held at once, and not wildly more.
    fn assert_estimate_bounds_decoding<S: Signal>(request: &[u8]) -> (usize, usize) {
        let scanned = scan(S::KIND, request).expect("valid");
        let bytes = bytes::Bytes::copy_from_slice(request);
        let (resources, _, peak) = counting::measure(|| {
            let mut decoded = S::Request::default();
            decoded.merge(bytes.clone()).expect("valid");
            S::from_request(decoded)
        });
        assert!(
            scanned.decoded_bytes >= peak,
            "estimate {} < peak {peak} for {} bytes",
            scanned.decoded_bytes,
            request.len()
        );
        drop(resources);
        (scanned.decoded_bytes, peak)
    }

    #[test]
    fn the_decoded_size_estimate_bounds_what_decoding_allocates() {
        assert_estimate_bounds_decoding::<Traces>(&traces().encode_to_vec());
        assert_estimate_bounds_decoding::<Metrics>(&metrics().encode_to_vec());
        assert_estimate_bounds_decoding::<Logs>(&logs().encode_to_vec());
        assert_eq!(scan(SignalKind::Traces, &[]).unwrap().decoded_bytes, 0);

        // The attack: a megabyte of empty spans is half a million structs of a few hundred
        // bytes each.
        let empty_spans = |n: usize| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        for n in [1, 4, 5, 1000, 1 << 14, (1 << 14) + 1, 100_000] {
            let request = empty_spans(n).encode_to_vec();
            let (estimate, peak) = assert_estimate_bounds_decoding::<Traces>(&request);
            assert!(
                estimate > 100 * request.len(),
                "{estimate} for {}",
                request.len()
            );
            // Within a small factor of the truth: the bound is for memory, not a guess.
            assert!(estimate <= 3 * peak + 1024, "{estimate} vs {peak}");
        }
        let empty_logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 50_000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (estimate, peak) = assert_estimate_bounds_decoding::<Logs>(&empty_logs.encode_to_vec());
        assert!(estimate <= 3 * peak, "{estimate} vs {peak}");
    }

    /// Elements of one repeated field in several runs, and a singular message sent twice
    /// (decoding merges the two and their repeated fields grow one `Vec`): still bounded.
    #[test]
    fn the_estimate_holds_where_decoding_merges() {
        let kv = [len_field(1, b"k"), len_field(2, &len_field(1, b"v"))].concat();
        let attributes = |n: usize| len_field(1, &kv).repeat(n);
        // Resource (field 1 of ResourceLogs) sent twice, with 8 then 1 attribute: one
        // `Vec` of 9 (capacity 16), more than two of 8 and 1 (capacities 8 and 4).
        let resource = [len_field(1, &attributes(8)), len_field(1, &attributes(1))].concat();
        let record = len_field(2, &len_field(6, &kv));
        let runs = [record.clone(), len_field(99, b"x"), record].concat();
        for body in [resource, runs] {
            let request = len_field(1, &[body, len_field(2, &[])].concat());
            assert_agrees::<Logs>(&request);
            assert_estimate_bounds_decoding::<Logs>(&request);
        }
        for n in 1..40 {
            assert!(vec_peak(n, 8) >= 8 * (n.next_power_of_two().max(4) * 3 / 2));
        }
    }

    /// Random requests of every signal: the estimate is never below what decoding held.
    #[test]
    fn the_estimate_bounds_decoding_random_requests() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..60 {
            let (t, m, l) = (
                crate::codec::random_requests::traces(&mut rng).encode_to_vec(),
                crate::codec::random_requests::metrics(&mut rng).encode_to_vec(),
                crate::codec::random_requests::logs(&mut rng).encode_to_vec(),
            );
            assert_estimate_bounds_decoding::<Traces>(&t);
            assert_estimate_bounds_decoding::<Metrics>(&m);
            assert_estimate_bounds_decoding::<Logs>(&l);
        }
    }

    #[test]
    fn ids_of_the_wrong_length_are_refused_with_the_field_and_where() {
        let span = |fields: &[u8]| {
            let spans = len_field(2, fields);
            len_field(1, &len_field(2, &spans))
        };
        let ok = span(
            &[
                len_field(1, &[7; 16]),
                len_field(2, &[7; 8]),
                len_field(4, &[]),
            ]
            .concat(),
        );
        assert!(scan(SignalKind::Traces, &ok).is_ok());
        for (fields, expected) in [
            (
                len_field(1, &[7; 3]),
                "trace_id must be 16 bytes or empty, not 3 bytes (field 1 of Span, at byte 7)",
            ),
            (
                len_field(1, &[7; 17]),
                "trace_id must be 16 bytes or empty, not 17 bytes",
            ),
            (
                len_field(2, &[7; 16]),
                "span_id must be 8 bytes or empty, not 16 bytes",
            ),
            (
                len_field(4, &[7; 1]),
                "parent_span_id must be 8 bytes or empty, not 1 bytes",
            ),
            (
                len_field(4, &vec![7; 1 << 20]),
                "parent_span_id must be 8 bytes or empty, not 1048576 bytes",
            ),
            (
                len_field(13, &len_field(1, &[1; 8])),
                "trace_id must be 16 bytes or empty, not 8 bytes (field 1 of Span.Link",
            ),
            (
                len_field(13, &len_field(2, &[1; 9])),
                "span_id must be 8 bytes or empty, not 9 bytes (field 2 of Span.Link",
            ),
        ] {
            let error = scan(SignalKind::Traces, &span(&fields)).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        // A valid id after a wrong one does not make it right (the Collector refuses it too).
        let twice = span(&[len_field(1, &[7; 3]), len_field(1, &[7; 16])].concat());
        assert!(scan(SignalKind::Traces, &twice).is_err());
        let record = |fields: &[u8]| len_field(1, &len_field(2, &len_field(2, fields)));
        let error = scan(SignalKind::Logs, &record(&len_field(10, &[0; 4]))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("span_id must be 8 bytes or empty, not 4 bytes (field 10 of LogRecord"),
            "{error}"
        );
        assert!(scan(SignalKind::Logs, &record(&len_field(9, &[0; 16]))).is_ok());
        let exemplar = |fields: &[u8]| {
            let point = len_field(5, fields); // NumberDataPoint.exemplars
            let metric = len_field(5, &len_field(1, &point)); // Metric.gauge.data_points
            len_field(1, &len_field(2, &len_field(2, &metric)))
        };
        let error = scan(SignalKind::Metrics, &exemplar(&len_field(5, &[0; 15]))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("trace_id must be 16 bytes or empty, not 15 bytes (field 5 of Exemplar"),
            "{error}"
        );
        assert!(scan(SignalKind::Metrics, &exemplar(&len_field(4, &[0; 8]))).is_ok());
    }
}
