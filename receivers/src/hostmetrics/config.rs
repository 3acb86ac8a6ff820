//! `receivers: host_metrics:` (or `hostmetrics:`) in the OTel Collector's shape, and checking
//! what serde cannot.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Deserializer};
use sluice_config::Duration;
use sluice_pipeline::config_keys::NoEffect;

use super::emit::{MetricDef, Plan};
use crate::metric_keys::{KeyChecker, MetricSettings, ResourceAttributeSettings, short};

/// Upstream keys that cannot mean anything here.
pub const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "scrapers.*.*.regexp",
        "a cache of Go regular-expression match results; sluice's matching needs none",
    ),
    NoEffect::new(
        "scrapers.hardware.temperature.*.regexp",
        "a cache of Go regular-expression match results; sluice's matching needs none",
    ),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsConfig {
    /// Time between two scrapes (default 1m, as in the OTel Collector).
    pub collection_interval: Duration,
    /// Wait before the first scrape (default 1s).
    pub initial_delay: Duration,
    /// Longest one scrape may take (default 0: no limit); what the scrapers that finished in
    /// time read is sent, the rest is skipped for that collection.
    pub timeout: Duration,
    /// Where the host's root is mounted (default `/`; empty means `/`): `/proc`, `/sys`, the
    /// mount table, `/etc/passwd` and mount points are read under it, for a collector in a
    /// container describing its host.
    pub root_path: String,
    /// How often the host entity event is sent to logs pipelines (default 5m; 0: only at
    /// start).
    pub metadata_collection_interval: Duration,
    /// `semconv` (default): names of the semantic conventions v1.44; `collector`: the names the
    /// OTel Collector's hostmetrics receiver emits, for existing dashboards.
    pub attribute_names: Naming,
    pub scrapers: Scrapers,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        HostMetricsConfig {
            collection_interval: Duration::from_secs(60),
            initial_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(0),
            root_path: "/".into(),
            metadata_collection_interval: Duration::from_secs(300),
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
    /// NFS client and server counters from `/proc/net/rpc/nfs{,d}`.
    #[serde(deserialize_with = "present")]
    pub nfs: Option<MetricsOnly>,
    /// Temperature sensors from `/sys/class/hwmon`.
    #[serde(deserialize_with = "present")]
    pub hardware: Option<HardwareConfig>,
}

impl Scrapers {
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none()
            && self.memory.is_none()
            && self.load.is_none()
            && self.disk.is_none()
            && self.filesystem.is_none()
            && self.network.is_none()
            && self.paging.is_none()
            && self.processes.is_none()
            && self.process.is_none()
            && self.system.is_none()
            && self.nfs.is_none()
            && self.hardware.is_none()
    }
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `metrics: {system.cpu.utilization: {enabled: true}}`: per-metric settings.
pub type MetricSwitches = BTreeMap<String, MetricSettings>;

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
    /// Report no per-process read error at all (supersedes the other `mute_*` switches).
    pub mute_process_all_errors: bool,
    /// Do not report processes skipped because their name could not be read.
    pub mute_process_name_error: bool,
    /// Do not report executable paths that could not be read (another user's processes,
    /// without privileges); the path is left out either way.
    pub mute_process_exe_error: bool,
    /// Do not report I/O counters that could not be read.
    pub mute_process_io_error: bool,
    /// Do not report owners whose uid has no name in `/etc/passwd` (users that exist only in
    /// a container).
    pub mute_process_user_error: bool,
    /// Do not report cgroups that could not be read.
    pub mute_process_cgroup_error: bool,
    /// Leave out processes younger than this (default 0s: none).
    pub scrape_process_delay: Duration,
    pub metrics: MetricSwitches,
    /// Switches, filters and overrides of the resource attributes of each process.
    pub resource_attributes: BTreeMap<String, ResourceAttributeSettings>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NameFilter {
    pub names: Vec<String>,
    pub match_type: MatchType,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareConfig {
    /// The hwmon class directory, as the host sees it (default `/sys/class/hwmon`; read under
    /// `root_path`). The first hardware scraper releases had this key.
    pub hwmon_path: Option<String>,
    /// Which temperature sensors are read, by label.
    pub temperature: TemperatureConfig,
    pub metrics: MetricSwitches,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemperatureConfig {
    pub include: Option<SensorFilter>,
    pub exclude: Option<SensorFilter>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorFilter {
    pub sensors: Vec<String>,
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

/// One side of a filter as the config gives it: the list and how to match it.
pub type FilterSpec<'a> = Option<(&'a [String], MatchType)>;

/// A filter section of the config: its list, whatever the list's key, and its match type.
pub trait FilterList {
    fn list(&self) -> (&[String], MatchType);
}

/// The side of a filter an optional section gives.
pub fn spec<F: FilterList>(section: &Option<F>) -> FilterSpec<'_> {
    section.as_ref().map(F::list)
}

macro_rules! filter_list {
    ($($ty:ident . $field:ident),*) => {$(
        impl FilterList for $ty {
            fn list(&self) -> (&[String], MatchType) {
                (&self.$field, self.match_type)
            }
        }
    )*};
}

filter_list!(
    DeviceFilter.devices,
    FsTypeFilter.fs_types,
    MountPointFilter.mount_points,
    InterfaceFilter.interfaces,
    NameFilter.names,
    SensorFilter.sensors
);

/// The host metrics receiver's checks, on top of the shared key checker.
pub trait HostChecks {
    fn filter(
        &mut self,
        keys: &[&str],
        list_key: &str,
        include: (&str, FilterSpec<'_>),
        exclude: (&str, FilterSpec<'_>),
    ) -> Filter;

    fn metrics(
        &mut self,
        scraper: &str,
        switches: &MetricSwitches,
        defs: &'static [MetricDef],
        naming: Naming,
    ) -> Plan;
}

impl HostChecks for KeyChecker<'_> {
    fn filter(
        &mut self,
        keys: &[&str],
        list_key: &str,
        include: (&str, FilterSpec<'_>),
        exclude: (&str, FilterSpec<'_>),
    ) -> Filter {
        let mut compile = |side: &str, spec: FilterSpec<'_>| {
            let (items, match_type) = spec?;
            Some(match match_type {
                MatchType::Strict => Matcher::Strict(items.iter().cloned().collect()),
                MatchType::Regexp => {
                    let mut patterns = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match Regex::new(item) {
                            Ok(r) => patterns.push(r),
                            Err(e) => {
                                let at: Vec<&str> = [keys, &[side, list_key]].concat();
                                self.error(
                                    &at,
                                    Some(i),
                                    format!("invalid regular expression `{item}`: {}", short(&e)),
                                );
                            }
                        }
                    }
                    Matcher::Regexp(patterns)
                }
            })
        };
        let include_matcher = compile(include.0, include.1);
        let exclude_matcher = compile(exclude.0, exclude.1);
        Filter {
            include: include_matcher,
            exclude: exclude_matcher,
        }
    }

    /// The metrics a scraper emits: its defaults with the config's settings applied. Unknown
    /// names are errors at the name, with the closest known name suggested.
    fn metrics(
        &mut self,
        scraper: &str,
        switches: &MetricSwitches,
        defs: &'static [MetricDef],
        naming: Naming,
    ) -> Plan {
        let semconv = naming == Naming::Semconv;
        let mut on: HashSet<&'static str> = defs
            .iter()
            .filter(|d| d.default_on)
            .map(|d| d.semconv)
            .collect();
        let mut regroup = HashMap::new();
        for (name, settings) in switches {
            let keys = ["scrapers", scraper, "metrics", name.as_str()];
            let Some(def) = defs.iter().find(|d| d.answers_to(name)) else {
                let known = defs.iter().flat_map(|d| [d.semconv, d.collector]);
                let suggestion = sluice_config::suggest(name, known);
                let mut listing: Vec<&str> = defs
                    .iter()
                    .map(|d| if semconv { d.semconv } else { d.collector })
                    .collect();
                listing.sort_unstable();
                listing.dedup();
                self.error_at_key(
                    &keys,
                    format!(
                        "unknown metric `{name}` of the {scraper} scraper; known: {}",
                        listing.join(", ")
                    ),
                    suggestion,
                );
                continue;
            };
            if def.former_names.contains(&name.as_str()) {
                let current = if semconv { def.semconv } else { def.collector };
                self.warn_at_key(
                    &keys,
                    format!(
                        "`{name}` is a former name of `{current}`; the setting applies to `{current}`"
                    ),
                );
            }
            if let Some(enabled) = settings.enabled {
                if enabled {
                    on.insert(def.semconv);
                    if let Some(why) = def.unavailable {
                        self.warn_at_key(&keys, format!("accepted, emits nothing here: {why}"));
                    }
                } else {
                    on.remove(def.semconv);
                }
            }
            let declared: Vec<(&'static str, &'static str)> = def
                .attributes
                .iter()
                .map(|a| (a.collector, a.semconv))
                .collect();
            if let Some(r) = self.regroup(
                &keys,
                settings,
                &declared,
                semconv,
                def.default_aggregation(),
            ) {
                regroup.insert(def.semconv, r);
            }
        }
        Plan::new(on, regroup)
    }
}

impl HostMetricsConfig {
    /// The root the host is read under (`root_path`, with empty meaning `/`).
    pub fn root(&self) -> &str {
        if self.root_path.trim().is_empty() {
            "/"
        } else {
            &self.root_path
        }
    }

    pub fn check(&self, checker: &mut KeyChecker<'_>) {
        if self.collection_interval.0.is_zero() {
            checker.error(
                &["collection_interval"],
                None,
                "collection_interval must be more than 0",
            );
        }
        if !self.root().starts_with('/') {
            checker.error(&["root_path"], None, "root_path must be an absolute path");
        }
        if self.scrapers.is_empty() {
            checker.error(
                &["scrapers"],
                None,
                "enable at least one scraper: cpu, disk, filesystem, hardware, load, memory, network, nfs, paging, processes, process or system",
            );
        }
    }
}
