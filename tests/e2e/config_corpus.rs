//! Configs written the way published OpenTelemetry Collector configs are (tests/configs/):
//! each must validate with no problem, then run for real with traffic: every port it uses is
//! moved to a free one, an OTLP request of each signal its OTLP/HTTP receiver takes is
//! answered 200, and SIGTERM ends it cleanly.
//!
//! A file may say what `validate` must warn about with lines `# expect-warning: <key path>`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The text with every port number (`:4317`, `:8888`, ...) moved to a free one, the same
/// number always to the same port; the map from old to new.
fn with_free_ports(text: &str) -> (String, BTreeMap<u16, u16>) {
    let mut ports = BTreeMap::new();
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' {
            let digits: usize = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let after = bytes.get(i + 1 + digits).copied();
            let ends = after.is_none_or(|b| !b.is_ascii_alphanumeric() && b != b'.');
            if (4..=5).contains(&digits) && ends {
                let old: u16 = text[i + 1..i + 1 + digits].parse().unwrap_or(0);
                if old >= 1024 {
                    let new = *ports.entry(old).or_insert_with(common::free_port);
                    out.push(':');
                    out.push_str(&new.to_string());
                    i += 1 + digits;
                    continue;
                }
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    (out, ports)
}

fn sluice(args: &[&str], config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args(args).arg("--config").arg(config);
    c
}

fn post(port: u16, path: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

const REQUESTS: [(&str, &str); 3] = [
    (
        "/v1/traces",
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"corpus"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"op","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#,
    ),
    (
        "/v1/metrics",
        r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"corpus"}}]},"scopeMetrics":[{"metrics":[{"name":"corpus.requests","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"1","timeUnixNano":"1700000000000000000"}]}}]}]}]}"#,
    ),
    (
        "/v1/logs",
        r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"corpus"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","severityNumber":9,"body":{"stringValue":"corpus"}}]}]}]}"#,
    ),
];

#[test]
fn every_corpus_config_validates_and_runs_with_traffic() {
    let files = corpus();
    assert!(!files.is_empty(), "no configs in tests/configs");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let original = std::fs::read_to_string(file).unwrap();
        let (text, ports) = with_free_ports(&original);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(&name);
        std::fs::write(&config, &text).unwrap();

        let validate = sluice(&["validate"], &config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&validate.stderr).into_owned();
        if !validate.status.success() {
            failures.push(format!("{name}: does not validate:\n{stderr}"));
            continue;
        }
        for line in original.lines() {
            if let Some(key) = line.trim().strip_prefix("# expect-warning:") {
                let key = key.trim();
                if !stderr
                    .lines()
                    .any(|l| l.starts_with("warning:") && l.contains(key))
                {
                    failures.push(format!("{name}: no warning about `{key}`:\n{stderr}"));
                }
            }
        }

        let log = dir.path().join("sluice.log");
        // Backends in these configs do not exist here: what is queued for them at the end is
        // given up after a short shutdown timeout instead of the default 30 s.
        let mut child = sluice(&["run", "--set", "service.shutdown_timeout=2s"], &config)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let logs = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !logs().contains("sluice is ready") {
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !logs().contains("sluice is ready") {
            let _ = child.kill();
            failures.push(format!("{name}: did not start:\n{}", logs()));
            continue;
        }
        // Traffic to the OTLP/HTTP receiver on the standard port, when the config has one.
        if let Some(&http) = ports.get(&4318) {
            for (path, body) in REQUESTS {
                if !original.contains(&format!("{}:", &path[4..])) {
                    // Only signals some pipeline takes (`traces:`, `metrics:`, `logs:`).
                    continue;
                }
                match post(http, path, body) {
                    Some(200) => {}
                    other => failures.push(format!(
                        "{name}: POST {path} answered {other:?}:\n{}",
                        logs()
                    )),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        common::signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.is_some_and(|s| s.success()) {
            failures.push(format!("{name}: stopped with {status:?}:\n{}", logs()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn ports_are_moved_consistently() {
    let (text, ports) = with_free_ports(
        "a: 0.0.0.0:4317\nb: localhost:4317\nc: \":8888\"\nd: http://x:4318/v1\ne: 10:30\nf: 1.2.3:12345x\n",
    );
    let grpc = ports[&4317];
    assert!(text.contains(&format!("a: 0.0.0.0:{grpc}\nb: localhost:{grpc}")));
    assert!(text.contains(&format!("c: \":{}\"", ports[&8888])));
    assert!(text.contains(&format!("d: http://x:{}/v1", ports[&4318])));
    assert!(text.contains("e: 10:30\n"));
    assert!(text.contains("12345x"));
}
