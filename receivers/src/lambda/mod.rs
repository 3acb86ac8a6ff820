//! The `lambda` receiver: subscribes to the AWS Lambda Telemetry API and turns what it pushes
//! (function and extension logs, platform events) into logs, metrics and spans.
//!
//! It runs inside the sluice extension (`sluice lambda`, see the binary), which registers with
//! the Extensions API first and hands this receiver the extension id through
//! [`runtime_api::set_extension`].

mod config;
mod events;
pub mod runtime_api;
#[cfg(test)]
mod tests;
mod time;

pub use config::{Buffering, LambdaConfig};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic};
use sluice_pipeline::consumer::DEFAULT_ADMISSION_WAIT;
use sluice_pipeline::proto::common::v1::{InstrumentationScope, KeyValue, any_value};
use sluice_pipeline::proto::logs::v1::{ResourceLogs, ScopeLogs};
use sluice_pipeline::proto::metrics::v1::{ResourceMetrics, ScopeMetrics};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::{ResourceSpans, ScopeSpans};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, Consumer, FactoryInfo, Lifecycle, Receiver, ReceiverFactory,
    ReceiverOutputs, Signal, SignalKind, StartError, decode_config,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use events::string;
use runtime_api::tracker;

pub const SCHEMA_VERSION: &str = "2022-12-13";
const SCOPE: &str = "sluice/lambda";

pub struct LambdaReceiverFactory;

impl ReceiverFactory for LambdaReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "lambda",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "AWS Lambda Telemetry API: function logs, invocation metrics and spans",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        let cfg: LambdaConfig = decode_config(config)?;
        let mut errors = Vec::new();
        for (key, problem) in cfg.buffering.problems() {
            errors.push(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.buffering.{key}", config.path),
                problem,
            ));
        }
        for t in &cfg.types {
            if !config::KNOWN_TYPES.contains(&t.as_str()) {
                errors.push(Diagnostic::new(
                    Some(config.node.pos.clone()),
                    format!("{}.types", config.path),
                    format!(
                        "unknown telemetry type `{t}`; known: {}",
                        config::KNOWN_TYPES.join(", ")
                    ),
                ));
            }
        }
        if !cfg.endpoint.contains(':') {
            errors.push(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.endpoint", config.path),
                format!("`{}` must be host:port", cfg.endpoint),
            ));
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let name = config.id.to_string();
        let refused = ctx.telemetry.metrics.counter(
            "sluice_receiver_lambda_refused_events",
            "Telemetry API pushes that could not be handed to the pipeline in time",
            &[("receiver", &name)],
        );
        Ok(Arc::new(LambdaReceiver {
            name,
            cfg,
            shared: Arc::new(Shared {
                outputs,
                state: Mutex::new(events::State::default()),
                base_resource: resource_from_env(&|k| std::env::var(k).ok()),
                refused,
            }),
            server: Mutex::new(None),
        }))
    }
}

/// The detector's attributes, from the variables Lambda sets (as the `lambda` resource
/// detector does; a component cannot use another crate's code).
fn resource_from_env(var: &dyn Fn(&str) -> Option<String>) -> Vec<KeyValue> {
    let mut attrs = vec![
        string("cloud.provider", "aws"),
        string("cloud.platform", "aws_lambda"),
    ];
    for (key, variable) in [
        ("faas.name", "AWS_LAMBDA_FUNCTION_NAME"),
        ("faas.version", "AWS_LAMBDA_FUNCTION_VERSION"),
        ("cloud.region", "AWS_REGION"),
    ] {
        if let Some(v) = var(variable) {
            attrs.push(string(key, &v));
        }
    }
    attrs
}

struct Shared {
    outputs: ReceiverOutputs,
    state: Mutex<events::State>,
    base_resource: Vec<KeyValue>,
    refused: Counter,
}

impl Shared {
    fn resource(&self, state: &events::State) -> Resource {
        let mut attributes = self.base_resource.clone();
        if let Some(id) = &state.instance_id {
            attributes.push(string("faas.instance", id));
        } else if let Ok(stream) = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME") {
            attributes.push(string("faas.instance", &stream));
        }
        let memory_mb = state.max_memory_mb.or_else(|| {
            std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if let Some(bytes) = memory_mb
            .filter(|mb| *mb >= 0)
            .and_then(|mb| mb.checked_mul(1024 * 1024))
        {
            attributes.push(events::kv(
                "faas.max_memory",
                any_value::Value::IntValue(bytes),
            ));
        }
        if let Some(account) = runtime_api::extension().and_then(|c| c.account_id.as_deref()) {
            attributes.push(string("cloud.account.id", account));
        }
        Resource {
            attributes,
            ..Default::default()
        }
    }

    /// Maps one push and hands it to the pipeline; milestones are reported only after, so the
    /// extension loop's flush finds the data already inside.
    async fn accept(&self, events: &[serde_json::Value]) -> bool {
        let (mapped, resource) = {
            let Ok(mut state) = self.state.lock() else {
                return false;
            };
            let mapped = state.map(events);
            let resource = self.resource(&state);
            (mapped, resource)
        };
        let scope = Some(InstrumentationScope {
            name: SCOPE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        });
        let mut handed_over = true;
        if let (Some(out), false) = (&self.outputs.logs, mapped.logs.is_empty()) {
            let data = vec![ResourceLogs {
                resource: Some(resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: scope.clone(),
                    log_records: mapped.logs,
                    ..Default::default()
                }],
                ..Default::default()
            }];
            handed_over &= hand_over(out.as_ref(), data, &self.refused).await;
        }
        if let (Some(out), false) = (&self.outputs.metrics, mapped.metrics.is_empty()) {
            let data = vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope.clone(),
                    metrics: mapped.metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }];
            handed_over &= hand_over(out.as_ref(), data, &self.refused).await;
        }
        if let (Some(out), false) = (&self.outputs.traces, mapped.spans.is_empty()) {
            let data = vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope,
                    spans: mapped.spans,
                    ..Default::default()
                }],
                ..Default::default()
            }];
            handed_over &= hand_over(out.as_ref(), data, &self.refused).await;
        }
        for (milestone, id) in mapped.milestones {
            tracker().mark(milestone, &id);
        }
        handed_over
    }
}

