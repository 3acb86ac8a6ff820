//! What the HTTP-based exporters share: a client with the collector's TLS settings, body
//! compression, and the OTLP rules for which responses are worth retrying.

mod tls;

pub use tls::TlsSettings;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use sluice_pipeline::DeliveryError;

/// Request body compression (configcompression's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    /// Raw (block) snappy, as the Collector sends it.
    Snappy,
    /// Snappy's framing format.
    #[serde(rename = "x-snappy-framed")]
    SnappyFramed,
    /// zlib-wrapped deflate.
    Zlib,
    /// `deflate` is zlib-wrapped too, as HTTP's Content-Encoding means it.
    Deflate,
    /// The LZ4 frame format.
    Lz4,
    #[serde(alias = "")]
    None,
}

/// `compression_params`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// The codec's level: gzip, zlib and deflate 1 (fastest) to 9, -1 their default; zstd
    /// 1 to 22. 0 (default) keeps sluice's choice (the fastest level, which suits telemetry).
    pub level: i32,
}

impl Compression {
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
            Compression::SnappyFramed => Some("x-snappy-framed"),
            Compression::Zlib => Some("zlib"),
            Compression::Deflate => Some("deflate"),
            Compression::Lz4 => Some("lz4"),
            Compression::None => None,
        }
    }

    /// Whether `level` means something for this codec; an error says which levels do.
    pub fn check_level(self, level: i32) -> Result<(), String> {
        match self {
            _ if level == 0 => Ok(()),
            Compression::Gzip | Compression::Zlib | Compression::Deflate
                if level == -1 || (1..=9).contains(&level) =>
            {
                Ok(())
            }
            Compression::Gzip | Compression::Zlib | Compression::Deflate => Err(format!(
                "level {level} is not a {} level; use 1 (fastest) to 9 (smallest), or -1",
                self.header().unwrap_or("")
            )),
            Compression::Zstd if (1..=22).contains(&level) => Ok(()),
            Compression::Zstd => Err(format!(
                "level {level} is not a zstd level; use 1 (fastest) to 22"
            )),
            other => Err(format!(
                "{} has no levels; leave compression_params.level out",
                other.header().unwrap_or("no compression")
            )),
        }
    }

    pub fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        self.compress_at(body, 0)
    }

    /// Compresses at `level` (0: sluice's default, the fastest).
    pub fn compress_at(self, body: Vec<u8>, level: i32) -> std::io::Result<Vec<u8>> {
        let flate_level = match level {
            0 => flate2::Compression::fast(),
            -1 => flate2::Compression::default(),
            n => flate2::Compression::new(n.clamp(0, 9) as u32),
        };
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate_level);
                encoder.write_all(&body)?;
                encoder.finish()
            }
            Compression::Zlib | Compression::Deflate => {
                let mut encoder = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate_level,
                );
                encoder.write_all(&body)?;
                encoder.finish()
            }
            Compression::Zstd => zstd::bulk::compress(&body, if level == 0 { 1 } else { level }),
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(&body)
                .map_err(std::io::Error::other),
            Compression::SnappyFramed => {
                let mut encoder =
                    snap::write::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
                encoder.write_all(&body)?;
                encoder
                    .into_inner()
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }
            Compression::Lz4 => {
                let mut encoder =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
                encoder.write_all(&body)?;
                encoder.finish().map_err(std::io::Error::other)
            }
        }
    }
}

/// `headers`: a map, or the Collector's list of `{name, value}`. A name given twice is an
/// error, as upstream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            name: String,
            value: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Pair>),
            Map(BTreeMap<String, String>),
        }
        let pairs: Vec<(String, String)> = match Option::<Form>::deserialize(d)? {
            None => Vec::new(),
            Some(Form::List(l)) => l.into_iter().map(|p| (p.name, p.value)).collect(),
            Some(Form::Map(m)) => m.into_iter().collect(),
        };
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(D::Error::custom(format!("header `{name}` is given twice")));
            }
        }
        Ok(HeaderList(pairs))
    }
}

/// Builds an HTTP client: TLS per `tls`, at most `timeout` per request.
pub fn client(tls: &TlsSettings, timeout: Duration) -> Result<reqwest::Client, String> {
    ClientSettings::default().client(tls, timeout)
}

/// The confighttp client keys that shape the connections.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    /// An HTTP proxy for every request (default: the `HTTPS_PROXY` / `HTTP_PROXY`
    /// environment variables, as Go honours them).
    pub proxy_url: Option<String>,
    /// Idle connections kept in all (default 100; 0: no limit).
    pub max_idle_conns: Option<usize>,
    /// Idle connections kept per host (default: no limit of its own).
    pub max_idle_conns_per_host: Option<usize>,
    /// Requests in flight to the host at most, which bounds the connections over HTTP/1.1
    /// (default 0: no limit).
    pub max_conns_per_host: usize,
    /// Idle connections are closed after this (default 90s).
    pub idle_conn_timeout: Option<sluice_config::Duration>,
    /// A new connection for every request (default false).
    pub disable_keep_alives: bool,
    /// Offer HTTP/2 on TLS connections (default true); false sticks to HTTP/1.1.
    pub force_attempt_http2: Option<bool>,
    /// Ping an HTTP/2 connection idle for this long (default 0: off).
    pub http2_read_idle_timeout: Option<sluice_config::Duration>,
    /// Close the connection when a ping is not answered within this (default 15s).
    pub http2_ping_timeout: Option<sluice_config::Duration>,
}

