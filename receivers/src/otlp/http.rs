//! OTLP/HTTP: `POST` of protobuf or JSON bodies, optionally compressed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sluice_pipeline::admission::{Admission, Permit, Refusal};
use sluice_pipeline::{DeliveryError, Signal};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::answer_headers::{self, AnswerHeaders};
use super::connections::{self, ConnectionReport};
use super::unpack::{Compression, Encoding, READ_AHEAD, UnpackError, unpack};
use super::{HttpConfig, Outputs, SignalSink, Transport, retry_after};

// google.rpc.Code values used in error bodies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNIMPLEMENTED: i32 = 12;
const UNAVAILABLE: i32 = 14;
const INTERNAL: i32 = 13;

/// An error answer: the status code, and a `google.rpc.Status` body in the request's encoding
/// (JSON when the request's encoding is unknown).
fn error(status: StatusCode, code: i32, message: String, encoding: Encoding) -> Response {
    let body = match encoding {
        Encoding::Proto => {
            let status = tonic_types::Status {
                code,
                message,
                details: Vec::new(),
            };
            prost::Message::encode_to_vec(&status)
        }
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

fn delivery_error(e: &DeliveryError, encoding: Encoding) -> Response {
    let (status, code) = match e {
        DeliveryError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, RESOURCE_EXHAUSTED),
        DeliveryError::Retryable { .. } => (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE),
        DeliveryError::Permanent { .. } => (StatusCode::BAD_REQUEST, INVALID_ARGUMENT),
    };
    let mut response = error(status, code, e.to_string(), encoding);
    if let Some(delay) = retry_after(e) {
        let seconds = delay.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

fn request_encoding(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Proto),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// The answer to a body that could not be turned into data.
fn unpack_error(e: UnpackError, limit: usize, encoding: Encoding) -> Response {
    match e {
        UnpackError::TooLarge => too_large("decompressed", limit, encoding),
        UnpackError::Refused(r) => refusal(&r, encoding),
        UnpackError::UnsupportedEncoding(e) => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UNIMPLEMENTED,
            format!(
                "unsupported Content-Encoding `{e}`; this receiver accepts the ones its \
                 compression_algorithms list (by default gzip, zstd, zlib, deflate, snappy, lz4 or none)"
            ),
            encoding,
        ),
        UnpackError::Invalid(message) => {
            error(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, message, encoding)
        }
        UnpackError::Internal(message) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL,
            message,
            encoding,
        ),
    }
}

/// 413: never retryable, whatever the load.
fn too_large(what: &str, limit: usize, encoding: Encoding) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        RESOURCE_EXHAUSTED,
        format!("{what} request body exceeds the limit of {limit} bytes (max_request_body_size)"),
        encoding,
    )
}

/// An admission refusal: 413 when the request alone is larger than the whole in-flight budget
/// (a retry can never fit), else 429 with Retry-After.
fn refusal(r: &Refusal, encoding: Encoding) -> Response {
    if r.is_permanent() {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            RESOURCE_EXHAUSTED,
            r.to_string(),
            encoding,
        );
    }
    delivery_error(&r.to_delivery_error(), encoding)
}

/// Why a body was not read to its end.
enum ReadError {
    /// Larger than `max_request_body_size`.
    TooLarge,
    /// The admission budget or a memory limiter refused the next chunk.
    Refused(Refusal),
    /// The connection failed or the body was malformed.
    Broken(String),
}

/// Reads the body, reserving each chunk's bytes as it arrives: what a request holds is what
/// it has sent, never what it says it will send. A body that arrives in one chunk is used as
/// it came; one in several is joined into a buffer sized from `declared` (up to
/// [`READ_AHEAD`] beyond what has arrived).
async fn read_body(
    body: &mut Body,
    limit: usize,
    declared: Option<usize>,
    permit: &mut Permit,
) -> Result<bytes::Bytes, ReadError> {
    let mut first: Option<bytes::Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if len.saturating_add(data.len()) > limit {
            return Err(ReadError::TooLarge);
        }
        permit.grow(data.len()).map_err(ReadError::Refused)?;
        len += data.len();
        if first.is_none() && joined.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            let expected = declared.unwrap_or(0).min(len.saturating_add(READ_AHEAD));
            joined.reserve(expected.max(len));
            joined.extend_from_slice(&first);
        }
        joined.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// How long a refused HTTP/1 body may take to be thrown away.
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// A refused body is read and thrown away up to its declared length or `max_request_body_size`,
/// and never beyond the larger of that limit and this.
const DISCARD_MAX_BYTES: usize = 64 * 1024 * 1024;

