//! Which paths each condition context accepts, and what they name.

use std::fmt;

/// Where a condition list applies: the item each condition is evaluated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Resource,
    Scope,
    Span,
    SpanEvent,
    Metric,
    DataPoint,
    Log,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Context::Resource => "resource",
            Context::Scope => "scope",
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
            Context::Log => "log_record",
        })
    }
}

/// A field some context can read; which item it belongs to is part of the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ResourceAttributes,
    ResourceDroppedAttributesCount,
    ScopeName,
    ScopeVersion,
    ScopeAttributes,
    ScopeDroppedAttributesCount,

    SpanName,
    SpanAttributes,
    SpanKind,
    SpanStatusCode,
    SpanStatusMessage,
    SpanStartTime,
    SpanEndTime,
    SpanTraceId,
    SpanTraceIdString,
    SpanId,
    SpanIdString,
    SpanParentId,
    SpanParentIdString,
    SpanTraceState,
    SpanDroppedAttributesCount,

    EventName,
    EventAttributes,
    EventTime,
    EventDroppedAttributesCount,

    MetricName,
    MetricDescription,
    MetricUnit,
    MetricType,
    MetricTemporality,
    MetricMonotonic,

    PointAttributes,
    PointValueDouble,
    PointValueInt,
    PointTime,
    PointStartTime,
    PointCount,
    PointSum,
    PointFlags,

    LogBody,
    LogAttributes,
    LogSeverityNumber,
    LogSeverityText,
    LogTime,
    LogObservedTime,
    LogTraceId,
    LogTraceIdString,
    LogSpanId,
    LogSpanIdString,
    LogFlags,
    LogEventName,
    LogDroppedAttributesCount,
}

/// One readable field: its dotted name and whether `[key]` may follow (map-valued fields).
struct Spec(&'static str, Field, bool);

const RESOURCE: &[Spec] = &[
    Spec("attributes", Field::ResourceAttributes, true),
    Spec(
        "dropped_attributes_count",
        Field::ResourceDroppedAttributesCount,
        false,
    ),
];

const SCOPE: &[Spec] = &[
    Spec("name", Field::ScopeName, false),
    Spec("version", Field::ScopeVersion, false),
    Spec("attributes", Field::ScopeAttributes, true),
    Spec(
        "dropped_attributes_count",
        Field::ScopeDroppedAttributesCount,
        false,
    ),
];

const SPAN: &[Spec] = &[
    Spec("name", Field::SpanName, false),
    Spec("attributes", Field::SpanAttributes, true),
    Spec("kind", Field::SpanKind, false),
    Spec("status.code", Field::SpanStatusCode, false),
    Spec("status.message", Field::SpanStatusMessage, false),
    Spec("start_time_unix_nano", Field::SpanStartTime, false),
    Spec("end_time_unix_nano", Field::SpanEndTime, false),
    Spec("trace_id", Field::SpanTraceId, false),
    Spec("trace_id.string", Field::SpanTraceIdString, false),
    Spec("span_id", Field::SpanId, false),
    Spec("span_id.string", Field::SpanIdString, false),
    Spec("parent_span_id", Field::SpanParentId, false),
    Spec("parent_span_id.string", Field::SpanParentIdString, false),
    Spec("trace_state", Field::SpanTraceState, false),
    Spec(
        "dropped_attributes_count",
        Field::SpanDroppedAttributesCount,
        false,
    ),
];

const EVENT: &[Spec] = &[
    Spec("name", Field::EventName, false),
    Spec("attributes", Field::EventAttributes, true),
    Spec("time_unix_nano", Field::EventTime, false),
    Spec(
        "dropped_attributes_count",
        Field::EventDroppedAttributesCount,
        false,
    ),
];

const METRIC: &[Spec] = &[
    Spec("name", Field::MetricName, false),
    Spec("description", Field::MetricDescription, false),
    Spec("unit", Field::MetricUnit, false),
    Spec("type", Field::MetricType, false),
    Spec("aggregation_temporality", Field::MetricTemporality, false),
    Spec("is_monotonic", Field::MetricMonotonic, false),
];

const POINT: &[Spec] = &[
    Spec("attributes", Field::PointAttributes, true),
    Spec("value_double", Field::PointValueDouble, false),
    Spec("value_int", Field::PointValueInt, false),
    Spec("time_unix_nano", Field::PointTime, false),
    Spec("start_time_unix_nano", Field::PointStartTime, false),
    Spec("count", Field::PointCount, false),
    Spec("sum", Field::PointSum, false),
    Spec("flags", Field::PointFlags, false),
];

const LOG: &[Spec] = &[
    Spec("body", Field::LogBody, true),
    Spec("attributes", Field::LogAttributes, true),
    Spec("severity_number", Field::LogSeverityNumber, false),
    Spec("severity_text", Field::LogSeverityText, false),
    Spec("time_unix_nano", Field::LogTime, false),
    Spec("observed_time_unix_nano", Field::LogObservedTime, false),
    Spec("trace_id", Field::LogTraceId, false),
    Spec("trace_id.string", Field::LogTraceIdString, false),
    Spec("span_id", Field::LogSpanId, false),
    Spec("span_id.string", Field::LogSpanIdString, false),
    Spec("flags", Field::LogFlags, false),
    Spec("event_name", Field::LogEventName, false),
    Spec(
        "dropped_attributes_count",
        Field::LogDroppedAttributesCount,
        false,
    ),
];

/// The tables a context reads, each under a prefix: the item's own fields bare and under the
/// context's name (OTTL's newer context-qualified spelling), then its parents'. The scope is
/// `instrumentation_scope` in OTTL's older spelling and `scope` in the newer one.
fn tables(ctx: Context) -> &'static [(&'static str, &'static [Spec])] {
    match ctx {
        Context::Resource => &[("", RESOURCE), ("resource.", RESOURCE)],
        Context::Scope => &[
            ("", SCOPE),
            ("scope.", SCOPE),
            ("instrumentation_scope.", SCOPE),
            ("resource.", RESOURCE),
        ],
        Context::Span => &[
            ("", SPAN),
            ("span.", SPAN),
            ("resource.", RESOURCE),
            ("instrumentation_scope.", SCOPE),
            ("scope.", SCOPE),
        ],
        Context::SpanEvent => &[
            ("", EVENT),
            ("spanevent.", EVENT),
            ("span.", SPAN),
            ("resource.", RESOURCE),
            ("instrumentation_scope.", SCOPE),
            ("scope.", SCOPE),
        ],
        Context::Metric => &[
            ("", METRIC),
            ("metric.", METRIC),
            ("resource.", RESOURCE),
            ("instrumentation_scope.", SCOPE),
            ("scope.", SCOPE),
        ],
        Context::DataPoint => &[
            ("", POINT),
            ("datapoint.", POINT),
            ("metric.", METRIC),
            ("resource.", RESOURCE),
            ("instrumentation_scope.", SCOPE),
            ("scope.", SCOPE),
        ],
        Context::Log => &[
            ("", LOG),
            ("log.", LOG),
            ("resource.", RESOURCE),
            ("instrumentation_scope.", SCOPE),
            ("scope.", SCOPE),
        ],
    }
}

