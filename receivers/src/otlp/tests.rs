//! The OTLP receiver in process: real HTTP and gRPC clients against a receiver built by its
//! factory, whose pipeline is a test consumer that accepts, rejects, fails or blocks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::{
    Batch, BuildContext, Consumer, DeliveryError, ReceiverFactory, ReceiverOutputs, Signal,
};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt;

use super::{OtlpReceiver, OtlpReceiverFactory};
use sluice_pipeline::Lifecycle;

/// What the test pipeline does with every batch.
#[derive(Clone, Debug)]
enum Mode {
    Accept,
    Permanent,
    Retryable(Option<Duration>),
    /// Never takes the batch: the receiver's admission wait runs out (backpressure).
    Block,
}

/// A pipeline stand-in that records the protobuf encoding of every batch it is given.
struct TestConsumer {
    mode: Mode,
    received: Mutex<Vec<Vec<u8>>>,
}

impl TestConsumer {
    fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for TestConsumer {
    async fn consume(&self, batch: Batch<S>) {
        let encoded = S::into_request(batch.resources().to_vec()).encode_to_vec();
        self.received.lock().unwrap().push(encoded);
        match &self.mode {
            Mode::Accept => batch.settle(&Ok(())),
            Mode::Permanent => batch.settle(&Err(DeliveryError::permanent(
                "rejected by the test exporter",
            ))),
            Mode::Retryable(retry_after) => batch.settle(&Err(DeliveryError::Retryable {
                reason: "test exporter is down".into(),
                retry_after: *retry_after,
            })),
            Mode::Block => {
                // Keep the batch (and its acknowledgement) until the receiver gives up.
                futures::future::pending::<()>().await;
                drop(batch);
            }
        }
    }
}

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Receiver,
        id: ComponentId::with_name("otlp", "test"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "receivers.otlp/test".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

const BOTH_PROTOCOLS: &str = "
protocols:
  grpc:
    endpoint: 127.0.0.1:0
    max_recv_msg_size_mib: 1
  http:
    endpoint: 127.0.0.1:0
    traces_url_path: /custom/traces
";

/// A started receiver feeding a [`TestConsumer`] for traces and logs (not metrics).
struct Harness {
    receiver: Arc<OtlpReceiver>,
    consumer: Arc<TestConsumer>,
    ctx: BuildContext,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Harness {
    async fn start(mode: Mode) -> Harness {
        let consumer = Arc::new(TestConsumer {
            mode,
            received: Mutex::new(Vec::new()),
        });
        let outputs = ReceiverOutputs {
            traces: Some(consumer.clone()),
            metrics: None,
            logs: Some(consumer.clone()),
        };
        let ctx = BuildContext::default();
        let receiver = OtlpReceiverFactory
            .build_otlp(&component(BOTH_PROTOCOLS), outputs, &ctx)
            .unwrap();
        receiver.start().await.unwrap();
        let bound = receiver.bound_addresses();
        assert_eq!((bound.grpc.len(), bound.http.len()), (1, 1), "{bound:?}");
        assert_ne!(bound.grpc[0].port(), 0);
        assert_ne!(bound.http[0].port(), 0);
        Harness {
            grpc: bound.grpc[0],
            http: bound.http[0],
            receiver,
            consumer,
            ctx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn traces_client(&self) -> TraceServiceClient<tonic::transport::Channel> {
        TraceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// The value of one of the receiver's counters, as the metrics endpoint would show it.
    fn counter(&self, name: &str, transport: &str) -> u64 {
        let text = self.ctx.telemetry.metrics.render();
        let prefix = format!("{name}{{receiver=\"otlp/test\",transport=\"{transport}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series {prefix} in\n{text}"))
            .parse()
            .unwrap()
    }

    async fn stop(&self) {
        self.receiver
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(30))
            .await;
    }
}

fn http_client() -> reqwest::Client {
    // Workspace builds give reqwest the exporters' `rustls-no-provider`: it needs a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn traces(spans: usize, tag: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(tag.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("{tag}-{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(records: usize, tag: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|i| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("{tag}-{i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The JSON form of a small traces request with `spans` spans (ids as hex, as OTLP/JSON says).
fn traces_json(spans: usize) -> String {
    let spans: Vec<String> = (0..spans)
        .map(|i| {
            format!(
                r#"{{"traceId":"07070707070707070707070707070707","spanId":"{:016x}","name":"json-{i}"}}"#,
                i + 1
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn http_accepts_protobuf_and_json_and_counts_them() {
    let h = Harness::start(Mode::Accept).await;
    let client = http_client();

    let request = traces(3, "proto");
    let r = post(
        &client,
        &h.url("/custom/traces"),
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert!(r.bytes().await.unwrap().is_empty());

    let r = post(
        &client,
        &h.url("/custom/traces"),
        "application/json",
        traces_json(2).into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(&r.bytes().await.unwrap()[..], b"{}");

    // Logs on their default path.
    let r = post(
        &client,
        &h.url("/v1/logs"),
        "application/x-protobuf",
        logs(4, "l").encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);

    // The configured path replaces the default; metrics have no pipeline, so no route.
    for path in ["/v1/traces", "/v1/metrics"] {
        let r = post(&client, &h.url(path), "application/json", b"{}".to_vec()).await;
        assert_eq!(r.status(), 404, "{path}");
    }

    let received = h.consumer.received();
    assert_eq!(received.len(), 3);
    assert_eq!(
        received[0],
        request.encode_to_vec(),
        "protobuf data unchanged"
    );
    let from_json = ExportTraceServiceRequest::decode(&received[1][..]).unwrap();
    let spans = &from_json.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].span_id, 2u64.to_be_bytes().to_vec());
    assert_eq!(spans[1].trace_id, vec![7; 16]);
    assert_eq!(spans[1].name, "json-1");

    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "http"),
        5
    );
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "http"), 0);
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "grpc"),
        0
    );
    assert_eq!(
        h.counter("otelcol_receiver_accepted_log_records_total", "http"),
        4
    );
    h.stop().await;
}

#[tokio::test]
async fn http_permanent_failure_is_400_with_a_status_in_the_request_encoding() {
    let h = Harness::start(Mode::Permanent).await;
    let client = http_client();

    let r = post(
        &client,
        &h.url("/custom/traces"),
        "application/x-protobuf",
        traces(2, "p").encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(header(&r, "retry-after"), None);
    let status = tonic_types::Status::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert_eq!(status.message, "rejected by the test exporter");

    let r = post(
        &client,
        &h.url("/custom/traces"),
        "application/json",
        traces_json(1).into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 3);
    assert_eq!(body["message"], "rejected by the test exporter");

    assert_eq!(h.consumer.received().len(), 2);
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "http"),
        0
    );
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "http"), 3);
    h.stop().await;
}

