//! The `resource_detection` processor in the real binary: detected attributes reach the
//! exported data, from the collector's environment and a fixture root.

mod common;

use common::{Collector, json_lines};

const ID: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn config(root: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  resourcedetection/all:
    detectors: [env, k8s, lambda, container]
    override: false
    root_path: "{root}"
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
      receivers: [otlp]
      processors: [resourcedetection/all]
      exporters: [file/out]
"#
    )
}

fn attributes(line: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    line["resourceLogs"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
        .collect()
}

#[test]
fn detected_attributes_reach_the_exported_resource() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
    std::fs::write(
        root.path().join("proc/self/cgroup"),
        format!("0::/system.slice/docker-{ID}.scope\n"),
    )
    .unwrap();
    let mut c = Collector::start_with_env(
        &config(root.path().to_str().unwrap()),
        &[],
        &[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=staging,team=a%2Cb",
            ),
            ("OTEL_SERVICE_NAME", "detected-service"),
            ("K8S_POD_NAME", "api-0"),
            ("K8S_NAMESPACE", "shop"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders"),
        ],
    );
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"from-sdk"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
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
    let attrs = attributes(&lines[0]);
    let string = |k: &str| attrs[k]["stringValue"].as_str().map(str::to_string);
    // `override: false`: the SDK's own service.name stays.
    assert_eq!(string("service.name").as_deref(), Some("from-sdk"));
    assert_eq!(
        string("deployment.environment.name").as_deref(),
        Some("staging")
    );
    assert_eq!(string("team").as_deref(), Some("a,b"));
    assert_eq!(string("k8s.pod.name").as_deref(), Some("api-0"));
    assert_eq!(string("k8s.namespace.name").as_deref(), Some("shop"));
    assert_eq!(string("faas.name").as_deref(), Some("orders"));
    assert_eq!(string("cloud.provider").as_deref(), Some("aws"));
    assert_eq!(string("cloud.platform").as_deref(), Some("aws_lambda"));
    assert_eq!(string("cloud.region").as_deref(), Some("eu-west-1"));
    // OTLP/JSON writes 64-bit integers as decimal strings.
    assert_eq!(attrs["faas.max_memory"]["intValue"], "134217728");
    assert_eq!(
        attrs["aws.log.group.names"]["arrayValue"]["values"][0]["stringValue"],
        "/aws/lambda/orders"
    );
    assert_eq!(string("container.id").as_deref(), Some(ID));
    assert_eq!(string("container.runtime.name").as_deref(), Some("docker"));
    assert!(c.stop().success());
}

#[test]
fn a_failing_detector_stops_start_up_only_with_fail_on_error() {
    let template = config("/").replace(
        "    override: false\n",
        "    override: false\n    fail_on_error: true\n",
    );
    let mut c = Collector::spawn_with_env(
        &template,
        &[],
        &[("OTEL_RESOURCE_ATTRIBUTES", "not-a-pair")],
    );
    let status = c.wait_exit(std::time::Duration::from_secs(20));
    assert!(!status.success());
    assert!(c.logs().contains("not-a-pair"), "{}", c.logs());

    let mut c = Collector::start_with_env(
        &config("/"),
        &[],
        &[("OTEL_RESOURCE_ATTRIBUTES", "not-a-pair")],
    );
    assert!(c.logs().contains("not-a-pair"), "{}", c.logs());
    assert!(c.stop().success());
}
