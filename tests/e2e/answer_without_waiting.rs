//! A request's answer does not wait for a batch timer: held in a batch in front of memory
//! queues, data is answered at once (and lost on a crash exactly as a memory queue's is);
//! in front of a persistent queue, it is answered once it is in the log (and survives
//! `kill -9`). Real SDK clients with their default batch processors, which export one request
//! at a time, then lose nothing at a rate where waiting for the timer made them drop most.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp_sink::OtlpSink;
use common::{Collector, free_port, free_ports};
use serde_json::Value;

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
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

fn post_logs(port: u16, ids: &[String]) -> u16 {
    client()
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .header("Content-Type", "application/json")
        .body(logs_request(ids))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// OTLP/HTTP in, a `batch` processor that holds data for a minute, and an `otlp_http`
/// exporter to `backend` with `queue` (extra `sending_queue` lines) and `extensions`.
fn config(backend: u16, queue: &str, extensions: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  batch:
    timeout: 60s
extensions:
  health_check:
    endpoint: "@HEALTH@"
{extensions}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{backend}"
    compression: none
    timeout: 2s
    sending_queue:
      num_consumers: 2
{queue}
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
      max_elapsed_time: 0s
service:
  extensions: [health_check{storage}]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_http]
"#,
        storage = if extensions.is_empty() {
            ""
        } else {
            ", file_storage/queue"
        }
    )
}

fn ids(prefix: &str, request: usize, per_request: usize) -> Vec<String> {
    (0..per_request)
        .map(|i| format!("{prefix}-{request}-{i}"))
        .collect()
}

#[test]
fn an_answer_does_not_wait_for_the_batch_timeout_and_a_crash_loses_it_like_a_memory_queue() {
    let backend = free_port();
    let sink = OtlpSink::start_on(backend);
    let mut c = Collector::start(&config(backend, "", ""), &[]);

    for request in 0..5 {
        let started = Instant::now();
        assert_eq!(post_logs(c.http, &ids("mem", request, 10)), 200);
        // Behaviour, not timing: the batch still holds the data (its timer has 60 s to go)
        // when the answer arrives, so the answer did not wait for it.
        assert!(sink.bodies().is_empty(), "the batch was flushed early");
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    assert_eq!(
        common::metric_sample(
            &c.metrics_text(),
            "otelcol_receiver_accepted_log_records_total{receiver=\"otlp\",transport=\"http\"}"
        ),
        Some(50)
    );

    // A crash loses what a memory buffer held, as the README says of memory queues.
    common::signal(c.pid(), "KILL");
    let _ = c.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.bodies().is_empty());
}

#[test]
fn a_batch_in_front_of_a_persistent_queue_answers_from_the_log_and_kill_9_loses_nothing() {
    let queue_dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "  file_storage/queue:\n    directory: \"{}\"\n    fsync: always\n",
        queue_dir.path().display()
    );
    let queue = "      storage: file_storage/queue\n";
    // The backend is down while the data comes in.
    let backend = free_port();
    let mut c = Collector::start(&config(backend, queue, &storage), &[]);
    let mut sent = Vec::new();
    for request in 0..20 {
        let batch = ids("disk", request, 10);
        assert_eq!(post_logs(c.http, &batch), 200, "{}", c.logs());
        sent.extend(batch);
    }
    common::signal(c.pid(), "KILL");
    let _ = c.wait_exit(Duration::from_secs(10));

    // Back with the backend up: every acknowledged record arrives.
    let sink = OtlpSink::start_on(backend);
    let _c = Collector::start(&config(backend, queue, &storage), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.bodies().len() < sent.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut got = sink.bodies();
    got.sort();
    got.dedup();
    let lost: Vec<&String> = sent
        .iter()
        .filter(|id| got.binary_search(id).is_err())
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        sent.len()
    );
}