impl ClientSettings {
    /// Builds an HTTP client with these settings, TLS per `tls`, at most `timeout` per request.
    pub fn client(&self, tls: &TlsSettings, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut config = tls.client_config()?;
        let http2 = self.force_attempt_http2.unwrap_or(true);
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(timeout)
            .pool_idle_timeout(
                self.idle_conn_timeout
                    .map_or(Duration::from_secs(90), |d| d.0),
            );
        if !http2 {
            builder = builder.http1_only();
        }
        let idle = match (self.max_idle_conns, self.max_idle_conns_per_host) {
            // One exporter talks to one host, so the overall cap is also the host's.
            (Some(all), Some(host)) if all > 0 => Some(all.min(host)),
            (Some(all), None) if all > 0 => Some(all),
            (_, host) => host,
        };
        if self.disable_keep_alives {
            builder = builder.pool_max_idle_per_host(0);
        } else if let Some(idle) = idle {
            builder = builder.pool_max_idle_per_host(idle);
        }
        if let Some(every) = self
            .http2_read_idle_timeout
            .map(|d| d.0)
            .filter(|d| !d.is_zero())
        {
            builder = builder
                .http2_keep_alive_interval(every)
                .http2_keep_alive_while_idle(true)
                .http2_keep_alive_timeout(
                    self.http2_ping_timeout
                        .map(|d| d.0)
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_secs(15)),
                );
        }
        if let Some(url) = &self.proxy_url
            && !url.is_empty()
        {
            let proxy = reqwest::Proxy::all(url).map_err(|e| format!("proxy_url `{url}`: {e}"))?;
            builder = builder.proxy(proxy);
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// The cap on requests in flight, if any.
    pub fn in_flight_limit(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        (self.max_conns_per_host > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(self.max_conns_per_host)))
    }
}

/// `cookies`: what the server set is sent back, as a browser would for one site. A cookie
/// whose `Max-Age` is 0 or negative, or whose value is empty, is removed.
#[derive(Default)]
pub struct CookieJar(std::sync::Mutex<BTreeMap<String, String>>);

impl CookieJar {
    /// Takes the `Set-Cookie` headers of an answer.
    pub fn store(&self, headers: &HeaderMap) {
        let mut jar = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for value in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|attr| {
                let attr = attr.trim().to_ascii_lowercase();
                attr.strip_prefix("max-age=")
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| n <= 0)
            });
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            if expired || value.is_empty() {
                jar.remove(&name);
            } else {
                jar.insert(name, value);
            }
        }
    }

    /// The `Cookie` header to send, if the jar holds any.
    pub fn header(&self) -> Option<HeaderValue> {
        let jar = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if jar.is_empty() {
            return None;
        }
        let text: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        HeaderValue::from_str(&text.join("; ")).ok()
    }
}

/// `cookies:` (present = on, as configoptional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookiesSettings {}

/// Validated custom headers.
pub fn headers(list: &HeaderList) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &list.0 {
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
    fn every_codec_round_trips_and_levels_are_checked() {
        let body = b"hello hello hello hello".repeat(50);
        let z = Compression::Zlib.compress_at(body.clone(), 9).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, body);
        let s = Compression::Snappy.compress(body.clone()).unwrap();
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&s).unwrap(), body);
        let f = Compression::SnappyFramed.compress(body.clone()).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut snap::read::FrameDecoder::new(&f[..]), &mut out).unwrap();
        assert_eq!(out, body);
        let l = Compression::Lz4.compress(body.clone()).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(&l[..]), &mut out)
            .unwrap();
        assert_eq!(out, body);
        let fast = Compression::Zstd.compress_at(body.clone(), 1).unwrap();
        let best = Compression::Zstd.compress_at(body.clone(), 19).unwrap();
        assert_eq!(zstd::decode_all(&best[..]).unwrap(), body);
        assert!(best.len() <= fast.len());
        assert!(Compression::Gzip.check_level(9).is_ok());
        assert!(Compression::Gzip.check_level(12).is_err());
        assert!(Compression::Zstd.check_level(22).is_ok());
        assert!(Compression::Snappy.check_level(3).is_err());
        assert!(Compression::Snappy.check_level(0).is_ok());
    }

    #[test]
    fn headers_take_both_forms_and_refuse_duplicates() {
        let decode = |yaml: &str| {
            let node = sluice_config::parse_yaml("h.yaml", yaml).unwrap();
            sluice_config::decode::<HeaderList>(&node, "headers")
        };
        let map = decode("api-key: a\nx-team: b\n").unwrap();
        let list = decode("- {name: api-key, value: a}\n- {name: x-team, value: b}\n").unwrap();
        assert_eq!(map, list);
        assert!(decode("- {name: a, value: 1}\n- {name: A, value: 2}\n").is_err());
    }

    #[test]
    fn cookies_set_by_the_server_are_sent_back_until_removed() {
        let jar = CookieJar::default();
        assert!(jar.header().is_none());
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::SET_COOKIE,
            HeaderValue::from_static("lb=node-2; Path=/"),
        );
        h.append(reqwest::header::SET_COOKIE, HeaderValue::from_static("s=1"));
        jar.store(&h);
        assert_eq!(jar.header().unwrap(), "lb=node-2; s=1");
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::SET_COOKIE,
            HeaderValue::from_static("lb=x; Max-Age=0"),
        );
        jar.store(&h);
        assert_eq!(jar.header().unwrap(), "s=1");
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
