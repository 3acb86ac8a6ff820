//! One container's Engine API stats as metrics: sluice's semantic-convention set and the OTel
//! Collector's docker_stats set, each metric switchable by name.

use std::collections::{HashMap, HashSet};

use bollard::models::{ContainerBlkioStatEntry, ContainerCpuStats, ContainerStatsResponse};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};

use super::config::Naming;
use super::state::{CpuSample, Tracked};
use crate::cgroups::builder::{MetricSet, Num, Point, maybe, single, string_kv};
use crate::metric_keys::{Aggregation, KeyChecker, MetricSettings, Regroup, regroup_points};

pub(crate) const SCOPE: &str = "sluice/receiver/docker_stats";

/// Limits this large mean "none" (the kernel's `max`).
const UNLIMITED: u64 = 1 << 62;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    /// A monotonic cumulative sum.
    Counter,
    /// A non-monotonic cumulative sum.
    UpDown,
}

/// Which set a metric belongs to; the naming in use turns its own set on by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Set {
    /// sluice's metrics (semantic-convention names where the conventions have one).
    Sluice,
    /// The OTel Collector's docker_stats metrics.
    Collector,
}

#[derive(Debug)]
pub(crate) struct Def {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    /// On by default when its set is the naming in use.
    pub default_on: bool,
    pub set: Set,
    pub description: &'static str,
    pub attributes: &'static [&'static str],
    /// The sluice metric that carries the same data, for a Collector metric.
    pub counterpart: Option<&'static str>,
}

const fn def(
    set: Set,
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    default_on: bool,
    description: &'static str,
) -> Def {
    Def {
        name,
        unit,
        kind,
        default_on,
        set,
        description,
        attributes: &[],
        counterpart: None,
    }
}

impl Def {
    const fn attrs(mut self, attributes: &'static [&'static str]) -> Self {
        self.attributes = attributes;
        self
    }
    const fn like(mut self, counterpart: &'static str) -> Self {
        self.counterpart = Some(counterpart);
        self
    }
}

use Kind::{Counter, Gauge, UpDown};
use Set::{Collector as C, Sluice as S};

const NET: &[&str] = &["network.interface.name", "network.io.direction"];
const BLKIO: &[&str] = &["device_major", "device_minor", "operation"];
const IFACE: &[&str] = &["interface"];

pub(crate) const PERCPU: &str = "container.cpu.usage.percpu";

