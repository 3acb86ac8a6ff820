//! End to end through a real Kafka-compatible broker (tansu, started per test on a free port):
//! a sluice agent (OTLP in, `kafka` exporter) and a sluice gateway (`kafka` receiver, file
//! out). Needs `tansu` on PATH (scripts/test.sh installs it); without it these tests fail.
//! The broker's own log goes to `tansu.log` in its directory, at the level `TANSU_LOG` names
//! (default `warn`), and is printed when a test fails waiting on it. Duplicate and loss counts
//! are printed (`--nocapture` shows them).

use crate::common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::Collector;
use opentelemetry::KeyValue as OtelKeyValue;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
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

/// A tansu broker on its own port and directory; killed on drop.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    storage: String,
    /// Whether clients must authenticate (SASL).
    authentication: bool,
    /// The port the broker tells clients to connect to: its own, or that of a proxy in front.
    advertised: u16,
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
    /// In-memory storage: everything is gone when it stops.
    fn start() -> Broker {
        Self::start_with("memory://tansu/")
    }

    /// SQLite storage in the broker's directory: topics, messages, group offsets and users
    /// survive a restart.
    fn start_sqlite() -> Broker {
        Self::start_with("sqlite://tansu.db")
    }

    fn start_with(storage: &str) -> Broker {
        let port = common::free_port();
        Self::start_advertising(storage, port, port)
    }

    /// A broker on `port` that sends clients to `advertised` (a proxy in front of it).
    fn start_advertising(storage: &str, port: u16, advertised: u16) -> Broker {
        let mut broker = Broker {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            storage: storage.into(),
            authentication: false,
            advertised,
        };
        broker.launch();
        broker
    }

    /// Starts the process (on the same port, storage and directory as before) and waits until
    /// it listens.
    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let mut command = Command::new(tansu_path());
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                &self.storage,
            ])
            .current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        if self.authentication {
            command.arg("--authentication");
        }
        self.child = Some(command.spawn().expect("cannot start tansu"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        common::signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The port is free again once nothing accepts on it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", self.brokers());
        Self::create_topic_through(&client, name, partitions);
    }

    /// Creates a topic with an admin client of these settings.
    fn create_topic_through(client: &ClientConfig, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

// ---------------------------------------------------------------------------------------------
// OTel SDK → agent → Kafka → gateway → file

/// A request's path and body.
type Request = (String, Vec<u8>);

/// An HTTP proxy between the OTel SDK and the agent: it forwards every request and keeps the
/// bodies the agent accepted, which are exactly what the SDK sent.
struct Recorder {
    port: u16,
    accepted: Arc<Mutex<Vec<Request>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Recorder {
    fn start(upstream: u16) -> Recorder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let accepted: Arc<Mutex<Vec<Request>>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = reqwest::Client::new();
        let state = accepted.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (state, client) = (state.clone(), client.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let path = parts.uri.path().to_string();
                let mut forward = client
                    .post(format!("http://127.0.0.1:{upstream}{path}"))
                    .body(body.clone());
                if let Some(v) = parts.headers.get("content-type") {
                    forward = forward.header("content-type", v.clone());
                }
                let (status, content_type, answer) = match forward.send().await {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers().get("content-type").cloned(),
                        r.bytes().await.unwrap_or_default().to_vec(),
                    ),
                    Err(_) => (502, None, Vec::new()),
                };
                if status == 200 {
                    state.lock().unwrap().push((path, body.to_vec()));
                }
                let mut response = axum::response::Response::builder().status(status);
                if let Some(ct) = content_type {
                    response = response.header("content-type", ct);
                }
                response.body(axum::body::Body::from(answer)).unwrap()
            }
        });
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder {
            port,
            accepted,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// One line per item (span, metric with its points, log record), carrying its resource and
/// scope and every field, so two lists are equal only if every field of every item is.
#[derive(Default, Debug, PartialEq)]
struct Items {
    spans: Vec<String>,
    metrics: Vec<String>,
    logs: Vec<String>,
}

impl Items {
    fn add_traces(&mut self, data: &[ResourceSpans]) {
        for r in data {
            for s in &r.scope_spans {
                for i in &s.spans {
                    self.spans.push(format!(
                        "{:?}|{}|{:?}|{}|{i:?}",
                        r.resource, r.schema_url, s.scope, s.schema_url
                    ));
                }
            }
        }
    }

    fn add_metrics(&mut self, data: &[ResourceMetrics]) {
        for r in data {
            for s in &r.scope_metrics {
                for i in &s.metrics {
                    self.metrics.push(format!(
                        "{:?}|{}|{:?}|{}|{i:?}",
                        r.resource, r.schema_url, s.scope, s.schema_url
                    ));
                }
            }
        }
    }

    fn add_logs(&mut self, data: &[ResourceLogs]) {
        for r in data {
            for s in &r.scope_logs {
                for i in &s.log_records {
                    self.logs.push(format!(
                        "{:?}|{}|{:?}|{}|{i:?}",
                        r.resource, r.schema_url, s.scope, s.schema_url
                    ));
                }
            }
        }
    }

    /// What the SDK sent, from the requests the agent accepted.
    fn of_requests(requests: &[Request]) -> Items {
        let mut items = Items::default();
        for (path, body) in requests {
            match path.as_str() {
                "/v1/traces" => items.add_traces(
                    &ExportTraceServiceRequest::decode(body.as_slice())
                        .unwrap()
                        .resource_spans,
                ),
                "/v1/metrics" => items.add_metrics(
                    &ExportMetricsServiceRequest::decode(body.as_slice())
                        .unwrap()
                        .resource_metrics,
                ),
                "/v1/logs" => items.add_logs(
                    &ExportLogsServiceRequest::decode(body.as_slice())
                        .unwrap()
                        .resource_logs,
                ),
                other => panic!("the SDK posted to {other}"),
            }
        }
        items
    }

    /// What a gateway wrote so far (complete lines only).
    fn of_output(gateway: &Collector) -> Items {
        let text = std::fs::read_to_string(gateway.path("out.jsonl")).unwrap_or_default();
        let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
        let mut items = Items::default();
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            if line.starts_with("{\"resourceSpans\"") {
                items.add_traces(&decode_json::<Traces>(line.as_bytes()).unwrap());
            } else if line.starts_with("{\"resourceMetrics\"") {
                items.add_metrics(&decode_json::<Metrics>(line.as_bytes()).unwrap());
            } else {
                items.add_logs(&decode_json::<Logs>(line.as_bytes()).unwrap());
            }
        }
        items
    }

    /// Each list sorted and without repeats (at least once: a retry may repeat an item).
    fn distinct(mut self) -> Items {
        for list in [&mut self.spans, &mut self.metrics, &mut self.logs] {
            list.sort();
            list.dedup();
        }
        self
    }
}

fn sdk_resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("kafka-e2e")
        .with_schema_url(
            [
                OtelKeyValue::new("deployment.environment.name", "e2e"),
                OtelKeyValue::new("host.cpu.count", 8i64),
                OtelKeyValue::new("feature.enabled", true),
                OtelKeyValue::new("sample.ratio", 0.5),
            ],
            "https://opentelemetry.io/schemas/1.44.0",
        )
        .build()
}

