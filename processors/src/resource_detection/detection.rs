//! Running the detectors (side by side, each retried within its time budget), merging what
//! they found, keeping it fresh, and stamping it onto resources.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use sluice_pipeline::proto::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use sluice_pipeline::proto::resource::v1::Resource;
use tokio::time::Instant;

use super::attributes::Switches;
use super::config::{DetectorKind, ResourceDetectionConfig, RetryConfig};
use super::detectors;
use super::endpoints::Endpoints;
use super::host::Host;
use super::http;

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

    /// Like `string`, but an empty value is left out: the metadata service did not say.
    pub fn non_empty(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.string(key, value);
        }
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

    #[cfg(test)]
    pub fn get_strings(&self, key: &str) -> Option<Vec<&str>> {
        match self.get(key) {
            Some(Value::ArrayValue(a)) => Some(
                a.values
                    .iter()
                    .filter_map(|v| match v.value.as_ref() {
                        Some(Value::StringValue(s)) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
            ),
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

/// What one detector run may use and how long it may take.
#[derive(Clone)]
pub struct Ctx {
    pub kind: DetectorKind,
    pub host: Host,
    pub cfg: Arc<ResourceDetectionConfig>,
    pub endpoints: Arc<Endpoints>,
    /// End of the current attempt: every request is bounded by it.
    pub attempt_deadline: Instant,
}

impl Ctx {
    /// How long a request may take now: what is left of the attempt.
    pub fn request_timeout(&self) -> Duration {
        self.attempt_deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// Whether a missing metadata service is a failure for this detector.
    pub fn fail_on_missing(&self) -> bool {
        self.cfg.fails_on_missing(self.kind)
    }

    /// The outcome "not on this platform": nothing found, or a failure with
    /// `fail_on_missing_metadata`.
    pub fn missing(&self, why: impl std::fmt::Display) -> DetectResult {
        if self.fail_on_missing() {
            Err(format!("metadata unavailable: {why}"))
        } else {
            tracing::debug!(detector = %self.kind, reason = %why, "resource detector: not on this platform");
            Ok(Found::default())
        }
    }

    /// The detector's `resource_attributes` switches.
    pub fn switches(&self) -> Switches<'_> {
        static NONE: std::sync::OnceLock<super::attributes::ResourceAttributes> =
            std::sync::OnceLock::new();
        let configured = self
            .kind
            .configured(&self.cfg)
            .unwrap_or_else(|| NONE.get_or_init(Default::default));
        Switches::new(self.kind.attributes(), configured)
    }

    /// An HTTP client for cloud APIs, with the processor's `proxy_url`, `headers` and `tls`.
    pub fn api_client(&self) -> Result<http::Client, String> {
        let mut client = http::Client::default();
        if let Some(proxy) = &self.cfg.proxy_url {
            client = client.with_proxy(super::config::proxy_uri(proxy)?);
        }
        for (name, value) in &self.cfg.headers {
            let name = ::http::header::HeaderName::try_from(name.as_str())
                .map_err(|e| format!("headers.{name}: {e}"))?;
            let value = ::http::header::HeaderValue::try_from(value.as_str())
                .map_err(|e| format!("headers.{name}: {e}"))?;
            client = client.with_header(name, value);
        }
        let tls = &self.cfg.tls;
        if *tls != Default::default() {
            let options = super::tls::options_from(tls, None)?;
            client = client.with_tls(super::tls::client_config(&options)?);
        }
        Ok(client)
    }
}

/// Exponential back-off with jitter, as the OTel Collector's `retry` block describes it.
struct Backoff {
    next: Duration,
    cfg: RetryConfig,
}

impl Backoff {
    fn new(cfg: &RetryConfig) -> Self {
        Backoff {
            next: cfg.initial_interval.0,
            cfg: cfg.clone(),
        }
    }

    fn wait(&mut self) -> Duration {
        let base = self.next.as_secs_f64();
        let spread = base * self.cfg.randomization_factor;
        let jittered = base - spread + fastrand::f64() * 2.0 * spread;
        let grown = (base * self.cfg.multiplier).min(self.cfg.max_interval.0.as_secs_f64());
        self.next = Duration::from_secs_f64(grown.max(0.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }
}

/// How long all of detection may take: `retry.max_elapsed_time` when set, else `timeout`.
pub fn budget(cfg: &ResourceDetectionConfig) -> Duration {
    if cfg.retry.enabled && !cfg.retry.max_elapsed_time.0.is_zero() {
        cfg.retry.max_elapsed_time.0
    } else {
        cfg.timeout.0
    }
}

/// Runs every configured detector side by side and gives each one's outcome in the configured
/// order. A detector still running when the budget runs out has failed; the others keep their
/// findings.
pub async fn run_all(
    host: &Host,
    cfg: &Arc<ResourceDetectionConfig>,
    endpoints: &Arc<Endpoints>,
) -> Vec<(DetectorKind, DetectResult)> {
    let budget = budget(cfg);
    let deadline = Instant::now() + budget;
    let runs = cfg.detectors.iter().map(|&kind| {
        let ctx = Ctx {
            kind,
            host: host.clone(),
            cfg: cfg.clone(),
            endpoints: endpoints.clone(),
            attempt_deadline: deadline,
        };
        async move {
            let outcome = match tokio::time::timeout_at(deadline, attempts(ctx, deadline)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("did not finish within {budget:?}")),
            };
            (kind, outcome)
        }
    });
    futures::future::join_all(runs).await
}

/// Attempts of one detector until one succeeds, retries are off, or the next wait would end
/// past `deadline`.
async fn attempts(mut ctx: Ctx, deadline: Instant) -> DetectResult {
    let mut backoff = Backoff::new(&ctx.cfg.retry);
    let per_attempt = ctx.cfg.timeout.0;
    loop {
        ctx.attempt_deadline = if per_attempt.is_zero() {
            deadline
        } else {
            deadline.min(Instant::now() + per_attempt)
        };
        let result = match tokio::time::timeout_at(ctx.attempt_deadline, detectors::run(&ctx)).await
        {
            Ok(result) => result,
            Err(_) => Err(format!("an attempt did not finish within {per_attempt:?}")),
        };
        let error = match result {
            Ok(found) => return Ok(ctx.switches().apply(found)),
            Err(e) => e,
        };
        if !ctx.cfg.retry.enabled {
            return Err(error);
        }
        let wait = backoff.wait();
        if Instant::now() + wait >= deadline {
            return Err(error);
        }
        tracing::warn!(detector = %ctx.kind, error = %error, retry_in = ?wait, "resource detector failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// Merges outcomes in priority order: a key found by an earlier detector is not replaced by a
/// later one. With `stop_on_failure` a failure is returned; otherwise it is logged and the
/// detector skipped. The second value says whether any detector failed.
pub fn merge(
    processor: &str,
    outcomes: Vec<(DetectorKind, DetectResult)>,
    stop_on_failure: bool,
) -> Result<(Vec<KeyValue>, bool), String> {
    let mut merged: Vec<KeyValue> = Vec::new();
    let mut failed = false;
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
            Err(e) if stop_on_failure => return Err(format!("detector `{kind}` failed: {e}")),
            Err(e) => {
                failed = true;
                tracing::warn!(processor, detector = %kind, error = %e, "resource detector failed; continuing without it");
            }
        }
    }
    Ok((merged, failed))
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

/// The detection of one processor id, shared by the pipelines that list it: run at start,
/// then again every `refresh_interval` when set.
pub struct Detection {
    pub name: String,
    pub cfg: Arc<ResourceDetectionConfig>,
    host: Host,
    endpoints: Arc<Endpoints>,
    current: RwLock<Option<Arc<Vec<KeyValue>>>>,
    first: tokio::sync::OnceCell<()>,
    refresher: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Detection {
    pub fn new(
        name: impl Into<String>,
        cfg: ResourceDetectionConfig,
        host: Host,
        endpoints: Endpoints,
    ) -> Self {
        Detection {
            name: name.into(),
            cfg: Arc::new(cfg),
            host,
            endpoints: Arc::new(endpoints),
            current: RwLock::new(None),
            first: tokio::sync::OnceCell::new(),
            refresher: Mutex::new(None),
        }
    }

    /// One detection: the merged attributes (deprecated `attributes:` applied) and whether a
    /// detector failed.
    async fn detect(&self, stop_on_failure: bool) -> Result<(Vec<KeyValue>, bool), String> {
        let outcomes = run_all(&self.host, &self.cfg, &self.endpoints).await;
        let (mut attrs, failed) = merge(&self.name, outcomes, stop_on_failure)?;
        if let Some(keep) = &self.cfg.attributes {
            attrs.retain(|kv| keep.contains(&kv.key));
        }
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        tracing::info!(processor = %self.name, attributes = ?keys, "resource detected");
        Ok((attrs, failed))
    }

    fn store(&self, attrs: Vec<KeyValue>) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = Some(Arc::new(attrs));
    }

    fn snapshot(&self) -> Option<Arc<Vec<KeyValue>>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs detection unless it already ran, then keeps it fresh. Fails only when a failing
    /// detector stops start-up (`fail_on_error`, `fail_on_missing_metadata`).
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        self.first
            .get_or_try_init(|| async {
                let (attrs, _) = self.detect(self.cfg.failure_stops_start()).await?;
                self.store(attrs);
                Ok::<(), String>(())
            })
            .await?;
        self.keep_fresh();
        Ok(())
    }

    /// Starts the `refresh_interval` loop once. It holds the detection weakly, so it ends
    /// with the pipelines that use it.
    fn keep_fresh(self: &Arc<Self>) {
        let interval = self.cfg.refresh_interval.0;
        if interval.is_zero() {
            return;
        }
        let mut refresher = self.refresher.lock().unwrap_or_else(|p| p.into_inner());
        if refresher.is_some() {
            return;
        }
        let weak: Weak<Detection> = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(detection) = weak.upgrade() else {
                    return;
                };
                detection.refresh().await;
            }
        });
        *refresher = Some(task.abort_handle());
    }

    /// Detects again. A refresh where some detector failed keeps the previous answer when it
    /// had attributes, as the OTel Collector does: a passing outage must not strip them.
    async fn refresh(&self) {
        let Ok((attrs, failed)) = self.detect(false).await else {
            return;
        };
        let previous_had_some = self.snapshot().is_some_and(|p| !p.is_empty());
        if failed && previous_had_some {
            tracing::warn!(processor = %self.name, "resource refresh failed; keeping the previous attributes");
            return;
        }
        self.store(attrs);
    }

    /// Ends the refresh loop.
    pub fn stop(&self) {
        if let Some(task) = self
            .refresher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// The detected attributes. Normally `start` has run and this returns at once; a stage
    /// used without being started detects on first use instead, never failing.
    pub async fn attributes(&self) -> Arc<Vec<KeyValue>> {
        if let Some(attrs) = self.snapshot() {
            return attrs;
        }
        self.first
            .get_or_init(|| async {
                let attrs = self.detect(false).await.map(|(a, _)| a).unwrap_or_default();
                self.store(attrs);
            })
            .await;
        self.snapshot().unwrap_or_default()
    }
}

impl Drop for Detection {
    fn drop(&mut self) {
        self.stop();
    }
}
