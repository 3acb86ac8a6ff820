//! OTLP/HTTP error answers of the real binary: wrong method, media type, encoding, size,
//! undecodable bodies, unknown paths, decompression bombs; and that the collector keeps
//! serving (and writing) after each of them.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Collector, json_lines};
use prost::Message;

const LIMIT: usize = 64 * 1024;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
        max_request_body_size: 64KiB
        traces_url_path: /custom/traces
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

/// `google.rpc.Status`, as the receiver encodes it in protobuf error bodies.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn client() -> reqwest::blocking::Client {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn log_json(body: &str) -> String {
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn send(
    c: &Collector,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut request = client()
        .request(method, format!("http://127.0.0.1:{}{path}", c.http))
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().unwrap().to_vec(),
    }
}

fn post(c: &Collector, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    send(c, reqwest::Method::POST, path, headers, body)
}

const JSON: (&str, &str) = ("content-type", "application/json");
const PROTO: (&str, &str) = ("content-type", "application/x-protobuf");

/// Log bodies written to the file so far, waiting for at least `min`.
fn written(c: &Collector, min: usize) -> Vec<String> {
    json_lines(&c.path("out.jsonl"), min)
        .iter()
        .flat_map(|line| {
            line["resourceLogs"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["scopeLogs"].as_array().into_iter().flatten())
                .flat_map(|s| s["logRecords"].as_array().into_iter().flatten())
                .map(|l| l["body"]["stringValue"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A good request after the bad ones: still 200, and it reaches the file.
fn assert_still_serving(c: &Collector, marker: &str, lines_before: usize) {
    let a = post(c, "/v1/logs", &[JSON], log_json(marker).into_bytes());
    assert_eq!(a.status, 200, "{}", c.logs());
    let bodies = written(c, lines_before + 1);
    assert!(bodies.iter().any(|b| b == marker), "{bodies:?}");
}

#[test]
fn bad_requests_get_the_right_status_and_the_collector_keeps_serving() {
    let mut c = Collector::start(CONFIG, &[]);

    // Wrong methods: 405 naming the one allowed.
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let a = send(&c, method.clone(), "/v1/logs", &[JSON], Vec::new());
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.header("allow"), Some("POST"), "{method}");
    }

    // Media types and encodings it cannot read: 415.
    let a = post(
        &c,
        "/v1/logs",
        &[("content-type", "text/plain")],
        b"hello".to_vec(),
    );
    assert_eq!(a.status, 415);
    assert!(
        a.json()["message"].as_str().unwrap().contains("text/plain"),
        "{}",
        a.json()
    );
    let a = post(
        &c,
        "/v1/logs",
        &[JSON, ("content-encoding", "br")],
        log_json("br").into_bytes(),
    );
    assert_eq!(a.status, 415);
    assert!(a.json()["message"].as_str().unwrap().contains("br"));

    // Undecodable protobuf: 400 with a protobuf google.rpc.Status.
    let a = post(&c, "/v1/logs", &[PROTO], vec![0xff; 16]);
    assert_eq!(a.status, 400);
    assert_eq!(a.header("content-type"), Some("application/x-protobuf"));
    let status = RpcStatus::decode(&a.body[..]).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(!status.message.is_empty());

    // Invalid JSON: 400 with a JSON google.rpc.Status.
    let a = post(
        &c,
        "/v1/logs",
        &[JSON],
        br#"{"resourceLogs": [ nope"#.to_vec(),
    );
    assert_eq!(a.status, 400);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.json()["code"], 3);
    assert!(!a.json()["message"].as_str().unwrap().is_empty());

    // A corrupt gzip body is a bad request too, not a crash.
    let a = post(
        &c,
        "/v1/logs",
        &[JSON, ("content-encoding", "gzip")],
        b"definitely not gzip".to_vec(),
    );
    assert_eq!(a.status, 400);

    // Unknown paths, including the default traces path replaced by traces_url_path.
    for path in ["/v1/nothing", "/", "/v1/traces", "/v1/metrics"] {
        let a = post(&c, path, &[JSON], b"{}".to_vec());
        assert_eq!(a.status, 404, "{path}");
    }

    // Over max_request_body_size as sent: 413 (declared length).
    let big = vec![b' '; LIMIT + 1];
    let a = post(&c, "/v1/logs", &[JSON], big);
    assert_eq!(a.status, 413);
    assert_eq!(a.json()["code"], 8, "RESOURCE_EXHAUSTED");

    // ... and without a declared length (chunked): still 413.
    assert_eq!(chunked_post(c.http, "/v1/logs", LIMIT + 4096), 413);

    // Exactly at the limit is allowed (whitespace padding keeps it valid JSON).
    let mut at_limit = log_json("at-limit").into_bytes();
    at_limit.resize(LIMIT, b' ');
    let a = post(&c, "/v1/logs", &[JSON], at_limit);
    assert_eq!(a.status, 200);

    // The custom traces path works, with data written.
    let spans = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"custom-path"}]}]}]}"#;
    let a = post(&c, "/custom/traces", &[JSON], spans.as_bytes().to_vec());
    assert_eq!(a.status, 200);
    let lines = json_lines(&c.path("out.jsonl"), 2);
    let span = lines
        .iter()
        .find_map(|l| l["resourceSpans"][0]["scopeSpans"][0]["spans"].get(0))
        .expect("the span was not written");
    assert_eq!(span["name"], "custom-path");
    assert_eq!(span["spanId"], "0102030405060708");

    // Nothing refused above reached the file; good data still does.
    assert_still_serving(&c, "after-errors", 2);
    let bodies = written(&c, 3);
    assert_eq!(bodies, ["at-limit", "after-errors"], "only accepted data");
    assert!(c.stop().success());
}

