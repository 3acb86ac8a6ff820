//! Graceful shutdown of the real binary: SIGTERM under load loses nothing that was
//! acknowledged, and health answers 503 while the collector drains.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Collector, http_get};

/// OTLP/HTTP in, a batch processor holding data for a while and a file exporter that only
/// flushes its buffer on shutdown (so there is something to drain at SIGTERM).
fn config(shutdown_timeout: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  batch:
    timeout: 500ms
    send_batch_size: 64
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    flush_interval: 1h
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  shutdown_timeout: {shutdown_timeout}
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/out]
"#
    )
}

fn logs_request(ids: &[String]) -> String {
    let records: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"body":{{"stringValue":"{id}"}}}}"#))
        .collect();
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    )
}

/// Every log record body in the file output.
fn written_ids(c: &Collector) -> Vec<String> {
    let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
    let mut ids = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for r in v["resourceLogs"].as_array().unwrap() {
            for s in r["scopeLogs"].as_array().unwrap() {
                for l in s["logRecords"].as_array().unwrap() {
                    ids.push(l["body"]["stringValue"].as_str().unwrap().to_string());
                }
            }
        }
    }
    ids
}

fn wait_for(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const TASKS: usize = 8;
const RECORDS_PER_REQUEST: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_nothing_that_was_acknowledged() {
    let mut c = Collector::start(&config("10s"), &[]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{}/v1/logs", c.http);

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (client, url) = (client.clone(), url.clone());
        let (acknowledged, refused, stop) = (acknowledged.clone(), refused.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ids: Vec<String> = (0..RECORDS_PER_REQUEST)
                    .map(|i| format!("t{task}-r{n}-i{i}"))
                    .collect();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(logs_request(&ids))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().extend(ids),
                    // Refused while shutting down: the client would retry elsewhere.
                    Ok(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    // The listener is gone.
                    Err(_) => break,
                }
            }
        }));
    }

    // Let the load build up, then SIGTERM in the middle of it.
    let loaded = wait_for(Duration::from_secs(60), || {
        acknowledged.lock().unwrap().len() >= 100 * RECORDS_PER_REQUEST
    });
    assert!(loaded, "load did not build up: {}", c.logs());
    let before_signal = acknowledged.lock().unwrap().len();
    common::signal(c.pid(), "TERM");
    let status = tokio::task::block_in_place(|| c.wait_exit(Duration::from_secs(120)));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(status.success(), "exit {status:?}; log:\n{}", c.logs());
    let logs = c.logs();
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(!logs.contains("shutdown timeout reached"), "{logs}");

    let acknowledged = acknowledged.lock().unwrap().clone();
    let written: BTreeSet<String> = written_ids(&c).into_iter().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !written.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost (e.g. {:?}); {} refused requests",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)],
        refused.load(Ordering::Relaxed)
    );
    assert!(acknowledged.len() >= before_signal);
    // Nothing appears that was never sent.
    assert!(
        written
            .iter()
            .all(|id| id.starts_with('t') && id.contains("-r")),
        "unexpected records in the output"
    );
}

/// Sends the headers of a POST with `Expect: 100-continue` and waits for the server's
/// `100 Continue`, which it sends once the handler starts reading the body: from then on
/// the request is in flight.
fn start_request(port: u16, body_len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v1/logs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "\r\n");
    stream
}

#[test]
fn health_answers_503_while_draining_and_in_flight_requests_complete() {
    let mut c = Collector::start(&config("60s"), &[]);
    assert_eq!(http_get(c.health, "/").unwrap().0, 200);
    let body = logs_request(&["in-flight".to_string()]);
    let mut stream = start_request(c.http, body.len());
    // Half the body now; the rest only after health was seen draining.
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(first).unwrap();

    common::signal(c.pid(), "TERM");
    let mut last = None;
    let draining = wait_for(Duration::from_secs(30), || {
        last = http_get(c.health, "/");
        last.as_ref().is_some_and(|(status, _)| *status == 503)
    });
    assert!(
        draining,
        "health never said draining: {last:?}\n{}",
        c.logs()
    );
    let (_, text) = last.unwrap();
    assert!(text.contains("draining"), "{text}");
    // Still draining: the request in flight holds the receiver open.
    assert_eq!(http_get(c.health, "/").unwrap().0, 503);

    // The request in flight completes and its data is kept.
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let status = c.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}; log:\n{}", c.logs());
    assert_eq!(written_ids(&c), ["in-flight"]);
}