/// Every metric of both sets. Where both use one name, the naming in use picks the def.
pub(crate) const METRICS: &[Def] = &[
    // sluice's set.
    def(S, "container.up", "1", Gauge, true, "1 while the container runs, 0 once it stopped (kept for the grace period)"),
    def(S, "container.restarts", "{restart}", Counter, true, "Times Docker restarted the container"),
    def(S, "container.uptime", "s", Gauge, true, "Time since the container started"),
    def(S, "container.cpu.time", "s", Counter, true, "CPU time consumed by the container").attrs(&["cpu.mode"]),
    def(S, "container.cpu.usage", "{cpu}", Gauge, true, "CPUs in use: docker stats' CPU % divided by 100"),
    def(S, "container.cpu.throttling_data.periods", "{period}", Counter, true, "Enforcement periods that elapsed"),
    def(S, "container.cpu.throttling_data.throttled_periods", "{period}", Counter, true, "Periods in which the container was throttled"),
    def(S, "container.cpu.throttling_data.throttled_time", "s", Counter, true, "Time the container was throttled for"),
    def(S, "container.memory.usage", "By", UpDown, true, "Memory charged to the container, page cache included"),
    def(S, "container.memory.working_set", "By", UpDown, true, "Memory usage without inactive file cache: docker stats' MEM USAGE"),
    def(S, "container.memory.limit", "By", UpDown, true, "Memory limit of the container (the host's memory when none is set)"),
    def(S, "container.memory.percent", "%", Gauge, true, "Working set as a percentage of the limit: docker stats' MEM %"),
    def(S, "container.network.io", "By", Counter, true, "Bytes received and sent per interface").attrs(NET),
    def(S, "container.network.packet.count", "{packet}", Counter, true, "Packets received and sent per interface").attrs(NET),
    def(S, "container.network.errors", "{error}", Counter, true, "Receive and transmit errors per interface").attrs(NET),
    def(S, "container.network.packet.dropped", "{packet}", Counter, true, "Packets dropped per interface").attrs(NET),
    def(S, "container.disk.io", "By", Counter, true, "Bytes read from and written to block devices").attrs(&["disk.io.direction", "system.device"]),
    def(S, "container.pids.count", "{process}", UpDown, true, "Processes and threads in the container"),
    def(S, "container.pids.limit", "{process}", UpDown, true, "Most processes and threads the container may have"),
    // The OTel Collector's set (its metadata.yaml: names, units, types, defaults).
    def(C, "container.cpu.usage.system", "ns", Counter, false, "System CPU usage, as reported by docker."),
    def(C, "container.cpu.usage.total", "ns", Counter, true, "Total CPU time consumed.").like("container.cpu.time"),
    def(C, "container.cpu.usage.kernelmode", "ns", Counter, true, "Time spent by tasks of the cgroup in kernel mode (Linux).").like("container.cpu.time"),
    def(C, "container.cpu.usage.usermode", "ns", Counter, true, "Time spent by tasks of the cgroup in user mode (Linux).").like("container.cpu.time"),
    def(C, PERCPU, "ns", Counter, false, "Per-core CPU usage by the container (Only available with cgroups v1).").attrs(&["core"]),
    def(C, "container.cpu.throttling_data.periods", "{periods}", Counter, false, "Number of periods with throttling active."),
    def(C, "container.cpu.throttling_data.throttled_periods", "{periods}", Counter, false, "Number of periods when the container hits its throttling limit."),
    def(C, "container.cpu.throttling_data.throttled_time", "ns", Counter, false, "Aggregate time the container was throttled."),
    def(C, "container.cpu.utilization", "1", Gauge, true, "Percent of CPU used by the container.").like("container.cpu.usage"),
    def(C, "container.cpu.limit", "{cpus}", Gauge, false, "CPU limit set for the container."),
    def(C, "container.cpu.shares", "1", Gauge, false, "CPU shares set for the container."),
    def(C, "container.cpu.logical.count", "{cpus}", Gauge, false, "Number of cores available to the container."),
    def(C, "container.memory.usage.limit", "By", UpDown, true, "Memory limit of the container.").like("container.memory.limit"),
    def(C, "container.memory.usage.total", "By", UpDown, true, "Memory usage of the container. This excludes the cache.").like("container.memory.working_set"),
    def(C, "container.memory.usage.max", "By", UpDown, false, "Maximum memory usage."),
    def(C, "container.memory.percent", "1", Gauge, true, "Percentage of memory used."),
    def(C, "container.memory.cache", "By", UpDown, false, "The amount of memory used by the processes of this control group that can be associated precisely with a block on a block device (Only available with cgroups v1)."),
    def(C, "container.memory.rss", "By", UpDown, false, "The amount of memory that doesn't correspond to anything on disk: stacks, heaps, and anonymous memory maps (Only available with cgroups v1)."),
    def(C, "container.memory.rss_huge", "By", UpDown, false, "Number of bytes of anonymous transparent hugepages in this cgroup (Only available with cgroups v1)."),
    def(C, "container.memory.dirty", "By", UpDown, false, "Bytes that are waiting to get written back to the disk, from this cgroup (Only available with cgroups v1)."),
    def(C, "container.memory.writeback", "By", UpDown, false, "Number of bytes of file/anon cache that are queued for syncing to disk in this cgroup (Only available with cgroups v1)."),
    def(C, "container.memory.mapped_file", "By", UpDown, false, "Indicates the amount of memory mapped by the processes in the control group (Only available with cgroups v1)."),
    def(C, "container.memory.pgpgin", "{operations}", Counter, false, "Number of pages read from disk by the cgroup (Only available with cgroups v1)."),
    def(C, "container.memory.pgpgout", "{operations}", Counter, false, "Number of pages written to disk by the cgroup (Only available with cgroups v1)."),
    def(C, "container.memory.pgfault", "{faults}", Counter, false, "Indicate the number of times that a process of the cgroup triggered a page fault."),
    def(C, "container.memory.pgmajfault", "{faults}", Counter, false, "Indicate the number of times that a process of the cgroup triggered a major fault."),
    def(C, "container.memory.inactive_anon", "By", UpDown, false, "The amount of anonymous memory that has been identified as inactive by the kernel."),
    def(C, "container.memory.active_anon", "By", UpDown, false, "The amount of anonymous memory that has been identified as active by the kernel."),
    def(C, "container.memory.inactive_file", "By", UpDown, false, "Cache memory that has been identified as inactive by the kernel."),
    def(C, "container.memory.active_file", "By", UpDown, false, "Cache memory that has been identified as active by the kernel."),
    def(C, "container.memory.unevictable", "By", UpDown, false, "The amount of memory that cannot be reclaimed."),
    def(C, "container.memory.hierarchical_memory_limit", "By", UpDown, false, "The maximum amount of physical memory that can be used by the processes of this control group (Only available with cgroups v1)."),
    def(C, "container.memory.hierarchical_memsw_limit", "By", UpDown, false, "The maximum amount of RAM + swap that can be used by the processes of this control group (Only available with cgroups v1)."),
    def(C, "container.memory.total_cache", "By", UpDown, true, "Total amount of memory used by the processes of this cgroup (and descendants) that can be associated with a block on a block device. Also accounts for memory used by tmpfs (Only available with cgroups v1)."),
    def(C, "container.memory.total_rss", "By", UpDown, false, "The amount of memory that doesn't correspond to anything on disk: stacks, heaps, and anonymous memory maps. Includes descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.total_rss_huge", "By", UpDown, false, "Number of bytes of anonymous transparent hugepages in this cgroup and descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.total_dirty", "By", UpDown, false, "Bytes that are waiting to get written back to the disk, from this cgroup and descendants (Only available with cgroups v1)."),
    def(C, "container.memory.total_writeback", "By", UpDown, false, "Number of bytes of file/anon cache that are queued for syncing to disk in this cgroup and descendants (Only available with cgroups v1)."),
    def(C, "container.memory.total_mapped_file", "By", UpDown, false, "Indicates the amount of memory mapped by the processes in the control group and descendant groups (Only available with cgroups v1)."),
    def(C, "container.memory.total_pgpgin", "{operations}", Counter, false, "Number of pages read from disk by the cgroup and descendant groups (Only available with cgroups v1)."),
    def(C, "container.memory.total_pgpgout", "{operations}", Counter, false, "Number of pages written to disk by the cgroup and descendant groups (Only available with cgroups v1)."),
    def(C, "container.memory.total_pgfault", "{faults}", Counter, false, "Indicate the number of times that a process of the cgroup (or descendant cgroups) triggered a page fault (Only available with cgroups v1)."),
    def(C, "container.memory.total_pgmajfault", "{faults}", Counter, false, "Indicate the number of times that a process of the cgroup (or descendant cgroups) triggered a major fault (Only available with cgroups v1)."),
    def(C, "container.memory.total_inactive_anon", "By", UpDown, false, "The amount of anonymous memory that has been identified as inactive by the kernel. Includes descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.total_active_anon", "By", UpDown, false, "The amount of anonymous memory that has been identified as active by the kernel. Includes descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.total_inactive_file", "By", UpDown, false, "Cache memory that has been identified as inactive by the kernel. Includes descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.total_active_file", "By", UpDown, false, "Cache memory that has been identified as active by the kernel. Includes descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.total_unevictable", "By", UpDown, false, "The amount of memory that cannot be reclaimed. Includes descendant cgroups (Only available with cgroups v1)."),
    def(C, "container.memory.anon", "By", UpDown, false, "Amount of memory used in anonymous mappings such as brk(), sbrk(), and mmap(MAP_ANONYMOUS) (Only available with cgroups v2)."),
    def(C, "container.memory.file", "By", UpDown, true, "Amount of memory used to cache filesystem data, including tmpfs and shared memory (Only available with cgroups v2)."),
    def(C, "container.memory.fails", "{fails}", Counter, false, "Number of times the memory limit was hit."),
    def(C, "container.blockio.io_merged_recursive", "{operations}", Counter, false, "Number of bios/requests merged into requests belonging to this cgroup and its descendant cgroups (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.blockio.io_queued_recursive", "{operations}", Counter, false, "Number of requests queued up for this cgroup and its descendant cgroups (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.blockio.io_service_bytes_recursive", "By", Counter, true, "Number of bytes transferred to/from the disk by the group and descendant groups.").attrs(BLKIO).like("container.disk.io"),
    def(C, "container.blockio.io_service_time_recursive", "ns", Counter, false, "Total amount of time in nanoseconds between request dispatch and request completion for the IOs done by this cgroup and descendant cgroups (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.blockio.io_serviced_recursive", "{operations}", Counter, false, "Number of IOs (bio) issued to the disk by the group and descendant groups (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.blockio.io_time_recursive", "ms", Counter, false, "Disk time allocated to cgroup (and descendant cgroups) per device in milliseconds (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.blockio.io_wait_time_recursive", "ns", Counter, false, "Total amount of time the IOs for this cgroup (and descendant cgroups) spent waiting in the scheduler queues for service (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.blockio.sectors_recursive", "{sectors}", Counter, false, "Number of sectors transferred to/from disk by the group and descendant groups (Only available with cgroups v1).").attrs(BLKIO),
    def(C, "container.network.io.usage.rx_bytes", "By", Counter, true, "Bytes received by the container.").attrs(IFACE).like("container.network.io"),
    def(C, "container.network.io.usage.tx_bytes", "By", Counter, true, "Bytes sent.").attrs(IFACE).like("container.network.io"),
    def(C, "container.network.io.usage.rx_dropped", "{packets}", Counter, true, "Incoming packets dropped.").attrs(IFACE).like("container.network.packet.dropped"),
    def(C, "container.network.io.usage.tx_dropped", "{packets}", Counter, true, "Outgoing packets dropped.").attrs(IFACE).like("container.network.packet.dropped"),
    def(C, "container.network.io.usage.rx_errors", "{errors}", Counter, false, "Received errors.").attrs(IFACE).like("container.network.errors"),
    def(C, "container.network.io.usage.tx_errors", "{errors}", Counter, false, "Sent errors.").attrs(IFACE).like("container.network.errors"),
    def(C, "container.network.io.usage.rx_packets", "{packets}", Counter, false, "Packets received.").attrs(IFACE).like("container.network.packet.count"),
    def(C, "container.network.io.usage.tx_packets", "{packets}", Counter, false, "Packets sent.").attrs(IFACE).like("container.network.packet.count"),
    def(C, "container.pids.count", "{pids}", UpDown, false, "Number of pids in the container's cgroup."),
    def(C, "container.pids.limit", "{pids}", UpDown, false, "Maximum number of pids in the container's cgroup."),
    def(C, "container.uptime", "s", Gauge, false, "Time elapsed since container start time."),
    def(C, "container.restarts", "{restarts}", Counter, false, "Number of restarts for the container."),
];

