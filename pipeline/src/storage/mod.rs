//! `file_storage` extensions: the on-disk write-ahead log behind persistent sending queues.
//!
//! An extension only names a directory and how to write there; each exporter that selects
//! it with `sending_queue.storage` opens its own queue in a subdirectory per signal when it
//! starts (not when the config is built, so `sluice validate` touches no files).

mod checkpoint;
mod cursor;
mod queue;
mod record;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use sluice_config::{ByteSize, Config, Diagnostic, Duration, SignalKind, Value};

use crate::config_keys::{ConfigWarnings, NoEffect, decode_section};

pub use checkpoint::CheckpointStore;
#[cfg(test)]
pub(crate) use queue::ReadFault;
pub use queue::{
    AppendError, Claim, Location, PersistentQueue, QueueMetrics, QueueOptions, ReadError,
    ReplayReport,
};

/// The extension type name in configs.
pub const FILE_STORAGE: &str = "file_storage";

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before the sender is acknowledged, once per group of concurrent appends: an
    /// acknowledged request survives power loss.
    #[default]
    Always,
    /// Every `fsync_interval` in the background: an acknowledged request survives a crash
    /// or `kill -9` of the collector (it is in the page cache), but up to `fsync_interval`
    /// of acknowledged data can be lost if the machine loses power or the kernel crashes.
    Interval,
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    /// `always` / `interval`, or the OTel Collector's boolean (`true` = always).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FsyncPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`always`, `interval`, `true` or `false`")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<FsyncPolicy, E> {
                Ok(if v {
                    FsyncPolicy::Always
                } else {
                    FsyncPolicy::Interval
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FsyncPolicy, E> {
                match v {
                    "always" | "true" => Ok(FsyncPolicy::Always),
                    "interval" | "false" => Ok(FsyncPolicy::Interval),
                    other => Err(E::unknown_variant(other, &["always", "interval"])),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `extensions: file_storage[/name]:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Where the queues live (default `./sluice-data/file_storage`); each exporter and
    /// signal gets a subdirectory.
    pub directory: PathBuf,
    /// `always` (default) or `interval`; `true`/`false` as in the OTel Collector.
    pub fsync: FsyncPolicy,
    /// How often data is synced with `fsync: interval` (default 1s).
    pub fsync_interval: Duration,
    /// Disk space each queue may use for its log (default 1GiB). When reached, appends wait
    /// (or are refused, with `block_on_overflow: false`) as with a full memory queue.
    pub max_size: ByteSize,
    /// Size at which a log file is closed and a new one started (default 16MiB, at most a
    /// quarter of `max_size`); delivered files are deleted whole.
    pub segment_size: ByteSize,
    /// Create `directory` when missing (default true).
    pub create_directory: bool,
    /// Mode of `directory` when sluice creates it, in octal (default `0750`, less the
    /// umask).
    pub directory_permissions: Option<String>,
}

/// The OTel Collector's `file_storage` keys that have nothing to act on in sluice's log.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "timeout",
        "bbolt's wait for its file lock; sluice's queue directory lock is taken at once, and a \
         second collector on the same directory is refused with a clear error",
    ),
    NoEffect::new(
        "compaction",
        "bbolt files keep the space of deleted items until compacted; sluice's log deletes \
         each segment file whole once it is delivered, so there is nothing to compact",
    ),
    NoEffect::new(
        "recreate",
        "sluice's log never refuses to open a damaged file: it recovers every intact record \
         and sets the damaged part aside, so there is no corrupt database to recreate",
    ),
];

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: PathBuf::from("sluice-data/file_storage"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            max_size: ByteSize(1024 * 1024 * 1024),
            segment_size: ByteSize(16 * 1024 * 1024),
            create_directory: true,
            directory_permissions: None,
        }
    }
}

impl FileStorageConfig {
    /// Creates `directory` with `directory_permissions` (default 0750) when it is missing and
    /// `create_directory` is on; queues make their own subdirectories inside it.
    pub fn prepare_directory(&self) -> Result<(), StorageError> {
        use std::os::unix::fs::DirBuilderExt;
        if !self.create_directory || self.directory.is_dir() {
            return Ok(());
        }
        let mode = self
            .directory_permissions
            .as_deref()
            .and_then(|p| u32::from_str_radix(p.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o750);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&self.directory)
            .map_err(|source| StorageError::Io {
                what: "cannot create".into(),
                path: self.directory.clone(),
                source,
            })
    }

    /// Problems with the values that serde cannot see, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.directory.as_os_str().is_empty() {
            out.push(("directory", "must not be empty".to_string()));
        }
        if self.max_size.0 == 0 {
            out.push(("max_size", "must be greater than 0".to_string()));
        }
        if self.segment_size.0 == 0 {
            out.push(("segment_size", "must be greater than 0".to_string()));
        }
        if let Some(perms) = &self.directory_permissions
            && !u32::from_str_radix(perms.trim_start_matches("0o"), 8).is_ok_and(|m| m <= 0o7777)
        {
            out.push((
                "directory_permissions",
                format!("`{perms}` is not an octal mode such as 0750"),
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.0.is_zero() {
            out.push((
                "fsync_interval",
                "must be greater than 0 (or use `fsync: always`)".to_string(),
            ));
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("directory {} does not exist (set `create_directory: true` to create it)", .0.display())]
    MissingDirectory(PathBuf),
    #[error("{} is in use by another process (two collectors cannot share a queue directory)", .0.display())]
    Locked(PathBuf),
}

/// One `file_storage` extension, by id.
#[derive(Clone, Debug)]
pub struct FileStorage {
    pub id: String,
    pub config: FileStorageConfig,
}

impl FileStorage {
    /// The directory of one exporter's queue for one signal. The id is escaped so any
    /// component name maps to a single, distinct directory name.
    pub fn queue_directory(&self, exporter: &str, signal: SignalKind) -> PathBuf {
        self.config
            .directory
            .join(escape_component(exporter))
            .join(signal.as_str())
    }
}

/// `otlp_http/backend` → `otlp_http%2Fbackend`: only `[A-Za-z0-9_-]` and inner dots stay.
fn escape_component(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (i, b) in id.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `file_storage` extensions of a service, by id; exporters look theirs up by
/// `sending_queue.storage`.
#[derive(Clone, Default)]
pub struct StorageExtensions {
    by_id: Arc<BTreeMap<String, FileStorage>>,
}

impl StorageExtensions {
    pub fn new(storages: impl IntoIterator<Item = FileStorage>) -> Self {
        StorageExtensions {
            by_id: Arc::new(storages.into_iter().map(|s| (s.id.clone(), s)).collect()),
        }
    }

    pub fn get(&self, id: &str) -> Option<&FileStorage> {
        self.by_id.get(id)
    }

    /// Every enabled extension.
    pub fn iter(&self) -> impl Iterator<Item = &FileStorage> {
        self.by_id.values()
    }
}

/// Decodes every `file_storage` extension (reporting problems with their positions) and
/// returns those enabled in `service.extensions`.
pub fn build_extensions(
    config: &Config,
    warnings: &ConfigWarnings,
) -> (StorageExtensions, Vec<Diagnostic>) {
    let mut errors = Vec::new();
    let mut enabled = Vec::new();
    for c in config
        .extensions
        .iter()
        .filter(|c| c.id.type_name == FILE_STORAGE)
    {
        let decoded: FileStorageConfig = match decode_section(c, NO_EFFECT, warnings) {
            Ok(d) => d,
            Err(e) => {
                errors.extend(e.0);
                continue;
            }
        };
        let problems = decoded.problems();
        for (key, message) in &problems {
            let pos = match &c.node.value {
                Value::Map(m) => m.get(key).map_or(&c.node.pos, |n| &n.pos),
                _ => &c.node.pos,
            };
            errors.push(Diagnostic::new(
                Some(pos.clone()),
                format!("{}.{key}", c.path),
                message.clone(),
            ));
        }
        if problems.is_empty() && config.service.extensions.iter().any(|r| r.id == c.id) {
            enabled.push(FileStorage {
                id: c.id.to_string(),
                config: decoded,
            });
        }
    }
    (StorageExtensions::new(enabled), errors)
}

/// Every exporter's `sending_queue.storage` must name an enabled `file_storage` extension.
pub fn check_references(config: &Config, storages: &StorageExtensions) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for c in &config.exporters {
        let Value::Map(section) = &c.node.value else {
            continue;
        };
        let Some(Value::Map(queue)) = section.get("sending_queue").map(|n| &n.value) else {
            continue;
        };
        let Some(node) = queue.get("storage") else {
            continue;
        };
        let Value::Scalar(name) = &node.value else {
            continue;
        };
        let name = name.text.as_str();
        let disabled = queue.get("enabled").is_some_and(
            |n| matches!(&n.value, Value::Scalar(s) if s.text.eq_ignore_ascii_case("false")),
        );
        if disabled {
            errors.push(Diagnostic::new(
                Some(node.pos.clone()),
                format!("{}.sending_queue.storage", c.path),
                "a persistent queue needs `sending_queue.enabled: true` (without a queue every batch is sent inline and nothing is stored)",
            ));
            continue;
        }
        let listed = config
            .service
            .extensions
            .iter()
            .any(|r| r.id.to_string() == name);
        // Listed but absent means its own section failed to decode, which is reported.
        if storages.get(name).is_some() || listed {
            continue;
        }
        let defined = config
            .extensions
            .iter()
            .any(|e| e.id.type_name == FILE_STORAGE && e.id.to_string() == name);
        let message = if defined {
            format!("storage `{name}` is defined but not enabled: add it to service.extensions")
        } else {
            format!("storage `{name}` is not a file_storage extension defined under `extensions`")
        };
        let known: Vec<String> = config
            .extensions
            .iter()
            .filter(|e| e.id.type_name == FILE_STORAGE)
            .map(|e| e.id.to_string())
            .collect();
        let suggestion = sluice_config::suggest(name, known.iter().map(String::as_str));
        errors.push(
            Diagnostic::new(
                Some(node.pos.clone()),
                format!("{}.sending_queue.storage", c.path),
                message,
            )
            .with_suggestion(if defined { None } else { suggestion }),
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_map_to_distinct_safe_names() {
        assert_eq!(escape_component("otlp_http/backend"), "otlp_http%2Fbackend");
        assert_eq!(escape_component("file/a_b"), "file%2Fa_b");
        assert_ne!(escape_component("a/b"), escape_component("a_b"));
        assert_eq!(escape_component("x/.."), "x%2F..");
        assert_eq!(escape_component(".."), "%2E.");
    }

    fn decode(yaml: &str) -> Result<FileStorageConfig, sluice_config::ConfigErrors> {
        decode_warned(yaml).0
    }

    fn decode_warned(
        yaml: &str,
    ) -> (
        Result<FileStorageConfig, sluice_config::ConfigErrors>,
        Vec<Diagnostic>,
    ) {
        let node = sluice_config::load(&[sluice_config::Source::new("test", yaml)], &[], &|_| None)
            .unwrap();
        let config = sluice_config::ComponentConfig {
            kind: sluice_config::ComponentKind::Extension,
            id: sluice_config::ComponentId::new(FILE_STORAGE),
            pos: node.pos.clone(),
            path: "extensions.file_storage".into(),
            node,
        };
        let warnings = ConfigWarnings::default();
        (
            decode_section(&config, NO_EFFECT, &warnings),
            warnings.take(),
        )
    }

    #[test]
    fn compaction_timeout_and_recreate_are_warned_about_and_permissions_applied() {
        let (c, warnings) = decode_warned(
            "directory: /tmp/q\ntimeout: 1s\nrecreate: true\ncompaction:\n  on_start: true\n  directory: /tmp\n  max_transaction_size: 65536\n",
        );
        assert!(c.is_ok());
        let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "extensions.file_storage.timeout",
                "extensions.file_storage.compaction",
                "extensions.file_storage.recreate"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        let c = decode(&format!(
            "directory: {}\ndirectory_permissions: \"0700\"\n",
            target.display()
        ))
        .unwrap();
        assert!(c.problems().is_empty());
        c.prepare_directory().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let bad = decode("directory_permissions: \"rwx\"\n").unwrap();
        assert_eq!(bad.problems()[0].0, "directory_permissions");
    }

    #[test]
    fn accepts_otel_spellings_and_rejects_unknown_keys() {
        let c =
            decode("directory: /tmp/q\nfsync: true\ntimeout: 1s\ncompaction: {on_start: true}\n")
                .unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(
            decode("fsync: false\n").unwrap().fsync,
            FsyncPolicy::Interval
        );
        assert_eq!(
            decode("fsync: interval\n").unwrap().fsync,
            FsyncPolicy::Interval
        );
        assert!(decode("fsync: sometimes\n").is_err());
        let e = decode("directroy: /tmp\n").unwrap_err();
        assert!(e.to_string().contains("directroy"), "{e}");
        let d = decode("{}\n").unwrap();
        assert_eq!(d.max_size.0, 1 << 30);
        assert!(d.problems().is_empty());
    }
}

#[cfg(test)]
mod queue_tests;
