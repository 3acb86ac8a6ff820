//! `filesystem`: space and inodes of each mounted filesystem, from the mount table and
//! `statvfs` (through rustix) on the mount point under the root.

use std::collections::HashSet;

use procfs::FromRead;
use procfs::MountEntry;

use super::config::{FilesystemConfig, Filter, HostChecks, spec};
use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};
use crate::metric_keys::KeyChecker;

const MOUNT: &[Attr] = &[
    attr("device", "system.device"),
    attr("mode", "system.filesystem.mode"),
    attr("mountpoint", "system.filesystem.mountpoint"),
    attr("type", "system.filesystem.type"),
];
const MOUNT_STATE: &[Attr] = &[
    attr("device", "system.device"),
    attr("mode", "system.filesystem.mode"),
    attr("mountpoint", "system.filesystem.mountpoint"),
    attr("type", "system.filesystem.type"),
    attr("state", "system.filesystem.state"),
];
use super::{Ctx, ScrapeError};

pub const USAGE: MetricDef = MetricDef::new(
    "system.filesystem.usage",
    "system.filesystem.usage",
    "By",
    "By",
    Kind::UpDown,
    true,
    "Filesystem space used, free (to unprivileged users) and reserved (for root).",
)
.attrs(MOUNT_STATE);
pub const UTILIZATION: MetricDef = MetricDef::new(
    "system.filesystem.utilization",
    "system.filesystem.utilization",
    "1",
    "1",
    Kind::Gauge,
    false,
    "Share of the space usable by unprivileged users that is used.",
)
.attrs(MOUNT);
pub const LIMIT: MetricDef = MetricDef::new(
    "system.filesystem.limit",
    "system.filesystem.limit",
    "By",
    "By",
    Kind::UpDown,
    false,
    "Filesystem size.",
)
.attrs(MOUNT);
// The collector's only; semantic conventions have no inode metric.
pub const INODES: MetricDef = MetricDef::new(
    "system.filesystem.inodes.usage",
    "system.filesystem.inodes.usage",
    "{inode}",
    "{inodes}",
    Kind::UpDown,
    true,
    "Inodes used and free.",
)
.attrs(MOUNT_STATE);
pub const METRICS: &[MetricDef] = &[USAGE, UTILIZATION, LIMIT, INODES];

pub struct Filters {
    devices: Filter,
    types: Filter,
    mount_points: Filter,
    include_virtual: bool,
}

impl Filters {
    pub fn from_config(c: &FilesystemConfig, check: &mut KeyChecker<'_>) -> Filters {
        let keys = ["scrapers", "filesystem"];
        Filters {
            devices: check.filter(
                &keys,
                "devices",
                ("include_devices", spec(&c.include_devices)),
                ("exclude_devices", spec(&c.exclude_devices)),
            ),
            types: check.filter(
                &keys,
                "fs_types",
                ("include_fs_types", spec(&c.include_fs_types)),
                ("exclude_fs_types", spec(&c.exclude_fs_types)),
            ),
            mount_points: check.filter(
                &keys,
                "mount_points",
                ("include_mount_points", spec(&c.include_mount_points)),
                ("exclude_mount_points", spec(&c.exclude_mount_points)),
            ),
            include_virtual: c.include_virtual_filesystems,
        }
    }
}

/// The host's mount table: pid 1's when looking at another root (the reader's own would be
/// the container's), else our own; `/etc/mtab` when neither can be read.
pub fn mounts(ctx: &Ctx) -> Result<Vec<MountEntry>, ScrapeError> {
    let own_root = ctx.root == std::path::Path::new("/");
    let candidates: &[&str] = if own_root {
        &["proc/self/mounts", "etc/mtab"]
    } else {
        &["proc/1/mounts", "proc/self/mounts", "etc/mtab"]
    };
    let mut last = None;
    for rel in candidates {
        match ctx.read_string(rel) {
            Ok(text) => {
                return Vec::<MountEntry>::from_read(text.as_bytes())
                    .map_err(|e| ScrapeError::parse(rel, e));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ScrapeError::Read("mount table".into())))
}

/// Filesystem types without a backing device (`nodev` in `/proc/filesystems`).
fn virtual_types(ctx: &Ctx) -> HashSet<String> {
    ctx.read_string("proc/filesystems")
        .map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("nodev"))
                .map(|t| t.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Space and inode counts of one filesystem, in bytes and inodes.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub free: u64,
    pub reserved: u64,
    pub inodes_used: u64,
    pub inodes_free: u64,
}

fn statvfs(path: &std::path::Path) -> std::io::Result<Usage> {
    let s = rustix::fs::statvfs(path)?;
    let unit = s.f_frsize;
    Ok(Usage {
        used: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(unit),
        free: s.f_bavail.saturating_mul(unit),
        reserved: s.f_bfree.saturating_sub(s.f_bavail).saturating_mul(unit),
        inodes_used: s.f_files.saturating_sub(s.f_ffree),
        inodes_free: s.f_ffree,
    })
}

pub fn scrape(ctx: &Ctx, filters: &Filters, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let mounts = mounts(ctx)?;
    let virtual_types = if filters.include_virtual {
        HashSet::new()
    } else {
        virtual_types(ctx)
    };
    let semconv = out.semconv();
    for m in mounts {
        if virtual_types.contains(&m.fs_vfstype)
            || !filters.devices.allows(&m.fs_spec)
            || !filters.types.allows(&m.fs_vfstype)
            || !filters.mount_points.allows(&m.fs_file)
        {
            continue;
        }
        let usage = match statvfs(&ctx.path(&m.fs_file)) {
            Ok(u) => u,
            Err(e) => {
                // One unreadable mount (a stale network share, no permission) must not hide
                // the others.
                tracing::debug!(mount_point = %m.fs_file, error = %e, "statvfs failed");
                continue;
            }
        };
        let total = usage
            .used
            .saturating_add(usage.free)
            .saturating_add(usage.reserved);
        if total == 0 && !filters.include_virtual {
            continue;
        }
        let mode = if m.fs_mntops.contains_key("ro") {
            "ro"
        } else {
            "rw"
        };
        let base = |state: &str| {
            if semconv {
                vec![
                    kv("system.device", m.fs_spec.as_str()),
                    kv("system.filesystem.mode", mode),
                    kv("system.filesystem.mountpoint", m.fs_file.as_str()),
                    kv("system.filesystem.type", m.fs_vfstype.as_str()),
                    kv("system.filesystem.state", state),
                ]
            } else {
                vec![
                    kv("device", m.fs_spec.as_str()),
                    kv("mode", mode),
                    kv("mountpoint", m.fs_file.as_str()),
                    kv("type", m.fs_vfstype.as_str()),
                    kv("state", state),
                ]
            }
        };
        out.point(&USAGE, base("used"), usage.used);
        out.point(&USAGE, base("free"), usage.free);
        out.point(&USAGE, base("reserved"), usage.reserved);
        out.point(&INODES, base("used"), usage.inodes_used);
        out.point(&INODES, base("free"), usage.inodes_free);
        let usable = usage.used.saturating_add(usage.free);
        if usable > 0 {
            let mut attrs = base("used");
            attrs.pop();
            out.point(&UTILIZATION, attrs, usage.used as f64 / usable as f64);
        }
        let mut attrs = base("used");
        attrs.pop();
        out.point(&LIMIT, attrs, total);
    }
    Ok(())
}
