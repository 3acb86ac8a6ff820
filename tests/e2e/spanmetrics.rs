//! The `span_metrics` (`spanmetrics`) connector in the real binary: OTLP/JSON spans in over
//! HTTP, a traces pipeline exporting to the connector, a metrics pipeline writing what it
//! produces to a file. Call counts and histogram bucket counts must equal what the spans say,
//! exactly.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Collector;
use serde_json::{Value, json};

fn config(connector: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
connectors:
  spanmetrics:
{connector}
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
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [file/out]
"#
    )
}

fn post_spans(c: &Collector, doc: &Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", c.http))
        .header("content-type", "application/json")
        .body(doc.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        status,
        200,
        "{}\nlog:\n{}",
        response.text().unwrap_or_default(),
        c.logs()
    );
}

fn span(name: &str, kind: i64, status: i64, duration_ms: u64, method: &str) -> Value {
    let start: u64 = 1_700_000_000_000_000_000;
    json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + duration_ms * 1_000_000).to_string(),
        "attributes": [{"key": "http.request.method", "value": {"stringValue": method}}],
        "status": {"code": status}
    })
}

fn request(service: &str, spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]})
}

/// The spans of the tests: (service, span name, kind, status, duration ms, method).
fn workload() -> Vec<(&'static str, &'static str, i64, i64, u64, &'static str)> {
    vec![
        ("checkout", "POST /pay", 2, 0, 3, "POST"),
        ("checkout", "POST /pay", 2, 0, 4, "POST"),
        ("checkout", "POST /pay", 2, 0, 120, "POST"),
        ("checkout", "POST /pay", 2, 2, 2000, "POST"),
        ("checkout", "GET /cart", 2, 0, 1, "GET"),
        ("checkout", "SELECT", 3, 0, 7, "GET"),
        ("inventory", "reserve", 5, 1, 55, "PUT"),
        ("inventory", "reserve", 5, 1, 16_000, "PUT"),
    ]
}

fn send_workload(c: &Collector) {
    let mut by_service: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (svc, name, kind, status, ms, method) in workload() {
        by_service
            .entry(svc)
            .or_default()
            .push(span(name, kind, status, ms, method));
    }
    for (svc, spans) in by_service {
        post_spans(c, &request(svc, spans));
    }
}

/// Expected (service, name, kind, status, method) → (calls, bucket counts) for `times` copies
/// of the workload, with the OTel default bounds in milliseconds.
fn expected(times: u64) -> BTreeMap<Vec<String>, (u64, Vec<u64>)> {
    let bounds = [
        2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
        10000.0, 15000.0,
    ];
    let kinds = [
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ];
    let statuses = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
    let mut out: BTreeMap<Vec<String>, (u64, Vec<u64>)> = BTreeMap::new();
    for (svc, name, kind, status, ms, method) in workload() {
        let key = vec![
            svc.to_string(),
            name.to_string(),
            kinds[kind as usize].to_string(),
            statuses[status as usize].to_string(),
            method.to_string(),
        ];
        let entry = out.entry(key).or_insert((0, vec![0; bounds.len() + 1]));
        entry.0 += times;
        let bucket = bounds
            .iter()
            .position(|b| (ms as f64) <= *b)
            .unwrap_or(bounds.len());
        entry.1[bucket] += times;
    }
    out
}

fn attr(point: &Value, key: &str) -> String {
    point["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        // OTLP/JSON may leave a zero out.
        Value::Null => 0,
        other => other.as_u64().unwrap(),
    }
}

