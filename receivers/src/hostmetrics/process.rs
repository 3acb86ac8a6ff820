//! `process` (off unless configured): CPU, memory, disk I/O, paging, threads, file
//! descriptors, context switches and uptime of each process whose executable name passes the
//! filter, one resource per process.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use procfs::ProcError;
use procfs::process::Process;

use super::config::{HostChecks, Naming, ProcessConfig, spec};
use super::emit::{Attr, Emitter, Kind, MetricDef, Plan, attr, kv};
use super::{Ctx, ScrapeError, scope};
use crate::metric_keys::{KeyChecker, ResourceAttrDef, ResourcePlan};

const STATE: &[Attr] = &[attr("state", "cpu.mode")];
const DIRECTION: &[Attr] = &[attr("direction", "disk.io.direction")];

pub const CPU_TIME: MetricDef = MetricDef::new(
    "process.cpu.time",
    "process.cpu.time",
    "s",
    "s",
    Kind::Counter,
    true,
    "CPU seconds of the process by mode.",
)
.attrs(STATE);
pub const CPU_UTILIZATION: MetricDef = MetricDef::new(
    "process.cpu.utilization",
    "process.cpu.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of all logical CPUs' time the process used since the previous scrape, by mode; none on the first scrape.",
)
.attrs(STATE);
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
pub const MEMORY_UTILIZATION: MetricDef = MetricDef::new(
    "process.memory.utilization",
    "process.memory.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Resident set size as a share of the host's memory (a percentage under collector names, as the collector reports it).",
);
pub const DISK_IO: MetricDef = MetricDef::new(
    "process.disk.io",
    "process.disk.io",
    "By",
    "By",
    Kind::Counter,
    true,
    "Bytes the process read from and wrote to storage.",
)
.attrs(DIRECTION);
pub const DISK_OPERATIONS: MetricDef = MetricDef::new(
    "process.disk.operations",
    "process.disk.operations",
    "{operation}",
    "{operations}",
    Kind::Counter,
    false,
    "Read and write system calls of the process.",
)
.attrs(DIRECTION);
pub const PAGING_FAULTS: MetricDef = MetricDef::new(
    "process.paging.faults",
    "process.paging.faults",
    "{fault}",
    "{faults}",
    Kind::Counter,
    false,
    "Page faults of the process.",
)
.attrs(&[attr("type", "system.paging.fault.type")]);
pub const SIGNALS_PENDING: MetricDef = MetricDef::new(
    "process.signals_pending",
    "process.signals_pending",
    "{signal}",
    "{signals}",
    Kind::UpDown,
    false,
    "Signals pending for the process.",
);
pub const THREADS: MetricDef = MetricDef::new(
    "process.thread.count",
    "process.threads",
    "{thread}",
    "{threads}",
    Kind::UpDown,
    false,
    "Threads of the process.",
);
pub const FDS: MetricDef = MetricDef::new(
    "process.unix.file_descriptor.count",
    "process.open_file_descriptors",
    "{file_descriptor}",
    "{count}",
    Kind::UpDown,
    false,
    "File descriptors open in the process.",
);
pub const HANDLES: MetricDef = MetricDef::new(
    "process.windows.handle.count",
    "process.handles",
    "{handle}",
    "{count}",
    Kind::UpDown,
    false,
    "Handles open in the process.",
)
.unavailable("a Windows metric; Linux processes have no handle count");
pub const CONTEXT_SWITCHES: MetricDef = MetricDef::new(
    "process.context_switches",
    "process.context_switches",
    "{context_switch}",
    "{count}",
    Kind::Counter,
    false,
    "Times the process was switched off a CPU, voluntarily or not.",
)
.attrs(&[attr("type", "process.context_switch.type")]);
pub const UPTIME: MetricDef = MetricDef::new(
    "process.uptime",
    "process.uptime",
    "s",
    "s",
    Kind::Gauge,
    false,
    "Time since the process started.",
);
pub const METRICS: &[MetricDef] = &[
    CPU_TIME,
    CPU_UTILIZATION,
    MEMORY_USAGE,
    MEMORY_VIRTUAL,
    MEMORY_UTILIZATION,
    DISK_IO,
    DISK_OPERATIONS,
    PAGING_FAULTS,
    SIGNALS_PENDING,
    THREADS,
    FDS,
    HANDLES,
    CONTEXT_SWITCHES,
    UPTIME,
];