fn sdk_scope() -> opentelemetry::InstrumentationScope {
    opentelemetry::InstrumentationScope::builder("sluice.e2e.kafka")
        .with_version("1.2.3")
        .with_schema_url("https://opentelemetry.io/schemas/1.43.0")
        .with_attributes([OtelKeyValue::new("scope.owner", "team-e2e")])
        .build()
}

/// Spans with attributes of every type, events, a link, statuses and parent/child ids.
fn sdk_spans(provider: &SdkTracerProvider) {
    use opentelemetry::trace::{
        Link, Span as _, SpanContext, SpanId, SpanKind, Status as OtelStatus, TraceContextExt as _,
        TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Array, Context, StringValue, Value as OtelValue};
    let tracer = provider.tracer_with_scope(sdk_scope());
    let at = |n: u64| UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + n);
    for round in 0..3i64 {
        let root = tracer
            .span_builder(format!("GET /checkout/{round}"))
            .with_kind(SpanKind::Server)
            .with_start_time(at(0))
            .with_attributes([
                OtelKeyValue::new("attr.bool", true),
                OtelKeyValue::new("attr.i64.max", i64::MAX),
                OtelKeyValue::new("attr.i64.round", round),
                OtelKeyValue::new("attr.f64", 0.25),
                OtelKeyValue::new(
                    "attr.strings",
                    OtelValue::Array(Array::String(vec![
                        StringValue::from("a"),
                        StringValue::from("b"),
                    ])),
                ),
                OtelKeyValue::new("attr.i64s", OtelValue::Array(Array::I64(vec![1, i64::MIN]))),
                OtelKeyValue::new("attr.f64s", OtelValue::Array(Array::F64(vec![1.5, -0.125]))),
                OtelKeyValue::new(
                    "attr.bools",
                    OtelValue::Array(Array::Bool(vec![true, false])),
                ),
            ])
            .start(&tracer);
        let cx = Context::new().with_span(root);
        let linked = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let mut child = tracer
            .span_builder("SELECT cart")
            .with_kind(SpanKind::Client)
            .with_start_time(at(100))
            .with_links(vec![Link::new(
                linked,
                vec![OtelKeyValue::new("link.reason", "retry-of")],
                0,
            )])
            .start_with_context(&tracer, &cx);
        child.add_event_with_timestamp(
            "cache miss",
            at(150),
            vec![
                OtelKeyValue::new("cache.key", "cart:1"),
                OtelKeyValue::new("cache.hit", false),
            ],
        );
        child.set_status(OtelStatus::error("database unavailable"));
        child.end_with_timestamp(at(200));
        let root = cx.span();
        root.set_status(OtelStatus::Ok);
        root.end_with_timestamp(at(1_000));
    }
}

/// A counter, an up-down counter, a gauge and a histogram.
fn sdk_metrics(provider: &SdkMeterProvider) {
    use opentelemetry::metrics::MeterProvider as _;
    let meter = provider.meter_with_scope(sdk_scope());
    let counter = meter
        .u64_counter("e2e.requests")
        .with_unit("{request}")
        .with_description("Requests served")
        .build();
    counter.add(5, &[OtelKeyValue::new("method", "GET")]);
    counter.add(1, &[OtelKeyValue::new("method", "POST")]);
    meter
        .i64_up_down_counter("e2e.queue.depth")
        .build()
        .add(-3, &[]);
    meter
        .f64_gauge("e2e.temperature")
        .with_unit("Cel")
        .build()
        .record(21.5, &[OtelKeyValue::new("room", "lab")]);
    let histogram = meter
        .f64_histogram("e2e.latency")
        .with_unit("ms")
        .with_boundaries(vec![10.0, 100.0, 1000.0])
        .build();
    for v in [5.0, 15.0, 50.5, 150.0, 1500.0] {
        histogram.record(v, &[OtelKeyValue::new("route", "/cart")]);
    }
}