/// The set the naming turns on by default.
fn own_set(naming: Naming) -> Set {
    match naming {
        Naming::Semconv => Set::Sluice,
        Naming::Collector => Set::Collector,
    }
}

/// The metric called `name` under `naming`: the naming's own set first.
pub(crate) fn find(name: &str, naming: Naming) -> Option<&'static Def> {
    let own = own_set(naming);
    METRICS
        .iter()
        .find(|d| d.name == name && d.set == own)
        .or_else(|| METRICS.iter().find(|d| d.name == name))
}

/// Which metrics are emitted and how, from the config's `metrics:` under `naming`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    naming: Option<Naming>,
    on: HashSet<&'static str>,
    regroup: HashMap<&'static str, Regroup>,
}

impl Plan {
    fn def(&self, name: &str) -> Option<&'static Def> {
        find(name, self.naming.unwrap_or_default())
    }

    /// The enabled metric called `name` (as the naming in use resolves it).
    fn enabled(&self, name: &'static str) -> Option<&'static Def> {
        if self.on.contains(name) {
            self.def(name)
        } else {
            None
        }
    }
}

pub(crate) fn plan(
    check: &mut KeyChecker<'_>,
    switches: &std::collections::BTreeMap<String, MetricSettings>,
    naming: Naming,
) -> Plan {
    let own = own_set(naming);
    let mut on: HashSet<&'static str> = METRICS
        .iter()
        .filter(|d| d.set == own && d.default_on)
        .map(|d| d.name)
        .collect();
    let mut regroup = HashMap::new();
    for (name, settings) in switches {
        let keys = ["metrics", name.as_str()];
        let Some(d) = find(name, naming) else {
            let suggestion = sluice_config::suggest(name, METRICS.iter().map(|d| d.name));
            check.error_at_key(
                &keys,
                format!("unknown metric `{name}` of docker_stats"),
                suggestion,
            );
            continue;
        };
        match settings.enabled {
            Some(true) => {
                on.insert(d.name);
                if d.set != own
                    && let Some(counterpart) = d.counterpart
                {
                    check.warn_at_key(
                        &keys,
                        format!(
                            "emitted under the OTel Collector's name, besides `{counterpart}` that carries the same data under `attribute_names: semconv`; `attribute_names: collector` gives the Collector's set alone"
                        ),
                    );
                }
            }
            Some(false) => {
                on.remove(d.name);
            }
            None => {}
        }
        let declared: Vec<(&'static str, &'static str)> =
            d.attributes.iter().map(|a| (*a, *a)).collect();
        let default = match d.kind {
            Kind::Gauge => Aggregation::Avg,
            Kind::Counter | Kind::UpDown => Aggregation::Sum,
        };
        if let Some(r) = check.regroup(&keys, settings, &declared, false, default) {
            regroup.insert(d.name, r);
        }
    }
    Plan {
        naming: Some(naming),
        on,
        regroup,
    }
}

