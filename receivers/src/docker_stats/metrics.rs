//! One container's Engine API stats as semantic-convention metrics.

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;

use bollard::models::{ContainerCpuStats, ContainerStatsResponse};

use super::state::{CpuSample, Tracked};
use crate::cgroups::builder::{MetricSet, Num, Point, maybe, single, string_kv};

pub(crate) const SCOPE: &str = "sluice/receiver/docker_stats";

/// Limits this large mean "none" (the kernel's `max`).
const UNLIMITED: u64 = 1 << 62;

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
            .or_else(|| s.get("inactive_file"))
            .copied()
    });
    Some(match inactive {
        Some(i) if i < usage => usage - i,
        _ => usage,
    })
}

pub(crate) fn running(
    container: &Tracked,
    stats: Option<&ContainerStatsResponse>,
    usage: Option<f64>,
    now: u64,
) -> ResourceMetrics {
    let mut set = MetricSet::new(now, container.started_at);
    set.gauge(
        "container.up",
        "1",
        "1 while the container runs, 0 once it stopped (kept for the grace period)",
        single(Num::Int(1)),
    );
    set.counter(
        "container.restarts",
        "{restart}",
        "Times Docker restarted the container",
        single(Num::Int(container.restart_count)),
    );
    if container.started_at > 0 {
        set.gauge(
            "container.uptime",
            "s",
            "Time since the container started",
            single(Num::Double(
                now.saturating_sub(container.started_at) as f64 / 1e9,
            )),
        );
    }
    if let Some(stats) = stats {
        add_stats(&mut set, stats, usage);
    }
    set.into_resource(container.resource.clone(), SCOPE)
}

pub(crate) fn stopped(container: &Tracked, now: u64) -> ResourceMetrics {
    let mut set = MetricSet::new(now, container.started_at);
    set.gauge(
        "container.up",
        "1",
        "1 while the container runs, 0 once it stopped (kept for the grace period)",
        single(Num::Int(0)),
    );
    set.into_resource(container.resource.clone(), SCOPE)
}

fn add_stats(set: &mut MetricSet, stats: &ContainerStatsResponse, usage: Option<f64>) {
    let cpu = stats.cpu_stats.as_ref();
    let cpu_usage_stats = cpu.and_then(|c| c.cpu_usage.as_ref());
    let mut cpu_time = Vec::new();
    for (mode, ns) in [
        ("user", cpu_usage_stats.and_then(|u| u.usage_in_usermode)),
        (
            "system",
            cpu_usage_stats.and_then(|u| u.usage_in_kernelmode),
        ),
    ] {
        if let Some(ns) = ns {
            cpu_time.push((
                vec![string_kv("cpu.mode", mode)],
                Num::Double(ns as f64 / 1e9),
            ));
        }
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
        "CPUs in use: docker stats' CPU % divided by 100",
        maybe(usage.map(Num::Double)),
    );
    let throttling = cpu.and_then(|c| c.throttling_data.as_ref());
    set.counter(
        "container.cpu.throttling_data.periods",
        "{period}",
        "Enforcement periods that elapsed",
        maybe(throttling.and_then(|t| t.periods).map(Num::uint)),
    );
    set.counter(
        "container.cpu.throttling_data.throttled_periods",
        "{period}",
        "Periods in which the container was throttled",
        maybe(throttling.and_then(|t| t.throttled_periods).map(Num::uint)),
    );
    set.counter(
        "container.cpu.throttling_data.throttled_time",
        "s",
        "Time the container was throttled for",
        maybe(
            throttling
                .and_then(|t| t.throttled_time)
                .map(|ns| Num::Double(ns as f64 / 1e9)),
        ),
    );

    let memory = stats.memory_stats.as_ref();
    let limit = memory
        .and_then(|m| m.limit)
        .filter(|&l| l > 0 && l < UNLIMITED);
    let working_set = working_set(stats);
    set.updown(
        "container.memory.usage",
        "By",
        "Memory charged to the container, page cache included",
        maybe(memory.and_then(|m| m.usage).map(Num::uint)),
    );
    set.updown(
        "container.memory.working_set",
        "By",
        "Memory usage without inactive file cache: docker stats' MEM USAGE",
        maybe(working_set.map(Num::uint)),
    );
    set.updown(
        "container.memory.limit",
        "By",
        "Memory limit of the container (the host's memory when none is set)",
        maybe(limit.map(Num::uint)),
    );
    set.gauge(
        "container.memory.percent",
        "%",
        "Working set as a percentage of the limit: docker stats' MEM %",
        maybe(
            working_set
                .zip(limit)
                .map(|(w, l)| Num::Double(w as f64 / l as f64 * 100.0)),
        ),
    );

    let mut io = Vec::new();
    let mut packets = Vec::new();
    let mut errors = Vec::new();
    let mut dropped = Vec::new();
    let mut interfaces: Vec<_> = stats.networks.iter().flatten().collect();
    interfaces.sort_by(|a, b| a.0.cmp(b.0));
    for (interface, n) in interfaces {
        let point = |direction: &str, value: Option<u64>| -> Option<Point> {
            Some((
                vec![
                    string_kv("network.interface.name", interface),
                    string_kv("network.io.direction", direction),
                ],
                Num::uint(value?),
            ))
        };
        io.extend(point("receive", n.rx_bytes));
        io.extend(point("transmit", n.tx_bytes));
        packets.extend(point("receive", n.rx_packets));
        packets.extend(point("transmit", n.tx_packets));
        errors.extend(point("receive", n.rx_errors));
        errors.extend(point("transmit", n.tx_errors));
        dropped.extend(point("receive", n.rx_dropped));
        dropped.extend(point("transmit", n.tx_dropped));
    }
    set.counter(
        "container.network.io",
        "By",
        "Bytes received and sent per interface",
        io,
    );
    set.counter(
        "container.network.packet.count",
        "{packet}",
        "Packets received and sent per interface",
        packets,
    );
    set.counter(
        "container.network.errors",
        "{error}",
        "Receive and transmit errors per interface",
        errors,
    );
    set.counter(
        "container.network.packet.dropped",
        "{packet}",
        "Packets dropped per interface",
        dropped,
    );

    let mut disk: std::collections::BTreeMap<(String, &str), u64> = Default::default();
    let entries = stats
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    for entry in entries.into_iter().flatten() {
        // cgroup v1 writes `Read`, v2 `read`.
        let direction = match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => "read",
            Some("write") => "write",
            _ => continue,
        };
        let device = format!("{}:{}", entry.major.unwrap_or(0), entry.minor.unwrap_or(0));
        *disk.entry((device, direction)).or_default() += entry.value.unwrap_or(0);
    }
    set.counter(
        "container.disk.io",
        "By",
        "Bytes read from and written to block devices",
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

    let pids = stats.pids_stats.as_ref();
    set.updown(
        "container.pids.count",
        "{process}",
        "Processes and threads in the container",
        maybe(pids.and_then(|p| p.current).map(Num::uint)),
    );
    set.updown(
        "container.pids.limit",
        "{process}",
        "Most processes and threads the container may have",
        maybe(
            pids.and_then(|p| p.limit)
                .filter(|&l| l > 0 && l < UNLIMITED)
                .map(Num::uint),
        ),
    );
}
