//! What the HTTP server adds to its answers: CORS for web pages that send OTLP from a browser
//! (preflights answered here, before the OTLP handler, which only takes POST), and the
//! configured `response_headers`.
//!
//! CORS follows the collector's HTTP server (rs/cors): credentials allowed, an allowed origin
//! echoed back (`*` answered as `*`, which browsers never combine with credentials, so a
//! wildcard cannot leak a user's cookies to any site), `GET`, `POST` and `HEAD` allowed, the
//! requested headers checked against `allowed_headers` (`Accept`, `Content-Type` and
//! `X-Requested-With` when it is empty). A preflight that is not allowed is answered 204
//! without CORS headers, so the browser, not the server, refuses it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::config::{CorsConfig, HttpConfig};

/// The headers a page may send when `allowed_headers` is empty.
const DEFAULT_ALLOWED_HEADERS: &[&str] = &["accept", "content-type", "x-requested-with"];

const ALLOWED_METHODS: &[Method] = &[Method::GET, Method::POST, Method::HEAD];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Any,
    Exact(String),
    /// One `*`: any run of characters between the two parts.
    Pattern {
        prefix: String,
        suffix: String,
    },
}

impl Origin {
    fn parse(text: &str) -> Result<Origin, String> {
        let text = text.to_ascii_lowercase();
        if text == "*" {
            return Ok(Origin::Any);
        }
        match text.split_once('*') {
            None => Ok(Origin::Exact(text)),
            Some((prefix, suffix)) if !suffix.contains('*') => Ok(Origin::Pattern {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            }),
            Some(_) => Err(format!(
                "`{text}` has more than one `*`; an origin pattern takes one wildcard"
            )),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Origin::Any => true,
            Origin::Exact(o) => o == origin,
            Origin::Pattern { prefix, suffix } => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        }
    }
}

#[derive(Debug)]
struct Cors {
    origins: Vec<Origin>,
    /// Lower-cased; `None` when `*` allows any.
    headers: Option<Vec<String>>,
    max_age: u64,
    /// `exposed_headers`, joined for `Access-Control-Expose-Headers`.
    exposed: Option<HeaderValue>,
}

impl Cors {
    fn from_config(config: &CorsConfig) -> Result<Option<Cors>, (String, String)> {
        if config.allowed_origins.is_empty() {
            return Ok(None);
        }
        let origins = config
            .allowed_origins
            .iter()
            .enumerate()
            .map(|(i, o)| Origin::parse(o).map_err(|e| (format!("allowed_origins[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let headers = if config.allowed_headers.iter().any(|h| h == "*") {
            None
        } else {
            Some(if config.allowed_headers.is_empty() {
                DEFAULT_ALLOWED_HEADERS
                    .iter()
                    .map(|h| h.to_string())
                    .collect()
            } else {
                config
                    .allowed_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect()
            })
        };
        let exposed = if config.exposed_headers.is_empty() {
            None
        } else {
            Some(
                HeaderValue::from_str(&config.exposed_headers.join(", ")).map_err(|_| {
                    (
                        "exposed_headers".to_string(),
                        "not valid header names".to_string(),
                    )
                })?,
            )
        };
        Ok(Some(Cors {
            origins,
            headers,
            max_age: config.max_age,
            exposed,
        }))
    }

    fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| o.matches(&origin))
    }

    /// `Access-Control-Allow-Origin` for an allowed `origin`.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.origins.contains(&Origin::Any) {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    fn allows_headers(&self, requested: &str) -> bool {
        let Some(allowed) = &self.headers else {
            return true;
        };
        requested
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| allowed.contains(&h))
    }

    fn preflight(&self, request: &Request) -> Response {
        let headers = request.headers();
        let mut answer = StatusCode::NO_CONTENT.into_response();
        let out = answer.headers_mut();
        out.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok())
            .and_then(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok());
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (Some(origin), Some(method)) = (origin, method) else {
            return answer;
        };
        if !self.allows_origin(origin)
            || !ALLOWED_METHODS.contains(&method)
            || !self.allows_headers(requested)
        {
            return answer;
        }
        if let Ok(value) = HeaderValue::from_str(origin) {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin_value(&value),
            );
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        if let Ok(value) = HeaderValue::from_str(method.as_str()) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
        }
        if !requested.trim().is_empty()
            && let Ok(value) = HeaderValue::from_str(requested)
        {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if self.max_age > 0 {
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.max_age),
            );
        }
        answer
    }

    /// The headers of an answer to an actual cross-origin request.
    fn decorate(&self, origin: Option<&HeaderValue>, answer: &mut Response) {
        let out = answer.headers_mut();
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin else { return };
        if origin.to_str().is_ok_and(|o| self.allows_origin(o)) {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin_value(origin),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            if let Some(exposed) = &self.exposed {
                out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
            }
        }
    }
}

