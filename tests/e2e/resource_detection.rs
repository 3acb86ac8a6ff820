//! The `resource_detection` processor in the real binary: detected attributes reach the
//! exported data, from the collector's environment, a fixture root, and cloud metadata
//! services played on 127.0.0.1 (pointed at with the variables the clouds' own SDKs honour);
//! off every cloud, start-up is not held up beyond the timeout.

use crate::common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collector, json_lines};

const ID: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn config(detectors: &str, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  resourcedetection/all:
    detectors: {detectors}
    override: false
{extra}
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

type Attrs = serde_json::Map<String, serde_json::Value>;

/// Posts one log record (its resource has `service.name=from-sdk`) and returns the resource
/// attributes it was exported with.
fn round_trip(c: &Collector) -> Attrs {
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"from-sdk"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", c.http)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /v1/logs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let lines = json_lines(&c.path("out.jsonl"), 1);
    assert_eq!(lines.len(), 1, "{}", c.logs());
    lines[0]["resourceLogs"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
        .collect()
}

fn string<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs.get(key)?["stringValue"].as_str()
}

// ---- a metadata server on 127.0.0.1 ----

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// Serves `handler` on a free port of 127.0.0.1 from a thread per connection, for as long as
/// the test runs; `silent` accepts connections and never answers (a black-holed address).
fn serve(handler: Option<Handler>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            match &handler {
                Some(h) => {
                    let h = h.clone();
                    std::thread::spawn(move || connection(stream, h));
                }
                None => held.push(stream),
            }
        }
    });
    addr
}

fn connection(mut stream: TcpStream, handler: Handler) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let path = first.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + 4 + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..head_end + 4 + length);
        let r = handler(&Request {
            method,
            path,
            headers,
        });
        let mut out = format!("HTTP/1.1 {} X\r\n", r.status);
        for (k, v) in &r.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            r.body.len(),
            r.body
        ));
        if stream.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

// ---- the tests ----

#[test]
fn environment_container_pod_and_lambda_attributes_reach_the_exported_resource() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
    std::fs::write(
        root.path().join("proc/self/cgroup"),
        format!("0::/system.slice/docker-{ID}.scope\n"),
    )
    .unwrap();
    let extra = format!("    root_path: \"{}\"", root.path().display());
    let c = Collector::start_with_env(
        &config("[env, k8s, lambda, container]", &extra),
        &[],
        &[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=staging,team=a%2Cb,service.name=from-env",
            ),
            ("OTEL_SERVICE_NAME", "the-collector-itself"),
            ("K8S_POD_NAME", "api-0"),
            ("K8S_NAMESPACE", "shop"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]abc"),
        ],
    );
    let attrs = round_trip(&c);
    // `override: false`: the SDK's own service.name stays.
    assert_eq!(string(&attrs, "service.name"), Some("from-sdk"));
    assert_eq!(
        string(&attrs, "deployment.environment.name"),
        Some("staging")
    );
    assert_eq!(string(&attrs, "team"), Some("a,b"));
    assert_eq!(string(&attrs, "k8s.pod.name"), Some("api-0"));
    assert_eq!(string(&attrs, "k8s.namespace.name"), Some("shop"));
    assert_eq!(string(&attrs, "faas.name"), Some("orders"));
    assert_eq!(string(&attrs, "cloud.provider"), Some("aws"));
    assert_eq!(string(&attrs, "cloud.platform"), Some("aws_lambda"));
    assert_eq!(string(&attrs, "cloud.region"), Some("eu-west-1"));
    // As the OTel Collector reports it: the runtime's MB, as a string.
    assert_eq!(string(&attrs, "faas.max_memory"), Some("128"));
    assert_eq!(
        attrs["aws.log.group.names"]["arrayValue"]["values"][0]["stringValue"],
        "/aws/lambda/orders"
    );
    assert_eq!(
        attrs["aws.log.stream.names"]["arrayValue"]["values"][0]["stringValue"],
        "2026/01/01/[$LATEST]abc"
    );
    assert_eq!(string(&attrs, "container.id"), Some(ID));
    assert_eq!(string(&attrs, "container.runtime.name"), Some("docker"));
    let mut c = c;
    assert!(c.stop().success());
}

