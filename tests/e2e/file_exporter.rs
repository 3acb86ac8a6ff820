//! The `file` exporter through the real binary: rotation by size, gzip/zstd output read by the
//! system's `gzip`, `zstd` and `jq`, `append` across restarts, and `group_by`.
//!
//! Needs the `zstd` and `gzip` commands (Debian packages `zstd`, `gzip`); `jq` is used when
//! present.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Collector;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

/// A config with the OTLP/HTTP receiver feeding `exporters` (YAML, indented by two spaces,
/// keyed by id) through logs, traces and metrics pipelines.
fn config(exporters: &str) -> String {
    let ids: Vec<&str> = exporters
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    let list = ids.join(", ");
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
    logs:
      receivers: [otlp]
      exporters: [{list}]
    traces:
      receivers: [otlp]
      exporters: [{list}]
    metrics:
      receivers: [otlp]
      exporters: [{list}]
"#
    )
}

/// POSTs an OTLP/JSON body; the status code. Plain HTTP/1.1 over a socket keeps the test
/// independent of any HTTP client's TLS set-up.
fn post(c: &Collector, signal: &str, body: &Value) -> u16 {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", c.http)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v1/{signal} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

fn post_ok(c: &Collector, signal: &str, body: &Value) {
    let status = post(c, signal, body);
    assert_eq!(status, 200, "POST /v1/{signal} failed; log:\n{}", c.logs());
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// One resource with one log record per body; `segment` sets `fileexporter.path_segment`.
fn resource_logs(segment: Option<&str>, bodies: &[String]) -> Value {
    let attributes: Vec<Value> = segment
        .map(|s| attribute("fileexporter.path_segment", s))
        .into_iter()
        .collect();
    let records: Vec<Value> = bodies
        .iter()
        .map(|b| json!({"body": {"stringValue": b}}))
        .collect();
    json!({
        "resource": {"attributes": attributes},
        "scopeLogs": [{"logRecords": records}]
    })
}

fn logs_request(resources: Vec<Value>) -> Value {
    json!({ "resourceLogs": resources })
}

fn spans_request(names: &[&str]) -> Value {
    let spans: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({
                "traceId": "0102030405060708090a0b0c0d0e0f10",
                "spanId": "0102030405060708",
                "name": n,
                "kind": 1,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000001000000000"
            })
        })
        .collect();
    json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
}

fn metrics_request(name: &str) -> Value {
    json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": name,
        "gauge": {"dataPoints": [{"asInt": "7", "timeUnixNano": "1700000000000000000"}]}
    }]}]}]})
}

