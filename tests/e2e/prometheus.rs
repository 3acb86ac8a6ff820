//! Prometheus both ways, against the real thing (Debian's `prometheus` and
//! `prometheus-node-exporter`, installed by scripts/test.sh): sluice scrapes node-exporter and
//! Prometheus itself; Prometheus receives sluice's remote write of host metrics and of an SDK
//! application's metrics and answers queries with what was sent, losing nothing across an
//! outage; Prometheus scrapes sluice's `prometheus` exporter. Every server runs on free ports
//! with its own temporary data directory.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Collector, free_port, free_ports, http_get, json_lines};
use serde_json::{Value, json};

/// The path of an installed binary, or a failure that says how to get it.
fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "`{name}` is not installed; these tests run against Debian's prometheus and \
         prometheus-node-exporter: run scripts/test.sh, or `apt-get install prometheus \
         prometheus-node-exporter`"
    );
}

/// A server process started by a test; killed on drop.
struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    fn spawn(program: &Path, args: &[String], log: PathBuf) -> Server {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Server {
            child: Some(child),
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Waits for a server started by a test to answer; its own log is in the failure.
fn wait_for_server(server: &Server, what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}; its log:\n{}", server.logs());
}

fn node_exporter(dir: &Path) -> (Server, u16) {
    let port = free_port();
    let server = Server::spawn(
        &binary("prometheus-node-exporter"),
        &[format!("--web.listen-address=127.0.0.1:{port}")],
        dir.join("node-exporter.log"),
    );
    wait_for_server(
        &server,
        "node-exporter to answer",
        Duration::from_secs(30),
        || http_get(port, "/metrics").is_some_and(|(s, _)| s == 200),
    );
    (server, port)
}

/// Prometheus with its own data directory (kept across restarts when `data` is reused) and the
/// remote write receiver on; `scrape` is the `scrape_configs` YAML list (may be empty).
fn prometheus(dir: &Path, port: u16, scrape: &str) -> Server {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape}\n"
        ),
    )
    .unwrap();
    let server = Server::spawn(
        &binary("prometheus"),
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
        dir.join(format!("prometheus-{}.log", now_ms())),
    );
    wait_for_server(
        &server,
        "Prometheus to be ready",
        Duration::from_secs(60),
        || http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200),
    );
    server
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The result vector of an instant query.
fn query(port: u16, promql: &str) -> Vec<Value> {
    let Some((200, body)) = http_get(port, &format!("/api/v1/query?query={}", encode(promql)))
    else {
        return Vec::new();
    };
    let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    doc["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn labels_of(sample: &Value) -> BTreeMap<String, String> {
    sample["metric"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn attr(attributes: &Value, key: &str) -> Option<String> {
    attributes
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
}

/// Every metric of the file exporter's output: (resource attributes, metric) pairs.
fn metrics_of(lines: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for line in lines {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    out.push((rm["resource"]["attributes"].clone(), m.clone()));
                }
            }
        }
    }
    out
}

fn with_telemetry(config: &str) -> String {
    format!(
        "{config}
extensions:
  health_check:
    endpoint: \"@HEALTH@\"
"
    )
}

