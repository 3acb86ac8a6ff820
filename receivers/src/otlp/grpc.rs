//! OTLP/gRPC: the three collector services over HTTP/2 (served by [`super::connections`]),
//! each hand-written to see the raw request: it reads the 5-byte message prefix, checks the
//! declared length against `max_recv_msg_size_mib` and the admission budget (without reserving
//! it), and only then reads the message, reserving its bytes as they arrive, within
//! [`MESSAGE_READ_TIMEOUT`] and the client's `grpc-timeout`; then decompresses and decodes it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use sluice_pipeline::admission::{Admission, Permit, Refusal};
use sluice_pipeline::{DeliveryError, Logs, Metrics, Signal, Traces};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::connections::{self, ConnectionReport};
use super::unpack::{Compression, Encoding, READ_AHEAD, UnpackError, unpack};
use super::{GrpcConfig, Outputs, SignalSink, Transport, retry_after};

/// OTLP's mapping of delivery errors to gRPC codes: throttling is RESOURCE_EXHAUSTED with
/// RetryInfo (the only form of it a client retries), transient failures UNAVAILABLE,
/// permanent ones INVALID_ARGUMENT.
fn status_for(error: &DeliveryError) -> Status {
    let message = error.to_string();
    match error {
        DeliveryError::Throttled { .. } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(retry_after(error)),
        ),
        DeliveryError::Retryable { .. } => match retry_after(error) {
            Some(delay) => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => Status::new(Code::Unavailable, message),
        },
        DeliveryError::Permanent { .. } => Status::new(Code::InvalidArgument, message),
    }
}

/// A request larger than the whole in-flight budget is RESOURCE_EXHAUSTED without RetryInfo,
/// like one over `max_recv_msg_size_mib`: retrying it can never succeed.
fn refused(refusal: &Refusal) -> Status {
    if refusal.is_permanent() {
        return Status::resource_exhausted(refusal.to_string());
    }
    status_for(&refusal.to_delivery_error())
}

/// How long a client has to send its whole request (prefix, message and end of stream) once
/// the call started. A stalled client would otherwise hold the bytes it has sent, and the
/// call, forever. The call then ends with DEADLINE_EXCEEDED (the server's deadline for the
/// upload passed; OTLP clients retry it) and its bytes are given back.
pub(crate) const MESSAGE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn read_timed_out() -> Status {
    Status::deadline_exceeded(format!(
        "the request was not received within {}s",
        MESSAGE_READ_TIMEOUT.as_secs()
    ))
}

/// A message over `max_recv_msg_size_mib`: RESOURCE_EXHAUSTED without RetryInfo, as grpc-go
/// answers it, so clients do not retry what can never fit.
fn too_large(size: Option<usize>, limit: usize) -> Status {
    let size = size.map_or_else(|| "more".to_string(), |s| s.to_string());
    Status::resource_exhausted(format!(
        "received message larger than max ({size} vs. {limit} bytes, max_recv_msg_size_mib)"
    ))
}

/// Encodings the services accept, sent with UNIMPLEMENTED answers to an unknown one.
const ACCEPT_ENCODING: &str = "gzip,zstd,deflate,snappy,identity";

/// The gRPC service name per signal; the router dispatches on it.
pub(crate) trait GrpcSignal: Signal {
    const SERVICE: &'static str;
}
impl GrpcSignal for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl GrpcSignal for Metrics {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}
impl GrpcSignal for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

struct Shared<S: Signal> {
    sink: Arc<SignalSink<S>>,
    admission: Admission,
    /// `max_recv_msg_size_mib` in bytes, for the message as sent and as decompressed.
    limit: usize,
    include_metadata: bool,
}

/// The next chunk of request data: `None` at the end of the stream (trailers and empty
/// frames are skipped).
async fn next_data(body: &mut Body) -> Result<Option<Bytes>, Status> {
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
            Some(Err(e)) => {
                return Err(Status::cancelled(format!(
                    "cannot read request: {}",
                    e.message()
                )));
            }
            None => return Ok(None),
        }
    }
}

/// A unary call carries exactly one message. Data after it, in the same frame or a later one,
/// is refused with INVALID_ARGUMENT: the client sent a malformed request, which a retry would
/// not fix (UNIMPLEMENTED would claim the method does not exist).
fn second_message() -> Status {
    Status::invalid_argument("more than one message in a unary call")
}

