//! The `health_check` extension (also spelled `healthcheckv2`): where sluice says whether it
//! is ready, with the OTel Collector's legacy keys and its newer `http` / `grpc` form.

use std::collections::BTreeMap;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{DEFAULT_HEALTH_ENDPOINT, Health, HealthState};
use crate::config_keys::{ConfigWarnings, NoEffect, decode_section, problem};

/// Keys of the upstream extension that cannot mean anything for sluice, and why.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "check_collector_pipeline",
        "ignored by the OTel Collector too since its health_check moved to the shared \
         implementation; exporter failures are in otelcol_exporter_send_failed_*",
    ),
    NoEffect::new(
        "component_health",
        "sluice reports one state for the whole collector (starting, ready, shutting down); \
         components have no separate statuses to count",
    ),
    NoEffect::new(
        "grpc",
        "the gRPC health service is not served yet; the HTTP endpoint answers the same \
         question",
    ),
    NoEffect::new(
        "http.config",
        "serving the effective configuration is not implemented; `sluice print-config` \
         shows it",
    ),
    NoEffect::new(
        "http.status.include_attributes",
        "sluice's status has no event attributes",
    ),
    NoEffect::new(
        "http.status.verbose",
        "sluice's status has no per-component details",
    ),
    NoEffect::new(
        "cors",
        "the health endpoint answers GET only; no browser calls it",
    ),
    NoEffect::new(
        "http.cors",
        "the health endpoint answers GET only; no browser calls it",
    ),
    NoEffect::new("max_request_body_size", "health requests have no body"),
    NoEffect::new("http.max_request_body_size", "health requests have no body"),
    NoEffect::new("include_metadata", "health requests carry no telemetry"),
    NoEffect::new(
        "http.include_metadata",
        "health requests carry no telemetry",
    ),
    NoEffect::new(
        "compression_algorithms",
        "health requests have no body to decompress",
    ),
    NoEffect::new(
        "http.compression_algorithms",
        "health requests have no body to decompress",
    ),
    NoEffect::new(
        "read_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "read_header_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "write_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "idle_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "keep_alives_enabled",
        "Go's http.Server connection reuse switch",
    ),
    NoEffect::new(
        "http.read_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "http.read_header_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "http.write_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "http.idle_timeout",
        "answers are immediate; Go's http.Server timeouts",
    ),
    NoEffect::new(
        "http.keep_alives_enabled",
        "Go's http.Server connection reuse switch",
    ),
    NoEffect::new("transport", "the health endpoint listens on TCP"),
    NoEffect::new("http.transport", "the health endpoint listens on TCP"),
    NoEffect::new(
        "dialer",
        "a dialer setting; the health endpoint only listens",
    ),
    NoEffect::new(
        "http.dialer",
        "a dialer setting; the health endpoint only listens",
    ),
];

/// `extensions: health_check:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Default `localhost:13133` (`:13133` means every interface).
    pub endpoint: String,
    /// Default `/`.
    pub path: String,
    /// Bodies that replace the default JSON answer.
    pub response_body: Option<ResponseBody>,
    /// Headers added to every answer.
    pub response_headers: BTreeMap<String, String>,
    /// The newer form: `http` (and `grpc`) instead of the keys above.
    pub use_v2: bool,
    /// The newer form's HTTP service; setting it selects the newer form.
    pub http: Option<HttpHealth>,
    /// Authenticator extensions: refused with a clear error.
    pub auth: Option<serde::de::IgnoredAny>,
    /// Server TLS: refused with a clear error.
    pub tls: Option<serde::de::IgnoredAny>,
    /// Middleware extensions: only an empty list is accepted.
    pub middlewares: Vec<serde::de::IgnoredAny>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: DEFAULT_HEALTH_ENDPOINT.into(),
            path: "/".into(),
            response_body: None,
            response_headers: BTreeMap::new(),
            use_v2: false,
            http: None,
            auth: None,
            tls: None,
            middlewares: Vec::new(),
        }
    }
}

/// `response_body`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseBody {
    /// Body of a 200 answer.
    pub healthy: String,
    /// Body of a 503 answer.
    pub unhealthy: String,
}

