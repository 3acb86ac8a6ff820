//! The example agent config, written in the OTel Collector's style (resourcedetection +
//! attributes + filter + batch), runs unchanged and does what it says.

use crate::common;

use common::{Collector, json_lines};
use serde_json::{Value, json};

fn post(port: u16, path: &str, body: &Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{path}: {:?}", response.text());
}

fn string_attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// Attribute values by key, as OTLP/JSON `AnyValue` objects.
fn attrs(list: &Value) -> std::collections::BTreeMap<String, Value> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_otel_style_agent_config_enriches_scrubs_and_filters() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/otel-agent.yaml"
    ))
    .unwrap();
    // Only the ports change, plus the health endpoint the harness waits on.
    let template = example
        .replace("localhost:4317", "\"@GRPC@\"")
        .replace("localhost:4318", "\"@HTTP@\"")
        + "\nextensions:\n  health_check:\n    endpoint: \"@HEALTH@\"\n";
    let mut c = Collector::start_with_env(
        &template,
        &[
            "--set",
            "service.extensions=[health_check]",
            "--set",
            "service.telemetry.metrics.level=none",
        ],
        &[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.region=eu-west-1,service.name=from-env",
        )],
    );

    let resource = json!({"attributes": [string_attr("service.name", "checkout")]});
    post(
        c.http,
        "/v1/traces",
        &json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [
            {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "GET /healthz",
             "attributes": [string_attr("url.path", "/healthz")]},
            {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "1112131415161718", "name": "GET /api/orders",
             "attributes": [string_attr("url.path", "/api/orders"), string_attr("user.email", "alice@example.com"),
                            string_attr("http.request.header.authorization", "Bearer secret")]}
        ]}]}]}),
    );
    post(
        c.http,
        "/v1/logs",
        &json!({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [
            {"severityNumber": 5, "severityText": "DEBUG", "body": {"stringValue": "noise"}},
            {"severityNumber": 9, "severityText": "INFO", "body": {"stringValue": "order placed"},
             "attributes": [string_attr("user.email", "alice@example.com")]}
        ]}]}]}),
    );
    post(
        c.http,
        "/v1/metrics",
        &json!({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [
            {"name": "queue.depth", "gauge": {"dataPoints": [
                {"asInt": "7", "timeUnixNano": "1700000000000000000", "attributes": [string_attr("queue", "orders")]},
                {"asInt": "0", "timeUnixNano": "1700000000000000000", "attributes": [{"key": "internal", "value": {"boolValue": true}}]}
            ]}}
        ]}]}]}),
    );

    let lines = json_lines(&c.path("sluice-data/telemetry.jsonl"), 3);
    assert!(c.stop().success());
    let find = |key: &str| {
        lines
            .iter()
            .find(|l| l.get(key).is_some())
            .unwrap_or_else(|| panic!("no {key} line in {lines:?}"))
    };
    let hashed =
        json!({"stringValue": "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"});

    // Every signal: the sender's service.name kept (override: false), the environment's
    // region added, the host described.
    for (key, scope_key) in [
        ("resourceSpans", "scopeSpans"),
        ("resourceLogs", "scopeLogs"),
        ("resourceMetrics", "scopeMetrics"),
    ] {
        let line = find(key);
        assert_eq!(line[key].as_array().unwrap().len(), 1, "{line}");
        let res = attrs(&line[key][0]["resource"]["attributes"]);
        assert_eq!(
            res["service.name"],
            json!({"stringValue": "checkout"}),
            "{key}"
        );
        assert_eq!(
            res["deployment.region"],
            json!({"stringValue": "eu-west-1"}),
            "{key}"
        );
        assert_eq!(res["os.type"], json!({"stringValue": "linux"}), "{key}");
        assert!(
            res.contains_key("host.arch") && res.contains_key("host.name"),
            "{key}: {res:?}"
        );
        assert_eq!(line[key][0][scope_key].as_array().unwrap().len(), 1);
    }

    let spans = &find("resourceSpans")["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(
        spans.as_array().unwrap().len(),
        1,
        "the health check span is dropped: {spans}"
    );
    assert_eq!(spans[0]["name"], "GET /api/orders");
    let span_attrs = attrs(&spans[0]["attributes"]);
    assert_eq!(span_attrs["user.email"], hashed);
    assert!(!span_attrs.contains_key("http.request.header.authorization"));
    assert_eq!(
        span_attrs["deployment.environment.name"],
        json!({"stringValue": "production"})
    );
    assert_eq!(
        span_attrs["url.path"],
        json!({"stringValue": "/api/orders"})
    );

    let records = &find("resourceLogs")["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    assert_eq!(
        records.as_array().unwrap().len(),
        1,
        "the debug record is dropped: {records}"
    );
    assert_eq!(records[0]["body"]["stringValue"], "order placed");
    assert_eq!(attrs(&records[0]["attributes"])["user.email"], hashed);

    let points = &find("resourceMetrics")["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]
        ["dataPoints"];
    assert_eq!(
        points.as_array().unwrap().len(),
        1,
        "the internal point is dropped: {points}"
    );
    assert_eq!(points[0]["asInt"], "7");
    assert_eq!(
        attrs(&points[0]["attributes"])["deployment.environment.name"],
        json!({"stringValue": "production"})
    );
}
