//! The `prometheusremotewrite` exporter: Prometheus remote write 1.0 (snappy-compressed
//! protobuf) to Prometheus, Mimir, Cortex, Thanos, VictoriaMetrics and the like, with the
//! OTel → Prometheus naming rules, `target_info`, external labels, requests cut under a size
//! limit, and series kept in timestamp order across retries.

mod convert;
mod proto;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Optional, SignalKind, Value};
use sluice_pipeline::config_keys::{NoEffect, decode_section, problem};
use sluice_pipeline::exporter::{Export, ExportHelper, HelperSettings, Sizer};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Metrics,
    SignalConsumer,
};
use tokio::time::Instant;

use crate::http::{self, ClientSettings, CookiesSettings, HeaderList, TlsSettings};
use crate::otel_to_prometheus::{
    ResourceConstantLabels, ResourceLabels, ResourceToTelemetry, Translation, TranslationStrategy,
};

const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "http.read_buffer_size",
        "a buffer size of Go's HTTP transport; sluice's client sizes its buffers itself",
    ),
    NoEffect::new(
        "http.write_buffer_size",
        "a buffer size of Go's HTTP transport; sluice's client sizes its buffers itself",
    ),
    NoEffect::new(
        "http.compression_params",
        "remote write bodies are snappy, which has no level",
    ),
    NoEffect::new(
        "http.tls.include_insecure_cipher_suites",
        "sluice's TLS has no insecure cipher suites to add",
    ),
    NoEffect::new(
        "include_metadata_keys",
        "sluice's receivers do not carry client metadata down the pipeline, so there is nothing to forward",
    ),
];

/// The confighttp client keys, at the top level (older configs) or under `http:`.
const CLIENT_KEYS: &[&str] = &[
    "endpoint",
    "proxy_url",
    "tls",
    "headers",
    "auth",
    "compression",
    "compression_params",
    "read_buffer_size",
    "write_buffer_size",
    "max_idle_conns",
    "max_idle_conns_per_host",
    "max_conns_per_host",
    "idle_conn_timeout",
    "disable_keep_alives",
    "http2_read_idle_timeout",
    "http2_ping_timeout",
    "cookies",
    "middlewares",
    "force_attempt_http2",
];

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    /// The remote write URL, e.g. `http://prometheus:9090/api/v1/write` (required).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Request headers (a map, or a list of `{name, value}`), e.g. a tenant or a token.
    #[serde(default)]
    pub headers: HeaderList,
    #[serde(default)]
    pub tls: TlsSettings,
    /// Only `snappy` (the protocol's), which is also the default.
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub max_idle_conns: Option<usize>,
    #[serde(default)]
    pub max_idle_conns_per_host: Option<usize>,
    #[serde(default)]
    pub max_conns_per_host: usize,
    #[serde(default)]
    pub idle_conn_timeout: Option<sluice_config::Duration>,
    #[serde(default)]
    pub disable_keep_alives: bool,
    #[serde(default)]
    pub force_attempt_http2: Option<bool>,
    #[serde(default)]
    pub http2_read_idle_timeout: Option<sluice_config::Duration>,
    #[serde(default)]
    pub http2_ping_timeout: Option<sluice_config::Duration>,
    #[serde(default)]
    pub cookies: Optional<CookiesSettings>,
    #[serde(default)]
    pub auth: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub middlewares: Vec<serde::de::IgnoredAny>,
}