impl<S: GrpcSignal> Shared<S> {
    async fn export(self: Arc<Self>, request: Request<Body>) -> Result<(), Status> {
        let (parts, body) = request.into_parts();
        let encoding = parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let compression = match Compression::from_name(&encoding) {
            // gRPC's snappy compressor (the collector's configgrpc) writes the framed format.
            Ok(Compression::Snappy) => Ok(Compression::SnappyFramed),
            other => other,
        }
        .map_err(|_| {
            let mut status = Status::unimplemented(format!(
                "unsupported grpc-encoding `{encoding}`; use gzip, zstd, deflate, snappy or identity"
            ));
            status.metadata_mut().insert(
                "grpc-accept-encoding",
                tonic::metadata::MetadataValue::from_static(ACCEPT_ENCODING),
            );
            status
        })?;
        // Refused before a byte of the message is read.
        self.admission.check().map_err(|r| refused(&r))?;
        let message =
            tokio::time::timeout(MESSAGE_READ_TIMEOUT, self.read_message(body, compression))
                .await
                .map_err(|_| read_timed_out())??;
        let (message, compressed, permit) = message;
        let compression = if compressed {
            compression
        } else {
            Compression::None
        };
        let (unpacked, permit) =
            unpack::<S>(message, compression, Encoding::Proto, self.limit, permit).await;
        let batch = unpacked.map_err(|e| match e {
            UnpackError::TooLarge => too_large(None, self.limit),
            UnpackError::Refused(r) => refused(&r),
            UnpackError::UnsupportedEncoding(e) => {
                Status::unimplemented(format!("unsupported grpc-encoding `{e}`"))
            }
            UnpackError::Invalid(message) => Status::invalid_argument(message),
            UnpackError::Internal(message) => Status::internal(message),
        })?;
        let batch = if self.include_metadata {
            batch.with_metadata(super::client_metadata(&parts.headers))
        } else {
            batch
        };
        let outcome = self.sink.accept(batch, Transport::Grpc).await;
        // Held until the client is answered.
        drop(permit);
        outcome.map_err(|e| status_for(&e))
    }

    /// Reads the one message of the call and the end of the stream: the message, whether it is
    /// compressed, and the permit holding its bytes. The declared length is checked against
    /// the limit and the budget before the message is read, but its bytes are reserved only as
    /// they arrive, so a client that declares a large message and stalls holds nothing.
    async fn read_message(
        &self,
        mut body: Body,
        compression: Compression,
    ) -> Result<(Bytes, bool, Permit), Status> {
        let mut buf = BytesMut::new();
        while buf.len() < 5 {
            match next_data(&mut body).await? {
                Some(data) => buf.extend_from_slice(&data),
                None => {
                    return Err(Status::invalid_argument(
                        "the request holds no complete message",
                    ));
                }
            }
        }
        let flag = buf[0];
        let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if declared > self.limit {
            return Err(too_large(Some(declared), self.limit));
        }
        let compressed = match flag {
            0 => false,
            1 if compression != Compression::None => true,
            1 => {
                return Err(Status::invalid_argument(
                    "message marked compressed without a grpc-encoding",
                ));
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "invalid message flag {other}"
                )));
            }
        };
        self.admission.precheck(declared).map_err(|r| refused(&r))?;
        let mut permit = self.admission.reserve(0).map_err(|r| refused(&r))?;
        let want = 5 + declared;
        if buf.len() > want {
            return Err(second_message());
        }
        permit.grow(buf.len() - 5).map_err(|r| refused(&r))?;
        // Capacity for the rest of the message, up to READ_AHEAD: a typical message is then
        // read without growing (and copying) the buffer, while a client that declares a large
        // message and stalls makes us hold at most READ_AHEAD of unused capacity.
        buf.reserve((want - buf.len()).min(READ_AHEAD));
        while buf.len() < want {
            let Some(data) = next_data(&mut body).await? else {
                return Err(Status::invalid_argument(format!(
                    "the request ended {} bytes into a {declared}-byte message",
                    buf.len() - 5
                )));
            };
            if buf.len() + data.len() > want {
                return Err(second_message());
            }
            permit.grow(data.len()).map_err(|r| refused(&r))?;
            buf.extend_from_slice(&data);
        }
        // Only the end of the stream may follow; any more data is a second message.
        if next_data(&mut body).await?.is_some() {
            return Err(second_message());
        }
        buf.advance(5);
        Ok((buf.freeze(), compressed, permit))
    }
}

