//! Faults an attack run found, each reproduced against the real binary: a closed stderr, a
//! reader of stdout that goes away, stray signals, hostile config files, and data lost at a
//! shutdown deadline, which must be counted.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp_sink::OtlpSink;
use common::{free_port, free_ports, render, signal};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn post_logs(port: u16, ids: &[String]) -> u16 {
    let records: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"body":{{"stringValue":"{id}"}}}}"#))
        .collect();
    let body = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    );
    client()
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// OTLP/HTTP in, an `otlp_http` exporter with a memory queue to `backend`, retrying fast.
fn config(backend: u16, shutdown_timeout: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
extensions:
  health_check:
    endpoint: "@HEALTH@"
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{backend}"
    compression: none
    timeout: 1s
    retry_on_failure:
      initial_interval: 20ms
      max_interval: 100ms
      max_elapsed_time: 0s
service:
  shutdown_timeout: {shutdown_timeout}
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs:
      receivers: [otlp]
      processors: []
      exporters: [otlp_http]
"#
    )
}

struct Running {
    child: std::process::Child,
    http: u16,
    health: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the collector with `stderr` as given, and waits until its health endpoint answers.
fn start(template: &str, stderr: Stdio) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let [grpc, http, metrics, health] = free_ports::<4>();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        render(template, grpc, http, metrics, health, dir.path()),
    )
    .unwrap();
    let child = sluice()
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let running = Running {
        child,
        http,
        health,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::http_get(running.health, "/").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "collector did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(sink: &OtlpSink, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.bodies().len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut got = sink.bodies();
    got.sort();
    got
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// A log shipper that died leaves stderr a closed pipe: every warning then fails to write.
/// Logging must never cost data: queued items are delivered once the backend is back, new
/// requests are served, and SIGTERM exits cleanly.
#[test]
fn a_closed_stderr_loses_nothing_and_keeps_serving() {
    let backend = free_port();
    let mut c = start(&config(backend, "10s"), Stdio::piped());
    // The reader goes away: the next log line meets EPIPE.
    drop(c.child.stderr.take());
    let mut sent = Vec::new();
    for round in 0..10 {
        let batch = ids(&format!("closed-{round}"), 25);
        // The backend is down: the exporter logs a warning per failed attempt.
        assert_eq!(post_logs(c.http, &batch), 200);
        sent.extend(batch);
    }
    std::thread::sleep(Duration::from_millis(500));
    let sink = OtlpSink::start_on(backend);
    let after = ids("after", 50);
    assert_eq!(post_logs(c.http, &after), 200);
    sent.extend(after);
    sent.sort();
    assert_eq!(wait_for(&sink, sent.len()), sent);
    signal(c.child.id(), "TERM");
    let status = wait_exit(&mut c.child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

/// `sluice components | head -1`: the reader stops early; sluice must not panic.
#[test]
fn a_reader_that_goes_away_does_not_make_sluice_panic() {
    for args in [&["components"][..], &["print-config"][..]] {
        let mut child = sluice()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let status = wait_exit(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(status.code().is_some(), "{args:?}: killed by a signal");
        assert!(status.code() != Some(101), "{args:?}: {stderr}");
    }
}

/// SIGHUP, SIGUSR1 and SIGUSR2 used to end the process without draining its queues.
#[test]
fn stray_signals_do_not_end_the_process_or_lose_data() {
    let backend = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut c = start(&config(backend, "10s"), Stdio::from(log.reopen().unwrap()));
    let sent = ids("signals", 100);
    assert_eq!(post_logs(c.http, &sent), 200);
    for name in ["HUP", "USR1", "USR2"] {
        signal(c.child.id(), name);
        std::thread::sleep(Duration::from_millis(200));
        assert!(c.child.try_wait().unwrap().is_none(), "SIGHUP... ended it");
    }
    assert_eq!(common::http_get(c.health, "/").map(|(s, _)| s), Some(200));
    let sink = OtlpSink::start_on(backend);
    assert_eq!(wait_for(&sink, sent.len()), sent);
    signal(c.child.id(), "TERM");
    assert!(wait_exit(&mut c.child, Duration::from_secs(30)).success());
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("signal ignored"), "{text}");
}

/// With the backend down, what a memory queue holds at the shutdown deadline is lost: the
/// log says how many items, per exporter, and the send-failed counter has them.
#[test]
fn data_lost_at_the_shutdown_deadline_is_counted() {
    let backend = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut c = start(&config(backend, "1s"), Stdio::from(log.reopen().unwrap()));
    for round in 0..4 {
        assert_eq!(post_logs(c.http, &ids(&format!("lost-{round}"), 30)), 200);
    }
    signal(c.child.id(), "TERM");
    assert!(wait_exit(&mut c.child, Duration::from_secs(30)).success());
    let text = std::fs::read_to_string(log.path()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("it is lost"))
        .unwrap_or_else(|| panic!("no loss reported:\n{text}"));
    assert!(line.contains("lost=120"), "{line}");
    assert!(line.contains("exporter=otlp_http"), "{line}");
    assert!(line.contains("log_records"), "{line}");
}

fn run_config(path: &std::path::Path) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut child = sluice()
        .args(["validate", "--config"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr, started.elapsed())
}

/// `--config /dev/zero` grew to GiBs, a FIFO with no writer hung forever, a huge file took
/// a GiB, and an error echoed a huge value whole.
#[test]
fn hostile_config_files_fail_at_once_with_a_clear_message() {
    let (status, stderr, _) = run_config(std::path::Path::new("/dev/zero"));
    assert!(!status.success());
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (status, stderr, _) = run_config(&fifo);
    assert!(!status.success());
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let huge = dir.path().join("huge.yaml");
    let mut text = String::from("receivers:\n  nop:\n");
    while text.len() < 6 * 1024 * 1024 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&huge, text).unwrap();
    let (status, stderr, _) = run_config(&huge);
    assert!(!status.success());
    assert!(stderr.contains("at most"), "{stderr}");

    let long = dir.path().join("long.yaml");
    let value = "9".repeat(1024 * 1024);
    std::fs::write(
        &long,
        format!(
            "receivers:\n  nop:\nexporters:\n  nop:\nprocessors:\n  batch:\n    timeout: {value}h\nservice:\n  pipelines:\n    logs:\n      receivers: [nop]\n      processors: [batch]\n      exporters: [nop]\n"
        ),
    )
    .unwrap();
    let (status, stderr, _) = run_config(&long);
    assert!(!status.success());
    assert!(stderr.contains("processors.batch.timeout"), "{stderr}");
    assert!(stderr.len() < 4096, "{} bytes of errors", stderr.len());
}