/// Log records with bodies of every kind, severities, attributes and trace context.
fn sdk_logs(provider: &SdkLoggerProvider) {
    use opentelemetry::logs::{
        AnyValue as Body, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
    };
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
    let logger = provider.logger_with_scope(sdk_scope());
    let bodies = [
        Body::String("hello, world".into()),
        Body::Int(i64::MIN),
        Body::Double(2.5),
        Body::Boolean(true),
        Body::Bytes(Box::new(vec![0, 1, 2, 255])),
        Body::ListAny(Box::new(vec![Body::Int(1), Body::String("two".into())])),
        Body::Map(Box::new(HashMap::from([(
            opentelemetry::Key::new("k"),
            Body::String("v".into()),
        )]))),
    ];
    for (seq, body) in bodies.into_iter().enumerate() {
        let mut record = logger.create_log_record();
        record.set_body(body);
        record.set_severity_number(Severity::Warn);
        record.set_severity_text("WARN");
        record.set_event_name("e2e.event");
        record.set_timestamp(
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + seq as u64),
        );
        record.set_trace_context(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            Some(TraceFlags::SAMPLED),
        );
        record.add_attribute("seq", seq as i64);
        record.add_attribute("attr.double", -1.25);
        logger.emit(record);
    }
}

#[test]
fn otel_sdk_through_agent_kafka_and_gateway_keeps_every_field() {
    use opentelemetry_otlp::{
        LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig as _,
        WithHttpConfig as _,
    };
    let broker = Broker::start();
    for encoding in ["otlp_proto", "otlp_json"] {
        let topics = ["spans", "metrics", "logs"].map(|t| format!("{encoding}-{t}"));
        for t in &topics {
            broker.create_topic(t, 1);
        }
        let [spans, metrics_topic, logs_topic] = &topics;
        let sections = format!(
            "    traces: {{topic: {spans}}}\n    metrics: {{topic: {metrics_topic}}}\n    logs: {{topic: {logs_topic}}}\n"
        );
        let agent = Collector::start(
            &agent_config(
                &broker.brokers(),
                &format!("    encoding: {encoding}\n{sections}"),
            ),
            &[],
        );
        // The receiver takes no `encoding`: the messages' headers say which it is.
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
            ),
            &[],
        );
        let recorder = Recorder::start(agent.http);
        let http = || {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::blocking::Client::new()
        };
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(sdk_resource())
            .with_batch_exporter(
                SpanExporter::builder()
                    .with_http()
                    .with_http_client(http())
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(recorder.url("/v1/traces"))
                    .build()
                    .unwrap(),
            )
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(sdk_resource())
            .with_periodic_exporter(
                MetricExporter::builder()
                    .with_http()
                    .with_http_client(http())
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(recorder.url("/v1/metrics"))
                    .build()
                    .unwrap(),
            )
            .build();
        let logger_provider = SdkLoggerProvider::builder()
            .with_resource(sdk_resource())
            .with_batch_exporter(
                LogExporter::builder()
                    .with_http()
                    .with_http_client(http())
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(recorder.url("/v1/logs"))
                    .build()
                    .unwrap(),
            )
            .build();
        sdk_spans(&tracer_provider);
        sdk_metrics(&meter_provider);
        sdk_logs(&logger_provider);
        tracer_provider.force_flush().unwrap();
        meter_provider.force_flush().unwrap();
        logger_provider.force_flush().unwrap();
        tracer_provider.shutdown().unwrap();
        meter_provider.shutdown().unwrap();
        logger_provider.shutdown().unwrap();

        let sent = Items::of_requests(&recorder.accepted.lock().unwrap()).distinct();
        assert_eq!(
            (sent.spans.len(), sent.logs.len()),
            (6, 7),
            "the agent did not accept everything the SDK sent; agent log:\n{}",
            agent.logs()
        );
        assert!(sent.metrics.len() >= 4, "{sent:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let got = loop {
            let got = Items::of_output(&gateway).distinct();
            let has_all = |have: &[String], want: &[String]| want.iter().all(|w| have.contains(w));
            if has_all(&got.spans, &sent.spans)
                && has_all(&got.metrics, &sent.metrics)
                && has_all(&got.logs, &sent.logs)
            {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "{encoding}: the gateway wrote {} of {} spans, {} of {} metrics, {} of {} log records\nagent log:\n{}\ngateway log:\n{}",
                got.spans.len(),
                sent.spans.len(),
                got.metrics.len(),
                sent.metrics.len(),
                got.logs.len(),
                sent.logs.len(),
                agent.logs(),
                gateway.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // Nothing more and nothing altered: equal item by item, field by field.
        assert_eq!(got.spans, sent.spans, "{encoding}: spans");
        assert_eq!(got.metrics, sent.metrics, "{encoding}: metrics");
        assert_eq!(got.logs, sent.logs, "{encoding}: log records");
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

/// A gateway reading logs from `topic` into `@DIR@/out.jsonl`. The file exporter answers only
/// once a batch is written, so an offset is committed only for data on disk: killing the
/// gateway loses nothing. `extra` is more of the receiver's settings (indented by 4).
fn gateway_config(brokers: &str, group: &str, topic: &str, extra: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: {brokers}
    group_id: {group}
    initial_offset: earliest
    logs: {{topic: {topic}}}
{extra}
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    flush_interval: 0s
    sending_queue: {{wait_for_delivery: true}}
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

/// Log bodies (strings) in a gateway's output so far; a last line still being written (or cut
/// short by a kill) is left out.
fn bodies(gateway: &Collector) -> Vec<String> {
    let text = std::fs::read_to_string(gateway.path("out.jsonl")).unwrap_or_default();
    let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
    complete
        .lines()
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

/// A client posting one log record after another (`seq-N`, from services `svc-0..services`)
/// to an agent until stopped, remembering which ones the agent acknowledged (200).
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    acked: Arc<Mutex<Vec<(u64, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(agent_http: u16, services: u64, pause: Duration) -> Stream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, sent, acked) = (stop.clone(), sent.clone(), acked.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let body = format!("seq-{seq}");
                    let request = one_log(&format!("svc-{}", seq % services), &body);
                    let answer = client
                        .post(format!("http://127.0.0.1:{agent_http}/v1/logs"))
                        .header("content-type", "application/x-protobuf")
                        .body(request.encode_to_vec())
                        .send();
                    // Anything but a 200 is not the agent's promise: the client would retry it.
                    if answer.is_ok_and(|r| r.status() == 200) {
                        acked.lock().unwrap().push((seq, body));
                    }
                    seq += 1;
                    sent.store(seq, Ordering::SeqCst);
                    std::thread::sleep(pause);
                }
            })
        };
        Stream {
            stop,
            sent,
            acked,
            thread: Some(thread),
        }
    }

    /// How many records have been posted so far (acknowledged or not).
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    fn acked(&self) -> Vec<(u64, String)> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops posting; returns every record the agent acknowledged.
    fn finish(mut self) -> Vec<(u64, String)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Compares what gateways wrote with what the agent acknowledged: every acknowledged record