/// A successful unary answer: one empty `Export*ServiceResponse` message and an OK status.
/// Partial success is never reported: a request is accepted or refused as a whole.
fn ok_response() -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures::stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    let mut response = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A trailers-only answer carrying `status`.
fn status_response(status: &Status) -> Response<Body> {
    let mut response = Response::new(Body::default());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if status.add_header(headers).is_err() {
        // Only a message that cannot be a header value gets here: keep the code.
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    response
}

fn service<S: GrpcSignal>(
    sink: &Option<Arc<SignalSink<S>>>,
    admission: &Admission,
    limit: usize,
    include_metadata: bool,
) -> Option<Arc<Shared<S>>> {
    sink.clone().map(|sink| {
        Arc::new(Shared {
            sink,
            admission: admission.clone(),
            limit,
            include_metadata,
        })
    })
}

/// Every call on the gRPC port: checks what applies to any method (content-type, deadline),
/// then hands the call to the service of its signal. Only the signals some pipeline takes are
/// served; the others answer UNIMPLEMENTED, like an unknown method.
#[derive(Clone)]
struct Calls {
    traces: Option<Arc<Shared<Traces>>>,
    metrics: Option<Arc<Shared<Metrics>>>,
    logs: Option<Arc<Shared<Logs>>>,
}

impl Calls {
    async fn answer(self, request: Request<Incoming>) -> Response<Body> {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_grpc(content_type) {
            return unsupported_media_type(content_type);
        }
        if !is_protobuf(content_type) {
            return status_response(&Status::unimplemented(format!(
                "unsupported content-type `{content_type}`; use application/grpc or application/grpc+proto"
            )));
        }
        let deadline = grpc_timeout(request.headers());
        // An expired deadline is answered before anything else is done for the call.
        if deadline == Some(Duration::ZERO) {
            return status_response(&deadline_exceeded());
        }
        let request = request.map(Body::new);
        let path = request.uri().path().to_string();
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/Export"))
            .unwrap_or("");
        let export: Option<BoxFuture<'static, Result<(), Status>>> = if service == Traces::SERVICE {
            self.traces.map(|s| s.export(request).boxed())
        } else if service == Metrics::SERVICE {
            self.metrics.map(|s| s.export(request).boxed())
        } else if service == Logs::SERVICE {
            self.logs.map(|s| s.export(request).boxed())
        } else {
            None
        };
        let Some(export) = export else {
            return status_response(&Status::unimplemented(format!("unknown method {path}")));
        };
        let outcome = match deadline {
            Some(deadline) => tokio::time::timeout(deadline, export)
                .await
                .unwrap_or_else(|_| Err(deadline_exceeded())),
            None => export.await,
        };
        match outcome {
            Ok(()) => ok_response(),
            Err(status) => status_response(&status),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Calls {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let calls = self.clone();
        Box::pin(async move { Ok(calls.answer(request).await) })
    }
}

/// `application/grpc`, optionally with a `+codec` or parameters, as grpc-go recognises it.
fn is_grpc(content_type: &str) -> bool {
    content_type
        .strip_prefix("application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
}

/// The codec is protobuf: no `+codec`, or `+proto`.
fn is_protobuf(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media == "application/grpc" || media == "application/grpc+proto"
}

/// A request that is not gRPC at all gets HTTP 415, as grpc-go answers it (an HTTP client
/// sees the status it knows), with UNIMPLEMENTED for gRPC clients that read `grpc-status`.
fn unsupported_media_type(content_type: &str) -> Response<Body> {
    let given = if content_type.is_empty() {
        "none"
    } else {
        content_type
    };
    let mut response = status_response(&Status::unimplemented(format!(
        "unsupported content-type `{given}`; use application/grpc"
    )));
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("the deadline the client set (grpc-timeout) passed")
}

/// The client's deadline for the call: `grpc-timeout`, at most 8 digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`). A malformed one is ignored, as tonic does.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match &value[digits.len()..] {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// grpc-go's defaults where configgrpc's keepalive keys are 0.
const DEFAULT_KEEPALIVE_TIME: Duration = Duration::from_secs(2 * 3600);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: &GrpcConfig,
    outputs: &Outputs,
    admission: &Admission,
    report: ConnectionReport,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let limit = usize::try_from(config.max_recv_msg_size_mib.saturating_mul(1024 * 1024))
        .unwrap_or(usize::MAX);
    if admission.budget() < limit {
        tracing::warn!(
            address = ?listener.local_addr().ok(),
            budget_bytes = admission.budget(),
            max_recv_msg_size_bytes = limit,
            "the in-flight budget (memory_limiter spike limit) is smaller than max_recv_msg_size_mib: \
             messages larger than the budget (compressed plus decompressed size) are refused for good"
        );
    }
    let calls = Calls {
        traces: service(&outputs.traces, admission, limit, config.include_metadata),
        metrics: service(&outputs.metrics, admission, limit, config.include_metadata),
        logs: service(&outputs.logs, admission, limit, config.include_metadata),
    };
    let keepalive = &config.keepalive.server_parameters;
    let nonzero = |d: sluice_config::Duration| Some(d.0).filter(|d| !d.is_zero());
    let mut builder = auto::Builder::new(TokioExecutor::new()).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams.max(1))
        .keep_alive_interval(nonzero(keepalive.time).unwrap_or(DEFAULT_KEEPALIVE_TIME))
        .keep_alive_timeout(nonzero(keepalive.timeout).unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT));
    connections::serve(
        listener,
        tls,
        builder,
        calls,
        config.connection_policy(),
        report,
        stop,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_str(value).unwrap());
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeout_follows_the_grpc_over_http2_spec() {
        assert_eq!(timeout_of("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout_of("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout_of("30S"), Some(Duration::from_secs(30)));
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout_of("0n"), Some(Duration::ZERO));
        assert_eq!(
            timeout_of("99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
        for malformed in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S"] {
            assert_eq!(timeout_of(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn only_grpc_content_types_are_grpc_and_only_protobuf_is_decoded() {
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=utf-8",
            "application/grpc+json",
        ] {
            assert!(is_grpc(grpc), "{grpc}");
        }
        for other in ["", "application/json", "application/grpc-web", "text/plain"] {
            assert!(!is_grpc(other), "{other}");
        }
        assert!(is_protobuf("application/grpc+proto"));
        assert!(is_protobuf("application/grpc; charset=utf-8"));
        assert!(!is_protobuf("application/grpc+json"));
    }
}