fn sample(cpu: Option<&ContainerCpuStats>) -> Option<CpuSample> {
    let cpu = cpu?;
    Some(CpuSample {
        container: cpu.cpu_usage.as_ref()?.total_usage?,
        system: cpu.system_cpu_usage?,
    })
}

/// This sample's CPU counters, for the next call's utilisation.
pub(crate) fn cpu_sample(stats: &ContainerStatsResponse) -> Option<CpuSample> {
    sample(stats.cpu_stats.as_ref())
}

/// CPUs in use, the way `docker stats` computes its CPU % (divided by 100): the container's
/// share of all CPU time that passed on the host, times the CPUs online. 1.0 is one full CPU.
pub(crate) fn cpu_usage(
    stats: &ContainerStatsResponse,
    previous: Option<CpuSample>,
) -> Option<f64> {
    let now = cpu_sample(stats)?;
    // The daemon's own previous sample when it took one (non-one-shot stats), else ours.
    let before = sample(stats.precpu_stats.as_ref())
        .filter(|p| p.system > 0)
        .or(previous)?;
    let container = now.container.checked_sub(before.container)?;
    let system = now.system.checked_sub(before.system)?;
    if system == 0 {
        return None;
    }
    let cpu = stats.cpu_stats.as_ref()?;
    let online = cpu
        .online_cpus
        .map(u64::from)
        .filter(|&n| n > 0)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|p| p.len() as u64)
        })
        .filter(|&n| n > 0)
        .unwrap_or(1);
    Some(container as f64 / system as f64 * online as f64)
}

