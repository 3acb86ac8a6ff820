//! Admission control of the real binary, before decoding, with a 1 MiB in-flight budget (the
//! memory limiter's spike limit). While other uploads hold the budget, an HTTP request whose
//! Content-Length does not fit beside them gets 429 with Retry-After without its body being
//! sent (a client waiting for `100 Continue` gets the 429 instead), and a gRPC message whose
//! declared length does not fit gets RESOURCE_EXHAUSTED with RetryInfo. A request larger than
//! the whole budget can never fit: HTTP 413, gRPC RESOURCE_EXHAUSTED without RetryInfo (as for
//! one over `max_recv_msg_size_mib`). Undecodable gRPC gets INVALID_ARGUMENT and an unknown
//! grpc-encoding UNIMPLEMENTED. The collector keeps serving after all of it.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Collector;
use tonic::codegen::{Body as HttpBody, Service, http};
use tonic_types::StatusExt;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "@GRPC@"
        max_recv_msg_size_mib: 4
      http:
        endpoint: "@HTTP@"
processors:
  # A limit far above what the test uses; the spike limit (1 MiB) is the in-flight budget.
  memory_limiter:
    limit_mib: 4000
    spike_limit_mib: 1
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
    logs:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [file/out]
"#;

/// Sends `head` (request line and headers) and then `body_chunks`, ignoring write errors
/// (the server may answer and close before all is sent); returns the response text.
fn raw_http(port: u16, head: &str, body_chunks: &[Vec<u8>]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    for chunk in body_chunks {
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and as much body as its Content-Length says (the connection may stay open).
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&response);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn log_json(body: &str) -> String {
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
    )
}

fn assert_still_serving(c: &Collector, marker: &str) {
    let body = log_json(marker);
    let response = raw_http(
        c.http,
        &format!(
            "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        &[body.into_bytes()],
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
        if text.contains(marker) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{marker} not written; log:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(c: &Collector, series: &str) -> f64 {
    c.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A chunk of a chunked HTTP/1.1 body.
fn chunk(size: usize) -> Vec<u8> {
    let mut c = format!("{size:x}\r\n").into_bytes();
    c.extend_from_slice(&vec![b'x'; size]);
    c.extend_from_slice(b"\r\n");
    c
}

/// An upload that holds `chunks` × 64 KiB of the in-flight budget: its body is sent without
/// its last chunk, so the receiver keeps the reservation until the connection closes.
struct BudgetHolder {
    upload: TcpStream,
}

impl BudgetHolder {
    fn start(c: &Collector, chunks: usize) -> BudgetHolder {
        let mut stream = TcpStream::connect(("127.0.0.1", c.http)).unwrap();
        stream
            .write_all(
                b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .unwrap();
        for _ in 0..chunks {
            stream.write_all(&chunk(64 * 1024)).unwrap();
        }
        let held = (chunks * 64 * 1024) as f64;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metric(c, "sluice_admission_bytes_in_flight") < held {
            assert!(
                std::time::Instant::now() < deadline,
                "the upload never held {held} bytes:\n{}",
                c.metrics_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        BudgetHolder { upload: stream }
    }

    /// Abandons the upload: the receiver sees the connection close and returns the reservation.
    fn release(self) {
        let _ = self.upload.shutdown(std::net::Shutdown::Both);
    }
}

#[test]
fn http_requests_over_the_budget_are_refused_before_their_body_is_read() {
    let c = Collector::start(CONFIG, &[]);

    // Another upload holds 768 KiB of the 1 MiB budget.
    let holder = BudgetHolder::start(&c, 12);

    // A Content-Length of 500 kB does not fit beside it, and not a byte of body was sent:
    // the answer comes anyway, retryable.
    let response = raw_http(
        c.http,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 500000\r\n\r\n",
        &[],
    );
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 1"),
        "{response}"
    );
    assert!(response.contains("in-flight budget"), "{response}");

    // A client that waits for `100 Continue` gets the refusal instead, and never uploads.
    let response = raw_http(
        c.http,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500000\r\nExpect: 100-continue\r\n\r\n",
        &[],
    );
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");

    // Chunked: refused once its chunks no longer fit beside the held bytes, whatever the
    // client goes on sending.
    let response = raw_http(
        c.http,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        &vec![chunk(64 * 1024); 8],
    );
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");

    // The holder goes away, and with it its reservation.
    holder.release();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&c, "sluice_admission_bytes_in_flight") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "{}", c.metrics_text());
        std::thread::sleep(Duration::from_millis(20));
    }

    // A request larger than the whole budget could never be accepted: 413, not a retry.
    let response = raw_http(
        c.http,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 2000000\r\n\r\n",
        &[],
    );
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("can never be accepted"), "{response}");
    let response = raw_http(
        c.http,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        &vec![chunk(64 * 1024); 40],
    );
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    assert!(
        metric(
            &c,
            "sluice_admission_refused_requests_total{reason=\"in_flight_budget\"}"
        ) >= 3.0,
        "{}",
        c.metrics_text()
    );
    assert!(
        metric(
            &c,
            "sluice_admission_refused_requests_total{reason=\"larger_than_budget\"}"
        ) >= 2.0,
        "{}",
        c.metrics_text()
    );
    assert!(
        c.metrics_text()
            .contains("sluice_admission_budget_bytes 1048576"),
        "{}",
        c.metrics_text()
    );
    // Nothing is held once the requests are answered.
    assert_eq!(metric(&c, "sluice_admission_bytes_in_flight"), 0.0);
    assert_still_serving(&c, "after-http-refusals");
}

/// A raw gRPC call on the logs service: `body` is sent as is (prefix included). Returns the
/// status from the answer's headers (trailers-only answer) or trailers.
async fn raw_grpc(port: u16, headers: &[(&str, &str)], body: Vec<u8>) -> tonic::Status {
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://127.0.0.1:{port}/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(tonic::body::Body::new(axum::body::Body::from(body)))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(trailers) = frame.unwrap().into_trailers() {
            return tonic::Status::from_header_map(&trailers).unwrap();
        }
    }
    panic!("no grpc-status in the answer")
}

