//! `disk`: `/proc/diskstats`.

use super::config::Filter;
use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};

const DEVICE: &[Attr] = &[attr("device", "system.device")];
const DEVICE_DIRECTION: &[Attr] = &[
    attr("device", "system.device"),
    attr("direction", "disk.io.direction"),
];
use super::{Ctx, ScrapeError};

pub const IO: MetricDef = MetricDef::new(
    "system.disk.io",
    "system.disk.io",
    "By",
    "By",
    Kind::Counter,
    true,
    "Disk bytes transferred.",
)
.attrs(DEVICE_DIRECTION);
pub const OPERATIONS: MetricDef = MetricDef::new(
    "system.disk.operations",
    "system.disk.operations",
    "{operation}",
    "{operations}",
    Kind::Counter,
    true,
    "Disk operations completed.",
)
.attrs(DEVICE_DIRECTION);
pub const IO_TIME: MetricDef = MetricDef::new(
    "system.disk.io_time",
    "system.disk.io_time",
    "s",
    "s",
    Kind::Counter,
    true,
    "Time the disk spent with operations in flight.",
)
.attrs(DEVICE);
pub const OPERATION_TIME: MetricDef = MetricDef::new(
    "system.disk.operation_time",
    "system.disk.operation_time",
    "s",
    "s",
    Kind::Counter,
    true,
    "Sum of the time each operation took to complete.",
)
.attrs(DEVICE_DIRECTION);
pub const MERGED: MetricDef = MetricDef::new(
    "system.disk.merged",
    "system.disk.merged",
    "{operation}",
    "{operations}",
    Kind::Counter,
    true,
    "Reads and writes merged into single physical disk accesses.",
)
.attrs(DEVICE_DIRECTION);
// The next two are the collector's only; semantic conventions have no counterpart.
pub const PENDING: MetricDef = MetricDef::new(
    "system.disk.pending_operations",
    "system.disk.pending_operations",
    "{operation}",
    "{operations}",
    Kind::UpDown,
    true,
    "Operations queued for the disk.",
)
.attrs(DEVICE);
pub const WEIGHTED_IO_TIME: MetricDef = MetricDef::new(
    "system.disk.weighted_io_time",
    "system.disk.weighted_io_time",
    "s",
    "s",
    Kind::Counter,
    true,
    "Time the disk spent with operations in flight, weighted by their number.",
)
.attrs(DEVICE);
pub const METRICS: &[MetricDef] = &[
    IO,
    OPERATIONS,
    IO_TIME,
    OPERATION_TIME,
    MERGED,
    PENDING,
    WEIGHTED_IO_TIME,
];

/// `/proc/diskstats` counts in 512-byte sectors whatever the device's own sector size.
const SECTOR: u64 = 512;

fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

pub fn scrape(ctx: &Ctx, filter: &Filter, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let stats: procfs::DiskStats = ctx.read("proc/diskstats")?;
    let device = out.pick("system.device", "device");
    let direction = out.pick("disk.io.direction", "direction");
    for d in stats.0 {
        // Devices that never did any I/O (unused loop and ram devices) are noise.
        if d.reads == 0 && d.writes == 0 {
            continue;
        }
        if !filter.allows(&d.name) {
            continue;
        }
        let dev = || kv(device, d.name.as_str());
        let rw = |dir: &str| vec![kv(device, d.name.as_str()), kv(direction, dir)];
        out.point(&IO, rw("read"), d.sectors_read.saturating_mul(SECTOR));
        out.point(&IO, rw("write"), d.sectors_written.saturating_mul(SECTOR));
        out.point(&OPERATIONS, rw("read"), d.reads);
        out.point(&OPERATIONS, rw("write"), d.writes);
        out.point(&IO_TIME, vec![dev()], ms(d.time_in_progress));
        out.point(&OPERATION_TIME, rw("read"), ms(d.time_reading));
        out.point(&OPERATION_TIME, rw("write"), ms(d.time_writing));
        out.point(&MERGED, rw("read"), d.merged);
        out.point(&MERGED, rw("write"), d.writes_merged);
        out.point(&PENDING, vec![dev()], d.in_progress);
        out.point(
            &WEIGHTED_IO_TIME,
            vec![dev()],
            ms(d.weighted_time_in_progress),
        );
    }
    Ok(())
}
