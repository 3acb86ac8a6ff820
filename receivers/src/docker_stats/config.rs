//! `receivers: docker_stats:` — the OTel Collector's keys, checked into ready-to-use settings.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Deserializer};
use sluice_config::{ComponentConfig, ConfigErrors, Duration};
use sluice_pipeline::config_keys::ConfigWarnings;

use super::metrics::Plan;
use crate::metric_keys::{KeyChecker, MetricSettings, ResourceAttributeSettings, ResourcePlan};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerStatsConfig {
    /// `unix:///path/to.sock` (default `unix:///var/run/docker.sock`) or `tcp://host:port`.
    pub endpoint: String,
    /// How often stats are read (default 10s).
    pub collection_interval: Duration,
    /// Wait before the first collection (default 1s).
    pub initial_delay: Duration,
    /// Longest wait for one Docker API answer (default 5s).
    pub timeout: Duration,
    /// The Engine API version to speak, e.g. `"1.41"`; default: the daemon's own, negotiated.
    pub api_version: Option<ApiVersion>,
    /// Images whose containers are not watched: each item a literal, a glob (`redis:*`), or a
    /// regular expression between slashes (`/^redis:[0-9]+$/`), matched against the image as
    /// the container was created from it; a leading `!` turns an item around (every image
    /// that does NOT match it is excluded).
    pub excluded_images: Vec<String>,
    /// Container label → resource attribute name.
    pub container_labels_to_metric_labels: BTreeMap<String, String>,
    /// Container environment variable → resource attribute name.
    pub env_vars_to_metric_labels: BTreeMap<String, String>,
    /// `semconv` (default): sluice's semantic-convention metrics are on by default;
    /// `collector`: the OTel Collector's docker_stats metrics, names and defaults. Every metric
    /// of both sets can be switched on by name under either.
    pub attribute_names: Naming,
    /// Per-metric `enabled`, `attributes`, `aggregation_strategy`, by either set's names.
    pub metrics: BTreeMap<String, MetricSettings>,
    /// Per-resource-attribute `enabled`, `metrics_include`, `metrics_exclude`,
    /// `override_value`.
    pub resource_attributes: BTreeMap<String, ResourceAttributeSettings>,
    /// The OTel Collector's former switch for `container.cpu.usage.percpu`.
    pub provide_per_core_cpu_metrics: Option<bool>,
    /// How long a stopped container keeps reporting `container.up` 0 (default 5m).
    pub stopped_grace_period: Duration,
    /// First wait before reconnecting to a daemon that went away (default 500ms).
    pub min_docker_retry_wait: Duration,
    /// Longest wait between reconnection attempts (default 30s).
    pub max_docker_retry_wait: Duration,
    /// Which container events become log records.
    pub logs: EventsConfig,
}

