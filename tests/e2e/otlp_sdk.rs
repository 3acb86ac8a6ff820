//! The real OpenTelemetry Rust SDK (`opentelemetry_sdk` + `opentelemetry-otlp`) sends spans,
//! metrics and logs to the collector over OTLP/gRPC and over OTLP/HTTP protobuf; the file
//! exporter's JSON output is then checked field by field against what the SDK was told to
//! record (ids, timestamps, attributes of every type, resource and scope, events, links,
//! histogram buckets, temporality, log bodies of every AnyValue kind, severities).

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Collector, file_pipeline_config};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{
    Array, Context, InstrumentationScope, Key, KeyValue, StringValue, Value as OtelValue,
};
use opentelemetry_otlp::{
    Compression, LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig,
    WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    /// OTLP/gRPC through tonic, gzip-compressed.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProto,
}

const SCOPE_NAME: &str = "sluice.e2e.sdk";
const SCOPE_VERSION: &str = "1.2.3";
const SCOPE_SCHEMA: &str = "https://opentelemetry.io/schemas/1.43.0";
const RESOURCE_SCHEMA: &str = "https://opentelemetry.io/schemas/1.44.0";
const LINKED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const LINKED_SPAN: &str = "00f067aa0ba902b7";
/// A fixed instant the recorded span and log timestamps are offsets from.
const T0: u64 = 1_700_000_000_123_456_789;

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn resource(transport: Transport) -> Resource {
    Resource::builder_empty()
        .with_service_name(format!("sdk-{transport:?}"))
        .with_schema_url(
            [
                KeyValue::new("deployment.environment.name", "e2e"),
                KeyValue::new("host.cpu.count", 8i64),
                KeyValue::new("feature.enabled", true),
                KeyValue::new("sample.ratio", 0.5),
            ],
            RESOURCE_SCHEMA,
        )
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(SCOPE_VERSION)
        .with_schema_url(SCOPE_SCHEMA)
        .with_attributes([
            KeyValue::new("scope.owner", "team-e2e"),
            KeyValue::new("scope.level", 2i64),
        ])
        .build()
}

fn span_exporter(t: Transport, c: &Collector) -> SpanExporter {
    match t {
        Transport::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", c.grpc))
            .with_compression(Compression::Gzip)
            .build(),
        Transport::HttpProto => SpanExporter::builder()
            .with_http()
            .with_http_client(http_client())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://127.0.0.1:{}/v1/traces", c.http))
            .build(),
    }
    .unwrap()
}

fn metric_exporter(t: Transport, c: &Collector, temporality: Temporality) -> MetricExporter {
    match t {
        Transport::Grpc => MetricExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", c.grpc))
            .with_compression(Compression::Gzip)
            .with_temporality(temporality)
            .build(),
        Transport::HttpProto => MetricExporter::builder()
            .with_http()
            .with_http_client(http_client())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://127.0.0.1:{}/v1/metrics", c.http))
            .with_temporality(temporality)
            .build(),
    }
    .unwrap()
}

fn log_exporter(t: Transport, c: &Collector) -> LogExporter {
    match t {
        Transport::Grpc => LogExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", c.grpc))
            .with_compression(Compression::Gzip)
            .build(),
        Transport::HttpProto => LogExporter::builder()
            .with_http()
            .with_http_client(http_client())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://127.0.0.1:{}/v1/logs", c.http))
            .build(),
    }
    .unwrap()
}

/// The SDK's batch processors and periodic reader export from their own threads, outside any
/// Tokio runtime, so OTLP/HTTP uses the blocking reqwest client there (as the crate advises).
fn http_client() -> reqwest::blocking::Client {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

// ---------------------------------------------------------------------------------------------
// Reading the output

/// Complete lines of `out.jsonl` whose top-level key is `key`, waiting (generously) until
/// `done` says they are all there.
fn lines_with(c: &Collector, key: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = c.path("out.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
        let lines: Vec<Value> = complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v.get(key).is_some())
            .collect();
        if done(&lines) {
            return lines;
        }
        if Instant::now() > deadline {
            panic!(
                "`{key}` lines incomplete after 60s: {lines:#?}\nlog:\n{}",
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every (resource, scope-level object, item) in the lines, for `resources`/`scopes`/`items`
/// keys such as `resourceSpans`/`scopeSpans`/`spans`.
fn flatten<'a>(
    lines: &'a [Value],
    resources: &str,
    scopes: &str,
    items: &str,
) -> Vec<(&'a Value, &'a Value, &'a Value)> {
    let mut out = Vec::new();
    for line in lines {
        for r in line[resources].as_array().unwrap() {
            for s in r[scopes].as_array().unwrap() {
                for i in s[items].as_array().unwrap() {
                    out.push((r, s, i));
                }
            }
        }
    }
    out
}

/// An attribute list as a map from key to its OTLP/JSON value, with kvlists put in key
/// order (the SDK's maps have none).
fn attrs(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an attribute list: {list}"))
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap().to_string(),
                sorted(kv["value"].clone()),
            )
        })
        .collect()
}

