//! `receivers: docker_stats:` — the OTel Collector's keys, checked into ready-to-use settings.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Deserializer};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerStatsConfig {
    /// `unix:///path/to.sock` (default `unix:///var/run/docker.sock`) or `tcp://host:port`.
    pub endpoint: String,
    /// How often stats are read (default 10s).
    pub collection_interval: Duration,
    /// Longest wait for one Docker API answer (default 5s).
    pub timeout: Duration,
    /// The Engine API version to speak, e.g. `"1.41"`; default: the daemon's own, negotiated.
    pub api_version: Option<ApiVersion>,
    /// Images whose containers are not watched: globs matched against the image as the
    /// container was created from it (`redis:7`, `docker.io/library/*`) and against its name
    /// without the tag (`redis`).
    pub excluded_images: Vec<String>,
    /// Container label → resource attribute name.
    pub container_labels_to_metric_labels: BTreeMap<String, String>,
    /// Container environment variable → resource attribute name.
    pub env_vars_to_metric_labels: BTreeMap<String, String>,
    /// How long a stopped container keeps reporting `container.up` 0 (default 5m).
    pub stopped_grace_period: Duration,
}

impl Default for DockerStatsConfig {
    fn default() -> Self {
        DockerStatsConfig {
            endpoint: "unix:///var/run/docker.sock".into(),
            collection_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            api_version: None,
            excluded_images: Vec::new(),
            container_labels_to_metric_labels: BTreeMap::new(),
            env_vars_to_metric_labels: BTreeMap::new(),
            stopped_grace_period: Duration::from_secs(300),
        }
    }
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
                Ok(ApiVersion(v.to_string()))
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
    pub fn parse(&self) -> Option<(usize, usize)> {
        let (major, minor) = self.0.trim().split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }
}

/// Where the daemon is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Unix(String),
    Tcp(String),
}

/// The checked config.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub endpoint: Endpoint,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub api_version: Option<(usize, usize)>,
    pub excluded: GlobSet,
    pub labels: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub grace: std::time::Duration,
}

impl Settings {
    /// Whether a container created from `image` is left alone.
    pub(crate) fn excluded(&self, image: &str) -> bool {
        if self.excluded.is_empty() {
            return false;
        }
        let (name, _) = super::state::split_image(image);
        self.excluded.is_match(image) || self.excluded.is_match(&name)
    }
}

impl DockerStatsConfig {
    pub(crate) fn validate(self, component: &ComponentConfig) -> Result<Settings, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let at = |key: &str| {
            let pos = component
                .node
                .as_map()
                .and_then(|m| m.get(key))
                .map(|n| n.pos.clone())
                .unwrap_or_else(|| component.pos.clone());
            (Some(pos), format!("{}.{key}", component.path))
        };
        let mut error = |key: &str, message: String| {
            let (pos, path) = at(key);
            errors.push(Diagnostic::new(pos, path, message));
        };
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
            error(
                "endpoint",
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
        ] {
            if value.0.is_zero() {
                error(key, format!("{key} must be more than 0"));
            }
        }
        let api_version = match &self.api_version {
            None => None,
            Some(v) => match v.parse() {
                Some(parsed) => Some(parsed),
                None => {
                    error(
                        "api_version",
                        format!("`{}` is not an API version like \"1.41\"", v.0),
                    );
                    None
                }
            },
        };
        let mut globs = GlobSetBuilder::new();
        for (i, pattern) in self.excluded_images.iter().enumerate() {
            match Glob::new(pattern) {
                Ok(glob) => {
                    globs.add(glob);
                }
                Err(e) => error(
                    "excluded_images",
                    format!("entry {i} `{pattern}` is not a glob: {e}"),
                ),
            }
        }
        let excluded = globs.build().unwrap_or_else(|_| GlobSet::empty());
        for (key, map) in [
            (
                "container_labels_to_metric_labels",
                &self.container_labels_to_metric_labels,
            ),
            ("env_vars_to_metric_labels", &self.env_vars_to_metric_labels),
        ] {
            if let Some((from, _)) = map.iter().find(|(_, to)| to.trim().is_empty()) {
                error(key, format!("`{from}` maps to an empty attribute name"));
            }
        }
        errors.into_result(Settings {
            endpoint,
            interval: self.collection_interval.0,
            timeout: self.timeout.0,
            api_version,
            excluded,
            labels: self.container_labels_to_metric_labels,
            env_vars: self.env_vars_to_metric_labels,
            grace: self.stopped_grace_period.0,
        })
    }
}