#[test]
fn sluice_scrapes_node_exporter_and_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, node_port) = node_exporter(dir.path());
    let prom_port = free_port();
    let _prom = prometheus(dir.path(), prom_port, "  []");
    let config = with_telemetry(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 1s
          static_configs:
            - targets: ['127.0.0.1:{node_port}']
              labels: {{env: e2e}}
          metric_relabel_configs:
            - source_labels: [__name__]
              regex: 'node_(cpu_seconds_total|memory_MemTotal_bytes|load1)|up|scrape_.*'
              action: keep
        - job_name: prometheus
          scrape_interval: 1s
          static_configs:
            - targets: ['127.0.0.1:{prom_port}']
          relabel_configs:
            - source_labels: [__address__]
              regex: '([^:]+):\d+'
              target_label: host
              replacement: '$${{1}}'
exporters:
  file:
    path: "@DIR@/out.jsonl"
    flush_interval: 0s
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file]
"#
    ));
    let collector = Collector::start(&config, &[]);
    let out = collector.path("out.jsonl");
    let mut metrics = Vec::new();
    wait_until(
        "two scrapes of both targets",
        Duration::from_secs(60),
        || {
            metrics = metrics_of(&json_lines(&out, 4));
            let scrapes = |job: &str| {
                metrics
                    .iter()
                    .filter(|(r, m)| {
                        attr(r, "service.name").as_deref() == Some(job) && m["name"] == "up"
                    })
                    .count()
            };
            scrapes("node") >= 2 && scrapes("prometheus") >= 2
        },
    );
    let node: Vec<&(Value, Value)> = metrics
        .iter()
        .filter(|(r, _)| attr(r, "service.name").as_deref() == Some("node"))
        .collect();
    let (resource, _) = node[0];
    let instance = format!("127.0.0.1:{node_port}");
    assert_eq!(attr(resource, "service.instance.id"), Some(instance));
    assert_eq!(
        attr(resource, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr(resource, "server.port"), Some(node_port.to_string()));
    assert_eq!(attr(resource, "url.scheme").as_deref(), Some("http"));
    let find = |name: &str| {
        node.iter()
            .map(|(_, m)| m)
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the node-exporter scrape"))
    };
    let cpu = find("node_cpu_seconds_total");
    assert_eq!(cpu["sum"]["isMonotonic"], true, "{cpu}");
    assert_eq!(cpu["sum"]["aggregationTemporality"], 2);
    let point = &cpu["sum"]["dataPoints"][0];
    assert!(
        attr(&point["attributes"], "cpu").is_some() && attr(&point["attributes"], "mode").is_some()
    );
    assert_eq!(
        attr(&point["attributes"], "env").as_deref(),
        Some("e2e"),
        "target labels are point attributes"
    );
    assert!(attr(&point["attributes"], "job").is_none());
    assert!(point["startTimeUnixNano"].as_str().is_some());
    assert!(
        find("node_memory_MemTotal_bytes")["gauge"]["dataPoints"][0]["asDouble"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(find("node_load1").get("gauge").is_some());
    assert!(
        node.iter()
            .all(|(_, m)| m["name"] != "node_memory_MemFree_bytes"),
        "metric_relabel_configs dropped the rest"
    );
    let up = find("up");
    assert_eq!(up["gauge"]["dataPoints"][0]["asDouble"], 1.0);
    assert_eq!(find("scrape_duration_seconds")["unit"], "seconds");
    assert!(
        find("scrape_samples_scraped")["gauge"]["dataPoints"][0]["asDouble"]
            .as_f64()
            .unwrap()
            > 100.0
    );
    assert!(
        node.iter()
            .any(|(_, m)| m["name"] == "scrape_samples_post_metric_relabeling")
    );
    assert!(node.iter().any(|(_, m)| m["name"] == "scrape_series_added"));

    let prom: Vec<&Value> = metrics
        .iter()
        .filter(|(r, _)| attr(r, "service.name").as_deref() == Some("prometheus"))
        .map(|(_, m)| m)
        .collect();
    let requests = prom
        .iter()
        .find(|m| {
            m["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("prometheus_http_requests"))
        })
        .expect("Prometheus' request counter");
    assert_eq!(requests["sum"]["isMonotonic"], true);
    let host = attr(&requests["sum"]["dataPoints"][0]["attributes"], "host");
    assert_eq!(
        host.as_deref(),
        Some("127.0.0.1"),
        "relabel_configs with $$-escaped groups"
    );
    let histogram = prom
        .iter()
        .find(|m| m["name"] == "prometheus_http_request_duration_seconds")
        .expect("Prometheus' request duration histogram");
    let hp = &histogram["histogram"]["dataPoints"][0];
    let bounds = hp["explicitBounds"].as_array().unwrap().len();
    assert_eq!(hp["bucketCounts"].as_array().unwrap().len(), bounds + 1);
    let summary = prom
        .iter()
        .find(|m| m["name"] == "go_gc_duration_seconds")
        .expect("a summary");
    assert!(
        summary["summary"]["dataPoints"][0]["quantileValues"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
}

#[test]
fn a_failing_target_reports_up_zero_and_is_logged_once_per_outage() {
    let dead = free_port();
    let config = with_telemetry(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: gone
          scrape_interval: 200ms
          scrape_timeout: 100ms
          static_configs:
            - targets: ['127.0.0.1:{dead}']
exporters:
  file:
    path: "@DIR@/out.jsonl"
    flush_interval: 0s
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file]
"#
    ));
    let collector = Collector::start(&config, &[]);
    let out = collector.path("out.jsonl");
    let mut ups = Vec::new();
    wait_until("five failed scrapes", Duration::from_secs(30), || {
        ups = metrics_of(&json_lines(&out, 5))
            .into_iter()
            .filter(|(_, m)| m["name"] == "up")
            .map(|(_, m)| {
                m["gauge"]["dataPoints"][0]["asDouble"]
                    .as_f64()
                    .unwrap_or(-1.0)
            })
            .collect();
        ups.len() >= 5
    });
    assert!(ups.iter().all(|v| *v == 0.0), "{ups:?}");
    let logs = collector.logs();
    assert_eq!(logs.matches("scrape failed").count(), 1, "{logs}");
}

/// Posts one OTLP/JSON gauge point per request.
fn post_json(port: u16, body: &Value) -> u16 {
    // reqwest is built without a TLS crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    client
        .post(format!("http://127.0.0.1:{port}/v1/metrics"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn gauge_request(service: &str, name: &str, value: f64, time_ns: u128) -> Value {
    json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.instance.id", "value": {"stringValue": "i-1"}},
            {"key": "deployment.environment.name", "value": {"stringValue": "e2e"}}
        ]},
        "scopeMetrics": [{"metrics": [{"name": name, "unit": "1", "gauge": {"dataPoints": [
            {"asDouble": value, "timeUnixNano": time_ns.to_string(),
             "attributes": [{"key": "shard", "value": {"stringValue": "a"}}]}
        ]}}]}]
    }]})
}

