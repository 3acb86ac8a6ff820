//! Trace ids are 16 bytes and span ids 8 bytes, or empty: a request with an id of any other
//! length (3 bytes, a megabyte, 34 hex digits in JSON) is refused whole, as the OTel Collector
//! refuses it, with HTTP 400 or gRPC INVALID_ARGUMENT and a message naming the field and where
//! it is. Nothing of it is written, and the collector goes on serving.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Collector;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
      http:
        endpoint: "@HTTP@"
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
    traces:
      receivers: [otlp]
      exporters: [file/out]
"#;

fn post(port: u16, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

fn request(span: Span) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        name: "fine".into(),
                        ..Default::default()
                    },
                    span,
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn ids_of_the_wrong_length_are_refused_with_the_field_and_where() {
    let c = Collector::start(CONFIG, &[]);
    let protobuf_cases = [
        (
            Span {
                name: "bad-3".into(),
                trace_id: vec![1; 3],
                ..Default::default()
            },
            "trace_id must be 16 bytes or empty, not 3 bytes (field 1 of Span",
        ),
        (
            Span {
                name: "bad-1mb".into(),
                span_id: vec![1; 1 << 20],
                ..Default::default()
            },
            "span_id must be 8 bytes or empty, not 1048576 bytes (field 2 of Span",
        ),
        (
            Span {
                name: "bad-link".into(),
                links: vec![span::Link {
                    trace_id: vec![1; 16],
                    span_id: vec![1; 9],
                    ..Default::default()
                }],
                ..Default::default()
            },
            "span_id must be 8 bytes or empty, not 9 bytes (field 2 of Span.Link",
        ),
    ];
    for (span, expected) in &protobuf_cases {
        let body = request(span.clone()).encode_to_vec();
        let (status, response) = post(c.http, "application/x-protobuf", &body);
        assert_eq!(status, 400, "{response}");
        assert!(response.contains(expected), "{response}");
    }

    // OTLP/JSON: 34 hex digits are 17 bytes.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"fine"},
        {"name":"bad-json","traceId":"0102030405060708090a0b0c0d0e0f1011"}]}]}]}"#;
    let (status, response) = post(c.http, "application/json", json.as_bytes());
    assert_eq!(status, 400, "{response}");
    assert!(
        response.contains(
            "resourceSpans[0].scopeSpans[0].spans[1].traceId must be 16 bytes (32 hex digits) or empty, not 17 bytes"
        ),
        "{response}"
    );

    // gRPC: INVALID_ARGUMENT with the same message.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", c.grpc))
            .await
            .unwrap();
        client
            .export(request(protobuf_cases[0].0.clone()))
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(protobuf_cases[0].1), "{status:?}");

    // Valid and empty ids are taken; nothing of the refused requests was written.
    let good = Span {
        name: "good".into(),
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: Vec::new(),
        ..Default::default()
    };
    let (status, response) = post(
        c.http,
        "application/x-protobuf",
        &request(good).encode_to_vec(),
    );
    assert_eq!(status, 200, "{response}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let written = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
        if written.contains("\"good\"") || Instant::now() > deadline {
            break written;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(written.contains("\"good\""), "{written}\n{}", c.logs());
    assert!(!written.contains("bad-"), "{written}");
}
