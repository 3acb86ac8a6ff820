//! Backpressure and the memory limit, with real processes and real clients:
//! - the backend is down for 30+ s behind a small memory queue: clients sending steadily get
//!   429 with Retry-After (HTTP) and RESOURCE_EXHAUSTED with RetryInfo (gRPC) once the queue is
//!   full, and everything they got a success for arrives once the backend (a second sluice)
//!   starts;
//! - 10× overload against a slow backend with `memory_limiter` at 200 MiB and a queue far
//!   larger than that: the collector's resident memory, sampled from /proc every 50 ms, stays
//!   under the limit, clients get retryable refusals, and the collector keeps serving.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Collector, free_port};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use tonic_types::StatusExt;

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    })
}

/// A request with one log record per body.
fn logs(bodies: &[String], padding: usize) -> ExportLogsServiceRequest {
    let pad = "p".repeat(padding);
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        body: text(b),
                        attributes: vec![KeyValue {
                            key: "padding".into(),
                            value: text(&pad),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn http_client() -> reqwest::blocking::Client {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    acked: BTreeSet<String>,
    refused: u64,
    unexpected: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Backend down

const DOWN_CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
exporters:
  otlp_http/backend:
    endpoint: http://127.0.0.1:@BACKEND@
    timeout: 2s
    sending_queue:
      queue_size: 32KiB
    retry_on_failure:
      initial_interval: 200ms
      max_interval: 1s
      max_elapsed_time: 0s
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
      exporters: [otlp_http/backend]
"#;

const BACKEND_CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:@BACKEND@"
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
    logs:
      receivers: [otlp]
      exporters: [file/out]
"#;

/// Log bodies the backend wrote.
fn delivered(backend: &Collector) -> BTreeSet<String> {
    let text = std::fs::read_to_string(backend.path("out.jsonl")).unwrap_or_default();
    let mut bodies = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for r in v["resourceLogs"].as_array().into_iter().flatten() {
            for s in r["scopeLogs"].as_array().into_iter().flatten() {
                for l in s["logRecords"].as_array().into_iter().flatten() {
                    if let Some(b) = l["body"]["stringValue"].as_str() {
                        bodies.insert(b.to_string());
                    }
                }
            }
        }
    }
    bodies
}

fn http_sender(port: u16, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let client = http_client();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let bodies: Vec<String> = (0..10).map(|k| format!("h-{n}-{k}")).collect();
        n += 1;
        let response = client
            .post(format!("http://127.0.0.1:{port}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(logs(&bodies, 100).encode_to_vec())
            .send();
        let mut seen = seen.lock().unwrap();
        match response {
            Ok(r) if r.status() == 200 => seen.acked.extend(bodies),
            Ok(r) if r.status() == 429 && r.headers().contains_key("retry-after") => {
                seen.refused += 1
            }
            Ok(r) => seen.unexpected.push(format!("HTTP {}", r.status())),
            Err(e) => seen.unexpected.push(format!("HTTP error {e}")),
        }
        drop(seen);
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn grpc_sender(port: u16, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let bodies: Vec<String> = (0..10).map(|k| format!("g-{n}-{k}")).collect();
        n += 1;
        let answer = client.export(logs(&bodies, 100)).await;
        {
            let mut seen = seen.lock().unwrap();
            match answer {
                Ok(_) => seen.acked.extend(bodies),
                Err(s)
                    if s.code() == tonic::Code::ResourceExhausted
                        && s.get_details_retry_info().is_some() =>
                {
                    seen.refused += 1
                }
                Err(s) => seen.unexpected.push(format!("gRPC {s:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn backend_down_reaches_clients_as_backpressure_and_loses_nothing_acknowledged() {
    let backend_port = free_port();
    let c = Collector::start(
        &DOWN_CONFIG.replace("@BACKEND@", &backend_port.to_string()),
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let http_seen = Arc::new(Mutex::new(Seen::default()));
    let grpc_seen = Arc::new(Mutex::new(Seen::default()));
    let http = {
        let (stop, seen, port) = (stop.clone(), http_seen.clone(), c.http);
        std::thread::spawn(move || http_sender(port, stop, seen))
    };
    let grpc = {
        let (stop, seen, port) = (stop.clone(), grpc_seen.clone(), c.grpc);
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(grpc_sender(port, stop, seen))
        })
    };
    // The backend stays down for 32 s while both clients keep sending.
    std::thread::sleep(Duration::from_secs(32));
    stop.store(true, Ordering::Relaxed);
    http.join().unwrap();
    grpc.join().unwrap();

    let http_seen = std::mem::take(&mut *http_seen.lock().unwrap());
    let grpc_seen = std::mem::take(&mut *grpc_seen.lock().unwrap());
    for (name, seen) in [("HTTP", &http_seen), ("gRPC", &grpc_seen)] {
        eprintln!(
            "{name}: {} records acknowledged, {} requests refused",
            seen.acked.len(),
            seen.refused
        );
        assert!(
            seen.unexpected.is_empty(),
            "{name}: {:?}\nlog:\n{}",
            seen.unexpected,
            c.logs()
        );
        assert!(!seen.acked.is_empty(), "{name}: nothing was accepted");
        assert!(
            seen.refused > 0,
            "{name}: no refusal while the queue was full"
        );
    }

    let backend = Collector::start(
        &BACKEND_CONFIG.replace("@BACKEND@", &backend_port.to_string()),
        &[],
    );
    let acked: BTreeSet<String> = http_seen.acked.union(&grpc_seen.acked).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = delivered(&backend);
        let missing: Vec<&String> = acked.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged records never arrived, e.g. {:?}\nlog:\n{}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)],
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Overload

const OVERLOAD_CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
processors:
  memory_limiter:
    limit_mib: 200
exporters:
  otlp_http/slow:
    endpoint: http://127.0.0.1:@BACKEND@
    timeout: 30s
    sending_queue:
      # Far more than the memory limit: only the limiter keeps memory down.
      queue_size: 1GiB
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0s
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
      processors: [memory_limiter]
      exporters: [otlp_http/slow]
"#;

const LIMIT_MIB: u64 = 200;

/// An OTLP/HTTP backend that takes its time: every request waits before its 200.
fn slow_backend(delay: Duration) -> (u16, Arc<AtomicU64>, tokio::runtime::Runtime) {
    let received = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let counter = received.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let counter = counter.clone();
        async move {
            tokio::time::sleep(delay).await;
            counter.fetch_add(body.len() as u64, Ordering::Relaxed);
            (
                [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }
    });
    rt.spawn(async move { axum::serve(listener, app).await });
    (port, received, rt)
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    errors: Mutex<Vec<String>>,
}

#[test]
fn overload_keeps_memory_under_the_limit_and_the_collector_serving() {
    let (backend_port, received, _backend) = slow_backend(Duration::from_secs(3));
    let c = Collector::start(
        &OVERLOAD_CONFIG.replace("@BACKEND@", &backend_port.to_string()),
        &[],
    );
    let pid = c.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_rss) = (stop.clone(), max_rss.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    max_rss.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // About 1 MiB per request: 1000 records of ~1 KiB.
    let bodies: Vec<String> = (0..1000).map(|i| format!("load-{i}")).collect();
    let request = logs(&bodies, 1000);
    let encoded = request.encode_to_vec();
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, tally, body, port) = (stop.clone(), tally.clone(), encoded.clone(), c.http);
        clients.push(std::thread::spawn(move || {
            let client = http_client();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(format!("http://127.0.0.1:{port}/v1/logs"))
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send();
                match r {
                    Ok(r) if r.status() == 200 => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status() == 429 || r.status() == 503 => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(r) => tally
                        .errors
                        .lock()
                        .unwrap()
                        .push(format!("HTTP {}", r.status())),
                    Err(e) => tally.errors.lock().unwrap().push(format!("HTTP {e}")),
                }
            }
        }));
    }
    for _ in 0..4 {
        let (stop, tally, request, port) = (stop.clone(), tally.clone(), request.clone(), c.grpc);
        clients.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
                    .await
                    .unwrap()
                    .max_encoding_message_size(64 << 20);
                while !stop.load(Ordering::Relaxed) {
                    match client.export(request.clone()).await {
                        Ok(_) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(s)
                            if s.code() == tonic::Code::ResourceExhausted
                                && s.get_details_retry_info().is_some() =>
                        {
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(s) => tally.errors.lock().unwrap().push(format!("gRPC {s:?}")),
                    }
                }
            });
        }));
    }
    std::thread::sleep(Duration::from_secs(20));
    let load_stop = Instant::now();
    let stop_clients = stop.clone();
    stop_clients.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    sampler.join().unwrap();

    let max_mib = max_rss.load(Ordering::Relaxed) / 1024;
    let ok = tally.ok.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed);
    let errors = tally.errors.lock().unwrap().clone();
    eprintln!(
        "max RSS {max_mib} MiB (limit {LIMIT_MIB}); accepted {ok}, refused {refused}, other {} (e.g. {:?}); backend got {} MiB compressed",
        errors.len(),
        &errors[..errors.len().min(3)],
        received.load(Ordering::Relaxed) >> 20
    );
    assert!(
        max_mib < LIMIT_MIB,
        "resident memory reached {max_mib} MiB\nlog:\n{}",
        c.logs()
    );
    assert!(ok > 0, "nothing accepted; errors: {errors:?}");
    assert!(refused > 0, "no retryable refusal; errors: {errors:?}");
    // Every answer is a success or a retryable refusal: no error status, and no connection
    // closed under a client still sending a refused body.
    assert!(errors.is_empty(), "{errors:?}");
    // The limiter refuses above its soft limit, or through its spike limit, the budget that
    // queued data holds for its decoded form (which usually refuses first now).
    let memory_refusals: f64 = ["memory_limit", "in_flight_budget"]
        .iter()
        .map(|reason| {
            let series = format!("sluice_admission_refused_requests_total{{reason=\"{reason}\"}} ");
            c.metrics_text()
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum();
    assert!(
        memory_refusals > 0.0,
        "the limiter never refused\nmetrics:\n{}\nlog:\n{}",
        c.metrics_text(),
        c.logs()
    );

    // Still serving: health is 200, and once the load is gone a full-size request is
    // accepted (the queue drains and memory goes back down).
    assert_eq!(common::http_get(c.health, "/").map(|(s, _)| s), Some(200));
    let client = http_client();
    let again = encoded.clone();
    loop {
        let status = client
            .post(format!("http://127.0.0.1:{}/v1/logs", c.http))
            .header("content-type", "application/x-protobuf")
            .body(again.clone())
            .send()
            .map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|&s| s == 200) {
            break;
        }
        assert!(
            load_stop.elapsed() < Duration::from_secs(90),
            "still refused long after the load stopped: {status:?}\nlog:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "a full-size request was accepted {:?} after the load stopped",
        load_stop.elapsed()
    );
}