/// `exporters: prometheusremotewrite:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The HTTP client (the top-level spellings of older configs are read into it).
    #[serde(default)]
    pub http: HttpClientConfig,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: String,
    /// Labels added to every series (a series' own label wins).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Every resource attribute as a label on every series (default off).
    #[serde(default)]
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Which resource attributes become labels (`included`, `excluded`).
    #[serde(default)]
    pub resource_constant_labels: Option<ResourceConstantLabels>,
    /// `target_info` per resource with its attributes (default enabled).
    #[serde(default)]
    pub target_info: TargetInfo,
    /// Also send `_created` series with start times (default off).
    #[serde(default)]
    pub export_created_metric: TargetInfo,
    /// Leave out `otel_scope_name`/`otel_scope_version` labels (default false).
    #[serde(default)]
    pub disable_scope_info: bool,
    /// Deprecated: `false` means `translation_strategy: UnderscoreEscapingWithoutSuffixes`.
    #[serde(default)]
    pub add_metric_suffixes: Option<bool>,
    #[serde(default)]
    pub translation_strategy: Option<TranslationStrategy>,
    /// Send each metric's type, help and unit too (default false).
    #[serde(default)]
    pub send_metadata: bool,
    /// Requests are cut so that each stays under this many bytes before compression
    /// (default 3000000).
    #[serde(default)]
    pub max_batch_size_bytes: Option<usize>,
    /// Requests of one batch sent at once (default: the number of CPUs).
    #[serde(default)]
    pub max_batch_request_parallelism: Option<usize>,
    /// The queue in front of the sends.
    #[serde(default)]
    pub remote_write_queue: RemoteWriteQueue,
    /// Only `prometheus.WriteRequest` (remote write 1.0).
    #[serde(default)]
    pub protobuf_message: Option<String>,
    /// The OTel Collector's own write-ahead log: refused, see the error.
    #[serde(default)]
    pub wal: Option<serde::de::IgnoredAny>,
    /// Remote write 2.0's native histograms with custom buckets: refused, see the error.
    #[serde(default)]
    pub convert_explicit_histograms_to_nhcb: bool,
    #[serde(default)]
    pub keep_classic_histograms: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetInfo {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteQueue {
    /// Queue batches and send them from `num_consumers` tasks (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Batches the queue holds (default 10000).
    #[serde(default = "default_queue_size")]
    pub queue_size: u64,
    /// Sending tasks (default 5).
    #[serde(default = "default_consumers")]
    pub num_consumers: usize,
}

impl Default for RemoteWriteQueue {
    fn default() -> Self {
        RemoteWriteQueue {
            enabled: true,
            queue_size: default_queue_size(),
            num_consumers: default_consumers(),
        }
    }
}

fn default_queue_size() -> u64 {
    10_000
}

fn default_consumers() -> usize {
    5
}

pub struct RemoteWriteExporterFactory;

impl ExporterFactory for RemoteWriteExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "prometheusremotewrite",
            aliases: &["prometheus_remote_write"],
            signals: &[SignalKind::Metrics],
            description: "sends metrics with Prometheus remote write 1.0 (snappy protobuf)",
        }
    }

    /// The OTel Collector's remote write defaults: 5 s per request, quick retries for a minute.
    fn helper_defaults(&self) -> HelperSettings {
        let mut settings = HelperSettings {
            timeout: StdDuration::from_secs(5),
            ..HelperSettings::default()
        };
        settings.retry.initial_interval = sluice_config::Duration::from_millis(50);
        settings.retry.max_interval = sluice_config::Duration::from_millis(200);
        settings.retry.max_elapsed_time = sluice_config::Duration::from_secs(60);
        settings
    }

    fn build(
        &self,
        config: &ComponentConfig,
        mut settings: HelperSettings,
        _signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let section = nest_client_keys(config);
        let cfg: RemoteWriteConfig = decode_section(&section, NO_EFFECT, &ctx.warnings)?;
        let at = |key: &str, message: String| problem(&section, key, message);
        let mut errors = Vec::new();
        if cfg.http.auth.is_some() {
            errors.push(at("http.auth", "authenticator extensions are not supported yet; put the credentials in `headers` (e.g. `Authorization: Bearer ${env:TOKEN}`)".into()));
        }
        if !cfg.http.middlewares.is_empty() {
            errors.push(at(
                "http.middlewares",
                "middleware extensions are not supported yet".into(),
            ));
        }
        if let Some(c) = &cfg.http.compression
            && c != "snappy"
        {
            errors.push(at(
                "http.compression",
                "compression type must be snappy".into(),
            ));
        }
        if cfg.wal.is_some() {
            errors.push(at("wal", "the Collector's own write-ahead log is not supported; for data that survives restarts use `sending_queue: {storage: file_storage/...}` with a file_storage extension".into()));
        }
        if cfg.convert_explicit_histograms_to_nhcb || cfg.keep_classic_histograms {
            errors.push(at("convert_explicit_histograms_to_nhcb", "native histograms with custom buckets need remote write 2.0, which sluice does not send yet".into()));
        }
        if let Some(m) = &cfg.protobuf_message
            && m != "prometheus.WriteRequest"
        {
            errors.push(at(
                "protobuf_message",
                format!("`{m}`: only remote write 1.0 (`prometheus.WriteRequest`) is supported"),
            ));
        }
        if cfg.max_batch_request_parallelism == Some(0) {
            errors.push(at(
                "max_batch_request_parallelism",
                "max_batch_request_parallelism can't be set to below 1".into(),
            ));
        }
        if cfg.max_batch_size_bytes == Some(0) {
            errors.push(at(
                "max_batch_size_bytes",
                "max_batch_size_bytes must be greater than 0".into(),
            ));
        }
        if cfg.remote_write_queue.enabled && cfg.remote_write_queue.queue_size == 0 {
            errors.push(at(
                "remote_write_queue.queue_size",
                "a 0 size queue will drop all the data".into(),
            ));
        }
        let strategy =
            TranslationStrategy::resolve(cfg.translation_strategy, cfg.add_metric_suffixes);
        if !strategy.escapes() {
            errors.push(at("translation_strategy", format!("{strategy:?} requires Prometheus Remote Write 2.0 (UTF-8 names), which sluice does not send yet")));
        }
        if cfg.resource_to_telemetry_conversion.enabled && cfg.resource_constant_labels.is_some() {
            errors.push(at("resource_constant_labels", "cannot configure both resource_to_telemetry_conversion and resource_constant_labels; resource_to_telemetry_conversion is deprecated".into()));
        }
        let endpoint = match cfg.http.endpoint.as_deref().map(reqwest::Url::parse) {
            Some(Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
            Some(Ok(u)) => {
                errors.push(at(
                    "http.endpoint",
                    format!("scheme must be http or https, not {}", u.scheme()),
                ));
                None
            }
            Some(Err(e)) => {
                errors.push(at("http.endpoint", format!("not a valid URL: {e}")));
                None
            }
            None => {
                errors.push(at(
                    "endpoint",
                    "set `endpoint` (e.g. http://prometheus:9090/api/v1/write)".into(),
                ));
                None
            }
        };
        let connections = ClientSettings {
            proxy_url: cfg.http.proxy_url.clone(),
            max_idle_conns: cfg.http.max_idle_conns,
            max_idle_conns_per_host: cfg.http.max_idle_conns_per_host,
            max_conns_per_host: cfg.http.max_conns_per_host,
            idle_conn_timeout: cfg.http.idle_conn_timeout,
            disable_keep_alives: cfg.http.disable_keep_alives,
            force_attempt_http2: cfg.http.force_attempt_http2,
            http2_read_idle_timeout: cfg.http.http2_read_idle_timeout,
            http2_ping_timeout: cfg.http.http2_ping_timeout,
        };
        let client = connections
            .client(&cfg.http.tls, settings.timeout)
            .map_err(|e| at("http.tls", e));
        let headers = http::headers(&cfg.http.headers).map_err(|e| at("http.headers", e));
        let (client, headers, endpoint) = match (client, headers, endpoint) {
            (Ok(c), Ok(h), Some(e)) if errors.is_empty() => (c, h, e),
            (c, h, _) => {
                errors.extend(c.err());
                errors.extend(h.err());
                return Err(ConfigErrors(errors));
            }
        };
        // `remote_write_queue` is this exporter's queue: it sets the helper's, counting batches.
        let queue = &cfg.remote_write_queue;
        if config.node.get("remote_write_queue").is_some()
            || config.node.get("sending_queue").is_none()
        {
            settings.queue.enabled = queue.enabled;
            settings.queue.queue_size = Some(sluice_config::ByteSize(queue.queue_size));
            settings.queue.sizer = Sizer::Requests;
        }
        // Prometheus refuses a sample older than the newest of its series, so batches go one
        // after another, in queue order: several consumers would race to the send line in the
        // order their conversions finish, not the order of the queue (a test lost a point to
        // that). `num_consumers` keeps upstream's meaning instead: how many requests of one
        // batch (different series) go at once, unless max_batch_request_parallelism says.
        let consumers = if config.node.get("remote_write_queue").is_some() {
            queue.num_consumers
        } else {
            settings.queue.num_consumers
        }
        .max(1);
        settings.queue.num_consumers = 1;
        let name = config.id.to_string();
        let translation = Translation {
            namespace: cfg.namespace.clone(),
            strategy,
            resource_labels: ResourceLabels::from_settings(
                &cfg.resource_to_telemetry_conversion,
                cfg.resource_constant_labels.as_ref(),
            ),
            scope_labels: !cfg.disable_scope_info,
        };
        let exporter = Arc::new(RemoteWriteExporter {
            name: name.clone(),
            client,
            headers,
            endpoint,
            translation,
            external_labels: cfg.external_labels.into_iter().collect(),
            target_info: cfg.target_info.enabled,
            created_metric: cfg.export_created_metric.enabled && config_has(config, "export_created_metric"),
            send_metadata: cfg.send_metadata,
            max_bytes: cfg.max_batch_size_bytes.unwrap_or(3_000_000),
            parallelism: cfg.max_batch_request_parallelism.unwrap_or(consumers),
            line: SendLine::new(RetryBounds::from_settings(&settings)),
            rejected: ctx.telemetry.metrics.counter(
                "sluice_exporter_prometheusremotewrite_rejected_samples",
                "Samples the remote write endpoint refused for good (4xx) or that remote write cannot carry (delta temporality)",
                &[("exporter", &name)],
            ),
        });
        let (consumer, lifecycle) =
            ExportHelper::<Metrics>::new(&name, settings, exporter, ctx).parts();
        Ok(BuiltExporter {
            consumers: vec![Metrics::to_any(consumer)],
            lifecycles: vec![lifecycle],
        })
    }
}