/// Memory usage without the inactive file cache, as `docker stats` shows it (`total_inactive_file`
/// on cgroup v1, `inactive_file` on v2).
pub(crate) fn working_set(stats: &ContainerStatsResponse) -> Option<u64> {
    let memory = stats.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let inactive = memory.stats.as_ref().and_then(|s| {
        s.get("total_inactive_file")
            .filter(|&&v| v < usage)
            .or_else(|| s.get("inactive_file"))
            .copied()
    });
    Some(match inactive {
        Some(i) if i < usage => usage - i,
        _ => usage,
    })
}

/// Collects one container's metrics, keeping the enabled ones.
struct Out<'a> {
    plan: &'a Plan,
    set: MetricSet,
}

impl Out<'_> {
    fn on(&self, name: &'static str) -> bool {
        self.plan.enabled(name).is_some()
    }

    fn add(&mut self, name: &'static str, points: Vec<Point>) {
        let Some(d) = self.plan.enabled(name) else {
            return;
        };
        match d.kind {
            Kind::Gauge => self.set.gauge(d.name, d.unit, d.description, points),
            Kind::Counter => self.set.counter(d.name, d.unit, d.description, points),
            Kind::UpDown => self.set.updown(d.name, d.unit, d.description, points),
        }
    }

    fn finish(self, container: &Tracked) -> ResourceMetrics {
        let plan = self.plan;
        let mut resource = self.set.into_resource(container.resource.clone(), SCOPE);
        for scope in &mut resource.scope_metrics {
            for m in &mut scope.metrics {
                regroup(plan, m);
            }
        }
        resource
    }
}

fn regroup(plan: &Plan, m: &mut Metric) {
    let Some(r) = plan.regroup.get(m.name.as_str()) else {
        return;
    };
    match &mut m.data {
        Some(metric::Data::Gauge(g)) => regroup_points(&mut g.data_points, r),
        Some(metric::Data::Sum(s)) => regroup_points(&mut s.data_points, r),
        _ => {}
    }
}

pub(crate) fn running(
    container: &Tracked,
    stats: Option<&ContainerStatsResponse>,
    usage: Option<f64>,
    now: u64,
    plan: &Plan,
) -> ResourceMetrics {
    let mut out = Out {
        plan,
        set: MetricSet::new(now, container.started_at),
    };
    out.add("container.up", single(Num::Int(1)));
    let restarts = single(Num::Int(container.restart_count));
    out.add("container.restarts", restarts);
    if container.started_at > 0 && now > container.started_at {
        out.add(
            "container.uptime",
            single(Num::Double(
                now.saturating_sub(container.started_at) as f64 / 1e9,
            )),
        );
    }
    let limits = &container.limits;
    out.add("container.cpu.shares", single(Num::Int(limits.cpu_shares)));
    if let Some(cpus) = limits.cpus.filter(|&c| c > 0.0) {
        out.add("container.cpu.limit", single(Num::Double(cpus)));
    }
    if let Some(stats) = stats {
        add_stats(&mut out, stats, usage);
    }
    out.finish(container)
}

