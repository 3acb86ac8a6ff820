//! `paging`: swap devices from `/proc/swaps` and paging counters from `/proc/vmstat`.

use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};

const DEVICE_STATE: &[Attr] = &[
    attr("device", "system.device"),
    attr("state", "system.paging.state"),
];
use super::{Ctx, ScrapeError};

pub const USAGE: MetricDef = MetricDef::new(
    "system.paging.usage",
    "system.paging.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Swap space in use and free, per device.",
)
.attrs(DEVICE_STATE);
pub const UTILIZATION: MetricDef = MetricDef::new(
    "system.paging.utilization",
    "system.paging.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of swap space in use and free, per device.",
)
.attrs(DEVICE_STATE);
pub const FAULTS: MetricDef = MetricDef::new(
    "system.paging.faults",
    "system.paging.faults",
    "{fault}",
    "{faults}",
    Kind::Counter,
    true,
    "Page faults.",
)
.attrs(&[attr("type", "system.paging.fault.type")]);
pub const OPERATIONS: MetricDef = MetricDef::new(
    "system.paging.operations",
    "system.paging.operations",
    "{operation}",
    "{operations}",
    Kind::Counter,
    true,
    "Paging operations: swap (major) and page-cache (minor) pages in and out.",
)
.attrs(&[
    attr("direction", "system.paging.direction"),
    attr("type", "system.paging.fault.type"),
]);
pub const METRICS: &[MetricDef] = &[USAGE, UTILIZATION, FAULTS, OPERATIONS];

#[derive(Debug, PartialEq, Eq)]
pub struct Swap {
    pub device: String,
    pub size: u64,
    pub used: u64,
}

/// `/proc/swaps`, parsed by hand: procfs 0.18 has no parser for it. Sizes are in KiB; names
/// escape blanks as `\040`, which is left as written.
pub fn parse_swaps(text: &str) -> Vec<Swap> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?.to_string();
            let _kind = fields.next()?;
            let size: u64 = fields.next()?.parse().ok()?;
            let used: u64 = fields.next()?.parse().ok()?;
            Some(Swap {
                device,
                size: size.saturating_mul(1024),
                used: used.saturating_mul(1024),
            })
        })
        .collect()
}

pub fn scrape(ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let mut first_error = None;
    match ctx.read_string("proc/swaps") {
        Ok(text) => {
            let device = out.pick("system.device", "device");
            let state = out.pick("system.paging.state", "state");
            for swap in parse_swaps(&text) {
                let free = swap.size.saturating_sub(swap.used);
                for (s, bytes) in [("used", swap.used), ("free", free)] {
                    let attrs = vec![kv(device, swap.device.as_str()), kv(state, s)];
                    if swap.size > 0 {
                        out.point(&UTILIZATION, attrs.clone(), bytes as f64 / swap.size as f64);
                    }
                    out.point(&USAGE, attrs, bytes);
                }
            }
        }
        Err(e) => first_error = Some(e),
    }
    match ctx.read::<procfs::VmStat>("proc/vmstat") {
        Ok(vm) => {
            let get = |k: &str| vm.0.get(k).copied().map(|v| v.max(0) as u64).unwrap_or(0);
            let kind = out.pick("system.paging.fault.type", "type");
            let major = get("pgmajfault");
            out.point(&FAULTS, vec![kv(kind, "major")], major);
            out.point(
                &FAULTS,
                vec![kv(kind, "minor")],
                get("pgfault").saturating_sub(major),
            );
            let direction = out.pick("system.paging.direction", "direction");
            let (page_in, page_out) = (out.pick("in", "page_in"), out.pick("out", "page_out"));
            for (dir, t, key) in [
                (page_in, "major", "pswpin"),
                (page_out, "major", "pswpout"),
                (page_in, "minor", "pgpgin"),
                (page_out, "minor", "pgpgout"),
            ] {
                out.point(&OPERATIONS, vec![kv(direction, dir), kv(kind, t)], get(key));
            }
        }
        Err(e) => first_error = first_error.or(Some(e)),
    }
    first_error.map_or(Ok(()), Err)
}