/// Several persisted requests are merged into one send when the queue is read: the records
/// reach the backend in fewer requests than they were written in.
#[test]
fn records_waiting_in_a_persistent_queue_are_sent_merged() {
    let queue_dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "  file_storage/queue:\n    directory: \"{}\"\n",
        queue_dir.path().display()
    );
    let queue = "      storage: file_storage/queue\n";
    let backend = free_port();
    let mut c = Collector::start(&config(backend, queue, &storage), &[]);
    for request in 0..30 {
        assert_eq!(post_logs(c.http, &ids("merge", request, 5)), 200);
    }
    assert!(c.stop().success(), "{}", c.logs());
    let sink = OtlpSink::start_on(backend);
    let _c = Collector::start(&config(backend, queue, &storage), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.bodies().len() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sink.bodies().len(), 150);
    assert!(
        sink.requests() < 30,
        "{} requests for 30 records",
        sink.requests()
    );
}

/// `sending_queue.batch`: batching after a memory queue; the answer comes at once, the
/// backend gets merged batches when `min_size` is reached, and the rest after `flush_timeout`.
#[test]
fn exporter_side_batching_merges_after_the_queue() {
    let backend = free_port();
    let sink = OtlpSink::start_on(backend);
    let queue =
        "      batch:\n        flush_timeout: 300ms\n        min_size: 40\n        sizer: items\n";
    let template = config(backend, queue, "").replace("      processors: [batch]\n", "");
    let c = Collector::start(&template, &[]);
    for request in 0..10 {
        assert_eq!(post_logs(c.http, &ids("eb", request, 10)), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.bodies().len() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.bodies().len(), 100);
    assert!(sink.requests() <= 4, "{} requests", sink.requests());
}

// ---------------------------------------------------------------------------------------------
// Real SDKs through the embedded default config.

/// The embedded default config, its OTLP ports moved to free ones, in a fresh directory.
struct DefaultCollector {
    child: std::process::Child,
    dir: tempfile::TempDir,
    grpc: u16,
    http: u16,
}

impl DefaultCollector {
    fn start() -> DefaultCollector {
        let dir = tempfile::tempdir().unwrap();
        let [grpc, http] = free_ports::<2>();
        let log = std::fs::File::create(dir.path().join("sluice.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(dir.path())
            .env("SLUICE_OTLP_GRPC_ENDPOINT", format!("127.0.0.1:{grpc}"))
            .env("SLUICE_OTLP_HTTP_ENDPOINT", format!("127.0.0.1:{http}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = DefaultCollector {
            child,
            dir,
            grpc,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", c.http)).is_err() {
            assert!(Instant::now() < deadline, "not ready: {}", c.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        while std::net::TcpStream::connect(("127.0.0.1", c.grpc)).is_err() {
            assert!(Instant::now() < deadline, "not ready: {}", c.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sluice.log")).unwrap_or_default()
    }

    fn output(&self, signal: &str) -> Vec<Value> {
        let path = self
            .dir
            .path()
            .join("sluice-data")
            .join(format!("{signal}.jsonl"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for DefaultCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_run(resource: &Value, run: &str) -> bool {
    resource["resource"]["attributes"]
        .as_array()
        .is_some_and(|attrs| {
            attrs.iter().any(|a| {
                a["key"] == "sluice.test.run" && a["value"]["stringValue"].as_str() == Some(run)
            })
        })
}

/// Spans and log records of run `run` in the default config's output.
fn count_items(c: &DefaultCollector, signal: &str, run: &str) -> usize {
    let (resources, scopes, items) = match signal {
        "traces" => ("resourceSpans", "scopeSpans", "spans"),
        _ => ("resourceLogs", "scopeLogs", "logRecords"),
    };
    c.output(signal)
        .iter()
        .flat_map(|line| line[resources].as_array().cloned().unwrap_or_default())
        .filter(|r| has_run(r, run))
        .flat_map(|r| r[scopes].as_array().cloned().unwrap_or_default())
        .map(|s| s[items].as_array().map_or(0, Vec::len))
        .sum()
}

/// The largest value the cumulative counter `name` of run `run` reached.
fn counter_total(c: &DefaultCollector, name: &str, run: &str) -> f64 {
    let mut best = 0.0f64;
    for line in c.output("metrics") {
        for r in line["resourceMetrics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if !has_run(&r, run) {
                continue;
            }
            for s in r["scopeMetrics"].as_array().cloned().unwrap_or_default() {
                for m in s["metrics"].as_array().cloned().unwrap_or_default() {
                    if m["name"] != name {
                        continue;
                    }
                    for p in m["sum"]["dataPoints"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        let v = p["asInt"]
                            .as_str()
                            .and_then(|v| v.parse::<f64>().ok())
                            .or_else(|| p["asInt"].as_f64())
                            .or_else(|| p["asDouble"].as_f64())
                            .unwrap_or(0.0);
                        best = best.max(v);
                    }
                }
            }
        }
    }
    best
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// Checks that every span, log record and counter increment of `run` arrived.
fn assert_everything_arrived(c: &DefaultCollector, run: &str, created: usize) {
    let all = || {
        count_items(c, "traces", run) >= created
            && count_items(c, "logs", run) >= created
            && counter_total(c, "sdk_load_increments", run) >= created as f64
    };
    wait_until(Duration::from_secs(30), all);
    let spans = count_items(c, "traces", run);
    let logs = count_items(c, "logs", run);
    let total = counter_total(c, "sdk_load_increments", run);
    assert_eq!(
        (spans, logs, total as usize),
        (created, created, created),
        "spans, log records and counter total that arrived of {created} created; log:\n{}",
        c.logs()
    );
}

/// The SDK clients take turns: an application starved of CPU by another test's drops data
/// whatever the collector does.
static SDK_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn python_sdk_run(protocol: &str) {
    let _turn = SDK_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let c = DefaultCollector::start();
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", c.grpc),
        _ => format!("http://127.0.0.1:{}", c.http),
    };
    let run = format!("python-{protocol}-{}", std::process::id());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_sdk_load.py"
    );
    // 5,000 of each per second: twice what one export at a time can carry when each export
    // waits 200 ms (512 items per export).
    let output = Command::new("python3")
        .args([script, protocol, &endpoint, "5000", "4", &run])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK client failed (is the OpenTelemetry Python SDK installed? scripts/test.sh \
         installs it): {stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let created = report["created"].as_u64().unwrap() as usize;
    assert_eq!(created, 20_000);
    assert!(
        !stderr.contains("dropping") && !stderr.contains("Queue is full"),
        "the SDK dropped data: {stderr}"
    );
    assert_everything_arrived(&c, &run, created);
}

#[test]
fn python_sdk_over_grpc_through_the_default_config_loses_nothing() {
    python_sdk_run("grpc");
}

#[test]
fn python_sdk_over_http_through_the_default_config_loses_nothing() {
    python_sdk_run("http");
}

/// The Rust SDK (`opentelemetry-otlp` over gRPC) with its default batch processors.
#[test]
fn rust_sdk_through_the_default_config_loses_nothing() {
    use opentelemetry::KeyValue;
    use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::logs::SdkLoggerProvider;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let _turn = SDK_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let c = DefaultCollector::start();
    let endpoint = format!("http://127.0.0.1:{}", c.grpc);
    let run = format!("rust-{}", std::process::id());
    let resource = Resource::builder_empty()
        .with_service_name("sdk-load")
        .with_attribute(KeyValue::new("sluice.test.run", run.clone()))
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .build()
                .unwrap(),
        )
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(
            LogExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .build()
                .unwrap(),
        )
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_periodic_exporter(
            MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .build()
                .unwrap(),
        )
        .build();
    let tracer = tracer_provider.tracer("sdk-load");
    let logger = logger_provider.logger("sdk-load");
    let counter = meter_provider
        .meter("sdk-load")
        .u64_counter("sdk_load_increments")
        .build();

    // 5,000 of each per second for 4 s, paced: twice what one export at a time carries when
    // each waits 200 ms.
    let rate = 5_000.0;
    let created = 20_000usize;
    let started = Instant::now();
    for i in 0..created {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tracer.in_span(format!("op-{i}"), |_| {});
        let mut record = logger.create_log_record();
        record.set_body(format!("event {i}").into());
        logger.emit(record);
        counter.add(1, &[]);
    }
    tracer_provider.shutdown().unwrap();
    logger_provider.shutdown().unwrap();
    meter_provider.shutdown().unwrap();
    assert_everything_arrived(&c, &run, created);
}
