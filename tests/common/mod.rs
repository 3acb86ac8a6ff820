//! Starts the real `sluice` binary for end-to-end tests and reads what it wrote.
#![allow(dead_code)]

pub mod otlp_sink;
pub mod scripted_http;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Ports nothing listens on right now, all different: each is held until every one is chosen,
/// since a port released at once may be handed out again by the next bind.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running collector with its own ports and data directory. Killed on drop.
pub struct Collector {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub grpc: u16,
    pub http: u16,
    pub metrics: u16,
    pub health: u16,
    log_path: PathBuf,
}

/// Replaces `@GRPC@`, `@HTTP@`, `@METRICS@`, `@HEALTH@` and `@DIR@` in a config template.
pub fn render(
    template: &str,
    grpc: u16,
    http: u16,
    metrics: u16,
    health: u16,
    dir: &Path,
) -> String {
    template
        .replace("@GRPC@", &format!("127.0.0.1:{grpc}"))
        .replace("@HTTP@", &format!("127.0.0.1:{http}"))
        .replace("@METRICS@", &format!("127.0.0.1:{metrics}"))
        .replace("@HEALTH@", &format!("127.0.0.1:{health}"))
        .replace("@DIR@", dir.to_str().unwrap())
}

/// Self-telemetry on the collector's own test ports, appended to configs that don't set it.
pub const TELEMETRY: &str = r#"
extensions:
  health_check:
    endpoint: "@HEALTH@"
"#;

impl Collector {
    /// Writes the config (after `render`) and starts `sluice run --config <it>` plus `extra`
    /// arguments, then waits until the health endpoint answers 200. The config must enable the
    /// `health_check` extension on `@HEALTH@` and set `service.telemetry.metrics.address:
    /// @METRICS@` (see [`with_telemetry`]).
    pub fn start(template: &str, extra: &[&str]) -> Collector {
        Self::start_with_env(template, extra, &[])
    }

    /// Like `start`, with extra environment variables for the collector process.
    ///
    /// A port found free can be taken before the collector binds it (tests run in parallel,
    /// and every outgoing connection takes an ephemeral port from the same range): a collector
    /// that stopped on "Address already in use" is started again on other ports.
    pub fn start_with_env(template: &str, extra: &[&str], envs: &[(&str, &str)]) -> Collector {
        for _ in 0..4 {
            let mut c = Self::spawn_with_env(template, extra, envs);
            if c.wait_ready_or_port_taken() {
                return c;
            }
        }
        panic!("collector could not bind its ports in 4 attempts");
    }

    /// Waits until ready (true), or until the collector exited because one of its ports was
    /// taken (false); panics with the log otherwise.
    fn wait_ready_or_port_taken(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(self.health, "/").map(|(status, _)| status) == Some(200) {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited && self.logs().contains("Address already in use") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("collector did not become ready; log:\n{}", self.logs());
    }

    /// Like `start`, but does not wait for readiness.
    pub fn spawn(template: &str, extra: &[&str]) -> Collector {
        Self::spawn_with_env(template, extra, &[])
    }

    /// Like `spawn`, with extra environment variables for the collector process.
    pub fn spawn_with_env(template: &str, extra: &[&str], envs: &[(&str, &str)]) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let [grpc, http, metrics, health] = free_ports::<4>();
        let config = render(template, grpc, http, metrics, health, dir.path());
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.path().join("sluice.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Collector {
            child: Some(child),
            dir,
            grpc,
            http,
            metrics,
            health,
            log_path,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "collector did not exit after SIGTERM; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own (e.g. after a start error).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("collector did not exit; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The Prometheus text of the metrics endpoint.
    pub fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Polls the metrics endpoint until the sample starting with `prefix` reads `want` (up to
    /// 10 s); returns the last value read.
    pub fn wait_for_metric(&self, prefix: &str, want: u64) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = metric_sample(&self.metrics_text(), prefix);
            if got == Some(want) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value of the first sample in Prometheus `text` whose name and labels start with
/// `prefix`, e.g. `otelcol_exporter_sent_spans_total{exporter="nop"}`.
pub fn metric_sample(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: u32, name: &str) {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

/// A minimal blocking HTTP/1.0 GET: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Every JSON line of a file exporter's output (waits up to 10 s for `min_lines` to appear).
pub fn json_lines(path: &Path, min_lines: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= min_lines || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A standard test config: OTLP in on the test ports, `processors` (may be empty) in every
/// pipeline, a `file/out` exporter (`format` json or proto) to `@DIR@/out.<ext>` with
/// `flush_interval: 0` so tests can read it at once, self-telemetry on the test ports.
pub fn file_pipeline_config(format: &str, processors: &str) -> String {
    let ext = if format == "json" { "jsonl" } else { "pb" };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
processors:
  batch:
    timeout: 50ms
exporters:
  file/out:
    path: "@DIR@/out.{ext}"
    format: {format}
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
      processors: [{processors}]
      exporters: [file/out]
    metrics:
      receivers: [otlp]
      processors: [{processors}]
      exporters: [file/out]
    logs:
      receivers: [otlp]
      processors: [{processors}]
      exporters: [file/out]
"#
    )
}
