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
        Harness::start_with(mode, BOTH_PROTOCOLS).await
    }

    /// Like [`Harness::start`], with `yaml` as the receiver's config (both protocols on port 0).
    async fn start_with(mode: Mode, yaml: &str) -> Harness {
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
            .build_otlp(&component(yaml), outputs, &ctx)
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
    let e = build("protocols:\n  http:\n    compression_algorithms: [gzip, br]\n").unwrap();
    assert!(
        e.contains("test.yaml:3:29: receivers.otlp/test.protocols.http.compression_algorithms[1]"),
        "{e}"
    );
    assert!(e.contains("unknown compression `br`"), "{e}");
    let e = build(
        "protocols:\n  http:\n    cors:\n      allowed_origins: [\"https://*.*.example.com\"]\n",
    )
    .unwrap();
    assert!(
        e.contains("test.yaml:4:24: receivers.otlp/test.protocols.http.cors.allowed_origins[0]"),
        "{e}"
    );
    let e = build("protocols:\n  grpc:\n    transport: unix\n").unwrap();
    assert!(e.contains("protocols.grpc.transport"), "{e}");
    let e = build("protocols:\n  http:\n    response_headers:\n      \"Bad Name\": x\n").unwrap();
    assert!(e.contains("response_headers.Bad Name"), "{e}");
    // Go buffer sizes: accepted, with a warning.
    assert_eq!(
        build("protocols:\n  grpc:\n    read_buffer_size: 1024\n    write_buffer_size: 1024\n"),
        None
    );
    let warnings = ctx.warnings.take();
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().contains("protocols.grpc.read_buffer_size")),
        "{warnings:?}"
    );
}

/// An HTTP/2 call on the gRPC port with `headers` (replacing the defaults of the same name) and
/// `body`: the HTTP status and the gRPC status of the answer, from its headers (trailers-only)
/// or trailers.
async fn raw_grpc(
    address: SocketAddr,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (http::StatusCode, Option<tonic::Status>) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{address}/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        ))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")]
        .iter()
        .chain(headers)
    {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    if let Some(grpc) = tonic::Status::from_header_map(response.headers()) {
        return (status, Some(grpc));
    }
    let collected = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    let grpc = collected
        .trailers()
        .and_then(tonic::Status::from_header_map);
    (status, grpc)
}

/// A gRPC frame holding an empty logs request.
fn empty_message() -> Vec<u8> {
    vec![0, 0, 0, 0, 0]
}

