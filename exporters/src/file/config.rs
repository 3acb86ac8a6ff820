//! The `file` exporter's configuration: the OTel file exporter's keys, plus `gzip`.

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, Node, Optional, Pos};

/// `exporters: file:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file written. With `group_by`, a template holding one `*`.
    pub path: PathBuf,
    /// `json` (default): one OTLP/JSON object per line; `proto`: length-prefixed protobuf.
    #[serde(default)]
    pub format: Format,
    /// `zstd`, `gzip` (a sluice extra) or none (default).
    #[serde(default)]
    pub compression: Compression,
    /// The codec's level: zstd 1 (fastest) to 22, gzip 1 to 9; 0 (default) the codec's own.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Keep what the file already holds (true) or empty it when the exporter starts.
    #[serde(default)]
    pub append: bool,
    /// Rotation is on when the key is present, even with no value (`rotation:`) or empty;
    /// `rotation: {enabled: false}` turns it off.
    #[serde(default)]
    pub rotation: Optional<RotationConfig>,
    /// Create the file's directory when missing. Unset: sluice creates it; `false`: a
    /// missing directory is an error at start, as in the OTel Collector.
    #[serde(default)]
    pub create_directory: Option<bool>,
    /// Mode of the directories created, in octal (default `0755`, less the umask). Needs
    /// `create_directory: true`.
    #[serde(default)]
    pub directory_permissions: Option<String>,
    /// An encoding extension's id: refused with a clear error (not supported yet).
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub group_by: GroupByConfig,
    /// How often buffered data reaches the file; 0 writes through on every batch.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
}

/// `compression_params`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    pub level: i32,
}

impl FileConfig {
    /// The mode of created directories, from `directory_permissions` (default 0755).
    pub fn directory_mode(&self) -> u32 {
        self.directory_permissions
            .as_deref()
            .and_then(|p| u32::from_str_radix(p.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o755)
    }
}

fn default_flush_interval() -> Duration {
    Duration(StdDuration::from_secs(1))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One OTLP/JSON `TracesData`/`MetricsData`/`LogsData` object per line.
    #[default]
    Json,
    /// Each message preceded by its length as a 4-byte big-endian integer.
    Proto,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `""` is the OTel Collector's spelling of "no compression".
    #[default]
    #[serde(alias = "")]
    None,
    Gzip,
    Zstd,
}

/// `rotation:` (lumberjack's settings, as the OTel file exporter has them).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Size limit of the current file in MiB; fractions are allowed (0.01 ≈ 10 KiB).
    #[serde(default = "default_max_megabytes")]
    pub max_megabytes: f64,
    /// Backups older than this many days are deleted; 0 keeps them regardless of age.
    #[serde(default)]
    pub max_days: u32,
    /// At most this many backups are kept (the oldest go first); 0 keeps them all.
    #[serde(default = "default_max_backups")]
    pub max_backups: u32,
    /// Name backups with local time rather than UTC.
    #[serde(default)]
    pub localtime: bool,
}

fn default_max_megabytes() -> f64 {
    100.0
}
fn default_max_backups() -> u32 {
    100
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_megabytes: default_max_megabytes(),
            max_days: 0,
            max_backups: default_max_backups(),
            localtime: false,
        }
    }
}

impl RotationConfig {
    /// The limit in bytes. Validation has made sure the number is positive and finite.
    pub fn max_bytes(&self) -> u64 {
        // At least one byte, so a tiny fraction still means "one batch per file".
        ((self.max_megabytes * 1024.0 * 1024.0) as u64).max(1)
    }
}

/// `group_by:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupByConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_resource_attribute")]
    pub resource_attribute: String,
    /// Files kept open at once; the least recently written is closed beyond this.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Where resources without the attribute go: the `*` is replaced by this. Unset (the
    /// default, as in the OTel Collector) drops them, counted and logged.
    #[serde(default)]
    pub default_segment: Option<String>,
}

fn default_resource_attribute() -> String {
    "fileexporter.path_segment".to_string()
}
fn default_max_open_files() -> usize {
    100
}

