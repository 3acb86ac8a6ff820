//! `system`: uptime from `/proc/uptime`.

use super::emit::{Emitter, Kind, MetricDef};
use super::{Ctx, ScrapeError};

pub const UPTIME: MetricDef = MetricDef::new(
    "system.uptime",
    "system.uptime",
    "s",
    "s",
    Kind::Gauge,
    true,
    "Time the system has been running.",
);
pub const METRICS: &[MetricDef] = &[UPTIME];

pub fn scrape(ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let uptime: procfs::Uptime = ctx.read("proc/uptime")?;
    out.point(&UPTIME, vec![], uptime.uptime);
    Ok(())
}