/// `http` of the newer form.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpHealth {
    /// Default `localhost:13133`.
    pub endpoint: String,
    pub status: StatusPath,
    pub response_headers: BTreeMap<String, String>,
    pub auth: Option<serde::de::IgnoredAny>,
    pub tls: Option<serde::de::IgnoredAny>,
    pub middlewares: Vec<serde::de::IgnoredAny>,
}

impl Default for HttpHealth {
    fn default() -> Self {
        HttpHealth {
            endpoint: DEFAULT_HEALTH_ENDPOINT.into(),
            status: StatusPath::default(),
            response_headers: BTreeMap::new(),
            auth: None,
            tls: None,
            middlewares: Vec::new(),
        }
    }
}

/// `http.status`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPath {
    /// Default true.
    pub enabled: bool,
    /// Default `/status`; `/status/<pipeline>` answers for one pipeline.
    pub path: String,
}

impl Default for StatusPath {
    fn default() -> Self {
        StatusPath {
            enabled: true,
            path: "/status".into(),
        }
    }
}

/// What the health endpoint serves, after the config is read.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthRoutes {
    pub endpoint: String,
    /// The paths that answer; a path ending in `/*` answers below it too.
    pub paths: Vec<String>,
    pub healthy_body: Option<String>,
    pub unhealthy_body: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Default for HealthRoutes {
    fn default() -> Self {
        HealthRoutes {
            endpoint: DEFAULT_HEALTH_ENDPOINT.into(),
            paths: vec!["/".into()],
            healthy_body: None,
            unhealthy_body: None,
            headers: Vec::new(),
        }
    }
}

