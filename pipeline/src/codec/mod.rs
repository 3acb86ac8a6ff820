//! OTLP wire codecs: protobuf, and OTLP/JSON as the OTLP specification defines it (hex trace
//! and span ids, 64-bit integers as decimal strings on output and either form on input, enums
//! as integers, lowerCamelCase keys, unknown fields ignored). Receivers decode with these,
//! exporters encode.

use prost::Message;

use crate::admission::{Permit, Refusal};
use crate::signal::Signal;

mod cut;
#[cfg(test)]
mod fuzz;
mod ids;
mod json_bound;
mod nonfinite;
mod nonfinite_decode;
#[cfg(test)]
mod random_requests;
mod scan;

pub use cut::cut_request;
pub use ids::{IdError, check_ids};
pub use json_bound::{JsonBound, json_decoded_bound};
pub use nonfinite::NonFinite;
pub use scan::{Scanned, WireError, scan};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid OTLP protobuf: {0}")]
    Proto(#[from] prost::DecodeError),
    #[error("invalid OTLP protobuf: {0}")]
    Wire(#[from] WireError),
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid OTLP/JSON: {0}")]
    Id(#[from] IdError),
    #[error(
        "OTLP/JSON document of {0} bytes uses NaN/Infinity strings, which sluice accepts only in \
         documents up to 1 MiB; send protobuf or smaller requests"
    )]
    TooLargeForSlowPath(usize),
    /// The admission budget refused the memory decoding would take.
    #[error("{0}")]
    Refused(Refusal),
}

/// Largest OTLP/JSON document decoded through a generic JSON tree (see `decode_json`).
const SLOW_PATH_LIMIT: usize = 1024 * 1024;

pub fn decode_proto<S: Signal>(bytes: &[u8]) -> Result<Vec<S::Resource>, DecodeError> {
    Ok(S::from_request(S::Request::decode(bytes)?))
}

/// Decodes an OTLP/JSON export request of this signal; ids of the wrong length are refused
/// (see [`check_ids`]).
pub fn decode_json<S: Signal>(bytes: &[u8]) -> Result<Vec<S::Resource>, DecodeError> {
    let resources = decode_json_unchecked::<S>(bytes, || Ok(()))?;
    check_ids::<S>(&resources)?;
    Ok(resources)
}

/// [`decode_json`] for a receiver holding `permit`, which already holds
/// [`JsonBound::decoded`] of [`json_decoded_bound`]: before a document is decoded through the
/// generic JSON tree (only small ones can be), the tree's part (`tree`) is reserved too,
/// and given back once the tree is gone.
pub fn decode_json_reserving<S: Signal>(
    bytes: &[u8],
    tree: usize,
    permit: &mut Permit,
) -> Result<Vec<S::Resource>, DecodeError> {
    let before = permit.bytes();
    let decoded =
        decode_json_unchecked::<S>(bytes, || permit.grow(tree).map_err(DecodeError::Refused));
    permit.shrink_to(before);
    let resources = decoded?;
    check_ids::<S>(&resources)?;
    Ok(resources)
}

/// `before_tree` is called before a generic JSON tree is built; an error stops decoding.
fn decode_json_unchecked<S: Signal>(
    bytes: &[u8],
    before_tree: impl FnOnce() -> Result<(), DecodeError>,
) -> Result<Vec<S::Resource>, DecodeError> {
    // NaN and infinities are strings in OTLP/JSON, which the serde types do not take (and
    // would drop silently): such documents always go the slow way below.
    let non_finite = nonfinite_decode::mentions_non_finite(bytes);
    let first = if non_finite {
        None
    } else {
        match serde_json::from_slice::<S::Request>(bytes) {
            Ok(request) => return Ok(S::from_request(request)),
            Err(e) => Some(e),
        }
    };
    // `opentelemetry-proto`'s serde types require a few fields that proto3 JSON lets a sender
    // omit or send as `null`: the `values` of an empty `arrayValue`/`kvlistValue` (every
    // protobuf JSON printer writes an empty list as `{"arrayValue":{}}`) and a KeyValue's
    // `key`. Fill those in and decode once more; well-formed input never pays for this.
    // The slow way builds a generic JSON tree, which can take ~100x the text's size for
    // adversarial input (many tiny objects): only small documents may take it.
    if bytes.len() > SLOW_PATH_LIMIT {
        return Err(match first {
            Some(e) => e.into(),
            None => DecodeError::TooLargeForSlowPath(bytes.len()),
        });
    }
    before_tree()?;
    let mut doc = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(doc) => doc,
        Err(e) => return Err(first.unwrap_or(e).into()),
    };
    fill_omitted_fields(&mut doc);
    let marked = non_finite && nonfinite_decode::mark(&mut doc);
    match serde_json::from_value::<S::Request>(doc) {
        Ok(request) => {
            let mut resources = S::from_request(request);
            if marked {
                nonfinite_decode::restore::<S>(&mut resources);
            }
            Ok(resources)
        }
        Err(e) => Err(first.unwrap_or(e).into()),
    }
}