/// CORS and `response_headers` of one HTTP server; `None` when neither is configured.
#[derive(Debug)]
pub(crate) struct AnswerHeaders {
    cors: Option<Cors>,
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl AnswerHeaders {
    /// Checks the keys; an error names the key (relative to `protocols.http`) and why.
    pub(crate) fn from_config(
        config: &HttpConfig,
    ) -> Result<Option<Arc<AnswerHeaders>>, (String, String)> {
        let cors = match &config.cors {
            Some(c) => Cors::from_config(c).map_err(|(key, e)| (format!("cors.{key}"), e))?,
            None => None,
        };
        let mut extra = Vec::new();
        for (name, value) in &config.response_headers {
            let key = format!("response_headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (key.clone(), format!("`{name}` is not a valid header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| (key, "not a valid header value".to_string()))?;
            extra.push((name, value));
        }
        if cors.is_none() && extra.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(AnswerHeaders { cors, extra })))
    }

    /// Whether `allowed_headers` is set while CORS is off (no origin allowed): the collector
    /// warns about that, as the user probably meant to allow an origin.
    pub(crate) fn headers_without_origins(config: &HttpConfig) -> bool {
        config
            .cors
            .as_ref()
            .is_some_and(|c| c.allowed_origins.is_empty() && !c.allowed_headers.is_empty())
    }
}

/// The middleware: answers CORS preflights, decorates every other answer.
pub(crate) async fn apply(
    State(answers): State<Arc<AnswerHeaders>>,
    request: Request,
    next: Next,
) -> Response {
    let is_preflight = request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut answer = match (&answers.cors, is_preflight) {
        (Some(cors), true) => cors.preflight(&request),
        (Some(cors), false) => {
            let origin = request.headers().get(header::ORIGIN).cloned();
            let mut answer = next.run(request).await;
            cors.decorate(origin.as_ref(), &mut answer);
            answer
        }
        (None, _) => next.run(request).await,
    };
    // Configured headers never replace what the handler or CORS set (a configured `Vary`
    // must not drop `Vary: Origin`), as upstream sets them before either runs.
    for (name, value) in &answers.extra {
        if !answer.headers().contains_key(name) {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_as_the_collector_does() {
        let any_sub = Origin::parse("https://*.example.com").unwrap();
        assert!(any_sub.matches("https://app.example.com"));
        assert!(any_sub.matches("https://a.b.example.com"));
        assert!(!any_sub.matches("https://example.com"));
        assert!(!any_sub.matches("http://app.example.com"));
        assert!(
            Origin::parse("HTTPS://App.Example.com")
                .unwrap()
                .matches("https://app.example.com")
        );
        assert!(Origin::parse("*").unwrap().matches("null"));
        assert!(Origin::parse("https://*.*.com").is_err());
    }

    #[test]
    fn requested_headers_are_checked_against_the_allowed_ones() {
        let cors = Cors::from_config(&CorsConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_headers: vec!["X-Tenant".into()],
            max_age: 0,
            exposed_headers: Vec::new(),
        })
        .unwrap()
        .unwrap();
        // rs/cors: once headers are listed, only those (the defaults apply to an empty list).
        assert!(cors.allows_headers("x-tenant"));
        assert!(!cors.allows_headers("content-type, x-tenant"));
        assert!(cors.allows_headers(""));
        assert!(!cors.allows_headers("authorization"));
        let any = Cors::from_config(&CorsConfig {
            allowed_origins: vec!["*".into()],
            allowed_headers: vec!["*".into()],
            max_age: 0,
            exposed_headers: Vec::new(),
        })
        .unwrap()
        .unwrap();
        assert!(any.allows_headers("authorization, x-anything"));
        // A wildcard is answered as `*`, which browsers refuse to combine with credentials.
        let origin = HeaderValue::from_static("https://evil.example");
        assert_eq!(any.allow_origin_value(&origin), "*");
        assert_eq!(cors.allow_origin_value(&origin), origin);
    }
}
