//! Which file a resource goes to (`group_by`), and the set of open files with its
//! least-recently-used limit.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::Compression;
use super::rotation::Policy;
use super::writer::Output;

/// Longest segment put in a file name; longer values are cut and get a hash suffix, since
/// most file systems refuse names over 255 bytes.
const MAX_SEGMENT: usize = 200;

/// The value of `key` among a resource's attributes as text, if it is a non-empty string,
/// integer, double or boolean.
pub fn attribute_text(resource: Option<&Resource>, key: &str) -> Option<String> {
    let kv = resource?.attributes.iter().find(|kv| kv.key == key)?;
    let text = match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BoolValue(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// Makes an attribute value safe as one file-name component, reversibly, so two values never
/// share a file: ASCII letters, digits, `-`, `_` and `.` stay; every other byte of the UTF-8
/// becomes `%XX`, and so does a leading `.` (no `..`, no hidden files). `/` is thus `%2F`
/// and the value can never leave the directory the template puts it in.
pub fn sanitize(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, byte) in value.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_') || (byte == b'.' && i > 0);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.len() > MAX_SEGMENT {
        // `~` is never produced above, so a shortened name cannot equal another value's.
        out.truncate(MAX_SEGMENT);
        out.push_str(&format!("~{:016x}", fnv1a(value.as_bytes())));
    }
    out
}

/// A stable hash (unlike std's, which may change between Rust releases) for file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A `path` with one `*` to be replaced by a sanitized segment.
#[derive(Clone, Debug)]
pub struct Template {
    prefix: String,
    suffix: String,
}