/// must be there (at least once). Prints and returns the number of duplicates.
fn delivered_in_full(
    what: &str,
    acked: &[(u64, String)],
    gateways: &[&Collector],
    agent: &Collector,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut count: HashMap<String, usize> = HashMap::new();
        for g in gateways {
            for b in bodies(g) {
                *count.entry(b).or_default() += 1;
            }
        }
        let lost: Vec<&str> = acked
            .iter()
            .filter(|(_, b)| !count.contains_key(b))
            .map(|(_, b)| b.as_str())
            .collect();
        if lost.is_empty() {
            let duplicates: usize = count.values().map(|n| n - 1).sum();
            let delivered: usize = count.values().sum();
            println!(
                "{what}: {} acknowledged, {delivered} delivered, {duplicates} duplicates, 0 lost",
                acked.len()
            );
            return duplicates;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = gateways.iter().map(|g| g.logs()).collect();
            panic!(
                "{what}: {} of {} acknowledged records lost: {:?}...\nagent log:\n{}\ngateway logs:\n{}",
                lost.len(),
                acked.len(),
                &lost[..lost.len().min(20)],
                agent.logs(),
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded) until `done` holds, re-checking every 100 ms.
fn wait_until(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A short consumer-group session, so the group notices a lost member (or a lost coordinator)
/// in seconds rather than librdkafka's default 45.
const SHORT_SESSION: &str =
    "    librdkafka: {\"session.timeout.ms\": \"6000\", \"heartbeat.interval.ms\": \"500\"}\n";

#[test]
fn a_broker_outage_in_a_steady_stream_loses_nothing_acknowledged() {
    let mut broker = Broker::start_sqlite();
    broker.create_topic("outage", 2);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            // Not idempotent: tansu 0.6.0's SQLite engine panics on a produce from a producer
            // id it knew before a restart (`idempotent_message_check`: "more or less than one
            // row") and drops the connection, so an idempotent producer could never resume.
            "    logs: {topic: outage}\n    partition_logs_by_resource_attributes: true\n    timeout: 1s\n    producer: {idempotent: false}\n    retry_on_failure: {initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0s}\n",
        ),
        &[],
    );
    let gateway = Collector::start(
        &gateway_config(&broker.brokers(), "outage", "outage", SHORT_SESSION),
        &[],
    );
    let stream = Stream::start(agent.http, 4, Duration::from_millis(25));
    wait_until(
        "the stream never reached the gateway",
        Duration::from_secs(60),
        || bodies(&gateway).len() >= 20,
        || format!("agent:\n{}\ngateway:\n{}", agent.logs(), gateway.logs()),
    );

    // The broker goes away in the middle of the stream, for more than 10 seconds.
    broker.stop();
    let down_from = stream.sent();
    let down_at = Instant::now();
    wait_until(
        "the agent never noticed the outage",
        Duration::from_secs(60),
        || agent.logs().contains("export failed, will retry"),
        || agent.logs(),
    );
    std::thread::sleep(Duration::from_secs(12).saturating_sub(down_at.elapsed()));
    let down_until = stream.sent();
    // The agent went on acknowledging into its queue meanwhile.
    let acked_while_down = stream
        .acked()
        .iter()
        .filter(|(seq, _)| (down_from..down_until).contains(seq))
        .count();
    assert!(
        acked_while_down > 0,
        "nothing acknowledged during the outage; agent log:\n{}",
        agent.logs()
    );

    // Back with its data; the stream goes on until records sent after the restart arrive.
    let outage = down_at.elapsed();
    broker.launch();
    let back_from = stream.sent();
    wait_until(
        "nothing sent after the restart arrived",
        Duration::from_secs(120),
        || {
            bodies(&gateway).iter().any(|b| {
                b.strip_prefix("seq-")
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= back_from)
            })
        },
        || {
            format!(
                "agent:\n{}\ngateway:\n{}\nbroker:\n{}",
                agent.logs(),
                gateway.logs(),
                broker.log()
            )
        },
    );
    let acked = stream.finish();
    println!(
        "outage: {acked_while_down} records acknowledged while the broker was down ({} s)",
        outage.as_secs()
    );
    delivered_in_full("broker outage", &acked, &[&gateway], &agent);
}

#[test]
fn a_consumer_group_of_two_shares_partitions_and_survives_a_stopped_member() {
    let broker = Broker::start();
    broker.create_topic("shared", 4);
    group_of_two_loses_a_member(&broker.brokers(), "TERM");
}

/// The issue's "kill one gateway mid-stream", against tansu. Ignored because tansu 0.6.0
/// never evicts a member whose heartbeats stop: the survivor's heartbeats keep succeeding in
/// the old generation (seen in librdkafka's `cgrp` debug log for 120 s with
/// `session.timeout.ms` 6000), and a member joining later triggers a rebalance that still
/// hands partitions to the dead member. Run it against a broker that expires sessions
/// (`--ignored`); the test below runs the same scenario against librdkafka's mock cluster,
/// which does.
#[test]
#[ignore = "tansu 0.6.0 does not expire the session of a killed group member"]
fn a_consumer_group_of_two_survives_a_killed_member() {
    let broker = Broker::start();
    broker.create_topic("shared", 4);
    group_of_two_loses_a_member(&broker.brokers(), "KILL");
}

