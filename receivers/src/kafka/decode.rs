//! A Kafka message's payload into pipeline data. OTLP protobuf is checked, not decoded: it
//! travels as its bytes until a component looks inside (see `Batch::from_proto`).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_kafka_client::Encoding;
use sluice_pipeline::codec::decode_json;
use sluice_pipeline::{Batch, Logs, Metrics, Signal, SignalKind, Traces};

pub enum Decoded {
    Traces(Batch<Traces>),
    Metrics(Batch<Metrics>),
    Logs(Batch<Logs>),
}

impl Decoded {
    /// Sets string attributes on every resource, replacing one of the same key.
    pub fn put_resource_attributes(&mut self, attributes: &[(String, String)]) {
        if attributes.is_empty() {
            return;
        }
        match self {
            Decoded::Traces(b) => put::<Traces>(b, attributes),
            Decoded::Metrics(b) => put::<Metrics>(b, attributes),
            Decoded::Logs(b) => put::<Logs>(b, attributes),
        }
    }
}

fn put<S: Signal>(batch: &mut Batch<S>, attributes: &[(String, String)]) {
    for resource in batch.resources_mut() {
        let resource = S::resource_mut(resource).get_or_insert_with(Default::default);
        for (key, value) in attributes {
            let value = Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.clone())),
            });
            match resource.attributes.iter_mut().find(|kv| &kv.key == key) {
                Some(kv) => kv.value = value,
                None => resource.attributes.push(KeyValue {
                    key: key.clone(),
                    value,
                    ..Default::default()
                }),
            }
        }
    }
    batch.recount();
}

fn otlp<S: Signal>(encoding: Encoding, payload: &[u8]) -> Result<Batch<S>, String> {
    match encoding {
        Encoding::OtlpProto => {
            Batch::from_proto(Bytes::copy_from_slice(payload)).map_err(|e| e.to_string())
        }
        Encoding::OtlpJson => decode_json::<S>(payload)
            .map(|resources| Batch::new(resources, payload.len()))
            .map_err(|e| e.to_string()),
        other => Err(format!(
            "`{}` encoding is for logs, not {}",
            other.name(),
            S::KIND.as_str()
        )),
    }
}

pub fn decode(
    signal: SignalKind,
    encoding: Encoding,
    payload: &[u8],
    timestamp_ms: Option<i64>,
) -> Result<Decoded, String> {
    Ok(match signal {
        SignalKind::Traces => Decoded::Traces(otlp::<Traces>(encoding, payload)?),
        SignalKind::Metrics => Decoded::Metrics(otlp::<Metrics>(encoding, payload)?),
        SignalKind::Logs => {
            let body = match encoding {
                Encoding::OtlpProto | Encoding::OtlpJson => {
                    return Ok(Decoded::Logs(otlp::<Logs>(encoding, payload)?));
                }
                Encoding::Raw => any_value::Value::BytesValue(payload.to_vec()),
                Encoding::Text(charset) => any_value::Value::StringValue(charset.decode(payload)),
                Encoding::Json => json_body(payload)?,
            };
            Decoded::Logs(Batch::new(
                vec![one_record(body, timestamp_ms)],
                payload.len(),
            ))
        }
    })
}

/// A JSON object as a map body, as the OTel Collector builds it: numbers become doubles (Go
/// decodes every JSON number to float64), `null` an empty value.
fn json_body(payload: &[u8]) -> Result<any_value::Value, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|e| format!("not a JSON object: {e}"))?;
    Ok(kvlist(object))
}

fn kvlist(object: serde_json::Map<String, serde_json::Value>) -> any_value::Value {
    any_value::Value::KvlistValue(KeyValueList {
        values: object
            .into_iter()
            .map(|(key, v)| KeyValue {
                key,
                value: Some(any_value(v)),
                ..Default::default()
            })
            .collect(),
    })
}

