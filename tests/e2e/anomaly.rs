//! The `anomaly` connector in the real binary: gauge points in over OTLP/JSON, a metrics
//! pipeline exporting to the connector, a logs pipeline writing its events to one file and a
//! metrics pipeline writing its forecast band to another. A step change after warm-up must
//! produce exactly one firing event, at the second point above the band.

use crate::common;

use std::time::{Duration, Instant};

use common::Collector;
use serde_json::{Value, json};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
connectors:
  anomaly:
    name: queue-depth-anomaly
    forecast: true
exporters:
  file/events:
    path: "@DIR@/events.jsonl"
    format: json
    flush_interval: 0s
  file/forecast:
    path: "@DIR@/forecast.jsonl"
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
    metrics:
      receivers: [otlp]
      exporters: [anomaly]
    logs:
      receivers: [anomaly]
      exporters: [file/events]
    metrics/forecast:
      receivers: [anomaly]
      exporters: [file/forecast]
"#;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn post_point(c: &Collector, i: u64, value: f64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let doc = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "db1"}}]},
        "scopeMetrics": [{"metrics": [{
            "name": "queue.depth",
            "unit": "{message}",
            "gauge": {"dataPoints": [{
                "timeUnixNano": (T0 + i * 10 * SEC).to_string(),
                "asDouble": value,
                "attributes": [{"key": "queue", "value": {"stringValue": "orders"}}]
            }]}
        }]}]
    }]});
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/metrics", c.http))
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

fn lines(c: &Collector, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(c.path(file)).unwrap_or_default();
    let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn records(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .flat_map(|l| l["resourceLogs"].as_array().unwrap().clone())
        .flat_map(|rl| {
            let resource = rl["resource"].clone();
            rl["scopeLogs"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|sl| sl["logRecords"].as_array().unwrap().clone())
                .map(move |mut r| {
                    r["_resource"] = resource.clone();
                    r
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn attr<'a>(record: &'a Value, key: &str) -> &'a Value {
    let found = record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .unwrap_or_else(|| panic!("no attribute {key} in {record}"));
    let value = &found["value"];
    value
        .get("stringValue")
        .or_else(|| value.get("doubleValue"))
        .unwrap_or(value)
}

#[test]
fn a_step_change_fires_exactly_one_alert_event() {
    let mut c = Collector::start(CONFIG, &[]);
    // 40 points of a steady queue (the default warm-up is 30), then it jumps and stays up.
    let steady = [120.0, 122.0, 118.0, 121.0, 119.0];
    for i in 0..40u64 {
        post_point(&c, i, steady[i as usize % steady.len()]);
    }
    assert!(
        lines(&c, "events.jsonl").is_empty(),
        "no event for a steady series"
    );
    for i in 40..46u64 {
        post_point(&c, i, 950.0);
    }
    // Every request is acknowledged only after evaluation; the file is written with no delay.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&c, "events.jsonl").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let telemetry = c.metrics_text();
    for line in [
        r#"sluice_anomaly_series{connector="anomaly",signal="logs"} 1"#,
        r#"sluice_anomaly_alerts_firing{connector="anomaly",signal="logs"} 1"#,
    ] {
        assert!(telemetry.contains(line), "no `{line}` in\n{telemetry}");
    }
    let status = c.stop();
    assert!(status.success(), "{status:?}; log:\n{}", c.logs());

    let events = records(&lines(&c, "events.jsonl"));
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["eventName"], "sluice.alert");
    assert_eq!(e["severityNumber"], 13);
    assert_eq!(
        e["timeUnixNano"],
        (T0 + 41 * 10 * SEC).to_string(),
        "the second point up"
    );
    assert_eq!(attr(e, "event.name"), "sluice.alert");
    assert_eq!(attr(e, "alert.rule"), "queue-depth-anomaly");
    assert_eq!(attr(e, "alert.state"), "firing");
    assert_eq!(attr(e, "alert.value"), 950.0);
    assert_eq!(attr(e, "alert.metric"), "queue.depth");
    assert_eq!(attr(e, "queue"), "orders");
    let upper = attr(e, "anomaly.upper").as_f64().unwrap();
    let expected = attr(e, "anomaly.expected").as_f64().unwrap();
    assert_eq!(attr(e, "alert.threshold").as_f64().unwrap(), upper);
    assert!((110.0..140.0).contains(&expected) && upper < 950.0, "{e}");
    assert_eq!(
        e["_resource"]["attributes"][0]["value"]["stringValue"], "db1",
        "the series' resource"
    );
    let body = e["body"]["stringValue"].as_str().unwrap();
    assert!(
        body.starts_with("queue.depth 950 is above its expected range "),
        "{body}"
    );

    // The forecast band: one point of each gauge per point judged after warm-up.
    let forecast = lines(&c, "forecast.jsonl");
    let mut counts = std::collections::BTreeMap::new();
    for line in &forecast {
        for rm in line["resourceMetrics"].as_array().unwrap() {
            for sm in rm["scopeMetrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap() {
                    let points = m["gauge"]["dataPoints"].as_array().unwrap();
                    *counts
                        .entry(m["name"].as_str().unwrap().to_string())
                        .or_insert(0) += points.len();
                }
            }
        }
    }
    // Points 0..=29 are the 30-point warm-up; 30..=45 are judged.
    let judged = 46 - 30;
    assert_eq!(
        counts,
        [
            ("queue.depth.forecast".to_string(), judged),
            ("queue.depth.lower".to_string(), judged),
            ("queue.depth.upper".to_string(), judged)
        ]
        .into_iter()
        .collect()
    );
}
