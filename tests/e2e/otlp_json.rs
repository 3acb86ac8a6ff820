//! OTLP/JSON over HTTP, written by hand, for all three signals: the collector must accept
//! every form the OTLP specification allows on input (hex ids in either case, 64-bit integers
//! as strings or numbers, enums as integers, unknown fields anywhere, gzip bodies) and write
//! the file exporter's JSON exactly as the specification says (lowercase hex ids, 64-bit
//! integers as decimal strings, enums as integers, lowerCamelCase keys), losing nothing.
//! Also OTLP/protobuf over HTTP with zstd and deflate bodies.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Collector, file_pipeline_config};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers

/// POSTs `body` to the collector's OTLP/HTTP `path`.
fn post(
    c: &Collector,
    path: &str,
    content_type: &str,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", c.http))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = content_encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().unwrap()
}

/// POSTs an OTLP/JSON document and checks the answer: 200, `application/json`, a JSON object
/// that reports no rejected items.
fn post_json(c: &Collector, path: &str, doc: &Value, gzip: bool) {
    let mut body = doc.to_string().into_bytes();
    let encoding = if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).unwrap();
        body = gz.finish().unwrap();
        Some("gzip")
    } else {
        None
    };
    let response = post(c, path, "application/json", encoding, body);
    let status = response.status().as_u16();
    let content_type = content_type(&response);
    let text = response.text().unwrap();
    assert_eq!(status, 200, "POST {path}: {text}\nlog:\n{}", c.logs());
    assert!(
        content_type.starts_with("application/json"),
        "content-type `{content_type}`"
    );
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response body `{text}` is not JSON: {e}"));
    let answer = answer
        .as_object()
        .unwrap_or_else(|| panic!("response body `{text}` is not a JSON object"));
    if let Some(partial) = answer.get("partialSuccess") {
        for (key, value) in partial.as_object().unwrap() {
            if key.starts_with("rejected") {
                assert!(
                    value == &json!(0) || value == &json!("0"),
                    "partial success: {text}"
                );
            }
        }
    }
}

fn content_type(response: &reqwest::blocking::Response) -> String {
    response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The complete lines of the file exporter's `out.jsonl`, waiting (generously) until there
/// are at least `n`.
fn output_lines(c: &Collector, n: usize) -> Vec<Value> {
    let path = c.path("out.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // Only lines already terminated: a line being written is not complete yet.
        let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
        let lines: Vec<Value> = complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l}: {e}")))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        if Instant::now() > deadline {
            panic!(
                "expected {n} lines in {}, found {}; log:\n{}",
                path.display(),
                lines.len(),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Decodes an OTLP/JSON document into the request type, the canonical form both the
/// request sent and the line written are compared in.
macro_rules! canonical {
    ($ty:ty, $doc:expr) => {{
        let doc: &Value = $doc;
        serde_json::from_value::<$ty>(doc.clone())
            .unwrap_or_else(|e| panic!("not a valid OTLP/JSON document ({e}): {doc}"))
    }};
}

/// Every object key anywhere in `v` (attribute keys are values, not object keys).
fn object_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                out.push(k.clone());
                object_keys(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| object_keys(i, out)),
        _ => {}
    }
}

/// The output uses lowerCamelCase field names only, and none of the unknown fields the input
/// carried (they were ignored, not passed through).
fn assert_keys_lower_camel_case_without(v: &Value, unknown: &[&str]) {
    let mut keys = Vec::new();
    object_keys(v, &mut keys);
    assert!(!keys.is_empty());
    for key in &keys {
        let mut chars = key.chars();
        let first = chars.next().unwrap();
        assert!(
            first.is_ascii_lowercase() && chars.all(|c| c.is_ascii_alphanumeric()),
            "key `{key}` is not lowerCamelCase"
        );
        assert!(
            !unknown.contains(&key.as_str()),
            "unknown input field `{key}` reached the output"
        );
    }
}

/// The `value` of attribute `key` in an OTLP/JSON attribute list.
fn attr<'a>(attributes: &'a Value, key: &str) -> &'a Value {
    attributes
        .as_array()
        .unwrap_or_else(|| panic!("not an attribute list: {attributes}"))
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
        .unwrap_or_else(|| panic!("no attribute `{key}` in {attributes}"))
}

fn by_name<'a>(items: &'a Value, name: &str) -> &'a Value {
    items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no item named `{name}` in {items}"))
}

fn as_f64(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a JSON number, got {v}"))
}