pub(crate) fn stopped(container: &Tracked, now: u64, plan: &Plan) -> ResourceMetrics {
    let mut out = Out {
        plan,
        set: MetricSet::new(now, container.started_at),
    };
    out.add("container.up", single(Num::Int(0)));
    out.finish(container)
}

fn ns_to_s(ns: u64) -> Num {
    Num::Double(ns as f64 / 1e9)
}

fn add_stats(out: &mut Out<'_>, stats: &ContainerStatsResponse, usage: Option<f64>) {
    let cpu = stats.cpu_stats.as_ref();
    let cpu_usage_stats = cpu.and_then(|c| c.cpu_usage.as_ref());
    let user = cpu_usage_stats.and_then(|u| u.usage_in_usermode);
    let kernel = cpu_usage_stats.and_then(|u| u.usage_in_kernelmode);
    let mut cpu_time = Vec::new();
    for (mode, ns) in [("user", user), ("system", kernel)] {
        if let Some(ns) = ns {
            cpu_time.push((vec![string_kv("cpu.mode", mode)], ns_to_s(ns)));
        }
    }
    out.add("container.cpu.time", cpu_time);
    out.add("container.cpu.usage", maybe(usage.map(Num::Double)));
    out.add(
        "container.cpu.utilization",
        maybe(usage.map(|u| Num::Double(u * 100.0))),
    );
    out.add(
        "container.cpu.usage.system",
        maybe(cpu.and_then(|c| c.system_cpu_usage).map(Num::uint)),
    );
    out.add(
        "container.cpu.usage.total",
        maybe(cpu_usage_stats.and_then(|u| u.total_usage).map(Num::uint)),
    );
    out.add(
        "container.cpu.usage.kernelmode",
        maybe(kernel.map(Num::uint)),
    );
    out.add("container.cpu.usage.usermode", maybe(user.map(Num::uint)));
    if out.on(PERCPU) {
        let per_core = cpu_usage_stats
            .and_then(|u| u.percpu_usage.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, ns)| (vec![string_kv("core", &format!("cpu{i}"))], Num::uint(*ns)))
            .collect();
        out.add(PERCPU, per_core);
    }
    out.add(
        "container.cpu.logical.count",
        maybe(
            cpu.and_then(|c| c.online_cpus)
                .map(|n| Num::Int(i64::from(n))),
        ),
    );
    let throttling = cpu.and_then(|c| c.throttling_data.as_ref());
    let periods = throttling.and_then(|t| t.periods);
    let throttled_periods = throttling.and_then(|t| t.throttled_periods);
    let throttled_time = throttling.and_then(|t| t.throttled_time);
    out.add(
        "container.cpu.throttling_data.periods",
        maybe(periods.map(Num::uint)),
    );
    out.add(
        "container.cpu.throttling_data.throttled_periods",
        maybe(throttled_periods.map(Num::uint)),
    );
    // Seconds in sluice's set, nanoseconds in the Collector's.
    let sluice_units = out
        .plan
        .def("container.cpu.throttling_data.throttled_time")
        .is_some_and(|d| d.set == Set::Sluice);
    out.add(
        "container.cpu.throttling_data.throttled_time",
        maybe(throttled_time.map(|ns| {
            if sluice_units {
                ns_to_s(ns)
            } else {
                Num::uint(ns)
            }
        })),
    );

    memory(out, stats);
    network(out, stats);
    blkio(out, stats);

    let pids = stats.pids_stats.as_ref();
    let current = pids.and_then(|p| p.current).filter(|&c| c > 0);
    out.add("container.pids.count", maybe(current.map(Num::uint)));
    out.add(
        "container.pids.limit",
        maybe(
            current
                .and(pids.and_then(|p| p.limit))
                .filter(|&l| l > 0 && l < UNLIMITED)
                .map(Num::uint),
        ),
    );
}

