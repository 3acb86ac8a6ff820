//! The `otlp_http` and `otlp` (gRPC) exporters against scripted test servers that record every
//! request and answer from a script: custom headers (one from `${env:...}`) arrive, the
//! Content-Type and Content-Encoding match the encoding and compression, per-signal endpoint
//! overrides are used, and the OTLP retry rules hold: 503 with Retry-After is retried after
//! that wait, 429/502/504 are retried, 400 is not (counted as failed, and reported to a client
//! that waits for delivery), a partial success is counted and not retried. For gRPC:
//! UNAVAILABLE retried, INVALID_ARGUMENT not, RESOURCE_EXHAUSTED only with RetryInfo, custom
//! headers as metadata.

use crate::common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Collector;
use common::scripted_http::{HttpServer, Reply};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Requests and the collector

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn resource(name: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv(
            "service.name",
            any_value::Value::StringValue(name.into()),
        )],
        ..Default::default()
    })
}

/// Two spans named after `tag`.
fn traces(tag: &str) -> ExportTraceServiceRequest {
    let span = |id: u8, name: String| Span {
        trace_id: vec![0x5b; 16],
        span_id: vec![id; 8],
        name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![
            kv("http.route", any_value::Value::StringValue("/x".into())),
            kv("big", any_value::Value::IntValue(i64::MAX)),
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                spans: vec![span(1, tag.to_string()), span(2, format!("{tag}/child"))],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Three data points.
fn metrics() -> ExportMetricsServiceRequest {
    let point = |v: number_data_point::Value| NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(v),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("metered"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "g".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![
                                point(number_data_point::Value::AsDouble(0.5)),
                                point(number_data_point::Value::AsInt(-3)),
                            ],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "s".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(number_data_point::Value::AsInt(7))],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Two log records.
fn logs() -> ExportLogsServiceRequest {
    let record = |body: &str| LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("logging"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record("one"), record("two")],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A collector with the OTLP receiver and `exporters` (YAML indented two spaces); each
/// pipeline `(signal, exporter list)` of `pipelines` is created.
fn config(exporters: &str, pipelines: &[(&str, &str)]) -> String {
    let mut service = String::new();
    for (signal, list) in pipelines {
        service.push_str(&format!(
            "    {signal}:\n      receivers: [otlp]\n      exporters: [{list}]\n"
        ));
    }
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
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
{service}"#
    )
}

/// Fast retries (the 5 s default would make the tests slow).
const FAST_RETRY: &str = r#"
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s"#;

const WAIT_FOR_DELIVERY: &str = r#"
    sending_queue:
      wait_for_delivery: true"#;

/// POSTs an OTLP/protobuf request to the collector: (status, body).
fn post(c: &Collector, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{}{path}", c.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: {e}\nlog:\n{}", c.logs()));
    let status = response.status().as_u16();
    (status, response.bytes().unwrap().to_vec())
}

fn post_ok(c: &Collector, path: &str, body: Vec<u8>) {
    let (status, answer) = post(c, path, body);
    assert_eq!(
        status,
        200,
        "POST {path}: {}\nlog:\n{}",
        String::from_utf8_lossy(&answer),
        c.logs()
    );
}

/// The value of the series `name{exporter="<exporter>"}` (0 when absent).
fn exporter_metric(c: &Collector, name: &str, exporter: &str) -> u64 {
    let prefix = format!("{name}{{exporter=\"{exporter}\"}} ");
    c.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Waits until `exporter_metric` is `want`.
fn wait_for_metric(c: &Collector, name: &str, exporter: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = exporter_metric(c, name, exporter);
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{name}{{exporter=\"{exporter}\"}} = {got}, expected {want}\nmetrics:\n{}\nlog:\n{}",
                c.metrics_text(),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Decodes an OTLP/JSON body as the request type `$ty`.
macro_rules! decode_json {
    ($ty:ty, $body:expr) => {{
        let body: &[u8] = $body;
        serde_json::from_slice::<$ty>(body).unwrap_or_else(|e| {
            panic!(
                "not an OTLP/JSON document ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })
    }};
}

// ---------------------------------------------------------------------------------------------
// Headers, encodings, endpoints

#[test]
fn headers_content_type_and_encoding_match_the_config() {
    let server = HttpServer::start();
    let headers = r#"
    headers:
      X-Api-Key: "${env:SLUICE_TEST_API_KEY}"
      X-Static: static value"#;
    let exporters = format!(
        r#"
  otlp_http/gzip:
    endpoint: {url}/gzip{headers}
  otlp_http/zstd:
    endpoint: {url}/zstd
    encoding: json
    compression: zstd{headers}
  otlp_http/none:
    endpoint: {url}/none
    encoding: proto
    compression: none{headers}
"#,
        url = server.url()
    );
    let all = "otlp_http/gzip, otlp_http/zstd, otlp_http/none";
    let c = Collector::start_with_env(
        &config(
            &exporters,
            &[("traces", all), ("metrics", all), ("logs", all)],
        ),
        &[],
        &[("SLUICE_TEST_API_KEY", "secret-from-env")],
    );
    let (traces, metrics, logs) = (traces("headers"), metrics(), logs());
    post_ok(&c, "/v1/traces", traces.encode_to_vec());
    post_ok(&c, "/v1/metrics", metrics.encode_to_vec());
    post_ok(&c, "/v1/logs", logs.encode_to_vec());
    server.wait_for(9, &c);

    for (prefix, content_type, encoding) in [
        ("/gzip", "application/x-protobuf", Some("gzip")),
        ("/zstd", "application/json", Some("zstd")),
        ("/none", "application/x-protobuf", None),
    ] {
        for signal in ["traces", "metrics", "logs"] {
            let path = format!("{prefix}/v1/{signal}");
            let sent = server.requests_to(&path);
            assert_eq!(sent.len(), 1, "{path}: {sent:?}");
            let r = &sent[0];
            assert_eq!(r.method, "POST");
            assert_eq!(r.header("content-type"), Some(content_type), "{path}");
            assert_eq!(r.header("content-encoding"), encoding, "{path}");
            assert_eq!(r.header("x-api-key"), Some("secret-from-env"), "{path}");
            assert_eq!(r.header("x-static"), Some("static value"), "{path}");
            // The body really is compressed that way (not merely labelled).
            match encoding {
                Some("gzip") => assert_eq!(r.raw[..2], [0x1f, 0x8b], "{path}"),
                Some("zstd") => assert_eq!(r.raw[..4], [0x28, 0xb5, 0x2f, 0xfd], "{path}"),
                _ => assert_eq!(r.raw, r.body, "{path}"),
            }
            let json = content_type == "application/json";
            match signal {
                "traces" => {
                    let got: ExportTraceServiceRequest = if json {
                        decode_json!(ExportTraceServiceRequest, &r.body)
                    } else {
                        Message::decode(r.body.as_slice()).unwrap()
                    };
                    assert_eq!(got, traces, "{path}");
                }
                "metrics" => {
                    let got: ExportMetricsServiceRequest = if json {
                        decode_json!(ExportMetricsServiceRequest, &r.body)
                    } else {
                        Message::decode(r.body.as_slice()).unwrap()
                    };
                    assert_eq!(got, metrics, "{path}");
                }
                _ => {
                    let got: ExportLogsServiceRequest = if json {
                        decode_json!(ExportLogsServiceRequest, &r.body)
                    } else {
                        Message::decode(r.body.as_slice()).unwrap()
                    };
                    assert_eq!(got, logs, "{path}");
                }
            }
            if json {
                // OTLP/JSON as the specification writes it: hex ids, int64 as strings.
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                if signal == "traces" {
                    let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
                    assert_eq!(span["traceId"], "5b".repeat(16));
                    assert_eq!(span["spanId"], "01".repeat(8));
                    assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
                }
            }
        }
    }
    assert_eq!(server.requests().len(), 9);
}

#[test]
fn signal_endpoints_replace_the_base_url() {
    let server = HttpServer::start();
    let exporters = format!(
        r#"
  otlp_http/split:
    endpoint: {url}/base/
    traces_endpoint: {url}/custom/spans
    logs_endpoint: {url}/elsewhere/logs{FAST_RETRY}
  otlp_http/traces_only:
    traces_endpoint: {url}/only/traces{FAST_RETRY}
"#,
        url = server.url()
    );
    let c = Collector::start(
        &config(
            &exporters,
            &[
                ("traces", "otlp_http/split, otlp_http/traces_only"),
                ("metrics", "otlp_http/split"),
                ("logs", "otlp_http/split"),
            ],
        ),
        &[],
    );
    post_ok(&c, "/v1/traces", traces("paths").encode_to_vec());
    post_ok(&c, "/v1/metrics", metrics().encode_to_vec());
    post_ok(&c, "/v1/logs", logs().encode_to_vec());
    let mut paths: Vec<String> = server.wait_for(4, &c).into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/base/v1/metrics",
            "/custom/spans",
            "/elsewhere/logs",
            "/only/traces"
        ]
    );
}

/// A length-delimited protobuf field, for requests built by hand.
fn field(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// A protobuf request that no component edits is forwarded as the bytes it arrived as, two
/// requests batched into one body: fields sluice does not know (from a newer OTLP version)
/// reach the backend untouched. A pipeline whose processor edits the data sends it encoded
/// anew, its known fields intact.
#[test]
fn protobuf_passes_through_byte_for_byte_when_nothing_edits_it() {
    let server = HttpServer::start();
    let exporters = format!(
        r#"
  otlp_http/as_received:
    endpoint: {url}/as_received
    compression: none{FAST_RETRY}
  otlp_http/edited:
    endpoint: {url}/edited
    compression: none{FAST_RETRY}
processors:
  batch:
    timeout: 1s
  attributes/tag:
    actions:
      - key: edited
        value: "yes"
        action: insert
"#,
        url = server.url()
    );
    let config = config(&exporters, &[])
        .replace(
            "  pipelines:\n",
            "  pipelines:\n    traces/as_received:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp_http/as_received]\n    traces/edited:\n      receivers: [otlp]\n      processors: [attributes/tag]\n      exporters: [otlp_http/edited]\n",
        );
    let c = Collector::start(&config, &[]);
    // A span with a field 50 that no OTLP version has (yet), in a request built by hand.
    let span = traces("future").resource_spans[0].scope_spans[0].spans[0].clone();
    let span = [span.encode_to_vec(), field(50, b"from the future")].concat();
    let request = field(1, &field(2, &field(2, &span)));
    let plain = traces("plain").encode_to_vec();
    // Sent together, so that the batch processor holds both when its timeout fires (a
    // client hears back only once its request has left the batch).
    std::thread::scope(|s| {
        s.spawn(|| post_ok(&c, "/v1/traces", request.clone()));
        std::thread::sleep(Duration::from_millis(100));
        s.spawn(|| post_ok(&c, "/v1/traces", plain.clone()));
    });
    let received = server.wait_for(3, &c);
    let as_received: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/as_received/v1/traces")
        .collect();
    assert_eq!(as_received.len(), 1, "the batch holds both requests");
    assert_eq!(as_received[0].body, [request, plain].concat());
    // The edited copies decode to the same spans plus the new attribute; field 50 is gone.
    let edited: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/edited/v1/traces")
        .collect();
    assert_eq!(edited.len(), 2);
    for r in edited {
        let decoded = ExportTraceServiceRequest::decode(r.body.as_slice()).unwrap();
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert!(
            span.attributes.iter().any(|kv| kv.key == "edited"),
            "{decoded:?}"
        );
        assert!(span.name == "future" || span.name == "plain", "{decoded:?}");
        assert!(!r.body.windows(15).any(|w| w == b"from the future"));
    }
}

// ---------------------------------------------------------------------------------------------
// Retry rules

#[test]
fn retry_after_is_honoured_and_the_waiting_client_hears_of_the_delivery() {
    let server = HttpServer::start();
    server.script(
        "/v1/traces",
        vec![
            Reply::status(503).header("retry-after", "1"),
            Reply::status(200),
        ],
    );
    let exporters = format!(
        "  otlp_http/x:\n    endpoint: {}{FAST_RETRY}{WAIT_FOR_DELIVERY}\n",
        server.url()
    );
    let c = Collector::start(&config(&exporters, &[("traces", "otlp_http/x")]), &[]);
    let sent = traces("retry-after");
    // The client waits for delivery: it hears 200 only after the retry went through.
    post_ok(&c, "/v1/traces", sent.encode_to_vec());
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(
        ExportTraceServiceRequest::decode(requests[1].body.as_slice()).unwrap(),
        sent
    );
    // The retry waited for Retry-After (1 s), not for the 100 ms initial interval.
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?} despite Retry-After: 1"
    );
    wait_for_metric(&c, "otelcol_exporter_sent_spans_total", "otlp_http/x", 2);
    assert_eq!(
        exporter_metric(
            &c,
            "otelcol_exporter_send_failed_spans_total",
            "otlp_http/x"
        ),
        0
    );
    // Delivered once more, not again.
    post_ok(&c, "/v1/traces", traces("next").encode_to_vec());
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn throttling_and_gateway_errors_are_retried() {
    let server = HttpServer::start();
    server.script(
        "/v1/traces",
        vec![
            Reply::status(429),
            Reply::status(502),
            Reply::status(504),
            Reply::status(503),
            Reply::status(200),
        ],
    );
    let exporters = format!(
        "  otlp_http/x:\n    endpoint: {}{FAST_RETRY}{WAIT_FOR_DELIVERY}\n",
        server.url()
    );
    let c = Collector::start(&config(&exporters, &[("traces", "otlp_http/x")]), &[]);
    post_ok(&c, "/v1/traces", traces("throttled").encode_to_vec());
    let requests = server.requests();
    assert_eq!(requests.len(), 5, "{requests:?}");
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    wait_for_metric(&c, "otelcol_exporter_sent_spans_total", "otlp_http/x", 2);
    assert_eq!(
        exporter_metric(
            &c,
            "otelcol_exporter_send_failed_spans_total",
            "otlp_http/x"
        ),
        0
    );
}

fn bad_request() -> Reply {
    let status = tonic_types::Status {
        code: 3,
        message: "span 7 has no name".into(),
        details: Vec::new(),
    };
    Reply::status(400).body("application/x-protobuf", status.encode_to_vec())
}

#[test]
fn bad_request_is_not_retried_counted_and_reported_to_a_waiting_client() {
    let server = HttpServer::start();
    server.script("/queued/v1/traces", vec![bad_request()]);
    server.script("/waiting/v1/traces", vec![bad_request()]);
    let exporters = format!(
        r#"
  otlp_http/queued:
    endpoint: {url}/queued{FAST_RETRY}
  otlp_http/waiting:
    endpoint: {url}/waiting{FAST_RETRY}{WAIT_FOR_DELIVERY}
"#,
        url = server.url()
    );
    let c = Collector::start(
        &config(
            &exporters,
            &[
                ("traces", "otlp_http/queued"),
                ("traces/waiting", "otlp_http/waiting"),
            ],
        ),
        &[],
    );
    // Both pipelines get the request; the client hears the permanent failure of the exporter
    // that waits for delivery.
    let (status, _) = post(&c, "/v1/traces", traces("bad").encode_to_vec());
    assert_eq!(status, 400, "log:\n{}", c.logs());
    for exporter in ["otlp_http/queued", "otlp_http/waiting"] {
        wait_for_metric(&c, "otelcol_exporter_send_failed_spans_total", exporter, 2);
        assert_eq!(
            exporter_metric(&c, "otelcol_exporter_sent_spans_total", exporter),
            0
        );
    }
    // The server's message is in the log.
    assert!(
        c.logs().contains("span 7 has no name"),
        "log:\n{}",
        c.logs()
    );
    // The next request goes through: each exporter made exactly one attempt at the bad one.
    post_ok(&c, "/v1/traces", traces("good").encode_to_vec());
    let requests = server.wait_for(4, &c);
    for prefix in ["/queued", "/waiting"] {
        let sent = server.requests_to(&format!("{prefix}/v1/traces"));
        assert_eq!(sent.len(), 2, "{prefix}: {sent:?}");
        let names: Vec<String> = sent
            .iter()
            .map(|r| {
                ExportTraceServiceRequest::decode(r.body.as_slice())
                    .unwrap()
                    .resource_spans[0]
                    .scope_spans[0]
                    .spans[0]
                    .name
                    .clone()
            })
            .collect();
        assert_eq!(names, ["bad", "good"], "{prefix}");
    }
    assert_eq!(requests.len(), 4);
    for exporter in ["otlp_http/queued", "otlp_http/waiting"] {
        wait_for_metric(&c, "otelcol_exporter_sent_spans_total", exporter, 2);
        assert_eq!(
            exporter_metric(&c, "otelcol_exporter_send_failed_spans_total", exporter),
            2
        );
    }
}

#[test]
fn partial_success_is_counted_and_not_retried() {
    let server = HttpServer::start();
    let proto = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "2 spans too old (proto)".into(),
        }),
    };
    server.script(
        "/proto/v1/traces",
        vec![Reply::status(200).body("application/x-protobuf", proto.encode_to_vec())],
    );
    // OTLP/JSON writes 64-bit integers as strings; numbers must be accepted too.
    server.script(
        "/json-string/v1/traces",
        vec![Reply::status(200).body(
            "application/json",
            br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"2 spans too old (json)"}}"#
                .to_vec(),
        )],
    );
    server.script(
        "/json-number/v1/traces",
        vec![Reply::status(200).body(
            "application/json",
            br#"{"partialSuccess":{"rejectedSpans":2,"errorMessage":"2 spans too old (number)"}}"#
                .to_vec(),
        )],
    );
    let exporters = format!(
        r#"
  otlp_http/proto:
    endpoint: {url}/proto{FAST_RETRY}{WAIT_FOR_DELIVERY}
  otlp_http/json-string:
    endpoint: {url}/json-string
    encoding: json{FAST_RETRY}{WAIT_FOR_DELIVERY}
  otlp_http/json-number:
    endpoint: {url}/json-number
    encoding: json{FAST_RETRY}{WAIT_FOR_DELIVERY}
"#,
        url = server.url()
    );
    let names = [
        "otlp_http/proto",
        "otlp_http/json-string",
        "otlp_http/json-number",
    ];
    let c = Collector::start(&config(&exporters, &[("traces", &names.join(", "))]), &[]);
    post_ok(&c, "/v1/traces", traces("partial").encode_to_vec());
    for exporter in names {
        wait_for_metric(
            &c,
            "sluice_exporter_partially_rejected_spans_total",
            exporter,
            2,
        );
        // The request itself was delivered (and is not retried).
        assert_eq!(
            exporter_metric(&c, "otelcol_exporter_sent_spans_total", exporter),
            2
        );
        assert_eq!(
            exporter_metric(&c, "otelcol_exporter_send_failed_spans_total", exporter),
            0
        );
    }
    let logs = c.logs();
    for message in ["(proto)", "(json)", "(number)"] {
        assert!(
            logs.contains(&format!("2 spans too old {message}")),
            "log:\n{logs}"
        );
    }
    // One request per exporter, even after the next one went through.
    post_ok(&c, "/v1/traces", traces("after").encode_to_vec());
    server.wait_for(6, &c);
    for prefix in ["/proto", "/json-string", "/json-number"] {
        assert_eq!(
            server.requests_to(&format!("{prefix}/v1/traces")).len(),
            2,
            "{prefix}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC

#[derive(Default)]
struct GrpcShared {
    calls: Vec<(
        Instant,
        tonic::metadata::MetadataMap,
        ExportTraceServiceRequest,
    )>,
    script: VecDeque<Result<ExportTraceServiceResponse, tonic::Status>>,
}

struct ScriptedTraces(Arc<Mutex<GrpcShared>>);

#[tonic::async_trait]
impl TraceService for ScriptedTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut shared = self.0.lock().unwrap();
        let (metadata, _, message) = request.into_parts();
        shared.calls.push((Instant::now(), metadata, message));
        shared
            .script
            .pop_front()
            .unwrap_or_else(|| Ok(ExportTraceServiceResponse::default()))
            .map(tonic::Response::new)
    }
}

fn grpc_server() -> (u16, Arc<Mutex<GrpcShared>>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shared = Arc::new(Mutex::new(GrpcShared::default()));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = TraceServiceServer::new(ScriptedTraces(shared.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    runtime.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap()
    });
    (port, shared, runtime)
}

#[test]
fn grpc_status_codes_follow_the_otlp_retry_rules_and_headers_arrive_as_metadata() {
    use tonic::Code;
    let (port, shared, _runtime) = grpc_server();
    let exporters = format!(
        r#"
  otlp/x:
    endpoint: 127.0.0.1:{port}
    tls:
      insecure: true
    headers:
      X-Api-Key: "${{env:SLUICE_TEST_API_KEY}}"
      X-Tenant: acme{FAST_RETRY}{WAIT_FOR_DELIVERY}
"#
    );
    let c = Collector::start_with_env(
        &config(&exporters, &[("traces", "otlp/x")]),
        &[],
        &[("SLUICE_TEST_API_KEY", "grpc-secret")],
    );
    let calls = || shared.lock().unwrap().calls.len();
    let script = |replies: Vec<Result<ExportTraceServiceResponse, tonic::Status>>| {
        shared.lock().unwrap().script = replies.into();
    };
    let failed = || exporter_metric(&c, "otelcol_exporter_send_failed_spans_total", "otlp/x");

    // UNAVAILABLE, then OK: retried, and the client hears of the delivery.
    script(vec![
        Err(tonic::Status::unavailable("busy")),
        Ok(Default::default()),
    ]);
    let sent = traces("unavailable");
    post_ok(&c, "/v1/traces", sent.encode_to_vec());
    assert_eq!(calls(), 2);
    {
        let shared = shared.lock().unwrap();
        for (_, metadata, request) in &shared.calls {
            assert_eq!(request, &sent);
            assert_eq!(
                metadata.get("x-api-key").map(|v| v.to_str().unwrap()),
                Some("grpc-secret")
            );
            assert_eq!(
                metadata.get("x-tenant").map(|v| v.to_str().unwrap()),
                Some("acme")
            );
        }
    }

    // INVALID_ARGUMENT: permanent, one attempt, counted, the client gets 400.
    script(vec![Err(tonic::Status::invalid_argument("bad span"))]);
    let (status, _) = post(&c, "/v1/traces", traces("invalid").encode_to_vec());
    assert_eq!(status, 400, "log:\n{}", c.logs());
    assert_eq!(calls(), 3);
    wait_for_metric(&c, "otelcol_exporter_send_failed_spans_total", "otlp/x", 2);
    assert!(c.logs().contains("bad span"));

    // RESOURCE_EXHAUSTED without RetryInfo: permanent too.
    script(vec![Err(tonic::Status::resource_exhausted("quota"))]);
    let (status, _) = post(&c, "/v1/traces", traces("exhausted").encode_to_vec());
    assert_eq!(status, 400, "log:\n{}", c.logs());
    assert_eq!(calls(), 4);
    wait_for_metric(&c, "otelcol_exporter_send_failed_spans_total", "otlp/x", 4);

    // RESOURCE_EXHAUSTED with RetryInfo: retried after the server's delay.
    use tonic_types::{ErrorDetails, StatusExt};
    script(vec![
        Err(tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        )),
        Ok(Default::default()),
    ]);
    post_ok(&c, "/v1/traces", traces("retry-info").encode_to_vec());
    assert_eq!(calls(), 6);
    {
        let shared = shared.lock().unwrap();
        let gap = shared.calls[5].0 - shared.calls[4].0;
        assert!(
            gap >= Duration::from_millis(950),
            "retried after {gap:?} despite a RetryInfo delay of 1 s"
        );
    }
    assert_eq!(failed(), 4);

    // A partial success is counted, not retried.
    script(vec![Ok(ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one span too large".into(),
        }),
    })]);
    post_ok(&c, "/v1/traces", traces("partial").encode_to_vec());
    assert_eq!(calls(), 7);
    wait_for_metric(
        &c,
        "sluice_exporter_partially_rejected_spans_total",
        "otlp/x",
        1,
    );
    assert!(c.logs().contains("one span too large"));
    // Delivered: unavailable (2 spans), retry-info (2), partial (2).
    wait_for_metric(&c, "otelcol_exporter_sent_spans_total", "otlp/x", 6);
    assert_eq!(failed(), 4);
}