/// POSTs `len` bytes with chunked transfer encoding (no Content-Length); returns the status.
fn chunked_post(port: u16, path: &str, len: usize) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let chunk = 4096;
    for _ in 0..len.div_ceil(chunk) {
        request.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        request.extend(std::iter::repeat_n(b' ', chunk));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; its answer still arrives.
    let _ = stream.write_all(&request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

/// A /proc/<pid>/status field in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn gzip_of(data_len: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    let mut left = data_len;
    while left > 0 {
        let n = left.min(chunk.len());
        gz.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    gz.finish().unwrap()
}

fn zstd_of(data_len: usize) -> Vec<u8> {
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut left = data_len;
    while left > 0 {
        let n = left.min(chunk.len());
        z.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    z.finish().unwrap()
}

#[test]
fn decompression_bombs_are_refused_without_inflating_memory() {
    let mut c = Collector::start(CONFIG, &[]);
    let pid = c.pid();

    // Compressed bodies within the limit work (so the 413s below are about size).
    let small = log_json("gzip-ok");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(small.as_bytes()).unwrap();
    let a = post(
        &c,
        "/v1/logs",
        &[JSON, ("content-encoding", "gzip")],
        gz.finish().unwrap(),
    );
    assert_eq!(a.status, 200);
    let a = post(
        &c,
        "/v1/logs",
        &[JSON, ("content-encoding", "zstd")],
        zstd::encode_all(log_json("zstd-ok").as_bytes(), 3).unwrap(),
    );
    assert_eq!(a.status, 200);
    assert_eq!(written(&c, 2), ["gzip-ok", "zstd-ok"]);

    let baseline_kib = proc_kib(pid, "VmRSS").max(proc_kib(pid, "VmHWM"));

    // 48 MiB of JSON whitespace in under 64 KiB of gzip; 1 GiB in a few KiB of zstd.
    let gzip_bomb = gzip_of(48 << 20);
    let zstd_bomb = zstd_of(1 << 30);
    for (encoding, bomb) in [("gzip", &gzip_bomb), ("zstd", &zstd_bomb)] {
        assert!(
            bomb.len() < LIMIT,
            "{encoding} bomb is {} bytes",
            bomb.len()
        );
        let a = post(
            &c,
            "/v1/logs",
            &[JSON, ("content-encoding", encoding)],
            bomb.clone(),
        );
        assert_eq!(a.status, 413, "{encoding}");
        let message = a.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("decompressed"), "{message}");
        // The peak resident size never approached the decompressed size.
        let peak_kib = proc_kib(pid, "VmHWM");
        assert!(
            peak_kib < baseline_kib + 24 * 1024,
            "{encoding} bomb: peak RSS {peak_kib} KiB vs {baseline_kib} KiB before"
        );
    }
    assert_still_serving(&c, "after-bombs", 2);
    assert_eq!(written(&c, 3), ["gzip-ok", "zstd-ok", "after-bombs"]);
    assert!(c.stop().success());
}
