//! Small valid OTLP requests whose decoded form is hundreds of times their size (an empty span
//! is 2 bytes of protobuf and a struct of a few hundred bytes): the receiver reserves the
//! memory the decoded form will take before anything is decoded, so such a request is refused
//! when it can never fit (413) or cannot fit now (429), and the process stays far below what
//! decoding it would take. A batch processor cuts requests over its byte cap as bytes, without
//! decoding them, losing and duplicating nothing. The collector keeps serving after all of it.
//!
//! Peak memory is the process's VmHWM (its highest resident set) from /proc.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Collector;
use common::otlp_sink::OtlpSink;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const MIB: u64 = 1024 * 1024;

/// Without a memory limiter the receivers' budget is 256 MiB, and a request is refused before
/// its decoded form could take more than what is left of it; what the collector holds besides
/// (its code, buffers, the request bytes themselves) is a few tens of MiB. A process that
/// decoded any of the attacks below would be far past this (the smallest, a megabyte of empty
/// spans, took 608 MiB before).
const PEAK_BOUND: u64 = 200 * MIB;

/// `body` as length-delimited field `tag` (numbers under 16).
fn field(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag << 3 | 2];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// An export request of one resource with one scope holding `n` empty items (field 2 of a
/// scope in every signal): built as bytes, as building the structs would take the memory
/// this is about, in the test.
fn empty_items(n: usize) -> Vec<u8> {
    let items = [0x12, 0x00].repeat(n);
    field(1, &field(2, &items))
}

/// A request of about `bytes` bytes of empty spans, all in one scope.
fn empty_spans(bytes: usize) -> Vec<u8> {
    empty_items(bytes / 2)
}

/// A request of about `bytes` bytes of empty log records.
fn empty_logs(bytes: usize) -> Vec<u8> {
    empty_items(bytes / 2)
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_string())),
    })
}

/// Log records as applications send them (a body, a few attributes, ids), numbered from
/// `first`, until the request is at least `bytes` long.
fn ordinary_logs(first: usize, bytes: usize) -> (Vec<u8>, usize) {
    let mut records = Vec::new();
    let mut size = 0;
    while size < bytes {
        let n = first + records.len();
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + n as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: text(&format!("record-{n}: the service handled a request")),
            attributes: ["http.method", "http.route", "user.id"]
                .iter()
                .map(|key| KeyValue {
                    key: (*key).into(),
                    value: text(&format!("{key}-{}", n % 97)),
                    ..Default::default()
                })
                .collect(),
            trace_id: vec![7; 16],
            span_id: vec![3; 8],
            ..Default::default()
        };
        size += record.encoded_len() + 4;
        records.push(record);
    }
    let count = records.len();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (request.encode_to_vec(), count)
}

/// POSTs protobuf; the status and the body of the answer.
fn post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    post_as(port, path, "application/x-protobuf", body)
}

fn post_as(port: u16, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The collector may answer (and close) before the whole body is sent.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// The most the process has had resident, from /proc/<pid>/status (VmHWM, in kB).
fn peak_rss(c: &Collector) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM in /proc/<pid>/status")
}

fn assert_refused_for_good(status: u16, response: &str) {
    assert_eq!(status, 413, "{response}");
    assert!(response.contains("can never be accepted"), "{response}");
    assert!(response.contains("decoded form"), "{response}");
}