/// Hands data to the pipeline without waiting for its delivery: the Telemetry API only needs
/// to know it was taken, and the extension loop flushes before the sandbox freezes.
async fn hand_over<S: Signal>(
    out: &dyn Consumer<S>,
    data: Vec<S::Resource>,
    refused: &Counter,
) -> bool {
    let batch = Batch::<S>::from_resources(data);
    let items = batch.items();
    if tokio::time::timeout(DEFAULT_ADMISSION_WAIT, out.consume(batch))
        .await
        .is_err()
    {
        refused.add(items as u64);
        tracing::warn!(
            items,
            "lambda receiver: pipeline is full; telemetry dropped"
        );
        return false;
    }
    true
}

pub struct LambdaReceiver {
    name: String,
    cfg: LambdaConfig,
    shared: Arc<Shared>,
    server: Mutex<Option<(JoinHandle<()>, SocketAddr)>>,
}

impl LambdaReceiver {
    /// The address the Telemetry API pushes to, once started.
    pub fn bound_address(&self) -> Option<SocketAddr> {
        self.server
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|(_, a)| *a))
    }

    fn error(&self, message: impl Into<String>) -> StartError {
        StartError::new(&self.name, message)
    }

    async fn subscribe(&self, port: u16) -> Result<(), StartError> {
        let context = runtime_api::extension().ok_or_else(|| {
            self.error("not registered as a Lambda extension; the lambda receiver runs under `sluice lambda` (or with AWS_LAMBDA_RUNTIME_API set)")
        })?;
        let host = self
            .cfg
            .endpoint
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or("sandbox.localdomain");
        let body = serde_json::json!({
            "schemaVersion": SCHEMA_VERSION,
            "types": self.cfg.types,
            "buffering": {
                "maxItems": self.cfg.buffering.max_items,
                "maxBytes": self.cfg.buffering.max_bytes,
                "timeoutMs": self.cfg.buffering.timeout_ms,
            },
            "destination": {"protocol": "HTTP", "URI": format!("http://{host}:{port}/")},
        });
        let response = runtime_api::request(
            &context.runtime_api,
            "PUT",
            "/2022-07-01/telemetry",
            &[("Lambda-Extension-Identifier", &context.extension_id)],
            body.to_string().as_bytes(),
            Some(Duration::from_secs(5)),
        )
        .await
        .map_err(|e| self.error(format!("Telemetry API subscription failed: {e}")))?;
        if !(200..300).contains(&response.status) {
            return Err(self.error(format!(
                "Telemetry API refused the subscription ({}): {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            )));
        }
        // Without platform events no runtimeDone will come to wait for.
        if self.cfg.types.iter().any(|t| t == "platform") {
            tracker().set_subscribed();
        }
        Ok(())
    }
}

async fn receive(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> StatusCode {
    let events: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "lambda receiver: Telemetry API sent something that is not a JSON array");
            return StatusCode::BAD_REQUEST;
        }
    };
    if shared.accept(&events).await {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[async_trait]
impl Lifecycle for LambdaReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let listener = TcpListener::bind(&self.cfg.endpoint)
            .await
            .map_err(|e| self.error(format!("cannot listen on {}: {e}", self.cfg.endpoint)))?;
        let address = listener
            .local_addr()
            .map_err(|e| self.error(format!("cannot read the bound address: {e}")))?;
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(self.shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "lambda receiver stopped");
            }
        });
        if let Ok(mut s) = self.server.lock() {
            *s = Some((task, address));
        }
        self.subscribe(address.port()).await
    }

    async fn shutdown(&self, _deadline: Instant) {
        // Stays up until the very end: on SHUTDOWN the platform still pushes the last
        // invocation's report, and the extension loop flushes after shutdown starts.
        if let Some((task, _)) = self.server.lock().ok().and_then(|mut s| s.take()) {
            task.abort();
        }
    }
}

impl Receiver for LambdaReceiver {
    fn listen_addresses(&self) -> Vec<String> {
        // The sandbox name resolves only inside Lambda; elsewhere (validating a layer's config
        // on a laptop) there is nothing meaningful to check.
        if self.cfg.endpoint.starts_with("sandbox.localdomain:")
            && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none()
        {
            return Vec::new();
        }
        vec![self.cfg.endpoint.clone()]
    }
}

#[cfg(test)]
pub(crate) fn shared_for_test(
    outputs: ReceiverOutputs,
) -> impl Fn(&[serde_json::Value]) -> futures::future::BoxFuture<'static, bool> {
    let shared = Arc::new(Shared {
        outputs,
        state: Mutex::new(events::State::default()),
        base_resource: resource_from_env(&|k| match k {
            "AWS_LAMBDA_FUNCTION_NAME" => Some("orders".into()),
            "AWS_REGION" => Some("eu-west-1".into()),
            _ => None,
        }),
        refused: Counter::default(),
    });
    move |events: &[serde_json::Value]| {
        let shared = shared.clone();
        let events = events.to_vec();
        Box::pin(async move { shared.accept(&events).await })
    }
}
