//! `load`: `/proc/loadavg`.

use super::emit::{Emitter, Kind, MetricDef};
use super::{Ctx, ScrapeError};

// Semantic conventions define no load average; both namings use the collector's names.
pub const LOAD_1M: MetricDef = MetricDef::new(
    "system.cpu.load_average.1m",
    "system.cpu.load_average.1m",
    "{thread}",
    "{thread}",
    Kind::Gauge,
    true,
    "Average number of runnable or waiting threads over the last minute.",
);
pub const LOAD_5M: MetricDef = MetricDef::new(
    "system.cpu.load_average.5m",
    "system.cpu.load_average.5m",
    "{thread}",
    "{thread}",
    Kind::Gauge,
    true,
    "Average number of runnable or waiting threads over the last 5 minutes.",
);
pub const LOAD_15M: MetricDef = MetricDef::new(
    "system.cpu.load_average.15m",
    "system.cpu.load_average.15m",
    "{thread}",
    "{thread}",
    Kind::Gauge,
    true,
    "Average number of runnable or waiting threads over the last 15 minutes.",
);
pub const METRICS: &[MetricDef] = &[LOAD_1M, LOAD_5M, LOAD_15M];

pub fn scrape(ctx: &Ctx, cpu_average: bool, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let load: procfs::LoadAverage = ctx.read("proc/loadavg")?;
    let divisor = if cpu_average {
        let cpus = ctx
            .stat_text()?
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        cpus.max(1) as f64
    } else {
        1.0
    };
    out.point(&LOAD_1M, vec![], widen(load.one) / divisor);
    out.point(&LOAD_5M, vec![], widen(load.five) / divisor);
    out.point(&LOAD_15M, vec![], widen(load.fifteen) / divisor);
    Ok(())
}

/// procfs parses into `f32`; going through the shortest decimal form gives back the value the
/// kernel wrote (0.1, not 0.10000000149).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}
