//! sluice → sluice: an upstream collector A receives hand-built OTLP requests and forwards them
//! with its `otlp_http` (protobuf and JSON) or `otlp` (gRPC) exporter to a downstream collector
//! B, which writes what it receives to files. What B writes must equal, field by field, what A
//! received (and what A wrote to its own files). Also: A's queue holds data while B is down and
//! delivers it once B is up; TLS with a test CA (server name override, mutual TLS, and the
//! failures when the CA or the client certificate is missing).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Collector, free_port};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point, metric,
    number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Known requests: every field set, values at the edges of their types.

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn every_kind_of_attribute() -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        kv("s", StringValue("text with \"quotes\" and ünïcode".into())),
        kv("b", BoolValue(false)),
        kv("i.min", IntValue(i64::MIN)),
        kv("i.max", IntValue(i64::MAX)),
        kv("d", DoubleValue(-0.0)),
        kv("d.big", DoubleValue(1e300)),
        kv("bytes", BytesValue(vec![0, 0xff, 0x10])),
        kv(
            "array",
            ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(IntValue(1)),
                    },
                    AnyValue {
                        value: Some(StringValue("two".into())),
                    },
                ],
            }),
        ),
        kv(
            "map",
            KvlistValue(KeyValueList {
                values: vec![
                    kv("inner", DoubleValue(2.5)),
                    kv(
                        "nested",
                        KvlistValue(KeyValueList {
                            values: vec![kv("n", IntValue(-1))],
                        }),
                    ),
                ],
            }),
        ),
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
    let spans = vec![
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
            status: Some(Status {
                message: String::new(),
                code: status::StatusCode::Ok as i32,
            }),
            ..Default::default()
        },
    ];
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("traced"),
                schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
                scope_spans: vec![ScopeSpans {
                    scope: scope("e2e.chain.traces"),
                    schema_url: "https://opentelemetry.io/schemas/1.43.0".into(),
                    spans,
                }],
            },
            // A second resource with a bare scope and a minimal span.
            ResourceSpans {
                resource: resource("other"),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    schema_url: String::new(),
                    spans: vec![Span {
                        trace_id: vec![0x42; 16],
                        span_id: vec![0x43; 8],
                        name: "bare".into(),
                        ..Default::default()
                    }],
                }],
                ..Default::default()
            },
        ],
    }
}

fn metrics_request() -> ExportMetricsServiceRequest {
    let (t0, t1) = (1_700_000_000_000_000_000, 1_700_000_060_000_000_000);
    let exemplar = Exemplar {
        filtered_attributes: vec![kv("user", any_value::Value::StringValue("u1".into()))],
        time_unix_nano: t1 - 5,
        span_id: vec![0x0a; 8],
        trace_id: vec![0x0b; 16],
        value: Some(exemplar::Value::AsDouble(0.125)),
    };
    let point = |v: number_data_point::Value| NumberDataPoint {
        attributes: vec![kv("cpu", any_value::Value::IntValue(3))],
        start_time_unix_nano: t0,
        time_unix_nano: t1,
        value: Some(v),
        flags: 1,
        ..Default::default()
    };
    let metric = |name: &str, data: metric::Data| Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "By".into(),
        data: Some(data),
        metadata: vec![kv("meta", any_value::Value::StringValue("m".into()))],
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("metered"),
            schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("e2e.chain.metrics"),
                schema_url: "https://opentelemetry.io/schemas/1.42.0".into(),
                metrics: vec![
                    metric(
                        "gauge",
                        metric::Data::Gauge(Gauge {
                            data_points: vec![
                                point(number_data_point::Value::AsDouble(f64::NAN)),
                                point(number_data_point::Value::AsDouble(f64::NEG_INFINITY)),
                                point(number_data_point::Value::AsDouble(-0.0)),
                                point(number_data_point::Value::AsInt(i64::MAX)),
                            ],
                        }),
                    ),
                    metric(
                        "sum",
                        metric::Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                exemplars: vec![exemplar.clone()],
                                ..point(number_data_point::Value::AsInt(12))
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "histogram",
                        metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![kv(
                                    "route",
                                    any_value::Value::StringValue("/a".into()),
                                )],
                                start_time_unix_nano: t0,
                                time_unix_nano: t1,
                                count: 6,
                                sum: Some(1720.5),
                                bucket_counts: vec![1, 2, 2, 1],
                                explicit_bounds: vec![10.0, 100.0, 1000.0],
                                exemplars: vec![exemplar],
                                flags: 0,
                                min: Some(5.0),
                                max: Some(1500.0),
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
                                count: u64::MAX,
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
                scope: scope("e2e.chain.logs"),
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
                        trace_id: if i % 2 == 0 {
                            vec![i as u8; 16]
                        } else {
                            Vec::new()
                        },
                        span_id: if i % 2 == 0 {
                            vec![0x0f; 8]
                        } else {
                            Vec::new()
                        },
                        event_name: format!("event.{i}"),
                    })
                    .collect(),
            }],
        }],
    }
}

