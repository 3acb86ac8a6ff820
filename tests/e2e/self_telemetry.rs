//! `service.telemetry` as the OTel Collector has it, seen from outside: sluice pushing its own
//! metrics over OTLP to another collector (HTTP and gRPC), a pull reader on its own address
//! with its Prometheus options and the resource as labels, JSON log lines in a file with
//! initial fields; and the keys of the debug and file exporters whose effect is visible.

use crate::common;

use std::time::{Duration, Instant};

use common::{Collector, free_port, http_get, json_lines};

/// A collector that takes OTLP metrics and writes them, one OTLP/JSON object per line, to
/// `@DIR@/metrics.jsonl`.
const METRICS_SINK: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
exporters:
  file/metrics:
    path: "@DIR@/metrics.jsonl"
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
      exporters: [file/metrics]
"#;

/// A collector taking logs over OTLP/HTTP into `debug`, with `telemetry` (YAML at the
/// `telemetry:` key's indentation plus two) as its `service.telemetry`.
fn pushing(telemetry: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  debug:
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:{telemetry}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
"#
    )
}

const ONE_LOG: &str = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hello"}},{"body":{"stringValue":"again"}}]}]}]}"#;

fn post_json(port: u16, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The string attributes of a resource in OTLP/JSON.
fn attributes(resource: &serde_json::Value) -> Vec<(String, String)> {
    resource["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["key"].as_str().unwrap_or_default().to_string(),
                a["value"]["stringValue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Waits (up to 30 s) for the sink to hold a push in which `metric` has a data point whose
/// value is `want`; returns that push's resource.
fn wait_for_pushed(sink: &Collector, metric: &str, want: i64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = json_lines(&sink.path("metrics.jsonl"), 1);
        for line in &lines {
            for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        if m["name"] != metric {
                            continue;
                        }
                        let points = m["sum"]["dataPoints"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        let hit = points.iter().any(|p| {
                            p["asInt"].as_str().and_then(|v| v.parse::<i64>().ok()) == Some(want)
                                || p["asInt"].as_i64() == Some(want)
                        });
                        if hit {
                            return rm["resource"].clone();
                        }
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no push of {metric} = {want}; the sink has:\n{lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn periodic_push_delivers(protocol: &str, endpoint: &str, extra: &str) {
    let sink = Collector::start(METRICS_SINK, &[]);
    let endpoint = endpoint
        .replace("@SINK_HTTP@", &sink.http.to_string())
        .replace("@SINK_GRPC@", &sink.grpc.to_string());
    let telemetry = format!(
        r#"
    resource:
      service.instance.id: null
      deployment.environment: e2e
    metrics:
      readers:
        - periodic:
            interval: 200
            exporter:
              otlp:
                protocol: {protocol}
                endpoint: {endpoint}{extra}"#
    );
    let a = Collector::start(&pushing(&telemetry), &[]);
    assert_eq!(post_json(a.http, "/v1/logs", ONE_LOG), 200);
    let resource = wait_for_pushed(&sink, "otelcol_receiver_accepted_log_records", 2);
    let attrs = attributes(&resource);
    assert!(
        attrs.contains(&("deployment.environment".into(), "e2e".into())),
        "{attrs:?}"
    );
    assert!(
        attrs.contains(&("service.name".into(), "sluice".into())),
        "{attrs:?}"
    );
    // A null removes the attribute.
    assert!(
        !attrs.iter().any(|(k, _)| k == "service.instance.id"),
        "{attrs:?}"
    );
}

#[test]
fn periodic_reader_pushes_own_metrics_over_otlp_http() {
    periodic_push_delivers(
        "http/protobuf",
        "http://127.0.0.1:@SINK_HTTP@",
        "\n                headers:\n                  - name: x-team\n                    value: core",
    );
}

#[test]
fn periodic_reader_pushes_own_metrics_over_otlp_grpc() {
    periodic_push_delivers(
        "grpc",
        "http://127.0.0.1:@SINK_GRPC@",
        "\n                insecure: true\n                compression: gzip",
    );
}

#[test]
fn the_last_counts_are_pushed_at_shutdown() {
    let sink = Collector::start(METRICS_SINK, &[]);
    // An interval far longer than the test: only the push at shutdown can carry the count.
    let telemetry = format!(
        r#"
    metrics:
      readers:
        - periodic:
            interval: 3600000
            exporter:
              otlp:
                protocol: http/json
                endpoint: http://127.0.0.1:{}"#,
        sink.http
    );
    let mut a = Collector::start(&pushing(&telemetry), &[]);
    assert_eq!(post_json(a.http, "/v1/logs", ONE_LOG), 200);
    assert!(a.stop().success(), "{}", a.logs());
    wait_for_pushed(&sink, "otelcol_receiver_accepted_log_records", 2);
}

#[test]
fn pull_reader_serves_on_its_address_with_its_options_and_the_resource() {
    let port = free_port();
    let telemetry = format!(
        r#"
    resource:
      deployment.environment: staging
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {port}
                without_type_suffix: true
                without_units: true
                with_resource_constant_labels:
                  included: [deployment.*]"#
    );
    let a = Collector::start(&pushing(&telemetry), &[]);
    assert_eq!(post_json(a.http, "/v1/logs", ONE_LOG), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if text.contains("transport=\"http\"") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("otelcol_receiver_accepted_log_records{")
                && l.contains("transport=\"http\"")
        })
        .unwrap_or_else(|| panic!("no accepted-records series:\n{text}"));
    assert!(
        line.contains("deployment_environment=\"staging\""),
        "{line}"
    );
    assert!(line.ends_with(" 2"), "{line}");
    assert!(!text.contains("_total"), "{text}");
    assert!(text.contains("otelcol_process_uptime{"), "{text}");
    let target = text
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .unwrap_or_else(|| panic!("no target_info:\n{text}"));
    assert!(target.contains("service_name=\"sluice\""), "{target}");
    assert!(target.contains("service_instance_id=\""), "{target}");
}

#[test]
fn level_none_serves_no_metrics_even_on_the_go_style_address() {
    let port = free_port();
    let telemetry = format!(
        r#"
    metrics:
      level: none
      address: ":{port}""#
    );
    let a = Collector::start(&pushing(&telemetry), &[]);
    assert_eq!(post_json(a.http, "/v1/logs", ONE_LOG), 200);
    assert!(http_get(port, "/metrics").is_none());
    drop(a);
    // Without `level: none` the same Go-style address serves on every interface.
    let telemetry = format!(
        r#"
    metrics:
      address: ":{port}""#
    );
    let _a = Collector::start(&pushing(&telemetry), &[]);
    let (status, body) = http_get(port, "/metrics").expect("metrics on :port");
    assert_eq!(status, 200);
    assert!(
        body.contains("otelcol_process_uptime_seconds_total"),
        "{body}"
    );
}

#[test]
fn json_logs_go_to_the_output_path_with_initial_fields() {
    let telemetry = r#"
    logs:
      level: info
      encoding: json
      output_paths: ["@DIR@/own.log"]
      initial_fields:
        deployment: edge-7"#;
    let a = Collector::start(&pushing(telemetry), &[]);
    assert_eq!(post_json(a.http, "/v1/logs", ONE_LOG), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(a.path("own.log")).unwrap_or_default();
        if text.contains("log records") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut ready = None;
    for line in lines.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert_eq!(v["deployment"], "edge-7", "{line}");
        if v["fields"]["message"] == "sluice is ready" {
            ready = Some(v);
        }
    }
    let ready = ready.unwrap_or_else(|| panic!("no ready line in:\n{lines}"));
    // The caller is there unless `disable_caller`.
    assert!(ready["filename"].is_string(), "{ready}");
    // Nothing went to stderr.
    assert!(!a.logs().contains("sluice is ready"), "{}", a.logs());
}

#[test]
fn debug_exporter_samples_its_lines() {
    let config = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  debug:
    verbosity: normal
    sampling_initial: 3
    sampling_thereafter: 1000
    use_internal_logger: false
    output_paths: ["@DIR@/debug.out"]
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
      exporters: [debug]
"#;
    let a = Collector::start(config, &[]);
    let records: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"body":{{"stringValue":"line {i}"}}}}"#))
        .collect();
    let body = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    );
    assert_eq!(post_json(a.http, "/v1/logs", &body), 200);
    assert_eq!(
        a.wait_for_metric("otelcol_exporter_sent_log_records_total", 50),
        Some(50)
    );
    let text = std::fs::read_to_string(a.path("debug.out")).unwrap_or_default();
    let items = text.lines().filter(|l| l.starts_with("log ")).count();
    // The first three item lines of the second, then one in a thousand: most are left out.
    // (A second that ends while the 50 lines are written starts a new allowance of three.)
    assert!((3..50).contains(&items), "{items} item lines:\n{text}");
    assert!(text.contains("log - line 0"), "{text}");
    assert!(text.contains("logs: 50 log_records"), "{text}");
}

#[test]
fn file_rotation_written_with_no_value_is_on() {
    // 103 old backups beside each file: rotation's default `max_backups: 100` prunes the
    // three oldest when the file is opened; without rotation nothing is touched.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    for stem in ["rotated", "plain"] {
        for i in 0..103 {
            let name = format!("{stem}-2020-01-01T00-{:02}-{:02}.000.jsonl", i / 60, i % 60);
            std::fs::write(out.join(name), "{}\n").unwrap();
        }
    }
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  file/rotated:
    path: "{dir}/rotated.jsonl"
    rotation:
  file/plain:
    path: "{dir}/plain.jsonl"
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
      exporters: [file/rotated, file/plain]
"#,
        dir = out.display()
    );
    let count = |stem: &str| {
        std::fs::read_dir(out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{stem}-2020"))
            })
            .count()
    };
    // Ready means every exporter has opened its file.
    let _a = Collector::start(&config, &[]);
    assert_eq!(count("rotated"), 100);
    assert_eq!(count("plain"), 103);
    // The oldest went first.
    assert!(!out.join("rotated-2020-01-01T00-00-00.000.jsonl").exists());
    assert!(out.join("rotated-2020-01-01T00-00-03.000.jsonl").exists());
}

#[test]
fn validate_warns_about_an_unused_receiver_and_accepted_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
  hostmetrics:
    collection_interval: 10s
    scrapers:
      cpu:
exporters:
  debug:
extensions:
  zpages:
    endpoint: 127.0.0.1:55679
  pprof:
    endpoint: 127.0.0.1:1777
service:
  extensions: [zpages, pprof]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for key in [
        "receivers.hostmetrics: defined but not used",
        "extensions.zpages",
        "extensions.pprof",
        "service.telemetry.traces",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(key)),
            "no warning about {key}:\n{stderr}"
        );
    }
}
