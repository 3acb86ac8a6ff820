//! Rotation by size: backup names (`name-2026-11-25T03-04-05.678.ext`, as lumberjack and so
//! the OTel file exporter name them) and pruning by count and age.

use std::path::{Path, PathBuf};

use chrono::{Local, NaiveDateTime, TimeDelta, Timelike, Utc};

use super::config::RotationConfig;

/// `2026-11-25T03-04-05.678`: no `:` so the names are valid on every file system.
const STAMP_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";
const STAMP_LEN: usize = "2026-11-25T03-04-05.678".len();

/// The rotation settings in the form the writer uses them.
#[derive(Clone, Debug)]
pub struct Policy {
    pub max_bytes: u64,
    pub max_backups: usize,
    pub max_age: Option<TimeDelta>,
    pub localtime: bool,
}

impl Policy {
    pub fn new(cfg: &RotationConfig) -> Policy {
        Policy {
            max_bytes: cfg.max_bytes(),
            max_backups: cfg.max_backups as usize,
            max_age: (cfg.max_days > 0).then(|| TimeDelta::days(i64::from(cfg.max_days))),
            localtime: cfg.localtime,
        }
    }

    /// The time a backup made now is named after, in the configured zone.
    pub fn now(&self) -> NaiveDateTime {
        if self.localtime {
            Local::now().naive_local()
        } else {
            Utc::now().naive_utc()
        }
    }

    /// Whether `content` bytes already in the file plus `incoming` would pass the limit. An
    /// empty file takes any record, since a record never splits across files.
    pub fn must_rotate(&self, content: u64, incoming: u64) -> bool {
        content > 0 && content.saturating_add(incoming) > self.max_bytes
    }
}

/// `out.jsonl` → (`out`, `.jsonl`); the compression suffix stays with the format's extension
/// (`out.jsonl.zst` → `out`, `.jsonl.zst`) so backups keep a name the tools recognise.
pub fn split_name(file_name: &str) -> (&str, &str) {
    let ext_start = |name: &str| name.rfind('.').filter(|&i| i > 0);
    let Some(dot) = ext_start(file_name) else {
        return (file_name, "");
    };
    let ext = &file_name[dot..];
    let is_compression = matches!(
        ext.to_ascii_lowercase().as_str(),
        ".gz" | ".zst" | ".zstd" | ".gzip"
    );
    if is_compression && let Some(inner) = ext_start(&file_name[..dot]) {
        return (&file_name[..inner], &file_name[inner..]);
    }
    (&file_name[..dot], ext)
}

/// The backup of `path` rotated at `stamp`.
pub fn backup_path(path: &Path, stamp: NaiveDateTime) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = split_name(&name);
    let backup = format!("{stem}-{}{ext}", stamp.format(STAMP_FORMAT));
    path.with_file_name(backup)
}

/// The rotation time in `candidate`'s name if it is a backup of a file named `file_name`.
pub fn backup_stamp(file_name: &str, candidate: &str) -> Option<NaiveDateTime> {
    let (stem, ext) = split_name(file_name);
    let middle = candidate
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    if middle.len() != STAMP_LEN {
        return None;
    }
    NaiveDateTime::parse_from_str(middle, STAMP_FORMAT).ok()
}

/// A name for the next backup of `path`: never one that exists, and later than `after` (the
/// previous rotation of this file), so that the names sort in rotation order even when two
/// rotations fall in the same millisecond.
pub fn next_backup(
    path: &Path,
    now: NaiveDateTime,
    after: Option<NaiveDateTime>,
) -> (PathBuf, NaiveDateTime) {
    let ms = TimeDelta::milliseconds(1);
    // Names carry milliseconds; comparing at that precision keeps `after` meaningful.
    let truncated = now
        .with_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    let mut stamp = match after {
        Some(prev) if truncated <= prev => prev + ms,
        _ => truncated,
    };
    loop {
        let candidate = backup_path(path, stamp);
        if !candidate.exists() {
            return (candidate, stamp);
        }
        stamp += ms;
    }
}

