//! `receivers: filelog:` (alias `file_log`), with the OTel Collector's keys.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_config::{ByteSize, Duration};
use sluice_pipeline::config_keys::NoEffect;

/// Keys upstream has that cannot change anything in sluice.
pub const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "initial_buffer_size",
        "the first size of Go's read buffer; sluice reads in fixed blocks and grows a line's buffer only up to max_log_size",
    ),
    NoEffect::new(
        "id",
        "the id of upstream's internal file_input operator; the receiver's own id names it in sluice",
    ),
    NoEffect::new(
        "type",
        "the type of upstream's internal file_input operator; it is always a file input here",
    ),
    NoEffect::new(
        "output",
        "wires upstream's internal file_input operator to the first of `operators`, which sluice always does",
    ),
];

/// Where reading starts in a file found at start-up (files found later are read whole).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    Beginning,
    #[default]
    End,
}

/// What to do with a file whose content (same first bytes) became shorter than what was read:
/// it was truncated (copytruncate rotation) and written again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTruncate {
    /// Read nothing until the file grows past the old offset, then only what follows it
    /// (upstream's default; loses what was written before that).
    Ignore,
    /// Read the file again from its start (sluice's default: nothing written after the
    /// truncation is lost).
    ReadWholeFile,
    /// Read only what is appended after the truncation was noticed.
    ReadNew,
}

/// What to do with a log entry longer than `max_log_size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxLogSizeBehavior {
    /// Emit it as several entries of at most `max_log_size` (default).
    #[default]
    Split,
    /// Emit the first `max_log_size` bytes and skip the rest of the entry.
    Truncate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain files (default; `""` upstream).
    #[default]
    #[serde(rename = "")]
    None,
    /// Every file is gzip.
    Gzip,
    /// Gzip when a file starts with the gzip magic bytes, plain otherwise.
    Auto,
}

/// `multiline`: entries split on a pattern instead of newlines.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// A regular expression matching the start of every entry.
    pub line_start_pattern: String,
    /// A regular expression matching the end of every entry.
    pub line_end_pattern: String,
    /// Leave the matched pattern out of the entry (default false).
    pub omit_pattern: bool,
}

/// `header`: metadata lines at the top of each file (needs `start_at: beginning`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// A regular expression every header line matches; the first line that does not ends
    /// the header.
    pub pattern: String,
    /// Operators that turn each header line into attributes (taken from the raw section).
    pub metadata_operators: serde::de::IgnoredAny,
}

/// `ordering_criteria`: of the matched files, read only the top N by a sort.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderingCriteria {
    /// Named groups extracted from each file path, for `sort_by.regex_key`.
    pub regex: String,
    /// Named groups that split files into groups sorted separately.
    pub group_by: String,
    /// Files kept per group after sorting (default 1).
    pub top_n: Option<usize>,
    /// Sorts applied in order.
    pub sort_by: Vec<SortRule>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortRule {
    /// The group of `regex` sorted on (not for `mtime`).
    #[serde(default)]
    pub regex_key: String,
    /// `numeric`, `alphabetical`, `timestamp` or `mtime`.
    pub sort_type: String,
    /// Time zone of `timestamp` values (default UTC).
    #[serde(default)]
    pub location: Option<String>,
    /// strptime layout of `timestamp` values.
    #[serde(default, alias = "format")]
    pub layout: Option<String>,
    /// Ascending instead of descending (default false: newest/largest first).
    #[serde(default)]
    pub ascending: bool,
}

/// `retry_on_failure`: what happens when the pipeline refuses a batch.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOnFailure {
    /// Retry a refused batch (upstream default false when the section is written; sluice
    /// retries without end when the section is absent).
    pub enabled: bool,
    /// First wait (default 1s).
    pub initial_interval: Duration,
    /// Longest wait (default 30s).
    pub max_interval: Duration,
    /// Give up on a batch after this long and move past it (default 5m; 0 never).
    pub max_elapsed_time: Duration,
}