// ---------------------------------------------------------------------------------------------
// Configs

/// The OTLP receiver on the collector's own test ports, without TLS.
const PLAIN_PROTOCOLS: &str = r#"
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
"#;

/// A collector that writes every signal to its own proto file (`traces.pb`, `metrics.pb`,
/// `logs.pb`) and, when `upstream` names exporters (defined in `exporters`, YAML indented
/// two spaces), also sends each signal through them.
fn config(protocols: &str, exporters: &str, upstream: &[&str; 3]) -> String {
    let list = |i: usize| {
        if upstream[i].is_empty() {
            String::new()
        } else {
            format!(", {}", upstream[i])
        }
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
{protocols}
exporters:
  file/traces:
    path: "@DIR@/traces.pb"
    format: proto
    flush_interval: 0s
  file/metrics:
    path: "@DIR@/metrics.pb"
    format: proto
    flush_interval: 0s
  file/logs:
    path: "@DIR@/logs.pb"
    format: proto
    flush_interval: 0s
{exporters}
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces{}]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics{}]
    logs:
      receivers: [otlp]
      exporters: [file/logs{}]
"#,
        list(0),
        list(1),
        list(2)
    )
}

/// The downstream collector: files only.
fn downstream(protocols: &str) -> String {
    config(protocols, "", &["", "", ""])
}

/// Fast retries, so a test does not wait for the 5 s default.
const FAST_RETRY: &str = r#"
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s"#;

// ---------------------------------------------------------------------------------------------
// Sending and reading

