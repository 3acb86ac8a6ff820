//! Building the requests once: OTLP data of a given shape, encoded (protobuf or JSON),
//! compressed and framed for the transport, in a few variants that differ in their ids.

use std::io::Write;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use serde::Serialize;
use sluice_pipeline::codec::{encode_json, encode_proto};
use sluice_pipeline::{Logs, Metrics, Signal, Traces};

use crate::config::{Compression, Encoding, Shape, SignalArg};
use crate::error::LoadgenError;

/// Resources of one signal, so code that only encodes or counts need not know which.
pub enum Data {
    Traces(Vec<ResourceSpans>),
    Metrics(Vec<ResourceMetrics>),
    Logs(Vec<ResourceLogs>),
}

impl Data {
    /// OTLP protobuf of the export request.
    pub fn encode_proto(&self) -> Vec<u8> {
        fn enc<S: Signal>(r: &[S::Resource]) -> Vec<u8> {
            let mut out = Vec::new();
            encode_proto::<S>(r, &mut out);
            out
        }
        match self {
            Data::Traces(r) => enc::<Traces>(r),
            Data::Metrics(r) => enc::<Metrics>(r),
            Data::Logs(r) => enc::<Logs>(r),
        }
    }

    /// OTLP/JSON of the export request, as sluice writes it.
    pub fn encode_json(&self) -> Result<Vec<u8>, LoadgenError> {
        fn enc<S: Signal>(r: &[S::Resource]) -> Result<Vec<u8>, serde_json::Error> {
            let mut out = Vec::new();
            encode_json::<S>(r, &mut out)?;
            Ok(out)
        }
        let encoded = match self {
            Data::Traces(r) => enc::<Traces>(r),
            Data::Metrics(r) => enc::<Metrics>(r),
            Data::Logs(r) => enc::<Logs>(r),
        };
        encoded.map_err(|e| LoadgenError::Payload(format!("cannot encode OTLP/JSON: {e}")))
    }
}

/// A small deterministic generator: ids must differ between variants, not be unpredictable.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn string_value(s: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    })
}

fn kv(key: impl Into<String>, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: string_value(value),
        ..Default::default()
    }
}

/// A printable value of `size` bytes that differs per item, as real attribute values do.
fn text(seed: u64, size: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..size)
        .map(|i| ALPHABET[((seed as usize).wrapping_add(i * 7)) % ALPHABET.len()] as char)
        .collect()
}

fn item_attributes(shape: &Shape, item: usize) -> Vec<KeyValue> {
    (0..shape.attributes)
        .map(|a| {
            kv(
                format!("attr.{a}"),
                text((item * 31 + a) as u64, shape.value_size),
            )
        })
        .collect()
}

fn resource(index: usize) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", format!("loadgen-{index}")),
            kv("service.instance.id", format!("instance-{index}")),
            kv("host.name", "loadgen-host".to_string()),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "sluice-loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

/// Item counts per resource: `items` spread as evenly as possible over `resources`.
fn per_resource(items: usize, resources: usize) -> Vec<usize> {
    let resources = resources.clamp(1, items.max(1));
    (0..resources)
        .map(|r| items / resources + usize::from(r < items % resources))
        .collect()
}

const BASE_TIME_NS: u64 = 1_700_000_000_000_000_000;

