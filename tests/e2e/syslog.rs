//! The `syslog` and `tcplog` receivers through the real binary, fed by `logger` from
//! util-linux over UDP and TCP in both RFC formats, and by a plain TCP client. Every test
//! counts the messages lost and the messages delivered more than once.
//!
//! Needs `logger` (Debian package `bsdutils`).

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Collector, free_ports};
use serde_json::Value;

/// Every log record the file exporter wrote: (body, attributes as `key -> value`).
fn records(path: &Path) -> Vec<(String, BTreeMap<String, Value>, Value)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let request: Value = serde_json::from_str(line).unwrap();
        for rl in request["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let body = r["body"]["stringValue"].as_str().unwrap_or("").to_string();
                    let attributes = r["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
                        .collect();
                    out.push((body, attributes, r.clone()));
                }
            }
        }
    }
    out
}

/// Waits (up to 60 s) until `want` records whose body contains `marker` were written.
fn wait_for(
    path: &Path,
    marker: &str,
    want: usize,
) -> Vec<(String, BTreeMap<String, Value>, Value)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: Vec<_> = records(path)
            .into_iter()
            .filter(|(b, _, _)| b.contains(marker))
            .collect();
        if all.len() >= want || Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lost and duplicated among messages numbered `0..n` with `marker-<n>` in their body.
