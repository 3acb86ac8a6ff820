//! The reading thread: each poll finds the files, tells them apart by their first bytes (and
//! their inode and creation time, so a new file that reuses an inode is new), reads what was
//! added, cuts it into entries, runs the operators, and hands batches to the delivery task
//! with the positions they account for.
//!
//! Identity rules, in order, for each file found in a poll:
//! 1. the file we already read, at the same inode, still starting with the bytes we saw:
//!    read on from where we were (a rename keeps the inode: rotation by `mv` is this case);
//! 2. another inode starting with the bytes of a file we read (a copy: copytruncate's
//!    `app.log.1`, a move across file systems): read on in it from where we were;
//! 3. our inode, still starting the same, now shorter than what we read: truncated in place
//!    (`on_truncate`);
//! 4. anything else is a new file: read from its start (from its end only for files already
//!    there at the very first start, with `start_at: end`: once a checkpoint was saved,
//!    every file found later, even at a restart, is new since then and read whole).
//!
//! When a file we read was truncated or replaced and no found file continues it, its
//! directory is searched for a copy that does (`app.log` → `app.log.1` when only `app.log`
//! is included), so lines written before a copytruncate are read from the copy. At a
//! restart, a checkpointed file no longer at its path (rotated while sluice was down) is
//! looked for in its directory the same way, and also under any name by its inode, and its
//! unread tail is read from the checkpoint's offset.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, Read};
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;
use sluice_pipeline::admission::{Admission, Refusal};
use sluice_pipeline::{Batch, Logs};
use tokio::sync::mpsc;

use super::checkpoint::{FileRecord, FileUpdate, Mark, from_hex, to_hex};
use super::config::{Compression, OnTruncate};
use super::emit::{
    BatchBuilder, FileAttributeSet, LOG_FILE_RECORD_NUMBER, LOG_FILE_RECORD_OFFSET, file_attributes,
};
use super::encoding::{FileEncoding, utf16_len, utf16_to_utf8};
use super::finder::Finder;
use super::operators::expr::ExprString;
use super::operators::{Entry, Map, Operators, Origin, Span, Value};
use super::split::{Splitter, Token, trim};

/// Everything the reader needs from the config.
pub struct Settings {
    pub finder: Finder,
    pub start_at_beginning: bool,
    pub poll_interval: Duration,
    pub max_concurrent_files: usize,
    pub max_batches: usize,
    pub fingerprint_size: usize,
    pub max_log_size: usize,
    pub truncate_long_entries: bool,
    pub encoding: FileEncoding,
    pub splitter: Splitter,
    pub keep_leading: bool,
    pub keep_trailing: bool,
    pub force_flush: Option<Duration>,
    pub header: Option<HeaderSettings>,
    pub delete_after_read: bool,
    pub attribute_set: FileAttributeSet,
    pub record_number: bool,
    pub record_offset: bool,
    pub compression: Compression,
    pub archive_polls: usize,
    pub acquire_fs_lock: bool,
    pub on_truncate: OnTruncate,
    pub cache_advise: bool,
    pub attributes: Vec<(String, ExprString)>,
    pub resource: Vec<(String, ExprString)>,
}

pub struct HeaderSettings {
    pub pattern: Regex,
    pub operators: Operators,
}

/// What the reader hands to the delivery task.
pub struct Handover {
    pub batch: Option<Batch<Logs>>,
    pub updates: Vec<FileUpdate>,
    pub marks: Vec<Mark>,
}