/// A normal request is still accepted, and written by the file exporter.
fn assert_still_serving(c: &Collector, marker: &str) {
    let (request, _) = ordinary_logs(0, 10);
    let mut request = ExportLogsServiceRequest::decode(request.as_slice()).unwrap();
    request.resource_logs[0].scope_logs[0].log_records[0].body = text(marker);
    let (status, response) = post(c.http, "/v1/logs", &request.encode_to_vec());
    assert_eq!(status, 200, "{response}\n{}", c.logs());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let written = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
        if written.contains(marker) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{marker} not written:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FILE_PIPELINE: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
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
      exporters: [file/out]
    logs:
      receivers: [otlp]
      exporters: [file/out]
"#;

#[test]
fn empty_spans_and_log_records_are_refused_before_they_are_decoded() {
    let small = ExportTraceServiceRequest::decode(empty_spans(10).as_slice()).unwrap();
    assert_eq!(
        small.resource_spans[0].scope_spans[0].spans,
        vec![Span::default(); 5]
    );
    let small = ExportLogsServiceRequest::decode(empty_logs(10).as_slice()).unwrap();
    assert_eq!(small.resource_logs[0].scope_logs[0].log_records.len(), 5);
    let c = Collector::start(FILE_PIPELINE, &[]);
    for (path, body) in [
        ("/v1/traces", empty_spans(1_000_000)),
        ("/v1/logs", empty_logs(4_000_000)),
        // The largest body the receiver takes (20 MiB): several GiB decoded.
        ("/v1/traces", empty_spans(20_000_000)),
    ] {
        let (status, response) = post(c.http, path, &body);
        assert_refused_for_good(status, &response);
    }
    // The same in OTLP/JSON: `{}` is an empty span.
    let spans = vec!["{}"; 1_300_000].join(",");
    let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
    let (status, response) = post_as(c.http, "/v1/traces", "application/json", json.as_bytes());
    assert_refused_for_good(status, &response);
    let peak = peak_rss(&c);
    eprintln!("peak RSS after the refused requests: {} MiB", peak / MIB);
    assert!(peak < PEAK_BOUND, "peak RSS {} MiB", peak / MIB);
    assert_still_serving(&c, "served-after-empty-items");
}

#[test]
fn the_memory_limiter_holds_against_concurrent_amplified_requests() {
    let config = FILE_PIPELINE
        .replace(
            "exporters:\n  file/out:",
            "processors:\n  memory_limiter:\n    check_interval: 100ms\n    limit_mib: 512\nexporters:\n  file/out:",
        )
        .replace(
            "      receivers: [otlp]\n      exporters",
            "      receivers: [otlp]\n      processors: [memory_limiter]\n      exporters",
        );
    let c = Collector::start(&config, &[]);
    let limit = 512 * MIB;

    // A megabyte of empty spans needs more than the whole budget (the spike limit, 20% of
    // 512 MiB): refused for good, four in a row and forty at once.
    let big = empty_spans(1_000_000);
    for _ in 0..4 {
        let (status, response) = post(c.http, "/v1/traces", &big);
        assert_refused_for_good(status, &response);
    }
    let port = c.http;
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let sends: Vec<_> = (0..40)
            .map(|_| s.spawn(|| post(port, "/v1/traces", &big)))
            .collect();
        sends.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, response) in &answers {
        assert!(
            *status == 413 || *status == 429,
            "{status}: {response}\n{}",
            c.logs()
        );
    }
    assert!(peak_rss(&c) < limit, "peak RSS {} MiB", peak_rss(&c) / MIB);

    // Forty at once of 20,000 empty spans each (40 kB; each decodes to tens of MiB): as many
    // as fit the budget are taken, the others are told to retry, and every span taken is
    // written once.
    let small = empty_spans(40_000);
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let sends: Vec<_> = (0..40)
            .map(|_| s.spawn(|| post(port, "/v1/traces", &small)))
            .collect();
        sends.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    for (status, response) in &answers {
        assert!(*status == 200 || *status == 429, "{status}: {response}");
    }
    assert!(accepted > 0, "{answers:?}");
    let spans_written = || {
        std::fs::read_to_string(c.path("out.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["resourceSpans"].as_array().cloned())
            .flatten()
            .map(|r| {
                r["scopeSpans"]
                    .as_array()
                    .map(|scopes| {
                        scopes
                            .iter()
                            .map(|s| s["spans"].as_array().map_or(0, Vec::len))
                            .sum::<usize>()
                    })
                    .unwrap_or(0)
            })
            .sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while spans_written() < accepted * 20_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(spans_written(), accepted * 20_000, "{}", c.logs());
    eprintln!(
        "{accepted} of 40 accepted; peak RSS {} MiB",
        peak_rss(&c) / MIB
    );
    assert!(peak_rss(&c) < limit, "peak RSS {} MiB", peak_rss(&c) / MIB);
    assert_still_serving(&c, "served-after-the-limiter");
}

#[test]
fn a_batch_processor_cuts_large_requests_without_decoding_them() {
    let [sink_port] = common::free_ports::<1>();
    let sink = OtlpSink::start_on(sink_port);
    let config = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  # A budget (the spike limit) large enough to take what decoding 4.2 MB of empty spans
  # would take, so the request is accepted and only not decoding it keeps memory low.
  memory_limiter:
    limit_mib: 8000
    spike_limit_mib: 4000
  batch:
    timeout: 50ms
  # Under the 2 MB the test's backend takes; the default (3 MiB) works the same way.
  batch/small:
    timeout: 50ms
    send_batch_max_bytes: 1MiB
exporters:
  nop:
  file/out:
    path: "@DIR@/out.jsonl"
    flush_interval: 0s
  otlphttp/sink:
    endpoint: http://127.0.0.1:@SINK@/
    compression: none
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
      processors: [memory_limiter, batch]
      exporters: [nop]
    logs:
      receivers: [otlp]
      processors: [batch/small]
      exporters: [otlphttp/sink]
    logs/file:
      receivers: [otlp]
      exporters: [file/out]
"#
    .replace("@SINK@", &sink_port.to_string());
    let c = Collector::start(&config, &[]);

    // 4.2 MB of empty spans, over the 3 MiB `send_batch_max_bytes` of `batch`: cut into two
    // requests as bytes and discarded by `nop`, never decoded (which took 1,160 MiB).
    // Each holds budget for its decoded form until `nop` has it, so one may have to wait,
    // as a client is told to (429, retry after a second).
    let request = empty_spans(4_200_000);
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, response) = post(c.http, "/v1/traces", &request);
            if status == 429 && Instant::now() < deadline {
                assert!(response.contains("in-flight budget"), "{response}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            assert_eq!(status, 200, "{response}\n{}", c.logs());
            break;
        }
    }
    // Answered once in the batch processor: measured once `nop` has had every span.
    let spans = 3 * 2_100_000;
    let sent = "otelcol_exporter_sent_spans_total{exporter=\"nop\"}";
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::metric_sample(&c.metrics_text(), sent) != Some(spans) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        common::metric_sample(&c.metrics_text(), sent),
        Some(spans),
        "{}",
        c.metrics_text()
    );
    let peak = peak_rss(&c);
    eprintln!(
        "peak RSS after 3 x 4.2 MB of empty spans through batch -> nop: {} MiB",
        peak / MIB
    );
    assert!(peak < PEAK_BOUND, "peak RSS {} MiB", peak / MIB);

    // 4.2 MB of ordinary log records, over `send_batch_max_bytes`: cut into requests under
    // it, as bytes, and every record arrives once.
    let (request, records) = ordinary_logs(0, 4_200_000);
    assert!(request.len() > 4_000_000);
    let (status, response) = post(c.http, "/v1/logs", &request);
    assert_eq!(status, 200, "{response}\n{}", c.logs());
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.bodies().len() < records && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut bodies = sink.bodies();
    assert_eq!(
        bodies.len(),
        records,
        "lost or duplicated records\n{}",
        c.logs()
    );
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), records, "duplicated records");
    let least = request.len().div_ceil(1024 * 1024);
    assert!(sink.requests() >= least, "{} requests", sink.requests());

    let peak = peak_rss(&c);
    assert!(peak < PEAK_BOUND, "peak RSS {} MiB", peak / MIB);
    assert_still_serving(&c, "served-after-batching");
}
