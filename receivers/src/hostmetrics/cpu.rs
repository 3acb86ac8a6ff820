//! `cpu`: time per logical CPU and mode from `/proc/stat`, utilisation from two scrapes.

use std::collections::HashMap;

use procfs::FromBufReadSI;

use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};
use super::{Ctx, ScrapeError};

const CPU_STATE: &[Attr] = &[attr("cpu", "cpu.logical_number"), attr("state", "cpu.mode")];

pub const TIME: MetricDef = MetricDef::new(
    "system.cpu.time",
    "system.cpu.time",
    "s",
    "s",
    Kind::Counter,
    true,
    "Seconds each logical CPU spent in each mode.",
)
.attrs(CPU_STATE);
pub const UTILIZATION: MetricDef = MetricDef::new(
    "system.cpu.utilization",
    "system.cpu.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of each logical CPU's time spent in each mode since the previous scrape.",
)
.attrs(CPU_STATE);
pub const LOGICAL_COUNT: MetricDef = MetricDef::new(
    "system.cpu.logical.count",
    "system.cpu.logical.count",
    "{cpu}",
    "{cpu}",
    Kind::UpDown,
    false,
    "Number of logical CPUs.",
);
pub const PHYSICAL_COUNT: MetricDef = MetricDef::new(
    "system.cpu.physical.count",
    "system.cpu.physical.count",
    "{cpu}",
    "{cpu}",
    Kind::UpDown,
    false,
    "Number of physical CPU cores.",
);
pub const FREQUENCY: MetricDef = MetricDef::new(
    "system.cpu.frequency",
    "system.cpu.frequency",
    "Hz",
    "Hz",
    Kind::Gauge,
    false,
    "Current frequency of each logical CPU.",
)
.attrs(&[attr("cpu", "cpu.logical_number")]);
pub const METRICS: &[MetricDef] = &[TIME, UTILIZATION, PHYSICAL_COUNT, LOGICAL_COUNT, FREQUENCY];

/// Ticks of one CPU per mode, in the kernel's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuTicks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTicks {
    fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }

    /// (semconv mode, collector state, ticks). Semconv has one `interrupt` mode for hard and
    /// soft interrupts; the collector keeps `softirq` apart and calls I/O wait `wait`.
    fn modes(&self, semconv: bool) -> Vec<(&'static str, u64)> {
        if semconv {
            vec![
                ("user", self.user),
                ("nice", self.nice),
                ("system", self.system),
                ("idle", self.idle),
                ("iowait", self.iowait),
                ("interrupt", self.irq.saturating_add(self.softirq)),
                ("steal", self.steal),
            ]
        } else {
            vec![
                ("user", self.user),
                ("nice", self.nice),
                ("system", self.system),
                ("idle", self.idle),
                ("wait", self.iowait),
                ("interrupt", self.irq),
                ("softirq", self.softirq),
                ("steal", self.steal),
            ]
        }
    }
}

