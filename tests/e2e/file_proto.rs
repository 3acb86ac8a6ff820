//! The file exporter with `format: proto`: every batch is one `TracesData`/`MetricsData`/
//! `LogsData` message preceded by its length as a 4-byte big-endian integer. Known requests go
//! in over OTLP/HTTP protobuf; the file must hold exactly those messages, byte for byte.

use crate::common;

use std::time::{Duration, Instant};

use common::{Collector, file_pipeline_config};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, LogsData, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exponential_histogram_data_point, metric, number_data_point,
    summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, TracesData, span, status,
};
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Known requests

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(v),
        ..Default::default()
    }
}

fn every_kind_of_attribute() -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        kv("s", StringValue("text".into())),
        kv("b", BoolValue(false)),
        kv("i", IntValue(i64::MIN)),
        kv("d", DoubleValue(-0.0)),
        kv("bytes", BytesValue(vec![0, 0xff, 0x10])),
        kv(
            "array",
            ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(IntValue(1)),
                    },
                    AnyValue { value: None },
                ],
            }),
        ),
        kv(
            "map",
            KvlistValue(KeyValueList {
                values: vec![kv("inner", DoubleValue(1e300))],
            }),
        ),
        KeyValue {
            key: "empty".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ]
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv(
                "service.name",
                any_value::Value::StringValue(service.into()),
            ),
            kv("host.id", any_value::Value::IntValue(12345)),
        ],
        dropped_attributes_count: 2,
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "4.5.6".into(),
        attributes: vec![kv("scope.flag", any_value::Value::BoolValue(true))],
        dropped_attributes_count: 1,
    })
}

fn traces_request(name: &str) -> ExportTraceServiceRequest {
    let trace_id: Vec<u8> = (1..=16).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("traced"),
            schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
            scope_spans: vec![ScopeSpans {
                scope: scope("e2e.proto.traces"),
                schema_url: "https://opentelemetry.io/schemas/1.43.0".into(),
                spans: vec![
                    Span {
                        trace_id: trace_id.clone(),
                        span_id: vec![0xa1; 8],
                        trace_state: "k=v".into(),
                        flags: 0x301,
                        name: name.into(),
                        kind: span::SpanKind::Producer as i32,
                        start_time_unix_nano: 1_700_000_000_000_000_001,
                        end_time_unix_nano: u64::MAX,
                        attributes: every_kind_of_attribute(),
                        dropped_attributes_count: 3,
                        events: vec![span::Event {
                            time_unix_nano: 1_700_000_000_000_000_002,
                            name: "event".into(),
                            attributes: vec![kv("e", any_value::Value::IntValue(-1))],
                            dropped_attributes_count: 4,
                        }],
                        dropped_events_count: 5,
                        links: vec![span::Link {
                            trace_id: vec![0xff; 16],
                            span_id: vec![0x01; 8],
                            trace_state: "a=b".into(),
                            attributes: vec![kv("l", any_value::Value::StringValue("x".into()))],
                            dropped_attributes_count: 6,
                            flags: 1,
                        }],
                        dropped_links_count: 7,
                        status: Some(Status {
                            message: "failed".into(),
                            code: status::StatusCode::Error as i32,
                        }),
                        ..Default::default()
                    },
                    Span {
                        trace_id,
                        span_id: vec![0xb2; 8],
                        parent_span_id: vec![0xa1; 8],
                        name: format!("{name}/child"),
                        kind: span::SpanKind::Consumer as i32,
                        start_time_unix_nano: 1_700_000_000_000_000_010,
                        end_time_unix_nano: 1_700_000_000_000_000_020,
                        ..Default::default()
                    },
                ],
            }],
        }],
    }
}

