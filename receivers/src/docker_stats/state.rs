//! The containers the receiver watches, and what it knows of each.

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::{ContainerInspectResponse, HostConfig};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};

use super::config::{Naming, Settings};
use crate::cgroups::builder::string_kv;
use crate::metric_keys::ResourceAttrDef;

/// The resource attributes under the Collector's names, with its defaults (the image tag is
/// sluice's, off here).
pub(crate) const COLLECTOR_RESOURCE: &[ResourceAttrDef] = &[
    ResourceAttrDef::new("container.runtime", "container.runtime.name", true),
    ResourceAttrDef::new("container.id", "container.id", true),
    ResourceAttrDef::new("container.image.name", "container.image.name", true),
    ResourceAttrDef::new("container.name", "container.name", true),
    ResourceAttrDef::new("container.hostname", "container.hostname", true),
    ResourceAttrDef::new("container.image.id", "container.image.id", false),
    ResourceAttrDef::new("container.command_line", "container.command_line", false),
    ResourceAttrDef::new("container.image.tag", "container.image.tag", false),
];

/// The same under semantic-convention names, where the image name has no tag and the tag is
/// its own attribute.
pub(crate) const SEMCONV_RESOURCE: &[ResourceAttrDef] = &[
    ResourceAttrDef::new("container.runtime", "container.runtime.name", true),
    ResourceAttrDef::new("container.id", "container.id", true),
    ResourceAttrDef::new("container.image.name", "container.image.name", true),
    ResourceAttrDef::new("container.name", "container.name", true),
    ResourceAttrDef::new("container.hostname", "container.hostname", true),
    ResourceAttrDef::new("container.image.id", "container.image.id", false),
    ResourceAttrDef::new("container.command_line", "container.command_line", false),
    ResourceAttrDef::new("container.image.tag", "container.image.tag", true),
];

/// CPU settings of the container, for `container.cpu.shares` and `container.cpu.limit`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Limits {
    pub cpu_shares: i64,
    /// CPUs the container may use: `--cpus`, else the size of `--cpuset-cpus`, else
    /// quota ÷ period.
    pub cpus: Option<f64>,
}

impl Limits {
    pub(crate) fn of(host: Option<&HostConfig>) -> Limits {
        let Some(h) = host else {
            return Limits::default();
        };
        let cpus = if let Some(nano) = h.nano_cpus.filter(|&n| n > 0) {
            Some(nano as f64 / 1e9)
        } else if let Some(set) = h.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
            cpuset_size(set)
        } else if let Some(quota) = h.cpu_quota.filter(|&q| q > 0) {
            let period = h.cpu_period.filter(|&p| p > 0).unwrap_or(100_000);
            Some(quota as f64 / period as f64)
        } else {
            None
        };
        Limits {
            cpu_shares: h.cpu_shares.unwrap_or(0),
            cpus,
        }
    }
}

/// CPUs in a cpuset list like `0-3,8`.
pub(crate) fn cpuset_size(list: &str) -> Option<f64> {
    let mut n = 0u64;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    Some(n as f64)
}

/// CPU counters of the previous sample, for `docker stats`'s utilisation formula.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CpuSample {
    pub container: u64,
    pub system: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum State {
    Running,
    /// Stopped (or removed) at `since`; it reports `container.up` 0 until the grace period ends.
    Stopped {
        since: Instant,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub id: String,
    pub name: String,
    pub resource: Vec<KeyValue>,
    /// When the current run began, Unix nanoseconds (the start of its cumulative series).
    pub started_at: u64,
    pub restart_count: i64,
    pub state: State,
    pub previous_cpu: Option<CpuSample>,
    pub limits: Limits,
    /// False when a `resource_attributes` filter leaves the container's metrics out (its
    /// lifecycle records are still made).
    pub emit_metrics: bool,
}

impl Tracked {
    pub(crate) fn is_running(&self) -> bool {
        self.state == State::Running
    }
}

pub(crate) type Containers = HashMap<String, Tracked>;

/// `registry:5000/team/app:1.2@sha256:…` → (`registry:5000/team/app`, `1.2`); no tag means
/// `latest`, as Docker reads it.
pub(crate) fn split_image(image: &str) -> (String, String) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (
                without_digest[..colon].to_string(),
                without_digest[colon + 1..].to_string(),
            )
        }
        None => (without_digest.to_string(), "latest".to_string()),
    }
}

/// The image a container was created from, as its config names it.
pub(crate) fn image_of(inspect: &ContainerInspectResponse) -> String {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .or_else(|| inspect.image.clone())
        .unwrap_or_default()
}

/// Builds what the receiver tracks from an inspection; `None` when the answer lacks an id.
pub(crate) fn track(inspect: &ContainerInspectResponse, settings: &Settings) -> Option<Tracked> {
    let id = inspect.id.clone()?;
    let name = inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let image = image_of(inspect);
    let (image_name, image_tag) = split_image(&image);
    let config = inspect.config.as_ref();
    let semconv = settings.naming == Naming::Semconv;
    let plan = &settings.resource;
    let mut resource = Vec::new();
    let mut put = |key: &str, value: &str| {
        if let Some(kv) = plan.attribute(key, any_value::Value::StringValue(value.to_string())) {
            resource.push(kv);
        }
    };
    put("container.id", &id);
    put("container.name", &name);
    put(
        "container.image.name",
        if semconv { &image_name } else { &image },
    );
    put("container.image.tag", &image_tag);
    put("container.runtime", "docker");
    if let Some(hostname) = config.and_then(|c| c.hostname.as_deref()) {
        put("container.hostname", hostname);
    }
    if let Some(image_id) = inspect.image.as_deref() {
        put("container.image.id", image_id);
    }
    if let Some(cmd) = config.and_then(|c| c.cmd.as_ref()) {
        put("container.command_line", &cmd.join(" "));
    }
    if let Some(labels) = config.and_then(|c| c.labels.as_ref()) {
        for (label, attribute) in &settings.labels {
            if let Some(value) = labels.get(label) {
                resource.push(string_kv(attribute, value));
            }
        }
    }
    if let Some(env) = config.and_then(|c| c.env.as_ref()) {
        let env: HashMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
        for (var, attribute) in &settings.env_vars {
            if let Some(value) = env.get(var.as_str()) {
                resource.push(string_kv(attribute, value));
            }
        }
    }
    let state = inspect.state.as_ref();
    let started_at = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_rfc3339_nanos)
        .unwrap_or(0);
    Some(Tracked {
        id,
        name,
        started_at,
        restart_count: inspect.restart_count.unwrap_or(0),
        state: State::Running,
        previous_cpu: None,
        limits: Limits::of(inspect.host_config.as_ref()),
        emit_metrics: plan.keeps(&resource),
        resource,
    })
}

/// Docker's timestamps: `2026-11-25T03:47:06.123456789Z` (or with a `+hh:mm` offset).
/// Docker writes `0001-01-01T00:00:00Z` for "never", which reads as `None`.
pub(crate) fn parse_rfc3339_nanos(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: i64 = date.next()?.parse().ok()?;
    let day: i64 = date.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else {
        let split = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(split);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        let offset = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
        (clock, sign * offset)
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.split(':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: i64 = hms.next()?.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let nanos: u64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs <= 0 {
        return None;
    }
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos as u64)
}
