//! `processors: resource_detection:` — which detectors run, in which order, and how their
//! findings meet the attributes a resource already has.

use std::time::Duration as StdDuration;

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration};

/// The processor's config section, with the OTel Collector's keys where it has them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceDetectionConfig {
    /// Detectors to run, in priority order: when two find the same key, the earlier one wins.
    pub detectors: Vec<DetectorKind>,
    /// Whether detected values replace attributes the resource already has (default true).
    #[serde(rename = "override")]
    pub override_existing: bool,
    /// Longest time detection may take at start-up (default 5s); detectors still running
    /// then count as failed.
    pub timeout: Duration,
    /// Whether a failed detector stops the collector from starting (default false: it is
    /// logged and skipped).
    pub fail_on_error: bool,
    /// Where the host's `/proc` and `/etc` are found (default `/`); a collector in a container
    /// that should describe the host sets it to where the host's root is mounted.
    pub root_path: String,
    /// Settings of the `system` detector.
    pub system: SystemConfig,
}

impl Default for ResourceDetectionConfig {
    fn default() -> Self {
        ResourceDetectionConfig {
            detectors: vec![DetectorKind::Env],
            override_existing: true,
            timeout: Duration(StdDuration::from_secs(5)),
            fail_on_error: false,
            root_path: "/".into(),
            system: SystemConfig::default(),
        }
    }
}

/// One source of resource attributes.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    Env,
    System,
    #[serde(alias = "container")]
    Docker,
    K8s,
    Lambda,
}

impl DetectorKind {
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Env => "env",
            DetectorKind::System => "system",
            DetectorKind::Docker => "docker",
            DetectorKind::K8s => "k8s",
            DetectorKind::Lambda => "lambda",
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Where `host.name` comes from, tried in order until one answers (default `[dns, os]`,
    /// as in the OTel Collector).
    pub hostname_sources: Vec<HostnameSource>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            hostname_sources: vec![HostnameSource::Dns, HostnameSource::Os],
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HostnameSource {
    /// The kernel's host name.
    Os,
    /// The fully qualified name of the kernel's host name (`/etc/hosts`, then the resolver).
    Dns,
}

impl ResourceDetectionConfig {
    /// Checks what serde cannot, and drops repeated detectors: running one twice could only
    /// repeat what its first run found.
    pub fn validate(mut self, component: &ComponentConfig) -> Result<Self, ConfigErrors> {
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
        if self.timeout.0.is_zero() {
            let (pos, path) = at("timeout");
            errors.push(Diagnostic::new(pos, path, "timeout must be more than 0"));
        }
        if self.root_path.trim().is_empty() {
            let (pos, path) = at("root_path");
            errors.push(Diagnostic::new(
                pos,
                path,
                "root_path must not be empty (use `/` for this machine's own root)",
            ));
        }
        let mut seen = Vec::new();
        self.detectors.retain(|d| {
            let first = !seen.contains(d);
            seen.push(*d);
            first
        });
        errors.into_result(self)
    }
}