/// At most this many refused bodies are thrown away at once; beyond it a refused connection is
/// simply closed (its client sees a reset, which it retries too).
const MAX_DISCARDS: usize = 64;

static DISCARDS: Semaphore = Semaphore::const_new(MAX_DISCARDS);

/// An HTTP/1 client usually writes its whole body before it reads the answer, and a server
/// that closes the connection on an unread body makes it see a reset instead of the 429 or
/// 413. So a refused body is read in the background and thrown away chunk by chunk (never
/// held, so it costs no memory and no budget), within [`DISCARD_TIME`], [`DISCARD_MAX_BYTES`]
/// and [`MAX_DISCARDS`]; then the connection closes. HTTP/2 needs none of this: the refused
/// stream is reset on its own.
fn discard_in_background(mut body: Body, declared: Option<usize>, limit: usize) {
    let Ok(slot) = DISCARDS.try_acquire() else {
        return;
    };
    let most = declared.unwrap_or(limit).min(limit.max(DISCARD_MAX_BYTES));
    tokio::spawn(async move {
        let _slot = slot;
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    seen = seen.saturating_add(data.len());
                    if seen > most {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
    });
}

/// What every path of one HTTP server shares.
struct RouteSettings {
    admission: Admission,
    limit: usize,
    /// How long a client has to send its whole body once the receiver starts reading it
    /// (`read_timeout`). A client that stalls would otherwise keep its request, and the bytes
    /// it has sent, in flight forever; it gets 408 instead and the connection is closed.
    read_timeout: Option<Duration>,
    include_metadata: bool,
    /// `compression_algorithms`.
    compressions: Vec<Compression>,
}

struct Route<S: Signal> {
    sink: Arc<SignalSink<S>>,
    settings: Arc<RouteSettings>,
}

impl<S: Signal> Clone for Route<S> {
    fn clone(&self) -> Self {
        Route {
            sink: self.sink.clone(),
            settings: self.settings.clone(),
        }
    }
}

async fn handle<S: Signal>(
    State(route): State<Route<S>>,
    method: Method,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            UNIMPLEMENTED,
            format!("{method} is not allowed; use POST"),
            Encoding::Json,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let Some(encoding) = request_encoding(&headers) else {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UNIMPLEMENTED,
            format!(
                "unsupported Content-Type `{given}`; use application/x-protobuf or application/json"
            ),
            Encoding::Json,
        );
    };
    let limit = route.settings.limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // A client that asked `Expect: 100-continue` has not sent its body and, answered before
    // it is read, never will: reading would invite the upload.
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let http1 = version < Version::HTTP_2;
    if declared.is_some_and(|n| n > limit) {
        if http1 && !expects_continue {
            discard_in_background(body, declared, limit);
        }
        return too_large("compressed", limit, encoding);
    }
    let compression = match Compression::from_name(
        &headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    ) {
        Ok(c) if route.settings.compressions.contains(&c) => c,
        Ok(_) => {
            let name = headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim()
                .to_string();
            return unpack_error(UnpackError::UnsupportedEncoding(name), limit, encoding);
        }
        Err(e) => return unpack_error(e, limit, encoding),
    };
    // Refused before a byte of the body is read when its declared length cannot fit now;
    // nothing is reserved until bytes arrive.
    let admitted = route
        .settings
        .admission
        .precheck(declared.unwrap_or(0))
        .and_then(|()| route.settings.admission.reserve(0));
    let mut permit = match admitted {
        Ok(p) => p,
        Err(r) => {
            if http1 && !expects_continue {
                discard_in_background(body, declared, limit);
            }
            return refusal(&r, encoding);
        }
    };
    let mut body = body;
    let reading = read_body(&mut body, limit, declared, &mut permit);
    let read = match route.settings.read_timeout {
        Some(limit) => tokio::time::timeout(limit, reading)
            .await
            .map_err(|_| limit),
        None => Ok(reading.await),
    };
    let raw = match read {
        Ok(Ok(raw)) => raw,
        Err(read_timeout) => {
            drop(permit);
            let mut response = error(
                StatusCode::REQUEST_TIMEOUT,
                UNAVAILABLE,
                format!(
                    "the request body was not received within {} (read_timeout)",
                    sluice_config::Duration(read_timeout)
                ),
                encoding,
            );
            if http1 {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
        Ok(Err(ReadError::Broken(e))) => {
            return error(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                format!("cannot read request body: {e}"),
                encoding,
            );
        }
        Ok(Err(refused)) => {
            // Nothing of this request is held while the rest of its body is thrown away.
            drop(permit);
            if http1 {
                discard_in_background(body, declared, limit);
            }
            return match refused {
                ReadError::Refused(r) => refusal(&r, encoding),
                _ => too_large("compressed", limit, encoding),
            };
        }
    };
    let (unpacked, permit) = unpack::<S>(raw, compression, encoding, limit, permit).await;
    let batch = match unpacked {
        Ok(r) => r,
        Err(e) => return unpack_error(e, limit, encoding),
    };
    let batch = if route.settings.include_metadata {
        batch.with_metadata(super::client_metadata(&headers))
    } else {
        batch
    };
    let outcome = route.sink.accept(batch, Transport::Http).await;
    // Held until the client is answered.
    drop(permit);
    match outcome {
        Ok(()) => {
            // An empty Export*ServiceResponse: no bytes in protobuf, `{}` in JSON.
            let body: &'static [u8] = match encoding {
                Encoding::Proto => b"",
                Encoding::Json => b"{}",
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                body,
            )
                .into_response()
        }
        Err(e) => delivery_error(&e, encoding),
    }
}

fn route<S: Signal>(
    router: Router,
    path: &str,
    sink: &Option<Arc<SignalSink<S>>>,
    settings: &Arc<RouteSettings>,
) -> Router {
    match sink {
        Some(sink) => router.route(
            path,
            any(handle::<S>).with_state(Route {
                sink: sink.clone(),
                settings: settings.clone(),
            }),
        ),
        None => router,
    }
}

pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: &HttpConfig,
    outputs: &Outputs,
    admission: &Admission,
    report: ConnectionReport,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let limit = usize::try_from(config.max_request_body_size.0).unwrap_or(usize::MAX);
    if admission.budget() < limit {
        tracing::warn!(
            address = ?listener.local_addr().ok(),
            budget_bytes = admission.budget(),
            max_request_body_size = limit,
            "the in-flight budget (memory_limiter spike limit) is smaller than max_request_body_size: \
             bodies larger than the budget (compressed plus decompressed size) are refused for good with 413"
        );
    }
    let read_timeout = config.body_read_timeout();
    let settings = Arc::new(RouteSettings {
        admission: admission.clone(),
        limit,
        read_timeout,
        include_metadata: config.include_metadata,
        compressions: config.compressions(),
    });
    let mut router = Router::new();
    router = route(router, &config.traces_url_path, &outputs.traces, &settings);
    router = route(
        router,
        &config.metrics_url_path,
        &outputs.metrics,
        &settings,
    );
    router = route(router, &config.logs_url_path, &outputs.logs, &settings);
    // Checked when the config was read; nothing to add when it has neither CORS nor headers.
    if let Ok(Some(answers)) = AnswerHeaders::from_config(config) {
        router = router.layer(axum::middleware::from_fn_with_state(
            answers,
            answer_headers::apply,
        ));
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Header and idle timeouts are the connection supervisor's: hyper's own header timeout
    // would also end keep-alive connections idle for longer than it.
    builder
        .http1()
        .keep_alive(config.keep_alives_enabled)
        .header_read_timeout(None);
    connections::serve(
        listener,
        tls,
        builder,
        TowerToHyperService::new(router),
        config.connection_policy(),
        report,
        stop,
    )
}
