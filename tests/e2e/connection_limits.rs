//! Connection floods against the real binary, started with the soft open-file limit most
//! systems give a process (1024). Before the fix, ~1,024 silent TCP connections made every
//! port of the collector (OTLP/HTTP, OTLP/gRPC, health) stop answering, one thread spun in the
//! accept loop and nothing was logged. Here: the collector raises its limit to the hard one,
//! serves normal clients beside 1,100 silent connections per port, closes silent and half-sent
//! connections after `read_header_timeout`, closes connections over `max_connections` at once,
//! and, when it really runs out of file descriptors, waits instead of spinning and says so in a
//! few log lines, not one per connection.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, http_get, metric_sample, render};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

/// The soft limit distributions start processes with.
const USUAL_SOFT_LIMIT: u64 = 1024;

/// More than the usual soft limit, on each port.
const FLOOD: usize = 1100;

/// A collector started with a chosen open-file limit. Killed on drop.
struct Limited {
    child: Child,
    _dir: tempfile::TempDir,
    grpc: u16,
    http: u16,
    metrics: u16,
    health: u16,
    log: PathBuf,
}

impl Limited {
    /// Starts `sluice run` on `template` with RLIMIT_NOFILE `soft` (and `hard`, if given; else
    /// the hard limit this process has), and waits until its health endpoint answers 200.
    fn start(template: &str, soft: u64, hard: Option<u64>) -> Limited {
        for _ in 0..4 {
            let mut c = Limited::spawn(template, soft, hard);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if http_get(c.health, "/").map(|(s, _)| s) == Some(200) {
                    return c;
                }
                if let Ok(Some(_)) = c.child.try_wait() {
                    assert!(
                        c.logs().contains("Address already in use"),
                        "collector exited; log:\n{}",
                        c.logs()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "collector did not become ready; log:\n{}",
                    c.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("collector could not bind its ports in 4 attempts");
    }

    fn spawn(template: &str, soft: u64, hard: Option<u64>) -> Limited {
        let dir = tempfile::tempdir().unwrap();
        let [grpc, http, metrics, health] = free_ports::<4>();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            render(template, grpc, http, metrics, health, dir.path()),
        )
        .unwrap();
        let log = dir.path().join("sluice.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,sluice::open_files=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let hard = hard.unwrap_or_else(|| own_limit().1);
        // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Limited {
            child: command.spawn().unwrap(),
            _dir: dir,
            grpc,
            http,
            metrics,
            health,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (soft, hard) open-file limits of the collector, from /proc/<pid>/limits.
    fn open_file_limits(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    }

    /// User plus system CPU time the collector has used, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// CPU seconds the collector uses over 3 s of wall time.
    fn cpu_seconds_over_3s(&self) -> f64 {
        let before = self.cpu_ticks();
        std::thread::sleep(Duration::from_secs(3));
        let ticks = self.cpu_ticks() - before;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ticks as f64 / per_second as f64
    }

    fn metric(&self, series: &str) -> Option<u64> {
        metric_sample(
            &http_get(self.metrics, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default(),
            series,
        )
    }

    /// Waits (up to 60 s) for a metric series to read `want`.
    fn wait_for_metric(&self, series: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.metric(series) != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{series} is {:?}, not {want}; log:\n{}",
                self.metric(series),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 60 s) for the log to contain `text`.
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.logs().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` in the log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Log records the file exporter wrote so far.
    fn written(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self._dir.path().join("out.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|r| r["body"]["stringValue"].as_str().map(str::to_string))
            .collect()
    }

    /// A normal client is served on each port: an OTLP/HTTP request and an OTLP/gRPC call are
    /// accepted and reach the exporter, and health answers 200.
    fn assert_serving(&self, marker: &str) {
        let http_marker = format!("{marker}-http");
        // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let status = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .post(format!("http://127.0.0.1:{}/v1/logs", self.http))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{http_marker}"}}}}]}}]}}]}}"#
            ))
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "HTTP; log:\n{}", self.logs());
        let grpc_marker = format!("{marker}-grpc");
        let exported = grpc_export(self.grpc, &grpc_marker);
        assert!(
            exported.is_ok(),
            "gRPC: {exported:?}; log:\n{}",
            self.logs()
        );
        assert_eq!(
            http_get(self.health, "/").map(|(s, _)| s),
            Some(200),
            "health; log:\n{}",
            self.logs()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let written = self.written();
            if written.contains(&http_marker) && written.contains(&grpc_marker) {
                break;
            }
            assert!(Instant::now() < deadline, "not written: {written:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's (soft, hard) open-file limits.
fn own_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    (limit.rlim_cur, limit.rlim_max)
}

/// The test opens thousands of sockets itself: raise its own soft limit to the hard one.
fn raise_own_limit() {
    let (_, hard) = own_limit();
    let limit = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    assert!(
        hard > 3 * FLOOD as u64,
        "the hard open-file limit ({hard}) is too low for this test"
    );
}

/// One OTLP/gRPC logs export with a single record `body`, on a fresh connection.
fn grpc_export(port: u16, body: &str) -> Result<(), String> {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.to_string())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let call = async {
            let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .map_err(|e| e.to_string())?;
            client
                .export(request)
                .await
                .map(|_| ())
                .map_err(|s| format!("{s:?}"))
        };
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .unwrap_or_else(|_| Err("no answer within 30 s".into()))
    })
}

/// `count` TCP connections to `port` that send `first` (possibly nothing) and then nothing.
fn silent_connections(port: u16, count: usize, first: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if !first.is_empty() {
                stream.write_all(first).unwrap();
            }
            stream
        })
        .collect()
}

/// Whether the server closed each connection (EOF or reset) within 60 s in all; the number
/// still open.
fn still_open_after_waiting(streams: &mut [TcpStream]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = 0;
    let mut buf = [0u8; 4096];
    for stream in streams {
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            stream.set_read_timeout(Some(left)).unwrap();
            match stream.read(&mut buf) {
                Ok(0) => break true,
                // What an HTTP/2 server says before it goes (SETTINGS, GOAWAY).
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false;
                }
                Err(_) => break true,
            }
        };
        if !closed {
            open += 1;
        }
    }
    open
}

fn config(http_extra: &str, grpc_extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
{grpc_extra}
      http:
        endpoint: "@HTTP@"
{http_extra}
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
"#
    )
}

fn series(name: &str, transport: &str, extra: &str) -> String {
    format!("{name}{{receiver=\"otlp\",transport=\"{transport}\"{extra}}}")
}

#[test]
fn silent_connections_beyond_the_usual_file_limit_do_not_starve_clients() {
    raise_own_limit();
    // Timeouts far longer than the test: the silent connections stay open throughout.
    let c = Limited::start(
        &config(
            "        read_header_timeout: 10m\n        idle_timeout: 10m",
            "        read_header_timeout: 10m",
        ),
        USUAL_SOFT_LIMIT,
        None,
    );
    let (soft, hard) = c.open_file_limits();
    assert_eq!(soft, hard, "the soft limit was not raised");
    assert!(soft > USUAL_SOFT_LIMIT, "{soft}");
    assert!(
        c.logs().contains("raised the open-file limit"),
        "{}",
        c.logs()
    );

    let mut silent = silent_connections(c.http, FLOOD, b"");
    silent.extend(silent_connections(c.grpc, FLOOD, b""));
    c.wait_for_metric(
        &series("sluice_receiver_connections", "http", ""),
        FLOOD as u64,
    );
    c.wait_for_metric(
        &series("sluice_receiver_connections", "grpc", ""),
        FLOOD as u64,
    );
    // Idle connections cost no CPU: a spinning accept loop would use about a core.
    let cpu = c.cpu_seconds_over_3s();
    assert!(cpu < 1.0, "{cpu} CPU seconds in 3 s with idle connections");
    c.assert_serving("during");

    drop(silent);
    c.wait_for_metric(&series("sluice_receiver_connections", "http", ""), 0);
    c.wait_for_metric(&series("sluice_receiver_connections", "grpc", ""), 0);
    c.assert_serving("after");
}

#[test]
fn silent_and_half_sent_connections_are_closed_by_the_header_timeout() {
    raise_own_limit();
    let c = Limited::start(
        &config(
            "        read_header_timeout: 1s",
            "        read_header_timeout: 1s",
        ),
        USUAL_SOFT_LIMIT,
        None,
    );
    let half = 100;
    let mut http = silent_connections(c.http, FLOOD - half, b"");
    http.extend(silent_connections(
        c.http,
        half,
        b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Ty",
    ));
    let mut grpc = silent_connections(c.grpc, FLOOD - half, b"");
    grpc.extend(silent_connections(
        c.grpc,
        half,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n",
    ));
    c.assert_serving("during");

    assert_eq!(still_open_after_waiting(&mut http), 0, "{}", c.logs());
    assert_eq!(still_open_after_waiting(&mut grpc), 0, "{}", c.logs());
    let reason = ",reason=\"read_header_timeout\"";
    c.wait_for_metric(
        &series("sluice_receiver_connections_closed_total", "http", reason),
        FLOOD as u64,
    );
    c.wait_for_metric(
        &series("sluice_receiver_connections_closed_total", "grpc", reason),
        FLOOD as u64,
    );
    // Said, but not once per connection.
    let logs = c.logs();
    let said = logs
        .lines()
        .filter(|l| l.contains("no request within read_header_timeout"))
        .count();
    assert!((1..=20).contains(&said), "{said} lines:\n{logs}");
    assert!(logs.lines().count() < 100, "{logs}");
    c.assert_serving("after");
}

#[test]
fn connections_over_max_connections_are_refused_until_others_go() {
    raise_own_limit();
    let cap = 100;
    // No timeout: the connections stay until the test closes them.
    let c = Limited::start(
        &config(
            "        max_connections: 100\n        read_header_timeout: 0s\n        read_timeout: 0s\n        idle_timeout: 0s",
            "        max_connections: 100\n        read_header_timeout: 0s\n        keepalive:\n          server_parameters:\n            max_connection_idle: 0s",
        ),
        USUAL_SOFT_LIMIT,
        None,
    );
    let mut held = silent_connections(c.http, cap, b"");
    held.extend(silent_connections(c.grpc, cap, b""));
    c.wait_for_metric(
        &series("sluice_receiver_connections", "http", ""),
        cap as u64,
    );
    c.wait_for_metric(
        &series("sluice_receiver_connections", "grpc", ""),
        cap as u64,
    );
    let excess = 50;
    let mut over = silent_connections(c.http, excess, b"");
    over.extend(silent_connections(c.grpc, excess, b""));
    assert_eq!(still_open_after_waiting(&mut over), 0, "{}", c.logs());
    c.wait_for_metric(
        &series("sluice_receiver_connections_refused_total", "http", ""),
        excess as u64,
    );
    c.wait_for_metric(
        &series("sluice_receiver_connections_refused_total", "grpc", ""),
        excess as u64,
    );
    // Health has its own port: it still answers.
    assert_eq!(http_get(c.health, "/").map(|(s, _)| s), Some(200));
    assert!(
        grpc_export(c.grpc, "refused").is_err(),
        "a call over the cap was served"
    );
    let refusals = c
        .logs()
        .lines()
        .filter(|l| l.contains("max_connections are open"))
        .count();
    assert!((1..=10).contains(&refusals), "{}", c.logs());

    drop(held);
    c.wait_for_metric(&series("sluice_receiver_connections", "http", ""), 0);
    c.wait_for_metric(&series("sluice_receiver_connections", "grpc", ""), 0);
    c.assert_serving("after");
}

#[test]
fn out_of_file_descriptors_the_collector_waits_and_says_so_briefly() {
    raise_own_limit();
    // A hard limit it cannot raise, far below the default max_connections.
    let limit = 200;
    let c = Limited::start(
        &config(
            "        read_header_timeout: 0s\n        read_timeout: 0s\n        idle_timeout: 0s",
            "        read_header_timeout: 0s\n        keepalive:\n          server_parameters:\n            max_connection_idle: 0s",
        ),
        limit,
        Some(limit),
    );
    assert_eq!(c.open_file_limits(), (limit, limit));
    assert!(
        c.logs().contains("reach the open-file limit"),
        "no warning about max_connections and the limit:\n{}",
        c.logs()
    );
    // More than it can accept; fewer than it can accept plus the listen backlog (128), beyond
    // which the kernel drops the connection attempts.
    let silent = silent_connections(c.http, limit as usize + 100, b"");
    c.wait_for_log("out of file descriptors");
    // Failing accepts are retried after a pause, not in a loop.
    let cpu = c.cpu_seconds_over_3s();
    assert!(
        cpu < 1.0,
        "{cpu} CPU seconds in 3 s out of file descriptors"
    );
    let said = c
        .logs()
        .lines()
        .filter(|l| l.contains("out of file descriptors"))
        .count();
    assert!((1..=5).contains(&said), "{said} lines:\n{}", c.logs());

    // Once the connections go, everything is served again.
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(c.health, "/").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "health; log:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_for_metric(&series("sluice_receiver_connections", "http", ""), 0);
    c.assert_serving("after");
}