/// Drops `null` members (proto3 JSON: null means the default) and adds the fields that the
/// serde types cannot default: `values` of `arrayValue`/`kvlistValue`, `key` of a KeyValue.
fn fill_omitted_fields(v: &mut serde_json::Value) {
    use serde_json::Value;
    fn set_if_missing(object: &mut Value, field: &str, default: Value) {
        if let Value::Object(map) = object
            && map.get(field).is_none_or(Value::is_null)
        {
            map.insert(field.to_string(), default);
        }
    }
    fn key_values(list: &mut Value) {
        if let Value::Array(items) = list {
            for kv in items {
                set_if_missing(kv, "key", Value::String(String::new()));
            }
        }
    }
    match v {
        Value::Object(map) => {
            map.retain(|_, child| !child.is_null());
            for (field, child) in map.iter_mut() {
                match field.as_str() {
                    "arrayValue" => set_if_missing(child, "values", Value::Array(Vec::new())),
                    "kvlistValue" => {
                        set_if_missing(child, "values", Value::Array(Vec::new()));
                        if let Some(values) = child.get_mut("values") {
                            key_values(values);
                        }
                    }
                    "attributes" | "filteredAttributes" | "metadata" => key_values(child),
                    _ => {}
                }
                fill_omitted_fields(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(fill_omitted_fields),
        _ => {}
    }
}

/// Encodes resources as the signal's export request (= its `*Data` message) without copying
/// them into a request first: the resources are field 1 of every OTLP request.
pub fn encode_proto<S: Signal>(resources: &[S::Resource], out: &mut Vec<u8>) {
    for resource in resources {
        prost::encoding::message::encode(1, resource, out);
    }
}

/// At least the heap memory `resources` take, by the scan's measure
/// ([`Scanned::decoded_bytes`]): for data decoded from another form (OTLP/JSON), to account
/// for it as protobuf data is accounted before it is decoded. `None` if their protobuf
/// encoding does not pass the scan (nested deeper than protobuf decoding allows, which JSON
/// decoding does not limit as tightly).
pub fn estimate_decoded<S: Signal>(resources: &[S::Resource]) -> Option<usize> {
    let mut encoded = Vec::with_capacity(encoded_proto_len::<S>(resources));
    encode_proto::<S>(resources, &mut encoded);
    scan(S::KIND, &encoded).ok().map(|s| s.decoded_bytes)
}

pub fn encoded_proto_len<S: Signal>(resources: &[S::Resource]) -> usize {
    resources
        .iter()
        .map(|r| prost::encoding::message::encoded_len(1, r))
        .sum()
}

/// Writes `{"resourceSpans":[...]}` (or metrics/logs) on one line, without a trailing newline.
pub fn encode_json<S: Signal>(
    resources: &[S::Resource],
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(S::JSON_KEY.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, &NonFinite(resource))?;
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Logs, Metrics, Traces};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use serde_json::json;

    fn span() -> Span {
        Span {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            name: "op".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_001_000_000_000,
            attributes: vec![KeyValue {
                key: "big".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(9_007_199_254_740_993)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn traces() -> Vec<ResourceSpans> {
        vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span()],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn json_output_follows_the_otlp_rules() {
        let mut out = Vec::new();
        encode_json::<Traces>(&traces(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(s["spanId"], "0102030405060708");
        assert_eq!(s["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["attributes"][0]["value"]["intValue"], "9007199254740993");
        assert_eq!(decode_json::<Traces>(&out).unwrap(), traces());
    }

    #[test]
    fn json_input_accepts_numbers_or_strings_and_ignores_unknown_fields() {
        let doc = json!({
            "resourceSpans": [{
                "futureField": {"x": 1},
                "scopeSpans": [{
                    "spans": [{
                        "traceId": "0102030405060708090A0B0C0D0E0F10",
                        "spanId": "0102030405060708",
                        "name": "op",
                        "kind": 2,
                        "startTimeUnixNano": 1700000000123456789u64,
                        "endTimeUnixNano": "1700000001000000000",
                        "attributes": [{"key": "big", "value": {"intValue": 9007199254740993u64}}],
                        "unknown": [1, 2, 3]
                    }]
                }]
            }]
        });
        let decoded = decode_json::<Traces>(doc.to_string().as_bytes()).unwrap();
        assert_eq!(decoded, traces());
    }

    #[test]
    fn json_input_may_omit_empty_lists_and_keys_or_send_null() {
        let doc = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
            "timeUnixNano": null,
            "body": {"arrayValue": {}},
            "attributes": [
                {"key": "map", "value": {"kvlistValue": {"values": null}}},
                {"value": {"kvlistValue": {"values": [{"value": {"arrayValue": {}}}]}}}
            ]
        }]}]}]}"#;
        let logs = decode_json::<Logs>(doc.as_bytes()).unwrap();
        let record = &logs[0].scope_logs[0].log_records[0];
        let empty_list = Value::ArrayValue(Default::default());
        assert_eq!(
            record.body.as_ref().unwrap().value,
            Some(empty_list.clone())
        );
        assert_eq!(
            record.attributes[0].value.as_ref().unwrap().value,
            Some(Value::KvlistValue(Default::default()))
        );
        assert_eq!(record.attributes[1].key, "");
        let Some(Value::KvlistValue(inner)) = &record.attributes[1].value.as_ref().unwrap().value
        else {
            panic!("{record:?}")
        };
        assert_eq!(inner.values[0].key, "");
        assert_eq!(
            inner.values[0].value.as_ref().unwrap().value,
            Some(empty_list)
        );
        // Still an error when the input is wrong.
        assert!(decode_json::<Logs>(br#"{"resourceLogs":[{"scopeLogs":7}]}"#).is_err());
    }

    #[test]
    fn json_non_finite_doubles_read_back_everywhere() {
        let doc = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name": "g", "gauge": {"dataPoints": [
                {"asDouble": "NaN", "exemplars": [{"asDouble": "-Infinity"}],
                 "attributes": [{"key": "d", "value": {"doubleValue": "Infinity"}},
                                {"key": "s", "value": {"stringValue": "NaN"}}]},
                {"asDouble": 1.5}
            ]}},
            {"name": "h", "histogram": {"dataPoints": [
                {"sum": "NaN", "min": "-Infinity", "max": "Infinity", "explicitBounds": [1, "Infinity"]}
            ]}},
            {"name": "s", "summary": {"dataPoints": [
                {"sum": "Infinity", "quantileValues": [{"quantile": 0.5, "value": "NaN"}]}
            ]}}
        ]}]}]}"#;
        let metrics = decode_json::<crate::signal::Metrics>(doc.as_bytes()).unwrap();
        use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric, number_data_point};
        let m = &metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Gauge(g)) = &m[0].data else {
            panic!("{m:?}")
        };
        assert!(
            matches!(g.data_points[0].value, Some(number_data_point::Value::AsDouble(v)) if v.is_nan())
        );
        assert_eq!(
            g.data_points[0].exemplars[0].value,
            Some(exemplar::Value::AsDouble(f64::NEG_INFINITY))
        );
        let attrs = &g.data_points[0].attributes;
        assert_eq!(
            attrs[0].value.as_ref().unwrap().value,
            Some(Value::DoubleValue(f64::INFINITY))
        );
        assert_eq!(
            attrs[1].value.as_ref().unwrap().value,
            Some(Value::StringValue("NaN".into()))
        );
        assert_eq!(
            g.data_points[1].value,
            Some(number_data_point::Value::AsDouble(1.5))
        );
        let Some(metric::Data::Histogram(h)) = &m[1].data else {
            panic!("{m:?}")
        };
        let p = &h.data_points[0];
        assert!(p.sum.unwrap().is_nan());
        assert_eq!(
            (p.min, p.max),
            (Some(f64::NEG_INFINITY), Some(f64::INFINITY))
        );
        assert_eq!(p.explicit_bounds, [1.0, f64::INFINITY]);
        let Some(metric::Data::Summary(s)) = &m[2].data else {
            panic!("{m:?}")
        };
        assert_eq!(s.data_points[0].sum, f64::INFINITY);
        assert!(s.data_points[0].quantile_values[0].value.is_nan());

        // What the encoder writes reads back as it was.
        let logs = vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::DoubleValue(f64::NEG_INFINITY)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let mut out = Vec::new();
        encode_json::<Logs>(&logs, &mut out).unwrap();
        assert_eq!(decode_json::<Logs>(&out).unwrap(), logs);
    }

    #[test]
    fn proto_round_trip_without_copying_into_a_request() {
        let logs = vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_number: 9,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let mut out = Vec::new();
        encode_proto::<Logs>(&logs, &mut out);
        assert_eq!(out.len(), encoded_proto_len::<Logs>(&logs));
        assert_eq!(decode_proto::<Logs>(&out).unwrap(), logs);
        assert!(decode_proto::<Metrics>(b"\xff\xff\xff").is_err());
    }
}