impl Template {
    /// `None` unless `path` holds exactly one `*` (configuration validation checks that).
    pub fn new(path: &Path) -> Option<Template> {
        let text = path.to_string_lossy();
        let (prefix, suffix) = text.split_once('*')?;
        if suffix.contains('*') {
            return None;
        }
        Some(Template {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The file for a raw attribute value.
    pub fn path_for(&self, value: &str) -> PathBuf {
        PathBuf::from(format!("{}{}{}", self.prefix, sanitize(value), self.suffix))
    }
}

struct Slot {
    output: Output,
    /// The batch that last used it, for least-recently-used eviction.
    used: u64,
}

/// Every file this exporter has open, at most `max_open` between batches.
pub struct Files {
    compression: Compression,
    level: i32,
    append: bool,
    policy: Option<Policy>,
    max_open: usize,
    open: HashMap<PathBuf, Slot>,
    /// Files opened since start: `append: false` empties a file only the first time, so a
    /// file closed for the limit and reopened keeps what it had.
    opened: HashSet<PathBuf>,
    batch: u64,
}

impl Files {
    pub fn new(
        compression: Compression,
        level: i32,
        append: bool,
        policy: Option<Policy>,
        max_open: usize,
    ) -> Files {
        Files {
            compression,
            level,
            append,
            policy,
            max_open: max_open.max(1),
            open: HashMap::new(),
            opened: HashSet::new(),
            batch: 0,
        }
    }

    /// Starts a batch: files it uses are not closed until it ends, even beyond the limit.
    pub fn begin_batch(&mut self) {
        self.batch += 1;
    }

    /// Closes least-recently-used files until at most `max_open` remain.
    pub fn end_batch(&mut self) {
        self.evict(self.max_open, u64::MAX);
    }

    /// The open file at `path`, opening it (and closing others past the limit) if needed.
    pub fn get(&mut self, path: &Path) -> io::Result<&mut Output> {
        if !self.open.contains_key(path) {
            self.evict(self.max_open.saturating_sub(1), self.batch);
            let truncate = !self.append && !self.opened.contains(path);
            let output = Output::open(path, self.compression, truncate, self.level)?;
            if let Some(policy) = &self.policy {
                super::rotation::prune(path, policy, policy.now());
            }
            self.opened.insert(path.to_path_buf());
            self.open
                .insert(path.to_path_buf(), Slot { output, used: 0 });
        }
        let batch = self.batch;
        let slot = self
            .open
            .get_mut(path)
            .ok_or_else(|| io::Error::other("file vanished from the open set"))?;
        slot.used = batch;
        Ok(&mut slot.output)
    }

    /// Opens `path` if needed and makes it ready to take `incoming` bytes (see
    /// [`Output::prepare`]).
    pub fn prepare(&mut self, path: &Path, incoming: u64) -> io::Result<()> {
        self.get(path)?;
        let slot = self
            .open
            .get_mut(path)
            .ok_or_else(|| io::Error::other("file vanished from the open set"))?;
        slot.output.prepare(incoming, self.policy.as_ref())
    }

    /// An already open file, without touching its recency.
    pub fn get_open(&mut self, path: &Path) -> Option<&mut Output> {
        self.open.get_mut(path).map(|s| &mut s.output)
    }

    #[cfg(test)]
    pub fn open_paths(&self) -> Vec<PathBuf> {
        self.open.keys().cloned().collect()
    }

    /// Closes files used before batch `before`, oldest first, until `keep` remain. A file
    /// that cannot be closed stays open (over the limit) rather than lose its data.
    fn evict(&mut self, keep: usize, before: u64) {
        if self.open.len() <= keep {
            return;
        }
        let mut candidates: Vec<(u64, PathBuf)> = self
            .open
            .iter()
            .filter(|(_, s)| s.used < before)
            .map(|(p, s)| (s.used, p.clone()))
            .collect();
        candidates.sort();
        for (_, path) in candidates {
            if self.open.len() <= keep {
                break;
            }
            let Some(slot) = self.open.get_mut(&path) else {
                continue;
            };
            match slot.output.close(false) {
                Ok(()) => {
                    self.open.remove(&path);
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot close file beyond max_open_files; keeping it open"
                ),
            }
        }
    }

    /// Flushes every open file; returns the first error after trying them all.
    pub fn flush_all(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for slot in self.open.values_mut() {
            if let Err(e) = slot.output.flush()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Ends every stream and closes every file; the errors, per path, of those that failed.
    pub fn close_all(&mut self, sync: bool) -> Vec<(PathBuf, usize, io::Error)> {
        let mut failed = Vec::new();
        for (path, mut slot) in self.open.drain() {
            if let Err(e) = slot.output.close(sync) {
                failed.push((path, slot.output.pending_len(), e));
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

    #[test]
    fn sanitizing_keeps_values_inside_the_directory_and_apart() {
        assert_eq!(sanitize("checkout-svc_1.2"), "checkout-svc_1.2");
        assert_eq!(sanitize("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_eq!(sanitize(".."), "%2E.");
        assert_eq!(sanitize(".hidden"), "%2Ehidden");
        assert_eq!(sanitize("a/b"), "a%2Fb");
        assert_eq!(sanitize("a\\b"), "a%5Cb");
        assert_eq!(sanitize("a b"), "a%20b");
        assert_eq!(sanitize("50%"), "50%25");
        assert_eq!(sanitize("café"), "caf%C3%A9");
        assert_ne!(sanitize("a/b"), sanitize("a%2Fb"));
        for value in ["../x", "/abs", "a/../../b", "..", "."] {
            let s = sanitize(value);
            assert!(!s.contains('/') && s != "." && s != "..", "{value} → {s}");
        }
        let long = "x".repeat(300);
        let s = sanitize(&long);
        assert!(s.len() < 255);
        assert_ne!(s, sanitize(&"x".repeat(301)));
    }

    #[test]
    fn template_places_the_segment() {
        let t = Template::new(Path::new("/data/logs-*.jsonl")).unwrap();
        assert_eq!(t.path_for("a/b"), PathBuf::from("/data/logs-a%2Fb.jsonl"));
        let t = Template::new(Path::new("/data/*/out.jsonl")).unwrap();
        assert_eq!(t.path_for(".."), PathBuf::from("/data/%2E./out.jsonl"));
        assert!(Template::new(Path::new("/data/out.jsonl")).is_none());
        assert!(Template::new(Path::new("/data/*/*.jsonl")).is_none());
    }

    #[test]
    fn attribute_values_as_text() {
        let resource = Resource {
            attributes: vec![
                KeyValue {
                    key: "s".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("v".into())),
                    }),
                    ..Default::default()
                },
                KeyValue {
                    key: "i".into(),
                    value: Some(AnyValue {
                        value: Some(Value::IntValue(7)),
                    }),
                    ..Default::default()
                },
                KeyValue {
                    key: "empty".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(String::new())),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(attribute_text(Some(&resource), "s").as_deref(), Some("v"));
        assert_eq!(attribute_text(Some(&resource), "i").as_deref(), Some("7"));
        assert_eq!(attribute_text(Some(&resource), "empty"), None);
        assert_eq!(attribute_text(Some(&resource), "missing"), None);
        assert_eq!(attribute_text(None, "s"), None);
    }

    #[test]
    fn least_recently_used_files_are_closed_and_reopened_for_appending() {
        let dir = tempfile::tempdir().unwrap();
        let t = Template::new(&dir.path().join("out-*.jsonl")).unwrap();
        let (a, b, c) = (t.path_for("a"), t.path_for("b"), t.path_for("c"));
        let mut files = Files::new(Compression::None, 0, false, None, 2);
        let write = |files: &mut Files, path: &Path, text: &str| {
            files.begin_batch();
            let out = files.get(path).unwrap();
            out.prepare(text.len() as u64, None).unwrap();
            out.append(text.as_bytes()).unwrap();
            files.end_batch();
        };
        write(&mut files, &a, "a1\n");
        write(&mut files, &b, "b1\n");
        write(&mut files, &a, "a2\n");
        // `b` is now the least recently used: opening `c` closes it, not `a`.
        write(&mut files, &c, "c1\n");
        let mut open = files.open_paths();
        open.sort();
        assert_eq!(open, vec![a.clone(), c.clone()]);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "b1\n");
        // Reopened for appending, even though `append` is false: it was already started.
        write(&mut files, &b, "b2\n");
        assert_eq!(files.open_paths().len(), 2);
        assert!(files.close_all(false).is_empty());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "a1\na2\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "b1\nb2\n");
        assert_eq!(std::fs::read_to_string(&c).unwrap(), "c1\n");
    }

    #[test]
    fn files_of_one_batch_stay_open_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let t = Template::new(&dir.path().join("*.jsonl")).unwrap();
        let mut files = Files::new(Compression::Gzip, 0, false, None, 1);
        files.begin_batch();
        for name in ["a", "b", "c"] {
            files
                .get(&t.path_for(name))
                .unwrap()
                .append(b"x\n")
                .unwrap();
        }
        assert_eq!(files.open_paths().len(), 3);
        files.end_batch();
        assert_eq!(files.open_paths().len(), 1);
        assert!(files.close_all(false).is_empty());
        for name in ["a", "b", "c"] {
            let bytes = std::fs::read(t.path_for(name)).unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                &mut text,
            )
            .unwrap();
            assert_eq!(text, "x\n");
        }
    }
}
