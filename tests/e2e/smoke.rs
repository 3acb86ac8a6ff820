use crate::common;

use common::{Collector, file_pipeline_config, http_get, json_lines};

#[test]
fn json_over_http_reaches_the_file() {
    let mut c = Collector::start(&file_pipeline_config("json", "batch"), &[]);
    let body =
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "-d",
            body,
        ])
        .arg(format!("http://127.0.0.1:{}/v1/logs", c.http))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let lines = json_lines(&c.path("out.jsonl"), 1);
    assert_eq!(
        lines[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
        "hi"
    );
    assert!(c.metrics_text().contains(
        "otelcol_receiver_accepted_log_records_total{receiver=\"otlp\",transport=\"http\"} 1"
    ));
    assert_eq!(http_get(c.health, "/").unwrap().0, 200);
    assert!(c.stop().success());
}