/// Log bodies, span names and metric names found in one OTLP/JSON line, in order.
fn items_of_json(line: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let each = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    for r in each(line, "resourceLogs") {
        for s in each(&r, "scopeLogs") {
            for l in each(&s, "logRecords") {
                out.push(l["body"]["stringValue"].as_str().unwrap().to_string());
            }
        }
    }
    for r in each(line, "resourceSpans") {
        for s in each(&r, "scopeSpans") {
            for span in each(&s, "spans") {
                out.push(span["name"].as_str().unwrap().to_string());
            }
        }
    }
    for r in each(line, "resourceMetrics") {
        for s in each(&r, "scopeMetrics") {
            for m in each(&s, "metrics") {
                out.push(m["name"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

/// Every line must parse; the items in file order.
fn items_of_json_text(text: &str) -> Vec<String> {
    text.lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            items_of_json(&v)
        })
        .collect()
}

/// The items in length-prefixed protobuf content. Each message may be a `LogsData`,
/// `TracesData` or `MetricsData`; the signal is told apart by which decode finds items.
fn items_of_proto(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 4, "torn length prefix");
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let message = &bytes[4..4 + len];
        bytes = &bytes[4 + len..];
        // The three *Data messages share field numbers, so which one a message is shows in
        // which decodes cleanly and yields items.
        let logs: Vec<String> = ExportLogsServiceRequest::decode(message)
            .map(|m| {
                m.resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                    .filter_map(|l| match l.body.as_ref()?.value.as_ref()? {
                        AnyValue::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let spans: Vec<String> = ExportTraceServiceRequest::decode(message)
            .map(|m| {
                m.resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let metrics: Vec<String> = ExportMetricsServiceRequest::decode(message)
            .map(|m| {
                m.resource_metrics
                    .iter()
                    .flat_map(|r| &r.scope_metrics)
                    .flat_map(|s| &s.metrics)
                    .map(|m| m.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let decoded = [logs, spans, metrics]
            .into_iter()
            .find(|items| !items.is_empty())
            .unwrap_or_else(|| panic!("a message of {len} bytes holds no known items"));
        out.extend(decoded);
    }
    out
}

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{program}` (install it): {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// `zstd -d -c` or `gzip -d -c` of a file: (exit success, output, stderr).
fn decompress(path: &Path) -> (bool, Vec<u8>, String) {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".gz") {
        "gzip"
    } else {
        "zstd"
    };
    let out = run(tool, &["-d", "-c", &name], None);
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has_jq() -> bool {
    Command::new("jq")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Every line through `jq -c .`: the number of lines it printed.
fn jq_lines(text: &[u8]) -> usize {
    let out = run("jq", &["-c", "."], Some(text));
    assert!(
        out.status.success(),
        "jq failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn wait_for(what: &str, c: &Collector, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Backups of `dir/<stem><ext>`, sorted by name (= by rotation time), after checking each
/// name is `<stem>-YYYY-MM-DDTHH-MM-SS.mmm<ext>`.
fn backups(dir: &Path, stem: &str, ext: &str) -> Vec<PathBuf> {
    let current = format!("{stem}{ext}");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{stem}-")) && name.ends_with(ext) && name != current
        })
        .collect();
    found.sort();
    for path in &found {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stamp = &name[stem.len() + 1..name.len() - ext.len()];
        let shape = "dddd-dd-ddTdd-dd-dd.ddd";
        assert_eq!(stamp.len(), shape.len(), "{name}");
        for (c, s) in stamp.chars().zip(shape.chars()) {
            assert!(
                if s == 'd' { c.is_ascii_digit() } else { c == s },
                "backup name {name} is not {stem}-{shape}{ext}"
            );
        }
    }
    found
}

fn padded(i: usize) -> String {
    format!("rec-{i:03}-{}", "x".repeat(300))
}

#[test]
fn rotation_by_size_keeps_max_backups_and_every_record_once() {
    // Two exporters on the same stream: one keeps every backup (nothing may be lost or
    // doubled), one keeps two (the oldest files go). 0.004 MiB is 4194 bytes, about eleven
    // of the ~370-byte lines below. One consumer keeps the batches in order.
    let exporters = r#"
  file/all:
    path: "@DIR@/all.jsonl"
    flush_interval: 0s
    sending_queue:
      num_consumers: 1
    rotation:
      max_megabytes: 0.004
      max_backups: 100
  file/few:
    path: "@DIR@/few.jsonl"
    sending_queue:
      num_consumers: 1
    rotation:
      max_megabytes: 0.004
      max_backups: 2
      localtime: true
"#;
    let mut c = Collector::start(&config(exporters), &[]);
    let sent: Vec<String> = (0..60).map(padded).collect();
    for body in &sent {
        post_ok(
            &c,
            "logs",
            &logs_request(vec![resource_logs(None, std::slice::from_ref(body))]),
        );
    }
    assert!(c.stop().success(), "log:\n{}", c.logs());
    let dir = c.dir.path();
    let limit = (0.004f64 * 1024.0 * 1024.0) as u64;

    let all = backups(dir, "all", ".jsonl");
    assert!(all.len() >= 4, "expected several rotations, got {all:?}");
    let mut found = Vec::new();
    for file in all.iter().chain([&dir.join("all.jsonl")]) {
        let len = std::fs::metadata(file).unwrap().len();
        assert!(len <= limit, "{} is {len} bytes", file.display());
        found.extend(items_of_json_text(&std::fs::read_to_string(file).unwrap()));
    }
    assert_eq!(found, sent, "every record exactly once, in order");

    let few = backups(dir, "few", ".jsonl");
    assert_eq!(few.len(), 2, "max_backups: 2 keeps exactly two: {few:?}");
    let mut kept = Vec::new();
    for file in few.iter().chain([&dir.join("few.jsonl")]) {
        kept.extend(items_of_json_text(&std::fs::read_to_string(file).unwrap()));
    }
    // What is left is the newest part of the stream, without gaps or repeats.
    assert!(kept.len() < sent.len());
    assert_eq!(kept, sent[sent.len() - kept.len()..]);
}

#[test]
fn compressed_output_reads_with_gzip_zstd_and_jq() {
    let exporters = r#"
  file/zj:
    path: "@DIR@/z.jsonl.zst"
    compression: zstd
    flush_interval: 100ms
  file/gj:
    path: "@DIR@/g.jsonl.gz"
    compression: gzip
    flush_interval: 100ms
  file/zp:
    path: "@DIR@/z.pb.zst"
    format: proto
    compression: zstd
  file/gp:
    path: "@DIR@/g.pb.gz"
    format: proto
    compression: gzip
  file/zr:
    path: "@DIR@/r.jsonl.zst"
    compression: zstd
    rotation:
      max_megabytes: 0.002
      max_backups: 0
"#;
    let mut c = Collector::start(&config(exporters), &[]);
    let mut expected: Vec<String> = Vec::new();
    for i in 0..30 {
        let body = padded(i);
        post_ok(
            &c,
            "logs",
            &logs_request(vec![resource_logs(None, std::slice::from_ref(&body))]),
        );
        expected.push(body);
    }
    post_ok(&c, "traces", &spans_request(&["span-a", "span-b"]));
    post_ok(&c, "metrics", &metrics_request("metric-a"));
    expected.extend(["span-a", "span-b", "metric-a"].map(String::from));
    expected.sort();
    let dir = c.dir.path().to_path_buf();

    // While the collector runs: a reader of a live file gets every flushed record, then an
    // error for the stream's missing end.
    for name in ["z.jsonl.zst", "g.jsonl.gz"] {
        let path = dir.join(name);
        wait_for(&format!("{name} to show every record live"), &c, || {
            let (_, text, _) = decompress(&path);
            let lines = String::from_utf8_lossy(&text).into_owned();
            let complete: String = lines
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .collect();
            let mut items = items_of_json_text(&complete);
            items.sort();
            items == expected
        });
    }
    // Every rotated file is a finished stream even while the current one is being written.
    wait_for("rotations of r.jsonl.zst", &c, || {
        backups(&dir, "r", ".jsonl.zst").len() >= 3
    });
    for backup in backups(&dir, "r", ".jsonl.zst") {
        let (ok, text, err) = decompress(&backup);
        assert!(ok, "{}: {err}", backup.display());
        items_of_json_text(&String::from_utf8(text).unwrap());
    }

    assert!(c.stop().success(), "log:\n{}", c.logs());
    let jq = has_jq();
    if !jq {
        eprintln!("jq not installed: JSON lines are checked with serde_json only");
    }
    for name in ["z.jsonl.zst", "g.jsonl.gz", "z.pb.zst", "g.pb.gz"] {
        let (ok, bytes, err) = decompress(&dir.join(name));
        assert!(ok, "{name} does not decompress: {err}");
        let mut items = if name.contains(".jsonl") {
            let text = String::from_utf8(bytes.clone()).unwrap();
            if jq {
                assert_eq!(jq_lines(&bytes), text.lines().count(), "{name}");
            }
            items_of_json_text(&text)
        } else {
            items_of_proto(&bytes)
        };
        items.sort();
        assert_eq!(items, expected, "{name}");
    }
    let mut rotated = Vec::new();
    for file in backups(&dir, "r", ".jsonl.zst")
        .iter()
        .chain([&dir.join("r.jsonl.zst")])
    {
        let (ok, text, err) = decompress(file);
        assert!(ok, "{}: {err}", file.display());
        rotated.extend(items_of_json_text(&String::from_utf8(text).unwrap()));
    }
    rotated.sort();
    assert_eq!(
        rotated, expected,
        "rotated zstd files hold every record once"
    );
}

#[test]
fn append_adds_a_stream_that_the_tools_read_as_one() {
    let keep = tempfile::tempdir().unwrap();
    let exporters = format!(
        r#"
  file/z:
    path: "{dir}/a.jsonl.zst"
    compression: zstd
    append: true
  file/g:
    path: "{dir}/a.jsonl.gz"
    compression: gzip
    append: true
  file/plain:
    path: "{dir}/a.jsonl"
    append: true
  file/fresh:
    path: "{dir}/fresh.jsonl"
"#,
        dir = keep.path().display()
    );
    for round in ["first", "second"] {
        let mut c = Collector::start(&config(&exporters), &[]);
        post_ok(
            &c,
            "logs",
            &logs_request(vec![resource_logs(None, &[round.to_string()])]),
        );
        assert!(c.stop().success(), "log:\n{}", c.logs());
    }
    for name in ["a.jsonl.zst", "a.jsonl.gz"] {
        let (ok, text, err) = decompress(&keep.path().join(name));
        assert!(ok, "{name}: {err}");
        let text = String::from_utf8(text).unwrap();
        assert_eq!(items_of_json_text(&text), ["first", "second"], "{name}");
    }
    let plain = std::fs::read_to_string(keep.path().join("a.jsonl")).unwrap();
    assert_eq!(items_of_json_text(&plain), ["first", "second"]);
    // `append` defaults to false: the file starts empty on each start.
    let fresh = std::fs::read_to_string(keep.path().join("fresh.jsonl")).unwrap();
    assert_eq!(items_of_json_text(&fresh), ["second"]);
}

#[test]
fn group_by_writes_one_file_per_attribute_value() {
    // Four values through two open files: files are closed and reopened as values alternate.
    let exporters = r#"
  file/out:
    path: "@DIR@/groups/svc-*.jsonl"
    flush_interval: 0s
    group_by:
      enabled: true
      max_open_files: 2
"#;
    let mut c = Collector::start(&config(exporters), &[]);
    // Each value and the file it must land in; `/` and a leading `.` are percent-encoded.
    let files = [
        ("alpha", "svc-alpha.jsonl"),
        ("beta", "svc-beta.jsonl"),
        ("gamma", "svc-gamma.jsonl"),
        ("../escape", "svc-%2E.%2Fescape.jsonl"),
    ];
    let mut expected: Vec<(String, Vec<String>)> = files
        .iter()
        .map(|(v, _)| (v.to_string(), Vec::new()))
        .collect();
    let mut unrouted = 0;
    for i in 0..12 {
        let mut resources = Vec::new();
        for (v, (value, bodies)) in expected.iter_mut().enumerate() {
            if (i + v) % 3 == 0 {
                continue;
            }
            let body = format!("{value}-{i}");
            resources.push(resource_logs(Some(value), std::slice::from_ref(&body)));
            bodies.push(body);
        }
        resources.push(resource_logs(None, &[format!("none-{i}")]));
        unrouted += 1;
        post_ok(&c, "logs", &logs_request(resources));
    }
    wait_for("the unrouted count", &c, || {
        c.metrics_text().contains(&format!(
            "sluice_exporter_file_unrouted_log_records_total{{exporter=\"file/out\"}} {unrouted}"
        ))
    });
    assert!(c.stop().success(), "log:\n{}", c.logs());

    let groups = c.dir.path().join("groups");
    let mut names: Vec<String> = std::fs::read_dir(&groups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut wanted: Vec<&str> = files.iter().map(|(_, f)| *f).collect();
    wanted.sort();
    assert_eq!(names, wanted);
    // Nothing left the directory.
    assert!(!c.dir.path().join("escape.jsonl").exists());
    assert!(!c.dir.path().join("groups/escape.jsonl").exists());
    for ((value, mut bodies), (_, name)) in expected.into_iter().zip(files) {
        let file = groups.join(name);
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            for r in v["resourceLogs"].as_array().unwrap() {
                assert_eq!(
                    r["resource"]["attributes"][0]["value"]["stringValue"],
                    value,
                    "{}",
                    file.display()
                );
            }
        }
        let mut found = items_of_json_text(&text);
        found.sort();
        bodies.sort();
        assert_eq!(found, bodies, "{}", file.display());
    }
}

/// With compression and a flush interval, data that arrived is readable within an interval
/// even when nothing follows it: the live file then ends with whole lines, not in the middle
/// of one, for both compressors.
#[test]
fn an_idle_compressed_file_is_flushed_to_whole_lines() {
    let c = Collector::start(
        &config(
            "  file/zstd:\n    path: \"@DIR@/idle.jsonl.zst\"\n    compression: zstd\n    flush_interval: 1s\n  file/gzip:\n    path: \"@DIR@/idle.jsonl.gz\"\n    compression: gzip\n    flush_interval: 1s\n",
        ),
        &[],
    );
    // Enough to pass the writer's chunk size, so some bytes reach the file before the flush.
    let bodies: Vec<String> = (0..3000)
        .map(|i| format!("{}-{}", padded(i), "x".repeat(300)))
        .collect();
    for part in bodies.chunks(500) {
        post_ok(&c, "logs", &logs_request(vec![resource_logs(None, part)]));
    }
    for file in ["idle.jsonl.zst", "idle.jsonl.gz"] {
        let path = c.path(file);
        wait_for(&format!("{file} to hold whole lines"), &c, || {
            // The stream has no end yet: the tools decompress what is there and complain.
            let (_, text, _) = decompress(&path);
            !text.is_empty() && text.ends_with(b"\n")
        });
        let (_, text, _) = decompress(&path);
        let items = items_of_json_text(&String::from_utf8_lossy(&text));
        assert_eq!(items, bodies, "{file}");
    }
}
