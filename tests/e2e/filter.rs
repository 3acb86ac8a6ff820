//! The `filter` and `attributes` processors in the real binary, with the legacy
//! include/exclude blocks published configs still use: OTLP/JSON in over HTTP, what passes
//! written to a file. Every item sent is accounted for: what reaches the file plus what the
//! processor says it dropped equals what was sent.

use crate::common;

use std::time::{Duration, Instant};

use common::Collector;
use serde_json::{Value, json};

/// A config with `processors` defined and `names` in the pipelines of `signals`.
fn config_for(processors: &str, names: &str, signals: &[&str]) -> String {
    let pipelines: String = signals
        .iter()
        .map(|signal| {
            format!(
                "    {signal}:\n      receivers: [otlp]\n      processors: [{names}]\n      exporters: [file/out]\n"
            )
        })
        .collect();
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
{processors}
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    format: json
    flush_interval: 0s
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
{pipelines}"#
    )
}

fn config(processors: &str, names: &str) -> String {
    config_for(processors, names, &["traces", "metrics", "logs"])
}

fn post(c: &Collector, path: &str, doc: &Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", c.http))
        .header("content-type", "application/json")
        .body(doc.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "log:\n{}", c.logs());
}

fn str_value(s: &str) -> Value {
    json!({"stringValue": s})
}

/// Every line written so far.
fn lines(c: &Collector) -> Vec<Value> {
    let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
    let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `count` over the lines written reaches `want` (or 30 s pass), and returns the
/// lines; a count above `want` fails at once.
fn wait_for(c: &Collector, want: usize, count: impl Fn(&[Value]) -> usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = lines(c);
        let n = count(&all);
        assert!(
            n <= want,
            "{n} items written, {want} expected; log:\n{}",
            c.logs()
        );
        if n == want || Instant::now() > deadline {
            assert_eq!(n, want, "log:\n{}", c.logs());
            return all;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn span_names(lines: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push(s["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    out
}

fn log_bodies(lines: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        for rl in line["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for l in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push(
                        l["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    out
}

fn metric_names(lines: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    out.push(m["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    out
}

fn span(name: &str, kind: i64, route: &str) -> Value {
    json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": name,
        "kind": kind,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000100000000",
        "attributes": [{"key": "http.route", "value": str_value(route)}]
    })
}

#[test]
fn legacy_span_exclude_drops_health_checks_and_counts_them() {
    let c = Collector::start(
        &config(
            r#"
  filter/health:
    error_mode: ignore
    spans:
      exclude:
        match_type: regexp
        span_names: ["^GET /(healthz|readyz)$"]
        attributes:
          - key: http.route
            value: "^/(healthz|readyz)$"
"#,
            "filter/health",
        ),
        &[],
    );
    let doc = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": str_value("checkout")}]},
        "scopeSpans": [{"spans": [
            span("GET /healthz", 2, "/healthz"),
            span("POST /pay", 2, "/pay"),
            span("GET /readyz", 2, "/readyz"),
            // The name matches, the route does not: every property must match.
            span("GET /healthz", 2, "/healthz/deep"),
            span("SELECT", 3, "/pay"),
        ]}]
    }]});
    post(&c, "/v1/traces", &doc);
    // A request that loses every span is answered as accepted and writes nothing.
    post(
        &c,
        "/v1/traces",
        &json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": str_value("lb")}]},
            "scopeSpans": [{"spans": [span("GET /readyz", 2, "/readyz")]}]
        }]}),
    );
    let got = wait_for(&c, 3, |l| span_names(l).len());
    assert_eq!(span_names(&got), ["POST /pay", "GET /healthz", "SELECT"]);
    assert_eq!(
        c.wait_for_metric(
            "otelcol_processor_filter_spans_filtered_total{filter=\"filter/health\"}",
            3
        ),
        Some(3)
    );
}