// ---------------------------------------------------------------------------------------------
// Traces

const TRACE_ID_UPPER: &str = "5B8EFFF798038103D269B633813FC60C";
const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const ROOT_ID_UPPER: &str = "EEE19B7EC3C1B174";
const ROOT_ID: &str = "eee19b7ec3c1b174";
const CHILD_ID: &str = "00f067aa0ba902b7";
const LINK_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const LINK_SPAN_ID: &str = "53995c3f42cd8ad8";
const TRACE_UNKNOWN: &[&str] = &[
    "futureTopLevel",
    "futureResourceSpans",
    "futureResource",
    "futureScope",
    "futureScopeSpans",
    "futureSpan",
    "futureEvent",
    "futureLink",
    "futureStatus",
    "futureKeyValue",
    "futureAnyValue",
];

/// Attributes of every kind, with 64-bit integers given both as strings and as numbers.
fn every_kind_of_attribute() -> Value {
    json!([
        {"key": "str", "value": {"stringValue": "héllo \"quoted\""}},
        {"key": "bool.true", "value": {"boolValue": true}},
        {"key": "bool.false", "value": {"boolValue": false}},
        {"key": "int.string", "value": {"intValue": "-42"}},
        {"key": "int.number", "value": {"intValue": 9007199254740993i64}},
        {"key": "int.max", "value": {"intValue": "9223372036854775807"}},
        {"key": "double", "value": {"doubleValue": 3.25}},
        {"key": "double.integral", "value": {"doubleValue": 2}},
        {"key": "bytes", "value": {"bytesValue": "AAEC/w=="}},
        {"key": "array", "value": {"arrayValue": {"values": [
            {"stringValue": "a"}, {"intValue": 7}, {"doubleValue": 1.5}, {"boolValue": true}
        ]}}},
        {"key": "kvlist", "value": {"kvlistValue": {"values": [
            {"key": "inner", "value": {"stringValue": "x"}},
            {"key": "deeper", "value": {"kvlistValue": {"values": [
                {"key": "n", "value": {"intValue": "1"}}
            ]}}}
        ]}}},
        {"key": "empty", "value": {}},
        {"key": "with.unknowns", "futureKeyValue": 1,
         "value": {"stringValue": "kept", "futureAnyValue": {"x": [1]}}}
    ])
}

fn traces_request() -> Value {
    json!({
        "futureTopLevel": {"ignored": true},
        "resourceSpans": [{
            "futureResourceSpans": [1, 2, 3],
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                    {"key": "res.int", "value": {"intValue": "-7"}},
                    {"key": "res.array", "value": {"arrayValue": {"values": [
                        {"stringValue": "a"}, {"stringValue": "b"}
                    ]}}}
                ],
                "droppedAttributesCount": 1,
                "futureResource": "x"
            },
            "schemaUrl": "https://opentelemetry.io/schemas/1.44.0",
            "scopeSpans": [{
                "futureScopeSpans": null,
                "scope": {
                    "name": "e2e.json",
                    "version": "0.9.1",
                    "attributes": [{"key": "scope.attr", "value": {"stringValue": "s"}}],
                    "droppedAttributesCount": 2,
                    "futureScope": {}
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.43.0",
                "spans": [
                    {
                        "traceId": TRACE_ID_UPPER,
                        "spanId": ROOT_ID_UPPER,
                        "traceState": "vendor=a:1",
                        "flags": 257,
                        "name": "GET /cart",
                        "kind": 2,
                        "startTimeUnixNano": 1700000000123456789u64,
                        "endTimeUnixNano": "1700000000987654321",
                        "attributes": every_kind_of_attribute(),
                        "droppedAttributesCount": 3,
                        "events": [{
                            "timeUnixNano": "1700000000200000001",
                            "name": "cache miss",
                            "attributes": [
                                {"key": "cache.key", "value": {"stringValue": "cart:1"}},
                                {"key": "cache.tries", "value": {"intValue": 2}}
                            ],
                            "droppedAttributesCount": 1,
                            "futureEvent": true
                        }, {
                            "timeUnixNano": 1700000000300000002u64,
                            "name": "retry"
                        }],
                        "droppedEventsCount": 4,
                        "links": [{
                            "traceId": LINK_TRACE_ID.to_uppercase(),
                            "spanId": LINK_SPAN_ID,
                            "traceState": "k=v",
                            "attributes": [{"key": "link.kind", "value": {"stringValue": "follows"}}],
                            "droppedAttributesCount": 5,
                            "flags": 256,
                            "futureLink": 1
                        }],
                        "droppedLinksCount": 6,
                        "status": {"message": "boom", "code": 2, "futureStatus": 0},
                        "futureSpan": {"nested": [1, {"deep": "x"}]}
                    },
                    {
                        "traceId": TRACE_ID,
                        "spanId": CHILD_ID.to_uppercase(),
                        "parentSpanId": ROOT_ID_UPPER,
                        "name": "SELECT cart",
                        "kind": 3,
                        "startTimeUnixNano": "1700000000400000000",
                        "endTimeUnixNano": 1700000000500000000u64,
                        "status": {"code": 1}
                    }
                ]
            }]
        }]
    })
}

