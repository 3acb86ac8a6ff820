//! Checkpoints that move only with acknowledgements.
//!
//! The reader numbers what it hands over (a batch, or only positions moved without data) and
//! says, for each file it touched, how far everything before is accounted for. The
//! committer applies those positions in hand-over order, and only once every earlier hand-over
//! was acknowledged by the pipeline: a batch still unacknowledged holds back every later
//! position, of every file. What it applied is what gets saved, so after a crash reading
//! resumes no later than the oldest line not yet delivered (at least once).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How one file is remembered: its identity and how far it was read and delivered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's first bytes (hex), which identify it.
    pub fingerprint: String,
    /// Bytes delivered (or skipped on purpose) from the start of the file.
    pub offset: u64,
    /// Entries counted up to `offset` (for `log.file.record_number`).
    #[serde(default)]
    pub record_number: u64,
    /// Where it was last seen.
    pub path: String,
    #[serde(default)]
    pub device: Option<u64>,
    #[serde(default)]
    pub inode: Option<u64>,
    /// Creation time (ns), which tells a new file that reused an inode from the old one.
    #[serde(default)]
    pub born: Option<i64>,
    /// Whether the header (if configured) has been read, and what it said.
    #[serde(default)]
    pub header_done: bool,
    #[serde(default)]
    pub header: BTreeMap<String, serde_json::Value>,
}

/// How far everything of one file is accounted for as of one hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub key: u32,
    pub offset: u64,
    pub record_number: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FileUpdate {
    /// A file's identity. New: remembered at once with the record's offset, since nothing of
    /// it has been handed over yet. Known: its fingerprint, inode, path and header are
    /// replaced only when the hand-over is applied, together with the marks of that
    /// hand-over, since the offsets saved with an identity must be counted in that identity
    /// (a truncated file read again has a new fingerprint and offsets from 0; saving the new
    /// fingerprint with the old offset would resume past lines never delivered).
    Known { key: u32, record: FileRecord },
    /// The file is no longer tracked (in order: after everything handed over before).
    Forget { key: u32 },
    /// Delete the file once everything up to `size` is delivered (`delete_after_read`).
    DeleteWhenDone { key: u32, size: u64 },
}

struct Pending {
    done: bool,
    marks: Vec<Mark>,
    ordered: Vec<FileUpdate>,
}

#[derive(Default)]
pub struct Committer {
    files: BTreeMap<u32, FileRecord>,
    window: BTreeMap<u64, Pending>,
    next_seq: u64,
    dirty: bool,
    deletes: HashMap<u32, u64>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    files: Vec<FileRecord>,
}

impl Committer {
    pub fn new(files: BTreeMap<u32, FileRecord>) -> Committer {
        Committer {
            files,
            ..Committer::default()
        }
    }