fn config_has(config: &ComponentConfig, key: &str) -> bool {
    config.node.get(key).is_some()
}

/// Older configs write the client keys at the top level; upstream reads them as `http:`
/// unless `http:` is given. The section is rewritten so that one struct reads both.
fn nest_client_keys(config: &ComponentConfig) -> ComponentConfig {
    let mut section = config.clone();
    if config.node.get("http").is_some() {
        return section;
    }
    let Value::Map(map) = &mut section.node.value else {
        return section;
    };
    let mut moved = Vec::new();
    map.entries.retain(|(k, v)| {
        if CLIENT_KEYS.contains(&k.name.as_str()) {
            moved.push((k.clone(), v.clone()));
            false
        } else {
            true
        }
    });
    if !moved.is_empty() {
        let pos = moved[0].0.pos.clone();
        let mut http = sluice_config::Node::empty_map(pos.clone());
        if let Value::Map(inner) = &mut http.value {
            for (k, v) in moved {
                inner.insert(k, v);
            }
        }
        map.insert(
            sluice_config::Key {
                name: "http".into(),
                pos,
            },
            http,
        );
    }
    section
}

pub struct RemoteWriteExporter {
    name: String,
    client: reqwest::Client,
    headers: HeaderMap,
    endpoint: reqwest::Url,
    translation: Translation,
    external_labels: Vec<(String, String)>,
    target_info: bool,
    created_metric: bool,
    send_metadata: bool,
    max_bytes: usize,
    parallelism: usize,
    /// Batches go out one after the other in the order they were first tried, a failed one
    /// blocking the line until its final outcome: Prometheus refuses a sample older than one
    /// it already has for the series, so a later batch overtaking a retried one would lose it.
    line: SendLine,
    rejected: Counter,
}