#[test]
fn json_traces_round_trip_field_by_field() {
    let c = Collector::start(&file_pipeline_config("json", ""), &[]);
    let request = traces_request();
    post_json(&c, "/v1/traces", &request, false);
    let lines = output_lines(&c, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let out = &lines[0];

    // Nothing lost, nothing changed: the line decodes to exactly what was sent.
    assert_eq!(
        canonical!(ExportTraceServiceRequest, out),
        canonical!(ExportTraceServiceRequest, &request)
    );

    // The OTLP/JSON output rules, on the raw text.
    assert_keys_lower_camel_case_without(out, TRACE_UNKNOWN);
    let rs = &out["resourceSpans"][0];
    assert_eq!(rs["schemaUrl"], "https://opentelemetry.io/schemas/1.44.0");
    let res = &rs["resource"];
    assert_eq!(
        attr(&res["attributes"], "service.name"),
        &json!({"stringValue": "checkout"})
    );
    assert_eq!(
        attr(&res["attributes"], "res.int"),
        &json!({"intValue": "-7"})
    );
    assert_eq!(res["droppedAttributesCount"], 1);
    let ss = &rs["scopeSpans"][0];
    assert_eq!(ss["schemaUrl"], "https://opentelemetry.io/schemas/1.43.0");
    assert_eq!(ss["scope"]["name"], "e2e.json");
    assert_eq!(ss["scope"]["version"], "0.9.1");
    assert_eq!(ss["scope"]["droppedAttributesCount"], 2);
    assert_eq!(
        attr(&ss["scope"]["attributes"], "scope.attr"),
        &json!({"stringValue": "s"})
    );

    let root = by_name(&ss["spans"], "GET /cart");
    assert_eq!(root["traceId"], TRACE_ID, "ids are lowercase hex");
    assert_eq!(root["spanId"], ROOT_ID);
    assert_eq!(root["traceState"], "vendor=a:1");
    assert_eq!(root["flags"], 257);
    assert_eq!(root["kind"], 2, "enums are integers");
    assert_eq!(
        root["startTimeUnixNano"], "1700000000123456789",
        "a 64-bit number on input is a decimal string on output"
    );
    assert_eq!(root["endTimeUnixNano"], "1700000000987654321");
    assert_eq!(root["droppedAttributesCount"], 3);
    assert_eq!(root["droppedEventsCount"], 4);
    assert_eq!(root["droppedLinksCount"], 6);
    assert_eq!(root["status"]["code"], 2);
    assert_eq!(root["status"]["message"], "boom");
    let a = &root["attributes"];
    assert_eq!(a.as_array().unwrap().len(), 13);
    assert_eq!(attr(a, "str"), &json!({"stringValue": "héllo \"quoted\""}));
    assert_eq!(attr(a, "bool.true"), &json!({"boolValue": true}));
    assert_eq!(attr(a, "bool.false"), &json!({"boolValue": false}));
    assert_eq!(attr(a, "int.string"), &json!({"intValue": "-42"}));
    assert_eq!(
        attr(a, "int.number"),
        &json!({"intValue": "9007199254740993"})
    );
    assert_eq!(
        attr(a, "int.max"),
        &json!({"intValue": "9223372036854775807"})
    );
    assert_eq!(as_f64(&attr(a, "double")["doubleValue"]), 3.25);
    assert_eq!(as_f64(&attr(a, "double.integral")["doubleValue"]), 2.0);
    assert_eq!(attr(a, "bytes"), &json!({"bytesValue": "AAEC/w=="}));
    let array = &attr(a, "array")["arrayValue"]["values"];
    assert_eq!(array[0], json!({"stringValue": "a"}));
    assert_eq!(array[1], json!({"intValue": "7"}));
    assert_eq!(as_f64(&array[2]["doubleValue"]), 1.5);
    assert_eq!(array[3], json!({"boolValue": true}));
    let kvlist = &attr(a, "kvlist")["kvlistValue"]["values"];
    assert_eq!(attr(kvlist, "inner"), &json!({"stringValue": "x"}));
    assert_eq!(
        attr(&attr(kvlist, "deeper")["kvlistValue"]["values"], "n"),
        &json!({"intValue": "1"})
    );
    assert_eq!(attr(a, "empty"), &json!({}));
    assert_eq!(attr(a, "with.unknowns"), &json!({"stringValue": "kept"}));

    let events = root["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["name"], "cache miss");
    assert_eq!(events[0]["timeUnixNano"], "1700000000200000001");
    assert_eq!(events[0]["droppedAttributesCount"], 1);
    assert_eq!(
        attr(&events[0]["attributes"], "cache.tries"),
        &json!({"intValue": "2"})
    );
    assert_eq!(events[1]["name"], "retry");
    assert_eq!(events[1]["timeUnixNano"], "1700000000300000002");
    let link = &root["links"][0];
    assert_eq!(link["traceId"], LINK_TRACE_ID);
    assert_eq!(link["spanId"], LINK_SPAN_ID);
    assert_eq!(link["traceState"], "k=v");
    assert_eq!(link["flags"], 256);
    assert_eq!(link["droppedAttributesCount"], 5);
    assert_eq!(
        attr(&link["attributes"], "link.kind"),
        &json!({"stringValue": "follows"})
    );

    let child = by_name(&ss["spans"], "SELECT cart");
    assert_eq!(child["traceId"], TRACE_ID);
    assert_eq!(child["spanId"], CHILD_ID);
    assert_eq!(child["parentSpanId"], ROOT_ID);
    assert_eq!(child["kind"], 3);
    assert_eq!(child["startTimeUnixNano"], "1700000000400000000");
    assert_eq!(child["endTimeUnixNano"], "1700000000500000000");
    assert_eq!(child["status"]["code"], 1);
}

// ---------------------------------------------------------------------------------------------
// Metrics

const METRIC_UNKNOWN: &[&str] = &[
    "futureMetric",
    "futurePoint",
    "futureSum",
    "futureBuckets",
    "futureQuantile",
    "futureExemplar",
];

fn metrics_request() -> Value {
    let t0 = "1700000000000000000";
    let t1 = 1700000060000000000u64;
    json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "meter"}},
                {"key": "host.cores", "value": {"intValue": 8}}
            ]},
            "schemaUrl": "https://opentelemetry.io/schemas/1.44.0",
            "scopeMetrics": [{
                "scope": {"name": "e2e.metrics", "version": "2.0.0",
                          "attributes": [{"key": "lib", "value": {"boolValue": true}}]},
                "schemaUrl": "https://opentelemetry.io/schemas/1.42.0",
                "metrics": [
                    {
                        "name": "e2e.gauge", "description": "a gauge", "unit": "1",
                        "metadata": [{"key": "meta", "value": {"stringValue": "m"}}],
                        "futureMetric": {"a": 1},
                        "gauge": {"dataPoints": [
                            {"attributes": [{"key": "cpu", "value": {"intValue": "0"}}],
                             "startTimeUnixNano": t0, "timeUnixNano": t1,
                             "asDouble": 0.75, "futurePoint": "x"},
                            {"attributes": [{"key": "cpu", "value": {"intValue": 1}}],
                             "timeUnixNano": t1, "asInt": "-7"},
                            {"timeUnixNano": t1, "asInt": 9007199254740993i64},
                            {"timeUnixNano": t1, "flags": 1}
                        ]}
                    },
                    {
                        "name": "e2e.requests", "unit": "{request}",
                        "sum": {
                            "aggregationTemporality": 1, "isMonotonic": true, "futureSum": 0,
                            "dataPoints": [{
                                "startTimeUnixNano": t0, "timeUnixNano": t1, "asInt": "12",
                                "exemplars": [{
                                    "filteredAttributes": [{"key": "user", "value": {"stringValue": "u1"}}],
                                    "timeUnixNano": "1700000030000000000",
                                    "asInt": 5,
                                    "spanId": CHILD_ID.to_uppercase(),
                                    "traceId": TRACE_ID_UPPER,
                                    "futureExemplar": []
                                }]
                            }]
                        }
                    },
                    {
                        "name": "e2e.queue", "description": "up and down",
                        "sum": {
                            "aggregationTemporality": 2, "isMonotonic": false,
                            "dataPoints": [{"startTimeUnixNano": t0, "timeUnixNano": t1, "asDouble": -3.5}]
                        }
                    },
                    {
                        "name": "e2e.latency", "unit": "ms",
                        "histogram": {
                            "aggregationTemporality": 2,
                            "dataPoints": [{
                                "attributes": [{"key": "route", "value": {"stringValue": "/cart"}}],
                                "startTimeUnixNano": t0, "timeUnixNano": t1,
                                "count": "6", "sum": 1720.5,
                                "bucketCounts": ["1", 2, "2", 1],
                                "explicitBounds": [10, 100.5, 1000],
                                "min": 5, "max": 1500.25,
                                "exemplars": [{"timeUnixNano": t1, "asDouble": 150.5,
                                               "traceId": TRACE_ID, "spanId": ROOT_ID}]
                            }]
                        }
                    },
                    {
                        "name": "e2e.exponential", "unit": "s",
                        "exponentialHistogram": {
                            "aggregationTemporality": 1,
                            "dataPoints": [{
                                "startTimeUnixNano": t0, "timeUnixNano": t1,
                                "count": 10, "sum": 55.5, "scale": -3,
                                "zeroCount": "1", "zeroThreshold": 0.001,
                                "positive": {"offset": -2, "bucketCounts": ["3", 4], "futureBuckets": 1},
                                "negative": {"offset": 1, "bucketCounts": [2]},
                                "min": -4, "max": 20
                            }]
                        }
                    },
                    {
                        "name": "e2e.summary",
                        "summary": {"dataPoints": [{
                            "startTimeUnixNano": t0, "timeUnixNano": t1,
                            "count": "100", "sum": 2500.5,
                            "quantileValues": [
                                {"quantile": 0, "value": 1},
                                {"quantile": 0.5, "value": 20.5, "futureQuantile": 1},
                                {"quantile": 1, "value": 99.5}
                            ]
                        }]}
                    }
                ]
            }]
        }]
    })
}

