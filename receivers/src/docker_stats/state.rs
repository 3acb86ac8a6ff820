//! The containers the receiver watches, and what it knows of each.

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::ContainerInspectResponse;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::config::Settings;
use crate::cgroups::builder::string_kv;

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
    let mut resource = vec![
        string_kv("container.id", &id),
        string_kv("container.name", &name),
        string_kv("container.image.name", &image_name),
        string_kv("container.image.tag", &image_tag),
        string_kv("container.runtime.name", "docker"),
    ];
    if let Some(hostname) = config.and_then(|c| c.hostname.as_deref()) {
        resource.push(string_kv("container.hostname", hostname));
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
        resource,
        started_at,
        restart_count: inspect.restart_count.unwrap_or(0),
        state: State::Running,
        previous_cpu: None,
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
