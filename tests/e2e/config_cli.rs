//! The command line and configuration, through the real binary: `validate`, `print-config`,
//! `components`, env expansion, merging, `--set`, listen-address problems, the embedded
//! default, and the `forward` connector.

use crate::common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Collector, free_port, json_lines};

fn sluice() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.env_remove("RUST_LOG");
    cmd
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// Writes `text` to `name` in `dir` and returns its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn client() -> reqwest::blocking::Client {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn post_json(port: u16, path: &str, body: &str) -> reqwest::Result<u16> {
    client()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map(|r| r.status().as_u16())
}

fn log_json(body: &str) -> String {
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
    )
}

/// Polls `condition` every 20 ms until it holds or `within` passes.
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

const GOOD: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
exporters:
  file/out:
    path: out.jsonl
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/out, debug]
"#;

#[test]
fn validate_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "good.yaml", GOOD);
    let r = run(sluice().arg("validate").arg("--config").arg(&path));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "configuration is valid");
}

/// Line numbers matter: the test asserts them.
const BROKEN: &str = "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
  otlpp:
processors:
  batch:
    timeoutt: 1s
exporters:
  file/out:
    path: out.jsonl
    flush_intervall: 1s
connectors:
  forward:
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/missing]
      processors: [batch]
      exporters: [file/out, forward]
    logs:
      receivers: [otlp, forward]
      exporters: []
extension:
  health_check:
";

#[test]
fn validate_reports_every_problem_with_file_line_column_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "broken.yaml", BROKEN);
    let r = run(sluice().arg("validate").arg("--config").arg(&path));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let file = path.display().to_string();
    let reported: BTreeSet<String> = r
        .stderr
        .lines()
        .skip(1)
        .map(|l| l.trim().replace(&file, "F"))
        .collect();
    let expected: BTreeSet<String> = [
        // Unknown top-level key.
        "F:25:1: extension: unknown key `extension` (did you mean `extensions`?)",
        // A pipeline naming an undefined receiver.
        "F:19:25: service.pipelines.traces.receivers[1]: receiver `otlp/missing` is not defined (did you mean `otlp`?)",
        // A pipeline with no exporters.
        "F:22:5: service.pipelines.logs: pipeline `logs` has no exporters",
        // An unknown component type, with the known ones and a suggestion.
        "F:6:3: receivers.otlpp: unknown receiver type `otlpp`; known receiver types: cgroups, docker_stats, filelog, hostmetrics, kafka, lambda, nop, otlp, prometheus, syslog, tcplog, udplog (did you mean `otlp`?)",
        // Signals a component cannot join (no processor lacks a signal today; the
        // forward connector cannot turn traces into logs).
        "F:21:29: service.pipelines.traces.exporters[1]: connector `forward` cannot take traces into any signal it feeds (logs)",
        "F:23:25: service.pipelines.logs.receivers[1]: connector `forward` cannot produce logs from what it is given",
        // Misspelt keys inside components' own sections.
        "F:13:5: exporters.file/out.flush_intervall: unknown key `flush_intervall` (did you mean `flush_interval`?)",
        "F:9:5: processors.batch.timeoutt: unknown key `timeoutt` (did you mean `timeout`?)",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(reported, expected, "stderr:\n{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("invalid configuration (8 problems):\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn validate_reports_a_listen_address_already_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = GOOD.replace(
        "      http:\n        endpoint: 127.0.0.1:0",
        &format!("      http:\n        endpoint: 127.0.0.1:{port}"),
    );
    assert_ne!(config, GOOD);
    let path = write(dir.path(), "taken.yaml", &config);
    let r = run(sluice().arg("validate").arg("--config").arg(&path));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let expected = format!(
        "{}:3:3: receivers.otlp: cannot listen on 127.0.0.1:{port}: ",
        path.display()
    );
    assert!(r.stderr.contains(&expected), "{}", r.stderr);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);
    // Once the address is free again the same config is valid.
    drop(taken);
    let r = run(sluice().arg("validate").arg("--config").arg(&path));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn environment_references_are_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "env.yaml",
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:SLUICE_TEST_HOST}:${SLUICE_TEST_PORT}
exporters:
  file/out:
    path: ${env:SLUICE_TEST_UNSET_DIR:-/var/tmp/default}/out.jsonl
    format: ${env:SLUICE_TEST_FORMAT:-json}
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file/out]
",
    );
    let r = run(sluice()
        .arg("print-config")
        .arg("--config")
        .arg(&path)
        .env("SLUICE_TEST_HOST", "127.0.0.9")
        .env("SLUICE_TEST_PORT", "4999")
        .env("SLUICE_TEST_FORMAT", "proto")
        .env_remove("SLUICE_TEST_UNSET_DIR"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.9:4999
exporters:
  file/out:
    path: /var/tmp/default/out.jsonl
    format: proto
service:
  pipelines:
    logs:
      receivers:
        - otlp
      exporters:
        - file/out
"
    );
}

