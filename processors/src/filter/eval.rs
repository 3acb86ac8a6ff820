//! Evaluating parsed conditions against one item and the resource and scope around it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use sluice_pipeline::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value as AnyKind,
};
use sluice_pipeline::proto::logs::v1::LogRecord;
use sluice_pipeline::proto::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
    metric::Data, number_data_point,
};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::{Span, span::Event};

use super::lexer::CmpOp;
use super::parser::{Expr, Key, Literal, Operand, Path, ValueType};
use super::paths::Field;

/// A failure while evaluating (not a false result); what happens next is the `error_mode`'s call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value read from telemetry or written in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Map(&'a [KeyValue]),
    Array(&'a [AnyValue]),
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "a bool",
            Val::Int(_) => "an int",
            Val::Double(_) => "a double",
            Val::Str(_) => "a string",
            Val::Bytes(_) => "bytes",
            Val::Map(_) => "a map",
            Val::Array(_) => "a slice",
        }
    }
}

/// One data point of any metric type.
#[derive(Clone, Copy)]
pub enum Point<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
    Exponential(&'a ExponentialHistogramDataPoint),
    Summary(&'a SummaryDataPoint),
}

/// The item a condition looks at, with its parents. Fields a context cannot name stay `None`.
#[derive(Clone, Copy, Default)]
pub struct Item<'a> {
    pub resource: Option<&'a Resource>,
    pub scope: Option<&'a InstrumentationScope>,
    pub span: Option<&'a Span>,
    pub event: Option<&'a Event>,
    pub metric: Option<&'a Metric>,
    pub point: Option<Point<'a>>,
    pub log: Option<&'a LogRecord>,
}

pub fn eval(expr: &Expr, item: &Item<'_>) -> Result<bool, EvalError> {
    Ok(match expr {
        Expr::Or(terms) => {
            for t in terms {
                if eval(t, item)? {
                    return Ok(true);
                }
            }
            false
        }
        Expr::And(terms) => {
            for t in terms {
                if !eval(t, item)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Not(a) => !eval(a, item)?,
        Expr::Cmp(a, op, b) => compare(&operand(a, item)?, &operand(b, item)?, *op),
        Expr::Truth(a) => match operand(a, item)? {
            Val::Bool(b) => b,
            other => {
                return Err(EvalError(format!("expected a bool, got {}", other.kind())));
            }
        },
    })
}

fn operand<'a>(op: &'a Operand, item: &Item<'a>) -> Result<Val<'a>, EvalError> {
    Ok(match op {
        Operand::Lit(lit) => match lit {
            Literal::Nil => Val::Nil,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Int(i) => Val::Int(*i),
            Literal::Double(x) => Val::Double(*x),
            Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
            Literal::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
            Literal::Composite(v) => any(Some(v)),
        },
        Operand::Path(path) => read(path, item),
        Operand::IsMatch(target, regex) => {
            let text: Cow<'_, str> = match operand(target, item)? {
                // As OTTL: a missing value matches nothing rather than failing.
                Val::Nil => return Ok(Val::Bool(false)),
                Val::Str(s) => s,
                Val::Int(i) => Cow::Owned(i.to_string()),
                Val::Double(x) => Cow::Owned(x.to_string()),
                Val::Bool(b) => Cow::Owned(b.to_string()),
                Val::Bytes(b) => Cow::Owned(hex::encode(b)),
                other => {
                    return Err(EvalError(format!(
                        "IsMatch: the target is {}, not a string",
                        other.kind()
                    )));
                }
            };
            Val::Bool(regex.is_match(&text))
        }
        Operand::IsType(target, ty) => {
            let v = operand(target, item)?;
            Val::Bool(matches!(
                (ty, v),
                (ValueType::String, Val::Str(_))
                    | (ValueType::Int, Val::Int(_))
                    | (ValueType::Double, Val::Double(_))
                    | (ValueType::Bool, Val::Bool(_))
                    | (ValueType::Map, Val::Map(_))
                    | (ValueType::List, Val::Array(_))
            ))
        }
        Operand::AnyDataPoint(condition) => {
            let Some(metric) = item.metric else {
                return Ok(Val::Bool(false));
            };
            for point in points(metric) {
                let at_point = Item {
                    point: Some(point),
                    ..*item
                };
                if eval(condition, &at_point)? {
                    return Ok(Val::Bool(true));
                }
            }
            Val::Bool(false)
        }
    })
}

/// Every data point of a metric, whatever its type, in order.
pub fn points(metric: &Metric) -> Vec<Point<'_>> {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.iter().map(Point::Number).collect(),
        Some(Data::Sum(s)) => s.data_points.iter().map(Point::Number).collect(),
        Some(Data::Histogram(h)) => h.data_points.iter().map(Point::Histogram).collect(),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter().map(Point::Exponential).collect()
        }
        Some(Data::Summary(s)) => s.data_points.iter().map(Point::Summary).collect(),
        None => Vec::new(),
    }
}