/// `kill -9` of one gateway mid-stream: its session expires, the group rebalances, and the
/// survivor takes over its partitions from the last committed offsets. The broker is
/// librdkafka's mock cluster (in this test process, on a real TCP port the sluice processes
/// connect to), because tansu does not expire sessions (see the test above).
#[test]
fn a_consumer_group_of_two_survives_a_killed_member_on_a_broker_that_expires_sessions() {
    let cluster = sluice_exporters::kafka::rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("shared", 4, 1).unwrap();
    group_of_two_loses_a_member(&cluster.bootstrap_servers(), "KILL");
}

/// Two gateways in one group share the partitions of a topic `shared` (4 partitions) fed by
/// a steady stream; then one of them gets `signal` mid-stream and the other must take over
/// its partitions, with every record the agent acknowledged delivered (duplicates allowed and
/// counted, none lost).
fn group_of_two_loses_a_member(brokers: &str, signal: &str) {
    let agent = Collector::start(
        &agent_config(
            brokers,
            "    logs: {topic: shared}\n    partition_logs_by_resource_attributes: true\n",
        ),
        &[],
    );
    let first = Collector::start(
        &gateway_config(brokers, "pair", "shared", SHORT_SESSION),
        &[],
    );
    let second = Collector::start(
        &gateway_config(brokers, "pair", "shared", SHORT_SESSION),
        &[],
    );
    // 16 services, spread over the 4 partitions by their key.
    let stream = Stream::start(agent.http, 16, Duration::from_millis(20));
    wait_until(
        "both group members never got data",
        Duration::from_secs(90),
        || !bodies(&first).is_empty() && !bodies(&second).is_empty(),
        || format!("first:\n{}\nsecond:\n{}", first.logs(), second.logs()),
    );
    let services_from = |g: &Collector, from: u64| -> std::collections::BTreeSet<u64> {
        bodies(g)
            .iter()
            .filter_map(|b| b.strip_prefix("seq-")?.parse::<u64>().ok())
            .filter(|n| *n >= from)
            .map(|n| n % 16)
            .collect()
    };
    println!(
        "consumer group: first has services {:?}, second {:?}",
        services_from(&first, 0),
        services_from(&second, 0)
    );

    common::signal(second.pid(), signal);
    let lost_at = stream.sent();
    wait_until(
        "the surviving member never took over every partition",
        Duration::from_secs(120),
        || services_from(&first, lost_at).len() == 16,
        || {
            format!(
                "services since SIG{signal}: {:?} (sent {})\nfirst:\n{}\nsecond:\n{}",
                services_from(&first, lost_at),
                stream.sent(),
                first.logs(),
                second.logs()
            )
        },
    );
    let acked = stream.finish();
    delivered_in_full(
        &format!("consumer group, SIG{signal}"),
        &acked,
        &[&first, &second],
        &agent,
    );
}

/// Whether a client with these SASL settings can talk to the broker (reads its metadata).
fn metadata_with(
    broker: &Broker,
    mechanism: &str,
    user: &str,
    password: &str,
) -> Result<(), String> {
    let producer: sluice_exporters::kafka::rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .create()
        .unwrap();
    use sluice_exporters::kafka::rdkafka::producer::Producer as _;
    producer
        .client()
        .fetch_metadata(None, Duration::from_secs(30))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn exporter_and_receiver_authenticate_with_scram() {
    let mut broker = Broker::start_sqlite();
    broker.create_topic("secure", 1);
    // Users are made while the broker is open, then it restarts requiring authentication (its
    // SQLite storage keeps them).
    for (name, password, mechanism) in [
        ("agent", "agent-secret", "scram256"),
        ("gateway", "gateway-secret", "scram512"),
    ] {
        let status = Command::new(tansu_path())
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", broker.port))
            .args(["--mechanism", mechanism, name, password])
            .status()
            .unwrap();
        assert!(status.success(), "cannot create user {name}: {status}");
    }
    broker.stop();
    broker.authentication = true;
    broker.launch();

    // The broker now refuses a wrong password and takes the right one.
    assert!(metadata_with(&broker, "SCRAM-SHA-256", "agent", "wrong").is_err());
    metadata_with(&broker, "SCRAM-SHA-256", "agent", "agent-secret")
        .unwrap_or_else(|e| panic!("{e}\nbroker log:\n{}", broker.log()));

    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: secure}\n    auth:\n      sasl: {username: agent, password: agent-secret, mechanism: SCRAM-SHA-256}\n",
        ),
        &[],
    );
    let gateway = Collector::start(
        &gateway_config(
            &broker.brokers(),
            "secure",
            "secure",
            "    auth:\n      sasl: {username: gateway, password: gateway-secret, mechanism: SCRAM-SHA-512}\n",
        ),
        &[],
    );
    post(
        agent.http,
        "/v1/logs",
        one_log("a", "authenticated").encode_to_vec(),
    );
    wait_until(
        "nothing arrived through the authenticating broker",
        Duration::from_secs(60),
        || bodies(&gateway).contains(&"authenticated".to_string()),
        || {
            format!(
                "agent:\n{}\ngateway:\n{}\nbroker:\n{}",
                agent.logs(),
                gateway.logs(),
                broker.log()
            )
        },
    );
}

