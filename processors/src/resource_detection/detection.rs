//! Running the detectors once, merging what they found, and stamping it onto resources.

use std::sync::Arc;
use std::time::Duration;

use sluice_pipeline::proto::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use sluice_pipeline::proto::resource::v1::Resource;

use super::config::{DetectorKind, ResourceDetectionConfig};
use super::host::Host;
use super::{container, env, k8s, lambda, system};

/// The attributes one detector found, in the order it found them, each key once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found(pub Vec<KeyValue>);

impl Found {
    pub fn set(&mut self, key: &str, value: Value) {
        let value = Some(AnyValue { value: Some(value) });
        match self.0.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value,
            None => self.0.push(KeyValue {
                key: key.to_string(),
                value,
                ..Default::default()
            }),
        }
    }

    pub fn string(&mut self, key: &str, value: impl Into<String>) {
        self.set(key, Value::StringValue(value.into()));
    }

    pub fn int(&mut self, key: &str, value: i64) {
        self.set(key, Value::IntValue(value));
    }

    pub fn strings(&mut self, key: &str, values: Vec<String>) {
        let values = values
            .into_iter()
            .map(|s| AnyValue {
                value: Some(Value::StringValue(s)),
            })
            .collect();
        self.set(key, Value::ArrayValue(ArrayValue { values }));
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[cfg(test)]
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|kv| kv.key.as_str()).collect()
    }
}

pub type DetectResult = Result<Found, String>;

fn run_one(kind: DetectorKind, host: &Host, cfg: &ResourceDetectionConfig) -> DetectResult {
    match kind {
        DetectorKind::Env => env::detect(host),
        DetectorKind::System => system::detect(host, &cfg.system, cfg.timeout.0),
        DetectorKind::Docker => container::detect(host),
        DetectorKind::K8s => k8s::detect(host),
        DetectorKind::Lambda => lambda::detect(host),
    }
}

/// Runs every configured detector side by side, each on a blocking thread (they read files
/// and may ask a DNS resolver), and gives each one's outcome in the configured order. A
/// detector still running at the timeout is reported as failed; the others keep their
/// findings.
pub async fn run_all(
    host: &Host,
    cfg: &ResourceDetectionConfig,
) -> Vec<(DetectorKind, DetectResult)> {
    let timeout: Duration = cfg.timeout.0;
    let deadline = tokio::time::Instant::now() + timeout;
    let runs = cfg.detectors.iter().map(|&kind| {
        let host = host.clone();
        let cfg = cfg.clone();
        async move {
            let task = tokio::task::spawn_blocking(move || run_one(kind, &host, &cfg));
            let outcome = match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(format!("detector stopped unexpectedly: {e}")),
                Err(_) => Err(format!("did not finish within the timeout ({timeout:?})")),
            };
            (kind, outcome)
        }
    });
    futures::future::join_all(runs).await
}

/// Merges outcomes in priority order: a key found by an earlier detector is not replaced by a
/// later one. A failure is returned when `fail_on_error` is set; otherwise it is logged and
/// the detector skipped.
pub fn merge(
    processor: &str,
    outcomes: Vec<(DetectorKind, DetectResult)>,
    fail_on_error: bool,
) -> Result<Vec<KeyValue>, String> {
    let mut merged: Vec<KeyValue> = Vec::new();
    for (kind, outcome) in outcomes {
        match outcome {
            Ok(found) => {
                tracing::debug!(processor, detector = %kind, keys = ?found.keys(), "resource detector finished");
                for kv in found.0 {
                    if !merged.iter().any(|m| m.key == kv.key) {
                        merged.push(kv);
                    }
                }
            }
            Err(e) if fail_on_error => return Err(format!("detector `{kind}` failed: {e}")),
            Err(e) => {
                tracing::warn!(processor, detector = %kind, error = %e, "resource detector failed; continuing without it");
            }
        }
    }
    Ok(merged)
}

/// Whether stamping `attrs` would change `resource`, so unchanged batches are passed on
/// without copying data another branch shares.
pub fn would_change(
    resource: Option<&Resource>,
    attrs: &[KeyValue],
    override_existing: bool,
) -> bool {
    let Some(resource) = resource else {
        return !attrs.is_empty();
    };
    attrs.iter().any(
        |kv| match resource.attributes.iter().find(|a| a.key == kv.key) {
            None => true,
            Some(existing) => override_existing && existing.value != kv.value,
        },
    )
}

/// Adds the detected attributes to a resource; an attribute it already has is replaced only
/// when `override_existing`.
pub fn stamp(resource: &mut Option<Resource>, attrs: &[KeyValue], override_existing: bool) {
    let resource = resource.get_or_insert_with(Resource::default);
    for kv in attrs {
        match resource.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(existing) => {
                if override_existing {
                    existing.value = kv.value.clone();
                }
            }
            None => resource.attributes.push(kv.clone()),
        }
    }
}

/// The detection of one processor id, shared by the pipelines that list it, run once.
pub struct Detection {
    pub name: String,
    pub cfg: ResourceDetectionConfig,
    host: Host,
    cached: tokio::sync::OnceCell<Arc<Vec<KeyValue>>>,
}

impl Detection {
    pub fn new(name: impl Into<String>, cfg: ResourceDetectionConfig, host: Host) -> Self {
        Detection {
            name: name.into(),
            cfg,
            host,
            cached: tokio::sync::OnceCell::new(),
        }
    }

    async fn detect(&self, fail_on_error: bool) -> Result<Arc<Vec<KeyValue>>, String> {
        let outcomes = run_all(&self.host, &self.cfg).await;
        let attrs = merge(&self.name, outcomes, fail_on_error)?;
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        tracing::info!(processor = %self.name, attributes = ?keys, "resource detected");
        Ok(Arc::new(attrs))
    }

    /// Runs detection unless it already ran; fails only when `fail_on_error` is set.
    pub async fn start(&self) -> Result<(), String> {
        self.cached
            .get_or_try_init(|| self.detect(self.cfg.fail_on_error))
            .await
            .map(|_| ())
    }

    /// The detected attributes. Normally `start` has already run and this returns at once;
    /// a stage used without being started detects on first use instead, never failing.
    pub async fn attributes(&self) -> Arc<Vec<KeyValue>> {
        self.cached
            .get_or_init(|| async {
                self.detect(false)
                    .await
                    .unwrap_or_else(|_| Arc::new(Vec::new()))
            })
            .await
            .clone()
    }
}