/// The resource attributes of a process; semantic conventions use the same names.
pub const RESOURCE: &[ResourceAttrDef] = &[
    ResourceAttrDef::new("process.pid", "process.pid", true),
    ResourceAttrDef::new("process.parent_pid", "process.parent_pid", true),
    ResourceAttrDef::new("process.executable.name", "process.executable.name", true),
    ResourceAttrDef::new("process.executable.path", "process.executable.path", true),
    ResourceAttrDef::new("process.command", "process.command", true),
    ResourceAttrDef::new("process.command_line", "process.command_line", true),
    ResourceAttrDef::new("process.owner", "process.owner", true),
    ResourceAttrDef::new("process.cgroup", "process.cgroup", false),
];

/// Which kinds of per-process read errors are left out of the scraper's error report.
#[derive(Clone, Copy, Debug, Default)]
struct Mutes {
    all: bool,
    name: bool,
    exe: bool,
    io: bool,
    user: bool,
    cgroup: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    Name,
    Exe,
    Io,
    User,
    Cgroup,
    /// Reads no `mute_process_*_error` switch covers (file descriptors, status).
    Other,
}

/// The per-process read errors of one scrape: how many, and the first few for the log.
#[derive(Debug, Default)]
struct Problems {
    count: usize,
    first: Vec<String>,
}

impl Problems {
    fn into_error(self) -> Option<ScrapeError> {
        (self.count > 0).then(|| {
            ScrapeError::Partial(format!(
                "{} per-process read errors, first: {}",
                self.count,
                self.first.join("; ")
            ))
        })
    }
}

/// CPU seconds of one process at one scrape.
#[derive(Clone, Copy, Debug)]
struct CpuSample {
    user: f64,
    system: f64,
    wait: f64,
    at: u64,
}

pub struct ProcessScraper {
    filter: super::config::Filter,
    mutes: Mutes,
    /// Processes younger than this (nanoseconds) are left out.
    delay: u64,
    resource: ResourcePlan,
    /// The previous scrape's CPU seconds by (pid, start ticks), for `process.cpu.utilization`;
    /// the start time tells a reused pid apart.
    previous_cpu: HashMap<(i32, u64), CpuSample>,
}

impl ProcessScraper {
    pub fn from_config(c: &ProcessConfig, check: &mut KeyChecker<'_>, naming: Naming) -> Self {
        let filter = check.filter(
            &["scrapers", "process"],
            "names",
            ("include", spec(&c.include)),
            ("exclude", spec(&c.exclude)),
        );
        let resource = check.resource_attributes(
            &["scrapers", "process", "resource_attributes"],
            &c.resource_attributes,
            RESOURCE,
            naming == Naming::Semconv,
        );
        ProcessScraper {
            filter,
            mutes: Mutes {
                all: c.mute_process_all_errors,
                name: c.mute_process_name_error,
                exe: c.mute_process_exe_error,
                io: c.mute_process_io_error,
                user: c.mute_process_user_error,
                cgroup: c.mute_process_cgroup_error,
            },
            delay: u64::try_from(c.scrape_process_delay.0.as_nanos()).unwrap_or(u64::MAX),
            resource,
            previous_cpu: HashMap::new(),
        }
    }

    fn report(&self, problems: &mut Problems, kind: Problem, message: impl FnOnce() -> String) {
        let muted = self.mutes.all
            || match kind {
                Problem::Name => self.mutes.name,
                Problem::Exe => self.mutes.exe,
                Problem::Io => self.mutes.io,
                Problem::User => self.mutes.user,
                Problem::Cgroup => self.mutes.cgroup,
                Problem::Other => false,
            };
        if muted {
            return;
        }
        problems.count += 1;
        if problems.first.len() < 3 {
            problems.first.push(message());
        }
    }

