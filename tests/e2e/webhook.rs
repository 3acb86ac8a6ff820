//! The `webhook` exporter against a scripted HTTP server: log records of every kind (string,
//! map, bytes, number, array and missing bodies; attributes of every type; trace context;
//! resource and scope) arrive exactly once each, as the flat JSON objects the README documents:
//! one JSON array per batch in `batch` mode, one object per request in `single` mode; the
//! configured `Authorization` header (from `${env:...}`) arrives; a 500 is retried.

use crate::common;

use std::time::Duration;

use common::Collector;
use common::scripted_http::{HttpServer, Recorded, Reply};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue as OtlpArray, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Log records of every kind, and the objects the webhook must make of them

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn any(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn every_kind_of_attribute() -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        kv("str", StringValue("héllo \"world\"".into())),
        kv("bool", BoolValue(true)),
        kv("int", IntValue(i64::MIN)),
        kv("double", DoubleValue(0.93)),
        kv("bytes", BytesValue(vec![1, 2, 255])),
        kv(
            "array",
            ArrayValue(OtlpArray {
                values: vec![
                    AnyValue {
                        value: Some(IntValue(1)),
                    },
                    AnyValue {
                        value: Some(StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(BoolValue(false)),
                    },
                ],
            }),
        ),
        kv(
            "map",
            KvlistValue(KeyValueList {
                values: vec![
                    kv("k", StringValue("v".into())),
                    kv(
                        "nested",
                        KvlistValue(KeyValueList {
                            values: vec![kv("deep", DoubleValue(1.5))],
                        }),
                    ),
                ],
            }),
        ),
        KeyValue {
            key: "empty".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ]
}

fn every_kind_of_attribute_json() -> Value {
    json!({
        "str": "héllo \"world\"",
        "bool": true,
        "int": i64::MIN,
        "double": 0.93,
        "bytes": "AQL/",
        "array": [1, "a", false],
        "map": {"k": "v", "nested": {"deep": 1.5}},
        "empty": null
    })
}

/// 2026-11-25T03:04:05.123Z, the README's example time.
const T: u64 = 1_795_575_845_123_000_000;

/// A request of `n` records under two resources (the second has no scope name), with every
/// kind of body, and the objects the webhook must post for them, in order.
fn alerts(tag: &str) -> (ExportLogsServiceRequest, Vec<Value>) {
    use any_value::Value::*;
    let host = Some(Resource {
        attributes: vec![
            kv("host.name", StringValue("web-1".into())),
            kv("host.cpus", IntValue(8)),
        ],
        ..Default::default()
    });
    let host_json = json!({"host.name": "web-1", "host.cpus": 8});
    let scope_json = json!({"name": "sluice/threshold", "version": "1.2.3"});
    let mut records = Vec::new();
    let mut expected = Vec::new();

    // A string body, every kind of attribute, trace context, an event name.
    records.push(LogRecord {
        time_unix_nano: T,
        observed_time_unix_nano: T + 1_000,
        severity_number: 13,
        severity_text: "WARN".into(),
        body: any(StringValue(format!("{tag}: cpu 0.93 > 0.80 on web-1"))),
        attributes: every_kind_of_attribute(),
        trace_id: (1..=16).collect(),
        span_id: vec![0xab; 8],
        event_name: "sluice.alert".into(),
        flags: 1,
        ..Default::default()
    });
    expected.push(json!({
        "time": "2026-11-25T03:04:05.123000000Z",
        "time_unix_nano": T.to_string(),
        "severity": "WARN",
        "severity_number": 13,
        "body": format!("{tag}: cpu 0.93 > 0.80 on web-1"),
        "event_name": "sluice.alert",
        "attributes": every_kind_of_attribute_json(),
        "resource": host_json,
        "scope": scope_json,
        "trace_id": "0102030405060708090a0b0c0d0e0f10",
        "span_id": "abababababababab",
    }));

    // A map body.
    records.push(LogRecord {
        time_unix_nano: T + 1,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: any(KvlistValue(KeyValueList {
            values: vec![
                kv("user", StringValue(tag.into())),
                kv("count", IntValue(3)),
                kv(
                    "nested",
                    KvlistValue(KeyValueList {
                        values: vec![kv("ok", BoolValue(true))],
                    }),
                ),
            ],
        })),
        attributes: vec![kv("alert.rule", StringValue("cpu-high".into()))],
        ..Default::default()
    });
    expected.push(json!({
        "time": "2026-11-25T03:04:05.123000001Z",
        "time_unix_nano": (T + 1).to_string(),
        "severity": "ERROR",
        "severity_number": 17,
        "body": {"user": tag, "count": 3, "nested": {"ok": true}},
        "attributes": {"alert.rule": "cpu-high"},
        "resource": host_json,
        "scope": scope_json,
    }));

    // A bytes body (base64), no attributes.
    records.push(LogRecord {
        time_unix_nano: T + 2,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: any(BytesValue(vec![0xca, 0xfe, 0x01])),
        ..Default::default()
    });
    expected.push(json!({
        "time": "2026-11-25T03:04:05.123000002Z",
        "time_unix_nano": (T + 2).to_string(),
        "severity": "INFO",
        "severity_number": 9,
        "body": "yv4B",
        "attributes": {},
        "resource": host_json,
        "scope": scope_json,
    }));

    // A number body, and only a span id.
    records.push(LogRecord {
        time_unix_nano: T + 3,
        severity_number: 5,
        severity_text: "DEBUG".into(),
        body: any(IntValue(42)),
        attributes: vec![kv("ratio", DoubleValue(-0.5))],
        span_id: vec![0x01; 8],
        ..Default::default()
    });
    expected.push(json!({
        "time": "2026-11-25T03:04:05.123000003Z",
        "time_unix_nano": (T + 3).to_string(),
        "severity": "DEBUG",
        "severity_number": 5,
        "body": 42,
        "attributes": {"ratio": -0.5},
        "resource": host_json,
        "scope": scope_json,
        "span_id": "0101010101010101",
    }));

    // No body, no severity, only the observed time.
    records.push(LogRecord {
        observed_time_unix_nano: T + 4,
        ..Default::default()
    });
    expected.push(json!({
        "time": "2026-11-25T03:04:05.123000004Z",
        "time_unix_nano": (T + 4).to_string(),
        "severity": "",
        "severity_number": 0,
        "body": null,
        "attributes": {},
        "resource": host_json,
        "scope": scope_json,
    }));

    // An array body.
    records.push(LogRecord {
        time_unix_nano: T + 5,
        severity_number: 21,
        severity_text: "FATAL".into(),
        body: any(ArrayValue(OtlpArray {
            values: vec![
                AnyValue {
                    value: Some(StringValue("x".into())),
                },
                AnyValue {
                    value: Some(DoubleValue(2.5)),
                },
            ],
        })),
        ..Default::default()
    });
    expected.push(json!({
        "time": "2026-11-25T03:04:05.123000005Z",
        "time_unix_nano": (T + 5).to_string(),
        "severity": "FATAL",
        "severity_number": 21,
        "body": ["x", 2.5],
        "attributes": {},
        "resource": host_json,
        "scope": scope_json,
    }));

    let other = LogRecord {
        time_unix_nano: T + 6,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: any(StringValue(format!("{tag}: from another service"))),
        trace_id: vec![0xee; 16],
        span_id: vec![0xdd; 8],
        ..Default::default()
    };
    let other_json = json!({
        "time": "2026-11-25T03:04:05.123000006Z",
        "time_unix_nano": (T + 6).to_string(),
        "severity": "INFO",
        "severity_number": 9,
        "body": format!("{tag}: from another service"),
        "attributes": {},
        "resource": {"service.name": "other"},
        "trace_id": "ee".repeat(16),
        "span_id": "dd".repeat(8),
    });
    expected.push(other_json);

    let request = ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: host,
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "sluice/threshold".into(),
                        version: "1.2.3".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", StringValue("other".into()))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![other],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    (request, expected)
}

/// A request of one plain record, and its object.
fn one(tag: &str) -> (ExportLogsServiceRequest, Vec<Value>) {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: T,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: any(any_value::Value::StringValue(tag.into())),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let expected = vec![json!({
        "time": "2026-11-25T03:04:05.123000000Z",
        "time_unix_nano": T.to_string(),
        "severity": "INFO",
        "severity_number": 9,
        "body": tag,
        "attributes": {},
        "resource": {},
    })];
    (request, expected)
}

// ---------------------------------------------------------------------------------------------
// The collector

fn config(url: &str, mode: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  webhook/alerts:
    url: {url}/hooks/alerts
    mode: {mode}
    headers:
      Authorization: "Bearer ${{env:SLUICE_TEST_WEBHOOK_TOKEN}}"
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [webhook/alerts]
"#
    )
}