/// Deletes the backups of `path` beyond `max_backups` (oldest first) and those older than
/// `max_age`. Returns the backups removed. A backup that cannot be listed or removed is
/// left alone with a warning: pruning must never stop the data from being written.
pub fn prune(path: &Path, policy: &Policy, now: NaiveDateTime) -> Vec<PathBuf> {
    let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list backups to prune");
            return Vec::new();
        }
    };
    let mut backups: Vec<(NaiveDateTime, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            backup_stamp(&file_name, &name).map(|stamp| (stamp, entry.path()))
        })
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.0));
    let cutoff = policy.max_age.and_then(|age| now.checked_sub_signed(age));
    let mut removed = Vec::new();
    for (i, (stamp, backup)) in backups.into_iter().enumerate() {
        let too_many = policy.max_backups > 0 && i >= policy.max_backups;
        let too_old = cutoff.is_some_and(|c| stamp < c);
        if !(too_many || too_old) {
            continue;
        }
        match std::fs::remove_file(&backup) {
            Ok(()) => removed.push(backup),
            Err(e) => {
                tracing::warn!(backup = %backup.display(), error = %e, "cannot remove old backup")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f").unwrap()
    }

    fn policy(max_backups: usize, max_days: i64) -> Policy {
        Policy {
            max_bytes: 100,
            max_backups,
            max_age: (max_days > 0).then(|| TimeDelta::days(max_days)),
            localtime: false,
        }
    }

    #[test]
    fn names_split_before_the_format_and_compression_suffixes() {
        assert_eq!(split_name("out.jsonl"), ("out", ".jsonl"));
        assert_eq!(split_name("out.jsonl.zst"), ("out", ".jsonl.zst"));
        assert_eq!(split_name("out.pb.GZ"), ("out", ".pb.GZ"));
        assert_eq!(split_name("a.b.c"), ("a.b", ".c"));
        assert_eq!(split_name("out.zst"), ("out", ".zst"));
        assert_eq!(split_name("out"), ("out", ""));
        assert_eq!(split_name(".hidden"), (".hidden", ""));
    }

    #[test]
    fn backup_names_carry_the_rotation_time_and_parse_back() {
        let stamp = at("2026-11-25 03:04:05.678");
        let backup = backup_path(Path::new("/d/out.jsonl"), stamp);
        assert_eq!(backup, Path::new("/d/out-2026-11-25T03-04-05.678.jsonl"));
        assert_eq!(
            backup_stamp("out.jsonl", "out-2026-11-25T03-04-05.678.jsonl"),
            Some(stamp)
        );
        assert_eq!(
            backup_stamp("out.jsonl.gz", "out-2026-11-25T03-04-05.678.jsonl.gz"),
            Some(stamp)
        );
        for other in [
            "out.jsonl",
            "out-a-2026-11-25T03-04-05.678.jsonl",
            "out-2026-11-25T03-04-05.jsonl",
            "out-2026-11-25T03-04-05.678.pb",
            "other-2026-11-25T03-04-05.678.jsonl",
        ] {
            assert_eq!(backup_stamp("out.jsonl", other), None, "{other}");
        }
    }

    #[test]
    fn next_backup_never_reuses_a_name_and_sorts_after_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let now = at("2026-01-02 03:04:05.006");
        let (first, s1) = next_backup(&path, now, None);
        assert_eq!(s1, now);
        std::fs::write(&first, "").unwrap();
        // Same millisecond, previous stamp known: one millisecond later.
        let (second, s2) = next_backup(&path, now, Some(s1));
        assert_eq!(s2, at("2026-01-02 03:04:05.007"));
        assert_ne!(first, second);
        // Clock read earlier than the file on disk, no memory of it: the name is still new.
        let (third, _) = next_backup(&path, now, None);
        assert_eq!(third, second);
        // Sub-millisecond parts are dropped, as the name cannot hold them.
        let fine = now + TimeDelta::microseconds(400);
        assert_eq!(
            next_backup(&path, fine, Some(s2)).1,
            at("2026-01-02 03:04:05.008")
        );
    }

    #[test]
    fn pruning_keeps_the_newest_max_backups_and_drops_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "current").unwrap();
        let names = [
            "out-2026-01-01T00-00-00.000.jsonl",
            "out-2026-01-05T00-00-00.000.jsonl",
            "out-2026-01-09T00-00-00.000.jsonl",
            "out-2026-01-10T00-00-00.000.jsonl",
        ];
        let unrelated = [
            "other-2026-01-01T00-00-00.000.jsonl",
            "out.jsonl.bak",
            "out-x.jsonl",
        ];
        for name in names.iter().chain(&unrelated) {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let now = at("2026-01-10 12:00:00.000");
        let removed = prune(&path, &policy(3, 0), now);
        assert_eq!(removed, vec![dir.path().join(names[0])]);
        // Older than 2 days: 01-05 goes, 01-09 (1.5 days) stays.
        let removed = prune(&path, &policy(0, 2), now);
        assert_eq!(removed, vec![dir.path().join(names[1])]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = [names[2], names[3], "out.jsonl"]
            .iter()
            .chain(&unrelated)
            .map(|s| s.to_string())
            .collect();
        expected.sort();
        assert_eq!(left, expected);
        // Zero means no limit.
        assert!(prune(&path, &policy(0, 0), now).is_empty());
    }

    #[test]
    fn only_a_non_empty_file_rotates() {
        let p = policy(1, 0);
        assert!(!p.must_rotate(0, 1000));
        assert!(!p.must_rotate(50, 50));
        assert!(p.must_rotate(50, 51));
    }
}