#[tokio::test]
async fn http_retryable_failure_is_503() {
    let client = http_client();

    let h = Harness::start(Mode::Retryable(None)).await;
    let r = post(
        &client,
        &h.url("/v1/logs"),
        "application/json",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a"}},{"body":{"stringValue":"b"}}]}]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), None);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], Code::Unavailable as i32);
    assert_eq!(body["message"], "test exporter is down");
    assert_eq!(
        h.counter("otelcol_receiver_refused_log_records_total", "http"),
        2
    );
    h.stop().await;

    // A delay the exporter asks for is passed on.
    let h = Harness::start(Mode::Retryable(Some(Duration::from_secs(7)))).await;
    let r = post(
        &client,
        &h.url("/v1/logs"),
        "application/x-protobuf",
        logs(1, "r").encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("7"));
    let status = tonic_types::Status::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, Code::Unavailable as i32);
    h.stop().await;
}

#[tokio::test]
async fn http_backpressure_is_429_with_retry_after() {
    let h = Harness::start(Mode::Block).await;
    let client = http_client();
    let r = post(
        &client,
        &h.url("/custom/traces"),
        "application/x-protobuf",
        traces(2, "b").encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(&r, "retry-after")
        .expect("429 without Retry-After")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let status = tonic_types::Status::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, Code::ResourceExhausted as i32);
    assert_eq!(
        h.consumer.received().len(),
        1,
        "the pipeline was offered it"
    );
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "http"), 2);
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "http"),
        0
    );
    h.stop().await;
}