fn client() -> reqwest::blocking::Client {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POSTs an OTLP/protobuf request to the collector; it must answer 200.
fn post_proto(c: &Collector, path: &str, body: Vec<u8>) {
    let response = client()
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

fn read_messages(path: &Path) -> Vec<Vec<u8>> {
    split_messages(&std::fs::read(path).unwrap_or_default()).0
}

/// The messages of a collector's proto file, once there are at least `n` complete ones.
fn messages(c: &Collector, file: &str, n: usize, also_log: &[&Collector]) -> Vec<Vec<u8>> {
    let path = c.path(file);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = read_messages(&path);
        if messages.len() >= n {
            return messages;
        }
        if Instant::now() > deadline {
            let mut logs = format!("log of this collector:\n{}", c.logs());
            for other in also_log {
                logs.push_str(&format!("\nlog of the other collector:\n{}", other.logs()));
            }
            panic!(
                "{} holds {} complete messages, expected {n}\n{logs}",
                path.display(),
                messages.len(),
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Decodes a written message as the request type and compares it with `want` field by field.
/// The comparison is of the pretty `Debug` forms, which name every field (so a difference
/// points at it) and treat NaN as equal to NaN, unlike `PartialEq`; the protobuf encodings
/// are compared too (they cover bit-exact doubles such as -0.0).
fn assert_same<M: Message + Default + std::fmt::Debug>(written: &[u8], want: &M, what: &str) {
    let got = M::decode(written).unwrap_or_else(|e| panic!("{what}: not a valid message: {e}"));
    let (got_text, want_text) = (format!("{got:#?}"), format!("{want:#?}"));
    if got_text != want_text {
        let first = got_text
            .lines()
            .zip(want_text.lines())
            .enumerate()
            .find(|(_, (g, w))| g != w)
            .map(|(i, (g, w))| format!("line {i}: got `{g}`, want `{w}`"))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!("{what} differs from what was sent ({first})\ngot:\n{got_text}\nwant:\n{want_text}");
    }
    assert_eq!(
        got.encode_to_vec(),
        want.encode_to_vec(),
        "{what}: encodings differ"
    );
}

/// Sends the three signals (and a second traces request) to A one at a time, waiting for each
/// to reach B, then checks that B and A wrote exactly what was sent.
fn send_all_and_compare(a: &Collector, b: &Collector, exporter_id: &str) {
    let traces = traces_request("first");
    let more_traces = traces_request("second");
    let metrics = metrics_request();
    let logs = logs_request();

    post_proto(a, "/v1/traces", traces.encode_to_vec());
    messages(b, "traces.pb", 1, &[a]);
    post_proto(a, "/v1/metrics", metrics.encode_to_vec());
    post_proto(a, "/v1/logs", logs.encode_to_vec());
    post_proto(a, "/v1/traces", more_traces.encode_to_vec());

    let b_traces = messages(b, "traces.pb", 2, &[a]);
    let b_metrics = messages(b, "metrics.pb", 1, &[a]);
    let b_logs = messages(b, "logs.pb", 1, &[a]);
    let a_traces = messages(a, "traces.pb", 2, &[b]);
    let a_metrics = messages(a, "metrics.pb", 1, &[b]);
    let a_logs = messages(a, "logs.pb", 1, &[b]);

    assert_same(&b_traces[0], &traces, "B's first traces");
    assert_same(&b_traces[1], &more_traces, "B's second traces");
    assert_same(&b_metrics[0], &metrics, "B's metrics");
    assert_same(&b_logs[0], &logs, "B's logs");
    // What A received and wrote is the same too (so nothing was lost on A's way in).
    assert_same(&a_traces[0], &traces, "A's first traces");
    assert_same(&a_traces[1], &more_traces, "A's second traces");
    assert_same(&a_metrics[0], &metrics, "A's metrics");
    assert_same(&a_logs[0], &logs, "A's logs");
    assert_eq!(b_traces, a_traces);
    assert_eq!(b_metrics, a_metrics);
    assert_eq!(b_logs, a_logs);

    // Nothing more arrives (each request crossed the chain once): A counted every item as
    // sent, and B's files hold exactly these messages.
    let up = format!("exporter=\"{exporter_id}\"");
    wait_for_metric(a, "otelcol_exporter_sent_spans_total", &up, 6);
    wait_for_metric(a, "otelcol_exporter_sent_metric_points_total", &up, 8);
    wait_for_metric(a, "otelcol_exporter_sent_log_records_total", &up, 8);
    assert_eq!(read_messages(&b.path("traces.pb")).len(), 2);
    assert_eq!(read_messages(&b.path("metrics.pb")).len(), 1);
    assert_eq!(read_messages(&b.path("logs.pb")).len(), 1);
}

/// The sum of the series whose line starts with `prefix` (a metric name, or the start of
/// one) and mentions `containing` (e.g. `exporter="otlp/up"`; "" for any).
fn metric_sum(c: &Collector, prefix: &str, containing: &str) -> u64 {
    c.metrics_text()
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(containing))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the sum of the series `metric_sum` picks is `want`.
fn wait_for_metric(c: &Collector, prefix: &str, containing: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = metric_sum(c, prefix, containing);
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{prefix}…{containing}…: {got}, expected {want}\nmetrics:\n{}\nlog:\n{}",
                c.metrics_text(),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one chain: B first (files only), then A with the exporter `exporter_id` (defined by
/// `exporter`, YAML under `exporters:` in which `@B_HTTP@` / `@B_GRPC@` stand for B's ports)
/// in every pipeline besides A's own files.
fn chain(exporter_id: &str, exporter: &str) {
    let b = Collector::start(&downstream(PLAIN_PROTOCOLS), &[]);
    let exporter = exporter
        .replace("@B_HTTP@", &b.http.to_string())
        .replace("@B_GRPC@", &b.grpc.to_string());
    let a = Collector::start(&config(PLAIN_PROTOCOLS, &exporter, &[exporter_id; 3]), &[]);
    send_all_and_compare(&a, &b, exporter_id);
    // A's exporter reported no failures.
    assert_eq!(metric_sum(&a, "otelcol_exporter_send_failed_", ""), 0);
}

// ---------------------------------------------------------------------------------------------
// Plain chains

#[test]
fn otlp_http_proto_chain_delivers_every_field() {
    chain(
        "otlp_http/up",
        &format!(
            r#"
  otlp_http/up:
    endpoint: http://127.0.0.1:@B_HTTP@
    encoding: proto{FAST_RETRY}
"#
        ),
    );
}

#[test]
fn otlp_http_json_chain_delivers_every_field() {
    chain(
        "otlphttp/up",
        &format!(
            r#"
  otlphttp/up:
    endpoint: http://127.0.0.1:@B_HTTP@/
    encoding: json
    compression: none{FAST_RETRY}
"#
        ),
    );
}

#[test]
fn otlp_http_json_zstd_chain_delivers_every_field() {
    chain(
        "otlp_http/up",
        &format!(
            r#"
  otlp_http/up:
    endpoint: http://127.0.0.1:@B_HTTP@
    encoding: json
    compression: zstd{FAST_RETRY}
"#
        ),
    );
}

#[test]
fn otlp_grpc_chain_delivers_every_field() {
    chain(
        "otlp/up",
        &format!(
            r#"
  otlp/up:
    endpoint: 127.0.0.1:@B_GRPC@
    tls:
      insecure: true{FAST_RETRY}
"#
        ),
    );
}

#[test]
fn otlp_grpc_zstd_chain_delivers_every_field() {
    chain(
        "otlp_grpc/up",
        &format!(
            r#"
  otlp_grpc/up:
    endpoint: http://127.0.0.1:@B_GRPC@
    tls:
      insecure: true
    compression: zstd{FAST_RETRY}
"#
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Downstream down at first

/// Lines of the log that mention `needle`.
fn log_lines_with(logs: &str, needle: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn queue_holds_data_while_the_downstream_is_down_and_delivers_it_when_it_starts() {
    // B's ports are chosen now, but nothing listens on them until B starts.
    let (b_http, b_grpc) = (free_port(), free_port());
    let exporters = format!(
        r#"
  otlp_http/up:
    endpoint: http://127.0.0.1:{b_http}{FAST_RETRY}
  otlp/up:
    endpoint: 127.0.0.1:{b_grpc}
    tls:
      insecure: true{FAST_RETRY}
"#
    );
    // Traces and metrics over HTTP, logs over gRPC.
    let a = Collector::start(
        &config(
            PLAIN_PROTOCOLS,
            &exporters,
            &["otlp_http/up", "otlp_http/up", "otlp/up"],
        ),
        &[],
    );
    let traces = traces_request("while down");
    let metrics = metrics_request();
    let logs = logs_request();
    // A answers at once: the data is in its queue.
    post_proto(&a, "/v1/traces", traces.encode_to_vec());
    post_proto(&a, "/v1/metrics", metrics.encode_to_vec());
    post_proto(&a, "/v1/logs", logs.encode_to_vec());

    // Both exporters have failed (connection refused) and keep retrying: several attempts
    // each, so B really was down for a while.
    for exporter in ["otlp_http/up", "otlp/up"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = a.logs();
            let retries = log_lines_with(&logs, "will retry")
                .into_iter()
                .filter(|l| l.contains(&format!("exporter={exporter} ")))
                .count();
            if retries >= 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{exporter} did not retry 3 times; log:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(metric_sum(&a, "otelcol_exporter_sent_", "/up\""), 0);
    assert_eq!(metric_sum(&a, "otelcol_exporter_send_failed_", ""), 0);

    // Now B starts on those ports, and everything arrives, once.
    let b_protocols = format!(
        r#"
      grpc:
        endpoint: "127.0.0.1:{b_grpc}"
      http:
        endpoint: "127.0.0.1:{b_http}"
"#
    );
    let mut b = Collector::start(&downstream(&b_protocols), &[]);
    let b_traces = messages(&b, "traces.pb", 1, &[&a]);
    let b_metrics = messages(&b, "metrics.pb", 1, &[&a]);
    let b_logs = messages(&b, "logs.pb", 1, &[&a]);
    assert_same(&b_traces[0], &traces, "B's traces");
    assert_same(&b_metrics[0], &metrics, "B's metrics");
    assert_same(&b_logs[0], &logs, "B's logs");
    wait_for_metric(
        &a,
        "otelcol_exporter_sent_spans_total",
        "\"otlp_http/up\"",
        3,
    );
    wait_for_metric(
        &a,
        "otelcol_exporter_sent_metric_points_total",
        "\"otlp_http/up\"",
        8,
    );
    wait_for_metric(
        &a,
        "otelcol_exporter_sent_log_records_total",
        "\"otlp/up\"",
        8,
    );
    assert_eq!(metric_sum(&a, "otelcol_exporter_send_failed_", ""), 0);
    assert!(b.stop().success(), "log:\n{}", b.logs());
    assert_eq!(read_messages(&b.path("traces.pb")).len(), 1);
    assert_eq!(read_messages(&b.path("metrics.pb")).len(), 1);
    assert_eq!(read_messages(&b.path("logs.pb")).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A test PKI in a temporary directory: a CA, a server certificate for `localhost` and
/// 127.0.0.1, a server certificate for `collector.internal` only, and a client certificate
/// signed by a second CA (the client CA).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let make_ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert.pem(), Issuer::new(params, key))
        };
        let leaf = |names: &[&str], usage: ExtendedKeyUsagePurpose, issuer: &Issuer<KeyPair>| {
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, names[0]);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (ca_pem, ca) = make_ca("sluice test CA");
        write("ca.pem", ca_pem);
        let (cert, key) = leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
        );
        write("server.pem", cert);
        write("server-key.pem", key);
        let (cert, key) = leaf(
            &["collector.internal"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
        );
        write("internal.pem", cert);
        write("internal-key.pem", key);
        let (client_ca_pem, client_ca) = make_ca("sluice test client CA");
        write("client-ca.pem", client_ca_pem);
        let (cert, key) = leaf(
            &["sluice-a"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &client_ca,
        );
        write("client.pem", cert);
        write("client-key.pem", key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// B's receiver protocols with TLS: the server certificate `cert` (`server` or
    /// `internal`), and client certificates required when `mutual`.
    fn protocols(&self, cert: &str, mutual: bool) -> String {
        let client_ca = if mutual {
            format!(
                "\n          client_ca_file: {}",
                self.path("client-ca.pem").display()
            )
        } else {
            String::new()
        };
        let tls = format!(
            r#"
        tls:
          cert_file: {}
          key_file: {}{client_ca}"#,
            self.path(&format!("{cert}.pem")).display(),
            self.path(&format!("{cert}-key.pem")).display(),
        );
        format!(
            r#"
      grpc:
        endpoint: "@GRPC@"{tls}
      http:
        endpoint: "@HTTP@"{tls}
"#
        )
    }
}

/// A's exporters to a TLS-serving B: traces over `otlp_http/up` to `https://<host>:<port>`,
/// logs over `otlp/up` to `<host>:<port>` (TLS by default), both with the `tls` block given
/// (YAML lines at the `tls:` key's indentation, or empty).
fn tls_exporters(b: &Collector, host: &str, tls: &str) -> String {
    let tls = if tls.is_empty() {
        String::new()
    } else {
        format!("\n    tls:{tls}")
    };
    format!(
        r#"
  otlp_http/up:
    endpoint: https://{host}:{}{tls}{FAST_RETRY}
  otlp/up:
    endpoint: {host}:{}{tls}{FAST_RETRY}
"#,
        b.http, b.grpc
    )
}

const TLS_PIPELINES: [&str; 3] = ["otlp_http/up", "", "otlp/up"];

/// Sends traces and logs to A; both must arrive at B unchanged.
fn tls_delivers(a: &Collector, b: &Collector) {
    let traces = traces_request("over tls");
    let logs = logs_request();
    post_proto(a, "/v1/traces", traces.encode_to_vec());
    post_proto(a, "/v1/logs", logs.encode_to_vec());
    assert_same(&messages(b, "traces.pb", 1, &[a])[0], &traces, "B's traces");
    assert_same(&messages(b, "logs.pb", 1, &[a])[0], &logs, "B's logs");
    wait_for_metric(
        a,
        "otelcol_exporter_sent_spans_total",
        "\"otlp_http/up\"",
        3,
    );
    wait_for_metric(
        a,
        "otelcol_exporter_sent_log_records_total",
        "\"otlp/up\"",
        8,
    );
}

/// Sends traces and logs to A; both exporters must fail with an error whose log line holds
/// one of `reasons` (case-insensitive), keep retrying (the failure is not taken for a
/// permanent one, which would drop the data), and B must receive nothing.
fn tls_fails(a: &Collector, b: &Collector, reasons: &[&str]) {
    post_proto(a, "/v1/traces", traces_request("refused").encode_to_vec());
    post_proto(a, "/v1/logs", logs_request().encode_to_vec());
    // Each exporter fails for that reason again and again: it keeps retrying (the data is
    // not dropped as if the failure were permanent).
    for exporter in ["otlp_http/up", "otlp/up"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = a.logs();
            let failures = log_lines_with(&logs, "will retry")
                .into_iter()
                .filter(|l| l.contains(&format!("exporter={exporter} ")))
                .filter(|l| {
                    let l = l.to_lowercase();
                    reasons.iter().any(|r| l.contains(&r.to_lowercase()))
                })
                .count();
            if failures >= 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{exporter} did not log 3 retries naming one of {reasons:?}; log of A:\n{logs}\nlog of B:\n{}",
                b.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let logs = a.logs();
    assert!(
        !logs.contains("dropping data"),
        "a TLS failure was taken for a permanent one:\n{logs}"
    );
    // B has nothing.
    assert_eq!(metric_sum(a, "otelcol_exporter_sent_", "/up\""), 0);
    assert_eq!(metric_sum(a, "otelcol_exporter_send_failed_", ""), 0);
    assert!(read_messages(&b.path("traces.pb")).is_empty());
    assert!(read_messages(&b.path("logs.pb")).is_empty());
    assert_eq!(metric_sum(b, "otelcol_receiver_accepted_", ""), 0);
}

fn start_a(b: &Collector, host: &str, tls: &str) -> Collector {
    Collector::start(
        &config(
            PLAIN_PROTOCOLS,
            &tls_exporters(b, host, tls),
            &TLS_PIPELINES,
        ),
        &[],
    )
}

#[test]
fn tls_with_a_test_ca_delivers_and_fails_without_it() {
    let pki = Pki::new();
    let b = Collector::start(&downstream(&pki.protocols("server", false)), &[]);
    let ca = format!("\n      ca_file: {}", pki.path("ca.pem").display());

    // With the CA, by IP address and by name.
    let a = start_a(&b, "127.0.0.1", &ca);
    tls_delivers(&a, &b);
    drop(a);
    let b2 = Collector::start(&downstream(&pki.protocols("server", false)), &[]);
    let a = start_a(&b2, "localhost", &ca);
    tls_delivers(&a, &b2);
    drop(a);
    drop(b2);

    // Without it (the system's roots do not know the test CA): nothing is delivered.
    let b = Collector::start(&downstream(&pki.protocols("server", false)), &[]);
    let a = start_a(&b, "127.0.0.1", "");
    tls_fails(&a, &b, &["invalid peer certificate: UnknownIssuer"]);
}

#[test]
fn tls_server_name_override_verifies_against_the_configured_name() {
    let pki = Pki::new();
    // B's certificate names only `collector.internal`; A connects to 127.0.0.1.
    let b = Collector::start(&downstream(&pki.protocols("internal", false)), &[]);
    let tls = format!(
        "\n      ca_file: {}\n      server_name_override: collector.internal",
        pki.path("ca.pem").display()
    );
    let a = start_a(&b, "127.0.0.1", &tls);
    tls_delivers(&a, &b);
    drop(a);
    drop(b);

    // Without the override the name does not match.
    let b = Collector::start(&downstream(&pki.protocols("internal", false)), &[]);
    let tls = format!("\n      ca_file: {}", pki.path("ca.pem").display());
    let a = start_a(&b, "127.0.0.1", &tls);
    tls_fails(&a, &b, &["certificate not valid for name"]);
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let b = Collector::start(&downstream(&pki.protocols("server", true)), &[]);
    let tls = format!(
        "\n      ca_file: {}\n      cert_file: {}\n      key_file: {}",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client-key.pem").display()
    );
    let a = start_a(&b, "127.0.0.1", &tls);
    tls_delivers(&a, &b);
    drop(a);
    drop(b);

    // Without a client certificate, B refuses the handshake.
    let b = Collector::start(&downstream(&pki.protocols("server", true)), &[]);
    let tls = format!("\n      ca_file: {}", pki.path("ca.pem").display());
    let a = start_a(&b, "127.0.0.1", &tls);
    tls_fails(&a, &b, &["CertificateRequired"]);
}

/// `text` as a YAML literal block, each line indented by `indent` spaces.
fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::from("|");
    for line in text.lines() {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(line);
    }
    out
}

#[test]
fn tls_inline_pem_forms_work_as_the_files_do() {
    let pki = Pki::new();
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).unwrap();
    // mTLS with everything inline: the CA, the client certificate and its key.
    let b = Collector::start(&downstream(&pki.protocols("server", true)), &[]);
    let tls = format!(
        "\n      ca_pem: {}\n      cert_pem: {}\n      key_pem: {}\n      min_version: \"1.2\"\n      max_version: \"1.3\"",
        yaml_block(&read("ca.pem"), 8),
        yaml_block(&read("client.pem"), 8),
        yaml_block(&read("client-key.pem"), 8)
    );
    let a = start_a(&b, "127.0.0.1", &tls);
    tls_delivers(&a, &b);
    drop(a);
    drop(b);

    // An inline CA that did not sign B's certificate: nothing is delivered.
    let b = Collector::start(&downstream(&pki.protocols("server", false)), &[]);
    let tls = format!("\n      ca_pem: {}", yaml_block(&read("client-ca.pem"), 8));
    let a = start_a(&b, "127.0.0.1", &tls);
    tls_fails(&a, &b, &["UnknownIssuer"]);
}