#[test]
fn remote_write_reaches_prometheus_and_survives_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let mut prom = prometheus(dir.path(), prom_port, "  []");
    let config = with_telemetry(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
  hostmetrics:
    collection_interval: 1s
    scrapers:
      memory:
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:{prom_port}/api/v1/write
    external_labels:
      cluster: e2e
    remote_write_queue:
      num_consumers: 3
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s
  file:
    path: "@DIR@/sent.jsonl"
    flush_interval: 0s
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp, hostmetrics]
      exporters: [prometheusremotewrite, file]
"#
    ));
    let collector = Collector::start(&config, &[]);

    // Host metrics, named by the OTel → Prometheus rules.
    wait_until("host memory in Prometheus", Duration::from_secs(60), || {
        !query(prom_port, "system_memory_usage_bytes{cluster=\"e2e\"}").is_empty()
    });
    let host = query(prom_port, "system_memory_usage_bytes");
    assert!(
        host.iter()
            .any(|s| labels_of(s).values().any(|v| v == "used")),
        "{host:?}"
    );
    // Every sample Prometheus holds is a point that was sent, value for value: the file
    // exporter beside remote write records what went out.
    let sent = sent_memory_points(&collector.path("sent.jsonl"));
    let stored = query(prom_port, "system_memory_usage_bytes{cluster=\"e2e\"}[10m]");
    let mut compared = 0;
    for series in &stored {
        let labels = labels_of(series);
        // The state attribute is `state`, or `system.memory.state` with the semantic
        // conventions' names on.
        let state = labels
            .get("state")
            .or_else(|| labels.get("system_memory_state"))
            .cloned()
            .unwrap_or_default();
        for pair in series["values"].as_array().into_iter().flatten() {
            let ts_ms = (pair[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
            let value: f64 = pair[1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            let Some(&want) = sent.get(&(state.clone(), ts_ms)) else {
                // A point exported after the file was read; it will be compared next time.
                continue;
            };
            assert_eq!(value, want, "state {state} at {ts_ms} ms");
            compared += 1;
        }
    }
    assert!(
        compared >= 2,
        "too few host points compared ({compared}): {stored:?}"
    );

    // An application instrumented with the OpenTelemetry SDK.
    sdk_counter(&collector);
    wait_until(
        "the SDK counter in Prometheus",
        Duration::from_secs(60),
        || !query(prom_port, "shop_orders_total").is_empty(),
    );
    let orders = query(prom_port, "shop_orders_total");
    assert_eq!(orders.len(), 2, "{orders:?}");
    for sample in &orders {
        let labels = labels_of(sample);
        assert_eq!(labels["job"], "shop");
        assert_eq!(labels["cluster"], "e2e");
        assert_eq!(labels["otel_scope_name"], "shop.checkout");
        let want = match labels["payment_method"].as_str() {
            "card" => 12.0,
            "cash" => 3.0,
            other => panic!("unexpected payment_method {other}"),
        };
        assert_eq!(value_of(sample), want, "{sample}");
    }
    let info = query(prom_port, "target_info{job=\"shop\"}");
    assert_eq!(
        labels_of(&info[0])
            .get("deployment_environment_name")
            .map(String::as_str),
        Some("e2e")
    );

    // Backend down, data keeps coming, backend up: every point arrives, none twice.
    let sent = 12;
    let base_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    prom.kill();
    let mut expected = 0.0;
    for i in 0..sent {
        let value = (i + 1) as f64;
        expected += value;
        let status = post_json(
            collector.http,
            &gauge_request(
                "outage",
                "outage.level",
                value,
                base_ns + i as u128 * 1_000_000_000,
            ),
        );
        assert_eq!(
            status, 200,
            "the collector takes the data while the backend is down"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let _prom = prometheus(dir.path(), prom_port, "  []");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = query(prom_port, "count_over_time(outage_level_ratio[10m])");
        if got.first().is_some_and(|s| value_of(s) >= sent as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every point arrived: {got:?}\ncollector log:\n{}",
            collector.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let count = value_of(&query(prom_port, "count_over_time(outage_level_ratio[10m])")[0]);
    let sum = value_of(&query(prom_port, "sum_over_time(outage_level_ratio[10m])")[0]);
    assert_eq!(
        (count, sum),
        (sent as f64, expected),
        "lost or duplicated points"
    );
    let labels = labels_of(&query(prom_port, "outage_level_ratio")[0]);
    assert_eq!(labels["shard"], "a");
    assert_eq!(labels["instance"], "i-1");
}

/// `system.memory.usage` points written by the file exporter, by (state, time in ms).
fn sent_memory_points(path: &Path) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    for (_, metric) in metrics_of(&json_lines(path, 1)) {
        if metric["name"] != "system.memory.usage" {
            continue;
        }
        for point in metric["sum"]["dataPoints"].as_array().into_iter().flatten() {
            let Some(state) = attr(&point["attributes"], "state")
                .or_else(|| attr(&point["attributes"], "system.memory.state"))
            else {
                continue;
            };
            let time_ns: u128 = point["timeUnixNano"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            // OTLP/JSON writes 64-bit integers as strings.
            let value = match &point["asInt"] {
                Value::String(v) => v.parse::<f64>().ok(),
                other => other.as_f64(),
            }
            .or_else(|| point["asDouble"].as_f64());
            if let Some(value) = value {
                out.insert((state, (time_ns / 1_000_000) as i64), value);
            }
        }
    }
    out
}

fn sdk_counter(collector: &Collector) {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = MetricExporter::builder()
        .with_http()
        .with_http_client(reqwest::blocking::Client::new())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://127.0.0.1:{}/v1/metrics", collector.http))
        .build()
        .unwrap();
    let provider = SdkMeterProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_service_name("shop")
                .with_attribute(KeyValue::new("deployment.environment.name", "e2e"))
                .build(),
        )
        .with_periodic_exporter(exporter)
        .build();
    let meter = provider.meter("shop.checkout");
    let orders = meter
        .u64_counter("shop.orders")
        .with_unit("{order}")
        .build();
    orders.add(5, &[KeyValue::new("payment.method", "card")]);
    orders.add(7, &[KeyValue::new("payment.method", "card")]);
    orders.add(3, &[KeyValue::new("payment.method", "cash")]);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

#[test]
fn prometheus_scrapes_the_prometheus_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let [prom_port, exporter_port] = free_ports::<2>();
    let config = with_telemetry(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
processors:
  deltatocumulative:
exporters:
  prometheus:
    endpoint: ":{exporter_port}"
    namespace: app
    const_labels:
      region: eu
    enable_open_metrics: true
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [deltatocumulative]
      exporters: [prometheus]
"#
    ));
    let collector = Collector::start(&config, &[]);
    // A delta counter sent twice: the exporter serves the running total.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    for (i, v) in [4, 6].iter().enumerate() {
        let t = now + i as u128 * 1_000_000_000;
        let body = json!({"resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}},
                                        {"key": "service.instance.id", "value": {"stringValue": "pod-1"}},
                                        {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}}]},
            "scopeMetrics": [{"metrics": [{"name": "http.server.requests", "unit": "{request}", "sum": {
                "aggregationTemporality": 1, "isMonotonic": true,
                "dataPoints": [{"asInt": v.to_string(), "startTimeUnixNano": (t - 1_000_000_000).to_string(), "timeUnixNano": t.to_string(),
                                "attributes": [{"key": "http.route", "value": {"stringValue": "/pay"}}]}]}}]}]
        }]});
        assert_eq!(post_json(collector.http, &body), 200);
    }
    let _prom = prometheus(
        dir.path(),
        prom_port,
        &format!(
            "  - job_name: sluice\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    );
    wait_until(
        "the exporter's series in Prometheus",
        Duration::from_secs(60),
        || !query(prom_port, "app_http_server_requests_total").is_empty(),
    );
    let series = query(prom_port, "app_http_server_requests_total");
    assert_eq!(series.len(), 1, "{series:?}");
    let labels = labels_of(&series[0]);
    assert_eq!(labels["job"], "checkout");
    assert_eq!(labels["instance"], "pod-1");
    assert_eq!(labels["http_route"], "/pay");
    assert_eq!(labels["region"], "eu");
    assert_eq!(value_of(&series[0]), 10.0);
    // The resource's attributes other than the service ones travel in target_info.
    let info = query(prom_port, "app_target_info");
    assert_eq!(info.len(), 1, "{info:?}");
    let labels = labels_of(&info[0]);
    assert_eq!(labels["job"], "checkout");
    assert_eq!(labels["instance"], "pod-1");
    assert_eq!(
        labels.get("k8s_namespace_name").map(String::as_str),
        Some("shop"),
        "{labels:?}"
    );
    drop(collector);
}