/// What the exporter helper's retry settings tell about how long a failed batch may still
/// come back, so the line can hold its place exactly that long.
#[derive(Clone, Copy, Debug)]
struct RetryBounds {
    enabled: bool,
    /// The longest wait the helper's backoff draws without a server hint (jitter included).
    longest_backoff: StdDuration,
    /// The helper's retry budget per batch; zero retries without end.
    max_elapsed: StdDuration,
    /// One attempt's limit: an attempt running longer was cut off by the helper.
    timeout: StdDuration,
    /// Leeway for the helper's scheduling between an outcome and its next attempt.
    slack: StdDuration,
}

/// The longest wait a server's Retry-After can impose on the helper (its own cap).
const MAX_SERVER_HINT: StdDuration = StdDuration::from_secs(3600);

impl RetryBounds {
    fn from_settings(settings: &HelperSettings) -> Self {
        let retry = &settings.retry;
        // Jitter is at most ±100%, so a wait never exceeds twice the larger interval.
        let longest_backoff = retry.initial_interval.0.max(retry.max_interval.0) * 2;
        RetryBounds {
            enabled: retry.enabled,
            longest_backoff,
            max_elapsed: retry.max_elapsed_time.0,
            timeout: settings.timeout,
            slack: StdDuration::from_secs(1),
        }
    }

