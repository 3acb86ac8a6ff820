//! The `nop` receiver and exporter, as the OTel Collector has them: a pipeline made only of
//! them runs, and data sent to otlp → nop is accepted, counted as sent and discarded.

use crate::common;

use std::process::Command;

use common::{Collector, metric_sample};
use sluice_loadgen::{Config, Protocol, SignalArg, Stop, run_blocking};

const NOP_ONLY: &str = r#"
receivers:
  nop:
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
      receivers: [nop]
      exporters: [nop]
    metrics:
      receivers: [nop]
      exporters: [nop]
    logs:
      receivers: [nop]
      exporters: [nop]
"#;

const OTLP_TO_NOP: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
  nop:
processors:
  batch:
    timeout: 20ms
exporters:
  nop:
  nop/second: {}
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
      receivers: [otlp, nop]
      processors: [batch]
      exporters: [nop, nop/second]
    logs:
      receivers: [otlp]
      exporters: [nop]
"#;

#[test]
fn a_config_of_only_nop_components_validates_runs_and_stops_cleanly() {
    let mut c = Collector::start(NOP_ONLY, &[]);
    assert!(c.stop().success(), "{}", c.logs());

    let components = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("components")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&components.stdout);
    assert!(
        text.lines().filter(|l| l.contains("nop")).count() >= 2,
        "{text}"
    );
}

#[test]
fn nop_sections_take_no_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let config = NOP_ONLY
        .replace("  nop:\nexporters:", "  nop:\n    endpoint: x\nexporters:")
        .replace("\"@HEALTH@\"", "127.0.0.1:1")
        .replace("\"@METRICS@\"", "127.0.0.1:2");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("receivers.nop") && stderr.contains("endpoint"),
        "{stderr}"
    );
}

#[test]
fn data_sent_to_otlp_then_nop_is_accepted_and_counted_as_sent() {
    let mut c = Collector::start(OTLP_TO_NOP, &[]);
    for (protocol, port, signal, items) in [
        (Protocol::Grpc, c.grpc, SignalArg::Traces, 1_050),
        (Protocol::HttpProto, c.http, SignalArg::Logs, 230),
    ] {
        let report = run_blocking(
            Config {
                endpoint: format!("127.0.0.1:{port}"),
                protocol,
                signal,
                items_per_request: 100,
                concurrency: 4,
                stop: Stop::Items(items),
                ..Config::default()
            },
            1,
        )
        .unwrap();
        assert_eq!(report.items_accepted, items, "{report}");
    }
    // Both exporters of the traces pipeline count every span; the logs pipeline's nop its logs.
    for (exporter, item, want) in [
        ("nop", "spans", 1_050),
        ("nop/second", "spans", 1_050),
        ("nop", "log_records", 230),
    ] {
        let prefix = format!("otelcol_exporter_sent_{item}_total{{exporter=\"{exporter}\"}}");
        assert_eq!(
            c.wait_for_metric(&prefix, want),
            Some(want),
            "{prefix}\n{}",
            c.metrics_text()
        );
    }
    assert_eq!(
        metric_sample(
            &c.metrics_text(),
            "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}"
        ),
        Some(1_050)
    );
    assert!(c.stop().success(), "{}", c.logs());
}