#[test]
fn a_failing_detector_stops_start_up_only_with_fail_on_error() {
    let strict = config("[env]", "    fail_on_error: true");
    let mut c =
        Collector::spawn_with_env(&strict, &[], &[("OTEL_RESOURCE_ATTRIBUTES", "not-a-pair")]);
    let status = c.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(c.logs().contains("not-a-pair"), "{}", c.logs());

    let mut c = Collector::start_with_env(
        &config("[env]", ""),
        &[],
        &[("OTEL_RESOURCE_ATTRIBUTES", "not-a-pair")],
    );
    assert!(c.logs().contains("not-a-pair"), "{}", c.logs());
    assert!(c.stop().success());
}

/// An EC2 instance metadata service that requires IMDSv2 sessions, as instances launched with
/// `HttpTokens=required` do.
fn imds() -> String {
    let tokens: Arc<Mutex<HashSet<String>>> = Arc::default();
    serve(Some(Arc::new(move |req: &Request| {
        if req.path == "/latest/api/token" {
            if req.method != "PUT" {
                return reply(405, "");
            }
            let Some(ttl) = req.header("X-aws-ec2-metadata-token-ttl-seconds") else {
                return reply(400, "");
            };
            let token = format!("token-{}", tokens.lock().unwrap().len());
            tokens.lock().unwrap().insert(token.clone());
            let mut r = reply(200, token);
            r.headers
                .push(("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", ttl.to_string()));
            return r;
        }
        let valid = req
            .header("X-aws-ec2-metadata-token")
            .is_some_and(|t| tokens.lock().unwrap().contains(t));
        if !valid {
            return reply(401, "");
        }
        match req.path.as_str() {
            "/latest/meta-data/instance-id" => reply(200, "i-0123456789abcdef0"),
            "/latest/dynamic/instance-identity/document" => reply(
                200,
                r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"us-west-2b","imageId":"ami-5fb8c835","instanceId":"i-0123456789abcdef0","instanceType":"t2.micro","pendingTime":"2016-11-19T16:32:11Z","privateIp":"10.158.112.84","region":"us-west-2","version":"2017-09-30"}"#,
            ),
            "/latest/meta-data/hostname" => {
                reply(200, "ip-10-158-112-84.us-west-2.compute.internal")
            }
            "/latest/meta-data/tags/instance" => reply(200, "Name\nteam"),
            "/latest/meta-data/tags/instance/team" => reply(200, "payments"),
            _ => reply(404, ""),
        }
    })))
}

#[test]
fn ec2_attributes_and_tags_from_instance_metadata() {
    let imds = format!("http://{}", imds());
    let mut c = Collector::start_with_env(
        &config(
            "[env, ec2]",
            "    ec2:\n      tags: ['^team$']\n      tags_from_imds: true",
        ),
        &[],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str())],
    );
    let attrs = round_trip(&c);
    assert_eq!(string(&attrs, "cloud.platform"), Some("aws_ec2"));
    assert_eq!(string(&attrs, "cloud.region"), Some("us-west-2"));
    assert_eq!(string(&attrs, "cloud.account.id"), Some("123456789012"));
    assert_eq!(string(&attrs, "host.id"), Some("i-0123456789abcdef0"));
    assert_eq!(
        string(&attrs, "host.name"),
        Some("ip-10-158-112-84.us-west-2.compute.internal")
    );
    assert_eq!(string(&attrs, "ec2.tag.team"), Some("payments"));
    assert_eq!(string(&attrs, "ec2.tag.Name"), None);
    assert!(c.stop().success());
}

