//! `receivers: hostmetrics:` in the OTel Collector's shape, and checking what serde cannot.

use std::collections::{BTreeMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Deserializer};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration};

use super::emit::MetricDef;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsConfig {
    /// Time between two scrapes (default 10s; the OTel Collector's default is 1m).
    pub collection_interval: Duration,
    /// Wait before the first scrape (default 1s, as in the OTel Collector).
    pub initial_delay: Duration,
    /// Where the host's root is mounted (default `/`): `/proc`, the mount table, `/etc/passwd`
    /// and mount points are read under it, for a collector in a container describing its host.
    pub root_path: String,
    /// `semconv` (default): names of the semantic conventions v1.44; `collector`: the names the
    /// OTel Collector's hostmetrics receiver emits, for existing dashboards.
    pub attribute_names: Naming,
    pub scrapers: Scrapers,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        HostMetricsConfig {
            collection_interval: Duration::from_secs(10),
            initial_delay: Duration::from_secs(1),
            root_path: "/".into(),
            attribute_names: Naming::Semconv,
            scrapers: Scrapers::default(),
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

/// A scraper runs when its key is present, even with no value (`cpu:`), as in the OTel Collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scrapers {
    #[serde(deserialize_with = "present")]
    pub cpu: Option<MetricsOnly>,
    #[serde(deserialize_with = "present")]
    pub memory: Option<MetricsOnly>,
    #[serde(deserialize_with = "present")]
    pub load: Option<LoadConfig>,
    #[serde(deserialize_with = "present")]
    pub disk: Option<DiskConfig>,
    #[serde(deserialize_with = "present")]
    pub filesystem: Option<FilesystemConfig>,
    #[serde(deserialize_with = "present")]
    pub network: Option<NetworkConfig>,
    #[serde(deserialize_with = "present")]
    pub paging: Option<MetricsOnly>,
    #[serde(deserialize_with = "present")]
    pub processes: Option<MetricsOnly>,
    #[serde(deserialize_with = "present")]
    pub process: Option<ProcessConfig>,
    #[serde(deserialize_with = "present")]
    pub system: Option<MetricsOnly>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `metrics: {system.cpu.utilization: {enabled: true}}`: per-metric switches.
pub type MetricSwitches = BTreeMap<String, MetricSwitch>;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSwitch {
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsOnly {
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// Divide the load averages by the number of logical CPUs.
    pub cpu_average: bool,
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    pub include: Option<DeviceFilter>,
    pub exclude: Option<DeviceFilter>,
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceFilter {
    pub devices: Vec<String>,
    pub match_type: MatchType,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    pub include_devices: Option<DeviceFilter>,
    pub exclude_devices: Option<DeviceFilter>,
    pub include_fs_types: Option<FsTypeFilter>,
    pub exclude_fs_types: Option<FsTypeFilter>,
    pub include_mount_points: Option<MountPointFilter>,
    pub exclude_mount_points: Option<MountPointFilter>,
    /// Also report filesystems without a backing device (tmpfs, proc, cgroup, ...).
    pub include_virtual_filesystems: bool,
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsTypeFilter {
    pub fs_types: Vec<String>,
    pub match_type: MatchType,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountPointFilter {
    pub mount_points: Vec<String>,
    pub match_type: MatchType,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub include: Option<InterfaceFilter>,
    pub exclude: Option<InterfaceFilter>,
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterfaceFilter {
    pub interfaces: Vec<String>,
    pub match_type: MatchType,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    pub include: Option<NameFilter>,
    pub exclude: Option<NameFilter>,
    /// Skip processes whose name cannot be read without logging it.
    pub mute_process_name_error: bool,
    /// Leave out the executable path of processes whose `exe` link cannot be read (another
    /// user's processes, without privileges) without logging it.
    pub mute_process_exe_error: bool,
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NameFilter {
    pub names: Vec<String>,
    pub match_type: MatchType,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

/// A compiled include/exclude pair: a name passes when it matches the include list (or there
/// is none) and does not match the exclude list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

#[derive(Clone, Debug)]
enum Matcher {
    Strict(HashSet<String>),
    Regexp(Vec<Regex>),
}

impl Matcher {
    fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Strict(names) => names.contains(name),
            Matcher::Regexp(patterns) => patterns.iter().any(|p| p.is_match(name)),
        }
    }
}

impl Filter {
    pub fn allows(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(name))
            && !self.exclude.as_ref().is_some_and(|m| m.matches(name))
    }
}

/// Checks the parts serde cannot and compiles filters, reporting every problem with its key path.
pub struct Checker<'a> {
    component: &'a ComponentConfig,
    pub errors: ConfigErrors,
}

impl<'a> Checker<'a> {
    pub fn new(component: &'a ComponentConfig) -> Self {
        Checker {
            component,
            errors: ConfigErrors::default(),
        }
    }

    /// Records a problem at `keys` under this component, placed at the deepest of those keys
    /// the file has; `index` names an item of the last key's list.
    pub fn error(&mut self, keys: &[&str], index: Option<usize>, message: impl Into<String>) {
        self.error_with(keys, index, message, None);
    }

    fn error_with(
        &mut self,
        keys: &[&str],
        index: Option<usize>,
        message: impl Into<String>,
        suggestion: Option<String>,
    ) {
        let mut pos = self.component.pos.clone();
        for depth in (1..=keys.len()).rev() {
            if let Some(node) = self.component.node.get_path(keys[..depth].iter().copied()) {
                pos = node.pos.clone();
                break;
            }
        }
        let mut path = self.component.path.clone();
        for key in keys {
            path.push('.');
            path.push_str(key);
        }
        if let Some(i) = index {
            path.push_str(&format!("[{i}]"));
        }
        self.errors
            .push(Diagnostic::new(Some(pos), path, message).with_suggestion(suggestion));
    }

    pub fn filter(
        &mut self,
        keys: &[&str],
        list_key: &str,
        include: Option<(&[String], MatchType)>,
        include_key: &str,
        exclude: Option<(&[String], MatchType)>,
        exclude_key: &str,
    ) -> Filter {
        let mut compile = |side: &str, spec: Option<(&[String], MatchType)>| {
            let (items, match_type) = spec?;
            Some(match match_type {
                MatchType::Strict => Matcher::Strict(items.iter().cloned().collect()),
                MatchType::Regexp => {
                    let mut patterns = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match Regex::new(item) {
                            Ok(r) => patterns.push(r),
                            Err(e) => {
                                let mut at: Vec<&str> = keys.to_vec();
                                at.extend([side, list_key]);
                                self.error(
                                    &at,
                                    Some(i),
                                    format!(
                                        "invalid regular expression `{item}`: {}",
                                        // regex's parse errors draw a caret over several lines.
                                        e.to_string()
                                            .lines()
                                            .last()
                                            .unwrap_or_default()
                                            .trim_start_matches("error: ")
                                    ),
                                );
                            }
                        }
                    }
                    Matcher::Regexp(patterns)
                }
            })
        };
        let include = compile(include_key, include);
        let exclude = compile(exclude_key, exclude);
        Filter { include, exclude }
    }

    /// The metrics a scraper emits: its defaults with the config's switches applied. Unknown
    /// names are errors, with the closest known name suggested.
    pub fn metrics(
        &mut self,
        scraper: &str,
        switches: &MetricSwitches,
        defs: &'static [MetricDef],
    ) -> HashSet<&'static str> {
        let mut on: HashSet<&'static str> = defs
            .iter()
            .filter(|d| d.default_on)
            .map(|d| d.semconv)
            .collect();
        for (name, switch) in switches {
            let Some(def) = defs
                .iter()
                .find(|d| d.semconv == name || d.collector == name)
            else {
                let known = defs.iter().flat_map(|d| [d.semconv, d.collector]);
                let suggestion = sluice_config::suggest(name, known);
                let listing: Vec<&str> = defs.iter().map(|d| d.semconv).collect();
                self.error_with(
                    &["scrapers", scraper, "metrics", name],
                    None,
                    format!(
                        "unknown metric `{name}` of the {scraper} scraper; known: {}",
                        listing.join(", ")
                    ),
                    suggestion,
                );
                continue;
            };
            if switch.enabled {
                on.insert(def.semconv);
            } else {
                on.remove(def.semconv);
            }
        }
        on
    }
}

impl HostMetricsConfig {
    pub fn check(&self, checker: &mut Checker<'_>) {
        if self.collection_interval.0.is_zero() {
            checker.error(
                &["collection_interval"],
                None,
                "collection_interval must be more than 0",
            );
        }
        if self.root_path.trim().is_empty() {
            checker.error(
                &["root_path"],
                None,
                "root_path must not be empty (use `/` for this machine's own root)",
            );
        } else if !self.root_path.starts_with('/') {
            checker.error(&["root_path"], None, "root_path must be an absolute path");
        }
        let s = &self.scrapers;
        if s.cpu.is_none()
            && s.memory.is_none()
            && s.load.is_none()
            && s.disk.is_none()
            && s.filesystem.is_none()
            && s.network.is_none()
            && s.paging.is_none()
            && s.processes.is_none()
            && s.process.is_none()
            && s.system.is_none()
        {
            checker.error(
                &["scrapers"],
                None,
                "enable at least one scraper: cpu, memory, load, disk, filesystem, network, paging, processes, process or system",
            );
        }
    }
}