#[test]
fn json_metrics_of_every_type_round_trip_field_by_field() {
    let c = Collector::start(&file_pipeline_config("json", ""), &[]);
    let request = metrics_request();
    post_json(&c, "/v1/metrics", &request, false);
    let lines = output_lines(&c, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let out = &lines[0];
    assert_eq!(
        canonical!(ExportMetricsServiceRequest, out),
        canonical!(ExportMetricsServiceRequest, &request)
    );
    assert_keys_lower_camel_case_without(out, METRIC_UNKNOWN);

    let rm = &out["resourceMetrics"][0];
    assert_eq!(rm["schemaUrl"], "https://opentelemetry.io/schemas/1.44.0");
    assert_eq!(
        attr(&rm["resource"]["attributes"], "host.cores"),
        &json!({"intValue": "8"})
    );
    let sm = &rm["scopeMetrics"][0];
    assert_eq!(sm["schemaUrl"], "https://opentelemetry.io/schemas/1.42.0");
    assert_eq!(sm["scope"]["name"], "e2e.metrics");
    assert_eq!(sm["scope"]["version"], "2.0.0");
    let metrics = &sm["metrics"];
    assert_eq!(metrics.as_array().unwrap().len(), 6);

    let gauge = by_name(metrics, "e2e.gauge");
    assert_eq!(gauge["description"], "a gauge");
    assert_eq!(gauge["unit"], "1");
    assert_eq!(
        attr(&gauge["metadata"], "meta"),
        &json!({"stringValue": "m"})
    );
    let points = &gauge["gauge"]["dataPoints"];
    assert_eq!(points.as_array().unwrap().len(), 4);
    assert_eq!(points[0]["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(points[0]["timeUnixNano"], "1700000060000000000");
    assert_eq!(as_f64(&points[0]["asDouble"]), 0.75);
    assert_eq!(
        attr(&points[0]["attributes"], "cpu"),
        &json!({"intValue": "0"})
    );
    assert_eq!(points[1]["asInt"], "-7", "sfixed64 is a decimal string");
    assert_eq!(points[2]["asInt"], "9007199254740993");
    assert_eq!(points[3]["flags"], 1);

    let requests = by_name(metrics, "e2e.requests");
    assert_eq!(requests["unit"], "{request}");
    let sum = &requests["sum"];
    assert_eq!(sum["aggregationTemporality"], 1);
    assert_eq!(sum["isMonotonic"], true);
    let point = &sum["dataPoints"][0];
    assert_eq!(point["asInt"], "12");
    let exemplar = &point["exemplars"][0];
    assert_eq!(exemplar["traceId"], TRACE_ID);
    assert_eq!(exemplar["spanId"], CHILD_ID);
    assert_eq!(exemplar["asInt"], "5");
    assert_eq!(exemplar["timeUnixNano"], "1700000030000000000");
    assert_eq!(
        attr(&exemplar["filteredAttributes"], "user"),
        &json!({"stringValue": "u1"})
    );

    let queue = &by_name(metrics, "e2e.queue")["sum"];
    assert_eq!(queue["aggregationTemporality"], 2);
    assert_eq!(queue["isMonotonic"], false);
    assert_eq!(as_f64(&queue["dataPoints"][0]["asDouble"]), -3.5);

    let latency = by_name(metrics, "e2e.latency");
    assert_eq!(latency["unit"], "ms");
    assert_eq!(latency["histogram"]["aggregationTemporality"], 2);
    let h = &latency["histogram"]["dataPoints"][0];
    assert_eq!(h["count"], "6");
    assert_eq!(as_f64(&h["sum"]), 1720.5);
    assert_eq!(h["bucketCounts"], json!(["1", "2", "2", "1"]));
    let bounds: Vec<f64> = h["explicitBounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(as_f64)
        .collect();
    assert_eq!(bounds, [10.0, 100.5, 1000.0]);
    assert_eq!(as_f64(&h["min"]), 5.0);
    assert_eq!(as_f64(&h["max"]), 1500.25);
    assert_eq!(
        attr(&h["attributes"], "route"),
        &json!({"stringValue": "/cart"})
    );
    assert_eq!(h["exemplars"][0]["traceId"], TRACE_ID);
    assert_eq!(as_f64(&h["exemplars"][0]["asDouble"]), 150.5);

    let exponential = &by_name(metrics, "e2e.exponential")["exponentialHistogram"];
    assert_eq!(exponential["aggregationTemporality"], 1);
    let e = &exponential["dataPoints"][0];
    assert_eq!(e["count"], "10");
    assert_eq!(as_f64(&e["sum"]), 55.5);
    assert_eq!(e["scale"], -3);
    assert_eq!(e["zeroCount"], "1");
    assert_eq!(as_f64(&e["zeroThreshold"]), 0.001);
    assert_eq!(e["positive"]["offset"], -2);
    assert_eq!(e["positive"]["bucketCounts"], json!(["3", "4"]));
    assert_eq!(e["negative"]["offset"], 1);
    assert_eq!(e["negative"]["bucketCounts"], json!(["2"]));
    assert_eq!(as_f64(&e["min"]), -4.0);
    assert_eq!(as_f64(&e["max"]), 20.0);

    let s = &by_name(metrics, "e2e.summary")["summary"]["dataPoints"][0];
    assert_eq!(s["count"], "100");
    assert_eq!(as_f64(&s["sum"]), 2500.5);
    let quantiles: Vec<(f64, f64)> = s["quantileValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (as_f64(&q["quantile"]), as_f64(&q["value"])))
        .collect();
    assert_eq!(quantiles, [(0.0, 1.0), (0.5, 20.5), (1.0, 99.5)]);
}

// ---------------------------------------------------------------------------------------------
// Logs

/// One log record per body kind, numbered by a `seq` attribute.
fn log_bodies() -> Vec<Option<Value>> {
    vec![
        Some(json!({"stringValue": "hello world"})),
        Some(json!({"stringValue": ""})),
        Some(json!({"boolValue": false})),
        Some(json!({"intValue": "-9223372036854775808"})),
        Some(json!({"intValue": 9223372036854775807i64})),
        Some(json!({"doubleValue": -0.5})),
        Some(json!({"bytesValue": "3q2+7w=="})),
        Some(json!({"arrayValue": {"values": [
            {"stringValue": "x"},
            {"intValue": "1"},
            {"arrayValue": {"values": [{"boolValue": true}]}},
            {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 1.5}}]}},
            {}
        ]}})),
        Some(json!({"kvlistValue": {"values": [
            {"key": "a", "value": {"stringValue": "b"}},
            {"key": "nested", "value": {"kvlistValue": {"values": [
                {"key": "n", "value": {"intValue": "3"}}
            ]}}},
            {"key": "list", "value": {"arrayValue": {"values": [{"doubleValue": 0.5}]}}},
            {"key": "none", "value": {}}
        ]}})),
        Some(json!({})),
        None,
    ]
}

/// How each body must look in the output: the same, with 64-bit integers as strings.
fn expected_log_body(seq: usize) -> Option<Value> {
    match seq {
        4 => Some(json!({"intValue": "9223372036854775807"})),
        _ => log_bodies()[seq].clone(),
    }
}

fn logs_request() -> Value {
    let records: Vec<Value> = log_bodies()
        .into_iter()
        .enumerate()
        .map(|(seq, body)| {
            let mut record = json!({
                "timeUnixNano": 1700000000000000000u64 + seq as u64,
                "observedTimeUnixNano": format!("{}", 1700000001000000000u64 + seq as u64),
                "severityNumber": seq + 1,
                "severityText": format!("LEVEL{seq}"),
                "attributes": [{"key": "seq", "value": {"intValue": seq}}],
                "futureLogRecord": {"x": seq}
            });
            if let Some(body) = body {
                record["body"] = body;
            }
            record
        })
        .collect();
    let mut records = records;
    // The first record also carries trace context, flags, an event name and every attribute kind.
    let first = records[0].as_object_mut().unwrap();
    first.insert("traceId".into(), json!(TRACE_ID_UPPER));
    first.insert("spanId".into(), json!(ROOT_ID_UPPER));
    first.insert("flags".into(), json!(1));
    first.insert("eventName".into(), json!("e2e.event"));
    first.insert("droppedAttributesCount".into(), json!(9));
    let mut attributes = every_kind_of_attribute();
    attributes
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"key": "seq", "value": {"intValue": "0"}}));
    first.insert("attributes".into(), attributes);
    json!({
        "resourceLogs": [{
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "logger"}}],
                "futureResource": 1
            },
            "schemaUrl": "https://opentelemetry.io/schemas/1.44.0",
            "scopeLogs": [{
                "scope": {"name": "e2e.logs", "version": "3.1.4"},
                "schemaUrl": "https://opentelemetry.io/schemas/1.41.0",
                "logRecords": records,
                "futureScopeLogs": "y"
            }]
        }]
    })
}