/// The context a path prefix names, for inferring a condition's context from its paths.
pub fn context_named(prefix: &str) -> Option<Context> {
    Some(match prefix {
        "resource" => Context::Resource,
        "scope" => Context::Scope,
        "span" => Context::Span,
        "spanevent" => Context::SpanEvent,
        "metric" => Context::Metric,
        "datapoint" => Context::DataPoint,
        "log" => Context::Log,
        _ => return None,
    })
}

impl Context {
    /// How deep the context sits: a condition naming several contexts runs in the deepest,
    /// which can read all the others.
    pub fn depth(self) -> u8 {
        match self {
            Context::Resource => 0,
            Context::Scope => 1,
            Context::Span | Context::Metric | Context::Log => 2,
            Context::SpanEvent | Context::DataPoint => 3,
        }
    }
}

/// Looks up a dotted path; `Some((field, indexable))` when the context has it.
pub fn resolve(ctx: Context, dotted: &str) -> Option<(Field, bool)> {
    tables(ctx).iter().find_map(|(prefix, table)| {
        let rest = dotted.strip_prefix(prefix)?;
        table.iter().find(|s| s.0 == rest).map(|s| (s.1, s.2))
    })
}

/// The paths a context accepts, for error messages (spellings that repeat another left out).
pub fn listing(ctx: Context) -> String {
    let own_prefix = match ctx {
        Context::Resource => "resource.",
        Context::Scope => "scope.",
        Context::Span => "span.",
        Context::SpanEvent => "spanevent.",
        Context::Metric => "metric.",
        Context::DataPoint => "datapoint.",
        Context::Log => "log.",
    };
    let mut names = Vec::new();
    for (prefix, table) in tables(ctx) {
        if *prefix == own_prefix || (*prefix == "scope." && ctx != Context::Scope) {
            continue;
        }
        for s in *table {
            let key = if s.2 { "[\"key\"]" } else { "" };
            names.push(format!("{prefix}{}{key}", s.0));
        }
    }
    names.join(", ")
}

/// Named integer constants, as OTTL spells the OTLP enums.
pub fn enum_value(name: &str) -> Option<i64> {
    const SEVERITIES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let v = match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        _ => {
            // SEVERITY_NUMBER_<LEVEL> and SEVERITY_NUMBER_<LEVEL>2..4: 1..=24 in steps.
            let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
            let (level, step) = match rest.char_indices().find(|(_, c)| c.is_ascii_digit()) {
                Some((i, _)) => {
                    let step: i64 = rest[i..].parse().ok()?;
                    if !(2..=4).contains(&step) {
                        return None;
                    }
                    (&rest[..i], step)
                }
                None => (rest, 1),
            };
            let base = SEVERITIES.iter().position(|l| *l == level)? as i64;
            base * 4 + step
        }
    };
    Some(v)
}