/// A gateway whose broker went away at the same moment as its SIGTERM used to keep running
/// for 20 minutes, until killed: closing the consumer waited on the network. Shutdown must end
/// within `service.shutdown_timeout` whatever the broker does.
#[test]
fn a_gateway_stops_within_its_shutdown_timeout_when_the_broker_is_gone() {
    let broker = Broker::start();
    broker.create_topic("gone", 2);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: gone}\n    partition_logs_by_resource_attributes: true\n",
        ),
        &[],
    );
    let template = gateway_config(&broker.brokers(), "gone", "gone", SHORT_SESSION)
        .replace("service:\n", "service:\n  shutdown_timeout: 2s\n");
    let mut gateway = Collector::start(&template, &[]);
    let stream = Stream::start(agent.http, 4, Duration::from_millis(10));
    wait_until(
        "the stream never reached the gateway",
        Duration::from_secs(60),
        || bodies(&gateway).len() >= 20,
        || format!("agent:\n{}\ngateway:\n{}", agent.logs(), gateway.logs()),
    );
    // The broker stops answering (frozen, as behind a dropped network link) as the gateway is
    // told to stop, data still flowing.
    let broker_pid = broker.child.as_ref().map(|c| c.id()).unwrap();
    common::signal(broker_pid, "STOP");
    let started = Instant::now();
    let status = gateway.stop();
    drop(stream);
    assert!(status.success(), "{status:?}: {}", gateway.logs());
    // The bound is the shutdown timeout plus what counting and exiting take, generously: the
    // old behaviour did not end at all.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}: {}",
        started.elapsed(),
        gateway.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// The OTel Collector's keys, end to end

/// Produces one log record with `body` (OTLP protobuf) to `topic`, with these headers.
fn produce_log(brokers: &str, topic: &str, body: &str, headers: &[(&str, &str)]) {
    use sluice_exporters::kafka::rdkafka::message::{Header, OwnedHeaders};
    use sluice_exporters::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let mut h = OwnedHeaders::new();
    for (key, value) in headers {
        h = h.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let payload = one_log("producer", body).resource_logs;
    let mut bytes = Vec::new();
    sluice_pipeline::codec::encode_proto::<Logs>(&payload, &mut bytes);
    producer
        .send(BaseRecord::<(), [u8]>::to(topic).payload(&bytes).headers(h))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// The group's committed offset of partition 0 of `topic`, if it has one.
fn committed(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    use sluice_exporters::kafka::rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    match committed.find_partition(topic, 0).map(|p| p.offset()) {
        Some(Offset::Offset(n)) => Some(n),
        _ => None,
    }
}

/// A gateway whose `kafka` receiver has `receiver` (YAML lines, indented by 4) and writes logs
/// to `@DIR@/out.jsonl`.
fn gateway_with(brokers: &str, receiver: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: {brokers}
    initial_offset: earliest
{receiver}
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    flush_interval: 0s
    sending_queue: {{wait_for_delivery: true}}
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

#[test]
fn regular_expression_topics_follow_the_cluster_and_leave_out_excluded_ones() {
    let broker = Broker::start();
    for topic in ["app-web", "app-internal", "audit"] {
        broker.create_topic(topic, 1);
        produce_log(&broker.brokers(), topic, topic, &[]);
    }
    let mut gateway = Collector::start(
        &gateway_with(
            &broker.brokers(),
            "    group_id: patterns\n    metadata: {refresh_interval: 1s}\n    logs:\n      topics: [\"^app-\"]\n      exclude_topics: [\"-internal$\"]\n",
        ),
        &[],
    );
    wait_until(
        "the matching topic was never consumed",
        Duration::from_secs(60),
        || bodies(&gateway).contains(&"app-web".to_string()),
        || gateway.logs(),
    );
    // A matching topic created later is found at the next look at the cluster.
    broker.create_topic("app-late", 1);
    produce_log(&broker.brokers(), "app-late", "app-late", &[]);
    wait_until(
        "a topic created later was never consumed",
        Duration::from_secs(60),
        || bodies(&gateway).contains(&"app-late".to_string()),
        || gateway.logs(),
    );
    assert!(gateway.stop().success());
    let mut got = bodies(&gateway);
    got.sort();
    got.dedup();
    assert_eq!(got, ["app-late", "app-web"]);
    // The excluded and the unmatched topic were never even assigned to the group.
    assert_eq!(
        committed(&broker.brokers(), "patterns", "app-internal"),
        None
    );
    assert_eq!(committed(&broker.brokers(), "patterns", "audit"), None);
    assert_eq!(committed(&broker.brokers(), "patterns", "app-web"), Some(1));
}

#[test]
fn record_headers_of_the_agent_become_resource_attributes_at_the_gateway() {
    let broker = Broker::start();
    broker.create_topic("tenants", 1);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: tenants}\n    signal_header: true\n    record_headers:\n      tenant: acme\n",
        ),
        &[],
    );
    let gateway = Collector::start(
        &gateway_with(
            &broker.brokers(),
            "    group_id: tenants\n    logs: {topics: [tenants]}\n    header_extraction:\n      extract_headers: true\n      headers: [tenant, otelcol.signal, missing]\n",
        ),
        &[],
    );
    post(
        agent.http,
        "/v1/logs",
        one_log("svc", "with headers").encode_to_vec(),
    );
    wait_until(
        "the record never reached the gateway",
        Duration::from_secs(60),
        || !bodies(&gateway).is_empty(),
        || format!("agent:\n{}\ngateway:\n{}", agent.logs(), gateway.logs()),
    );
    let text = std::fs::read_to_string(gateway.path("out.jsonl")).unwrap();
    let resources = decode_json::<Logs>(text.lines().next().unwrap().as_bytes()).unwrap();
    let attributes = &resources[0].resource.as_ref().unwrap().attributes;
    let get = |key: &str| {
        attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
    };
    assert_eq!(get("kafka.header.tenant").as_deref(), Some("acme"));
    assert_eq!(get("kafka.header.otelcol.signal").as_deref(), Some("logs"));
    assert_eq!(get("kafka.header.missing"), None);
    // What the agent received is there as it was.
    assert_eq!(get("service.name").as_deref(), Some("svc"));
}

/// A gateway from topic `marking` (group `group`) to an OTLP/HTTP backend, with no queue and no
/// retries of its own, so a failed export reaches the receiver and `marking` decides.
fn marking_gateway(brokers: &str, group: &str, backend: &str, marking: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: {brokers}
    group_id: {group}
    initial_offset: earliest
    logs: {{topics: [marking]}}
{marking}
exporters:
  otlphttp:
    endpoint: {backend}
    compression: none
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs: {{receivers: [kafka], exporters: [otlphttp]}}
"#
    )
}

