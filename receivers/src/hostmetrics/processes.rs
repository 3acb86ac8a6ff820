//! `processes`: process counts by state and processes created since boot.

use std::collections::BTreeMap;

use super::emit::{Emitter, Kind, MetricDef, attr, kv};
use super::{Ctx, ScrapeError};

pub const COUNT: MetricDef = MetricDef::new(
    "system.process.count",
    "system.processes.count",
    "{process}",
    "{processes}",
    Kind::UpDown,
    true,
    "Processes in each state.",
)
.attrs(&[attr("status", "process.state")]);
pub const CREATED: MetricDef = MetricDef::new(
    "system.process.created",
    "system.processes.created",
    "{process}",
    "{processes}",
    Kind::Counter,
    true,
    "Processes created since boot.",
);
pub const METRICS: &[MetricDef] = &[COUNT, CREATED];

fn stat_field(stat: &str, key: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// Semantic-convention `process.state` of a `/proc/<pid>/stat` state letter.
fn state_of(letter: char) -> Option<&'static str> {
    match letter {
        'R' => Some("running"),
        'S' | 'D' | 'I' | 'W' | 'P' | 'K' => Some("sleeping"),
        'T' | 't' => Some("stopped"),
        'Z' => Some("defunct"),
        _ => None,
    }
}

/// Processes by state, counted from `/proc/<pid>/stat`; processes that exit while being
/// read are skipped.
pub fn count_states(ctx: &Ctx) -> Result<BTreeMap<&'static str, u64>, ScrapeError> {
    let dir = ctx.path("proc");
    let all =
        procfs::process::all_processes_with_root(&dir).map_err(|e| ScrapeError::read(&dir, e))?;
    let mut counts = BTreeMap::new();
    for process in all.flatten() {
        if let Ok(stat) = process.stat()
            && let Some(state) = state_of(stat.state)
        {
            *counts.entry(state).or_default() += 1;
        }
    }
    Ok(counts)
}

pub fn scrape(ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let stat = ctx.stat_text()?;
    if out.on(&COUNT) {
        if out.semconv() {
            for (state, n) in count_states(ctx)? {
                out.point(&COUNT, vec![kv("process.state", state)], n);
            }
        } else {
            // The collector reports what /proc/stat counts on Linux: running and blocked.
            for (status, key) in [("running", "procs_running "), ("blocked", "procs_blocked ")] {
                if let Some(n) = stat_field(stat, key) {
                    out.point(&COUNT, vec![kv("status", status)], n);
                }
            }
        }
    }
    if let Some(n) = stat_field(stat, "processes ") {
        out.point(&CREATED, vec![], n);
    }
    Ok(())
}