/// Per series (from one output line or summed over several), calls and bucket counts; also
/// checks the calls sum and the histogram agree and each resource is one service.
fn series(lines: &[Value]) -> BTreeMap<Vec<String>, (u64, Vec<u64>)> {
    let mut out: BTreeMap<Vec<String>, (u64, Vec<u64>)> = BTreeMap::new();
    for line in lines {
        for rm in line["resourceMetrics"].as_array().unwrap() {
            let service = rm["resource"]["attributes"][0]["value"]["stringValue"]
                .as_str()
                .unwrap()
                .to_string();
            for sm in rm["scopeMetrics"].as_array().unwrap() {
                let metrics = sm["metrics"].as_array().unwrap();
                let calls = metrics
                    .iter()
                    .find(|m| m["name"] == "traces.span.metrics.calls")
                    .unwrap();
                let duration = metrics
                    .iter()
                    .find(|m| m["name"] == "traces.span.metrics.duration")
                    .unwrap();
                assert_eq!(duration["unit"], "ms");
                assert_eq!(calls["sum"]["isMonotonic"], true);
                let calls_points = calls["sum"]["dataPoints"].as_array().unwrap();
                let hist_points = duration["histogram"]["dataPoints"].as_array().unwrap();
                assert_eq!(calls_points.len(), hist_points.len());
                for (c, h) in calls_points.iter().zip(hist_points) {
                    assert_eq!(attr(c, "service.name"), service);
                    let key: Vec<String> = [
                        "service.name",
                        "span.name",
                        "span.kind",
                        "status.code",
                        "http.request.method",
                    ]
                    .iter()
                    .map(|k| attr(c, k))
                    .collect();
                    assert_eq!(
                        key,
                        [
                            "service.name",
                            "span.name",
                            "span.kind",
                            "status.code",
                            "http.request.method"
                        ]
                        .iter()
                        .map(|k| attr(h, k))
                        .collect::<Vec<_>>()
                    );
                    let count = num(&c["asInt"]);
                    if count == 0 {
                        // A new cumulative calls series reports 0 first (as the OTel
                        // Collector's does); its spans show in the next flush.
                        continue;
                    }
                    assert_eq!(num(&h["count"]), count);
                    let buckets: Vec<u64> = h["bucketCounts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(num)
                        .collect();
                    assert_eq!(buckets.iter().sum::<u64>(), count);
                    let entry = out.entry(key).or_insert((0, vec![0; buckets.len()]));
                    entry.0 += count;
                    for (e, b) in entry.1.iter_mut().zip(buckets) {
                        *e += b;
                    }
                }
            }
        }
    }
    out
}

fn lines(c: &Collector) -> Vec<Value> {
    let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
    let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const DIMENSIONS: &str = "    dimensions:\n      - name: http.request.method\n";

#[test]
fn cumulative_counts_and_buckets_match_the_spans() {
    let c = Collector::start(
        &config(&format!("    metrics_flush_interval: 100ms\n{DIMENSIONS}")),
        &[],
    );
    send_workload(&c);
    send_workload(&c);
    let want = expected(2);
    // Cumulative: some flush, now or later, reports the totals of both requests.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = lines(&c);
        if let Some(last) = all.last() {
            let got = series(std::slice::from_ref(last));
            if got == want {
                let temporality = &last["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]
                    ["aggregationTemporality"];
                assert_eq!(temporality, 2, "cumulative");
                break;
            }
            let total: u64 = got.values().map(|v| v.0).sum();
            assert!(total <= 16, "more calls than spans sent: {got:?}");
        }
        assert!(
            Instant::now() < deadline,
            "never saw {want:?}; log:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn delta_metrics_are_flushed_on_shutdown_and_sum_to_the_spans() {
    let mut c = Collector::start(
        &config(&format!(
            "    metrics_flush_interval: 1h\n    aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\n{DIMENSIONS}"
        )),
        &[],
    );
    send_workload(&c);
    send_workload(&c);
    send_workload(&c);
    assert!(lines(&c).is_empty(), "nothing is sent before the interval");
    let status = c.stop();
    assert!(status.success(), "{status:?}; log:\n{}", c.logs());
    let all = lines(&c);
    assert_eq!(all.len(), 1, "one flush, at shutdown");
    assert_eq!(
        all[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["aggregationTemporality"],
        1
    );
    assert_eq!(series(&all), expected(3));
}

/// The config published examples use: the current type name, exemplars linking the duration
/// histogram to traces, span events counted, a cardinality limit.
#[test]
fn span_metrics_with_exemplars_and_events() {
    let config = config("")
        .replace(
            "connectors:\n  spanmetrics:\n",
            r#"connectors:
  span_metrics:
    metrics_flush_interval: 1h
    aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA
    exemplars:
      enabled: true
    events:
      enabled: true
      dimensions:
        - name: exception.type
    aggregation_cardinality_limit: 1000
"#,
        )
        .replace("exporters: [spanmetrics]", "exporters: [span_metrics]")
        .replace("receivers: [spanmetrics]", "receivers: [span_metrics]");
    let mut c = Collector::start(&config, &[]);
    let mut failed = span("POST /pay", 2, 2, 30, "POST");
    failed["events"] = json!([
        {"name": "exception", "timeUnixNano": "1700000000010000000",
         "attributes": [{"key": "exception.type", "value": {"stringValue": "Timeout"}}]},
        {"name": "exception", "timeUnixNano": "1700000000020000000",
         "attributes": [{"key": "exception.type", "value": {"stringValue": "Timeout"}}]}
    ]);
    failed["traceId"] = json!("0af7651916cd43dd8448eb211c80319c");
    failed["spanId"] = json!("b7ad6b7169203331");
    post_spans(
        &c,
        &request("checkout", vec![failed, span("GET /cart", 2, 0, 5, "GET")]),
    );
    let status = c.stop();
    assert!(status.success(), "{status:?}; log:\n{}", c.logs());
    let all = lines(&c);
    assert_eq!(all.len(), 1, "one flush, at shutdown");
    let rm = &all[0]["resourceMetrics"][0];
    assert_eq!(
        rm["scopeMetrics"][0]["scope"]["name"],
        "spanmetricsconnector"
    );
    let metrics = rm["scopeMetrics"][0]["metrics"].as_array().unwrap();
    let named = |n: &str| metrics.iter().find(|m| m["name"] == n).unwrap();
    let duration = named("traces.span.metrics.duration");
    let pay = duration["histogram"]["dataPoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| attr(p, "span.name") == "POST /pay")
        .unwrap();
    let exemplars = pay["exemplars"].as_array().unwrap();
    assert_eq!(exemplars.len(), 1);
    assert_eq!(exemplars[0]["traceId"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(exemplars[0]["spanId"], "b7ad6b7169203331");
    assert!(!attr(pay, "collector.instance.id").is_empty());
    let events = named("traces.span.metrics.events")["sum"]["dataPoints"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events.len(), 1);
    assert_eq!(attr(&events[0], "exception.type"), "Timeout");
    assert_eq!(attr(&events[0], "span.name"), "POST /pay");
    assert_eq!(num(&events[0]["asInt"]), 2);
}