#[test]
fn ecs_gcp_and_azure_attributes_from_their_metadata_services() {
    let ecs = serve(Some(Arc::new(|req: &Request| match req.path.as_str() {
        "/v4/t/task" => reply(
            200,
            r#"{"Cluster":"arn:aws:ecs:us-west-2:111122223333:cluster/default","TaskARN":"arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c","Family":"curltest","Revision":"26","LaunchType":"FARGATE","AvailabilityZone":"us-west-2d","Containers":[]}"#,
        ),
        "/v4/t" => reply(200, r#"{"DockerId":"me"}"#),
        _ => reply(404, "404 page not found"),
    })));
    let gce = serve(Some(Arc::new(|req: &Request| {
        let flavored = |status, body: &str| {
            let mut r = reply(status, body);
            r.headers.push(("Metadata-Flavor", "Google".into()));
            r
        };
        if req.header("Metadata-Flavor") != Some("Google") {
            return flavored(403, "Missing required header: Metadata-Flavor");
        }
        match req.path.trim_start_matches("/computeMetadata/v1/") {
            "project/project-id" => flavored(200, "my-project"),
            "instance/id" => flavored(200, "4520031799277581759"),
            "instance/name" => flavored(200, "my-vm"),
            "instance/zone" => flavored(200, "projects/1/zones/us-central1-a"),
            "instance/machine-type" => flavored(200, "projects/1/machineTypes/e2-medium"),
            _ => flavored(404, "Not Found"),
        }
    })));
    let azure = serve(Some(Arc::new(|req: &Request| {
        if req.header("Metadata") != Some("True") {
            return reply(
                400,
                r#"{"error":"Bad request. Required metadata header not specified"}"#,
            );
        }
        if req.path != "/metadata/instance/compute?api-version=2020-09-01&format=json" {
            return reply(404, "");
        }
        reply(
            200,
            r#"{"location":"westeurope","name":"examplevmname","osProfile":{"computerName":"examplevm"},"resourceGroupName":"rg","subscriptionId":"sub-1","tagsList":[{"name":"Department","value":"IT"}],"vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmScaleSetName":"","vmSize":"Standard_A3","zone":"1"}"#,
        )
    })));
    let ecs_uri = format!("http://{ecs}/v4/t");
    let azure_url = format!("http://{azure}");
    // Each cloud its own processor, as a fleet's configs would have them; here one collector
    // runs them side by side through one pipeline.
    let template = config("[ecs]", "")
        .replace(
            "processors: [resourcedetection/all]",
            "processors: [resourcedetection/all, resource_detection/gcp, resource_detection/azure]",
        )
        .replace(
            "exporters:\n  file/out:",
            "  resource_detection/gcp:\n    detectors: [gcp]\n  resource_detection/azure:\n    detectors: [azure]\n    azure:\n      tags: ['^Dep']\nexporters:\n  file/out:",
        );
    let mut c = Collector::start_with_env(
        &template,
        &[],
        &[
            ("ECS_CONTAINER_METADATA_URI_V4", ecs_uri.as_str()),
            ("GCE_METADATA_HOST", gce.as_str()),
            ("SLUICE_AZURE_METADATA_ENDPOINT", azure_url.as_str()),
        ],
    );
    let attrs = round_trip(&c);
    assert_eq!(
        string(&attrs, "aws.ecs.task.arn"),
        Some("arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c")
    );
    assert_eq!(string(&attrs, "aws.ecs.launchtype"), Some("fargate"));
    // The ECS processor ran first and has `override: false`; the later ones override.
    assert_eq!(string(&attrs, "cloud.platform"), Some("azure_vm"));
    assert_eq!(string(&attrs, "cloud.account.id"), Some("sub-1"));
    assert_eq!(
        string(&attrs, "host.type"),
        Some("projects/1/machineTypes/e2-medium")
    );
    assert_eq!(string(&attrs, "gcp.gce.instance_group_manager.name"), None);
    assert_eq!(string(&attrs, "azure.tag.Department"), Some("IT"));
    assert_eq!(
        string(&attrs, "host.id"),
        Some("02aab8a4-74ef-476e-8182-f6d2ba4166a6")
    );
    assert!(c.stop().success());
}

#[test]
fn off_every_cloud_start_up_waits_at_most_the_timeout_and_the_rest_is_found() {
    // Every metadata address answers nothing at all: connections are accepted and left
    // hanging, the worst case off a cloud.
    let silent = serve(None);
    let silent_url = format!("http://{silent}");
    let mut c = Collector::start_with_env(
        &config(
            "[env, ec2, ecs, eks, gcp, azure, system]",
            "    timeout: 2s\n    system:\n      hostname_sources: [os]",
        ),
        &[],
        &[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod",
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", silent_url.as_str()),
            ("GCE_METADATA_HOST", silent.as_str()),
            ("SLUICE_AZURE_METADATA_ENDPOINT", silent_url.as_str()),
        ],
    );
    let attrs = round_trip(&c);
    assert_eq!(string(&attrs, "deployment.environment.name"), Some("prod"));
    assert!(string(&attrs, "host.name").is_some());
    assert_eq!(string(&attrs, "os.type"), Some("linux"));
    for cloud_key in [
        "cloud.provider",
        "cloud.platform",
        "host.id",
        "cloud.region",
    ] {
        assert!(!attrs.contains_key(cloud_key), "{cloud_key}: {attrs:?}");
    }
    assert!(c.stop().success());
}