impl HealthCheckConfig {
    /// Decodes the section, reporting every problem at once.
    pub fn decode(
        config: &ComponentConfig,
        warnings: &ConfigWarnings,
    ) -> Result<HealthRoutes, ConfigErrors> {
        let cfg: HealthCheckConfig = decode_section(config, NO_EFFECT, warnings)?;
        let mut errors: Vec<Diagnostic> = Vec::new();
        let refused = |errors: &mut Vec<Diagnostic>, key: &str, message: &str| {
            errors.push(problem(config, key, message));
        };
        for (prefix, auth, tls, middlewares) in [
            ("", &cfg.auth, &cfg.tls, cfg.middlewares.len()),
            (
                "http.",
                &cfg.http.as_ref().and_then(|h| h.auth),
                &cfg.http.as_ref().and_then(|h| h.tls),
                cfg.http.as_ref().map_or(0, |h| h.middlewares.len()),
            ),
        ] {
            if auth.is_some() {
                refused(
                    &mut errors,
                    &format!("{prefix}auth"),
                    "authenticator extensions are not supported yet",
                );
            }
            if tls.is_some() {
                refused(
                    &mut errors,
                    &format!("{prefix}tls"),
                    "TLS on the health endpoint is not supported yet; serve it on a local \
                     address or put a TLS proxy in front",
                );
            }
            if middlewares > 0 {
                refused(
                    &mut errors,
                    &format!("{prefix}middlewares"),
                    "middleware extensions are not supported yet",
                );
            }
        }
        if !cfg.path.starts_with('/') {
            refused(&mut errors, "path", "must start with `/`");
        }
        let routes = match (&cfg.http, cfg.use_v2) {
            (Some(http), _) => {
                if !http.status.path.starts_with('/') {
                    refused(&mut errors, "http.status.path", "must start with `/`");
                }
                HealthRoutes {
                    endpoint: http.endpoint.clone(),
                    paths: if http.status.enabled {
                        vec![
                            http.status.path.clone(),
                            format!("{}/*", http.status.path.trim_end_matches('/')),
                        ]
                    } else {
                        Vec::new()
                    },
                    healthy_body: None,
                    unhealthy_body: None,
                    headers: http.response_headers.clone().into_iter().collect(),
                }
            }
            (None, true) => HealthRoutes {
                endpoint: DEFAULT_HEALTH_ENDPOINT.into(),
                paths: vec!["/status".into(), "/status/*".into()],
                ..HealthRoutes::default()
            },
            (None, false) => HealthRoutes {
                endpoint: cfg.endpoint.clone(),
                paths: vec![cfg.path.clone()],
                healthy_body: cfg.response_body.as_ref().map(|b| b.healthy.clone()),
                unhealthy_body: cfg.response_body.as_ref().map(|b| b.unhealthy.clone()),
                headers: cfg.response_headers.clone().into_iter().collect(),
            },
        };
        for (name, value) in &routes.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err()
                || HeaderValue::from_str(value).is_err()
            {
                refused(
                    &mut errors,
                    "response_headers",
                    &format!("`{name}: {value}` is not a valid HTTP header"),
                );
            }
        }
        if errors.is_empty() {
            Ok(routes)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

fn answer(health: &Health, routes: &HealthRoutes) -> Response {
    let state = health.get();
    let ready = state == HealthState::Ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let custom = if ready {
        &routes.healthy_body
    } else {
        &routes.unhealthy_body
    };
    let mut response = match custom {
        Some(body) => (status, body.clone()).into_response(),
        None => {
            let text = match state {
                HealthState::Ready => "Server available",
                HealthState::Starting => "Server not available: starting",
                HealthState::Draining => "Server not available: shutting down",
            };
            let body = serde_json::json!({
                "status": text,
                "state": format!("{state:?}").to_lowercase(),
                "upSince": health.up_since(),
                "uptime": health.uptime(),
            });
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    };
    for (name, value) in &routes.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

/// Serves the health answer on every route: 200 once every component has started, 503
/// while starting or draining.
pub fn serve_health(listener: TcpListener, routes: HealthRoutes, health: Health) -> JoinHandle<()> {
    let mut app = Router::new();
    for path in &routes.paths {
        let path = match path.strip_suffix("/*") {
            Some(base) => format!("{base}/{{*rest}}"),
            None => path.clone(),
        };
        let health = health.clone();
        let routes = routes.clone();
        app = app.route(
            &path,
            get(move || {
                let health = health.clone();
                let routes = routes.clone();
                async move { answer(&health, &routes) }
            }),
        );
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "health endpoint stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{ComponentId, ComponentKind, Pos};

    fn decode(yaml: &str) -> (Result<HealthRoutes, ConfigErrors>, Vec<Diagnostic>) {
        let config = ComponentConfig {
            kind: ComponentKind::Extension,
            id: ComponentId::new("health_check"),
            pos: Pos::new("h.yaml", 1, 1),
            path: "extensions.health_check".into(),
            node: sluice_config::parse_yaml("h.yaml", yaml).unwrap(),
        };
        let warnings = ConfigWarnings::default();
        let r = HealthCheckConfig::decode(&config, &warnings);
        (r, warnings.take())
    }

    #[test]
    fn legacy_keys_and_bodies() {
        let (r, warnings) = decode(
            "endpoint: \":13133\"\npath: /health/status\nresponse_body:\n  healthy: up\n  unhealthy: down\ncheck_collector_pipeline:\n  enabled: true\n  interval: 5m\n  exporter_failure_threshold: 5\n",
        );
        let r = r.unwrap();
        assert_eq!(r.endpoint, ":13133");
        assert_eq!(r.paths, ["/health/status"]);
        assert_eq!(r.healthy_body.as_deref(), Some("up"));
        assert_eq!(
            warnings[0].path,
            "extensions.health_check.check_collector_pipeline"
        );
    }

    #[test]
    fn the_newer_form_serves_status_paths() {
        let (r, _) = decode(
            "use_v2: true\nhttp:\n  endpoint: localhost:13134\n  status:\n    path: /s\ngrpc:\n  endpoint: localhost:13132\n",
        );
        let r = r.unwrap();
        assert_eq!(r.endpoint, "localhost:13134");
        assert_eq!(r.paths, ["/s", "/s/*"]);
    }

    #[test]
    fn auth_and_tls_are_refused_together() {
        let (r, _) = decode("auth:\n  authenticator: basicauth\ntls:\n  cert_file: a\npath: x\n");
        let text = r.unwrap_err().to_string();
        assert!(
            text.contains("authenticator extensions are not supported yet"),
            "{text}"
        );
        assert!(text.contains("TLS on the health endpoint"), "{text}");
        assert!(text.contains("must start with `/`"), "{text}");
    }
}