/// Per-CPU ticks by logical CPU number, parsed by procfs; the numbers come from the line
/// prefixes because procfs drops them, and offline CPUs leave gaps.
pub fn parse(stat: &str, ctx: &Ctx) -> Result<Vec<(i64, CpuTicks)>, ScrapeError> {
    let stats = procfs::KernelStats::from_buf_read(stat.as_bytes(), &ctx.system_info())
        .map_err(|e| ScrapeError::parse("proc/stat", e))?;
    let numbers: Vec<i64> = stat
        .lines()
        .filter_map(|l| l.strip_prefix("cpu"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .collect();
    if numbers.len() != stats.cpu_time.len() {
        return Err(ScrapeError::Parse(
            "proc/stat: per-CPU lines could not be numbered".into(),
        ));
    }
    Ok(numbers
        .into_iter()
        .zip(stats.cpu_time)
        .map(|(n, t)| {
            (
                n,
                CpuTicks {
                    user: t.user,
                    nice: t.nice,
                    system: t.system,
                    idle: t.idle,
                    iowait: t.iowait.unwrap_or(0),
                    irq: t.irq.unwrap_or(0),
                    softirq: t.softirq.unwrap_or(0),
                    steal: t.steal.unwrap_or(0),
                },
            )
        })
        .collect())
}

#[derive(Default)]
pub struct CpuScraper {
    previous: HashMap<i64, CpuTicks>,
}

impl CpuScraper {
    pub fn scrape(&mut self, ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
        let stat = ctx.stat_text()?;
        let cpus = parse(stat, ctx)?;
        let tps = ctx.ticks_per_second.max(1) as f64;
        let semconv = out.semconv();
        for (n, ticks) in &cpus {
            let cpu_attr = || {
                if semconv {
                    kv("cpu.logical_number", *n)
                } else {
                    kv("cpu", format!("cpu{n}"))
                }
            };
            for (mode, value) in ticks.modes(semconv) {
                out.point(
                    &TIME,
                    vec![cpu_attr(), kv(out.pick("cpu.mode", "state"), mode)],
                    value as f64 / tps,
                );
            }
            if let Some(before) = self.previous.get(n) {
                let elapsed = ticks.total().saturating_sub(before.total());
                if elapsed > 0 {
                    let earlier = before.modes(semconv);
                    for ((mode, now), (_, then)) in ticks.modes(semconv).into_iter().zip(earlier) {
                        out.point(
                            &UTILIZATION,
                            vec![cpu_attr(), kv(out.pick("cpu.mode", "state"), mode)],
                            now.saturating_sub(then) as f64 / elapsed as f64,
                        );
                    }
                }
            }
        }
        out.point(&LOGICAL_COUNT, vec![], cpus.len() as u64);
        self.previous = cpus.into_iter().collect();
        let mut result = Ok(());
        if out.on(&PHYSICAL_COUNT) {
            match physical_cores(ctx) {
                Some(n) => out.point(&PHYSICAL_COUNT, vec![], n),
                None => result = Err(ScrapeError::Read("the CPU topology".into())),
            }
        }
        if out.on(&FREQUENCY) {
            let frequencies = frequencies(ctx);
            if frequencies.is_empty() {
                result = Err(ScrapeError::Read("the CPU frequencies".into()));
            }
            for (n, hz) in frequencies {
                let cpu = if semconv {
                    kv("cpu.logical_number", n)
                } else {
                    kv("cpu", format!("cpu{n}"))
                };
                out.point(&FREQUENCY, vec![cpu], hz);
            }
        }
        result
    }
}

/// Physical cores: distinct (package, core) pairs of the sysfs topology, else of
/// `/proc/cpuinfo`'s `physical id` / `core id`.
pub fn physical_cores(ctx: &Ctx) -> Option<u64> {
    let mut cores = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir(ctx.path("sys/devices/system/cpu")) {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_prefix("cpu")) else {
                continue;
            };
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let read = |file: &str| {
                std::fs::read_to_string(entry.path().join("topology").join(file))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            if let (Some(package), Some(core)) = (read("physical_package_id"), read("core_id")) {
                cores.insert((package, core));
            }
        }
    }
    if cores.is_empty()
        && let Ok(text) = ctx.read_string("proc/cpuinfo")
    {
        for block in text.split("\n\n") {
            let field = |key: &str| {
                block.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_string())
                })
            };
            if let (Some(package), Some(core)) = (field("physical id"), field("core id")) {
                cores.insert((package, core));
            }
        }
    }
    (!cores.is_empty()).then_some(cores.len() as u64)
}

/// Hz of each logical CPU: `cpu MHz` of `/proc/cpuinfo` (as the OTel Collector reads it),
/// else cpufreq's `scaling_cur_freq` (kHz) where cpuinfo has no frequency (ARM).
pub fn frequencies(ctx: &Ctx) -> Vec<(i64, f64)> {
    let mut found = Vec::new();
    if let Ok(text) = ctx.read_string("proc/cpuinfo") {
        let mut processor: Option<i64> = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim() {
                "processor" => processor = v.trim().parse().ok(),
                "cpu MHz" => {
                    if let (Some(n), Ok(mhz)) = (processor, v.trim().parse::<f64>()) {
                        found.push((n, mhz * 1e6));
                    }
                }
                _ => {}
            }
        }
    }
    if found.is_empty()
        && let Ok(dir) = std::fs::read_dir(ctx.path("sys/devices/system/cpu"))
    {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("cpu"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if let Some(khz) =
                std::fs::read_to_string(entry.path().join("cpufreq/scaling_cur_freq"))
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
            {
                found.push((n, khz * 1e3));
            }
        }
        found.sort_by_key(|(n, _)| *n);
    }
    found
}
