//! OTLP/HTTP: `POST` of protobuf or JSON bodies, optionally compressed.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sluice_pipeline::codec::{decode_json, decode_proto};
use sluice_pipeline::{DeliveryError, Signal};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{HttpConfig, Outputs, SignalSink, Transport, retry_after, stopped};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Proto,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

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

/// Why a request body could not be read.
#[derive(Debug)]
enum BodyError {
    TooLarge(&'static str),
    UnsupportedEncoding(String),
    Invalid(String),
    Internal(String),
}

impl BodyError {
    fn into_response(self, limit: usize, encoding: Encoding) -> Response {
        match self {
            BodyError::TooLarge(what) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                RESOURCE_EXHAUSTED,
                format!(
                    "{what} request body exceeds the limit of {limit} bytes (max_request_body_size)"
                ),
                encoding,
            ),
            BodyError::UnsupportedEncoding(e) => error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                UNIMPLEMENTED,
                format!("unsupported Content-Encoding `{e}`; use gzip, zstd, deflate or none"),
                encoding,
            ),
            BodyError::Invalid(message) => {
                error(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, message, encoding)
            }
            BodyError::Internal(message) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                message,
                encoding,
            ),
        }
    }
}

/// Decompresses at most `limit` bytes; more is a decompression bomb or just too big (413),
/// found without ever holding more than `limit + 1` bytes.
fn decompress(body: &[u8], encoding: &str, limit: usize) -> Result<Option<Vec<u8>>, BodyError> {
    let reader: Box<dyn Read + '_> = match encoding {
        "" | "identity" | "none" => return Ok(None),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(body)),
        "deflate" | "zlib" => Box::new(flate2::read::ZlibDecoder::new(body)),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::new(body)
                .map_err(|e| BodyError::Invalid(format!("invalid zstd body: {e}")))?,
        ),
        other => return Err(BodyError::UnsupportedEncoding(other.to_string())),
    };
    let mut out = Vec::new();
    match reader.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(BodyError::TooLarge("decompressed")),
        Ok(_) => Ok(Some(out)),
        Err(e) => Err(BodyError::Invalid(format!(
            "cannot decompress {encoding} body: {e}"
        ))),
    }
}

/// Bodies up to this size are decoded on the async thread: handing small ones to the blocking
/// pool would cost more than it saves.
const INLINE_DECODE_LIMIT: usize = 64 * 1024;

/// Decompresses and decodes a body: the data and its size as protobuf.
fn decode_body<S: Signal>(
    raw: &[u8],
    content_encoding: &str,
    encoding: Encoding,
    limit: usize,
) -> Result<(Vec<S::Resource>, usize), BodyError> {
    let decompressed = decompress(raw, content_encoding, limit)?;
    let bytes: &[u8] = decompressed.as_deref().unwrap_or(raw);
    let decoded = match encoding {
        Encoding::Proto => decode_proto::<S>(bytes),
        Encoding::Json => decode_json::<S>(bytes),
    };
    let resources = decoded.map_err(|e| BodyError::Invalid(e.to_string()))?;
    // Size as protobuf: for JSON the body length overstates it, so measure.
    let size = match encoding {
        Encoding::Proto => bytes.len(),
        Encoding::Json => sluice_pipeline::codec::encoded_proto_len::<S>(&resources),
    };
    Ok((resources, size))
}

async fn handle<S: Signal>(
    State((sink, limit)): State<(Arc<SignalSink<S>>, usize)>,
    method: Method,
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return BodyError::TooLarge("compressed").into_response(limit, encoding);
    }
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return BodyError::TooLarge("compressed").into_response(limit, encoding);
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                format!("cannot read request body: {e}"),
                encoding,
            );
        }
    };
    let body_len = raw.len();
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // Decompressing and decoding a large body is CPU work that would stall the async
    // threads serving everyone else: large bodies go to the blocking pool.
    let unpack = move || decode_body::<S>(&raw, &content_encoding, encoding, limit);
    let unpacked = if body_len > INLINE_DECODE_LIMIT {
        tokio::task::spawn_blocking(unpack)
            .await
            .unwrap_or_else(|e| Err(BodyError::Internal(format!("decoding failed: {e}"))))
    } else {
        unpack()
    };
    let (resources, size) = match unpacked {
        Ok(r) => r,
        Err(e) => return e.into_response(limit, encoding),
    };
    match sink.accept(resources, size, Transport::Http).await {
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
    limit: usize,
) -> Router {
    match sink {
        Some(sink) => router.route(path, any(handle::<S>).with_state((sink.clone(), limit))),
        None => router,
    }
}

pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: &HttpConfig,
    outputs: &Outputs,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let limit = usize::try_from(config.max_request_body_size.0).unwrap_or(usize::MAX);
    let mut router = Router::new();
    router = route(router, &config.traces_url_path, &outputs.traces, limit);
    router = route(router, &config.metrics_url_path, &outputs.metrics, limit);
    router = route(router, &config.logs_url_path, &outputs.logs, limit);
    tokio::spawn(async move {
        let served = match tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls);
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped(stop))
                    .await
            }
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped(stop))
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "OTLP/HTTP server failed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn decompression_stops_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1_000_000]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 10_000);
        let r = decompress(&bomb, "gzip", 100_000).unwrap_err();
        assert_eq!(
            r.into_response(100_000, Encoding::Json).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let ok = decompress(&bomb, "gzip", 1_000_000).unwrap().unwrap();
        assert_eq!(ok.len(), 1_000_000);
        let z = zstd::encode_all(&b"hello"[..], 3).unwrap();
        assert_eq!(decompress(&z, "zstd", 10).unwrap().unwrap(), b"hello");
        assert_eq!(
            decompress(b"x", "br", 10)
                .unwrap_err()
                .into_response(10, Encoding::Json)
                .status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