fn start(server: &HttpServer, mode: &str) -> Collector {
    Collector::start_with_env(
        &config(&server.url(), mode),
        &[],
        &[("SLUICE_TEST_WEBHOOK_TOKEN", "s3cret-token")],
    )
}

fn post_logs(c: &Collector, request: &ExportLogsServiceRequest) {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{}/v1/logs", c.http))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 200, "log:\n{}", c.logs());
}

/// Every webhook request is a POST of JSON with the configured Authorization header; returns
/// the parsed bodies.
fn bodies(requests: &[Recorded]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/hooks/alerts");
            assert_eq!(r.header("authorization"), Some("Bearer s3cret-token"));
            assert!(
                r.header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{:?}",
                r.header("content-type")
            );
            serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&r.body)
                )
            })
        })
        .collect()
}

/// Compares posted objects with the expected ones, naming the first that differs.
fn assert_records(got: &[Value], want: &[Value]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g,
            w,
            "record {i} differs:\ngot:  {}\nwant: {}",
            serde_json::to_string_pretty(g).unwrap(),
            serde_json::to_string_pretty(w).unwrap()
        );
    }
    assert_eq!(got.len(), want.len(), "got {got:#?}");
}

/// Stops the collector (which drains its queue) and checks that nothing more was posted.
fn stop_and_count(mut c: Collector, server: &HttpServer, want: usize) {
    assert!(c.stop().success(), "log:\n{}", c.logs());
    assert_eq!(server.requests().len(), want, "requests after the stop");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn batch_mode_posts_one_array_per_batch_with_exactly_the_records_sent() {
    let server = HttpServer::start();
    let c = start(&server, "batch");
    let (first, first_json) = alerts("first");
    let (second, second_json) = alerts("second");
    post_logs(&c, &first);
    server.wait_for(1, &c);
    post_logs(&c, &second);
    let requests = server.wait_for(2, &c);
    let posted = bodies(&requests);
    assert_eq!(posted.len(), 2);
    for (body, want) in posted.iter().zip([&first_json, &second_json]) {
        let Value::Array(records) = body else {
            panic!("batch mode must post a JSON array, got {body}")
        };
        assert_records(records, want);
    }
    assert_eq!(first_json.len(), 7);

    // A 500 is retried, after the server's Retry-After: the same array again, then nothing
    // more.
    server.script(
        "/hooks/alerts",
        vec![Reply::status(500).header("retry-after", "1")],
    );
    let (third, third_json) = one("third");
    post_logs(&c, &third);
    let requests = server.wait_for(4, &c);
    let gap = requests[3].at - requests[2].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?} despite Retry-After: 1"
    );
    let posted = bodies(&requests[2..]);
    assert_eq!(posted[0], posted[1]);
    assert_records(posted[1].as_array().unwrap(), &third_json);
    stop_and_count(c, &server, 4);
}

#[test]
fn single_mode_posts_one_object_per_record() {
    let server = HttpServer::start();
    let c = start(&server, "single");
    let (first, first_json) = alerts("first");
    let (second, second_json) = one("second");
    post_logs(&c, &first);
    server.wait_for(first_json.len(), &c);
    post_logs(&c, &second);
    let requests = server.wait_for(first_json.len() + 1, &c);
    let posted = bodies(&requests);
    for body in &posted {
        assert!(
            body.is_object(),
            "single mode must post objects, got {body}"
        );
    }
    let want: Vec<Value> = first_json.into_iter().chain(second_json).collect();
    assert_records(&posted, &want);

    // A 503 is retried: the record is posted again.
    server.script("/hooks/alerts", vec![Reply::status(503)]);
    let (third, third_json) = one("third");
    post_logs(&c, &third);
    let requests = server.wait_for(want.len() + 2, &c);
    let posted = bodies(&requests[want.len()..]);
    assert_records(&posted, &[third_json[0].clone(), third_json[0].clone()]);
    stop_and_count(c, &server, want.len() + 2);
}