fn frame(flag: u8, declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend_from_slice(&declared.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn grpc_checks_the_declared_length_before_reading_the_message() {
    let c = Collector::start(CONFIG, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 100 MiB declared, 10 bytes sent: over max_recv_msg_size_mib, never retried.
        let s = raw_grpc(c.grpc, &[], frame(0, 100 << 20, &[0; 10])).await;
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        assert!(s.get_details_retry_info().is_none(), "{s:?}");
        assert!(s.message().contains("max_recv_msg_size_mib"), "{s:?}");

        // 2 MiB declared: allowed by max_recv_msg_size_mib, but more than the whole 1 MiB
        // budget: it can never fit, so no RetryInfo either.
        let s = raw_grpc(c.grpc, &[], frame(0, 2 << 20, &[0; 10])).await;
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        assert!(s.get_details_retry_info().is_none(), "{s:?}");

        // 500 kB declared while another upload holds 768 KiB: retry later.
        let holder = BudgetHolder::start(&c, 12);
        let s = raw_grpc(c.grpc, &[], frame(0, 500_000, &[0; 10])).await;
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        let retry = s.get_details_retry_info().expect("RetryInfo");
        assert!(retry.retry_delay.is_some(), "{s:?}");
        holder.release();

        // Not a protobuf message: INVALID_ARGUMENT.
        let s = raw_grpc(c.grpc, &[], frame(0, 4, &[0xff, 0xff, 0xff, 0xff])).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");

        // Not valid gzip: INVALID_ARGUMENT too.
        let s = raw_grpc(c.grpc, &[("grpc-encoding", "gzip")], frame(1, 3, b"abc")).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");

        // An encoding the server does not know: UNIMPLEMENTED.
        let s = raw_grpc(c.grpc, &[("grpc-encoding", "br")], frame(1, 3, b"abc")).await;
        assert_eq!(s.code(), tonic::Code::Unimplemented, "{s:?}");

        // A valid empty request is accepted.
        let s = raw_grpc(c.grpc, &[], frame(0, 0, &[])).await;
        assert_eq!(s.code(), tonic::Code::Ok, "{s:?}");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&c, "sluice_admission_bytes_in_flight") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "{}", c.metrics_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_still_serving(&c, "after-grpc-refusals");
}