/// The Collector's memory metrics read straight from the stats map, by key.
const MEMORY_STATS: &[(&str, &str)] = &[
    ("cache", "container.memory.cache"),
    ("total_cache", "container.memory.total_cache"),
    ("rss", "container.memory.rss"),
    ("total_rss", "container.memory.total_rss"),
    ("rss_huge", "container.memory.rss_huge"),
    ("total_rss_huge", "container.memory.total_rss_huge"),
    ("dirty", "container.memory.dirty"),
    ("total_dirty", "container.memory.total_dirty"),
    ("writeback", "container.memory.writeback"),
    ("total_writeback", "container.memory.total_writeback"),
    ("mapped_file", "container.memory.mapped_file"),
    ("total_mapped_file", "container.memory.total_mapped_file"),
    ("pgpgin", "container.memory.pgpgin"),
    ("total_pgpgin", "container.memory.total_pgpgin"),
    ("pgpgout", "container.memory.pgpgout"),
    ("total_pgpgout", "container.memory.total_pgpgout"),
    ("pgfault", "container.memory.pgfault"),
    ("total_pgfault", "container.memory.total_pgfault"),
    ("pgmajfault", "container.memory.pgmajfault"),
    ("total_pgmajfault", "container.memory.total_pgmajfault"),
    ("inactive_anon", "container.memory.inactive_anon"),
    (
        "total_inactive_anon",
        "container.memory.total_inactive_anon",
    ),
    ("active_anon", "container.memory.active_anon"),
    ("total_active_anon", "container.memory.total_active_anon"),
    ("inactive_file", "container.memory.inactive_file"),
    (
        "total_inactive_file",
        "container.memory.total_inactive_file",
    ),
    ("active_file", "container.memory.active_file"),
    ("total_active_file", "container.memory.total_active_file"),
    ("unevictable", "container.memory.unevictable"),
    ("total_unevictable", "container.memory.total_unevictable"),
    (
        "hierarchical_memory_limit",
        "container.memory.hierarchical_memory_limit",
    ),
    (
        "hierarchical_memsw_limit",
        "container.memory.hierarchical_memsw_limit",
    ),
    ("anon", "container.memory.anon"),
    ("file", "container.memory.file"),
];

fn memory(out: &mut Out<'_>, stats: &ContainerStatsResponse) {
    let memory = stats.memory_stats.as_ref();
    let limit = memory.and_then(|m| m.limit);
    let real_limit = limit.filter(|&l| l > 0 && l < UNLIMITED);
    let working_set = working_set(stats);
    out.add(
        "container.memory.usage",
        maybe(memory.and_then(|m| m.usage).map(Num::uint)),
    );
    out.add(
        "container.memory.working_set",
        maybe(working_set.map(Num::uint)),
    );
    out.add("container.memory.limit", maybe(real_limit.map(Num::uint)));
    out.add("container.memory.usage.limit", maybe(limit.map(Num::uint)));
    out.add(
        "container.memory.usage.total",
        maybe(working_set.map(Num::uint)),
    );
    // The Collector reports a percentage in unit "1", and 0 without a limit.
    let percent = working_set.map(|w| match limit.filter(|&l| l > 0) {
        Some(l) => w as f64 / l as f64 * 100.0,
        None => 0.0,
    });
    let sluice_percent = out
        .plan
        .def("container.memory.percent")
        .is_some_and(|d| d.set == Set::Sluice);
    out.add(
        "container.memory.percent",
        maybe(if sluice_percent {
            working_set
                .zip(real_limit)
                .map(|(w, l)| Num::Double(w as f64 / l as f64 * 100.0))
        } else {
            percent.map(Num::Double)
        }),
    );
    if memory.is_some() {
        out.add(
            "container.memory.usage.max",
            single(Num::uint(memory.and_then(|m| m.max_usage).unwrap_or(0))),
        );
        out.add(
            "container.memory.fails",
            single(Num::uint(memory.and_then(|m| m.failcnt).unwrap_or(0))),
        );
    }
    if let Some(map) = memory.and_then(|m| m.stats.as_ref()) {
        for (key, name) in MEMORY_STATS {
            if let Some(v) = map.get(*key) {
                out.add(name, single(Num::uint(*v)));
            }
        }
    }
}

