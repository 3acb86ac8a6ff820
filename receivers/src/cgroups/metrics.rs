//! A container's cgroup counters as semantic-convention metrics.

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;

use super::builder::{MetricSet, Num, maybe, string_kv};
use super::layout::Identity;
use super::read::Stats;

pub(crate) const SCOPE: &str = "sluice/receiver/cgroups";

/// `usage` is the CPU rate since the previous collection, in CPUs, when there was one.
pub(crate) fn resource_metrics(
    identity: &Identity,
    stats: &Stats,
    usage: Option<f64>,
    now: u64,
    start: u64,
) -> ResourceMetrics {
    let mut set = MetricSet::new(now, start);
    let mut cpu_time = Vec::new();
    if let Some(user) = stats.cpu_user_s {
        cpu_time.push((vec![string_kv("cpu.mode", "user")], Num::Double(user)));
    }
    if let Some(system) = stats.cpu_system_s {
        cpu_time.push((vec![string_kv("cpu.mode", "system")], Num::Double(system)));
    }
    if cpu_time.is_empty()
        && let Some(total) = stats.cpu_total_s
    {
        cpu_time.push((Vec::new(), Num::Double(total)));
    }
    set.counter(
        "container.cpu.time",
        "s",
        "CPU time consumed by the container",
        cpu_time,
    );
    set.gauge(
        "container.cpu.usage",
        "{cpu}",
        "CPUs the container used on average since the previous collection",
        maybe(usage.map(Num::Double)),
    );
    set.counter(
        "container.cpu.throttling_data.periods",
        "{period}",
        "Enforcement periods that elapsed",
        maybe(stats.periods.map(Num::uint)),
    );
    set.counter(
        "container.cpu.throttling_data.throttled_periods",
        "{period}",
        "Periods in which the container was throttled",
        maybe(stats.throttled_periods.map(Num::uint)),
    );
    set.counter(
        "container.cpu.throttling_data.throttled_time",
        "s",
        "Time the container was throttled for",
        maybe(stats.throttled_s.map(Num::Double)),
    );
    set.updown(
        "container.memory.usage",
        "By",
        "Memory charged to the container, page cache included",
        maybe(stats.memory_usage.map(Num::uint)),
    );
    set.updown(
        "container.memory.working_set",
        "By",
        "Memory usage minus inactive file cache (what the OOM killer and kubelet look at)",
        maybe(stats.working_set().map(Num::uint)),
    );
    set.updown(
        "container.memory.limit",
        "By",
        "Memory limit of the container",
        maybe(stats.memory_limit.map(Num::uint)),
    );
    set.counter(
        "container.memory.oom_kills",
        "{kill}",
        "Processes of the container the OOM killer killed",
        maybe(stats.oom_kills.map(Num::uint)),
    );
    let mut io = Vec::new();
    for (device, (read, write)) in &stats.io {
        for (direction, bytes) in [("read", read), ("write", write)] {
            io.push((
                vec![
                    string_kv("disk.io.direction", direction),
                    string_kv("system.device", device),
                ],
                Num::uint(*bytes),
            ));
        }
    }
    set.counter(
        "container.disk.io",
        "By",
        "Bytes read from and written to block devices",
        io,
    );
    set.updown(
        "container.pids.count",
        "{process}",
        "Processes and threads in the container",
        maybe(stats.pids.map(Num::uint)),
    );
    set.updown(
        "container.pids.limit",
        "{process}",
        "Most processes and threads the container may have",
        maybe(stats.pids_limit.map(Num::uint)),
    );
    let mut attributes = vec![string_kv("container.id", &identity.id)];
    if let Some(runtime) = identity.runtime {
        attributes.push(string_kv("container.runtime.name", runtime));
    }
    if let Some(uid) = &identity.pod_uid {
        attributes.push(string_kv("k8s.pod.uid", uid));
    }
    set.into_resource(attributes, SCOPE)
}