/// Sorts every `kvlistValue` by key, recursively.
fn sorted(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                *child = sorted(child.take());
                if k == "kvlistValue"
                    && let Some(values) = child.get_mut("values").and_then(Value::as_array_mut)
                {
                    values.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = sorted(item.take());
            }
        }
        _ => {}
    }
    v
}

fn expected_attrs(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), sorted(v.clone())))
        .collect()
}

/// A decimal-string 64-bit field as a number.
fn nanos(v: &Value) -> u64 {
    v.as_str()
        .unwrap_or_else(|| panic!("64-bit field is not a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn check_resource_and_scope(t: Transport, resource_level: &Value, scope_level: &Value) {
    assert_eq!(resource_level["schemaUrl"], RESOURCE_SCHEMA);
    assert_eq!(
        attrs(&resource_level["resource"]["attributes"]),
        expected_attrs(&[
            ("service.name", json!({"stringValue": format!("sdk-{t:?}")})),
            ("deployment.environment.name", json!({"stringValue": "e2e"})),
            ("host.cpu.count", json!({"intValue": "8"})),
            ("feature.enabled", json!({"boolValue": true})),
            ("sample.ratio", json!({"doubleValue": 0.5})),
        ])
    );
    assert_eq!(scope_level["schemaUrl"], SCOPE_SCHEMA);
    let scope = &scope_level["scope"];
    assert_eq!(scope["name"], SCOPE_NAME);
    assert_eq!(scope["version"], SCOPE_VERSION);
    assert_eq!(
        attrs(&scope["attributes"]),
        expected_attrs(&[
            ("scope.owner", json!({"stringValue": "team-e2e"})),
            ("scope.level", json!({"intValue": "2"})),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Traces

struct SentSpans {
    trace_id: String,
    root_id: String,
    child_id: String,
    internal_id: String,
    /// Wall clock around the internal span, whose times the SDK takes itself.
    before: u64,
    after: u64,
}

fn emit_spans(tracer_provider: &SdkTracerProvider) -> SentSpans {
    let tracer = tracer_provider.tracer_with_scope(scope());
    let root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(at(T0))
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("attr.bool", true),
            KeyValue::new("attr.i64", 42i64),
            KeyValue::new("attr.i64.max", i64::MAX),
            KeyValue::new("attr.i64.negative", -7i64),
            KeyValue::new("attr.f64", 0.25),
            KeyValue::new(
                "attr.strings",
                OtelValue::Array(Array::String(vec![
                    StringValue::from("a"),
                    StringValue::from("b"),
                ])),
            ),
            KeyValue::new(
                "attr.i64s",
                OtelValue::Array(Array::I64(vec![1, -2, i64::MIN])),
            ),
            KeyValue::new("attr.f64s", OtelValue::Array(Array::F64(vec![1.5, -0.125]))),
            KeyValue::new(
                "attr.bools",
                OtelValue::Array(Array::Bool(vec![true, false])),
            ),
        ])
        .start(&tracer);
    let root_cx = Context::new().with_span(root);

    let linked = SpanContext::new(
        TraceId::from_hex(LINKED_TRACE).unwrap(),
        SpanId::from_hex(LINKED_SPAN).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "x")]).unwrap(),
    );
    let mut child = tracer
        .span_builder("SELECT cart")
        .with_kind(SpanKind::Client)
        .with_start_time(at(T0 + 100))
        .with_links(vec![Link::new(
            linked,
            vec![
                KeyValue::new("link.reason", "retry-of"),
                KeyValue::new("link.attempt", 3i64),
            ],
            0,
        )])
        .start_with_context(&tracer, &root_cx);
    child.set_attribute(KeyValue::new("db.rows", 0i64));
    child.add_event_with_timestamp(
        "cache miss",
        at(T0 + 150),
        vec![
            KeyValue::new("cache.key", "cart:1"),
            KeyValue::new("cache.tries", 2i64),
            KeyValue::new("cache.hit", false),
        ],
    );
    child.add_event_with_timestamp("retry", at(T0 + 160), vec![]);
    child.set_status(Status::error("database unavailable"));
    let child_id = hex::encode(child.span_context().span_id().to_bytes());
    child.end_with_timestamp(at(T0 + 200));

    let before = now_nanos();
    let mut internal = tracer
        .span_builder("render")
        .with_kind(SpanKind::Internal)
        .start_with_context(&tracer, &root_cx);
    let internal_id = hex::encode(internal.span_context().span_id().to_bytes());
    internal.end();
    let after = now_nanos();

    let root = root_cx.span();
    root.set_status(Status::Ok);
    let trace_id = hex::encode(root.span_context().trace_id().to_bytes());
    let root_id = hex::encode(root.span_context().span_id().to_bytes());
    root.end_with_timestamp(at(T0 + 1_000));
    SentSpans {
        trace_id,
        root_id,
        child_id,
        internal_id,
        before,
        after,
    }
}

fn check_spans(t: Transport, c: &Collector, sent: &SentSpans) {
    let lines = lines_with(c, "resourceSpans", |lines| {
        flatten(lines, "resourceSpans", "scopeSpans", "spans").len() >= 3
    });
    let spans = flatten(&lines, "resourceSpans", "scopeSpans", "spans");
    assert_eq!(spans.len(), 3, "{lines:#?}");
    for (r, s, _) in &spans {
        check_resource_and_scope(t, r, s);
    }
    let span = |name: &str| {
        spans
            .iter()
            .map(|(_, _, span)| *span)
            .find(|span| span["name"] == name)
            .unwrap_or_else(|| panic!("no span `{name}` in {lines:#?}"))
    };

    let root = span("GET /checkout");
    assert_eq!(root["traceId"], sent.trace_id.as_str());
    assert_eq!(root["spanId"], sent.root_id.as_str());
    assert_eq!(root["parentSpanId"], "", "a root span has no parent");
    assert_eq!(root["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(root["startTimeUnixNano"], T0.to_string());
    assert_eq!(root["endTimeUnixNano"], (T0 + 1_000).to_string());
    // Sampled, and the SDK says whether the parent was remote (it has none).
    assert_eq!(root["flags"], 0x101);
    assert_eq!(root["status"]["code"], 1, "STATUS_CODE_OK");
    assert_eq!(
        attrs(&root["attributes"]),
        expected_attrs(&[
            ("http.request.method", json!({"stringValue": "GET"})),
            ("attr.bool", json!({"boolValue": true})),
            ("attr.i64", json!({"intValue": "42"})),
            ("attr.i64.max", json!({"intValue": "9223372036854775807"})),
            ("attr.i64.negative", json!({"intValue": "-7"})),
            ("attr.f64", json!({"doubleValue": 0.25})),
            (
                "attr.strings",
                json!({"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}})
            ),
            (
                "attr.i64s",
                json!({"arrayValue": {"values": [
                    {"intValue": "1"}, {"intValue": "-2"}, {"intValue": "-9223372036854775808"}
                ]}})
            ),
            (
                "attr.f64s",
                json!({"arrayValue": {"values": [{"doubleValue": 1.5}, {"doubleValue": -0.125}]}})
            ),
            (
                "attr.bools",
                json!({"arrayValue": {"values": [{"boolValue": true}, {"boolValue": false}]}})
            ),
        ])
    );
    assert_eq!(root["events"], json!([]));
    assert_eq!(root["links"], json!([]));

    let child = span("SELECT cart");
    assert_eq!(child["traceId"], sent.trace_id.as_str());
    assert_eq!(child["spanId"], sent.child_id.as_str());
    assert_eq!(child["parentSpanId"], sent.root_id.as_str());
    assert_eq!(child["kind"], 3, "SPAN_KIND_CLIENT");
    assert_eq!(child["startTimeUnixNano"], (T0 + 100).to_string());
    assert_eq!(child["endTimeUnixNano"], (T0 + 200).to_string());
    assert_eq!(child["status"]["code"], 2, "STATUS_CODE_ERROR");
    assert_eq!(child["status"]["message"], "database unavailable");
    assert_eq!(
        attrs(&child["attributes"]),
        expected_attrs(&[("db.rows", json!({"intValue": "0"}))])
    );
    let events = child["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["name"], "cache miss");
    assert_eq!(events[0]["timeUnixNano"], (T0 + 150).to_string());
    assert_eq!(
        attrs(&events[0]["attributes"]),
        expected_attrs(&[
            ("cache.key", json!({"stringValue": "cart:1"})),
            ("cache.tries", json!({"intValue": "2"})),
            ("cache.hit", json!({"boolValue": false})),
        ])
    );
    assert_eq!(events[1]["name"], "retry");
    assert_eq!(events[1]["timeUnixNano"], (T0 + 160).to_string());
    assert_eq!(events[1]["attributes"], json!([]));
    let links = child["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["traceId"], LINKED_TRACE);
    assert_eq!(links[0]["spanId"], LINKED_SPAN);
    assert_eq!(links[0]["traceState"], "vendor=x");
    // Sampled, remote, and "is remote" known.
    assert_eq!(links[0]["flags"], 0x301);
    assert_eq!(
        attrs(&links[0]["attributes"]),
        expected_attrs(&[
            ("link.reason", json!({"stringValue": "retry-of"})),
            ("link.attempt", json!({"intValue": "3"})),
        ])
    );

    let internal = span("render");
    assert_eq!(internal["traceId"], sent.trace_id.as_str());
    assert_eq!(internal["spanId"], sent.internal_id.as_str());
    assert_eq!(internal["parentSpanId"], sent.root_id.as_str());
    assert_eq!(internal["kind"], 1, "SPAN_KIND_INTERNAL");
    assert_eq!(internal["status"]["code"], 0, "STATUS_CODE_UNSET");
    let (start, end) = (
        nanos(&internal["startTimeUnixNano"]),
        nanos(&internal["endTimeUnixNano"]),
    );
    assert!(
        sent.before <= start && start <= end && end <= sent.after,
        "{} <= {start} <= {end} <= {}",
        sent.before,
        sent.after
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics

fn emit_metrics(meter_provider: &SdkMeterProvider) {
    let meter = meter_provider.meter_with_scope(scope());
    let counter = meter
        .u64_counter("e2e.requests")
        .with_unit("{request}")
        .with_description("Requests served")
        .build();
    counter.add(5, &[KeyValue::new("method", "GET")]);
    counter.add(7, &[KeyValue::new("method", "GET")]);
    counter.add(1, &[KeyValue::new("method", "POST")]);
    let up_down = meter
        .i64_up_down_counter("e2e.queue.depth")
        .with_unit("{item}")
        .build();
    up_down.add(10, &[]);
    up_down.add(-13, &[]);
    let gauge = meter.f64_gauge("e2e.temperature").with_unit("Cel").build();
    gauge.record(19.0, &[KeyValue::new("room", "lab")]);
    gauge.record(21.5, &[KeyValue::new("room", "lab")]);
    let histogram = meter
        .f64_histogram("e2e.latency")
        .with_unit("ms")
        .with_description("Request latency")
        .with_boundaries(vec![10.0, 100.0, 1000.0])
        .build();
    for v in [5.0, 15.0, 50.5, 150.0, 1500.0] {
        histogram.record(v, &[KeyValue::new("route", "/cart")]);
    }
}

fn check_metrics(t: Transport, c: &Collector, temporality: Temporality, before: u64, after: u64) {
    // The first export (the forced flush) holds every instrument; later ones are ignored.
    let lines = lines_with(c, "resourceMetrics", |lines| !lines.is_empty());
    let metrics = flatten(&lines[..1], "resourceMetrics", "scopeMetrics", "metrics");
    for (r, s, _) in &metrics {
        check_resource_and_scope(t, r, s);
    }
    let metric = |name: &str| {
        metrics
            .iter()
            .map(|(_, _, m)| *m)
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no metric `{name}` in {lines:#?}"))
    };
    assert_eq!(metrics.len(), 4, "{lines:#?}");
    let (delta, cumulative) = (1, 2);
    let sdk_temporality = if temporality == Temporality::Delta {
        delta
    } else {
        cumulative
    };
    let check_time = |point: &Value| {
        let time = nanos(&point["timeUnixNano"]);
        assert!(
            before <= time && time <= after,
            "{before} <= {time} <= {after}"
        );
        let start = nanos(&point["startTimeUnixNano"]);
        assert!(start <= time, "start {start} after time {time}");
    };

    let requests = metric("e2e.requests");
    assert_eq!(requests["unit"], "{request}");
    assert_eq!(requests["description"], "Requests served");
    let sum = &requests["sum"];
    assert_eq!(sum["aggregationTemporality"], sdk_temporality);
    assert_eq!(sum["isMonotonic"], true);
    let mut by_method: Vec<(String, Value)> = sum["dataPoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            check_time(p);
            (
                attrs(&p["attributes"])["method"]["stringValue"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                p["asInt"].clone(),
            )
        })
        .collect();
    by_method.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_method,
        [
            ("GET".to_string(), json!("12")),
            ("POST".to_string(), json!("1"))
        ]
    );

    let depth = metric("e2e.queue.depth");
    assert_eq!(depth["unit"], "{item}");
    let sum = &depth["sum"];
    // An up-down counter is cumulative under either temporality preference.
    assert_eq!(sum["aggregationTemporality"], cumulative);
    assert_eq!(sum["isMonotonic"], false);
    assert_eq!(sum["dataPoints"].as_array().unwrap().len(), 1);
    assert_eq!(sum["dataPoints"][0]["asInt"], "-3");
    assert_eq!(sum["dataPoints"][0]["attributes"], json!([]));
    check_time(&sum["dataPoints"][0]);

    let temperature = metric("e2e.temperature");
    assert_eq!(temperature["unit"], "Cel");
    let points = temperature["gauge"]["dataPoints"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0]["asDouble"], 21.5, "a gauge keeps the last value");
    assert_eq!(
        attrs(&points[0]["attributes"]),
        expected_attrs(&[("room", json!({"stringValue": "lab"}))])
    );
    let time = nanos(&points[0]["timeUnixNano"]);
    assert!(
        before <= time && time <= after,
        "{before} <= {time} <= {after}"
    );

    let latency = metric("e2e.latency");
    assert_eq!(latency["unit"], "ms");
    assert_eq!(latency["description"], "Request latency");
    let histogram = &latency["histogram"];
    assert_eq!(histogram["aggregationTemporality"], sdk_temporality);
    let points = histogram["dataPoints"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    check_time(p);
    assert_eq!(p["count"], "5");
    assert_eq!(p["sum"], 1720.5);
    assert_eq!(p["min"], 5.0);
    assert_eq!(p["max"], 1500.0);
    assert_eq!(p["explicitBounds"], json!([10.0, 100.0, 1000.0]));
    // (-inf,10]: 5 | (10,100]: 15, 50.5 | (100,1000]: 150 | (1000,+inf): 1500
    assert_eq!(p["bucketCounts"], json!(["1", "2", "1", "1"]));
    assert_eq!(
        attrs(&p["attributes"]),
        expected_attrs(&[("route", json!({"stringValue": "/cart"}))])
    );
}

// ---------------------------------------------------------------------------------------------
// Logs

/// (body, its OTLP/JSON form, severity, severity number, severity text)
type LogCase = (Option<AnyValue>, Option<Value>, Severity, i64, &'static str);

fn log_cases() -> Vec<LogCase> {
    let map = AnyValue::Map(Box::new(HashMap::from([
        (Key::new("k"), AnyValue::String("v".into())),
        (
            Key::new("nested"),
            AnyValue::Map(Box::new(HashMap::from([
                (Key::new("n"), AnyValue::Int(1)),
                (
                    Key::new("list"),
                    AnyValue::ListAny(Box::new(vec![AnyValue::Boolean(false)])),
                ),
            ]))),
        ),
        (
            Key::new("bytes"),
            AnyValue::Bytes(Box::new(vec![0xde, 0xad])),
        ),
    ])));
    vec![
        (
            Some(AnyValue::String("hello, world".into())),
            Some(json!({"stringValue": "hello, world"})),
            Severity::Info,
            9,
            "INFO",
        ),
        (
            Some(AnyValue::Int(i64::MIN)),
            Some(json!({"intValue": "-9223372036854775808"})),
            Severity::Warn,
            13,
            "WARN",
        ),
        (
            Some(AnyValue::Double(2.5)),
            Some(json!({"doubleValue": 2.5})),
            Severity::Error,
            17,
            "ERROR",
        ),
        (
            Some(AnyValue::Boolean(true)),
            Some(json!({"boolValue": true})),
            Severity::Debug,
            5,
            "DEBUG",
        ),
        (
            Some(AnyValue::Bytes(Box::new(vec![0, 1, 2, 255]))),
            Some(json!({"bytesValue": "AAEC/w=="})),
            Severity::Trace,
            1,
            "TRACE",
        ),
        (
            Some(AnyValue::ListAny(Box::new(vec![
                AnyValue::Int(1),
                AnyValue::String("two".into()),
                AnyValue::Double(3.5),
                AnyValue::ListAny(Box::default()),
            ]))),
            Some(json!({"arrayValue": {"values": [
                {"intValue": "1"}, {"stringValue": "two"}, {"doubleValue": 3.5},
                {"arrayValue": {"values": []}}
            ]}})),
            Severity::Fatal,
            21,
            "FATAL",
        ),
        (
            Some(map),
            Some(json!({"kvlistValue": {"values": [
                {"key": "k", "value": {"stringValue": "v"}},
                {"key": "nested", "value": {"kvlistValue": {"values": [
                    {"key": "n", "value": {"intValue": "1"}},
                    {"key": "list", "value": {"arrayValue": {"values": [{"boolValue": false}]}}}
                ]}}},
                {"key": "bytes", "value": {"bytesValue": "3q0="}}
            ]}})),
            Severity::Info2,
            10,
            "INFO2",
        ),
        (None, None, Severity::Warn4, 16, "WARN4"),
    ]
}

struct SentLogs {
    trace_id: String,
    span_id: String,
    before: u64,
    after: u64,
}

fn emit_logs(logger_provider: &SdkLoggerProvider) -> SentLogs {
    let logger = logger_provider.logger_with_scope(scope());
    let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let span_id = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let before = now_nanos();
    for (seq, (body, _, severity, _, text)) in log_cases().into_iter().enumerate() {
        let mut record = logger.create_log_record();
        if let Some(body) = body {
            record.set_body(body);
        }
        record.set_severity_number(severity);
        record.set_severity_text(text);
        record.add_attribute("seq", seq as i64);
        if seq == 0 {
            record.set_timestamp(at(T0));
            record.set_observed_timestamp(at(T0 + 5));
            record.set_event_name("e2e.checkout.done");
            record.set_trace_context(trace_id, span_id, Some(TraceFlags::SAMPLED));
            record.add_attributes([
                ("attr.string", AnyValue::String("s".into())),
                ("attr.bool", AnyValue::Boolean(false)),
                ("attr.int", AnyValue::Int(i64::MAX)),
                ("attr.double", AnyValue::Double(-1.25)),
                ("attr.bytes", AnyValue::Bytes(Box::new(vec![1, 2, 3]))),
                (
                    "attr.list",
                    AnyValue::ListAny(Box::new(vec![AnyValue::Int(7), AnyValue::Boolean(true)])),
                ),
                (
                    "attr.map",
                    AnyValue::Map(Box::new(HashMap::from([(
                        Key::new("inner"),
                        AnyValue::Double(0.5),
                    )]))),
                ),
            ]);
        }
        logger.emit(record);
    }
    let after = now_nanos();
    SentLogs {
        trace_id: hex::encode(trace_id.to_bytes()),
        span_id: hex::encode(span_id.to_bytes()),
        before,
        after,
    }
}

fn check_logs(t: Transport, c: &Collector, sent: &SentLogs) {
    let cases = log_cases();
    let lines = lines_with(c, "resourceLogs", |lines| {
        flatten(lines, "resourceLogs", "scopeLogs", "logRecords").len() >= cases.len()
    });
    let records = flatten(&lines, "resourceLogs", "scopeLogs", "logRecords");
    assert_eq!(records.len(), cases.len(), "{lines:#?}");
    for (r, s, _) in &records {
        check_resource_and_scope(t, r, s);
    }
    let mut seen = vec![false; cases.len()];
    for (_, _, record) in &records {
        let seq: usize = attrs(&record["attributes"])["seq"]["intValue"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        seen[seq] = true;
        let (_, body, _, number, text) = &cases[seq];
        let written = record.get("body").filter(|b| !b.is_null()).cloned();
        assert_eq!(
            written.map(sorted),
            body.clone().map(sorted),
            "body of record {seq}"
        );
        assert_eq!(record["severityNumber"], *number, "record {seq}");
        assert_eq!(record["severityText"], *text, "record {seq}");
        if seq == 0 {
            assert_eq!(record["timeUnixNano"], T0.to_string());
            assert_eq!(record["observedTimeUnixNano"], (T0 + 5).to_string());
            assert_eq!(record["eventName"], "e2e.checkout.done");
            assert_eq!(record["traceId"], sent.trace_id.as_str());
            assert_eq!(record["spanId"], sent.span_id.as_str());
            assert_eq!(record["flags"], 1, "sampled");
            assert_eq!(
                attrs(&record["attributes"]),
                expected_attrs(&[
                    ("seq", json!({"intValue": "0"})),
                    ("attr.string", json!({"stringValue": "s"})),
                    ("attr.bool", json!({"boolValue": false})),
                    ("attr.int", json!({"intValue": "9223372036854775807"})),
                    ("attr.double", json!({"doubleValue": -1.25})),
                    ("attr.bytes", json!({"bytesValue": "AQID"})),
                    (
                        "attr.list",
                        json!({"arrayValue": {"values": [{"intValue": "7"}, {"boolValue": true}]}})
                    ),
                    (
                        "attr.map",
                        json!({"kvlistValue": {"values": [
                            {"key": "inner", "value": {"doubleValue": 0.5}}
                        ]}})
                    ),
                ])
            );
        } else {
            // No timestamp given: none is sent; the SDK stamps the observed time itself.
            assert_eq!(record["timeUnixNano"], "0", "record {seq}");
            let observed = nanos(&record["observedTimeUnixNano"]);
            assert!(
                sent.before <= observed && observed <= sent.after,
                "{} <= {observed} <= {}",
                sent.before,
                sent.after
            );
            assert_eq!(record["traceId"], "", "record {seq} has no trace context");
            assert_eq!(record["spanId"], "");
            assert_eq!(record["eventName"], "");
        }
    }
    assert!(seen.iter().all(|s| *s), "records seen: {seen:?}");
}

// ---------------------------------------------------------------------------------------------

fn all_signals(t: Transport, temporality: Temporality) {
    let c = Collector::start(&file_pipeline_config("json", ""), &[]);

    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource(t))
        .with_batch_exporter(span_exporter(t, &c))
        .build();
    let sent_spans = emit_spans(&tracer_provider);
    tracer_provider.force_flush().unwrap();
    check_spans(t, &c, &sent_spans);

    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource(t))
        .with_periodic_exporter(metric_exporter(t, &c, temporality))
        .build();
    let before = now_nanos();
    emit_metrics(&meter_provider);
    meter_provider.force_flush().unwrap();
    let after = now_nanos();
    check_metrics(t, &c, temporality, before, after);

    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource(t))
        .with_batch_exporter(log_exporter(t, &c))
        .build();
    let sent_logs = emit_logs(&logger_provider);
    logger_provider.force_flush().unwrap();
    check_logs(t, &c, &sent_logs);

    // The data came in over the transport under test.
    let transport = match t {
        Transport::Grpc => "grpc",
        Transport::HttpProto => "http",
    };
    let metrics = c.metrics_text();
    for (item, count) in [("spans", 3), ("log_records", log_cases().len())] {
        let line = format!(
            "otelcol_receiver_accepted_{item}_total{{receiver=\"otlp\",transport=\"{transport}\"}} {count}\n"
        );
        assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }

    tracer_provider.shutdown().unwrap();
    meter_provider.shutdown().unwrap();
    logger_provider.shutdown().unwrap();
}

#[test]
fn sdk_over_grpc_all_signals_field_by_field() {
    // tonic needs a Tokio runtime to drive its connections; the SDK's exporting threads
    // reach it through the channel the exporters create here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    all_signals(Transport::Grpc, Temporality::Cumulative);
}

#[test]
fn sdk_over_http_protobuf_all_signals_field_by_field() {
    all_signals(Transport::HttpProto, Temporality::Delta);
}
