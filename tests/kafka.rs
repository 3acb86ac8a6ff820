//! End to end through a real Kafka-compatible broker (tansu, started per test on a free port):
//! a sluice agent (OTLP in, `kafka` exporter) and a sluice gateway (`kafka` receiver, file
//! out). Needs `tansu` on PATH (scripts/test.sh installs it); without it these tests fail.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Collector;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message as _;
use sluice_exporters::kafka::rdkafka::ClientConfig;
use sluice_exporters::kafka::rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, TopicReplication,
};
use sluice_exporters::kafka::rdkafka::client::DefaultClientContext;
use sluice_exporters::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_exporters::kafka::rdkafka::message::Message;
use sluice_pipeline::codec::{decode_json, decode_proto};
use sluice_pipeline::{Logs, Metrics, Traces};

/// A tansu broker with in-memory storage; killed on drop.
struct Broker {
    child: Child,
    port: u16,
}

fn tansu_path() -> std::path::PathBuf {
    let mut candidates: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(std::path::Path::new(&home).join(".cargo/bin/tansu"));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the Kafka end-to-end tests need the `tansu` broker and it is not on PATH: install it \
             with `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql` \
             (scripts/test.sh does this)"
        )
    })
}

impl Broker {
    fn start() -> Broker {
        let port = common::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(tansu_path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("cannot start tansu");
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port}:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt
            .block_on(admin.create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(topic, e)| panic!("cannot create {topic}: {e}"));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", Value::StringValue(service.into())),
            kv("host.cpus", Value::IntValue(9_007_199_254_740_993)),
        ],
        dropped_attributes_count: 1,
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "e2e".into(),
        version: "1.0".into(),
        attributes: vec![kv("scope.flag", Value::BoolValue(true))],
        dropped_attributes_count: 0,
    })
}

fn span_of(trace: u8, id: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: vec![id.wrapping_add(100); 8],
        name: format!("op-{trace}-{id}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_223_456_789,
        attributes: vec![
            kv("http.status", Value::IntValue(200)),
            kv("ratio", Value::DoubleValue(0.25)),
            kv("bytes", Value::BytesValue(vec![0, 1, 255])),
            kv(
                "list",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("a".into())),
                    }],
                }),
            ),
        ],
        status: Some(Status {
            message: "fine".into(),
            code: 1,
        }),
        flags: 257,
        ..Default::default()
    }
}

fn traces() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: resource("checkout"),
        scope_spans: vec![ScopeSpans {
            scope: scope(),
            spans: vec![span_of(1, 1), span_of(1, 2), span_of(2, 3)],
            schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
        }],
        schema_url: "https://opentelemetry.io/schemas/1.44.0".into(),
    }]
}

