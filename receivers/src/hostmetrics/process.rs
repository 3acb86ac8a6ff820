//! `process` (off unless configured): CPU, memory, threads, file descriptors and disk I/O of
//! each process whose executable name passes the filter, one resource per process.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use procfs::process::Process;

use super::config::{Checker, Filter, Naming, ProcessConfig};
use super::emit::{Emitter, Kind, MetricDef, kv};
use super::{Ctx, ScrapeError, scope};

pub const CPU_TIME: MetricDef = MetricDef::new(
    "process.cpu.time",
    "process.cpu.time",
    "s",
    "s",
    Kind::Counter,
    true,
    "CPU seconds of the process by mode.",
);
pub const MEMORY_USAGE: MetricDef = MetricDef::new(
    "process.memory.usage",
    "process.memory.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Physical memory in use (resident set size).",
);
pub const MEMORY_VIRTUAL: MetricDef = MetricDef::new(
    "process.memory.virtual",
    "process.memory.virtual",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Committed virtual memory.",
);
pub const THREADS: MetricDef = MetricDef::new(
    "process.thread.count",
    "process.threads",
    "{thread}",
    "{threads}",
    Kind::UpDown,
    true,
    "Threads of the process.",
);
pub const FDS: MetricDef = MetricDef::new(
    "process.unix.file_descriptor.count",
    "process.open_file_descriptors",
    "{file_descriptor}",
    "{count}",
    Kind::UpDown,
    true,
    "File descriptors open in the process.",
);
pub const DISK_IO: MetricDef = MetricDef::new(
    "process.disk.io",
    "process.disk.io",
    "By",
    "By",
    Kind::Counter,
    true,
    "Bytes the process read from and wrote to storage.",
);
pub const METRICS: &[MetricDef] = &[
    CPU_TIME,
    MEMORY_USAGE,
    MEMORY_VIRTUAL,
    THREADS,
    FDS,
    DISK_IO,
];

pub struct ProcessScraper {
    filter: Filter,
    mute_name_error: bool,
    mute_exe_error: bool,
}

impl ProcessScraper {
    pub fn from_config(c: &ProcessConfig, check: &mut Checker<'_>) -> ProcessScraper {
        let filter = check.filter(
            &["scrapers", "process"],
            "names",
            c.include
                .as_ref()
                .map(|f| (f.names.as_slice(), f.match_type)),
            "include",
            c.exclude
                .as_ref()
                .map(|f| (f.names.as_slice(), f.match_type)),
            "exclude",
        );
        ProcessScraper {
            filter,
            mute_name_error: c.mute_process_name_error,
            mute_exe_error: c.mute_process_exe_error,
        }
    }

    pub fn scrape(
        &mut self,
        ctx: &Ctx,
        naming: Naming,
        enabled: &HashSet<&'static str>,
    ) -> Result<Vec<ResourceMetrics>, ScrapeError> {
        let dir = ctx.path("proc");
        let all = procfs::process::all_processes_with_root(&dir)
            .map_err(|e| ScrapeError::read(&dir, e))?;
        let users = users(ctx);
        let mut resources = Vec::new();
        for process in all {
            // Processes come and go while the directory is read.
            let Ok(process) = process else { continue };
            if let Some(r) = self.one(ctx, naming, enabled, &process, &users) {
                resources.push(r);
            }
        }
        Ok(resources)
    }

    fn one(
        &self,
        ctx: &Ctx,
        naming: Naming,
        enabled: &HashSet<&'static str>,
        p: &Process,
        users: &HashMap<u32, String>,
    ) -> Option<ResourceMetrics> {
        let stat = match p.stat() {
            Ok(s) => s,
            Err(e) => {
                if !self.mute_name_error {
                    tracing::debug!(pid = p.pid, error = %e, "cannot read process stat");
                }
                return None;
            }
        };
        let exe = match p.exe() {
            Ok(path) => Some(path),
            Err(e) => {
                if !self.mute_exe_error {
                    tracing::debug!(pid = p.pid, error = %e, "cannot read process executable");
                }
                None
            }
        };
        // The kernel truncates `comm` to 15 bytes; the executable's file name is whole.
        let name = exe
            .as_ref()
            .and_then(|e| e.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| stat.comm.clone());
        if !self.filter.allows(&name) {
            return None;
        }
        let tps = ctx.ticks_per_second.max(1);
        let start = ctx.boot.saturating_add(
            u64::try_from(u128::from(stat.starttime) * 1_000_000_000 / u128::from(tps))
                .unwrap_or(u64::MAX),
        );
        let mut attributes: Vec<KeyValue> = vec![
            kv("process.pid", i64::from(p.pid)),
            kv("process.parent_pid", i64::from(stat.ppid)),
            kv("process.executable.name", name),
        ];
        if let Some(exe) = &exe {
            attributes.push(kv(
                "process.executable.path",
                exe.to_string_lossy().into_owned(),
            ));
        }
        if let Ok(args) = p.cmdline()
            && let Some(first) = args.first()
        {
            attributes.push(kv("process.command", first.as_str()));
            attributes.push(kv("process.command_line", args.join(" ")));
        }
        if let Ok(uid) = p.uid() {
            match users.get(&uid) {
                Some(user) => attributes.push(kv("process.owner", user.as_str())),
                None => attributes.push(kv("process.owner", uid.to_string())),
            }
        }

        let mut out = Emitter::new(naming, enabled, ctx.now, start);
        let mode = out.pick("cpu.mode", "state");
        let secs = |ticks: u64| ticks as f64 / tps as f64;
        out.point(&CPU_TIME, vec![kv(mode, "user")], secs(stat.utime));
        out.point(&CPU_TIME, vec![kv(mode, "system")], secs(stat.stime));
        if let Some(wait) = stat.delayacct_blkio_ticks {
            out.point(&CPU_TIME, vec![kv(mode, "wait")], secs(wait));
        }
        out.point(
            &MEMORY_USAGE,
            vec![],
            stat.rss.saturating_mul(ctx.page_size),
        );
        out.point(&MEMORY_VIRTUAL, vec![], stat.vsize);
        out.point(&THREADS, vec![], stat.num_threads.max(0));
        // Another user's descriptors and I/O need privileges; leave those metrics out.
        if out.on(&FDS)
            && let Ok(n) = p.fd_count()
        {
            out.point(&FDS, vec![], n as u64);
        }
        if out.on(&DISK_IO)
            && let Ok(io) = p.io()
        {
            let direction = out.pick("disk.io.direction", "direction");
            out.point(&DISK_IO, vec![kv(direction, "read")], io.read_bytes);
            out.point(&DISK_IO, vec![kv(direction, "write")], io.write_bytes);
        }
        Some(ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope("process")),
                metrics: out.finish(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }
}

/// User names by uid from the host's `/etc/passwd` (empty when it cannot be read).
fn users(ctx: &Ctx) -> HashMap<u32, String> {
    ctx.read_string("etc/passwd")
        .map(|text| {
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.split(':');
                    let name = fields.next()?;
                    let uid = fields.nth(1)?.parse().ok()?;
                    Some((uid, name.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}