#[test]
fn gzip_json_logs_with_every_body_kind_round_trip_field_by_field() {
    let c = Collector::start(&file_pipeline_config("json", ""), &[]);
    let request = logs_request();
    post_json(&c, "/v1/logs", &request, true);
    let lines = output_lines(&c, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let out = &lines[0];
    assert_eq!(
        canonical!(ExportLogsServiceRequest, out),
        canonical!(ExportLogsServiceRequest, &request)
    );
    assert_keys_lower_camel_case_without(
        out,
        &[
            "futureLogRecord",
            "futureResource",
            "futureScopeLogs",
            "futureKeyValue",
            "futureAnyValue",
        ],
    );

    let rl = &out["resourceLogs"][0];
    assert_eq!(rl["schemaUrl"], "https://opentelemetry.io/schemas/1.44.0");
    assert_eq!(
        attr(&rl["resource"]["attributes"], "service.name"),
        &json!({"stringValue": "logger"})
    );
    let sl = &rl["scopeLogs"][0];
    assert_eq!(sl["schemaUrl"], "https://opentelemetry.io/schemas/1.41.0");
    assert_eq!(sl["scope"]["name"], "e2e.logs");
    assert_eq!(sl["scope"]["version"], "3.1.4");
    let records = sl["logRecords"].as_array().unwrap();
    assert_eq!(records.len(), log_bodies().len());
    for (i, record) in records.iter().enumerate() {
        let seq: usize = attr(&record["attributes"], "seq")["intValue"]
            .as_str()
            .unwrap_or_else(|| panic!("seq is not a string in {record}"))
            .parse()
            .unwrap();
        assert_eq!(seq, i, "records keep their order");
        let body = record.get("body").filter(|b| !b.is_null());
        assert_eq!(
            body,
            expected_log_body(seq).as_ref(),
            "body of record {seq}"
        );
        assert_eq!(
            record["timeUnixNano"],
            (1700000000000000000u64 + seq as u64).to_string()
        );
        assert_eq!(
            record["observedTimeUnixNano"],
            (1700000001000000000u64 + seq as u64).to_string()
        );
        assert_eq!(record["severityNumber"], seq + 1, "enums are integers");
        assert_eq!(record["severityText"], format!("LEVEL{seq}"));
    }
    let first = &records[0];
    assert_eq!(first["traceId"], TRACE_ID);
    assert_eq!(first["spanId"], ROOT_ID);
    assert_eq!(first["flags"], 1);
    assert_eq!(first["eventName"], "e2e.event");
    assert_eq!(first["droppedAttributesCount"], 9);
    let a = &first["attributes"];
    assert_eq!(
        attr(a, "int.number"),
        &json!({"intValue": "9007199254740993"})
    );
    assert_eq!(attr(a, "bytes"), &json!({"bytesValue": "AAEC/w=="}));
    assert_eq!(attr(a, "bool.false"), &json!({"boolValue": false}));
    assert_eq!(attr(a, "empty"), &json!({}));
}

// ---------------------------------------------------------------------------------------------
// Protobuf over HTTP

fn compress(encoding: &str, body: &[u8]) -> Vec<u8> {
    match encoding {
        "zstd" => zstd::encode_all(body, 3).unwrap(),
        "deflate" => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(body).unwrap();
            z.finish().unwrap()
        }
        "gzip" => {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(body).unwrap();
            z.finish().unwrap()
        }
        _ => body.to_vec(),
    }
}