/// Bytes read from one file in one turn before the others get theirs.
const READ_BUDGET: usize = 8 * 1024 * 1024;
/// The block read at a time.
const READ_BLOCK: usize = 64 * 1024;
/// A batch is handed over at this many records or this many bytes.
pub(super) const BATCH_RECORDS: usize = 4096;
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// A file gone from the globs is read for at least this long after it last grew (a writer
/// may still be writing to a file it renamed), then closed.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
    born: Option<i64>,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            device: meta.dev(),
            inode: meta.ino(),
            born: meta
                .created()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_nanos()).ok()),
        }
    }

    /// Same inode, and not a newer file that reused it.
    fn same(&self, other: &Identity) -> bool {
        self.device == other.device
            && self.inode == other.inode
            && match (self.born, other.born) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

struct Tracked {
    key: u32,
    path: PathBuf,
    identity: Option<Identity>,
    fingerprint: Vec<u8>,
    /// Bytes of the file consumed into entries (or skipped): where `pending` starts.
    offset: u64,
    /// Bytes read after `offset` that do not make a whole entry yet.
    pending: Vec<u8>,
    file: Option<File>,
    last_growth: Instant,
    record_number: u64,
    header_done: bool,
    header: Map,
    attributes: Map,
    /// Skipping the rest of an entry cut at `max_log_size` (`truncate`).
    truncating: bool,
    last_seen_poll: u64,
    size: u64,
    gzip: Option<bool>,
    /// Where a gzip file stands (unused for plain files).
    gz: GzProgress,
    /// `encoding: utf-16`: little-endian unless the file starts with a big-endian byte-order
    /// mark; decided once the file's first two bytes are known.
    utf16_le: Option<bool>,
    delete_sent: bool,
    /// The identity last told to the committer changed.
    meta_dirty: bool,
    /// Found in this poll (claimed by a found file).
    claimed: bool,
    /// Its inode was unlinked while we held it: no file found later is this one (a new
    /// file may get the same inode number, and even the same first bytes).
    deleted: bool,
}

impl Tracked {
    fn read_position(&self) -> u64 {
        self.offset + self.pending.len() as u64
    }

    fn record(&self) -> FileRecord {
        FileRecord {
            fingerprint: to_hex(&self.fingerprint),
            offset: self.offset,
            record_number: self.record_number,
            path: self.path.to_string_lossy().into_owned(),
            device: self.identity.map(|i| i.device),
            inode: self.identity.map(|i| i.inode),
            born: self.identity.and_then(|i| i.born),
            header_done: self.header_done,
            header: self
                .header
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        }
    }
}

struct Found {
    path: PathBuf,
    file: File,
    identity: Identity,
    size: u64,
    fingerprint: Vec<u8>,
}

pub struct Reader {
    s: Settings,
    operators: Operators,
    files: Vec<Tracked>,
    next_key: u32,
    polls: u64,
    first_poll: bool,
    /// A checkpoint was loaded: this is a restart, not the very first start, so `start_at`
    /// no longer applies (a file found now appeared while sluice was down) and checkpointed
    /// files that moved are looked for.
    resumed: bool,
    builder: BatchBuilder,
    updates: Vec<FileUpdate>,
    touched: BTreeSet<u32>,
    out: mpsc::Sender<Handover>,
    stop: Arc<AtomicBool>,
    admission: Admission,
    chunk_start: usize,
    emitted: Vec<Entry>,
    constant_attributes: Map,
    constant_resource: Map,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn read_fingerprint(file: &File, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        let n = file.read_at(&mut buf[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

impl Reader {
    /// A reader that starts from `restored` (a checkpoint's files, keyed as the committer
    /// keys them); `resumed` when a checkpoint was saved before (even one with no files).
    pub fn new(
        s: Settings,
        operators: Operators,
        restored: &BTreeMap<u32, FileRecord>,
        resumed: bool,
        out: mpsc::Sender<Handover>,
        stop: Arc<AtomicBool>,
        admission: Admission,
    ) -> Reader {
        let mut files = Vec::new();
        let mut next_key = 0;
        for (key, record) in restored {
            next_key = next_key.max(key + 1);
            let identity = match (record.device, record.inode) {
                (Some(device), Some(inode)) => Some(Identity {
                    device,
                    inode,
                    born: record.born,
                }),
                _ => None,
            };
            files.push(Tracked {
                key: *key,
                path: PathBuf::from(&record.path),
                identity,
                fingerprint: from_hex(&record.fingerprint).unwrap_or_default(),
                offset: record.offset,
                pending: Vec::new(),
                file: None,
                last_growth: Instant::now(),
                record_number: record.record_number,
                header_done: record.header_done,
                header: record
                    .header
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v.clone())))
                    .collect(),
                attributes: Map::new(),
                truncating: false,
                last_seen_poll: 0,
                size: 0,
                gzip: None,
                gz: GzProgress::at(record.offset),
                utf16_le: None,
                delete_sent: false,
                meta_dirty: false,
                claimed: false,
                deleted: false,
            });
        }
        let render_constants = |pairs: &[(String, ExprString)]| -> Map {
            let probe = Entry::default();
            pairs
                .iter()
                .filter(|(_, v)| v.is_constant())
                .filter_map(|(k, v)| v.render(&probe).ok().map(|v| (k.clone(), v)))
                .collect()
        };
        let constant_attributes = render_constants(&s.attributes);
        let constant_resource = render_constants(&s.resource);
        Reader {
            s,
            operators,
            files,
            next_key,
            polls: 0,
            first_poll: true,
            resumed,
            builder: BatchBuilder::default(),
            updates: Vec::new(),
            touched: BTreeSet::new(),
            out,
            stop,
            admission,
            chunk_start: 0,
            emitted: Vec::new(),
            constant_attributes,
            constant_resource,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Polls until told to stop.
    pub fn run(mut self) {
        while !self.stopping() {
            let busy = self.poll();
            let mut emitted = std::mem::take(&mut self.emitted);
            self.operators.flush(Instant::now(), false, &mut emitted);
            for e in emitted.drain(..) {
                self.push(e);
            }
            self.emitted = emitted;
            if !self.cut() {
                return;
            }
            if !busy {
                // Sleep in short steps so a stop is noticed quickly.
                let until = Instant::now() + self.s.poll_interval;
                while !self.stopping() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
        }
    }

    /// One poll; true when a file had more to read than one turn allowed.
    fn poll(&mut self) -> bool {
        self.polls += 1;
        let paths = self.s.finder.find();
        let chunk = (self.s.max_concurrent_files / 2).max(1);
        let mut busy = false;
        for t in &mut self.files {
            t.claimed = t.deleted;
        }
        let rounds;
        if paths.len() <= chunk {
            rounds = 1;
            busy |= self.process(&paths, true);
        } else {
            let chunks: Vec<&[PathBuf]> = paths.chunks(chunk).collect();
            let turns = if self.s.max_batches == 0 {
                chunks.len()
            } else {
                self.s.max_batches.min(chunks.len())
            };
            rounds = chunks.len().div_ceil(turns);
            for i in 0..turns {
                let index = (self.chunk_start + i) % chunks.len();
                busy |= self.process(chunks[index], false);
                if self.stopping() {
                    return false;
                }
            }
            self.chunk_start = (self.chunk_start + turns) % chunks.len();
        }
        if self.first_poll && self.resumed {
            self.recover_moved(&paths);
        }
        busy |= self.read_lost();
        self.expire(rounds);
        self.first_poll = false;
        busy
    }

    fn open(&self, path: &Path) -> Option<Found> {
        // Opening a FIFO (or a device) for reading can block until a writer comes: only
        // regular files are opened.
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        let file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let fingerprint = read_fingerprint(&file, self.s.fingerprint_size).ok()?;
        Some(Found {
            path: path.to_path_buf(),
            identity: Identity::of(&meta),
            size: meta.len(),
            fingerprint,
            file,
        })
    }

    /// Matches found files to tracked ones and reads them; true when one had more to read.
    fn process(&mut self, paths: &[PathBuf], keep_open: bool) -> bool {
        let mut found: Vec<Found> = Vec::new();
        for path in paths {
            let Some(f) = self.open(path) else { continue };
            // Nothing to identify an empty file by yet; it is looked at again next poll.
            if f.fingerprint.is_empty() {
                continue;
            }
            let duplicate = found
                .iter()
                .any(|o| o.identity.same(&f.identity) || o.fingerprint == f.fingerprint);
            if !duplicate {
                found.push(f);
            }
        }
        let mut claimed_by: Vec<Option<usize>> = vec![None; found.len()];
        // Tracked files whose inode no longer holds what we read (truncated or replaced).
        let mut displaced: Vec<usize> = Vec::new();
        // Rule 1: same inode, same start, not shorter.
        for (fi, f) in found.iter().enumerate() {
            let same_inode =
                |t: &Tracked| !t.claimed && t.identity.is_some_and(|i| i.same(&f.identity));
            let continued = self.files.iter().position(|t| {
                same_inode(t)
                    && f.fingerprint.starts_with(&t.fingerprint)
                    && f.size >= t.read_position()
            });
            if let Some(ti) = continued {
                self.files[ti].claimed = true;
                claimed_by[fi] = Some(ti);
                continue;
            }
            for (ti, t) in self.files.iter().enumerate() {
                if same_inode(t) {
                    displaced.push(ti);
                }
            }
        }
        // Rule 2: another inode starting with what we read.
        for (fi, f) in found.iter().enumerate() {
            if claimed_by[fi].is_some() {
                continue;
            }
            let candidate = self.files.iter().position(|t| {
                !t.claimed
                    && !t.fingerprint.is_empty()
                    && !t.identity.is_some_and(|i| i.same(&f.identity))
                    && f.fingerprint.starts_with(&t.fingerprint)
                    && f.size >= t.read_position()
            });
            if let Some(ti) = candidate {
                self.files[ti].claimed = true;
                claimed_by[fi] = Some(ti);
            }
        }
        // Copies outside the globs, for what was read from a file now truncated or replaced.
        let found_paths: Vec<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
        let found_set: HashSet<&Path> = found_paths.iter().map(PathBuf::as_path).collect();
        for &ti in &displaced {
            if !self.files[ti].claimed {
                self.find_continuation(ti, &found_set, false);
            }
        }
        // Rule 3: truncated in place.
        for (fi, f) in found.iter().enumerate() {
            if claimed_by[fi].is_some() {
                continue;
            }
            let Some(ti) = self.files.iter().position(|t| {
                !t.claimed
                    && t.identity.is_some_and(|i| i.same(&f.identity))
                    && (f.fingerprint.starts_with(&t.fingerprint)
                        || t.fingerprint.starts_with(&f.fingerprint))
            }) else {
                continue;
            };
            self.truncated(ti, f);
            self.files[ti].claimed = true;
            claimed_by[fi] = Some(ti);
        }
        // What a replaced inode held is gone: stop reading it through the old handle (it
        // now shows the new content), emitting a last partial entry it had.
        for ti in displaced {
            if !self.files[ti].claimed && self.files[ti].file.is_some() {
                self.close(ti, true);
            }
        }
        let mut busy = false;
        let mut order: Vec<usize> = Vec::new();
        for (fi, f) in found.into_iter().enumerate() {
            let ti = match claimed_by[fi] {
                Some(ti) => {
                    self.adopt(ti, f);
                    ti
                }
                None => self.track(f),
            };
            order.push(ti);
        }
        for ti in order {
            busy |= self.read(ti);
            if !keep_open {
                self.close(ti, false);
            }
            if self.stopping() {
                break;
            }
        }
        busy
    }

    /// A tracked file continues in `f` (same file, or a copy of it).
    fn adopt(&mut self, ti: usize, f: Found) {
        let polls = self.polls;
        let set = self.s.attribute_set;
        let fingerprint_size = self.s.fingerprint_size;
        let t = &mut self.files[ti];
        if t.path != f.path || t.attributes.is_empty() {
            t.attributes = file_attributes(set, &f.path);
            t.meta_dirty |= t.path != f.path;
            t.path = f.path;
        }
        if t.identity != Some(f.identity) {
            t.identity = Some(f.identity);
            t.meta_dirty = true;
            // A gzip member being decoded from the old inode is decoded again from this one.
            t.gz.abandon_member();
        }
        if f.fingerprint.len() > t.fingerprint.len() && t.fingerprint.len() < fingerprint_size {
            t.fingerprint = f.fingerprint;
            t.meta_dirty = true;
        }
        t.size = f.size;
        t.file = Some(f.file);
        t.last_seen_poll = polls;
        t.claimed = true;
    }

    /// A new file: from its start, or from its end when it was there at the very first
    /// start and `start_at: end`.
    fn track(&mut self, f: Found) -> usize {
        let offset = if self.first_poll && !self.s.start_at_beginning && !self.resumed {
            f.size
        } else {
            0
        };
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        let t = Tracked {
            key,
            attributes: file_attributes(self.s.attribute_set, &f.path),
            path: f.path,
            identity: Some(f.identity),
            fingerprint: f.fingerprint,
            offset,
            pending: Vec::new(),
            file: Some(f.file),
            last_growth: Instant::now(),
            record_number: 0,
            header_done: self.s.header.is_none() || offset > 0,
            header: Map::new(),
            truncating: false,
            last_seen_poll: self.polls,
            size: f.size,
            gzip: None,
            gz: GzProgress::at(offset),
            utf16_le: None,
            delete_sent: false,
            meta_dirty: false,
            claimed: true,
            deleted: false,
        };
        self.updates.push(FileUpdate::Known {
            key,
            record: t.record(),
        });
        self.files.push(t);
        self.files.len() - 1
    }

    /// Our inode, same start, now shorter than what we read.
    fn truncated(&mut self, ti: usize, f: &Found) {
        let on_truncate = self.s.on_truncate;
        let t = &mut self.files[ti];
        tracing::info!(path = %f.path.display(), was = t.read_position(), now = f.size, ?on_truncate, "file truncated");
        match on_truncate {
            OnTruncate::Ignore => {}
            OnTruncate::ReadWholeFile => {
                t.offset = 0;
                t.pending.clear();
                t.record_number = 0;
                t.truncating = false;
                t.header_done = self.s.header.is_none();
                t.header.clear();
            }
            OnTruncate::ReadNew => {
                t.offset = f.size;
                t.pending.clear();
                t.truncating = false;
            }
        }
        t.gz = GzProgress::at(t.offset);
        t.fingerprint = f.fingerprint.clone();
        t.meta_dirty = true;
        self.touched.insert(t.key);
    }

    /// Looks beside a truncated or replaced file for a copy holding what it had (a
    /// copytruncate rotation whose copy the globs do not match), and reads the rest of it
    /// from there. With `by_inode` (a restart), the file itself renamed to any name in its
    /// directory is looked for first: rotated by `mv` while sluice was down. Paths in
    /// `found` are left to the identity rules. True when a continuation was adopted.
    fn find_continuation(&mut self, ti: usize, found: &HashSet<&Path>, by_inode: bool) -> bool {
        let t = &self.files[ti];
        if t.fingerprint.is_empty() {
            return false;
        }
        let (Some(dir), Some(name)) = (t.path.parent(), t.path.file_name()) else {
            return false;
        };
        let name = name.to_string_lossy().into_owned();
        let inode = t.identity.map(|i| i.inode);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        // The inode comes with the directory entry: finding a renamed file costs no open.
        let mut same_inode = Vec::new();
        let mut named_like = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path == t.path || found.contains(path.as_path()) {
                continue;
            }
            if by_inode && inode == Some(entry.ino()) {
                same_inode.push(path);
            } else if entry
                .file_name()
                .to_string_lossy()
                .starts_with(name.as_str())
            {
                named_like.push(path);
            }
        }
        named_like.sort();
        for path in same_inode.into_iter().chain(named_like) {
            let Some(f) = self.open(&path) else { continue };
            let t = &self.files[ti];
            // The inode number alone could be a reused one: the first bytes must agree too.
            let same = t.identity.is_some_and(|i| i.same(&f.identity));
            let continues = f.fingerprint.starts_with(&t.fingerprint)
                && f.size >= t.read_position()
                && (by_inode || !same);
            if continues {
                tracing::info!(from = %t.path.display(), to = %path.display(), offset = t.read_position(), "reading the rest of a rotated file where it now is");
                self.adopt(ti, f);
                // Read to its end; it is outside the globs, so it is closed once read.
                self.files[ti].last_seen_poll = self.polls.saturating_sub(1);
                return true;
            }
        }
        false
    }

    /// At a restart: checkpointed files no longer at their path (rotated while sluice was
    /// down, to a name the globs do not match) are looked for in their directory, and what
    /// they hold past the checkpoint is read, as for a file renamed out of the globs while
    /// running. Paths the globs found are left to the identity rules.
    fn recover_moved(&mut self, found: &[PathBuf]) {
        let found: HashSet<&Path> = found.iter().map(PathBuf::as_path).collect();
        for ti in 0..self.files.len() {
            let t = &self.files[ti];
            if t.claimed || t.file.is_some() {
                continue;
            }
            let Some(identity) = t.identity else { continue };
            // Still where it was: not rotated, only not matched any more (excluded, too old,
            // out of the ordering's top): left alone, as the configuration asks.
            if std::fs::metadata(&t.path).is_ok_and(|m| identity.same(&Identity::of(&m))) {
                continue;
            }
            if self.find_continuation(ti, &found, true) {
                // Not found by the globs: `read_lost` reads it, from this poll on.
                self.files[ti].claimed = false;
            }
        }
    }

    /// Tracked files with an open handle not found in this poll: renamed out of the globs
    /// or deleted. Read to their end, then closed once they stop growing.
    fn read_lost(&mut self) -> bool {
        let mut busy = false;
        for ti in 0..self.files.len() {
            let t = &self.files[ti];
            if (t.claimed && !t.deleted) || t.file.is_none() {
                continue;
            }
            busy |= self.read(ti);
            let t = &mut self.files[ti];
            if let Some(file) = &t.file
                && file.metadata().is_ok_and(|m| m.nlink() == 0)
            {
                t.deleted = true;
            }
            if t.last_growth.elapsed() >= LINGER && !busy {
                self.close(ti, true);
            }
        }
        busy
    }

    /// Closes a file's handle (it stays tracked, to be recognised if it comes back). With
    /// `finished`, a last partial entry is emitted: nothing more will be written to it.
    fn close(&mut self, ti: usize, finished: bool) {
        if finished {
            if self.is_gzip(ti) {
                let gz = &self.files[ti].gz;
                if gz.decoder.is_none() && gz.incomplete_at.is_none() && !gz.text.is_empty() {
                    self.tokenize_gzip(ti, true);
                }
            } else if !self.files[ti].pending.is_empty() {
                self.tokenize(ti, true);
            }
            // A decoder keeps a handle of its own; a file finished with needs none.
            self.files[ti].gz.abandon_member();
        }
        self.files[ti].file = None;
    }

    /// Forgets files not seen for a while (their checkpoints go with them).
    fn expire(&mut self, rounds: usize) {
        let keep = (self.s.archive_polls.max(3) * rounds + rounds) as u64;
        let polls = self.polls;
        let mut forgotten = Vec::new();
        self.files.retain(|t| {
            let old = t.file.is_none() && polls.saturating_sub(t.last_seen_poll) > keep;
            if old {
                forgotten.push(t.key);
            }
            !old
        });
        for key in forgotten {
            self.updates.push(FileUpdate::Forget { key });
        }
    }

    fn is_gzip(&mut self, ti: usize) -> bool {
        let compression = self.s.compression;
        let t = &mut self.files[ti];
        *t.gzip.get_or_insert_with(|| match compression {
            Compression::None => false,
            Compression::Gzip => true,
            Compression::Auto => t.fingerprint.starts_with(&[0x1f, 0x8b]),
        })
    }

    /// Reads what was added to a file; true when there is more than one turn's worth.
    fn read(&mut self, ti: usize) -> bool {
        if self.files[ti].file.is_none() {
            return false;
        }
        let _lock = if self.s.acquire_fs_lock {
            let Some(file) = &self.files[ti].file else {
                return false;
            };
            match file.try_lock_shared() {
                Ok(()) => Some(()),
                // A writer holds it: try again next poll.
                Err(_) => return false,
            }
        } else {
            None
        };
        let busy = if self.is_gzip(ti) {
            self.read_gzip(ti)
        } else {
            self.read_plain(ti)
        };
        let t = &self.files[ti];
        if self.s.acquire_fs_lock
            && let Some(file) = &t.file
        {
            let _ = file.unlock();
        }
        if self.s.cache_advise
            && let Some(file) = &t.file
        {
            let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
        }
        let t = &self.files[ti];
        if self.s.delete_after_read
            && !busy
            && !t.delete_sent
            && t.pending.is_empty()
            && t.read_position() >= t.size
            && t.size > 0
        {
            let key = t.key;
            let size = t.offset;
            self.files[ti].delete_sent = true;
            self.touched.insert(key);
            self.updates.push(FileUpdate::DeleteWhenDone { key, size });
        }
        self.report_meta(ti);
        busy
    }

    fn report_meta(&mut self, ti: usize) {
        let t = &mut self.files[ti];
        if t.meta_dirty {
            t.meta_dirty = false;
            self.updates.push(FileUpdate::Known {
                key: t.key,
                record: t.record(),
            });
        }
    }

    fn read_plain(&mut self, ti: usize) -> bool {
        let mut total = 0usize;
        let mut block = vec![0u8; READ_BLOCK];
        loop {
            let t = &mut self.files[ti];
            let Some(file) = &t.file else { return false };
            let at = t.read_position();
            let n = match file.read_at(&mut block, at) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "cannot read a log file");
                    return false;
                }
            };
            if n == 0 {
                break;
            }
            // Truncated and written past `at` again since it was identified (copytruncate
            // with the writer going on): what was read belongs to the new content, not to
            // what we were reading. It is dropped; the next poll tells the two apart (and
            // finds the copy). Checked after the read, so a rewrite before it is seen.
            if !t.fingerprint.is_empty()
                && read_fingerprint(file, t.fingerprint.len())
                    .map_or(true, |start| start != t.fingerprint)
            {
                return false;
            }
            t.pending.extend_from_slice(&block[..n]);
            t.last_growth = Instant::now();
            t.size = t.size.max(at + n as u64);
            total += n;
            self.tokenize(ti, false);
            if total >= READ_BUDGET {
                return true;
            }
            if self.stopping() {
                return false;
            }
        }
        // At the end of what was written: a partial last entry goes out once the file has
        // not grown for `force_flush_period`.
        let t = &self.files[ti];
        if !t.pending.is_empty()
            && let Some(period) = self.s.force_flush
            && t.last_growth.elapsed() >= period
        {
            self.tokenize(ti, true);
        }
        false
    }

    /// A gzip file: its members are decoded one after the other as a stream, a block at a
    /// time, and entries are cut and handed over in batches as for a plain file, so memory
    /// and batch sizes stay bounded whatever the size of a member. The checkpoint moves past
    /// a member only once the member is complete (its trailer checked) and all it held was cut
    /// into entries. A member still being written ends the read; it is decoded again once the
    /// file has grown, skipping what was already cut from it. True when there is more than one
    /// turn's worth.
    fn read_gzip(&mut self, ti: usize) -> bool {
        let Some(file) = &self.files[ti].file else {
            return false;
        };
        let size = file.metadata().map_or(self.files[ti].size, |m| m.len());
        self.files[ti].size = size;
        let mut block = vec![0u8; READ_BLOCK];
        let mut total = 0usize;
        loop {
            if self.stopping() {
                return false;
            }
            let t = &mut self.files[ti];
            if t.gz.decoder.is_none() {
                if t.gz.member_start >= size || t.gz.incomplete_at.is_some_and(|end| size <= end) {
                    break;
                }
                // A handle of its own, so the decoder can outlive a turn without moving a
                // position the plain reads share.
                let Some(handle) = t.file.as_ref().and_then(|f| f.try_clone().ok()) else {
                    return false;
                };
                t.gz.decoder = Some(flate2::bufread::GzDecoder::new(FileCursor::new(
                    handle,
                    t.gz.member_start,
                )));
                t.gz.produced = 0;
                t.gz.incomplete_at = None;
            }
            let Some(decoder) = t.gz.decoder.as_mut() else {
                break;
            };
            match decoder.read(&mut block) {
                Ok(0) => {
                    // The member is complete: the next one starts where its trailer ended.
                    let end = decoder.get_ref().position();
                    let gz = &mut t.gz;
                    gz.decoder = None;
                    gz.member_start = end;
                    gz.skip = 0;
                    t.offset = gz.resume_at();
                    self.touched.insert(t.key);
                }
                Ok(n) => {
                    let gz = &mut t.gz;
                    // Output cut into entries in an earlier attempt at this member is skipped.
                    let fresh = gz.skip.saturating_sub(gz.produced).min(n as u64) as usize;
                    gz.produced += n as u64;
                    gz.append(&block[fresh..n]);
                    t.last_growth = Instant::now();
                    total += n;
                    if !self.tokenize_gzip(ti, false) {
                        return false;
                    }
                    if total >= READ_BUDGET {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    // Still being written (or cut short): decoded again once the file grows.
                    let end = decoder.get_ref().end();
                    t.gz.abandon_member();
                    t.gz.incomplete_at = Some(end);
                    break;
                }
                Err(e) => {
                    let end = decoder.get_ref().end().max(size);
                    tracing::warn!(path = %t.path.display(), error = %e, at = t.gz.member_start, "damaged gzip data in a log file; skipping to its current end");
                    let gz = &mut t.gz;
                    gz.abandon_member();
                    gz.member_start = end;
                    gz.skip = 0;
                    t.offset = gz.resume_at();
                    self.touched.insert(t.key);
                    break;
                }
            }
        }
        // Every member complete: a last entry without its end goes out once the file has not
        // grown for `force_flush_period`, as for a plain file.
        let t = &self.files[ti];
        if t.gz.decoder.is_none()
            && t.gz.incomplete_at.is_none()
            && !t.gz.text.is_empty()
            && let Some(period) = self.s.force_flush
            && t.last_growth.elapsed() >= period
        {
            self.tokenize_gzip(ti, true);
        }
        false
    }

    /// Cuts the decoded, not yet cut text of a gzip file into entries. Each entry counts from
    /// the start of the member its first byte came from, and ends where reading would resume
    /// after it. False when the delivery side is gone.
    fn tokenize_gzip(&mut self, ti: usize, flush: bool) -> bool {
        let text = std::mem::take(&mut self.files[ti].gz.text);
        let utf8 = matches!(self.s.encoding, FileEncoding::Utf8 | FileEncoding::Utf8Raw);
        let mut consumed = 0usize;
        let mut open = true;
        while let Some((token, forced)) = self.next_token(&text[consumed..], flush, utf8) {
            let rest = &text[consumed..];
            let gz = &mut self.files[ti].gz;
            let start = gz.resume_at();
            gz.consume(token.advance);
            let end = gz.resume_at();
            self.files[ti].offset = end;
            consumed += token.advance;
            if !self.take_token(ti, &rest[token.start..token.end], forced, start, end) {
                open = false;
                break;
            }
        }
        let mut text = text;
        text.drain(..consumed);
        self.files[ti].gz.text = text;
        open
    }

    /// The byte order of a UTF-16 file (true: little-endian), `None` for other encodings.
    /// `utf-16` follows the file's byte-order mark, little-endian without one, as upstream.
    fn utf16_order(&mut self, ti: usize) -> Option<bool> {
        match self.s.encoding {
            FileEncoding::Utf16Le => Some(true),
            FileEncoding::Utf16Be => Some(false),
            FileEncoding::Utf16 => {
                let t = &mut self.files[ti];
                if let Some(le) = t.utf16_le {
                    return Some(le);
                }
                // The fingerprint is the file's first bytes; with fewer than two the order
                // is decided again once it grows.
                let le = !matches!(t.fingerprint.get(..2)?, [0xFE, 0xFF]);
                t.utf16_le = Some(le);
                Some(le)
            }
            _ => None,
        }
    }

    /// Cuts the pending bytes of a file into entries.
    fn tokenize(&mut self, ti: usize, flush: bool) {
        let utf16 = self.utf16_order(ti).or(match self.s.encoding {
            // Too short to tell yet: nothing whole to transcode either way.
            FileEncoding::Utf16 => Some(true),
            _ => None,
        });
        if let (FileEncoding::Utf16, Some(le)) = (self.s.encoding, utf16) {
            // The byte-order mark is not text: it is passed over, not put in the first entry.
            let t = &mut self.files[ti];
            let mark: [u8; 2] = if le { [0xFF, 0xFE] } else { [0xFE, 0xFF] };
            if t.offset == 0 && t.pending.starts_with(&mark) {
                t.pending.drain(..2);
                t.offset = 2;
                self.touched.insert(t.key);
            }
        }
        let pending = std::mem::take(&mut self.files[ti].pending);
        let (text, raw_used) = match utf16 {
            Some(le) => {
                let mut out = Vec::with_capacity(pending.len());
                let used = utf16_to_utf8(&pending, le, &mut out);
                (out, used)
            }
            None => (Vec::new(), pending.len()),
        };
        let data: &[u8] = if utf16.is_some() { &text } else { &pending };
        // Flush only what was transcoded whole; a dangling half unit waits.
        let flush = flush && raw_used == pending.len();
        // UTF-16 is cut after transcoding, so its text is UTF-8 too.
        let utf8 = matches!(
            self.s.encoding,
            FileEncoding::Utf8
                | FileEncoding::Utf8Raw
                | FileEncoding::Utf16
                | FileEncoding::Utf16Le
                | FileEncoding::Utf16Be
        );
        let mut consumed_text = 0usize;
        let mut consumed_raw = 0usize;
        while let Some((token, forced)) = self.next_token(&data[consumed_text..], flush, utf8) {
            let rest = &data[consumed_text..];
            let advance_raw = match utf16 {
                Some(_) => utf16_len(&rest[..token.advance]),
                None => token.advance,
            };
            let t = &mut self.files[ti];
            let start = t.offset;
            let end = start + advance_raw as u64;
            t.offset = end;
            consumed_text += token.advance;
            consumed_raw += advance_raw;
            if !self.take_token(ti, &rest[token.start..token.end], forced, start, end) {
                break;
            }
        }
        let mut pending = pending;
        pending.drain(..consumed_raw);
        self.files[ti].pending = pending;
    }

    /// The next entry at the start of `rest`, and whether it was cut at `max_log_size`
    /// (delimited or not yet, an entry longer than that is cut there). In UTF-8 text the cut
    /// backs off to a character boundary; other encodings are cut at the byte, as upstream
    /// does (their continuation bytes are not UTF-8's, so backing off would cut elsewhere).
    fn next_token(&self, rest: &[u8], flush: bool, utf8: bool) -> Option<(Token, bool)> {
        if rest.is_empty() {
            return None;
        }
        let max = self.s.max_log_size;
        match self.s.splitter.next(rest, flush) {
            Some(t) if t.end - t.start <= max => Some((t, false)),
            found if found.is_some() || rest.len() >= max => {
                let mut cut = max;
                if utf8 {
                    while cut > 0 && cut < rest.len() && (rest[cut] & 0xC0) == 0x80 {
                        cut -= 1;
                    }
                    if cut == 0 {
                        cut = max;
                    }
                }
                Some((
                    Token {
                        start: 0,
                        end: cut,
                        advance: cut,
                    },
                    true,
                ))
            }
            _ => None,
        }
    }

    /// One entry cut from a file, `start..end` in it: emitted (unless it is the rest of an
    /// entry cut at `max_log_size` with `truncate`), and the batch handed over once full.
    /// False when the delivery side is gone.
    fn take_token(&mut self, ti: usize, text: &[u8], forced: bool, start: u64, end: u64) -> bool {
        let truncate = self.s.truncate_long_entries;
        let t = &mut self.files[ti];
        // With `truncate`, the rest of an entry cut at max_log_size is skipped up to the
        // entry's end.
        let skipping = t.truncating;
        t.truncating = forced && truncate;
        self.touched.insert(t.key);
        if !skipping && !text.is_empty() {
            self.emit(ti, text, start, end);
        }
        if self.builder.records() >= BATCH_RECORDS || self.builder.bytes() >= BATCH_BYTES {
            return self.cut();
        }
        true
    }

    /// One token of a file: a header line, or an entry through the operators.
    fn emit(&mut self, ti: usize, token: &[u8], start: u64, end: u64) {
        let text = if matches!(self.s.encoding, FileEncoding::Nop) {
            token
        } else {
            trim(token, self.s.keep_leading, self.s.keep_trailing)
        };
        let observed = now_nanos();
        if !self.files[ti].header_done
            && let Some(header) = &mut self.s.header
        {
            let body = self.s.encoding.body(text);
            let is_header = matches!(&body, Value::Str(s) if header.pattern.is_match(s));
            if is_header {
                let mut out = Vec::new();
                header
                    .operators
                    .process(Entry::new(body, observed), &mut out);
                header.operators.flush(Instant::now(), true, &mut out);
                let t = &mut self.files[ti];
                for e in out {
                    t.header.extend(e.attributes);
                }
                return;
            }
            let t = &mut self.files[ti];
            t.header_done = true;
            t.meta_dirty = true;
        }
        if text.is_empty() {
            return;
        }
        let t = &mut self.files[ti];
        t.record_number += 1;
        let mut entry = Entry::new(self.s.encoding.body(text), observed);
        entry.attributes = t.attributes.clone();
        if !t.header.is_empty() {
            entry
                .attributes
                .extend(t.header.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if self.s.record_number {
            entry.attributes.insert(
                LOG_FILE_RECORD_NUMBER.to_string(),
                Value::Int(t.record_number as i64),
            );
        }
        if self.s.record_offset {
            entry
                .attributes
                .insert(LOG_FILE_RECORD_OFFSET.to_string(), Value::Int(start as i64));
        }
        entry.origin = Origin::One(Span {
            file: t.key,
            start,
            end,
        });
        if !self.constant_attributes.is_empty() {
            entry.attributes.extend(
                self.constant_attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        if !self.constant_resource.is_empty() {
            entry.resource = self.constant_resource.clone();
        }
        for (key, value) in self.s.attributes.iter().filter(|(_, v)| !v.is_constant()) {
            if let Ok(v) = value.render(&entry) {
                entry.attributes.insert(key.clone(), v);
            }
        }
        for (key, value) in self.s.resource.iter().filter(|(_, v)| !v.is_constant()) {
            if let Ok(v) = value.render(&entry) {
                entry.resource.insert(key.clone(), v);
            }
        }
        let mut emitted = std::mem::take(&mut self.emitted);
        self.operators.process(entry, &mut emitted);
        for e in emitted.drain(..) {
            self.push(e);
        }
        self.emitted = emitted;
    }

    fn push(&mut self, mut entry: Entry) {
        for span in entry.origin.spans() {
            self.touched.insert(span.file);
        }
        entry.origin = Origin::None;
        self.builder.push(entry);
    }

    /// Hands over what was gathered; false when the delivery side is gone (shutting down).
    fn cut(&mut self) -> bool {
        // Positions held by stateful operators stay uncommitted.
        let mut floor: HashMap<u32, (u64, u64)> = HashMap::new();
        if self.operators.holds() {
            self.operators.held(&mut |e: &Entry| {
                for span in e.origin.spans() {
                    let slot = floor.entry(span.file).or_insert((u64::MAX, 0));
                    slot.0 = slot.0.min(span.start);
                    slot.1 += 1;
                }
            });
        }
        let mut marks = Vec::with_capacity(self.touched.len());
        for key in std::mem::take(&mut self.touched) {
            let Some(t) = self.files.iter().find(|t| t.key == key) else {
                continue;
            };
            let (offset, record_number) = match floor.get(&key) {
                Some(&(start, held)) => (start.min(t.offset), t.record_number.saturating_sub(held)),
                None => (t.offset, t.record_number),
            };
            marks.push(Mark {
                key,
                offset,
                record_number,
            });
        }
        for ti in 0..self.files.len() {
            self.report_meta(ti);
        }
        let batch = self.builder.take();
        if batch.is_none() && marks.is_empty() && self.updates.is_empty() {
            return true;
        }
        let batch = batch.map(|b| self.admit(b));
        let handover = Handover {
            batch,
            updates: std::mem::take(&mut self.updates),
            marks,
        };
        // Blocks while the delivery side is full: reading pauses, memory stays bounded.
        self.out.blocking_send(handover).is_ok()
    }

    /// Holds admission budget for the batch while it is in the collector, waiting (reading
    /// paused) while a memory limiter refuses.
    fn admit(&self, mut batch: Batch<Logs>) -> Batch<Logs> {
        loop {
            match self.admission.reserve(batch.bytes()) {
                Ok(permit) => {
                    batch.hold(permit);
                    return batch;
                }
                Err(Refusal::TooLarge { .. }) => return batch,
                Err(refusal) => {
                    if self.stopping() {
                        return batch;
                    }
                    std::thread::sleep(refusal.retry_after().min(Duration::from_millis(200)));
                }
            }
        }
    }
}

/// Where a gzip file stands. Reading cannot resume inside a member (deflate has no entry
/// points), so the file's offset is the start of the member holding the first byte not yet
/// cut into an entry, or of the member being decoded when all before it is cut.
#[derive(Default)]
struct GzProgress {
    /// Where the member being decoded (or the next one) starts.
    member_start: u64,
    /// Output of that member cut into entries in an earlier attempt (it was still being
    /// written): passed over when it is decoded again.
    skip: u64,
    /// Output not yet cut into entries...
    text: Vec<u8>,
    /// ...and the member each run of it came from, oldest first.
    origins: VecDeque<(u64, usize)>,
    /// The member at `member_start` part way through, with its output so far.
    decoder: Option<flate2::bufread::GzDecoder<FileCursor>>,
    produced: u64,
    /// The file's end when its last member was found incomplete: tried again once it grows.
    incomplete_at: Option<u64>,
}

impl GzProgress {
    fn at(offset: u64) -> GzProgress {
        GzProgress {
            member_start: offset,
            ..GzProgress::default()
        }
    }

    /// Where reading would resume to lose nothing not yet cut.
    fn resume_at(&self) -> u64 {
        self.origins.front().map_or(self.member_start, |o| o.0)
    }

    /// Output of the member at `member_start`.
    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.text.extend_from_slice(bytes);
        match self.origins.back_mut() {
            Some((start, len)) if *start == self.member_start => *len += bytes.len(),
            _ => self.origins.push_back((self.member_start, bytes.len())),
        }
    }

    /// `n` bytes at the front of the text were cut into entries (the text itself is drained
    /// by the caller).
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.origins.front_mut() else {
                return;
            };
            if front.1 > n {
                front.1 -= n;
                return;
            }
            n -= front.1;
            self.origins.pop_front();
        }
    }

    /// Gives up the member part way through: its output not yet cut is taken back, to be
    /// decoded again (what was cut from it is then skipped).
    fn abandon_member(&mut self) {
        if self.decoder.take().is_none() {
            return;
        }
        let in_text = match self.origins.back() {
            Some(&(start, len)) if start == self.member_start => len,
            _ => 0,
        };
        if in_text > 0 {
            self.origins.pop_back();
            self.text.truncate(self.text.len().saturating_sub(in_text));
        }
        self.skip = self.skip.max(self.produced.saturating_sub(in_text as u64));
        self.produced = 0;
    }
}

/// A file read from a position on through a buffer of its own, knowing which position the
/// decoder has taken up to (so the end of a gzip member is known exactly).
struct FileCursor {
    file: File,
    /// The file position after the buffered bytes.
    at: u64,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl FileCursor {
    fn new(file: File, at: u64) -> FileCursor {
        FileCursor {
            file,
            at,
            buf: vec![0; READ_BLOCK],
            pos: 0,
            filled: 0,
        }
    }

    /// The position of the next byte the decoder would take.
    fn position(&self) -> u64 {
        self.at - (self.filled - self.pos) as u64
    }

    /// How far the file was read.
    fn end(&self) -> u64 {
        self.at
    }
}

impl Read for FileCursor {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for FileCursor {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos == self.filled {
            let n = self.file.read_at(&mut self.buf, self.at)?;
            self.at += n as u64;
            self.pos = 0;
            self.filled = n;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }
}