fn metrics_request() -> ExportMetricsServiceRequest {
    let (t0, t1) = (1_700_000_000_000_000_000, 1_700_000_060_000_000_000);
    let point = |v: number_data_point::Value| NumberDataPoint {
        attributes: vec![kv("cpu", any_value::Value::IntValue(3))],
        start_time_unix_nano: t0,
        time_unix_nano: t1,
        value: Some(v),
        ..Default::default()
    };
    let metric = |name: &str, data: metric::Data| Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "By".into(),
        data: Some(data),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("metered"),
            schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("e2e.proto.metrics"),
                schema_url: "https://opentelemetry.io/schemas/1.42.0".into(),
                metrics: vec![
                    metric(
                        "gauge",
                        metric::Data::Gauge(Gauge {
                            data_points: vec![
                                point(number_data_point::Value::AsDouble(f64::NAN)),
                                point(number_data_point::Value::AsDouble(f64::INFINITY)),
                                point(number_data_point::Value::AsInt(i64::MAX)),
                            ],
                        }),
                    ),
                    metric(
                        "sum",
                        metric::Data::Sum(Sum {
                            data_points: vec![point(number_data_point::Value::AsInt(12))],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "histogram",
                        metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                start_time_unix_nano: t0,
                                time_unix_nano: t1,
                                count: 6,
                                sum: Some(1720.5),
                                bucket_counts: vec![1, 2, 2, 1],
                                explicit_bounds: vec![10.0, 100.0, 1000.0],
                                min: Some(5.0),
                                max: Some(1500.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        }),
                    ),
                    metric(
                        "exponential",
                        metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                start_time_unix_nano: t0,
                                time_unix_nano: t1,
                                count: 10,
                                sum: Some(55.5),
                                scale: -2,
                                zero_count: 1,
                                zero_threshold: 1e-9,
                                positive: Some(exponential_histogram_data_point::Buckets {
                                    offset: -3,
                                    bucket_counts: vec![3, 4],
                                }),
                                negative: Some(exponential_histogram_data_point::Buckets {
                                    offset: 2,
                                    bucket_counts: vec![2],
                                }),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        }),
                    ),
                    metric(
                        "summary",
                        metric::Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                start_time_unix_nano: t0,
                                time_unix_nano: t1,
                                count: 100,
                                sum: 2500.5,
                                quantile_values: vec![
                                    summary_data_point::ValueAtQuantile {
                                        quantile: 0.5,
                                        value: 20.5,
                                    },
                                    summary_data_point::ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 99.0,
                                    },
                                ],
                                ..Default::default()
                            }],
                        }),
                    ),
                ],
            }],
        }],
    }
}

fn logs_request() -> ExportLogsServiceRequest {
    use any_value::Value::*;
    let bodies = [
        Some(StringValue("line".into())),
        Some(BoolValue(true)),
        Some(IntValue(-5)),
        Some(DoubleValue(6.25)),
        Some(BytesValue(vec![0xca, 0xfe])),
        Some(ArrayValue(
            opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![AnyValue {
                    value: Some(StringValue("in array".into())),
                }],
            },
        )),
        Some(KvlistValue(KeyValueList {
            values: vec![kv("k", IntValue(1))],
        })),
        None,
    ];
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("logging"),
            schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
            scope_logs: vec![ScopeLogs {
                scope: scope("e2e.proto.logs"),
                schema_url: "https://opentelemetry.io/schemas/1.41.0".into(),
                log_records: bodies
                    .into_iter()
                    .enumerate()
                    .map(|(i, body)| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        observed_time_unix_nano: 1_700_000_001_000_000_000 + i as u64,
                        severity_number: 1 + 3 * i as i32,
                        severity_text: format!("S{i}"),
                        body: body.map(|v| AnyValue { value: Some(v) }),
                        attributes: if i == 0 {
                            every_kind_of_attribute()
                        } else {
                            vec![kv("seq", IntValue(i as i64))]
                        },
                        dropped_attributes_count: i as u32,
                        flags: 1,
                        trace_id: vec![i as u8; 16],
                        span_id: vec![0x0f; 8],
                        event_name: format!("event.{i}"),
                    })
                    .collect(),
            }],
        }],
    }
}

// ---------------------------------------------------------------------------------------------
// Sending and reading

fn post_proto(c: &Collector, path: &str, body: Vec<u8>) {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", c.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(status, 200, "POST {path}: {text}\nlog:\n{}", c.logs());
}

/// Splits length-prefixed messages; returns them and the number of bytes after the last
/// complete one.
fn split_messages(mut bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut messages = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        if bytes.len() < 4 + len {
            break;
        }
        messages.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    (messages, bytes.len())
}