fn any_value(v: serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match v {
        J::Null => None,
        J::Bool(b) => Some(any_value::Value::BoolValue(b)),
        J::Number(n) => n.as_f64().map(any_value::Value::DoubleValue),
        J::String(s) => Some(any_value::Value::StringValue(s)),
        J::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.into_iter().map(any_value).collect(),
        })),
        J::Object(object) => Some(kvlist(object)),
    };
    AnyValue { value }
}

/// A whole message as one log record, timed by the message's timestamp.
fn one_record(body: any_value::Value, timestamp_ms: Option<i64>) -> ResourceLogs {
    let observed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let time = timestamp_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| ms.saturating_mul(1_000_000))
        .unwrap_or(0);
    ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                body: Some(AnyValue { value: Some(body) }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_kafka_client::Side;

    fn logs(encoding: &str, payload: &[u8]) -> Vec<ResourceLogs> {
        let encoding = Encoding::parse(encoding, SignalKind::Logs, Side::Receiver).unwrap();
        match decode(SignalKind::Logs, encoding, payload, Some(1_700_000_000_000)).unwrap() {
            Decoded::Logs(mut b) => b.take_resources(),
            _ => unreachable!(),
        }
    }

    fn body(r: &[ResourceLogs]) -> any_value::Value {
        r[0].scope_logs[0].log_records[0]
            .body
            .clone()
            .unwrap()
            .value
            .unwrap()
    }

    #[test]
    fn json_logs_become_a_map_body_with_numbers_as_doubles() {
        let r = logs(
            "json",
            br#"{"msg":"hi","n":3,"ok":true,"none":null,"tags":["a",1.5],"in":{"k":"v"}}"#,
        );
        let any_value::Value::KvlistValue(map) = body(&r) else {
            panic!("not a map");
        };
        let get = |k: &str| {
            map.values
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .unwrap()
                .value
        };
        assert_eq!(get("msg"), Some(any_value::Value::StringValue("hi".into())));
        assert_eq!(get("n"), Some(any_value::Value::DoubleValue(3.0)));
        assert_eq!(get("ok"), Some(any_value::Value::BoolValue(true)));
        assert_eq!(get("none"), None);
        assert!(
            matches!(get("tags"), Some(any_value::Value::ArrayValue(a)) if a.values.len() == 2)
        );
        assert!(matches!(get("in"), Some(any_value::Value::KvlistValue(_))));
        // Not an object: undecodable, as in the OTel Collector.
        let encoding = Encoding::parse("json", SignalKind::Logs, Side::Receiver).unwrap();
        assert!(decode(SignalKind::Logs, encoding, b"[1,2]", None).is_err());
    }

    #[test]
    fn text_and_raw_bodies() {
        assert_eq!(
            body(&logs("text_shift_jis", b"\x82\xa0")),
            any_value::Value::StringValue("あ".into())
        );
        assert_eq!(
            body(&logs("raw", b"\xffbytes")),
            any_value::Value::BytesValue(b"\xffbytes".to_vec())
        );
        assert_eq!(
            logs("raw", b"x")[0].scope_logs[0].log_records[0].time_unix_nano,
            1_700_000_000_000_000_000
        );
    }

    #[test]
    fn header_attributes_are_put_on_every_resource() {
        let mut payload = Vec::new();
        sluice_pipeline::codec::encode_proto::<Logs>(
            &[
                ResourceLogs::default(),
                ResourceLogs {
                    resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                        attributes: vec![KeyValue {
                            key: "kafka.header.tenant".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("old".into())),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            &mut payload,
        );
        let mut d = decode(SignalKind::Logs, Encoding::OtlpProto, &payload, None).unwrap();
        d.put_resource_attributes(&[("kafka.header.tenant".into(), "acme".into())]);
        let Decoded::Logs(mut b) = d else {
            unreachable!()
        };
        for r in b.take_resources() {
            let attrs = r.resource.unwrap().attributes;
            assert_eq!(attrs.len(), 1);
            assert_eq!(
                attrs[0].value.clone().unwrap().value,
                Some(any_value::Value::StringValue("acme".into()))
            );
        }
    }
}