fn network(out: &mut Out<'_>, stats: &ContainerStatsResponse) {
    let mut interfaces: Vec<_> = stats.networks.iter().flatten().collect();
    interfaces.sort_by(|a, b| a.0.cmp(b.0));
    let mut sluice: HashMap<&'static str, Vec<Point>> = HashMap::new();
    let mut collector: HashMap<&'static str, Vec<Point>> = HashMap::new();
    for (interface, n) in interfaces {
        for (value, direction, semconv, upstream) in [
            (
                n.rx_bytes,
                "receive",
                "container.network.io",
                "container.network.io.usage.rx_bytes",
            ),
            (
                n.tx_bytes,
                "transmit",
                "container.network.io",
                "container.network.io.usage.tx_bytes",
            ),
            (
                n.rx_packets,
                "receive",
                "container.network.packet.count",
                "container.network.io.usage.rx_packets",
            ),
            (
                n.tx_packets,
                "transmit",
                "container.network.packet.count",
                "container.network.io.usage.tx_packets",
            ),
            (
                n.rx_errors,
                "receive",
                "container.network.errors",
                "container.network.io.usage.rx_errors",
            ),
            (
                n.tx_errors,
                "transmit",
                "container.network.errors",
                "container.network.io.usage.tx_errors",
            ),
            (
                n.rx_dropped,
                "receive",
                "container.network.packet.dropped",
                "container.network.io.usage.rx_dropped",
            ),
            (
                n.tx_dropped,
                "transmit",
                "container.network.packet.dropped",
                "container.network.io.usage.tx_dropped",
            ),
        ] {
            let Some(value) = value else { continue };
            sluice.entry(semconv).or_default().push((
                vec![
                    string_kv("network.interface.name", interface),
                    string_kv("network.io.direction", direction),
                ],
                Num::uint(value),
            ));
            collector
                .entry(upstream)
                .or_default()
                .push((vec![string_kv("interface", interface)], Num::uint(value)));
        }
    }
    for name in [
        "container.network.io",
        "container.network.packet.count",
        "container.network.errors",
        "container.network.packet.dropped",
    ] {
        out.add(name, sluice.remove(name).unwrap_or_default());
    }
    let mut upstream: Vec<_> = collector.into_iter().collect();
    upstream.sort_by_key(|(name, _)| *name);
    for (name, points) in upstream {
        out.add(name, points);
    }
}

fn blkio(out: &mut Out<'_>, stats: &ContainerStatsResponse) {
    let blkio = stats.blkio_stats.as_ref();
    let mut disk: std::collections::BTreeMap<(String, &str), u64> = Default::default();
    let service_bytes = blkio.and_then(|b| b.io_service_bytes_recursive.as_ref());
    for entry in service_bytes.into_iter().flatten() {
        // cgroup v1 writes `Read`, v2 `read`.
        let direction = match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => "read",
            Some("write") => "write",
            _ => continue,
        };
        let device = format!("{}:{}", entry.major.unwrap_or(0), entry.minor.unwrap_or(0));
        *disk.entry((device, direction)).or_default() += entry.value.unwrap_or(0);
    }
    out.add(
        "container.disk.io",
        disk.into_iter()
            .map(|((device, direction), bytes)| {
                (
                    vec![
                        string_kv("disk.io.direction", direction),
                        string_kv("system.device", &device),
                    ],
                    Num::uint(bytes),
                )
            })
            .collect(),
    );
    let entries = |list: Option<&Vec<ContainerBlkioStatEntry>>| -> Vec<Point> {
        list.into_iter()
            .flatten()
            .map(|e| {
                (
                    vec![
                        string_kv("device_major", &e.major.unwrap_or(0).to_string()),
                        string_kv("device_minor", &e.minor.unwrap_or(0).to_string()),
                        string_kv(
                            "operation",
                            &e.op.as_deref().unwrap_or_default().to_ascii_lowercase(),
                        ),
                    ],
                    Num::uint(e.value.unwrap_or(0)),
                )
            })
            .collect()
    };
    let Some(b) = blkio else { return };
    out.add(
        "container.blockio.io_merged_recursive",
        entries(b.io_merged_recursive.as_ref()),
    );
    out.add(
        "container.blockio.io_queued_recursive",
        entries(b.io_queue_recursive.as_ref()),
    );
    out.add(
        "container.blockio.io_service_bytes_recursive",
        entries(b.io_service_bytes_recursive.as_ref()),
    );
    out.add(
        "container.blockio.io_service_time_recursive",
        entries(b.io_service_time_recursive.as_ref()),
    );
    out.add(
        "container.blockio.io_serviced_recursive",
        entries(b.io_serviced_recursive.as_ref()),
    );
    out.add(
        "container.blockio.io_time_recursive",
        entries(b.io_time_recursive.as_ref()),
    );
    out.add(
        "container.blockio.io_wait_time_recursive",
        entries(b.io_wait_time_recursive.as_ref()),
    );
    out.add(
        "container.blockio.sectors_recursive",
        entries(b.sectors_recursive.as_ref()),
    );
}