    /// Takes a hand-over: the updates and marks the reader made since the last one, with or
    /// without a batch (without one it is accounted for at once). Returns its number.
    pub fn submit(&mut self, updates: Vec<FileUpdate>, marks: Vec<Mark>, with_batch: bool) -> u64 {
        let mut ordered = Vec::new();
        for update in updates {
            match update {
                FileUpdate::Known { key, record } if !self.files.contains_key(&key) => {
                    self.files.insert(key, record);
                    self.dirty = true;
                }
                other => ordered.push(other),
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.window.insert(
            seq,
            Pending {
                done: !with_batch,
                marks,
                ordered,
            },
        );
        seq
    }

    /// The batch of hand-over `seq` is accounted for (delivered, or given up on).
    pub fn complete(&mut self, seq: u64) {
        if let Some(p) = self.window.get_mut(&seq) {
            p.done = true;
        }
    }

    /// Applies every hand-over whose predecessors are all accounted for; returns the files
    /// now fully delivered that `delete_after_read` asked to delete.
    pub fn advance(&mut self) -> Vec<(PathBuf, FileRecord)> {
        while let Some(entry) = self.window.first_entry() {
            if !entry.get().done {
                break;
            }
            let pending = entry.remove();
            for mark in pending.marks {
                if let Some(file) = self.files.get_mut(&mark.key)
                    && (file.offset, file.record_number) != (mark.offset, mark.record_number)
                {
                    file.offset = mark.offset;
                    file.record_number = mark.record_number;
                    self.dirty = true;
                }
            }
            for update in pending.ordered {
                match update {
                    FileUpdate::Forget { key } => {
                        self.files.remove(&key);
                        self.deletes.remove(&key);
                        self.dirty = true;
                    }
                    FileUpdate::DeleteWhenDone { key, size } => {
                        self.deletes.insert(key, size);
                    }
                    // A file forgotten since is not brought back.
                    FileUpdate::Known { key, record } => {
                        if let Some(known) = self.files.get_mut(&key) {
                            known.fingerprint = record.fingerprint;
                            known.path = record.path;
                            known.device = record.device;
                            known.inode = record.inode;
                            known.born = record.born;
                            known.header_done = record.header_done;
                            known.header = record.header;
                            self.dirty = true;
                        }
                    }
                }
            }
        }
        let mut ready = Vec::new();
        self.deletes.retain(|key, size| match self.files.get(key) {
            Some(file) if file.offset >= *size => {
                ready.push((PathBuf::from(&file.path), file.clone()));
                false
            }
            Some(_) => true,
            None => false,
        });
        ready
    }

    /// Hand-overs not yet accounted for.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.window.values().filter(|p| !p.done).count()
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Asks for a save even with nothing changed.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// The state to save (and marks it saved).
    pub fn snapshot(&mut self) -> Vec<u8> {
        self.dirty = false;
        let saved = Saved {
            version: 1,
            files: self.files.values().cloned().collect(),
        };
        serde_json::to_vec(&saved).unwrap_or_default()
    }

    #[cfg(test)]
    pub fn record(&self, key: u32) -> Option<&FileRecord> {
        self.files.get(&key)
    }
}

/// Reads a saved state; `Err` says why it cannot be used.
pub fn load(bytes: &[u8]) -> Result<Vec<FileRecord>, String> {
    let saved: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if saved.version != 1 {
        return Err(format!("unknown checkpoint version {}", saved.version));
    }
    Ok(saved.files)
}

pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(key: u32, offset: u64) -> FileUpdate {
        FileUpdate::Known {
            key,
            record: FileRecord {
                fingerprint: "61".into(),
                offset,
                path: format!("/f{key}"),
                ..FileRecord::default()
            },
        }
    }

    fn mark(key: u32, offset: u64) -> Mark {
        Mark {
            key,
            offset,
            record_number: 0,
        }
    }

    #[test]
    fn positions_wait_for_every_earlier_batch() {
        let mut c = Committer::default();
        let first = c.submit(vec![known(1, 0), known(2, 0)], vec![mark(1, 10)], true);
        let second = c.submit(vec![], vec![mark(2, 5), mark(1, 20)], true);
        let third = c.submit(vec![], vec![mark(2, 9)], false);
        // The second batch is acknowledged first: nothing moves yet.
        c.complete(second);
        c.advance();
        assert_eq!(c.record(1).unwrap().offset, 0);
        assert_eq!(c.record(2).unwrap().offset, 0);
        c.complete(first);
        c.advance();
        assert_eq!(c.record(1).unwrap().offset, 20);
        assert_eq!(c.record(2).unwrap().offset, 9);
        assert_eq!(c.in_flight(), 0);
        let _ = third;
        // Saved and loaded back.
        let saved = c.snapshot();
        assert!(!c.is_dirty());
        let files = load(&saved).unwrap();
        assert_eq!(files.len(), 2);
        assert!(load(b"{oops").is_err());
    }

    #[test]
    fn identity_changes_wait_for_the_offset_they_belong_to() {
        let mut c = Committer::default();
        let first = c.submit(vec![known(1, 0)], vec![mark(1, 100)], true);
        c.complete(first);
        c.advance();
        // Truncated and read again (`read_whole_file`): a new fingerprint, inode and header
        // state, with offsets counted from 0 in the new content, in a batch not yet acknowledged.
        let rewritten = FileUpdate::Known {
            key: 1,
            record: FileRecord {
                fingerprint: "62".into(),
                offset: 0,
                path: "/f1".into(),
                inode: Some(7),
                header_done: true,
                ..FileRecord::default()
            },
        };
        let second = c.submit(vec![rewritten], vec![mark(1, 10)], true);
        c.advance();
        let saved = load(&c.snapshot()).unwrap();
        assert_eq!(
            (
                saved[0].fingerprint.as_str(),
                saved[0].offset,
                saved[0].inode
            ),
            ("61", 100, None),
            "the new identity was saved with the old offset"
        );
        assert!(!saved[0].header_done);
        c.complete(second);
        c.advance();
        let saved = load(&c.snapshot()).unwrap();
        assert_eq!(
            (
                saved[0].fingerprint.as_str(),
                saved[0].offset,
                saved[0].inode
            ),
            ("62", 10, Some(7))
        );
        assert!(saved[0].header_done);
        // An identity arriving after the file was forgotten does not bring it back.
        let third = c.submit(vec![FileUpdate::Forget { key: 1 }], vec![], false);
        let fourth = c.submit(vec![known(1, 0)], vec![], false);
        let _ = (third, fourth);
        c.advance();
        assert!(c.record(1).is_none());
    }

    #[test]
    fn forget_and_delete_happen_in_order() {
        let mut c = Committer::default();
        let a = c.submit(vec![known(1, 0)], vec![mark(1, 10)], true);
        c.submit(
            vec![FileUpdate::DeleteWhenDone { key: 1, size: 10 }],
            vec![],
            false,
        );
        assert!(c.advance().is_empty());
        c.complete(a);
        let deletes = c.advance();
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].0, PathBuf::from("/f1"));
        c.submit(vec![FileUpdate::Forget { key: 1 }], vec![], false);
        c.advance();
        assert!(c.record(1).is_none());
        assert_eq!(from_hex(&to_hex(b"\x00ab")).unwrap(), b"\x00ab");
    }
}
