//! The load generator against a real sluice (otlp → nop): every transport, encoding and
//! signal, with and without compression. What it reports as accepted must be what it sent
//! and what the collector counted; what the collector refuses must show up by status.

use crate::common;

use std::time::Duration;

use common::Collector;
use sluice_loadgen::{Compression, Config, Protocol, Refused, SignalArg, Stop, run_blocking};

const OTLP_TO_NOP: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
processors:
  batch:
    timeout: 20ms
exporters:
  nop:
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
      processors: [batch]
      exporters: [nop]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [nop]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [nop]
"#;

fn config(c: &Collector, protocol: Protocol, signal: SignalArg, items: u64) -> Config {
    let port = if protocol == Protocol::Grpc {
        c.grpc
    } else {
        c.http
    };
    Config {
        endpoint: format!("127.0.0.1:{port}"),
        protocol,
        signal,
        items_per_request: 40,
        concurrency: 3,
        stop: Stop::Items(items),
        ..Config::default()
    }
}

#[test]
fn every_transport_encoding_and_signal_is_accepted_and_counted_by_the_collector() {
    let mut c = Collector::start(OTLP_TO_NOP, &[]);
    let mut expected = std::collections::HashMap::<(&str, &str), u64>::new();
    let mut cases = Vec::new();
    for protocol in [Protocol::Grpc, Protocol::HttpProto, Protocol::HttpJson] {
        for signal in [SignalArg::Traces, SignalArg::Metrics, SignalArg::Logs] {
            cases.push((protocol, signal, Compression::None));
        }
    }
    cases.push((Protocol::Grpc, SignalArg::Traces, Compression::Gzip));
    cases.push((Protocol::Grpc, SignalArg::Logs, Compression::Zstd));
    cases.push((Protocol::HttpProto, SignalArg::Metrics, Compression::Gzip));
    cases.push((Protocol::HttpJson, SignalArg::Traces, Compression::Zstd));
    // 130 items in requests of 40: three full requests and a last one of 10.
    let items = 130;
    for (protocol, signal, compression) in cases {
        let mut cfg = config(&c, protocol, signal, items);
        cfg.compression = compression;
        let report = run_blocking(cfg, 1).unwrap();
        let case = format!("{protocol:?} {signal:?} {compression:?}");
        assert_eq!(report.items_sent, items, "{case}: {report}");
        assert_eq!(report.items_accepted, items, "{case}: {report}");
        assert_eq!(report.requests, 4, "{case}: {report}");
        assert!(report.refused.is_empty(), "{case}: {report}");
        assert!(report.latency.p50_us > 0, "{case}: {report}");
        let transport = if protocol == Protocol::Grpc {
            "grpc"
        } else {
            "http"
        };
        *expected.entry((signal.item_name(), transport)).or_default() += items;
    }
    for ((item, transport), want) in expected {
        let prefix = format!(
            "otelcol_receiver_accepted_{item}_total{{receiver=\"otlp\",transport=\"{transport}\"}}"
        );
        assert_eq!(
            c.wait_for_metric(&prefix, want),
            Some(want),
            "{prefix}\n{}",
            c.metrics_text()
        );
    }
    assert!(c.stop().success(), "{}", c.logs());
}

#[test]
fn a_fixed_rate_run_over_a_duration_sends_at_that_pace() {
    let mut c = Collector::start(OTLP_TO_NOP, &[]);
    let mut cfg = config(&c, Protocol::Grpc, SignalArg::Traces, 1);
    cfg.items_per_request = 10;
    cfg.rate = Some(200.0);
    cfg.stop = Stop::After(Duration::from_secs(1));
    let report = run_blocking(cfg, 1).unwrap();
    // 20 requests are scheduled in the second; the pace is set by the plan, not the clock's
    // mercy, so the count is exact however slow the machine is.
    assert_eq!(report.requests, 20, "{report}");
    assert_eq!(report.items_accepted, 200, "{report}");
    assert_eq!(
        c.wait_for_metric(
            "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}",
            200
        ),
        Some(200)
    );
    assert!(c.stop().success(), "{}", c.logs());
}

const SMALL_LIMITS: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
        max_recv_msg_size_mib: 1
      http:
        endpoint: "@HTTP@"
        max_request_body_size: 4KiB
exporters:
  nop:
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
      exporters: [nop]
"#;

#[test]
fn refusals_are_reported_by_status() {
    let mut c = Collector::start(SMALL_LIMITS, &[]);

    // HTTP: 100 spans are far over 4 KiB.
    let cfg = config(&c, Protocol::HttpProto, SignalArg::Traces, 300);
    let report = run_blocking(
        Config {
            items_per_request: 100,
            ..cfg
        },
        1,
    )
    .unwrap();
    assert_eq!(report.items_accepted, 0, "{report}");
    assert_eq!(
        report.refused.get("http 413"),
        Some(&Refused {
            requests: 3,
            items: 300
        }),
        "{report}"
    );

    // gRPC: a request of 4000 spans is over the 1 MiB message limit.
    let cfg = config(&c, Protocol::Grpc, SignalArg::Traces, 8000);
    let report = run_blocking(
        Config {
            items_per_request: 4000,
            concurrency: 1,
            ..cfg
        },
        1,
    )
    .unwrap();
    assert_eq!(report.items_accepted, 0, "{report}");
    assert_eq!(report.refused.len(), 1, "{report}");
    let (status, refused) = report.refused.iter().next().unwrap();
    assert!(status.starts_with("grpc "), "{report}");
    assert_eq!(refused.items, 8000, "{report}");

    // Metrics are not in any pipeline: gRPC answers UNIMPLEMENTED.
    let report = run_blocking(config(&c, Protocol::Grpc, SignalArg::Metrics, 40), 1).unwrap();
    assert_eq!(
        report.refused.get("grpc UNIMPLEMENTED"),
        Some(&Refused {
            requests: 1,
            items: 40
        }),
        "{report}"
    );
    assert!(c.stop().success(), "{}", c.logs());
}