/// The log bodies of the requests a backend answered with 200, in order.
fn delivered(backend: &common::scripted_http::HttpServer, refused: usize) -> Vec<String> {
    backend
        .requests_to("/v1/logs")
        .iter()
        .skip(refused)
        .flat_map(|r| {
            ExportLogsServiceRequest::decode(r.body.as_slice())
                .unwrap()
                .resource_logs
        })
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .filter_map(|l| match l.body.and_then(|b| b.value) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn message_marking_skips_or_keeps_a_message_the_pipeline_failed() {
    use common::scripted_http::{HttpServer, Reply};
    let broker = Broker::start();
    broker.create_topic("marking", 1);
    for body in ["one", "two", "three"] {
        produce_log(&broker.brokers(), "marking", body, &[]);
    }

    // `on_error: true`: the first export fails once, the message is marked anyway, and the
    // partition goes on.
    let backend = HttpServer::start();
    backend.script("/v1/logs", vec![Reply::status(503)]);
    let mut gateway = Collector::start(
        &marking_gateway(
            &broker.brokers(),
            "skipping",
            &backend.url(),
            "    message_marking: {after: true, on_error: true}",
        ),
        &[],
    );
    backend.wait_for(3, &gateway);
    assert!(gateway.stop().success());
    assert_eq!(delivered(&backend, 1), ["two", "three"]);
    assert_eq!(committed(&broker.brokers(), "skipping", "marking"), Some(3));

    // `on_error: false` (and no error_backoff): the partition stops at the failed message;
    // nothing after it is handed over or committed, so the next run starts with it again and
    // nothing is lost.
    let backend = HttpServer::start();
    backend.script("/v1/logs", vec![Reply::status(503)]);
    let template = marking_gateway(
        &broker.brokers(),
        "keeping",
        &backend.url(),
        "    message_marking: {after: true}",
    );
    let mut gateway = Collector::start(&template, &[]);
    backend.wait_for(1, &gateway);
    wait_until(
        "the gateway never said the partition stopped",
        Duration::from_secs(60),
        || gateway.logs().contains("the partition stops there"),
        || gateway.logs(),
    );
    assert!(gateway.stop().success());
    assert_eq!(
        backend.requests().len(),
        1,
        "a message after the failed one was handed over"
    );
    assert_eq!(committed(&broker.brokers(), "keeping", "marking"), None);
    let gateway = Collector::start(&template, &[]);
    backend.wait_for(2, &gateway);
    wait_until(
        "the stopped partition was not consumed again",
        Duration::from_secs(60),
        || delivered(&backend, 1).len() >= 3,
        || gateway.logs(),
    );
    assert_eq!(delivered(&backend, 1), ["one", "two", "three"]);
}

/// FNV-1a 32 of the key as a signed number, Go's remainder, made positive: what sarama's hash
/// partitioner (and so the OTel Collector's exporter) picks. Written out here, apart from the
/// exporter's own.
fn reference_partition(key: &[u8], partitions: i32) -> i32 {
    let mut hash: u32 = 2_166_136_261;
    for byte in key {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(16_777_619);
    }
    ((hash as i32) % partitions).abs()
}

#[test]
fn keyed_records_land_on_the_partitions_the_collector_picks() {
    let broker = Broker::start();
    broker.create_topic("keyed-logs", 5);
    broker.create_topic("keyed-spans", 5);
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: keyed-logs}\n    traces: {topic: keyed-spans}\n    partition_logs_by_resource_attributes: true\n    partition_traces_by_id: true\n",
        ),
        &[],
    );
    for i in 0..12 {
        post(
            agent.http,
            "/v1/logs",
            one_log(&format!("svc-{i}"), "keyed").encode_to_vec(),
        );
    }
    let spans: Vec<Span> = (1..=12u8).map(|t| span_of(t, t)).collect();
    post(
        agent.http,
        "/v1/traces",
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource("traced"),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec(),
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "partition-reference")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["keyed-logs", "keyed-spans"]).unwrap();
    let (mut logs_seen, mut traces_seen) = (0, 0);
    let mut partitions = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while logs_seen < 12 || traces_seen < 12 {
        assert!(
            Instant::now() < deadline,
            "{logs_seen} log and {traces_seen} trace messages read; agent log:\n{}",
            agent.logs()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let key = message.key().unwrap().to_vec();
        assert_eq!(
            message.partition(),
            reference_partition(&key, 5),
            "{}: key {key:?}",
            message.topic()
        );
        partitions.insert((message.topic().to_string(), message.partition()));
        if message.topic() == "keyed-logs" {
            // The key is the OTel Collector's hash of the resource's attributes.
            let resources = decode_proto::<Logs>(message.payload().unwrap()).unwrap();
            let attributes = &resources[0].resource.as_ref().unwrap().attributes;
            assert_eq!(key, sluice_exporters::kafka::resource_key(attributes));
            logs_seen += 1;
        } else {
            let resources = decode_proto::<Traces>(message.payload().unwrap()).unwrap();
            let trace_id = &resources[0].scope_spans[0].spans[0].trace_id;
            let hex: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(key, hex.into_bytes());
            traces_seen += 1;
        }
    }
    assert!(
        partitions.len() > 2,
        "everything on few partitions: {partitions:?}"
    );
}

/// A TLS front for a broker: terminates TLS with a test certificate for 127.0.0.1 and passes
/// the bytes on to the broker's plain port (tansu 0.6.0 accepts `--cert` but does not speak
/// TLS). The broker advertises the front, so clients come back through it.
struct TlsFront {
    port: u16,
    listener: Option<std::net::TcpListener>,
    config: Arc<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
    /// The CA that signed the front's certificate, for clients to trust.
    ca_pem: String,
}