impl Default for RetryOnFailure {
    fn default() -> Self {
        RetryOnFailure {
            enabled: false,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// The receiver's keys (`operators` and `header.metadata_operators` are built from the raw
/// section, so their positions reach the errors).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilelogConfig {
    /// Glob patterns (`*`, `?`, `[..]`, `{a,b}`, `**`) of the files to read; required.
    pub include: Vec<String>,
    /// Glob patterns of matched files not to read.
    pub exclude: Vec<String>,
    /// Skip files not modified for this long (default: none skipped).
    pub exclude_older_than: Option<Duration>,
    /// Read only the top files of a sort (default: all matched files).
    pub ordering_criteria: Option<OrderingCriteria>,
    /// `end` (default) or `beginning`: where to start in files found at start-up that no
    /// checkpoint knows.
    pub start_at: StartAt,
    /// How often to look for new files and new data (default 200ms).
    pub poll_interval: Duration,
    /// Most files open at once (default 1024, at least 2); more are read in turns.
    pub max_concurrent_files: usize,
    /// With more files than fit at once, most turns per poll (default 0: no limit).
    pub max_batches: usize,
    /// Bytes at the start of a file that identify it (default 1000, at least 16).
    pub fingerprint_size: ByteSize,
    /// See `NO_EFFECT`.
    pub initial_buffer_size: Option<ByteSize>,
    /// Longest entry (default 1MiB).
    pub max_log_size: ByteSize,
    /// `split` (default) or `truncate` for longer entries.
    pub max_log_size_behavior: MaxLogSizeBehavior,
    /// The files' encoding (default `utf-8`; `nop` for raw bytes).
    pub encoding: String,
    /// Split entries on a pattern instead of newlines.
    pub multiline: Option<MultilineConfig>,
    /// Keep spaces at the start of entries (default false).
    pub preserve_leading_whitespaces: bool,
    /// Keep spaces at the end of entries (default false).
    pub preserve_trailing_whitespaces: bool,
    /// Emit an unterminated last entry after the file has not grown for this long
    /// (default 500ms; 0 waits for its end forever).
    pub force_flush_period: Duration,
    /// Metadata lines at the top of each file.
    pub header: Option<HeaderConfig>,
    /// Delete each file once everything read from it is delivered (default false).
    pub delete_after_read: bool,
    /// `log.file.name` (default true).
    pub include_file_name: bool,
    /// `log.file.path` (default false).
    pub include_file_path: bool,
    /// `log.file.name_resolved`: the name after following symlinks (default false).
    pub include_file_name_resolved: bool,
    /// `log.file.path_resolved` (default false).
    pub include_file_path_resolved: bool,
    /// `log.file.owner.name` (default false).
    pub include_file_owner_name: bool,
    /// `log.file.owner.group.name` (default false).
    pub include_file_owner_group_name: bool,
    /// `log.file.permissions`, octal like `644` (default false).
    pub include_file_permissions: bool,
    /// `log.file.record_number`: the entry's number in its file, from 1 (default false).
    pub include_file_record_number: bool,
    /// `log.file.record_offset`: the byte offset of the entry in its file (default false).
    pub include_file_record_offset: bool,
    /// ``, `gzip` or `auto`.
    pub compression: Compression,
    /// Polls a vanished file's checkpoint is kept, to recognise it should it come back
    /// (default 0: three polls, as upstream keeps its last generations).
    pub polls_to_archive: usize,
    /// Skip a file in a poll while another process holds an exclusive lock on it.
    pub acquire_fs_lock: bool,
    /// What to do when a file is truncated (default `read_whole_file`; upstream `ignore`).
    pub on_truncate: Option<OnTruncate>,
    /// Tell the kernel to drop read pages from its cache (default false).
    pub file_cache_advise: bool,
    /// Attributes added to every entry (values may embed `EXPR(...)`).
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes added to every entry (values may embed `EXPR(...)`).
    pub resource: BTreeMap<String, String>,
    /// The operators (built from the raw section).
    pub operators: Option<serde::de::IgnoredAny>,
    /// A `file_storage` extension id to keep checkpoints in (default: memory only).
    pub storage: Option<String>,
    /// What to do when the pipeline refuses a batch.
    pub retry_on_failure: Option<RetryOnFailure>,
}

impl Default for FilelogConfig {
    fn default() -> Self {
        FilelogConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            exclude_older_than: None,
            ordering_criteria: None,
            start_at: StartAt::End,
            poll_interval: Duration::from_millis(200),
            max_concurrent_files: 1024,
            max_batches: 0,
            fingerprint_size: ByteSize(1000),
            initial_buffer_size: None,
            max_log_size: ByteSize(1024 * 1024),
            max_log_size_behavior: MaxLogSizeBehavior::Split,
            encoding: "utf-8".to_string(),
            multiline: None,
            preserve_leading_whitespaces: false,
            preserve_trailing_whitespaces: false,
            force_flush_period: Duration::from_millis(500),
            header: None,
            delete_after_read: false,
            include_file_name: true,
            include_file_path: false,
            include_file_name_resolved: false,
            include_file_path_resolved: false,
            include_file_owner_name: false,
            include_file_owner_group_name: false,
            include_file_permissions: false,
            include_file_record_number: false,
            include_file_record_offset: false,
            compression: Compression::None,
            polls_to_archive: 0,
            acquire_fs_lock: false,
            on_truncate: None,
            file_cache_advise: false,
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            operators: None,
            storage: None,
            retry_on_failure: None,
        }
    }
}

/// The smallest fingerprint upstream accepts.
pub const MIN_FINGERPRINT_SIZE: u64 = 16;

impl FilelogConfig {
    /// Problems serde cannot see, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.include.is_empty() {
            out.push((
                "include",
                "at least one glob pattern is required".to_string(),
            ));
        }
        if self.max_log_size.0 == 0 {
            out.push(("max_log_size", "must be greater than 0".to_string()));
        }
        if self.max_concurrent_files < 2 {
            out.push(("max_concurrent_files", "must be at least 2".to_string()));
        }
        if self.fingerprint_size.0 < MIN_FINGERPRINT_SIZE {
            out.push((
                "fingerprint_size",
                format!("must be at least {MIN_FINGERPRINT_SIZE} bytes"),
            ));
        }
        if self.poll_interval.0.is_zero() {
            out.push(("poll_interval", "must be greater than 0".to_string()));
        }
        if self.delete_after_read && self.start_at == StartAt::End {
            out.push((
                "delete_after_read",
                "cannot be used with `start_at: end` (a file would be deleted unread)".to_string(),
            ));
        }
        if self.header.is_some() && self.start_at == StartAt::End {
            out.push((
                "header",
                "needs `start_at: beginning` (the header is at the start of each file)".to_string(),
            ));
        }
        if let Some(m) = &self.multiline {
            if !m.line_start_pattern.is_empty() && !m.line_end_pattern.is_empty() {
                out.push((
                    "multiline",
                    "set only one of `line_start_pattern` and `line_end_pattern`".to_string(),
                ));
            }
            if self.encoding.eq_ignore_ascii_case("nop")
                && (!m.line_start_pattern.is_empty() || !m.line_end_pattern.is_empty())
            {
                out.push((
                    "multiline",
                    "patterns cannot be used with `encoding: nop` (raw bytes are not split)"
                        .to_string(),
                ));
            }
        }
        if let Some(r) = &self.retry_on_failure
            && r.enabled
            && r.initial_interval.0.is_zero()
        {
            out.push((
                "retry_on_failure.initial_interval",
                "must be greater than 0".to_string(),
            ));
        }
        out
    }

    /// `on_truncate` as configured, else sluice's default.
    pub fn on_truncate(&self) -> OnTruncate {
        self.on_truncate.unwrap_or(OnTruncate::ReadWholeFile)
    }
}
