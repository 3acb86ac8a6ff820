//! `memory`: `/proc/meminfo` by state.

use super::emit::{Emitter, Kind, MetricDef, attr, kv};
use super::{Ctx, ScrapeError};

pub const USAGE: MetricDef = MetricDef::new(
    "system.memory.usage",
    "system.memory.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Memory in use by state.",
)
.attrs(&[attr("state", "system.memory.state")]);
pub const UTILIZATION: MetricDef = MetricDef::new(
    "system.memory.utilization",
    "system.memory.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of memory in each state.",
)
.attrs(&[attr("state", "system.memory.state")]);
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
/// Semantic conventions only: under collector naming slab is two more states of
/// `system.memory.usage` (and of its utilisation), as the collector reports it.
pub const SLAB: MetricDef = MetricDef::new(
    "system.memory.linux.slab.usage",
    "system.memory.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Kernel slab memory by state.",
)
.attrs(&[attr("state", "system.memory.linux.slab.state")]);
// Semantic conventions have no page size, dirty memory or their own name for these: both
// namings use the collector's.
pub const PAGE_SIZE: MetricDef = MetricDef::new(
    "system.memory.page_size",
    "system.memory.page_size",
    "By",
    "By",
    Kind::Gauge,
    false,
    "The system's configured page size.",
);
pub const DIRTY: MetricDef = MetricDef::new(
    "system.linux.memory.dirty",
    "system.linux.memory.dirty",
    "By",
    "By",
    Kind::UpDown,
    false,
    "Memory waiting to be written back to disk (Dirty).",
);
pub const SHARED: MetricDef = MetricDef::new(
    "system.memory.linux.shared",
    "system.memory.linux.shared",
    "By",
    "By",
    Kind::UpDown,
    false,
    "Shared memory: tmpfs, System V and POSIX shared memory (Shmem).",
);
const HUGEPAGES_STATE: &[super::emit::Attr] = &[attr(
    "system.memory.linux.hugepages.state",
    "system.memory.linux.hugepages.state",
)];
pub const HUGEPAGES_LIMIT: MetricDef = MetricDef::new(
    "system.memory.linux.hugepages.limit",
    "system.memory.linux.hugepages.limit",
    "{page}",
    "{page}",
    Kind::UpDown,
    false,
    "Huge pages in the pool (HugePages_Total).",
);
pub const HUGEPAGES_PAGE_SIZE: MetricDef = MetricDef::new(
    "system.memory.linux.hugepages.page_size",
    "system.memory.linux.hugepages.page_size",
    "By",
    "By",
    Kind::UpDown,
    false,
    "Size of a huge page (Hugepagesize).",
);
pub const HUGEPAGES_RESERVED: MetricDef = MetricDef::new(
    "system.memory.linux.hugepages.reserved",
    "system.memory.linux.hugepages.reserved",
    "{page}",
    "{page}",
    Kind::UpDown,
    false,
    "Huge pages committed to but not yet taken by a mapping (HugePages_Rsvd).",
);
pub const HUGEPAGES_SURPLUS: MetricDef = MetricDef::new(
    "system.memory.linux.hugepages.surplus",
    "system.memory.linux.hugepages.surplus",
    "{page}",
    "{page}",
    Kind::UpDown,
    false,
    "Huge pages above the persistent pool, overcommitted (HugePages_Surp).",
);
pub const HUGEPAGES_USAGE: MetricDef = MetricDef::new(
    "system.memory.linux.hugepages.usage",
    "system.memory.linux.hugepages.usage",
    "{page}",
    "{page}",
    Kind::UpDown,
    false,
    "Huge pages used and free.",
)
.attrs(HUGEPAGES_STATE);
pub const HUGEPAGES_UTILIZATION: MetricDef = MetricDef::new(
    "system.memory.linux.hugepages.utilization",
    "system.memory.linux.hugepages.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of the huge page pool used and free.",
)
.attrs(HUGEPAGES_STATE);
pub const METRICS: &[MetricDef] = &[
    USAGE,
    UTILIZATION,
    LIMIT,
    AVAILABLE,
    SLAB,
    PAGE_SIZE,
    DIRTY,
    SHARED,
    HUGEPAGES_LIMIT,
    HUGEPAGES_PAGE_SIZE,
    HUGEPAGES_RESERVED,
    HUGEPAGES_SURPLUS,
    HUGEPAGES_USAGE,
    HUGEPAGES_UTILIZATION,
];

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
    pub dirty: u64,
    pub shared: Option<u64>,
    pub hugepages: Option<HugePages>,
}

/// The huge page pool: counts of pages, and the size of one in bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct HugePages {
    pub total: u64,
    pub free: u64,
    pub reserved: u64,
    pub surplus: u64,
    pub page_size: u64,
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
        dirty: m.dirty,
        shared: m.shmem,
        hugepages: match (m.hugepages_total, m.hugepages_free, m.hugepagesize) {
            (Some(total), Some(free), Some(page_size)) => Some(HugePages {
                total,
                free,
                reserved: m.hugepages_rsvd.unwrap_or(0),
                surplus: m.hugepages_surp.unwrap_or(0),
                page_size,
            }),
            _ => None,
        },
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
        // The collector reports slab as two more states of usage and utilisation.
        for (state, bytes) in [
            ("slab_reclaimable", m.slab_reclaimable),
            ("slab_unreclaimable", m.slab_unreclaimable),
        ] {
            out.point(&USAGE, vec![kv("state", state)], bytes);
            if m.total > 0 {
                out.point(
                    &UTILIZATION,
                    vec![kv("state", state)],
                    bytes as f64 / m.total as f64,
                );
            }
        }
    }
    out.point(&LIMIT, vec![], m.total);
    if let Some(available) = m.available {
        out.point(&AVAILABLE, vec![], available);
    }
    out.point(&PAGE_SIZE, vec![], ctx.page_size);
    out.point(&DIRTY, vec![], m.dirty);
    if let Some(shared) = m.shared {
        out.point(&SHARED, vec![], shared);
    }
    if let Some(h) = &m.hugepages {
        out.point(&HUGEPAGES_LIMIT, vec![], h.total);
        out.point(&HUGEPAGES_PAGE_SIZE, vec![], h.page_size);
        out.point(&HUGEPAGES_RESERVED, vec![], h.reserved);
        out.point(&HUGEPAGES_SURPLUS, vec![], h.surplus);
        let used = h.total.saturating_sub(h.free);
        let state = "system.memory.linux.hugepages.state";
        for (s, pages) in [("used", used), ("free", h.free)] {
            out.point(&HUGEPAGES_USAGE, vec![kv(state, s)], pages);
            if h.total > 0 {
                out.point(
                    &HUGEPAGES_UTILIZATION,
                    vec![kv(state, s)],
                    pages as f64 / h.total as f64,
                );
            }
        }
    }
    Ok(())
}
