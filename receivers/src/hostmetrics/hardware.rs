//! `hardware`: temperature sensors of the kernel's hwmon class (`/sys/class/hwmon`), with
//! the attributes of the semantic conventions' hardware metrics (the OTel Collector uses them
//! too, so both namings agree).

use std::path::{Path, PathBuf};

use super::config::{Filter, HardwareConfig, HostChecks, spec};
use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};
use super::{Ctx, ScrapeError};
use crate::metric_keys::KeyChecker;

const SENSOR: &[Attr] = &[
    attr("hw.id", "hw.id"),
    attr("hw.name", "hw.name"),
    attr("hw.parent", "hw.parent"),
    attr("hw.sensor_location", "hw.sensor_location"),
];

pub const TEMPERATURE: MetricDef = MetricDef::new(
    "hw.temperature",
    "hw.temperature",
    "Cel",
    "Cel",
    Kind::Gauge,
    true,
    "Temperature in degrees Celsius.",
)
.attrs(SENSOR);
pub const TEMPERATURE_LIMIT: MetricDef = MetricDef::new(
    "hw.temperature.limit",
    "hw.temperature.limit",
    "Cel",
    "Cel",
    Kind::Gauge,
    false,
    "Temperature limits of the sensor in degrees Celsius.",
)
.attrs(&[
    attr("hw.id", "hw.id"),
    attr("hw.limit_type", "hw.limit_type"),
    attr("hw.name", "hw.name"),
    attr("hw.parent", "hw.parent"),
    attr("hw.sensor_location", "hw.sensor_location"),
]);
pub const METRICS: &[MetricDef] = &[TEMPERATURE, TEMPERATURE_LIMIT];

/// Limits outside this range (°C) are placeholders some drivers write, not real limits.
const PLAUSIBLE_LIMIT: std::ops::RangeInclusive<f64> = -40.0..=200.0;

pub struct HardwareScraper {
    /// The hwmon class directory as the host sees it.
    hwmon: String,
    sensors: Filter,
}

impl HardwareScraper {
    pub fn from_config(c: &HardwareConfig, check: &mut KeyChecker<'_>) -> Self {
        let sensors = check.filter(
            &["scrapers", "hardware", "temperature"],
            "sensors",
            ("include", spec(&c.temperature.include)),
            ("exclude", spec(&c.temperature.exclude)),
        );
        let hwmon = c
            .hwmon_path
            .clone()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "/sys/class/hwmon".into());
        if !hwmon.starts_with('/') {
            check.error(
                &["scrapers", "hardware", "hwmon_path"],
                None,
                "hwmon_path must be an absolute path (it is read under root_path)",
            );
        }
        HardwareScraper { hwmon, sensors }
    }

    pub fn scrape(&self, ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
        let class = ctx.path(&self.hwmon);
        // A machine without sensors (most virtual machines) has no hwmon class at all.
        let Ok(chips) = std::fs::read_dir(&class) else {
            return Ok(());
        };
        let mut chips: Vec<PathBuf> = chips
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("hwmon"))
            })
            .collect();
        chips.sort();
        let mut failed = None;
        for chip in chips {
            for sensor in sensors(&chip) {
                if !self.sensors.allows(&sensor.location) {
                    continue;
                }
                let attrs = |limit: Option<&str>| {
                    let mut a = vec![kv("hw.id", sensor.id.as_str())];
                    if let Some(limit) = limit {
                        a.push(kv("hw.limit_type", limit));
                    }
                    a.extend([
                        kv("hw.name", sensor.chip.as_str()),
                        kv("hw.parent", sensor.parent.as_str()),
                        kv("hw.sensor_location", sensor.location.as_str()),
                    ]);
                    a
                };
                if out.on(&TEMPERATURE) {
                    match millidegrees(&chip.join(format!("temp{}_input", sensor.number))) {
                        Some(c) => out.point(&TEMPERATURE, attrs(None), c),
                        None => {
                            failed =
                                Some(ScrapeError::Read(format!("temperature of {}", sensor.id)))
                        }
                    }
                }
                if out.on(&TEMPERATURE_LIMIT) {
                    for (suffix, limit) in [
                        ("crit", "high.critical"),
                        ("max", "high.degraded"),
                        ("lcrit", "low.critical"),
                        ("min", "low.degraded"),
                    ] {
                        let file = chip.join(format!("temp{}_{suffix}", sensor.number));
                        if let Some(c) = millidegrees(&file).filter(|c| PLAUSIBLE_LIMIT.contains(c))
                        {
                            out.point(&TEMPERATURE_LIMIT, attrs(Some(limit)), c);
                        }
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

struct Sensor {
    number: String,
    chip: String,
    id: String,
    parent: String,
    /// The sensor's label, else its sysfs name (`temp1`); what the filters match.
    location: String,
}

/// The temperature sensors of one hwmon chip directory.
fn sensors(chip: &Path) -> Vec<Sensor> {
    let dir_name = chip
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = std::fs::read_to_string(chip.join("name"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| dir_name.clone());
    // The device behind the chip (a PCI address) tells apart chips that share a name, such
    // as several NVMe drives; virtual sensors have none.
    let device = std::fs::canonicalize(chip.join("device"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or(dir_name);
    let parent = format!("{name}_{device}");
    let Ok(entries) = std::fs::read_dir(chip) else {
        return Vec::new();
    };
    let mut numbers: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let n = file
                .strip_prefix("temp")?
                .strip_suffix("_input")?
                .to_string();
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
        })
        .collect();
    numbers.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    numbers
        .into_iter()
        .map(|number| {
            let location = std::fs::read_to_string(chip.join(format!("temp{number}_label")))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| format!("temp{number}"));
            Sensor {
                id: format!("{parent}_temp{number}"),
                chip: name.clone(),
                parent: parent.clone(),
                location,
                number,
            }
        })
        .collect()
}

/// A hwmon value file (millidegrees Celsius) in degrees.
fn millidegrees(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let milli: i64 = text.trim().parse().ok()?;
    Some(milli as f64 / 1000.0)
}