/// OTTL's comparison rules: nil equals only nil; ints and doubles compare as numbers;
/// strings and bytes lexically; bools with false < true; anything else (or a NaN) compares
/// as "not equal", so `!=` is true and every other operator false.
pub fn compare(a: &Val<'_>, b: &Val<'_>, op: CmpOp) -> bool {
    let ord = match (a, b) {
        (Val::Nil, Val::Nil) => Some(Ordering::Equal),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Double(y)) => (*x as f64).partial_cmp(y),
        (Val::Double(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bytes(x), Val::Bytes(y)) => Some(x.cmp(y)),
        // Maps and slices have equality but no order.
        (Val::Map(x), Val::Map(y)) => return equality_only(x == y, op),
        (Val::Array(x), Val::Array(y)) => return equality_only(x == y, op),
        _ => None,
    };
    match ord {
        None => op == CmpOp::Ne,
        Some(o) => match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        },
    }
}

fn equality_only(equal: bool, op: CmpOp) -> bool {
    match op {
        CmpOp::Eq => equal,
        CmpOp::Ne => !equal,
        _ => false,
    }
}

fn read<'a>(path: &'a Path, item: &Item<'a>) -> Val<'a> {
    let mut v = field(path.field, item);
    for key in &path.keys {
        v = match (v, key) {
            (Val::Map(kvs), Key::Str(k)) => attr(kvs, k),
            (Val::Array(items), Key::Int(i)) => usize::try_from(*i)
                .ok()
                .and_then(|i| items.get(i))
                .map_or(Val::Nil, |a| any(Some(a))),
            // Indexing what is not a map (or a slice) finds nothing, as a missing key would.
            _ => Val::Nil,
        };
    }
    v
}

fn any(v: Option<&AnyValue>) -> Val<'_> {
    match v.and_then(|v| v.value.as_ref()) {
        None => Val::Nil,
        Some(AnyKind::StringValue(s)) => Val::Str(Cow::Borrowed(s)),
        Some(AnyKind::BoolValue(b)) => Val::Bool(*b),
        Some(AnyKind::IntValue(i)) => Val::Int(*i),
        Some(AnyKind::DoubleValue(x)) => Val::Double(*x),
        Some(AnyKind::ArrayValue(a)) => Val::Array(&a.values),
        Some(AnyKind::KvlistValue(m)) => Val::Map(&m.values),
        Some(AnyKind::BytesValue(b)) => Val::Bytes(Cow::Borrowed(b)),
        // An index into a profiles string table, which no other signal carries.
        Some(AnyKind::StringValueStrindex(_)) => Val::Nil,
    }
}

/// The first entry wins, as pdata's `Map.Get` does when a sender repeated a key.
fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Val<'a> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .map_or(Val::Nil, |kv| any(kv.value.as_ref()))
}

