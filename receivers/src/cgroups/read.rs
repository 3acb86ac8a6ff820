//! Reads one container's counters from its v1 controller directories and/or its v2 directory.

use std::collections::BTreeMap;
use std::path::Path;

use super::layout::Found;

/// v1 `memory.limit_in_bytes` says "no limit" with a page-rounded i64::MAX; anything this large
/// is not a limit anyone set.
const UNLIMITED: u64 = 1 << 62;

/// cpuacct.stat counts in USER_HZ, which is 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Stats {
    pub cpu_total_s: Option<f64>,
    pub cpu_user_s: Option<f64>,
    pub cpu_system_s: Option<f64>,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_s: Option<f64>,
    pub memory_usage: Option<u64>,
    pub inactive_file: Option<u64>,
    pub memory_limit: Option<u64>,
    pub oom_kills: Option<u64>,
    /// device `major:minor` → (bytes read, bytes written).
    pub io: BTreeMap<String, (u64, u64)>,
    pub pids: Option<u64>,
    pub pids_limit: Option<u64>,
}

impl Stats {
    pub(crate) fn working_set(&self) -> Option<u64> {
        self.memory_usage
            .map(|u| u.saturating_sub(self.inactive_file.unwrap_or(0)))
    }

    /// Fills what `self` lacks from `other` (v1 first, then v2 on hybrid hosts).
    fn or(mut self, other: Stats) -> Stats {
        macro_rules! fill {
            ($($field:ident),*) => { $( if self.$field.is_none() { self.$field = other.$field; } )* };
        }
        fill!(
            cpu_total_s,
            cpu_user_s,
            cpu_system_s,
            periods,
            throttled_periods,
            throttled_s,
            memory_usage,
            inactive_file,
            memory_limit,
            oom_kills,
            pids,
            pids_limit
        );
        if self.io.is_empty() {
            self.io = other.io;
        }
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Stats::default()
    }
}

pub(crate) fn read(found: &Found) -> Stats {
    let v1 = read_v1(&found.v1);
    match &found.v2 {
        Some(dir) => v1.or(read_v2(dir)),
        None => v1,
    }
}

fn text(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn number(dir: &Path, file: &str) -> Option<u64> {
    text(dir, file)?.trim().parse().ok()
}

/// `max` (no limit) reads as none.
fn limit(dir: &Path, file: &str) -> Option<u64> {
    number(dir, file).filter(|&l| l < UNLIMITED)
}

/// A flat-keyed file (`key value` per line) as a map.
pub(crate) fn flat_keyed(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(char::is_whitespace)?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(dir: &Path, file: &str, key: &str) -> Option<u64> {
    flat_keyed(&text(dir, file)?).get(key).copied()
}

fn read_v2(dir: &Path) -> Stats {
    let mut stats = Stats::default();
    if let Some(cpu) = text(dir, "cpu.stat") {
        let cpu = flat_keyed(&cpu);
        let secs = |key: &str| cpu.get(key).map(|&us| us as f64 / 1e6);
        stats.cpu_total_s = secs("usage_usec");
        stats.cpu_user_s = secs("user_usec");
        stats.cpu_system_s = secs("system_usec");
        stats.periods = cpu.get("nr_periods").copied();
        stats.throttled_periods = cpu.get("nr_throttled").copied();
        stats.throttled_s = secs("throttled_usec");
    }
    stats.memory_usage = number(dir, "memory.current");
    stats.inactive_file = keyed(dir, "memory.stat", "inactive_file");
    stats.memory_limit = limit(dir, "memory.max");
    stats.oom_kills = keyed(dir, "memory.events", "oom_kill");
    if let Some(io) = text(dir, "io.stat") {
        stats.io = parse_io_stat(&io);
    }
    stats.pids = number(dir, "pids.current");
    stats.pids_limit = limit(dir, "pids.max");
    stats
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device.
pub(crate) fn parse_io_stat(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut io = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(device) = fields.next() else {
            continue;
        };
        let (mut read, mut write) = (0, 0);
        for field in fields {
            match field.split_once('=') {
                Some(("rbytes", v)) => read = v.parse().unwrap_or(0),
                Some(("wbytes", v)) => write = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        io.insert(device.to_string(), (read, write));
    }
    io
}

/// v1 blkio: `8:0 Read 123` lines (plus `Write`, `Sync`, `Async`, `Total`, and a final
/// `Total N`).
pub(crate) fn parse_blkio(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut io: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, op, value] = fields[..] else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let entry = io.entry(device.to_string()).or_default();
        match op {
            "Read" => entry.0 += value,
            "Write" => entry.1 += value,
            _ => {}
        }
    }
    io
}

fn read_v1(dirs: &BTreeMap<&'static str, std::path::PathBuf>) -> Stats {
    let mut stats = Stats::default();
    if let Some(dir) = dirs.get("cpuacct") {
        let ns = |file: &str| number(dir, file).map(|n| n as f64 / 1e9);
        stats.cpu_total_s = ns("cpuacct.usage");
        stats.cpu_user_s = ns("cpuacct.usage_user");
        stats.cpu_system_s = ns("cpuacct.usage_sys");
        // Kernels before 4.7 have only the tick-based split.
        if (stats.cpu_user_s.is_none() || stats.cpu_system_s.is_none())
            && let Some(stat) = text(dir, "cpuacct.stat")
        {
            let stat = flat_keyed(&stat);
            stats.cpu_user_s = stat.get("user").map(|&t| t as f64 / USER_HZ);
            stats.cpu_system_s = stat.get("system").map(|&t| t as f64 / USER_HZ);
        }
    }
    if let Some(dir) = dirs.get("cpu")
        && let Some(cpu) = text(dir, "cpu.stat")
    {
        let cpu = flat_keyed(&cpu);
        stats.periods = cpu.get("nr_periods").copied();
        stats.throttled_periods = cpu.get("nr_throttled").copied();
        stats.throttled_s = cpu.get("throttled_time").map(|&ns| ns as f64 / 1e9);
    }
    if let Some(dir) = dirs.get("memory") {
        stats.memory_usage = number(dir, "memory.usage_in_bytes");
        if let Some(stat) = text(dir, "memory.stat") {
            let stat = flat_keyed(&stat);
            // `total_` counts the cgroup's descendants too, as usage_in_bytes does.
            stats.inactive_file = stat
                .get("total_inactive_file")
                .or_else(|| stat.get("inactive_file"))
                .copied();
        }
        stats.memory_limit = limit(dir, "memory.limit_in_bytes");
        stats.oom_kills = keyed(dir, "memory.oom_control", "oom_kill");
    }
    if let Some(dir) = dirs.get("blkio") {
        // CFQ/BFQ fill the first; with other schedulers only the throttle files count.
        for file in [
            "blkio.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes",
        ] {
            if let Some(t) = text(dir, file) {
                let io = parse_blkio(&t);
                if !io.is_empty() {
                    stats.io = io;
                    break;
                }
            }
        }
    }
    if let Some(dir) = dirs.get("pids") {
        stats.pids = number(dir, "pids.current");
        stats.pids_limit = limit(dir, "pids.max");
    }
    stats
}
