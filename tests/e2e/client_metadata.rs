//! Client metadata: the OTLP receiver keeps a request's headers with its data when
//! `include_metadata` is set, and the `batch` processor batches per tenant with
//! `metadata_keys`, refusing tenants beyond `metadata_cardinality_limit`.

use crate::common;

use std::time::{Duration, Instant};

use common::otlp_sink::OtlpSink;
use common::{Collector, free_port};

fn post(port: u16, tenant: &str, body: &str) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .header("Content-Type", "application/json")
        .header("X-Tenant", tenant)
        .body(format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
        ))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn config(backend: u16, include_metadata: bool, batch: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
        include_metadata: {include_metadata}
processors:
  batch:
    timeout: 500ms
{batch}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{backend}"
    compression: none
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
      processors: [batch]
      exporters: [otlp_http]
"#
    )
}

/// Sends four records from two tenants, interleaved; the requests the backend got.
fn requests_for_two_tenants(template: &str, backend: u16) -> usize {
    let sink = OtlpSink::start_on(backend);
    let c = Collector::start(template, &[]);
    for (i, tenant) in ["a", "b", "a", "b"].iter().enumerate() {
        assert_eq!(post(c.http, tenant, &format!("{tenant}-{i}")), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.bodies().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.bodies().len(), 4);
    sink.requests()
}

#[test]
fn metadata_keys_batch_each_tenant_apart() {
    let backend = free_port();
    let partitioned = config(backend, true, "    metadata_keys: [X-Tenant]\n");
    assert_eq!(requests_for_two_tenants(&partitioned, backend), 2);
    // Without the keys, the four requests are one batch.
    let backend = free_port();
    assert_eq!(
        requests_for_two_tenants(&config(backend, true, ""), backend),
        1
    );
}

#[test]
fn a_tenant_beyond_the_cardinality_limit_is_refused() {
    let backend = free_port();
    let _sink = OtlpSink::start_on(backend);
    let c = Collector::start(
        &config(
            backend,
            true,
            "    metadata_keys: [x-tenant]\n    metadata_cardinality_limit: 1\n",
        ),
        &[],
    );
    assert_eq!(post(c.http, "a", "first"), 200);
    assert_eq!(post(c.http, "a", "again"), 200);
    assert_eq!(post(c.http, "b", "refused"), 400);
}