#[test]
fn protobuf_over_http_plain_zstd_and_deflate_round_trips() {
    let c = Collector::start(&file_pipeline_config("json", ""), &[]);
    let mut sent = Vec::new();
    for encoding in ["identity", "zstd", "deflate"] {
        // A different request per encoding, so each line can be told from the others.
        let mut request = canonical!(ExportTraceServiceRequest, &traces_request());
        request.resource_spans[0].scope_spans[0].spans[0].name = format!("sent with {encoding}");
        let body = compress(encoding, &request.encode_to_vec());
        let response = post(
            &c,
            "/v1/traces",
            "application/x-protobuf",
            Some(encoding),
            body,
        );
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let bytes = response.bytes().unwrap();
        assert_eq!(
            status,
            200,
            "{encoding}: {}\nlog:\n{}",
            String::from_utf8_lossy(&bytes),
            c.logs()
        );
        assert_eq!(content_type, "application/x-protobuf", "{encoding}");
        let answer = ExportTraceServiceResponse::decode(bytes).unwrap();
        assert!(
            answer
                .partial_success
                .as_ref()
                .is_none_or(|p| p.rejected_spans == 0),
            "{encoding}: {answer:?}"
        );
        sent.push(request);
    }

    let lines = output_lines(&c, sent.len());
    assert_eq!(lines.len(), sent.len());
    let mut written: Vec<ExportTraceServiceRequest> = lines
        .iter()
        .map(|l| canonical!(ExportTraceServiceRequest, l))
        .collect();
    // The three requests travel separately; their order in the file is not the point here.
    let key =
        |r: &ExportTraceServiceRequest| r.resource_spans[0].scope_spans[0].spans[0].name.clone();
    written.sort_by_key(key);
    sent.sort_by_key(key);
    assert_eq!(written, sent);
    for line in &lines {
        let span = &line["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], TRACE_ID);
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(
            attr(&span["attributes"], "int.max"),
            &json!({"intValue": "9223372036854775807"})
        );
    }
}

/// Protobuf JSON printers leave out empty lists and default values (`{"arrayValue":{}}` is an
/// empty array attribute), and proto3 JSON allows `null` for any field: all of that is valid
/// OTLP/JSON and must not fail the request.
#[test]
fn json_with_omitted_empty_lists_and_nulls_is_accepted() {
    let c = Collector::start(&file_pipeline_config("json", ""), &[]);
    let request = json!({"resourceLogs": [{
        "resource": null,
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": null,
            "severityNumber": 13,
            "body": {"arrayValue": {}},
            "attributes": [
                {"key": "empty.list", "value": {"arrayValue": {}}},
                {"key": "empty.map", "value": {"kvlistValue": {}}},
                {"key": "null.int", "value": {"intValue": null}},
                {"value": {"stringValue": "no key"}}
            ]
        }]}]
    }]});
    post_json(&c, "/v1/logs", &request, false);
    let lines = output_lines(&c, 1);
    let record = &lines[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(record["body"], json!({"arrayValue": {"values": []}}));
    assert_eq!(record["timeUnixNano"], "0");
    assert_eq!(record["severityNumber"], 13);
    let a = &record["attributes"];
    assert_eq!(
        attr(a, "empty.list"),
        &json!({"arrayValue": {"values": []}})
    );
    assert_eq!(
        attr(a, "empty.map"),
        &json!({"kvlistValue": {"values": []}})
    );
    assert_eq!(attr(a, "null.int"), &json!({}));
    assert_eq!(attr(a, ""), &json!({"stringValue": "no key"}));
}