#[test]
fn dollar_dollar_is_a_literal_dollar() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "dollar.yaml",
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:$${SLUICE_TEST_PORT}"
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
"#,
    );
    // The set variable is not substituted: `$${...}` is the text `${...}`, which the receiver
    // then fails to use as a port.
    let r = run(sluice()
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .env("SLUICE_TEST_PORT", "4999"));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("receivers.otlp: cannot listen on 127.0.0.1:${SLUICE_TEST_PORT}:"),
        "{}",
        r.stderr
    );
    // print-config shows it escaped again, so its output loads back to the same value.
    let r = run(sluice()
        .arg("print-config")
        .arg("--config")
        .arg(&path)
        .env("SLUICE_TEST_PORT", "4999"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("endpoint: 127.0.0.1:$${SLUICE_TEST_PORT}\n"),
        "{}",
        r.stdout
    );
    let printed = write(dir.path(), "printed.yaml", &r.stdout);
    let again = run(sluice()
        .arg("print-config")
        .arg("--config")
        .arg(&printed)
        .env("SLUICE_TEST_PORT", "4999"));
    assert_eq!(again.stdout, r.stdout);
}

#[test]
fn an_unset_variable_without_default_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "unset.yaml",
        "exporters:
  file/out:
    path: /tmp/x
    format: ${env:SLUICE_TEST_SURELY_UNSET}
",
    );
    for command in ["print-config", "validate"] {
        let r = run(sluice()
            .arg(command)
            .arg("--config")
            .arg(&path)
            .env_remove("SLUICE_TEST_SURELY_UNSET"));
        assert_eq!(r.code, Some(1), "{command}: {}", r.stderr);
        let expected = format!(
            "{}:4:13: exporters.file/out.format: environment variable `SLUICE_TEST_SURELY_UNSET` is not set",
            path.display()
        );
        assert!(r.stderr.contains(&expected), "{command}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{command}: {}", r.stdout);
    }
}

#[test]
fn config_files_merge_in_order_and_set_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "base.yaml",
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
      http:
        endpoint: 127.0.0.1:4318
processors:
  batch:
    timeout: 1s
    send_batch_size: 100