    /// How long one attempt may take plus the longest backoff after it: if a batch is not
    /// tried again within this, the helper gave up on it.
    fn attempt_window(&self) -> StdDuration {
        self.timeout + self.longest_backoff + self.slack
    }
}

/// The order batches are sent in: a ticket per batch (known by the hash of its requests, the
/// same on every retry), the lowest live ticket sends. A ticket lives until its batch's final
/// outcome: delivered, refused for good, or given up by the helper's retries (which the
/// line works out from the same retry settings, honouring a long Retry-After).
struct SendLine {
    bounds: RetryBounds,
    state: Mutex<LineState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct LineState {
    next: u64,
    tickets: std::collections::HashMap<u64, Ticket>,
}

#[derive(Clone, Copy, Debug)]
struct Ticket {
    number: u64,
    /// The helper starts no attempt of the batch after this (its `max_elapsed_time` from
    /// the first attempt); None when it retries without end.
    retries_until: Option<Instant>,
    /// Not tried again by then: the helper dropped the batch.
    expires: Instant,
}

impl Ticket {
    fn live(&self, now: Instant, bounds: &RetryBounds) -> bool {
        // The last attempt may start at `retries_until` and run for a whole timeout.
        now < self.expires
            && self
                .retries_until
                .is_none_or(|until| now < until + bounds.timeout + bounds.slack)
    }
}

impl SendLine {
    fn new(bounds: RetryBounds) -> Self {
        SendLine {
            bounds,
            state: Mutex::new(LineState::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Waits until every batch first tried before `id` has its final outcome.
    async fn wait_turn(&self, id: u64) {
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let window = self.bounds.attempt_window();
                let next = state.next;
                let ticket = state.tickets.entry(id).or_insert_with(|| Ticket {
                    number: next,
                    retries_until: (self.bounds.enabled && !self.bounds.max_elapsed.is_zero())
                        .then(|| now.checked_add(self.bounds.max_elapsed))
                        .flatten(),
                    expires: now,
                });
                // An attempt is under way: the batch keeps its place for this attempt and the
                // backoff after it, and again at every later attempt.
                ticket.expires = now.checked_add(window).unwrap_or(ticket.expires);
                let mine = ticket.number;
                if mine == next {
                    state.next += 1;
                }
                let bounds = self.bounds;
                state.tickets.retain(|_, t| t.live(now, &bounds));
                let first = state.tickets.values().map(|t| t.number).min();
                if first.is_none_or(|n| n >= mine) {
                    return;
                }
            }
            // Woken when the line moves; the timeout lets given-up batches expire.
            let _ = tokio::time::timeout(StdDuration::from_millis(100), notified).await;
        }
    }

    /// Records the outcome of an attempt: the batch leaves the line when the outcome is
    /// final, else keeps its place until the helper's next attempt is due.
    fn finish(&self, id: u64, outcome: &Result<(), DeliveryError>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let retry_in = match outcome {
            Ok(()) | Err(DeliveryError::Permanent { .. }) => None,
            _ if !self.bounds.enabled => None,
            Err(DeliveryError::Throttled { retry_after, .. }) => Some(Some(*retry_after)),
            Err(DeliveryError::Retryable { retry_after, .. }) => Some(*retry_after),
        };
        let Some(ticket) = state.tickets.get_mut(&id) else {
            return;
        };
        // When the helper's next attempt starts, if it makes one: exactly after the server's
        // hint (capped as the helper caps it), which the helper does not wait for when it
        // ends past the retry budget; else within the helper's longest backoff (the line
        // cannot tell whether the jitter lands inside the budget, so it keeps the place
        // until the budget is over at most).
        let next_attempt = match retry_in {
            None => None,
            Some(Some(hint)) => now
                .checked_add(hint.min(MAX_SERVER_HINT))
                .filter(|at| ticket.retries_until.is_none_or(|until| *at <= until)),
            Some(None) => now.checked_add(self.bounds.longest_backoff),
        };
        // The place is kept a whole attempt window past the due time: on a loaded machine
        // the helper's timer fires late, and losing the place would reorder the batches.
        match next_attempt.and_then(|at| at.checked_add(self.bounds.attempt_window())) {
            Some(until) => ticket.expires = until,
            None => {
                // The final outcome: the batches behind may go.
                state.tickets.remove(&id);
                drop(state);
                self.changed.notify_waiters();
            }
        }
    }
}

fn body_hash(requests: &[Vec<u8>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in requests {
        r.hash(&mut h);
    }
    h.finish()
}

impl RemoteWriteExporter {
    async fn send(&self, body: Vec<u8>) -> Result<(), DeliveryError> {
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&body)
            .map_err(|e| DeliveryError::permanent(format!("cannot compress the request: {e}")))?;
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
            )
            .body(compressed)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let body = http::read_body(response, 4096).await;
        let detail = String::from_utf8_lossy(&body).trim().to_string();
        // Remote write's rules: 5xx and 429 are worth retrying, any other 4xx is not.
        Err(http::classify_webhook(status, &headers, &detail))
    }
}

#[async_trait]
impl Export<Metrics> for RemoteWriteExporter {
    async fn export(&self, batch: &Batch<Metrics>) -> Result<(), DeliveryError> {
        let converted = convert::convert(
            batch.resources(),
            &convert::Options {
                translation: &self.translation,
                external_labels: &self.external_labels,
                target_info: self.target_info,
                created_metric: self.created_metric,
                send_metadata: self.send_metadata,
            },
        );
        for (points, why) in &converted.dropped {
            self.rejected.add(*points as u64);
            tracing::warn!(exporter = %self.name, points, reason = %why, "points not sent");
        }
        let series: Vec<proto::TimeSeries> = converted.series.into_values().collect();
        let samples: u64 = series
            .iter()
            .map(|s| (s.samples.len() + s.histograms.len()) as u64)
            .sum();
        let requests: Vec<Vec<u8>> = convert::split(
            series,
            converted.metadata.into_values().collect(),
            self.max_bytes,
        )
        .into_iter()
        .map(|r| r.encode_to_vec())
        .collect();
        if requests.is_empty() {
            return Ok(());
        }
        let id = body_hash(&requests);
        self.line.wait_turn(id).await;
        let mut outcome = Ok(());
        for chunk in requests.chunks(self.parallelism.max(1)) {
            // Requests of one batch hold different series, so they may go at once.
            let sends = chunk.iter().map(|body| self.send(body.clone()));
            for result in futures::future::join_all(sends).await {
                if let Err(e) = result {
                    outcome = Err(e);
                }
            }
            if outcome.is_err() {
                break;
            }
        }
        if outcome.as_ref().is_err_and(DeliveryError::is_permanent) {
            self.rejected.add(samples);
        }
        self.line.finish(id, &outcome);
        outcome
    }
}

#[cfg(test)]
mod tests;