impl Default for GroupByConfig {
    fn default() -> Self {
        GroupByConfig {
            enabled: false,
            resource_attribute: default_resource_attribute(),
            max_open_files: default_max_open_files(),
            default_segment: None,
        }
    }
}

/// Checks what serde cannot, each error naming the key and where it was written.
pub fn validate(cfg: &FileConfig, config: &ComponentConfig) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut error = |keys: &[&str], message: String| {
        errors.push(Diagnostic::new(
            Some(position(config, keys)),
            format!("{}.{}", config.path, keys.join(".")),
            message,
        ));
    };
    let path = cfg.path.to_string_lossy();
    if path.is_empty() {
        error(&["path"], "path must not be empty".into());
    }
    if let Some(rotation) = cfg.rotation.as_ref()
        && !(rotation.max_megabytes.is_finite() && rotation.max_megabytes > 0.0)
    {
        error(
            &["rotation", "max_megabytes"],
            format!(
                "max_megabytes must be a number above 0 (fractions are allowed), not {}",
                rotation.max_megabytes
            ),
        );
    }
    if let Some(id) = &cfg.encoding {
        error(
            &["encoding"],
            format!(
                "encoding extensions (`{id}`) are not supported yet; use `format: json` or \
                 `format: proto`"
            ),
        );
    }
    if let Some(perms) = &cfg.directory_permissions {
        let valid =
            u32::from_str_radix(perms.trim_start_matches("0o"), 8).is_ok_and(|m| m <= 0o7777);
        if !valid {
            error(
                &["directory_permissions"],
                format!("`{perms}` is not an octal mode such as 0755"),
            );
        } else if cfg.create_directory != Some(true) {
            error(
                &["directory_permissions"],
                "directory_permissions needs `create_directory: true`".into(),
            );
        }
    }
    let level = cfg.compression_params.level;
    let level_fits = match cfg.compression {
        _ if level == 0 => true,
        Compression::Zstd => (1..=22).contains(&level),
        Compression::Gzip => level == -1 || (1..=9).contains(&level),
        Compression::None => false,
    };
    if !level_fits {
        error(
            &["compression_params", "level"],
            format!(
                "level {level} does not fit {:?} compression (zstd 1 to 22, gzip 1 to 9)",
                cfg.compression
            ),
        );
    }
    let group = &cfg.group_by;
    if group.enabled {
        let stars = path.matches('*').count();
        if stars != 1 {
            error(
                &["path"],
                format!(
                    "with group_by enabled, path must contain exactly one `*` (replaced by the \
                     value of the resource attribute `{}`); found {stars}",
                    group.resource_attribute
                ),
            );
        }
        if group.resource_attribute.is_empty() {
            error(
                &["group_by", "resource_attribute"],
                "resource_attribute must not be empty".into(),
            );
        }
        if group.max_open_files == 0 {
            error(
                &["group_by", "max_open_files"],
                "max_open_files must be at least 1".into(),
            );
        }
        if group.default_segment.as_deref() == Some("") {
            error(
                &["group_by", "default_segment"],
                "default_segment must not be empty; leave it out to drop resources without \
                 the attribute"
                    .into(),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Where the value under `keys` was written, or the closest enclosing section.
fn position(config: &ComponentConfig, keys: &[&str]) -> Pos {
    let mut node: &Node = &config.node;
    let mut pos = config.pos.clone();
    for key in keys {
        match node.as_map().and_then(|m| m.get(key)) {
            Some(child) => {
                pos = child.pos.clone();
                node = child;
            }
            None => break,
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{ComponentId, ComponentKind, parse_yaml};

    fn component(yaml: &str) -> ComponentConfig {
        ComponentConfig {
            kind: ComponentKind::Exporter,
            id: ComponentId::with_name("file", "t"),
            pos: Pos::new("test.yaml", 1, 1),
            path: "exporters.file/t".into(),
            node: parse_yaml("test.yaml", yaml).unwrap(),
        }
    }

    fn load(yaml: &str) -> Result<FileConfig, ConfigErrors> {
        let c = component(yaml);
        let cfg: FileConfig = sluice_pipeline::decode_config(&c)?;
        validate(&cfg, &c)?;
        Ok(cfg)
    }

    #[test]
    fn defaults_follow_the_otel_file_exporter() {
        let cfg = load("path: out.jsonl\nrotation: {}\n").unwrap();
        assert_eq!(cfg.format, Format::Json);
        assert_eq!(cfg.compression, Compression::None);
        assert!(!cfg.append);
        assert_eq!(cfg.flush_interval.0, StdDuration::from_secs(1));
        let r = cfg.rotation.0.unwrap();
        assert_eq!(r.max_bytes(), 100 * 1024 * 1024);
        assert_eq!((r.max_days, r.max_backups, r.localtime), (0, 100, false));
        assert!(!cfg.group_by.enabled);
        assert_eq!(cfg.group_by.resource_attribute, "fileexporter.path_segment");
        assert_eq!(cfg.group_by.max_open_files, 100);
        assert!(load("path: out.jsonl").unwrap().rotation.0.is_none());
        // The upstream README's `rotation:` with no value turns it on with the defaults.
        let bare = load("path: out.jsonl\nrotation:\n")
            .unwrap()
            .rotation
            .0
            .unwrap();
        assert_eq!(bare.max_backups, 100);
        assert!(
            load("path: o\nrotation: {enabled: false}\n")
                .unwrap()
                .rotation
                .0
                .is_none()
        );
    }

    #[test]
    fn directories_levels_and_encodings() {
        let cfg =
            load("path: d/o\ncreate_directory: true\ndirectory_permissions: \"0700\"\n").unwrap();
        assert_eq!(cfg.directory_mode(), 0o700);
        let e = load("path: d/o\ndirectory_permissions: \"0700\"\n").unwrap_err();
        assert!(
            e.to_string().contains("needs `create_directory: true`"),
            "{e}"
        );
        assert!(load("path: o\ncreate_directory: true\ndirectory_permissions: \"999\"\n").is_err());
        assert!(load("path: o\ncompression: zstd\ncompression_params:\n  level: 19\n").is_ok());
        assert!(load("path: o\ncompression: zstd\ncompression_params:\n  level: 30\n").is_err());
        assert!(load("path: o\ncompression_params:\n  level: 3\n").is_err());
        let e = load("path: o\nencoding: otlp_encoding\n").unwrap_err();
        assert!(e.to_string().contains("not supported yet"), "{e}");
    }

    #[test]
    fn fractional_megabytes_and_compression_names() {
        let cfg = load("path: o\nrotation:\n  max_megabytes: 0.01\ncompression: zstd\n").unwrap();
        assert_eq!(cfg.rotation.0.unwrap().max_bytes(), 10485);
        assert_eq!(cfg.compression, Compression::Zstd);
        assert_eq!(
            load("path: o\ncompression: gzip").unwrap().compression,
            Compression::Gzip
        );
        assert_eq!(
            load("path: o\ncompression: \"\"").unwrap().compression,
            Compression::None
        );
        assert!(load("path: o\ncompression: lz4").is_err());
    }

    #[test]
    fn errors_name_the_key_and_its_line() {
        let e = load("path: out.jsonl\ngroup_by:\n  enabled: true\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("exporters.file/t.path"), "{text}");
        assert!(text.contains("test.yaml:1:"), "{text}");
        assert!(text.contains("exactly one `*`"), "{text}");

        let e = load("path: a/*/b*.jsonl\ngroup_by:\n  enabled: true\n").unwrap_err();
        assert!(e.to_string().contains("found 2"), "{e}");

        let e = load("path: o\nrotation:\n  max_megabytes: 0\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("exporters.file/t.rotation.max_megabytes"),
            "{text}"
        );
        assert!(text.contains("test.yaml:3:"), "{text}");

        let e = load("path: o*\ngroup_by:\n  enabled: true\n  max_open_files: 0\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("exporters.file/t.group_by.max_open_files"),
            "{e}"
        );
        assert!(load("path: o\nrotaton: {}\n").is_err());
        assert!(load("path: o*\ngroup_by:\n  enabled: true\n").is_ok());
    }
}
