//! A Kafka message's payload into pipeline data. OTLP protobuf is checked, not decoded: it
//! travels as its bytes until a component looks inside (see `Batch::from_proto`).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_pipeline::codec::decode_json;
use sluice_pipeline::{Batch, Logs, Metrics, Signal, SignalKind, Traces};

use super::config::Encoding;

pub enum Decoded {
    Traces(Batch<Traces>),
    Metrics(Batch<Metrics>),
    Logs(Batch<Logs>),
}

fn otlp<S: Signal>(encoding: Encoding, payload: &[u8]) -> Result<Batch<S>, String> {
    match encoding {
        Encoding::OtlpProto => Batch::from_proto(Bytes::copy_from_slice(payload)),
        Encoding::OtlpJson => {
            decode_json::<S>(payload).map(|resources| Batch::new(resources, payload.len()))
        }
        Encoding::Raw | Encoding::Text => {
            return Err(format!(
                "`raw`/`text` encoding is for logs, not {}",
                S::KIND.as_str()
            ));
        }
    }
    .map_err(|e| e.to_string())
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
        SignalKind::Logs => match encoding {
            Encoding::Raw | Encoding::Text => Decoded::Logs(Batch::new(
                vec![one_record(encoding, payload, timestamp_ms)],
                payload.len(),
            )),
            _ => Decoded::Logs(otlp::<Logs>(encoding, payload)?),
        },
    })
}

/// A whole message as one log record, timed by the message's timestamp.
fn one_record(encoding: Encoding, payload: &[u8], timestamp_ms: Option<i64>) -> ResourceLogs {
    let body = match encoding {
        Encoding::Text => {
            any_value::Value::StringValue(String::from_utf8_lossy(payload).into_owned())
        }
        _ => any_value::Value::BytesValue(payload.to_vec()),
    };
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
