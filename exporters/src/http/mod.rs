//! What the HTTP-based exporters share: a client with the collector's TLS settings, body
//! compression, and the OTLP rules for which responses are worth retrying.

mod tls;

pub use tls::TlsSettings;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use sluice_pipeline::DeliveryError;

/// Request body compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }

    pub fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                encoder.write_all(&body)?;
                encoder.finish()
            }
            Compression::Zstd => zstd::bulk::compress(&body, 1),
        }
    }
}

/// Builds an HTTP client: TLS per `tls`, at most `timeout` per request.
pub fn client(tls: &TlsSettings, timeout: Duration) -> Result<reqwest::Client, String> {
    let config = tls.client_config()?;
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Validated custom headers.
pub fn headers(map: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in map {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name `{name}`: {e}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| format!("header `{name}` value: {e}"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Retry-After as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The OTLP/HTTP rules: 429, 502, 503 and 504 are retryable (honouring Retry-After), every
/// other non-success status is permanent.
pub fn classify(status: reqwest::StatusCode, headers: &HeaderMap, detail: &str) -> DeliveryError {
    let reason = if detail.is_empty() {
        format!("server answered {status}")
    } else {
        format!("server answered {status}: {detail}")
    };
    match status.as_u16() {
        429 | 502 | 503 | 504 => DeliveryError::Retryable {
            reason,
            retry_after: retry_after(headers),
        },
        _ => DeliveryError::permanent(reason),
    }
}

/// The first `limit` bytes of a response body: enough for a status or a partial-success
/// message, without letting a destination make the exporter buffer without bound.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// The webhook rules: chat and paging services are not OTLP backends, so 429 and every 5xx
/// are retryable (honouring Retry-After); other statuses are permanent.
pub fn classify_webhook(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    detail: &str,
) -> DeliveryError {
    if status.is_server_error() {
        let reason = if detail.is_empty() {
            format!("server answered {status}")
        } else {
            format!("server answered {status}: {detail}")
        };
        return DeliveryError::Retryable {
            reason,
            retry_after: retry_after(headers),
        };
    }
    classify(status, headers, detail)
}

/// A network-level failure (refused, reset, timed out) is always worth retrying.
pub fn transport_error(e: &reqwest::Error) -> DeliveryError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    DeliveryError::retryable(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn otlp_retry_rules() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        match classify(StatusCode::SERVICE_UNAVAILABLE, &h, "") {
            DeliveryError::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), "bad").is_permanent());
        assert!(classify(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), "").is_permanent());
        assert!(!classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), "").is_permanent());
        assert!(!classify(StatusCode::GATEWAY_TIMEOUT, &HeaderMap::new(), "").is_permanent());
        // Webhooks: every 5xx and 429 are retried, other 4xx are not.
        let none = HeaderMap::new();
        assert!(!classify_webhook(StatusCode::INTERNAL_SERVER_ERROR, &none, "").is_permanent());
        assert!(!classify_webhook(StatusCode::NOT_IMPLEMENTED, &none, "").is_permanent());
        assert!(!classify_webhook(StatusCode::TOO_MANY_REQUESTS, &none, "").is_permanent());
        assert!(classify_webhook(StatusCode::BAD_REQUEST, &none, "").is_permanent());
        assert!(classify_webhook(StatusCode::NOT_FOUND, &none, "").is_permanent());
        match classify_webhook(StatusCode::INTERNAL_SERVER_ERROR, &h, "") {
            DeliveryError::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compression_round_trips() {
        let body = b"hello hello hello".to_vec();
        let gz = Compression::Gzip.compress(body.clone()).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, body);
        assert_eq!(
            zstd::decode_all(&Compression::Zstd.compress(body.clone()).unwrap()[..]).unwrap(),
            body
        );
    }
}