impl TlsFront {
    fn listen() -> TlsFront {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice kafka test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        TlsFront {
            port: listener.local_addr().unwrap().port(),
            listener: Some(listener),
            config,
            stop: Arc::new(AtomicBool::new(false)),
            ca_pem,
        }
    }

    /// Passes connections to `127.0.0.1:upstream` until dropped.
    fn serve(&mut self, upstream: u16) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let (config, stop) = (self.config.clone(), self.stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (config, stop) = (config.clone(), stop.clone());
                        std::thread::spawn(move || pump(client, upstream, config, stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One client connection through the front, both ways, until either side closes.
fn pump(
    client: TcpStream,
    upstream: u16,
    config: Arc<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
) {
    use std::io::{ErrorKind, Read, Write};
    let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    let tick = Some(Duration::from_millis(5));
    if client.set_read_timeout(tick).is_err() || broker.set_read_timeout(tick).is_err() {
        return;
    }
    let mut tls = rustls::StreamOwned::new(connection, client);
    let mut broker = broker;
    let mut buf = vec![0u8; 64 * 1024];
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    while !stop.load(Ordering::SeqCst) {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if broker.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        match broker.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn tls_in_its_current_and_its_older_place_reaches_a_broker_behind_tls() {
    let mut front = TlsFront::listen();
    let broker = Broker::start_advertising("memory://tansu/", common::free_port(), front.port);
    front.serve(broker.port);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let brokers = format!("127.0.0.1:{}", front.port);
    let mut admin = ClientConfig::new();
    admin
        .set("bootstrap.servers", &brokers)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", ca.to_str().unwrap());
    Broker::create_topic_through(&admin, "secured", 1);

    // The agent has `tls` where the OTel Collector has it now, the gateway where it was before
    // v0.124 (`auth.tls`).
    let agent = Collector::start(
        &agent_config(
            &brokers,
            &format!(
                "    logs: {{topic: secured}}\n    tls:\n      ca_file: {}\n",
                ca.display()
            ),
        ),
        &[],
    );
    let gateway = Collector::start(
        &gateway_with(
            &brokers,
            &format!(
                "    group_id: secured\n    logs: {{topics: [secured]}}\n    auth:\n      tls:\n        ca_file: {}\n",
                ca.display()
            ),
        ),
        &[],
    );
    post(
        agent.http,
        "/v1/logs",
        one_log("svc", "over tls").encode_to_vec(),
    );
    wait_until(
        "the record never crossed TLS",
        Duration::from_secs(60),
        || bodies(&gateway).contains(&"over tls".to_string()),
        || format!("agent:\n{}\ngateway:\n{}", agent.logs(), gateway.logs()),
    );

    // Without the CA the broker's certificate is not trusted: nothing goes through, and the
    // agent says why.
    let untrusting = Collector::start(
        &agent_config(&brokers, "    logs: {topic: secured}\n    tls: {}\n"),
        &[],
    );
    let client = reqwest::blocking::Client::new();
    let _ = client
        .post(format!("http://127.0.0.1:{}/v1/logs", untrusting.http))
        .header("content-type", "application/x-protobuf")
        .body(one_log("svc", "untrusted").encode_to_vec())
        .send();
    wait_until(
        "the untrusting agent never reported the certificate",
        Duration::from_secs(60),
        || untrusting.logs().contains("certificate verify failed"),
        || untrusting.logs(),
    );
    assert!(!bodies(&gateway).contains(&"untrusted".to_string()));
}

/// What a client sent as headers (kept with the OTLP receiver's `include_metadata`) chooses
/// the topic (`topic_from_metadata_key`) and is copied to record headers
/// (`include_metadata_keys`): requests of two tenants land on two topics, each record
/// carrying its tenant.
#[test]
fn request_metadata_picks_the_topic_and_becomes_record_headers() {
    let broker = Broker::start();
    for topic in ["fallback", "acme", "globex"] {
        broker.create_topic(topic, 1);
    }
    let agent = Collector::start(
        &agent_config(
            &broker.brokers(),
            "    logs: {topic: fallback, topic_from_metadata_key: x-tenant}\n    include_metadata_keys: [x-tenant]\n",
        )
        .replace(
            "        endpoint: \"@HTTP@\"\n",
            "        endpoint: \"@HTTP@\"\n        include_metadata: true\n",
        ),
        &[],
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    for tenant in ["acme", "globex"] {
        let response = reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{}/v1/logs", agent.http))
            .header("content-type", "application/x-protobuf")
            .header("x-tenant", tenant)
            .body(one_log("svc", &format!("from {tenant}")).encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // One gateway per tenant topic: each sees its tenant's record only (a record on the
    // configured topic `fallback` would reach neither).
    for tenant in ["acme", "globex"] {
        let gateway = Collector::start(
            &gateway_with(
                &broker.brokers(),
                &format!(
                    "    group_id: {tenant}\n    logs: {{topics: [{tenant}]}}\n    header_extraction:\n      extract_headers: true\n      headers: [x-tenant]\n"
                ),
            ),
            &[],
        );
        wait_until(
            "the tenant's record never reached its gateway",
            Duration::from_secs(60),
            || !bodies(&gateway).is_empty(),
            || format!("agent:\n{}\ngateway:\n{}", agent.logs(), gateway.logs()),
        );
        let text = std::fs::read_to_string(gateway.path("out.jsonl")).unwrap();
        let resources = decode_json::<Logs>(text.lines().next().unwrap().as_bytes()).unwrap();
        let attributes = &resources[0].resource.as_ref().unwrap().attributes;
        let header = attributes
            .iter()
            .find(|kv| kv.key == "kafka.header.x-tenant")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            });
        assert_eq!(header.as_deref(), Some(tenant), "{text}");
        assert_eq!(bodies(&gateway), vec![format!("from {tenant}")], "{text}");
    }
}