#[tokio::test]
async fn grpc_answers_a_request_that_is_not_grpc_with_415() {
    let h = Harness::start(Mode::Accept).await;
    let (http_status, grpc) = raw_grpc(
        h.grpc,
        &[("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(http_status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let grpc = grpc.expect("grpc-status");
    assert_eq!(grpc.code(), Code::Unimplemented, "{grpc:?}");
    assert!(grpc.message().contains("application/json"), "{grpc:?}");

    // gRPC, with a codec other than protobuf: a gRPC answer.
    let (http_status, grpc) = raw_grpc(
        h.grpc,
        &[("content-type", "application/grpc+json")],
        empty_message(),
    )
    .await;
    assert_eq!(http_status, http::StatusCode::OK);
    assert_eq!(grpc.expect("grpc-status").code(), Code::Unimplemented);

    // The same call as protobuf is accepted.
    let (http_status, grpc) = raw_grpc(h.grpc, &[], empty_message()).await;
    assert_eq!(http_status, http::StatusCode::OK);
    assert_eq!(grpc.expect("grpc-status").code(), Code::Ok);
    h.stop().await;
}

#[tokio::test]
async fn grpc_answers_an_expired_deadline_with_deadline_exceeded() {
    let h = Harness::start(Mode::Accept).await;
    let request = logs(1, "late").encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
    framed.extend_from_slice(&request);
    let (_, grpc) = raw_grpc(h.grpc, &[("grpc-timeout", "0n")], framed.clone()).await;
    assert_eq!(grpc.expect("grpc-status").code(), Code::DeadlineExceeded);
    assert!(
        h.consumer.received().is_empty(),
        "a call past its deadline was delivered"
    );
    h.stop().await;

    // A deadline that passes while the pipeline holds the request.
    let h = Harness::start(Mode::Block).await;
    let (_, grpc) = raw_grpc(h.grpc, &[("grpc-timeout", "1n")], framed).await;
    assert_eq!(grpc.expect("grpc-status").code(), Code::DeadlineExceeded);
    h.stop().await;
}

/// No timeout anywhere: connections stay until their client goes.
const CAPPED: &str = "
protocols:
  grpc:
    endpoint: 127.0.0.1:0
    max_connections: 2
    read_header_timeout: 0s
    keepalive:
      server_parameters:
        max_connection_idle: 0s
  http:
    endpoint: 127.0.0.1:0
    max_connections: 2
    read_header_timeout: 0s
    read_timeout: 0s
    idle_timeout: 0s
";

impl Harness {
    /// A series of the receiver's metrics, if it exists.
    fn sample(&self, series: &str) -> Option<i64> {
        let text = self.ctx.telemetry.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    /// Waits (up to 10 s) for a series to read `want`.
    async fn wait_for(&self, series: &str, want: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.sample(series) != Some(want) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} is {:?}, not {want}:\n{}",
                self.sample(series),
                self.ctx.telemetry.metrics.render()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn series(name: &str, transport: &str, extra: &str) -> String {
    format!("{name}{{receiver=\"otlp/test\",transport=\"{transport}\"{extra}}}")
}

/// Reads until the server closes the connection (EOF or reset), for up to 10 s.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .is_ok()
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    let h = Harness::start_with(Mode::Accept, CAPPED).await;
    for (transport, address) in [("http", h.http), ("grpc", h.grpc)] {
        let open = series("sluice_receiver_connections", transport, "");
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        h.wait_for(&open, 2).await;
        let mut over = tokio::net::TcpStream::connect(address).await.unwrap();
        assert!(
            closed_by_server(&mut over).await,
            "{transport}: the connection over the cap stayed open"
        );
        h.wait_for(
            &series("sluice_receiver_connections_refused_total", transport, ""),
            1,
        )
        .await;
        drop(held);
        h.wait_for(&open, 0).await;
    }
    // Served again once the others went.
    let response = post(
        &http_client(),
        &h.url("/v1/traces"),
        "application/x-protobuf",
        traces(1, "after").encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    h.traces_client()
        .await
        .export(traces(1, "after"))
        .await
        .unwrap();
    h.stop().await;
}

const SHORT_TIMEOUTS: &str = "
protocols:
  grpc:
    endpoint: 127.0.0.1:0
    read_header_timeout: 200ms
  http:
    endpoint: 127.0.0.1:0
    read_header_timeout: 200ms
    idle_timeout: 200ms
";

#[tokio::test]
async fn silent_and_partial_connections_are_closed_after_read_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start_with(Mode::Accept, SHORT_TIMEOUTS).await;
    let partial: [(&str, SocketAddr, &[u8]); 5] = [
        ("http", h.http, b""),
        ("http", h.http, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"),
        ("grpc", h.grpc, b""),
        ("grpc", h.grpc, b"PRI * HTTP/2.0\r\n"),
        // The whole HTTP/2 preface and an empty SETTINGS frame, then no request.
        (
            "grpc",
            h.grpc,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        ),
    ];
    let mut streams = Vec::new();
    for (_, address, sent) in partial {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(sent).await.unwrap();
        streams.push(stream);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream).await,
            "connection {i} ({:?}) is still open",
            partial[i].2
        );
    }
    let reason = ",reason=\"read_header_timeout\"";
    h.wait_for(
        &series("sluice_receiver_connections_closed_total", "http", reason),
        2,
    )
    .await;
    h.wait_for(
        &series("sluice_receiver_connections_closed_total", "grpc", reason),
        3,
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start_with(Mode::Accept, SHORT_TIMEOUTS).await;
    let mut stream = tokio::net::TcpStream::connect(h.http).await.unwrap();
    let body = traces(1, "idle").encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(closed_by_server(&mut stream).await);
    h.wait_for(
        &series(
            "sluice_receiver_connections_closed_total",
            "http",
            ",reason=\"idle_timeout\"",
        ),
        1,
    )
    .await;
    assert_eq!(h.consumer.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn without_keep_alives_a_connection_carries_one_request() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start_with(
        Mode::Accept,
        "
protocols:
  http:
    endpoint: 127.0.0.1:0
    keep_alives_enabled: false
  grpc:
    endpoint: 127.0.0.1:0
",
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.http).await.unwrap();
    let body = traces(1, "once").encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    assert!(closed_by_server(&mut stream).await);
    assert_eq!(h.consumer.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn an_answer_slower_than_write_timeout_closes_the_connection() {
    let h = Harness::start_with(
        Mode::Block,
        "
protocols:
  http:
    endpoint: 127.0.0.1:0
    write_timeout: 200ms
  grpc:
    endpoint: 127.0.0.1:0
",
    )
    .await;
    // The pipeline never takes the request: without write_timeout the client would get a 429
    // once the admission wait ran out.
    let sent = http_client()
        .post(h.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces(1, "slow").encode_to_vec())
        .send()
        .await;
    assert!(sent.is_err(), "{sent:?}");
    h.wait_for(
        &series(
            "sluice_receiver_connections_closed_total",
            "http",
            ",reason=\"write_timeout\"",
        ),
        1,
    )
    .await;
    h.stop().await;
}

#[test]
fn max_connections_of_zero_is_a_config_error() {
    let ctx = BuildContext::default();
    let e = OtlpReceiverFactory
        .build(
            &component("protocols:\n  http:\n    max_connections: 0\n"),
            ReceiverOutputs::default(),
            &ctx,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("receivers.otlp/test.protocols.http.max_connections"),
        "{e}"
    );
    assert!(e.contains("at least 1"), "{e}");
}

#[test]
fn the_collector_keepalive_keys_are_accepted() {
    let ctx = BuildContext::default();
    let yaml = "
protocols:
  grpc:
    keepalive:
      server_parameters:
        max_connection_idle: 11s
        max_connection_age: 12s
        max_connection_age_grace: 13s
        time: 30s
        timeout: 5s
      enforcement_policy:
        min_time: 10s
        permit_without_stream: true
  http:
    read_timeout: 1s
    read_header_timeout: 2s
    write_timeout: 3s
    idle_timeout: 4s
    keep_alives_enabled: false
";
    let built = OtlpReceiverFactory.build(&component(yaml), ReceiverOutputs::default(), &ctx);
    assert!(built.is_ok(), "{:?}", built.err().map(|e| e.to_string()));
}