fn metrics() -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: resource("checkout"),
        scope_metrics: vec![ScopeMetrics {
            scope: scope(),
            metrics: vec![
                Metric {
                    name: "requests".into(),
                    unit: "{request}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            start_time_unix_nano: 1,
                            time_unix_nano: 2,
                            value: Some(number_data_point::Value::AsInt(-7)),
                            attributes: vec![kv("route", Value::StringValue("/a".into()))],
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "latency".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            time_unix_nano: 3,
                            count: 3,
                            sum: Some(1.5),
                            bucket_counts: vec![1, 2, 0],
                            explicit_bounds: vec![0.1, 1.0],
                            min: Some(0.05),
                            max: Some(0.9),
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                },
            ],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

fn logs() -> Vec<ResourceLogs> {
    vec![ResourceLogs {
        resource: resource("checkout"),
        scope_logs: vec![ScopeLogs {
            scope: scope(),
            log_records: vec![LogRecord {
                time_unix_nano: 1_700_000_000_000_000_001,
                observed_time_unix_nano: 1_700_000_000_000_000_002,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue("payment failed".into())),
                }),
                attributes: vec![kv("order", Value::IntValue(42))],
                trace_id: vec![1; 16],
                span_id: vec![1; 8],
                flags: 1,
                event_name: "payment.failure".into(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

fn post(port: u16, path: &str, body: Vec<u8>) {
    // reqwest is built without a crypto provider (see Cargo.toml); plain HTTP still needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
}

fn agent_config(brokers: &str, exporter: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
exporters:
  kafka:
    brokers: [{brokers}]
{exporter}
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
    metrics: {{receivers: [otlp], exporters: [kafka]}}
    logs: {{receivers: [otlp], exporters: [kafka]}}
"#
    )
}

/// Lines of a JSON-lines file once it has `n` of them.
fn lines(path: &std::path::Path, n: usize, gateway: &Collector) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines in {}; gateway log:\n{}",
            lines.len(),
            path.display(),
            gateway.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_to_gateway_through_kafka_keeps_every_field() {
    let broker = Broker::start();
    for encoding in ["otlp_proto", "otlp_json"] {
        let topics = ["spans", "metrics", "logs"].map(|t| format!("{encoding}-{t}"));
        for t in &topics {
            broker.create_topic(t, 1);
        }
        let [spans, metrics_topic, logs_topic] = &topics;
        let sections = format!(
            "    encoding: {encoding}\n    traces: {{topic: {spans}}}\n    metrics: {{topic: {metrics_topic}}}\n    logs: {{topic: {logs_topic}}}\n"
        );
        let agent = Collector::start(&agent_config(&broker.brokers(), &sections), &[]);
        let gateway = Collector::start(
            &format!(
                r#"
receivers:
  kafka:
    brokers: {brokers}
    group_id: gateway-{encoding}
    initial_offset: earliest
{sections}
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
    traces: {{receivers: [kafka], exporters: [file/out]}}
    metrics: {{receivers: [kafka], exporters: [file/out]}}
    logs: {{receivers: [kafka], exporters: [file/out]}}
"#,
                brokers = broker.brokers(),
                // The receiver's sections take no `encoding` override here: the headers say.
                sections = sections.replace(&format!("    encoding: {encoding}\n"), ""),
            ),
            &[],
        );
        post(
            agent.http,
            "/v1/traces",
            ExportTraceServiceRequest {
                resource_spans: traces(),
            }
            .encode_to_vec(),
        );
        post(
            agent.http,
            "/v1/metrics",
            ExportMetricsServiceRequest {
                resource_metrics: metrics(),
            }
            .encode_to_vec(),
        );
        post(
            agent.http,
            "/v1/logs",
            ExportLogsServiceRequest {
                resource_logs: logs(),
            }
            .encode_to_vec(),
        );
        let got = lines(&gateway.path("out.jsonl"), 3, &gateway);
        let mut seen = [false; 3];
        for line in &got {
            if line.starts_with("{\"resourceSpans\"") {
                assert!(
                    decode_json::<Traces>(line.as_bytes()).unwrap() == traces(),
                    "{encoding}: {line}"
                );
                seen[0] = true;
            } else if line.starts_with("{\"resourceMetrics\"") {
                assert!(
                    decode_json::<Metrics>(line.as_bytes()).unwrap() == metrics(),
                    "{encoding}: {line}"
                );
                seen[1] = true;
            } else {
                assert!(
                    decode_json::<Logs>(line.as_bytes()).unwrap() == logs(),
                    "{encoding}: {line}"
                );
                seen[2] = true;
            }
        }
        assert_eq!(seen, [true; 3], "{encoding}: {got:?}");
        drop(agent);
        drop(gateway);
    }
}

#[test]
fn all_spans_of_a_trace_land_on_one_partition() {
    let broker = Broker::start();
    broker.create_topic("by-trace", 4);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    traces: {topic: by-trace}\n    partition_traces_by_id: true\n",
        ),
        &[],
    );
    // 8 traces of 3 spans, spread over two resources and interleaved.
    let mut data = Vec::new();
    for service in ["a", "b"] {
        let mut spans = Vec::new();
        for round in 0..3u8 {
            for trace in 1..=8u8 {
                if (trace % 2 == 0) == (service == "a") || round == 0 {
                    spans.push(span_of(trace, round * 16 + trace));
                }
            }
        }
        data.push(ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
    }
    let sent: usize = data.iter().map(|r| r.scope_spans[0].spans.len()).sum();
    // Two requests, so every trace is in two messages that must still meet on one partition.
    for resource in data {
        post(
            agent.http,
            "/v1/traces",
            ExportTraceServiceRequest {
                resource_spans: vec![resource],
            }
            .encode_to_vec(),
        );
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "partition-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["by-trace"]).unwrap();
    let mut partition_of: std::collections::HashMap<String, i32> = Default::default();
    let mut spans = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while spans < sent {
        assert!(
            Instant::now() < deadline,
            "{spans} of {sent} spans read; agent log:\n{}",
            agent.logs()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        for r in decode_proto::<Traces>(message.payload().unwrap()).unwrap() {
            for s in r.scope_spans.iter().flat_map(|s| &s.spans) {
                let hex: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(hex, key, "a span under another trace's key");
                spans += 1;
            }
        }
        let partition = *partition_of
            .entry(key.clone())
            .or_insert(message.partition());
        assert_eq!(
            partition,
            message.partition(),
            "trace {key} on two partitions"
        );
    }
    assert_eq!(spans, sent);
    assert_eq!(partition_of.len(), 8);
}

#[test]
fn an_oversized_batch_is_split_and_an_undecodable_message_skipped() {
    let broker = Broker::start();
    broker.create_topic("big-logs", 1);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: big-logs}\n    producer: {max_message_bytes: 2000}\n",
        ),
        &[],
    );
    let gateway = Collector::start(
        &format!(
            r#"
receivers:
  kafka:
    brokers: {brokers}
    group_id: big
    initial_offset: earliest
    logs: {{topic: big-logs}}
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
    logs: {{receivers: [kafka], exporters: [file/out]}}
"#,
            brokers = broker.brokers()
        ),
        &[],
    );
    // Garbage first: the gateway must skip it and go on.
    let producer: sluice_exporters::kafka::rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    use sluice_exporters::kafka::rdkafka::producer::{BaseRecord, Producer as _};
    producer
        .send(BaseRecord::<(), [u8]>::to("big-logs").payload(&b"\xff\xfe not OTLP"[..]))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    // 30 records of ~200 bytes: about 6 KB, three times the message limit.
    let mut data = logs();
    let template = data[0].scope_logs[0].log_records[0].clone();
    data[0].scope_logs[0].log_records = (0..30)
        .map(|i| LogRecord {
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("{i:03}{}", "x".repeat(200)))),
            }),
            ..template.clone()
        })
        .collect();
    post(
        agent.http,
        "/v1/logs",
        ExportLogsServiceRequest {
            resource_logs: data.clone(),
        }
        .encode_to_vec(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (records, messages) = loop {
        let text = std::fs::read_to_string(gateway.path("out.jsonl")).unwrap_or_default();
        let decoded: Vec<Vec<ResourceLogs>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| decode_json::<Logs>(l.as_bytes()).unwrap())
            .collect();
        let records: Vec<LogRecord> = decoded
            .iter()
            .flatten()
            .flat_map(|r| {
                assert_eq!(r.resource, data[0].resource);
                r.scope_logs.iter().flat_map(|s| s.log_records.clone())
            })
            .collect();
        if records.len() >= 30 {
            break (records, decoded.len());
        }
        assert!(
            Instant::now() < deadline,
            "{} of 30 records; gateway log:\n{}",
            records.len(),
            gateway.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // At least once: a retried attempt may repeat records. Order across the split messages is
    // not compared: tansu does not keep an idempotent producer's in-flight requests in order.
    let mut distinct: Vec<String> = records.iter().map(|r| format!("{r:?}")).collect();
    distinct.sort();
    distinct.dedup();
    let mut want: Vec<String> = data[0].scope_logs[0]
        .log_records
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    want.sort();
    assert!(
        distinct == want,
        "records differ: {} received, {} distinct; gateway log:\n{}",
        records.len(),
        distinct.len(),
        gateway.logs()
    );
    assert!(
        messages >= 3,
        "{messages} messages for ~6 KB under a 2000-byte limit"
    );
    let metrics = gateway.metrics_text();
    assert!(
        metrics.contains("sluice_receiver_kafka_undecodable_messages_total{receiver=\"kafka\"} 1"),
        "{metrics}"
    );
}

fn gateway_config(brokers: &str, group: &str, topic: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: {brokers}
    group_id: {group}
    initial_offset: earliest
    logs: {{topic: {topic}}}
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
    logs: {{receivers: [kafka], exporters: [file/out]}}
"#
    )
}

/// Log bodies (strings) in a gateway's output so far.
fn bodies(gateway: &Collector) -> Vec<String> {
    let text = std::fs::read_to_string(gateway.path("out.jsonl")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| decode_json::<Logs>(l.as_bytes()).unwrap())
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .filter_map(|r| match r.body.and_then(|b| b.value) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        })
        .collect()
}

fn one_log(service: &str, body: &str) -> ExportLogsServiceRequest {
    let mut data = logs();
    data[0].resource = resource(service);
    data[0].scope_logs[0].log_records[0].body = Some(AnyValue {
        value: Some(Value::StringValue(body.into())),
    });
    ExportLogsServiceRequest {
        resource_logs: data,
    }
}

#[test]
fn a_consumer_group_of_two_shares_the_partitions_and_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("shared", 4);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: shared}\n    partition_logs_by_resource_attributes: true\n",
        ),
        &[],
    );
    let first = Collector::start(&gateway_config(&broker.brokers(), "pair", "shared"), &[]);
    let second = Collector::start(&gateway_config(&broker.brokers(), "pair", "shared"), &[]);
    // Rounds of 16 services (spread over the 4 partitions by their key) until both members
    // have been given partitions and received data.
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    while bodies(&first).is_empty() || bodies(&second).is_empty() {
        assert!(
            Instant::now() < deadline,
            "both group members never got data; logs:\n{}\n{}",
            first.logs(),
            second.logs()
        );
        for service in 0..16 {
            let body = format!("r{round}-s{service}");
            post(
                agent.http,
                "/v1/logs",
                one_log(&format!("svc-{service}"), &body).encode_to_vec(),
            );
            sent.push(body);
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Everything sent arrives, at one member or the other.
    loop {
        let mut got: Vec<String> = bodies(&first);
        got.extend(bodies(&second));
        let missing: Vec<&String> = sent.iter().filter(|b| !got.contains(b)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing {missing:?}; logs:\n{}\n{}",
            first.logs(),
            second.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_broker_outage_backs_up_into_the_queue_and_loses_nothing() {
    let mut broker = Broker::start();
    broker.create_topic("outage", 1);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: outage}\n    timeout: 1s\n    retry_on_failure: {initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0s}\n",
        ),
        &[],
    );
    post(
        agent.http,
        "/v1/logs",
        one_log("a", "before").encode_to_vec(),
    );
    // The broker goes away; the agent keeps accepting into its queue.
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    for i in 0..5 {
        post(
            agent.http,
            "/v1/logs",
            one_log("a", &format!("during-{i}")).encode_to_vec(),
        );
    }
    // Attempts fail meanwhile and are retried; nothing is dropped.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !agent.logs().contains("export failed, will retry") {
        assert!(
            Instant::now() < deadline,
            "no retried attempt:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Back on the same port (memory storage: the topic is made again).
    let port = broker.port;
    let url = format!("tcp://127.0.0.1:{port}");
    broker.child = Command::new(tansu_path())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.create_topic("outage", 1);
    let gateway = Collector::start(&gateway_config(&broker.brokers(), "after", "outage"), &[]);
    let want: Vec<String> = (0..5).map(|i| format!("during-{i}")).collect();
    loop {
        let got = bodies(&gateway);
        if want.iter().all(|w| got.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "got {got:?}; agent log:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