fn uint(v: u64) -> Val<'static> {
    i64::try_from(v).map_or(Val::Double(v as f64), Val::Int)
}

fn text(s: &str) -> Val<'_> {
    Val::Str(Cow::Borrowed(s))
}

fn id_hex(id: &[u8]) -> Val<'static> {
    Val::Str(Cow::Owned(hex::encode(id)))
}

fn field<'a>(f: Field, item: &Item<'a>) -> Val<'a> {
    use Field as F;
    let it = *item;
    let val = match f {
        F::ResourceAttributes => Some(Val::Map(it.resource.map_or(&[][..], |r| &r.attributes))),
        F::ResourceDroppedAttributesCount => Some(Val::Int(
            it.resource.map_or(0, |r| r.dropped_attributes_count.into()),
        )),
        F::ScopeName => Some(text(it.scope.map_or("", |s| &s.name))),
        F::ScopeVersion => Some(text(it.scope.map_or("", |s| &s.version))),
        F::ScopeAttributes => Some(Val::Map(it.scope.map_or(&[][..], |s| &s.attributes))),
        F::ScopeDroppedAttributesCount => Some(Val::Int(
            it.scope.map_or(0, |s| s.dropped_attributes_count.into()),
        )),

        F::SpanName => it.span.map(|s| text(&s.name)),
        F::SpanAttributes => it.span.map(|s| Val::Map(&s.attributes)),
        F::SpanKind => it.span.map(|s| Val::Int(s.kind.into())),
        F::SpanStatusCode => it
            .span
            .map(|s| Val::Int(s.status.as_ref().map_or(0, |st| st.code.into()))),
        F::SpanStatusMessage => it
            .span
            .map(|s| text(s.status.as_ref().map_or("", |st| &st.message))),
        F::SpanStartTime => it.span.map(|s| uint(s.start_time_unix_nano)),
        F::SpanEndTime => it.span.map(|s| uint(s.end_time_unix_nano)),
        F::SpanTraceId => it.span.map(|s| Val::Bytes(Cow::Borrowed(&s.trace_id))),
        F::SpanTraceIdString => it.span.map(|s| id_hex(&s.trace_id)),
        F::SpanId => it.span.map(|s| Val::Bytes(Cow::Borrowed(&s.span_id))),
        F::SpanIdString => it.span.map(|s| id_hex(&s.span_id)),
        F::SpanParentId => it
            .span
            .map(|s| Val::Bytes(Cow::Borrowed(&s.parent_span_id))),
        F::SpanParentIdString => it.span.map(|s| id_hex(&s.parent_span_id)),
        F::SpanTraceState => it.span.map(|s| text(&s.trace_state)),
        F::SpanDroppedAttributesCount => {
            it.span.map(|s| Val::Int(s.dropped_attributes_count.into()))
        }

        F::EventName => it.event.map(|e| text(&e.name)),
        F::EventAttributes => it.event.map(|e| Val::Map(&e.attributes)),
        F::EventTime => it.event.map(|e| uint(e.time_unix_nano)),
        F::EventDroppedAttributesCount => it
            .event
            .map(|e| Val::Int(e.dropped_attributes_count.into())),

        F::MetricName => it.metric.map(|m| text(&m.name)),
        F::MetricDescription => it.metric.map(|m| text(&m.description)),
        F::MetricUnit => it.metric.map(|m| text(&m.unit)),
        F::MetricType => it.metric.map(|m| {
            Val::Int(match &m.data {
                None => 0,
                Some(Data::Gauge(_)) => 1,
                Some(Data::Sum(_)) => 2,
                Some(Data::Histogram(_)) => 3,
                Some(Data::ExponentialHistogram(_)) => 4,
                Some(Data::Summary(_)) => 5,
            })
        }),
        F::MetricTemporality => it.metric.map(|m| {
            Val::Int(match &m.data {
                Some(Data::Sum(s)) => s.aggregation_temporality.into(),
                Some(Data::Histogram(h)) => h.aggregation_temporality.into(),
                Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality.into(),
                _ => 0,
            })
        }),
        F::MetricMonotonic => it
            .metric
            .map(|m| Val::Bool(matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic))),

        F::PointAttributes => it.point.map(|p| {
            Val::Map(match p {
                Point::Number(p) => &p.attributes,
                Point::Histogram(p) => &p.attributes,
                Point::Exponential(p) => &p.attributes,
                Point::Summary(p) => &p.attributes,
            })
        }),
        // A point of the other number type (or no number at all) has no such value: nil,
        // rather than pdata's zero, so `value_int == 0` does not match every double point.
        F::PointValueDouble => match it.point {
            Some(Point::Number(p)) => match p.value {
                Some(number_data_point::Value::AsDouble(x)) => Some(Val::Double(x)),
                _ => None,
            },
            _ => None,
        },
        F::PointValueInt => match it.point {
            Some(Point::Number(p)) => match p.value {
                Some(number_data_point::Value::AsInt(i)) => Some(Val::Int(i)),
                _ => None,
            },
            _ => None,
        },
        F::PointTime => it.point.map(|p| {
            uint(match p {
                Point::Number(p) => p.time_unix_nano,
                Point::Histogram(p) => p.time_unix_nano,
                Point::Exponential(p) => p.time_unix_nano,
                Point::Summary(p) => p.time_unix_nano,
            })
        }),
        F::PointStartTime => it.point.map(|p| {
            uint(match p {
                Point::Number(p) => p.start_time_unix_nano,
                Point::Histogram(p) => p.start_time_unix_nano,
                Point::Exponential(p) => p.start_time_unix_nano,
                Point::Summary(p) => p.start_time_unix_nano,
            })
        }),
        F::PointCount => match it.point {
            Some(Point::Histogram(p)) => Some(uint(p.count)),
            Some(Point::Exponential(p)) => Some(uint(p.count)),
            Some(Point::Summary(p)) => Some(uint(p.count)),
            _ => None,
        },
        F::PointSum => match it.point {
            Some(Point::Histogram(p)) => p.sum.map(Val::Double),
            Some(Point::Exponential(p)) => p.sum.map(Val::Double),
            Some(Point::Summary(p)) => Some(Val::Double(p.sum)),
            _ => None,
        },
        F::PointFlags => it.point.map(|p| {
            Val::Int(
                match p {
                    Point::Number(p) => p.flags,
                    Point::Histogram(p) => p.flags,
                    Point::Exponential(p) => p.flags,
                    Point::Summary(p) => p.flags,
                }
                .into(),
            )
        }),

        F::LogBody => it.log.map(|l| any(l.body.as_ref())),
        F::LogAttributes => it.log.map(|l| Val::Map(&l.attributes)),
        F::LogSeverityNumber => it.log.map(|l| Val::Int(l.severity_number.into())),
        F::LogSeverityText => it.log.map(|l| text(&l.severity_text)),
        F::LogTime => it.log.map(|l| uint(l.time_unix_nano)),
        F::LogObservedTime => it.log.map(|l| uint(l.observed_time_unix_nano)),
        F::LogTraceId => it.log.map(|l| Val::Bytes(Cow::Borrowed(&l.trace_id))),
        F::LogTraceIdString => it.log.map(|l| id_hex(&l.trace_id)),
        F::LogSpanId => it.log.map(|l| Val::Bytes(Cow::Borrowed(&l.span_id))),
        F::LogSpanIdString => it.log.map(|l| id_hex(&l.span_id)),
        F::LogFlags => it.log.map(|l| Val::Int(l.flags.into())),
        F::LogEventName => it.log.map(|l| text(&l.event_name)),
        F::LogDroppedAttributesCount => it.log.map(|l| Val::Int(l.dropped_attributes_count.into())),
    };
    val.unwrap_or(Val::Nil)
}