impl Default for DockerStatsConfig {
    fn default() -> Self {
        DockerStatsConfig {
            endpoint: "unix:///var/run/docker.sock".into(),
            collection_interval: Duration::from_secs(10),
            initial_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            api_version: None,
            excluded_images: Vec::new(),
            container_labels_to_metric_labels: BTreeMap::new(),
            env_vars_to_metric_labels: BTreeMap::new(),
            attribute_names: Naming::Semconv,
            metrics: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            provide_per_core_cpu_metrics: None,
            stopped_grace_period: Duration::from_secs(300),
            min_docker_retry_wait: Duration::from_millis(500),
            max_docker_retry_wait: Duration::from_secs(30),
            logs: EventsConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    #[default]
    Semconv,
    Collector,
}

/// `logs:` — which container events become log records (Docker's event filters).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Docker event filters: `type`, `event`, `container`, `image`, `label`, ... (all keys
    /// must match, any value of a key).
    pub filters: BTreeMap<String, Vec<String>>,
    /// Replay the events since this time (Unix seconds or RFC 3339) at the first connection.
    pub since: Option<String>,
    /// Record no event after this time (Unix seconds or RFC 3339).
    pub until: Option<String>,
}

/// `major.minor`. YAML reads an unquoted `1.41` as a number, which is accepted too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersion(pub String);

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ApiVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an API version like \"1.41\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ApiVersion, E> {
                Ok(ApiVersion(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ApiVersion, E> {
                // 1.4 written for 1.40 would become 1.4: keep two decimals, as Docker's are.
                Ok(ApiVersion(format!("{v:.2}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ApiVersion, E> {
                Ok(ApiVersion(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ApiVersion, E> {
                Ok(ApiVersion(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl ApiVersion {
    /// `major.minor` (a bare major means minor 0), as the OTel Collector reads it.
    pub fn parse(&self) -> Option<(usize, usize)> {
        let text = self.0.trim();
        let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
        Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
    }
}

/// Where the daemon is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Unix(String),
    Tcp(String),
}

/// A pattern item of `excluded_images` (literals are kept apart).
#[derive(Clone, Debug)]
enum ImageItem {
    Glob(globset::GlobMatcher),
    Regex(Regex),
}

impl ImageItem {
    fn matches(&self, image: &str) -> bool {
        match self {
            ImageItem::Glob(g) => g.is_match(image),
            ImageItem::Regex(r) => r.is_match(image),
        }
    }
}

/// `excluded_images` as the OTel Collector reads it: a literal decides alone when the image
/// is one of them; otherwise any negated literal excludes the image; otherwise the first
/// pattern (regexes, then globs) that matches — or, negated, does not match — excludes it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageMatcher {
    literals: Vec<(String, bool)>,
    any_negated_literal: bool,
    patterns: Vec<(ImageItem, bool)>,
}

impl ImageMatcher {
    pub(crate) fn excludes(&self, image: &str) -> bool {
        if let Some((_, negated)) = self.literals.iter().find(|(l, _)| l == image) {
            return !negated;
        }
        if self.any_negated_literal {
            return true;
        }
        self.patterns
            .iter()
            .any(|(item, negated)| item.matches(image) != *negated)
    }
}

/// The checked config.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub endpoint: Endpoint,
    pub interval: std::time::Duration,
    pub initial_delay: std::time::Duration,
    pub timeout: std::time::Duration,
    pub api_version: Option<(usize, usize)>,
    pub excluded: ImageMatcher,
    pub labels: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub grace: std::time::Duration,
    pub naming: Naming,
    pub plan: Plan,
    pub resource: ResourcePlan,
    pub min_retry: std::time::Duration,
    pub max_retry: std::time::Duration,
    pub events: EventFilter,
}

impl Settings {
    /// Whether a container created from `image` is left alone.
    pub(crate) fn excluded(&self, image: &str) -> bool {
        self.excluded.excludes(image)
    }
}

/// Which lifecycle events become records.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventFilter {
    filters: BTreeMap<String, Vec<String>>,
    /// Unix nanoseconds to replay from at the first connection.
    pub since: Option<u64>,
    /// Unix nanoseconds after which no record is made.
    pub until: Option<u64>,
}

/// What an event is about, for the filters.
pub(crate) struct EventFacts<'a> {
    pub action: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    pub image: &'a str,
    pub labels: &'a std::collections::HashMap<String, String>,
    pub time: u64,
}

impl EventFilter {
    /// Whether the event makes a record: each filter key must match (as Docker matches them
    /// for a container event), and the time must not be past `until`.
    pub(crate) fn allows(&self, e: &EventFacts<'_>) -> bool {
        if self.until.is_some_and(|until| e.time > until) {
            return false;
        }
        self.filters.iter().all(|(key, values)| {
            values.is_empty()
                || values.iter().any(|v| match key.as_str() {
                    "type" => v == "container",
                    "event" => v == e.action,
                    "container" => v == e.name || (!v.is_empty() && e.id.starts_with(v.as_str())),
                    "image" => v == e.image || super::state::split_image(e.image).0 == *v,
                    "label" => match v.split_once('=') {
                        Some((k, want)) => e.labels.get(k).is_some_and(|have| have == want),
                        None => e.labels.contains_key(v),
                    },
                    "scope" => v == "local",
                    // network, volume, daemon, plugin, ...: no container event has them.
                    _ => false,
                })
        })
    }
}

/// Docker's timestamps in filters: Unix seconds (with a fraction) or RFC 3339.
fn event_time(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1e9) as u64);
    }
    super::state::parse_rfc3339_nanos(text)
}

impl DockerStatsConfig {
    pub(crate) fn validate(
        self,
        component: &ComponentConfig,
        warnings: &ConfigWarnings,
    ) -> Result<Settings, ConfigErrors> {
        let mut check = KeyChecker::new(component, warnings);
        let endpoint = if let Some(path) = self.endpoint.strip_prefix("unix://") {
            Endpoint::Unix(path.to_string())
        } else if self.endpoint.starts_with('/') {
            Endpoint::Unix(self.endpoint.clone())
        } else if let Some(address) = self
            .endpoint
            .strip_prefix("tcp://")
            .or_else(|| self.endpoint.strip_prefix("http://"))
        {
            Endpoint::Tcp(format!("tcp://{address}"))
        } else {
            check.error(
                &["endpoint"],
                None,
                format!(
                    "`{}` is not a Docker endpoint; use `unix:///var/run/docker.sock` or `tcp://host:2375`",
                    self.endpoint
                ),
            );
            Endpoint::Unix(String::new())
        };
        for (key, value) in [
            ("collection_interval", self.collection_interval),
            ("timeout", self.timeout),
            ("min_docker_retry_wait", self.min_docker_retry_wait),
            ("max_docker_retry_wait", self.max_docker_retry_wait),
        ] {
            if value.0.is_zero() {
                check.error(&[key], None, format!("{key} must be more than 0"));
            }
        }
        if self.max_docker_retry_wait.0 < self.min_docker_retry_wait.0 {
            check.error(
                &["max_docker_retry_wait"],
                None,
                "max_docker_retry_wait must not be less than min_docker_retry_wait",
            );
        }
        let api_version = match &self.api_version {
            None => None,
            Some(v) if v.0.trim().is_empty() => None,
            Some(v) => match v.parse() {
                Some(parsed) if parsed >= (1, 25) => Some(parsed),
                Some(_) => {
                    check.error(
                        &["api_version"],
                        None,
                        format!("`{}`: api_version must be at least 1.25", v.0),
                    );
                    None
                }
                None => {
                    check.error(
                        &["api_version"],
                        None,
                        format!("`{}` is not an API version like \"1.41\"", v.0),
                    );
                    None
                }
            },
        };
        let excluded = image_matcher(&self.excluded_images, &mut check);
        for (key, map) in [
            (
                "container_labels_to_metric_labels",
                &self.container_labels_to_metric_labels,
            ),
            ("env_vars_to_metric_labels", &self.env_vars_to_metric_labels),
        ] {
            if let Some((from, _)) = map.iter().find(|(_, to)| to.trim().is_empty()) {
                check.error(
                    &[key, from.as_str()],
                    None,
                    format!("`{from}` maps to an empty attribute name"),
                );
            }
        }
        let mut metrics = self.metrics.clone();
        if let Some(per_core) = self.provide_per_core_cpu_metrics {
            check.warn_at_key(
                &["provide_per_core_cpu_metrics"],
                "deprecated by the OTel Collector; use `metrics: {container.cpu.usage.percpu: {enabled: ...}}` (applied as that)",
            );
            metrics
                .entry(super::metrics::PERCPU.to_string())
                .or_default()
                .enabled
                .get_or_insert(per_core);
        }
        let plan = super::metrics::plan(&mut check, &metrics, self.attribute_names);
        let semconv = self.attribute_names == Naming::Semconv;
        let resource = check.resource_attributes(
            &["resource_attributes"],
            &self.resource_attributes,
            if semconv {
                super::state::SEMCONV_RESOURCE
            } else {
                super::state::COLLECTOR_RESOURCE
            },
            semconv,
        );
        let mut events = EventFilter {
            filters: self.logs.filters.clone(),
            ..Default::default()
        };
        for (key, value, slot) in [
            ("since", &self.logs.since, &mut events.since),
            ("until", &self.logs.until, &mut events.until),
        ] {
            if let Some(text) = value {
                match event_time(text) {
                    Some(t) => *slot = Some(t),
                    None => check.error(
                        &["logs", key],
                        None,
                        format!("`{text}` is neither Unix seconds nor an RFC 3339 time"),
                    ),
                }
            }
        }
        if let (Some(since), Some(until)) = (events.since, events.until)
            && since > until
        {
            check.error(
                &["logs", "since"],
                None,
                "logs.since must not be after logs.until",
            );
        }
        for key in self.logs.filters.keys() {
            if !["type", "event", "container", "image", "label", "scope"].contains(&key.as_str()) {
                check.warn_at_key(
                    &["logs", "filters", key.as_str()],
                    format!(
                        "no container event has a `{key}`, so this filter lets no record through"
                    ),
                );
            }
        }
        check.errors.into_result(Settings {
            endpoint,
            interval: self.collection_interval.0,
            initial_delay: self.initial_delay.0,
            timeout: self.timeout.0,
            api_version,
            excluded,
            labels: self.container_labels_to_metric_labels,
            env_vars: self.env_vars_to_metric_labels,
            grace: self.stopped_grace_period.0,
            naming: self.attribute_names,
            plan,
            resource,
            min_retry: self.min_docker_retry_wait.0,
            max_retry: self.max_docker_retry_wait.0,
            events,
        })
    }
}

fn image_matcher(items: &[String], check: &mut KeyChecker<'_>) -> ImageMatcher {
    let mut m = ImageMatcher::default();
    for (i, raw) in items.iter().enumerate() {
        let (item, negated) = match raw.strip_prefix('!') {
            Some(rest) => (rest, true),
            None => (raw.as_str(), false),
        };
        if item.len() > 2 && item.starts_with('/') && item.ends_with('/') {
            match Regex::new(&item[1..item.len() - 1]) {
                Ok(re) => m.patterns.push((ImageItem::Regex(re), negated)),
                Err(e) => check.error(
                    &["excluded_images"],
                    Some(i),
                    format!(
                        "`{raw}` is not a regular expression: {}",
                        crate::metric_keys::short(&e)
                    ),
                ),
            }
        } else if item.contains(['*', '?', '[', ']', '{', '}', '!']) {
            match globset::Glob::new(item) {
                Ok(glob) => m
                    .patterns
                    .push((ImageItem::Glob(glob.compile_matcher()), negated)),
                Err(e) => check.error(
                    &["excluded_images"],
                    Some(i),
                    format!("`{raw}` is not a glob: {e}"),
                ),
            }
        } else {
            m.any_negated_literal |= negated;
            m.literals.push((item.to_string(), negated));
        }
    }
    // Regexes are tried before globs, as the OTel Collector does.
    m.patterns
        .sort_by_key(|(item, _)| !matches!(item, ImageItem::Regex(_)));
    m
}
