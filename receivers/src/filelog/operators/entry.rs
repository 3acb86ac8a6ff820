//! The record operators work on (stanza's "entry"): a body of any shape, attributes, resource,
//! the OTLP log fields, and where in which files it came from, so a checkpoint never passes a
//! line that an operator still holds.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

/// A value in a body, an attribute or the resource.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(Map),
}

pub type Map = BTreeMap<String, Value>;

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value as text the way stanza prints it (`fmt.Sprintf("%v")`), for parsers that
    /// take any scalar (hex ids, epoch times, regex cache keys).
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Str(s) => s.clone(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Array(_) | Value::Map(_) => self.to_json().to_string(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// JSON as stanza's parsers decode it: every number is a double, as Go's decoder gives.
    pub fn from_json(value: serde_json::Value) -> Value {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => {
                Value::Array(a.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(o) => Value::Map(
                o.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn into_any_value(self) -> AnyValue {
        let value = match self {
            Value::Null => return AnyValue { value: None },
            Value::Bool(b) => any_value::Value::BoolValue(b),
            Value::Int(i) => any_value::Value::IntValue(i),
            Value::Float(f) => any_value::Value::DoubleValue(f),
            Value::Str(s) => any_value::Value::StringValue(s),
            Value::Bytes(b) => any_value::Value::BytesValue(b),
            Value::Array(a) => any_value::Value::ArrayValue(ArrayValue {
                values: a.into_iter().map(Value::into_any_value).collect(),
            }),
            Value::Map(m) => any_value::Value::KvlistValue(KeyValueList {
                values: map_into_key_values(m),
            }),
        };
        AnyValue { value: Some(value) }
    }
}

/// `1` for 1.0 and `1.5` for 1.5, as Go's `%v` prints a float64.
pub fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

pub fn map_into_key_values(map: Map) -> Vec<KeyValue> {
    map.into_iter()
        .map(|(key, value)| KeyValue {
            key,
            value: Some(value.into_any_value()),
            ..KeyValue::default()
        })
        .collect()
}

/// A stretch of one file an entry was read from: bytes `start..end` of the file the reader
/// numbered `file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub file: u32,
    pub start: u64,
    pub end: u64,
}

/// Where an entry came from: nothing (made by an operator), one stretch of one file, or the
/// stretches of the entries an operator combined into it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    #[default]
    None,
    One(Span),
    Many(Vec<Span>),
}

impl Origin {
    pub fn spans(&self) -> &[Span] {
        match self {
            Origin::None => &[],
            Origin::One(span) => std::slice::from_ref(span),
            Origin::Many(spans) => spans,
        }
    }

    /// Adds `other`'s stretches (an entry combined into this one).
    pub fn absorb(&mut self, other: Origin) {
        let mut spans: Vec<Span> = self.spans().to_vec();
        spans.extend_from_slice(other.spans());
        *self = match spans.len() {
            0 => Origin::None,
            1 => Origin::One(spans[0]),
            _ => Origin::Many(spans),
        };
    }
}

/// Severity numbers (OpenTelemetry's 1..=24; 0 is unset, stanza's `default`).
pub const SEVERITY_NAMES: [&str; 25] = [
    "default", "trace", "trace2", "trace3", "trace4", "debug", "debug2", "debug3", "debug4",
    "info", "info2", "info3", "info4", "warn", "warn2", "warn3", "warn4", "error", "error2",
    "error3", "error4", "fatal", "fatal2", "fatal3", "fatal4",
];

/// The short display name OpenTelemetry recommends for a severity number (`ERROR`, `INFO3`).
pub fn severity_short_name(number: i32) -> String {
    SEVERITY_NAMES
        .get(number as usize)
        .map_or_else(String::new, |n| n.to_ascii_uppercase())
}

/// One log record on its way through the operators.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// Unix nanoseconds when it was read.
    pub observed: u64,
    /// Unix nanoseconds of the event, 0 when not parsed.
    pub timestamp: u64,
    pub body: Value,
    pub attributes: Map,
    pub resource: Map,
    pub severity: i32,
    pub severity_text: String,
    pub scope_name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub trace_flags: Vec<u8>,
    pub origin: Origin,
}

impl Entry {
    pub fn new(body: Value, observed: u64) -> Entry {
        Entry {
            observed,
            body,
            ..Entry::default()
        }
    }

    /// The OTLP record (its resource and scope go to the enclosing groups).
    pub fn into_log_record(self) -> LogRecord {
        let flags = self.trace_flags.first().map_or(0, |&f| u32::from(f));
        LogRecord {
            time_unix_nano: self.timestamp,
            observed_time_unix_nano: self.observed,
            severity_number: self.severity,
            severity_text: self.severity_text,
            body: match self.body {
                Value::Null => None,
                body => Some(body.into_any_value()),
            },
            attributes: map_into_key_values(self.attributes),
            flags,
            trace_id: self.trace_id,
            span_id: self.span_id,
            ..LogRecord::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_otlp_values() {
        let mut map = Map::new();
        map.insert("n".into(), Value::Float(1.5));
        map.insert(
            "list".into(),
            Value::Array(vec![Value::Int(1), Value::Str("a".into())]),
        );
        let any = Value::Map(map).into_any_value();
        let Some(any_value::Value::KvlistValue(kv)) = any.value else {
            panic!("not a map")
        };
        assert_eq!(kv.values.len(), 2);
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(3.25), "3.25");
        assert_eq!(severity_short_name(17), "ERROR");
        assert_eq!(severity_short_name(11), "INFO3");
    }

    #[test]
    fn origins_collect_the_stretches_of_combined_entries() {
        let mut a = Origin::One(Span {
            file: 1,
            start: 0,
            end: 10,
        });
        a.absorb(Origin::One(Span {
            file: 1,
            start: 10,
            end: 20,
        }));
        assert_eq!(a.spans().len(), 2);
        a.absorb(Origin::None);
        assert_eq!(a.spans().len(), 2);
    }
}