/// The messages in `out.pb`, once there are `n` complete ones and nothing after them.
fn messages(c: &Collector, n: usize) -> Vec<Vec<u8>> {
    let path = c.path("out.pb");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let (messages, rest) = split_messages(&bytes);
        if messages.len() >= n && rest == 0 {
            assert_eq!(messages.len(), n, "more messages than requests sent");
            return messages;
        }
        if Instant::now() > deadline {
            panic!(
                "{} holds {} complete messages and {rest} more bytes, expected {n}; log:\n{}",
                path.display(),
                messages.len(),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn proto_file_holds_each_request_as_a_length_prefixed_data_message() {
    let mut c = Collector::start(&file_pipeline_config("proto", ""), &[]);
    let traces = traces_request("first");
    let metrics = metrics_request();
    let logs = logs_request();
    let more_traces = traces_request("second");

    // One request at a time, each waited for, so the file's order is known.
    post_proto(&c, "/v1/traces", traces.encode_to_vec());
    messages(&c, 1);
    post_proto(&c, "/v1/metrics", metrics.encode_to_vec());
    messages(&c, 2);
    post_proto(&c, "/v1/logs", logs.encode_to_vec());
    messages(&c, 3);
    post_proto(&c, "/v1/traces", more_traces.encode_to_vec());
    let written = messages(&c, 4);

    // Each message is the signal's *Data message, and decodes to exactly what was sent.
    let traces_data = TracesData::decode(written[0].as_slice()).unwrap();
    assert_eq!(traces_data.resource_spans, traces.resource_spans);
    let metrics_data = MetricsData::decode(written[1].as_slice()).unwrap();
    // NaN is not equal to itself: compare the encoding, then the fields around it.
    assert_eq!(metrics_data.encode_to_vec(), metrics.encode_to_vec());
    let logs_data = LogsData::decode(written[2].as_slice()).unwrap();
    assert_eq!(logs_data.resource_logs, logs.resource_logs);
    let more_data = TracesData::decode(written[3].as_slice()).unwrap();
    assert_eq!(more_data.resource_spans, more_traces.resource_spans);
    // The same bytes as the requests, as field 1 of both messages is the resource list.
    assert_eq!(written[0], traces.encode_to_vec());
    assert_eq!(written[2], logs.encode_to_vec());

    // Spot checks of what the comparisons above rely on.
    let span = &traces_data.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "first");
    assert_eq!(span.end_time_unix_nano, u64::MAX);
    assert_eq!(span.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(span.links[0].trace_id, vec![0xff; 16]);
    assert_eq!(span.events[0].attributes[0].key, "e");
    assert_eq!(
        traces_data.resource_spans[0].scope_spans[0].spans[1].parent_span_id,
        vec![0xa1; 8]
    );
    let scope_metrics = &metrics_data.resource_metrics[0].scope_metrics[0];
    assert_eq!(
        scope_metrics.scope.as_ref().unwrap().name,
        "e2e.proto.metrics"
    );
    let Some(metric::Data::Gauge(gauge)) = &scope_metrics.metrics[0].data else {
        panic!("{:?}", scope_metrics.metrics[0]);
    };
    let gauge_values: Vec<_> = gauge.data_points.iter().map(|p| p.value).collect();
    assert!(matches!(
        gauge_values[0],
        Some(number_data_point::Value::AsDouble(v)) if v.is_nan()
    ));
    assert_eq!(
        gauge_values[1..],
        [
            Some(number_data_point::Value::AsDouble(f64::INFINITY)),
            Some(number_data_point::Value::AsInt(i64::MAX))
        ]
    );
    let Some(metric::Data::Histogram(histogram)) = &scope_metrics.metrics[2].data else {
        panic!("{:?}", scope_metrics.metrics[2]);
    };
    assert_eq!(histogram.data_points[0].bucket_counts, [1, 2, 2, 1]);
    assert_eq!(
        histogram.data_points[0].explicit_bounds,
        [10.0, 100.0, 1000.0]
    );
    let records = &logs_data.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 8);
    assert_eq!(
        records[4].body.as_ref().unwrap().value,
        Some(any_value::Value::BytesValue(vec![0xca, 0xfe]))
    );
    assert_eq!(records[7].body, None);
    assert_eq!(
        more_data.resource_spans[0].scope_spans[0].spans[0].name,
        "second"
    );

    // After a clean shutdown the file is still exactly those four messages.
    assert!(c.stop().success(), "log:\n{}", c.logs());
    let bytes = std::fs::read(c.path("out.pb")).unwrap();
    let (after_stop, rest) = split_messages(&bytes);
    assert_eq!(rest, 0);
    assert_eq!(after_stop, written);
}
