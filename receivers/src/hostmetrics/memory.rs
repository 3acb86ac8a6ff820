//! `memory`: `/proc/meminfo` by state.

use super::emit::{Emitter, Kind, MetricDef, kv};
use super::{Ctx, ScrapeError};

pub const USAGE: MetricDef = MetricDef::new(
    "system.memory.usage",
    "system.memory.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Memory in use by state.",
);
pub const UTILIZATION: MetricDef = MetricDef::new(
    "system.memory.utilization",
    "system.memory.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of memory in each state.",
);
pub const LIMIT: MetricDef = MetricDef::new(
    "system.memory.limit",
    "system.memory.limit",
    "By",
    "By",
    Kind::UpDown,
    false,
    "Total memory.",
);
pub const AVAILABLE: MetricDef = MetricDef::new(
    "system.memory.linux.available",
    "system.linux.memory.available",
    "By",
    "By",
    Kind::UpDown,
    false,
    "Memory available for starting new applications without swapping (MemAvailable).",
);
/// Under collector naming these are the `slab_reclaimable`/`slab_unreclaimable` states of
/// `system.memory.usage`, as the collector reports them.
pub const SLAB: MetricDef = MetricDef::new(
    "system.memory.linux.slab.usage",
    "system.memory.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Kernel slab memory by state.",
);
pub const METRICS: &[MetricDef] = &[USAGE, UTILIZATION, LIMIT, AVAILABLE, SLAB];

/// Byte counts per state; `used + free + buffers + cached == total`.
#[derive(Debug, PartialEq, Eq)]
pub struct MemoryStates {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    pub buffers: u64,
    /// Page cache plus reclaimable slab, as `free(1)` counts `buff/cache` minus buffers.
    pub cached: u64,
    pub slab_reclaimable: u64,
    pub slab_unreclaimable: u64,
    pub available: Option<u64>,
}

pub fn read(ctx: &Ctx) -> Result<MemoryStates, ScrapeError> {
    let m: procfs::Meminfo = ctx.read("proc/meminfo")?;
    let slab_reclaimable = m.s_reclaimable.unwrap_or(0);
    let cached = m.cached + slab_reclaimable;
    // States are made to add up to the total (stacked charts); semconv's newer
    // "MemTotal - MemAvailable" for `used` would not, so MemAvailable is its own metric.
    let used = m
        .mem_total
        .saturating_sub(m.mem_free)
        .saturating_sub(m.buffers)
        .saturating_sub(cached);
    Ok(MemoryStates {
        total: m.mem_total,
        used,
        free: m.mem_free,
        buffers: m.buffers,
        cached,
        slab_reclaimable,
        slab_unreclaimable: m.s_unreclaim.unwrap_or(0),
        available: m.mem_available,
    })
}

pub fn scrape(ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let m = read(ctx)?;
    let state_key = out.pick("system.memory.state", "state");
    let states = [
        ("used", m.used),
        ("free", m.free),
        (out.pick("buffers", "buffered"), m.buffers),
        ("cached", m.cached),
    ];
    for (state, bytes) in states {
        out.point(&USAGE, vec![kv(state_key, state)], bytes);
        if m.total > 0 {
            out.point(
                &UTILIZATION,
                vec![kv(state_key, state)],
                bytes as f64 / m.total as f64,
            );
        }
    }
    if out.on(&SLAB) {
        if out.semconv() {
            for (state, bytes) in [
                ("reclaimable", m.slab_reclaimable),
                ("unreclaimable", m.slab_unreclaimable),
            ] {
                out.point(
                    &SLAB,
                    vec![kv("system.memory.linux.slab.state", state)],
                    bytes,
                );
            }
        } else {
            for (state, bytes) in [
                ("slab_reclaimable", m.slab_reclaimable),
                ("slab_unreclaimable", m.slab_unreclaimable),
            ] {
                out.point(&SLAB, vec![kv("state", state)], bytes);
            }
        }
    }
    out.point(&LIMIT, vec![], m.total);
    if let Some(available) = m.available {
        out.point(&AVAILABLE, vec![], available);
    }
    Ok(())
}