#[tokio::test]
async fn grpc_statuses_follow_the_pipeline_outcome() {
    // Accepted.
    let h = Harness::start(Mode::Accept).await;
    let mut client = h.traces_client().await;
    let request = traces(3, "g");
    client.export(request.clone()).await.unwrap();
    assert_eq!(h.consumer.received(), vec![request.encode_to_vec()]);
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "grpc"),
        3
    );
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "grpc"), 0);
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "http"),
        0
    );
    // Logs through their own service.
    let mut logs_client = LogsServiceClient::connect(format!("http://{}", h.grpc))
        .await
        .unwrap();
    logs_client.export(logs(2, "gl")).await.unwrap();
    assert_eq!(
        h.counter("otelcol_receiver_accepted_log_records_total", "grpc"),
        2
    );
    h.stop().await;

    // Permanent.
    let h = Harness::start(Mode::Permanent).await;
    let status = h
        .traces_client()
        .await
        .export(traces(2, "g"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "rejected by the test exporter");
    assert!(status.get_details_retry_info().is_none());
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "grpc"), 2);
    h.stop().await;

    // Retryable, with and without a requested delay.
    let h = Harness::start(Mode::Retryable(None)).await;
    let status = h
        .traces_client()
        .await
        .export(traces(1, "g"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "test exporter is down");
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "grpc"), 1);
    h.stop().await;
    let h = Harness::start(Mode::Retryable(Some(Duration::from_secs(7)))).await;
    let status = h
        .traces_client()
        .await
        .export(traces(1, "g"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let info = status.get_details_retry_info().expect("RetryInfo detail");
    assert_eq!(info.retry_delay, Some(Duration::from_secs(7)));
    h.stop().await;
}

#[tokio::test]
async fn grpc_backpressure_is_resource_exhausted_with_retry_info() {
    let h = Harness::start(Mode::Block).await;
    let status = h
        .traces_client()
        .await
        .export(traces(4, "b"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status
        .get_details_retry_info()
        .expect("RESOURCE_EXHAUSTED without RetryInfo is not retried by clients");
    let delay = info.retry_delay.expect("RetryInfo without a delay");
    assert!(delay >= Duration::from_secs(1), "{delay:?}");
    assert_eq!(h.counter("otelcol_receiver_refused_spans_total", "grpc"), 4);
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "grpc"),
        0
    );
    h.stop().await;
}

#[tokio::test]
async fn grpc_accepts_gzip_and_zstd_requests() {
    let h = Harness::start(Mode::Accept).await;
    let gzip = traces(5, "gzip");
    let zstd = traces(6, "zstd");
    h.traces_client()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .export(gzip.clone())
        .await
        .unwrap();
    h.traces_client()
        .await
        .send_compressed(CompressionEncoding::Zstd)
        .export(zstd.clone())
        .await
        .unwrap();
    assert_eq!(
        h.consumer.received(),
        vec![gzip.encode_to_vec(), zstd.encode_to_vec()]
    );
    assert_eq!(
        h.counter("otelcol_receiver_accepted_spans_total", "grpc"),
        11
    );
    h.stop().await;
}

/// A request whose encoding is about `bytes` long (one span with a big name).
fn traces_of_size(bytes: usize) -> ExportTraceServiceRequest {
    let mut request = traces(1, "big");
    request.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(bytes);
    request
}

#[tokio::test]
async fn grpc_rejects_messages_over_max_recv_msg_size() {
    let h = Harness::start(Mode::Accept).await;
    let limit = 1024 * 1024; // max_recv_msg_size_mib: 1
    let too_big = traces_of_size(limit + 1024);
    assert!(too_big.encoded_len() > limit);
    let mut client = h.traces_client().await;
    let status = client.export(too_big.clone()).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    // Compressed, it is tiny on the wire; the limit applies to the decompressed message.
    let status = h
        .traces_client()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .export(too_big)
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert!(h.consumer.received().is_empty());

    // Just under the limit is fine, and the receiver still serves.
    let fits = traces_of_size(limit - 1024);
    assert!(fits.encoded_len() < limit);
    client.export(fits.clone()).await.unwrap();
    assert_eq!(h.consumer.received(), vec![fits.encode_to_vec()]);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let h = Harness::start(Mode::Accept).await;
    let (grpc, http) = (h.grpc, h.http);
    assert!(tokio::net::TcpStream::connect(http).await.is_ok());
    h.stop().await;
    assert_eq!(h.receiver.bound_addresses(), Default::default());
    for address in [grpc, http] {
        assert!(
            tokio::net::TcpStream::connect(address).await.is_err(),
            "{address} still accepts connections after shutdown"
        );
    }
}

#[test]
fn build_reports_config_problems_with_their_key_path() {
    let ctx = BuildContext::default();
    let build = |yaml: &str| {
        OtlpReceiverFactory
            .build(&component(yaml), ReceiverOutputs::default(), &ctx)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(build(BOTH_PROTOCOLS), None);
    let e = build("protocols: {}").unwrap();
    assert!(e.contains("receivers.otlp/test.protocols"), "{e}");
    assert!(e.contains("enable at least one protocol"), "{e}");
    let e = build("protocols:\n  http:\n    logs_url_path: v1/logs\n").unwrap();
    assert!(
        e.contains("receivers.otlp/test.protocols.http.logs_url_path"),
        "{e}"
    );
    let e = build("protocols:\n  grpc:\n    max_recv_msg_size: 4\n").unwrap();
    assert!(e.contains("test.yaml:3:5"), "{e}");
    assert!(e.contains("did you mean `max_recv_msg_size_mib`"), "{e}");
}