fn lost_and_duplicated(bodies: &[String], marker: &str, n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut seen = vec![0usize; n];
    for b in bodies {
        let Some(at) = b.find(&format!("{marker}-")) else {
            continue;
        };
        let digits: String = b[at + marker.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(i) = digits.parse::<usize>()
            && i < n
        {
            seen[i] += 1;
        }
    }
    let lost = (0..n).filter(|&i| seen[i] == 0).collect();
    let duplicated = (0..n).filter(|&i| seen[i] > 1).collect();
    (lost, duplicated)
}

/// Sends `n` numbered messages with `logger`, one per line of its input.
fn logger(port: u16, args: &[&str], marker: &str, n: usize) {
    let mut child = Command::new("logger")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "-t",
            "sluicetest",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("logger (util-linux) is needed");
    let mut input = String::new();
    for i in 0..n {
        input.push_str(&format!("{marker}-{i:05} hello from logger\n"));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn config(ports: &[u16; 5]) -> String {
    format!(
        r#"
receivers:
  syslog/udp5424:
    udp:
      listen_address: "127.0.0.1:{}"
      add_attributes: true
    protocol: rfc5424
  syslog/tcp5424:
    tcp:
      listen_address: "127.0.0.1:{}"
      add_attributes: true
    protocol: rfc5424
    enable_octet_counting: true
  syslog/udp3164:
    udp:
      listen_address: "127.0.0.1:{}"
    protocol: rfc3164
  syslog/tcp3164:
    tcp:
      listen_address: "127.0.0.1:{}"
    protocol: rfc3164
    attributes:
      source: tcp3164
  tcplog:
    listen_address: "127.0.0.1:{}"
    max_connections: 2
    add_attributes: true
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    format: json
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
      receivers: [syslog/udp5424, syslog/tcp5424, syslog/udp3164, syslog/tcp3164, tcplog]
      exporters: [file/out]
"#,
        ports[0], ports[1], ports[2], ports[3], ports[4]
    )
}

fn text(v: &Value) -> Option<&str> {
    v["stringValue"].as_str()
}

fn int(v: &Value) -> Option<i64> {
    match &v["intValue"] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[test]
fn logger_messages_arrive_once_with_upstream_attributes() {
    let ports = free_ports::<5>();
    let c = Collector::start(&config(&ports), &[]);
    let out = c.path("out.jsonl");
    const N: usize = 300;
    let cases: [(&str, u16, &[&str]); 4] = [
        ("u5424", ports[0], &["--udp", "--rfc5424"]),
        ("t5424", ports[1], &["--tcp", "--rfc5424", "--octet-count"]),
        ("u3164", ports[2], &["--udp", "--rfc3164"]),
        ("t3164", ports[3], &["--tcp", "--rfc3164"]),
    ];
    for (marker, port, args) in cases {
        logger(port, args, marker, N);
    }
    for (marker, _, _) in cases {
        let got = wait_for(&out, marker, N);
        let bodies: Vec<String> = got.iter().map(|(b, _, _)| b.clone()).collect();
        let (lost, duplicated) = lost_and_duplicated(&bodies, marker, N);
        assert!(
            lost.is_empty() && duplicated.is_empty(),
            "{marker}: lost {lost:?}, duplicated {duplicated:?}; log:\n{}",
            c.logs()
        );
        let (body, attrs, record) = &got[0];
        assert!(
            !attrs.contains_key("syslog.parse_error"),
            "{marker}: {body}"
        );
        assert_eq!(
            attrs.get("appname").and_then(text),
            Some("sluicetest"),
            "{marker}"
        );
        assert!(
            attrs
                .get("message")
                .and_then(text)
                .is_some_and(|m| m.starts_with(marker) && m.ends_with("hello from logger")),
            "{marker}: {attrs:?}"
        );
        assert!(attrs.get("hostname").and_then(text).is_some(), "{marker}");
        // logger's default priority is user.notice: facility 1, severity 5.
        assert_eq!(attrs.get("priority").and_then(int), Some(13), "{marker}");
        assert_eq!(attrs.get("facility").and_then(int), Some(1), "{marker}");
        assert_eq!(record["severityText"].as_str(), Some("notice"), "{marker}");
        assert!(
            record["timeUnixNano"].as_str().is_some_and(|t| t != "0"),
            "{marker}: {record}"
        );
        // The body is the message as received, as upstream keeps it.
        assert!(body.starts_with("<13>"), "{marker}: {body}");
        if marker.ends_with("5424") {
            assert_eq!(attrs.get("version").and_then(int), Some(1), "{marker}");
            assert!(
                attrs.get("structured_data").is_some(),
                "{marker}: {attrs:?}"
            );
            assert!(
                attrs.get("proc_id").is_none()
                    || marker.starts_with('t')
                    || marker.starts_with('u')
            );
            assert_eq!(
                attrs.get("net.transport").and_then(text),
                Some(if marker.starts_with('u') {
                    "IP.UDP"
                } else {
                    "IP.TCP"
                }),
                "{marker}"
            );
            assert_eq!(
                attrs.get("net.peer.ip").and_then(text),
                Some("127.0.0.1"),
                "{marker}"
            );
            assert!(
                attrs.get("net.peer.port").and_then(text).is_some(),
                "{marker}"
            );
        } else {
            assert!(attrs.get("version").is_none(), "{marker}");
            assert!(attrs.get("net.transport").is_none(), "{marker}");
        }
        if marker == "t3164" {
            assert_eq!(attrs.get("source").and_then(text), Some("tcp3164"));
        }
    }
}

/// Reads until the peer closes; true if it did within the deadline.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
        && !matches!(stream.read(&mut buf), Ok(n) if n > 0)
}

#[test]
fn tcplog_lines_and_the_connection_cap() {
    let ports = free_ports::<5>();
    let c = Collector::start(&config(&ports), &[]);
    let out = c.path("out.jsonl");
    let port = ports[4];
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    first.write_all(b"plain-00000 first\r\nplain-0").unwrap();
    second.write_all(b"plain-00001 second\n").unwrap();
    // Both connections are served: their lines arrive.
    assert_eq!(wait_for(&out, "plain-", 2).len(), 2, "log:\n{}", c.logs());
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = third.write_all(b"plain-99999 over the cap\n");
    assert!(
        closed_by_peer(&mut third),
        "a connection over max_connections was not closed"
    );
    // The rest of a line split across writes, and the last line ended by the close.
    first
        .write_all(b"0002 split across writes\nplain-00003 last")
        .unwrap();
    drop(first);
    drop(second);
    let got = wait_for(&out, "plain-", 4);
    let bodies: Vec<String> = got.iter().map(|(b, _, _)| b.clone()).collect();
    let (lost, duplicated) = lost_and_duplicated(&bodies, "plain", 4);
    assert!(
        lost.is_empty() && duplicated.is_empty(),
        "lost {lost:?}, duplicated {duplicated:?}: {bodies:?}"
    );
    assert!(!bodies.iter().any(|b| b.contains("99999")));
    assert!(
        bodies.contains(&"plain-00002 split across writes".to_string()),
        "{bodies:?}"
    );
    let attrs = &got[0].1;
    assert_eq!(attrs.get("net.transport").and_then(text), Some("IP.TCP"));
    assert_eq!(
        attrs.get("net.host.port").and_then(text),
        Some(port.to_string().as_str())
    );
    assert_eq!(
        c.wait_for_metric(
            "sluice_receiver_connections_refused_total{receiver=\"tcplog\",transport=\"tcp\"}",
            1
        ),
        Some(1),
        "{}",
        c.metrics_text()
    );
}