exporters:
  file/out:
    path: /tmp/base.jsonl
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/out, debug]
",
    );
    let overlay = write(
        dir.path(),
        "overlay.yaml",
        "processors:
  batch:
    timeout: 5s
exporters:
  file/out:
    format: proto
service:
  pipelines:
    traces:
      exporters: [file/out]
",
    );
    let r = run(sluice()
        .arg("print-config")
        .arg("--config")
        .arg(&base)
        .arg("--config")
        .arg(&overlay)
        .args(["--set", "processors.batch.send_batch_size=7"])
        .args([
            "--set",
            "receivers.otlp.protocols.http.endpoint=127.0.0.1:9999",
        ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Maps deep-merge (grpc, path and receivers survive), the later file wins (timeout,
    // format), lists are replaced (exporters), --set wins over both.
    assert_eq!(
        r.stdout,
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
      http:
        endpoint: 127.0.0.1:9999
processors:
  batch:
    timeout: 5s
    send_batch_size: 7
exporters:
  file/out:
    path: /tmp/base.jsonl
    format: proto
  debug:
service:
  pipelines:
    traces:
      receivers:
        - otlp
      processors:
        - batch
      exporters:
        - file/out
"
    );
    // The merged result is what validate checks: the overlay alone lacks a receiver.
    let r = run(sluice().arg("validate").arg("--config").arg(&overlay));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("has no receivers"), "{}", r.stderr);
    let r = run(sluice()
        .arg("validate")
        .arg("--config")
        .arg(&base)
        .arg("--config")
        .arg(&overlay)
        .args([
            "--set",
            "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:0",
        ])
        .args([
            "--set",
            "receivers.otlp.protocols.http.endpoint=127.0.0.1:0",
        ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn components_lists_types_signals_and_aliases() {
    let r = run(sluice().arg("components"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let row = |kind: &str, type_name: &str| -> Vec<String> {
        r.stdout
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .find(|w| w.len() > 2 && w[0] == kind && w[1] == type_name)
            .unwrap_or_else(|| panic!("no {kind} {type_name} in\n{}", r.stdout))
    };
    let all = ["traces,", "metrics,", "logs"];
    for (kind, type_name) in [
        ("receiver", "otlp"),
        ("processor", "batch"),
        ("exporter", "file"),
    ] {
        let w = row(kind, type_name);
        assert_eq!(w[2], "-", "{kind} {type_name} has no aliases: {w:?}");
        assert_eq!(w[3..6], all, "{w:?}");
    }
    let debug = row("exporter", "debug");
    assert_eq!(debug[2], "logging", "{debug:?}");
    assert_eq!(debug[3..6], all, "{debug:?}");
    let forward = row("connector", "forward");
    assert_eq!(
        forward[3..6],
        ["traces->traces,", "metrics->metrics,", "logs->logs"],
        "{forward:?}"
    );
    // The alias works in a config.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "alias.yaml",
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  logging:
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [logging]
",
    );
    let r = run(sluice().arg("validate").arg("--config").arg(&path));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// A config whose self-telemetry addresses are `metrics` / `health` as given (None: default).
fn telemetry_config(metrics: Option<&str>, health: Option<&str>) -> String {
    let mut text = String::from(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    flush_interval: 0s
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file/out]
"#,
    );
    if let Some(m) = metrics {
        text.push_str(&format!(
            "  telemetry:\n    metrics:\n      address: \"{m}\"\n"
        ));
    }
    if let Some(h) = health {
        text.push_str(&format!(
            "  extensions: [health_check]\nextensions:\n  health_check:\n    endpoint: \"{h}\"\n"
        ));
    }
    text
}

#[test]
fn a_configured_self_telemetry_address_in_use_stops_the_collector() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for (what, config) in [
        (
            "metrics",
            telemetry_config(Some(&address), Some("@HEALTH@")),
        ),
        (
            "health",
            telemetry_config(Some("@METRICS@"), Some(&address)),
        ),
    ] {
        let mut c = Collector::spawn(&config, &[]);
        let status = c.wait_exit(Duration::from_secs(60));
        let logs = c.logs();
        assert!(!status.success(), "{what}: {logs}");
        assert!(
            status.code().is_some(),
            "{what}: killed by a signal: {logs}"
        );
        assert!(logs.contains(&address), "{what}: {logs}");
        assert!(logs.contains("cannot start"), "{what}: {logs}");
    }
}

/// The default self-telemetry ports are machine-wide: tests that use them take turns.
static DEFAULT_PORTS: Mutex<()> = Mutex::new(());

/// Binds every address `host_port` resolves to; None if one of them is already in use
/// (another process holds it and this test cannot take it).
fn hold(host_port: &str) -> Option<Vec<TcpListener>> {
    let addresses: Vec<SocketAddr> = host_port.to_socket_addrs().unwrap().collect();
    let mut held = Vec::new();
    for a in addresses {
        match TcpListener::bind(a) {
            Ok(l) => held.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return None,
            // e.g. no IPv6 on this machine: the collector cannot bind it either.
            Err(_) => {}
        }
    }
    (!held.is_empty()).then_some(held)
}

#[test]
fn default_self_telemetry_addresses_in_use_only_warn() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(_metrics), Some(_health)) = (hold("localhost:8888"), hold("localhost:13133")) else {
        eprintln!("skipped: another process holds localhost:8888 or localhost:13133");
        return;
    };
    let mut c = Collector::spawn(&telemetry_config(None, None), &[]);
    let ready = wait_for(Duration::from_secs(60), || {
        c.logs().contains("sluice is ready")
    });
    assert!(ready, "collector did not start: {}", c.logs());
    let logs = c.logs();
    assert!(
        logs.contains("default metrics address unavailable"),
        "{logs}"
    );
    assert!(
        logs.contains("default health address unavailable"),
        "{logs}"
    );
    // It serves anyway.
    assert_eq!(
        post_json(c.http, "/v1/logs", &log_json("still-up")).unwrap(),
        200
    );
    let lines = json_lines(&c.path("out.jsonl"), 1);
    assert_eq!(
        lines[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
        "still-up"
    );
    assert!(c.stop().success(), "{}", c.logs());
}

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_arguments_runs_the_embedded_default() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let log_path = dir.path().join("sluice.log");
    let child = sluice()
        .current_dir(dir.path())
        .env("SLUICE_OTLP_GRPC_ENDPOINT", format!("127.0.0.1:{grpc}"))
        .env("SLUICE_OTLP_HTTP_ENDPOINT", format!("127.0.0.1:{http}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Ready once its HTTP port answers.
    let mut status = None;
    let answered = wait_for(Duration::from_secs(60), || {
        status = post_json(http, "/v1/logs", &log_json("from-default")).ok();
        status.is_some()
    });
    assert!(answered, "default config never listened: {}", logs());
    assert_eq!(status, Some(200), "{}", logs());
    // gRPC is up too.
    assert!(std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok());

    let out = dir.path().join("sluice-data").join("logs.jsonl");
    let lines = json_lines(&out, 1);
    assert_eq!(lines.len(), 1, "{}", logs());
    assert_eq!(
        lines[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
        "from-default"
    );

    common::signal(child.0.id(), "TERM");
    let mut exit = None;
    assert!(
        wait_for(Duration::from_secs(60), || {
            exit = child.0.try_wait().unwrap();
            exit.is_some()
        }),
        "no exit after SIGTERM: {}",
        logs()
    );
    assert!(exit.unwrap().success(), "{}", logs());
}

#[test]
fn forward_connector_delivers_every_span_to_each_pipeline_it_feeds() {
    let mut c = Collector::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  batch:
    timeout: 50ms
exporters:
  file/a:
    path: "@DIR@/a.jsonl"
    flush_interval: 0s
  file/b:
    path: "@DIR@/b.jsonl"
    flush_interval: 0s
connectors:
  forward:
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [forward]
    traces/a:
      receivers: [forward]
      exporters: [file/a]
    traces/b:
      receivers: [forward]
      processors: [batch]
      exporters: [file/b]
"#,
        &[],
    );
    let mut sent = BTreeSet::new();
    for request in 0..5 {
        let spans: Vec<String> = (0..4)
            .map(|i| {
                let name = format!("r{request}-s{i}");
                let span = format!(
                    r#"{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"{:016x}","name":"{name}"}}"#,
                    request * 4 + i + 1
                );
                sent.insert(name);
                span
            })
            .collect();
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        );
        assert_eq!(post_json(c.http, "/v1/traces", &body).unwrap(), 200);
    }
    let names_in = |file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(c.path(file)).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut names = Vec::new();
                for r in v["resourceSpans"].as_array().unwrap() {
                    for s in r["scopeSpans"].as_array().unwrap() {
                        for span in s["spans"].as_array().unwrap() {
                            names.push(span["name"].as_str().unwrap().to_string());
                        }
                    }
                }
                names
            })
            .collect()
    };
    for file in ["a.jsonl", "b.jsonl"] {
        let mut names = Vec::new();
        wait_for(Duration::from_secs(30), || {
            names = names_in(file);
            names.len() >= sent.len()
        });
        names.sort();
        let expected: Vec<String> = sent.iter().cloned().collect();
        assert_eq!(names, expected, "{file}");
    }
    let metrics = c.metrics_text();
    assert!(
        metrics.contains(
            "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"} 20"
        ),
        "{metrics}"
    );
    assert!(c.stop().success());
}
