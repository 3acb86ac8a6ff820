//! `receivers: cgroups:` — where the cgroup tree is and how often it is read.

use std::path::PathBuf;

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupsConfig {
    /// How often the tree is walked and read (default 10s).
    pub collection_interval: Duration,
    /// Where the host's root is mounted (default `/`); a collector in a DaemonSet pod that
    /// mounts the host at `/hostfs` sets `/hostfs`.
    pub root_path: String,
    /// The cgroup mount, as seen from the host (default `/sys/fs/cgroup`); joined under
    /// `root_path`.
    pub cgroup_path: String,
    /// Which layout to read: `auto` (default: v2 when the mount is a unified hierarchy,
    /// otherwise the v1 controllers plus the `unified` hierarchy if there is one), `v1` or `v2`.
    pub version: CgroupVersion,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    Auto,
    V1,
    V2,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        CgroupsConfig {
            collection_interval: Duration::from_secs(10),
            root_path: "/".into(),
            cgroup_path: "/sys/fs/cgroup".into(),
            version: CgroupVersion::Auto,
        }
    }
}

impl CgroupsConfig {
    pub fn validate(self, component: &ComponentConfig) -> Result<Self, ConfigErrors> {
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
        if self.collection_interval.0.is_zero() {
            let (pos, path) = at("collection_interval");
            errors.push(Diagnostic::new(
                pos,
                path,
                "collection_interval must be more than 0",
            ));
        }
        if self.root_path.trim().is_empty() {
            let (pos, path) = at("root_path");
            errors.push(Diagnostic::new(
                pos,
                path,
                "root_path must not be empty (use `/` for this machine's own root)",
            ));
        }
        if !self.cgroup_path.starts_with('/') {
            let (pos, path) = at("cgroup_path");
            errors.push(Diagnostic::new(
                pos,
                path,
                format!(
                    "`{}` must be an absolute path (it is joined under root_path)",
                    self.cgroup_path
                ),
            ));
        }
        errors.into_result(self)
    }

    /// The cgroup mount with `root_path` applied.
    pub fn mount(&self) -> PathBuf {
        PathBuf::from(&self.root_path).join(self.cgroup_path.trim_start_matches('/'))
    }
}