/// The data of one request with `items` items; `variant` changes the ids.
pub fn generate(signal: SignalArg, shape: &Shape, items: usize, variant: u64) -> Data {
    let mut ids = Ids(0x9E37_79B9_7F4A_7C15 ^ variant.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let counts = per_resource(items, shape.resources);
    let mut item = 0usize;
    match signal {
        SignalArg::Traces => Data::Traces(
            counts
                .iter()
                .enumerate()
                .map(|(r, &n)| {
                    let trace_id = ids.bytes(16);
                    let spans = (0..n)
                        .map(|_| {
                            item += 1;
                            let start = BASE_TIME_NS + item as u64 * 1_000_000;
                            Span {
                                trace_id: trace_id.clone(),
                                span_id: ids.bytes(8),
                                parent_span_id: ids.bytes(8),
                                name: format!("operation-{}", item % 10),
                                kind: 2,
                                start_time_unix_nano: start,
                                end_time_unix_nano: start + 250_000,
                                attributes: item_attributes(shape, item),
                                status: Some(Status {
                                    code: status::StatusCode::Ok as i32,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }
                        })
                        .collect();
                    ResourceSpans {
                        resource: resource(r),
                        scope_spans: vec![ScopeSpans {
                            scope: scope(),
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
        ),
        SignalArg::Metrics => Data::Metrics(
            counts
                .iter()
                .enumerate()
                .map(|(r, &n)| {
                    let per_metric = shape.points_per_metric.max(1);
                    let mut metrics = Vec::new();
                    let mut left = n;
                    while left > 0 {
                        let take = left.min(per_metric);
                        left -= take;
                        let index = metrics.len();
                        let points: Vec<NumberDataPoint> = (0..take)
                            .map(|p| {
                                item += 1;
                                NumberDataPoint {
                                    attributes: item_attributes(shape, item),
                                    start_time_unix_nano: BASE_TIME_NS,
                                    time_unix_nano: BASE_TIME_NS + 10_000_000_000,
                                    value: Some(if index % 2 == 0 {
                                        number_data_point::Value::AsInt(
                                            (ids.next() % 1_000_000) as i64 + p as i64,
                                        )
                                    } else {
                                        number_data_point::Value::AsDouble(
                                            (ids.next() % 1_000_000) as f64 / 7.0,
                                        )
                                    }),
                                    ..Default::default()
                                }
                            })
                            .collect();
                        let data = if index % 2 == 0 {
                            metric::Data::Sum(Sum {
                                data_points: points,
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })
                        } else {
                            metric::Data::Gauge(Gauge {
                                data_points: points,
                            })
                        };
                        metrics.push(Metric {
                            name: format!("loadgen.metric.{index}"),
                            description: "generated by sluice-loadgen".into(),
                            unit: "1".into(),
                            data: Some(data),
                            ..Default::default()
                        });
                    }
                    ResourceMetrics {
                        resource: resource(r),
                        scope_metrics: vec![ScopeMetrics {
                            scope: scope(),
                            metrics,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
        ),
        SignalArg::Logs => Data::Logs(
            counts
                .iter()
                .enumerate()
                .map(|(r, &n)| {
                    let trace_id = ids.bytes(16);
                    let log_records = (0..n)
                        .map(|_| {
                            item += 1;
                            let time = BASE_TIME_NS + item as u64 * 1_000_000;
                            LogRecord {
                                time_unix_nano: time,
                                observed_time_unix_nano: time + 1_000,
                                severity_number: 9,
                                severity_text: "INFO".into(),
                                body: string_value(text(item as u64, shape.body_size)),
                                attributes: item_attributes(shape, item),
                                trace_id: trace_id.clone(),
                                span_id: ids.bytes(8),
                                ..Default::default()
                            }
                        })
                        .collect();
                    ResourceLogs {
                        resource: resource(r),
                        scope_logs: vec![ScopeLogs {
                            scope: scope(),
                            log_records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
        ),
    }
}

/// One request ready to send: the body as it goes on the wire.
#[derive(Clone)]
pub struct Prepared {
    pub body: Bytes,
    pub items: u64,
    /// Encoded size before compression and framing.
    pub encoded_len: usize,
}

/// Sizes of the requests, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PayloadInfo {
    /// Encoded (protobuf or JSON) size of one full request, before compression.
    pub encoded_bytes: usize,
    /// What goes on the wire for one full request (compressed, with gRPC framing).
    pub wire_bytes: usize,
}

pub fn compress(data: &[u8], compression: Compression) -> Result<Vec<u8>, LoadgenError> {
    let failed = |e: std::io::Error| LoadgenError::Payload(format!("cannot compress: {e}"));
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Zstd => zstd::encode_all(data, 3).map_err(failed),
    }
}

/// Encodes, compresses and frames one request.
pub fn prepare(
    signal: SignalArg,
    shape: &Shape,
    items: usize,
    variant: u64,
    encoding: Encoding,
    compression: Compression,
    grpc: bool,
) -> Result<Prepared, LoadgenError> {
    let data = generate(signal, shape, items, variant);
    let encoded = match encoding {
        Encoding::Proto => data.encode_proto(),
        Encoding::Json => data.encode_json()?,
    };
    let compressed = compress(&encoded, compression)?;
    let body = if grpc {
        let len = u32::try_from(compressed.len()).map_err(|_| {
            LoadgenError::Payload(format!(
                "a request of {} bytes is too large for gRPC",
                compressed.len()
            ))
        })?;
        let mut framed = Vec::with_capacity(compressed.len() + 5);
        framed.push(u8::from(compression != Compression::None));
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&compressed);
        framed
    } else {
        compressed
    };
    Ok(Prepared {
        body: Bytes::from(body),
        items: items as u64,
        encoded_len: encoded.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pipeline::codec::decode_proto;
    use sluice_pipeline::signal::item_count;

    fn shape() -> Shape {
        Shape {
            attributes: 3,
            value_size: 5,
            resources: 3,
            points_per_metric: 4,
            body_size: 20,
        }
    }

    #[test]
    fn every_signal_has_the_asked_item_count_and_round_trips() {
        for signal in [SignalArg::Traces, SignalArg::Metrics, SignalArg::Logs] {
            let data = generate(signal, &shape(), 17, 1);
            let bytes = data.encode_proto();
            let items = match signal {
                SignalArg::Traces => item_count::<Traces>(&decode_proto::<Traces>(&bytes).unwrap()),
                SignalArg::Metrics => {
                    item_count::<Metrics>(&decode_proto::<Metrics>(&bytes).unwrap())
                }
                SignalArg::Logs => item_count::<Logs>(&decode_proto::<Logs>(&bytes).unwrap()),
            };
            assert_eq!(items, 17, "{signal:?}");
            let json = data.encode_json().unwrap();
            assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
        }
    }

    #[test]
    fn variants_differ_and_grpc_frames_carry_the_length() {
        let a = prepare(
            SignalArg::Traces,
            &shape(),
            5,
            1,
            Encoding::Proto,
            Compression::None,
            true,
        )
        .unwrap();
        let b = prepare(
            SignalArg::Traces,
            &shape(),
            5,
            2,
            Encoding::Proto,
            Compression::None,
            true,
        )
        .unwrap();
        assert_ne!(a.body, b.body);
        assert_eq!(a.body[0], 0);
        let len = u32::from_be_bytes([a.body[1], a.body[2], a.body[3], a.body[4]]) as usize;
        assert_eq!(len + 5, a.body.len());
        let z = prepare(
            SignalArg::Logs,
            &shape(),
            5,
            1,
            Encoding::Proto,
            Compression::Zstd,
            false,
        )
        .unwrap();
        let plain = zstd::decode_all(&z.body[..]).unwrap();
        assert_eq!(plain.len(), z.encoded_len);
    }
}