#[test]
fn debug_logs_are_dropped_by_severity_number_and_attributes_tag_the_rest() {
    let c = Collector::start(
        &config_for(
            r#"
  filter/nodebug:
    logs:
      include:
        severity_number:
          min: "INFO"
          match_undefined: true
  attributes/errors:
    include:
      log_severity_number:
        min: 17
    actions:
      - key: alert
        value: true
        action: INSERT
"#,
            "filter/nodebug, attributes/errors",
            &["logs"],
        ),
        &[],
    );
    let record = |body: &str, severity: i64| {
        json!({"timeUnixNano": "1700000000000000000", "severityNumber": severity,
               "body": str_value(body)})
    };
    post(
        &c,
        "/v1/logs",
        &json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": str_value("api")}]},
            "scopeLogs": [{"logRecords": [
                record("trace detail", 1),
                record("debug detail", 5),
                record("request served", 9),
                record("no severity", 0),
                record("disk full", 17),
                record("debug again", 8),
            ]}]
        }]}),
    );
    let got = wait_for(&c, 3, |l| log_bodies(l).len());
    assert_eq!(
        log_bodies(&got),
        ["request served", "no severity", "disk full"]
    );
    let records: Vec<&Value> = got
        .iter()
        .flat_map(|l| l["resourceLogs"].as_array().unwrap())
        .flat_map(|r| r["scopeLogs"].as_array().unwrap())
        .flat_map(|s| s["logRecords"].as_array().unwrap())
        .collect();
    let alerted: Vec<bool> = records
        .iter()
        .map(|r| {
            r["attributes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|kv| kv["key"] == "alert"))
        })
        .collect();
    assert_eq!(alerted, [false, false, true]);
    assert_eq!(
        c.wait_for_metric(
            "otelcol_processor_filter_logs_filtered_total{filter=\"filter/nodebug\"}",
            3
        ),
        Some(3)
    );
}

#[test]
fn metrics_are_kept_by_name_with_a_regexp_include() {
    let c = Collector::start(
        &config(
            r#"
  filter/names:
    metrics:
      include:
        match_type: regexp
        metric_names:
          - ^http\.server\..*
          - ^process\.runtime\.
  filter/ottl:
    metric_conditions:
      - 'datapoint.attributes["http.route"] == "/healthz"'
"#,
            "filter/names, filter/ottl",
        ),
        &[],
    );
    let gauge = |name: &str, points: Vec<(&str, i64)>| {
        json!({"name": name, "gauge": {"dataPoints": points.iter().map(|(route, v)| json!({
            "asInt": v.to_string(), "timeUnixNano": "1700000000000000000",
            "attributes": [{"key": "http.route", "value": str_value(route)}]
        })).collect::<Vec<_>>()}})
    };
    post(
        &c,
        "/v1/metrics",
        &json!({"resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": str_value("api")}]},
            "scopeMetrics": [{"metrics": [
                gauge("http.server.request.count", vec![("/pay", 1), ("/healthz", 2)]),
                gauge("http.client.request.count", vec![("/x", 3)]),
                gauge("process.runtime.go.goroutines", vec![("/x", 4)]),
                gauge("system.cpu.time", vec![("/x", 5), ("/y", 6)]),
                gauge("http.server.active", vec![("/healthz", 7)]),
            ]}]
        }]}),
    );
    let got = wait_for(&c, 2, |l| metric_names(l).len());
    assert_eq!(
        metric_names(&got),
        ["http.server.request.count", "process.runtime.go.goroutines"]
    );
    // 1 + 2 points of the metrics not included, 1 /healthz point, and http.server.active,
    // which lost its only point.
    assert_eq!(
        c.wait_for_metric(
            "otelcol_processor_filter_datapoints_filtered_total{filter=\"filter/names\"}",
            3
        ),
        Some(3)
    );
    assert_eq!(
        c.wait_for_metric(
            "otelcol_processor_filter_datapoints_filtered_total{filter=\"filter/ottl\"}",
            2
        ),
        Some(2)
    );
}

#[test]
fn legacy_blocks_that_cannot_run_are_refused_at_start_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        r#"
receivers:
  otlp:
    protocols:
      http:
processors:
  filter:
    metrics:
      exclude:
        match_type: expr
        expressions:
          - 'len(Label("pod")) > 10'
  attributes:
    actions:
      - key: tenant
        from_context: auth.subject
        action: upsert
exporters:
  debug:
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [filter, attributes]
      exporters: [debug]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("processors.filter.metrics.exclude.expressions[0]")
            && stderr.contains("not supported in expressions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("processors.attributes.actions[0].from_context")
            && stderr.contains("server authenticators"),
        "{stderr}"
    );
}