    /// One resource per process that passes the filters; the read errors that are not muted
    /// come back as one partial error.
    pub fn scrape(
        &mut self,
        ctx: &Ctx,
        naming: Naming,
        plan: &Plan,
    ) -> Result<(Vec<ResourceMetrics>, Option<ScrapeError>), ScrapeError> {
        let dir = ctx.path("proc");
        let all = procfs::process::all_processes_with_root(&dir)
            .map_err(|e| ScrapeError::read(&dir, e))?;
        let host = Host::read(ctx, plan);
        let mut problems = Problems::default();
        let mut seen = HashSet::new();
        let mut resources = Vec::new();
        for process in all {
            // Processes come and go while the directory is read.
            let Ok(process) = process else { continue };
            if let Some(r) = self.one(ctx, naming, plan, &process, &host, &mut problems, &mut seen)
            {
                resources.push(r);
            }
        }
        self.previous_cpu.retain(|key, _| seen.contains(key));
        Ok((resources, problems.into_error()))
    }

    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        ctx: &Ctx,
        naming: Naming,
        plan: &Plan,
        p: &Process,
        host: &Host,
        problems: &mut Problems,
        seen: &mut HashSet<(i32, u64)>,
    ) -> Option<ResourceMetrics> {
        let pid = p.pid;
        let stat = match p.stat() {
            Ok(s) => s,
            Err(e) => {
                if !gone(ctx, pid, &e) {
                    self.report(problems, Problem::Name, || {
                        format!("cannot read the name of pid {pid}: {e}")
                    });
                }
                return None;
            }
        };
        let exe = match p.exe() {
            Ok(path) => Some(path),
            Err(e) => {
                if !gone(ctx, pid, &e) {
                    self.report(problems, Problem::Exe, || {
                        format!("cannot read the executable of pid {pid}: {e}")
                    });
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
        if self.delay > 0 && ctx.now.saturating_sub(start) < self.delay {
            return None;
        }

        let r = &self.resource;
        let mut attributes: Vec<KeyValue> = Vec::new();
        let mut put = |key: &str, value: any_value::Value| {
            if let Some(kv) = r.attribute(key, value) {
                attributes.push(kv);
            }
        };
        put("process.pid", any_value::Value::IntValue(i64::from(pid)));
        put(
            "process.parent_pid",
            any_value::Value::IntValue(i64::from(stat.ppid)),
        );
        put(
            "process.executable.name",
            any_value::Value::StringValue(name.clone()),
        );
        if let Some(exe) = &exe {
            put(
                "process.executable.path",
                any_value::Value::StringValue(exe.to_string_lossy().into_owned()),
            );
        }
        if (r.is_on("process.command") || r.is_on("process.command_line"))
            && let Ok(args) = p.cmdline()
            && let Some(first) = args.first()
        {
            put(
                "process.command",
                any_value::Value::StringValue(first.clone()),
            );
            put(
                "process.command_line",
                any_value::Value::StringValue(args.join(" ")),
            );
        }
        let mut late = Vec::new();
        if r.is_on("process.owner")
            && let Ok(uid) = p.uid()
        {
            let owner = match host.users.get(&uid) {
                Some(user) => user.clone(),
                None => {
                    late.push((
                        Problem::User,
                        format!("uid {uid} of pid {pid} has no user name"),
                    ));
                    uid.to_string()
                }
            };
            put("process.owner", any_value::Value::StringValue(owner));
        }
        if r.is_on("process.cgroup") {
            match ctx.read_string(&format!("proc/{pid}/cgroup")) {
                Ok(text) => put(
                    "process.cgroup",
                    any_value::Value::StringValue(text.trim().to_string()),
                ),
                Err(e) => late.push((Problem::Cgroup, e.to_string())),
            }
        }
        for (kind, message) in late {
            self.report(problems, kind, || message);
        }
        if !self.resource.keeps(&attributes) {
            return None;
        }

        let mut out = Emitter::new(naming, plan, ctx.now, start);
        let mode = out.pick("cpu.mode", "state");
        let secs = |ticks: u64| ticks as f64 / tps as f64;
        let cpu = CpuSample {
            user: secs(stat.utime),
            system: secs(stat.stime),
            wait: secs(stat.delayacct_blkio_ticks.unwrap_or(0)),
            at: ctx.now,
        };
        out.point(&CPU_TIME, vec![kv(mode, "user")], cpu.user);
        out.point(&CPU_TIME, vec![kv(mode, "system")], cpu.system);
        if stat.delayacct_blkio_ticks.is_some() {
            out.point(&CPU_TIME, vec![kv(mode, "wait")], cpu.wait);
        }
        let key = (pid, stat.starttime);
        seen.insert(key);
        if out.on(&CPU_UTILIZATION) {
            if let Some(before) = self.previous_cpu.get(&key) {
                let elapsed = cpu.at.saturating_sub(before.at) as f64 / 1e9;
                if elapsed > 0.0 {
                    let share = |now: f64, then: f64| {
                        (now - then).max(0.0) / elapsed / host.logical_cpus as f64
                    };
                    for (m, v) in [
                        ("user", share(cpu.user, before.user)),
                        ("system", share(cpu.system, before.system)),
                        ("wait", share(cpu.wait, before.wait)),
                    ] {
                        out.point(&CPU_UTILIZATION, vec![kv(mode, m)], v);
                    }
                }
            }
            self.previous_cpu.insert(key, cpu);
        }
        let rss = stat.rss.saturating_mul(ctx.page_size);
        out.point(&MEMORY_USAGE, vec![], rss);
        out.point(&MEMORY_VIRTUAL, vec![], stat.vsize);
        if let Some(total) = host.memory.filter(|&t| t > 0) {
            let share = rss as f64 / total as f64;
            let value = if out.semconv() { share } else { share * 100.0 };
            out.point(&MEMORY_UTILIZATION, vec![], value);
        }
        if out.on(&DISK_IO) || out.on(&DISK_OPERATIONS) {
            match p.io() {
                Ok(io) => {
                    let direction = out.pick("disk.io.direction", "direction");
                    out.point(&DISK_IO, vec![kv(direction, "read")], io.read_bytes);
                    out.point(&DISK_IO, vec![kv(direction, "write")], io.write_bytes);
                    out.point(&DISK_OPERATIONS, vec![kv(direction, "read")], io.syscr);
                    out.point(&DISK_OPERATIONS, vec![kv(direction, "write")], io.syscw);
                }
                Err(e) if !gone(ctx, pid, &e) => self.report(problems, Problem::Io, || {
                    format!("cannot read the I/O counters of pid {pid}: {e}")
                }),
                Err(_) => {}
            }
        }
        let fault = out.pick("system.paging.fault.type", "type");
        out.point(&PAGING_FAULTS, vec![kv(fault, "major")], stat.majflt);
        out.point(&PAGING_FAULTS, vec![kv(fault, "minor")], stat.minflt);
        out.point(&THREADS, vec![], stat.num_threads.max(0));
        if out.on(&FDS) {
            match p.fd_count() {
                Ok(n) => out.point(&FDS, vec![], n as u64),
                Err(e) if !gone(ctx, pid, &e) => self.report(problems, Problem::Other, || {
                    format!("cannot count the file descriptors of pid {pid}: {e}")
                }),
                Err(_) => {}
            }
        }
        if out.on(&CONTEXT_SWITCHES) || out.on(&SIGNALS_PENDING) {
            match p.status() {
                Ok(status) => {
                    let kind = out.pick("process.context_switch.type", "type");
                    if let Some(n) = status.nonvoluntary_ctxt_switches {
                        out.point(&CONTEXT_SWITCHES, vec![kv(kind, "involuntary")], n);
                    }
                    if let Some(n) = status.voluntary_ctxt_switches {
                        out.point(&CONTEXT_SWITCHES, vec![kv(kind, "voluntary")], n);
                    }
                    // Pending to the thread group or to the main thread, each signal once.
                    let pending = (status.shdpnd | status.sigpnd).count_ones();
                    out.point(&SIGNALS_PENDING, vec![], u64::from(pending));
                }
                Err(e) if !gone(ctx, pid, &e) => self.report(problems, Problem::Other, || {
                    format!("cannot read the status of pid {pid}: {e}")
                }),
                Err(_) => {}
            }
        }
        if start > 0 {
            out.point(&UPTIME, vec![], ctx.now.saturating_sub(start) as f64 / 1e9);
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

/// Whether `e` only says the process exited while it was read: not a problem worth reporting.
/// (A kernel thread's missing `exe` link is also "not found", but the process is there.)
fn gone(ctx: &Ctx, pid: i32, e: &ProcError) -> bool {
    matches!(e, ProcError::NotFound(_)) && !ctx.path(&format!("proc/{pid}")).exists()
}

/// What every process's metrics need from the host, read once per scrape.
struct Host {
    users: HashMap<u32, String>,
    logical_cpus: u64,
    /// MemTotal, when `process.memory.utilization` needs it.
    memory: Option<u64>,
}

impl Host {
    fn read(ctx: &Ctx, plan: &Plan) -> Host {
        let logical_cpus = ctx
            .stat_text()
            .map(|stat| {
                stat.lines()
                    .filter(|l| {
                        l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                    })
                    .count()
            })
            .unwrap_or(1)
            .max(1) as u64;
        let memory = plan
            .is_on(&MEMORY_UTILIZATION)
            .then(|| ctx.read::<procfs::Meminfo>("proc/meminfo").ok())
            .flatten()
            .map(|m| m.mem_total);
        Host {
            users: users(ctx),
            logical_cpus,
            memory,
        }
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
