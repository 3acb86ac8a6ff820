//! A persistent queue: a write-ahead log of segment files in one directory, written by a
//! dedicated thread with group commit, read back record by record by the exporter's consumers.
//!
//! Only a small index of the records not yet delivered is kept in memory; payloads stay on
//! disk until a consumer claims them. Deliveries finish out of order, so what is persisted is
//! a watermark (every record below it is done, see [`super::cursor`]); the oldest segments,
//! once all their records are below the watermark, are deleted. After a crash, records at or
//! above the watermark are delivered again, including any that were already done:
//! at-least-once.
//!
//! Segment files are numbered in sequence and only the oldest are ever deleted, so the files
//! on disk are one unbroken run; the cursor records that run, and a file missing from it at
//! the next start was lost (deleted by someone else, or by the filesystem) and is reported.
//!
//! A full disk does not stop the queue: appends that find no space are refused as when the
//! queue is full (the sender retries), without damaging the log, and if not even a new segment
//! can be created at start the queue still opens and delivers what the log holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot, watch};

use super::cursor::{Cursor, Extent, Mark};
use super::record::{self, HEADER_LEN, Key, NO_ID, SEGMENT_HEADER_LEN};
use super::{FsyncPolicy, StorageError};
use crate::ack::{Ack, Outcome};
use crate::batch::settle_all;
use crate::exporter::Sizer;
use crate::telemetry::{Counter, Gauge};

const SEGMENT_SUFFIX: &str = ".wal";
const QUARANTINE_DIR: &str = "quarantine";
/// Appends taken into one group commit at most; bounds the writer's buffer.
const MAX_GROUP: usize = 256;

/// How one queue directory is run.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    pub directory: PathBuf,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Bytes of segment files at most (a record larger than this is taken when the queue is
    /// otherwise empty, so it cannot wedge the queue).
    pub max_disk: u64,
    pub segment_size: u64,
    /// Bound on the records not yet delivered, in `sizer` units.
    pub capacity: u64,
    pub sizer: Sizer,
    /// Creates missing directories (else a missing directory is an error).
    pub create_directory: bool,
}

/// Why an append did not go in.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("persistent queue is full")]
    Full,
    #[error("persistent queue is closed")]
    Closed,
    /// The disk (or the user's quota) is full: the append is refused like a full queue's.
    #[error("no space left for the persistent queue: {0}")]
    NoSpace(io::Error),
    #[error("cannot write to the persistent queue: {0}")]
    Io(io::Error),
    #[error("batch of {0} bytes is too large for a queue record")]
    TooLarge(usize),
}

/// What start-up found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub records: usize,
    pub items: u64,
    /// Damaged ranges found for the first time (quarantined now).
    pub damaged: u64,
    /// Segment files missing from the log (deleted, or lost by the filesystem) that held, or
    /// may have held, undelivered records.
    pub lost_segments: u64,
    /// Undelivered records known to have been in them (a lower bound when the newest files
    /// are missing: records written after the last checkpoint are not known).
    pub lost_records: u64,
}

/// The metrics a queue keeps up to date.
#[derive(Clone, Default)]
pub struct QueueMetrics {
    /// Damaged ranges of the log, quarantined and skipped.
    pub damaged: Counter,
    /// Segment files found missing at start (see [`ReplayReport::lost_segments`]).
    pub lost_segments: Counter,
    /// Bytes of segment files on disk.
    pub disk_bytes: Gauge,
}

/// A record handed to a consumer; [`PersistentQueue::complete`] marks it done.
#[derive(Debug)]
pub struct Claim {
    pub id: u64,
    pub items: u32,
    segment: u64,
    offset: u64,
    payload_len: u32,
}

impl Claim {
    /// Size of the record's payload.
    pub fn bytes(&self) -> usize {
        self.payload_len as usize
    }

    /// Where the record is, for reading it without giving up the claim.
    pub fn location(&self) -> Location {
        Location {
            id: self.id,
            segment: self.segment,
            offset: self.offset,
            payload_len: self.payload_len,
        }
    }
}

/// Where a claimed record sits in the log.
#[derive(Clone, Copy, Debug)]
pub struct Location {
    id: u64,
    segment: u64,
    offset: u64,
    payload_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryState {
    Pending,
    InFlight,
    Done,
}

struct Entry {
    id: u64,
    segment: u64,
    offset: u64,
    payload_len: u32,
    items: u32,
    weight: u64,
    state: EntryState,
    /// Senders waiting for delivery (`wait_for_delivery`); empty after a restart.
    acks: Vec<Ack>,
}

struct Segment {
    path: PathBuf,
    /// `None` when the file holds nothing to deliver (all its records are below the
    /// watermark, it is damaged throughout, or it stands in for a lost file): it stays only
    /// to keep the sequence unbroken, until it is among the oldest and deleted.
    reader: Option<SegmentReader>,
    len: u64,
    last_id: Option<u64>,
}

struct SegmentReader {
    file: Arc<File>,
    /// What every checksum of the segment starts from (see [`record`]).
    key: Key,
}

struct State {
    /// Records from the watermark on, by id: `..dispatched` are in flight or done, the rest
    /// wait for a consumer.
    entries: VecDeque<Entry>,
    dispatched: usize,
    /// Ids below `dispatched` handed back by [`PersistentQueue::release`]: pending again,
    /// handed out before the rest.
    released: BTreeSet<u64>,
    next_id: u64,
    pending_weight: u64,
    pending_items: u64,
    reserved_weight: u64,
    reserved_disk: u64,
    disk_used: u64,
    /// Every segment file, by sequence number: one unbroken run.
    segments: BTreeMap<u64, Segment>,
    /// The segment being written to; `None` when none could be created (a full disk).
    active: Option<u64>,
    /// The number the next segment gets: one past every file the log ever had.
    next_segment: u64,
    closed: bool,
    checkpoint_requested: bool,
    /// Entries not done yet.
    undone: usize,
}

/// Disk space an append reserves until it is written: its record, plus the header of the
/// segment it may have to start, so that rotations cannot carry the log past `max_disk`.
fn reserved_disk_of(payload_len: usize) -> u64 {
    (SEGMENT_HEADER_LEN + HEADER_LEN + payload_len) as u64
}

impl State {
    fn watermark(&self) -> u64 {
        self.entries.front().map_or(self.next_id, |e| e.id)
    }

    /// What the cursor should hold now.
    fn mark(&self) -> Mark {
        Mark {
            watermark: self.watermark(),
            extent: Extent {
                next_id: self.next_id,
                first_segment: self
                    .segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(self.next_segment),
                end_segment: self.next_segment,
            },
        }
    }

    fn fits(&self, opts: &QueueOptions, weight: u64, disk: u64) -> bool {
        let queued = self.pending_weight + self.reserved_weight;
        let weight_ok = queued == 0 || queued + weight <= opts.capacity;
        let stored = self.disk_used + self.reserved_disk;
        // Nothing pending means every segment can be reclaimed, so even an oversized record
        // gets in alone.
        let nothing_pending = self.entries.is_empty() && self.reserved_disk == 0;
        let disk_ok = nothing_pending || stored + disk <= opts.max_disk;
        weight_ok && disk_ok
    }
}

struct Shared {
    opts: QueueOptions,
    state: Mutex<State>,
    /// Records were added or the queue closed: consumers look again.
    records: Notify,
    /// Room was freed or the queue closed: blocked appends look again.
    space: Notify,
    /// Records not yet done, for flush.
    unfinished: watch::Sender<usize>,
    /// `disk_bytes` mirrors `State::disk_used`.
    metrics: QueueMetrics,
    /// Read failures to simulate, in order, before reading for real.
    #[cfg(test)]
    read_faults: Mutex<VecDeque<ReadFault>>,
}

/// A read failure [`PersistentQueue::read`] simulates in tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReadFault {
    /// An I/O error (EIO).
    Io,
    /// The reading thread panics.
    Panic,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough counters; carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Msg {
    Append(Append),
    Checkpoint,
    Close(oneshot::Sender<()>),
}

struct Append {
    payload: Vec<u8>,
    items: u32,
    weight: u64,
    acks: Vec<Ack>,
    reply: oneshot::Sender<Result<(), Refused>>,
}

/// Why the writer did not take an append, with the senders' acks when they were not kept
/// (a record that may be in the log keeps them: it can still be delivered).
struct Refused {
    error: io::Error,
    acks: Vec<Ack>,
}

/// Whether an error means the disk (or a quota) has no room left.
fn out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// An error of the same kind and text, for each of several appends that failed on it.
fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// One persistent queue; cheap to share behind an `Arc`.
enum Next {
    Claim(Claim),
    Empty,
    Closed,
}

pub struct PersistentQueue {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
}

impl PersistentQueue {
    /// Opens the directory, replays what was not delivered and starts the writer thread.
    /// Blocking: call from a blocking context.
    pub fn open(
        opts: QueueOptions,
        metrics: QueueMetrics,
    ) -> Result<(PersistentQueue, ReplayReport), StorageError> {
        let dir = &opts.directory;
        let io_err = |what: &str, path: &Path, source: io::Error| StorageError::Io {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        };
        if opts.create_directory {
            std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
        } else if !dir.is_dir() {
            return Err(StorageError::MissingDirectory(dir.clone()));
        }
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("cannot open", &lock_path, e))?;
        // Two processes appending to one log would interleave records and each reclaim
        // segments the other still needs.
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => StorageError::Locked(dir.clone()),
                std::fs::TryLockError::Error(e) => io_err("cannot lock", &lock_path, e),
            });
        }
        let cursor_path = dir.join("cursor");
        let cursor =
            Cursor::open(&cursor_path).map_err(|e| io_err("cannot open", &cursor_path, e))?;
        let replayed = replay(&opts, &cursor, &metrics)?;
        let mut state = State {
            entries: replayed.entries,
            dispatched: 0,
            released: BTreeSet::new(),
            next_id: replayed.next_id,
            pending_weight: 0,
            pending_items: 0,
            reserved_weight: 0,
            reserved_disk: 0,
            disk_used: replayed.segments.values().map(|s| s.len).sum(),
            segments: replayed.segments,
            active: None,
            next_segment: replayed.next_segment,
            closed: false,
            checkpoint_requested: false,
            undone: 0,
        };
        state.undone = state.entries.len();
        state.pending_weight = state.entries.iter().map(|e| e.weight).sum();
        state.pending_items = state.entries.iter().map(|e| u64::from(e.items)).sum();
        let report = ReplayReport {
            records: state.entries.len(),
            items: state.pending_items,
            damaged: replayed.damaged,
            lost_segments: replayed.lost_segments,
            lost_records: replayed.lost_records,
        };
        let active = match create_segment(dir, state.next_segment) {
            Ok((active, segment)) => {
                state.disk_used += segment.len;
                state.segments.insert(active.seq, segment);
                state.active = Some(active.seq);
                state.next_segment += 1;
                Some(active)
            }
            // A crash on a full disk must not keep the collector down: what the log holds
            // is delivered (which frees space), and appends are refused until a segment
            // can be created.
            Err(e) if out_of_space(&e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    records = report.records,
                    "no space left for the persistent queue: delivering what it holds, refusing new data until there is space"
                );
                None
            }
            Err(e) => {
                return Err(io_err(
                    "cannot create",
                    &segment_path(dir, state.next_segment),
                    e,
                ));
            }
        };
        let unfinished = watch::Sender::new(state.entries.len());
        let shared = Arc::new(Shared {
            opts,
            state: Mutex::new(state),
            records: Notify::new(),
            space: Notify::new(),
            unfinished,
            metrics,
            #[cfg(test)]
            read_faults: Mutex::new(VecDeque::new()),
        });
        shared
            .metrics
            .disk_bytes
            .set(shared.lock().disk_used as i64);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            out_of_space: active.is_none(),
            active,
            cursor,
            data_dirty: false,
            // Replay may have cut files or made placeholders.
            dir_dirty: true,
            last_sync: Instant::now(),
            _lock: lock,
        };
        std::thread::Builder::new()
            .name("sluice-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| {
                io_err(
                    "cannot start the writer thread for",
                    &shared_dir(&shared),
                    e,
                )
            })?;
        // The cursor may be behind what replay found (records below it were reclaimed), and
        // files replay found with nothing to deliver are deleted once it records that.
        let queue = PersistentQueue { shared, tx };
        queue.send(Msg::Checkpoint);
        Ok((queue, report))
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok()
    }

    /// Writes a record and returns once it is in the log per the fsync policy. `block`
    /// waits for room when the queue or the disk is full, else a full queue is refused.
    /// With `acks`, they are settled when the record is delivered (or given up on).
    pub async fn append(
        &self,
        payload: Vec<u8>,
        items: u32,
        acks: Vec<Ack>,
        block: bool,
    ) -> Result<(), (AppendError, Vec<Ack>)> {
        if u32::try_from(payload.len()).is_err() {
            return Err((AppendError::TooLarge(payload.len()), acks));
        }
        let opts = &self.shared.opts;
        let weight = weight_of(opts.sizer, payload.len(), items);
        let disk = reserved_disk_of(payload.len());
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err((AppendError::Closed, acks));
                }
                if state.fits(opts, weight, disk) {
                    state.reserved_weight += weight;
                    state.reserved_disk += disk;
                    break;
                }
                if !block {
                    return Err((AppendError::Full, acks));
                }
            }
            space.await;
        }
        let (reply, answer) = oneshot::channel();
        let append = Append {
            payload,
            items,
            weight,
            acks,
            reply,
        };
        if !self.send(Msg::Append(append)) {
            // The writer is gone: the append was never taken, give the reservation back.
            let mut state = self.shared.lock();
            state.reserved_weight = state.reserved_weight.saturating_sub(weight);
            state.reserved_disk = state.reserved_disk.saturating_sub(disk);
            return Err((AppendError::Closed, Vec::new()));
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Refused { error, acks })) if out_of_space(&error) => {
                Err((AppendError::NoSpace(error), acks))
            }
            Ok(Err(Refused { error, acks })) => Err((AppendError::Io(error), acks)),
            Err(_) => Err((AppendError::Closed, Vec::new())),
        }
    }

    /// The next record to deliver; `None` once the queue is closed.
    pub async fn pop(&self) -> Option<Claim> {
        loop {
            let more = self.shared.records.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            match self.take_next() {
                Next::Claim(claim) => return Some(claim),
                Next::Closed => return None,
                Next::Empty => {}
            }
            more.await;
        }
    }

    /// The next record if one is waiting now (for merging records that are already there
    /// into one send).
    pub fn try_pop(&self) -> Option<Claim> {
        match self.take_next() {
            Next::Claim(claim) => Some(claim),
            Next::Closed | Next::Empty => None,
        }
    }

    fn take_next(&self) -> Next {
        let mut state = self.shared.lock();
        if state.closed {
            return Next::Closed;
        }
        let at = match state.released.pop_first() {
            // Released ids are always still there (only a claim completes them).
            Some(id) => state.entries.binary_search_by_key(&id, |e| e.id).ok(),
            None if state.dispatched < state.entries.len() => {
                state.dispatched += 1;
                Some(state.dispatched - 1)
            }
            None => None,
        };
        match at.and_then(|at| state.entries.get_mut(at)) {
            Some(entry) => {
                entry.state = EntryState::InFlight;
                Next::Claim(Claim {
                    id: entry.id,
                    items: entry.items,
                    segment: entry.segment,
                    offset: entry.offset,
                    payload_len: entry.payload_len,
                })
            }
            None => Next::Empty,
        }
    }

    /// The payload of a claimed record, checked against its checksum. Blocking (a disk read).
    pub fn read(&self, claim: &Claim) -> Result<Vec<u8>, ReadError> {
        self.read_at(claim.location())
    }

    /// [`PersistentQueue::read`] by location. Blocking.
    pub fn read_at(&self, claim: Location) -> Result<Vec<u8>, ReadError> {
        let (reader, path, key) = {
            let state = self.shared.lock();
            let segment = state.segments.get(&claim.segment).ok_or(ReadError::Gone)?;
            let reader = segment.reader.as_ref().ok_or(ReadError::Gone)?;
            (reader.file.clone(), segment.path.clone(), reader.key)
        };
        #[cfg(test)]
        {
            let fault = self
                .shared
                .read_faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            match fault {
                Some(ReadFault::Io) => {
                    return Err(ReadError::Io(path, io::Error::from_raw_os_error(5)));
                }
                Some(ReadFault::Panic) => panic!("simulated failure reading {}", path.display()),
                None => {}
            }
        }
        let mut bytes = vec![0u8; HEADER_LEN + claim.payload_len as usize];
        reader
            .read_exact_at(&mut bytes, claim.offset)
            .map_err(|e| ReadError::Io(path.clone(), e))?;
        match record::verify(&bytes, key, claim.id) {
            Some(payload) => Ok(payload.to_vec()),
            None => {
                self.shared.metrics.damaged.add(1);
                Err(ReadError::Damaged(path, claim.offset))
            }
        }
    }

    /// Marks a claimed record done (delivered, or given up on) and settles the senders
    /// waiting for it.
    pub fn complete(&self, claim: Claim, outcome: &Outcome) {
        let (acks, request_checkpoint) = {
            let mut state = self.shared.lock();
            let state = &mut *state;
            let Ok(at) = state.entries.binary_search_by_key(&claim.id, |e| e.id) else {
                return;
            };
            let entry = &mut state.entries[at];
            if entry.state == EntryState::Done {
                return;
            }
            entry.state = EntryState::Done;
            let acks = std::mem::take(&mut entry.acks);
            state.pending_weight = state.pending_weight.saturating_sub(entry.weight);
            state.pending_items = state.pending_items.saturating_sub(u64::from(entry.items));
            let before = state.watermark();
            while state
                .entries
                .front()
                .is_some_and(|e| e.state == EntryState::Done)
            {
                state.entries.pop_front();
                state.dispatched = state.dispatched.saturating_sub(1);
            }
            let moved = state.watermark() != before && !state.checkpoint_requested;
            if moved {
                state.checkpoint_requested = true;
            }
            state.undone = state.undone.saturating_sub(1);
            self.shared.unfinished.send_replace(state.undone);
            (acks, moved)
        };
        self.shared.space.notify_waiters();
        settle_all(acks, outcome);
        if request_checkpoint {
            self.send(Msg::Checkpoint);
        }
    }

    /// Hands a claimed record back without finishing it: it is pending again, handed out
    /// before newer records, and stays in the log (and pins the watermark) until completed.
    pub fn release(&self, claim: Claim) {
        {
            let mut state = self.shared.lock();
            let Ok(at) = state.entries.binary_search_by_key(&claim.id, |e| e.id) else {
                return;
            };
            let entry = &mut state.entries[at];
            if entry.state != EntryState::InFlight {
                return;
            }
            entry.state = EntryState::Pending;
            state.released.insert(claim.id);
        }
        self.shared.records.notify_waiters();
    }

    /// Makes the next reads fail as given, for tests of the consumers.
    #[cfg(test)]
    pub(crate) fn inject_read_faults(&self, faults: &[ReadFault]) {
        self.shared
            .read_faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(faults.iter().copied());
    }

    /// Waits until every record is done.
    pub async fn wait_empty(&self) {
        let mut unfinished = self.shared.unfinished.subscribe();
        let _ = unfinished.wait_for(|n| *n == 0).await;
    }

    /// Stops handing out records and taking appends. Records in flight may still be
    /// completed until [`PersistentQueue::finish`].
    pub fn close(&self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
        }
        self.shared.records.notify_waiters();
        self.shared.space.notify_waiters();
    }

    /// Closes, writes the watermark, syncs and stops the writer. Records not done stay on
    /// disk for the next start.
    pub async fn finish(&self) {
        self.close();
        let (reply, done) = oneshot::channel();
        if self.send(Msg::Close(reply)) {
            let _ = done.await;
        }
    }

    /// Records not yet delivered, and their items and weight (in the sizer's unit).
    pub fn pending(&self) -> (usize, u64, u64) {
        let state = self.shared.lock();
        (state.undone, state.pending_items, state.pending_weight)
    }

    /// Bytes of segment files on disk.
    pub fn disk_used(&self) -> u64 {
        self.shared.lock().disk_used
    }
}

fn shared_dir(shared: &Shared) -> PathBuf {
    shared.opts.directory.clone()
}

impl Drop for PersistentQueue {
    fn drop(&mut self) {
        // Wakes anyone still waiting; the writer stops once the channel is gone.
        if let Ok(mut state) = self.shared.state.lock() {
            state.closed = true;
        }
        self.shared.records.notify_waiters();
        self.shared.space.notify_waiters();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the record's segment was already reclaimed")]
    Gone,
    #[error("cannot read {path}: {error}", path = .0.display(), error = .1)]
    Io(PathBuf, io::Error),
    #[error("damaged record in {path} at offset {offset}", path = .0.display(), offset = .1)]
    Damaged(PathBuf, u64),
}

fn weight_of(sizer: Sizer, payload_len: usize, items: u32) -> u64 {
    match sizer {
        Sizer::Bytes => payload_len as u64,
        Sizer::Items => u64::from(items),
        Sizer::Requests => 1,
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being written to, owned by the writer.
struct ActiveSegment {
    seq: u64,
    file: File,
    key: Key,
    len: u64,
}

/// Creates segment `seq` with its header. A file left half-made (no space for the header)
/// is removed.
fn create_segment(dir: &Path, seq: u64) -> io::Result<(ActiveSegment, Segment)> {
    let path = segment_path(dir, seq);
    let made = make_segment(dir, &path, seq);
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

fn make_segment(dir: &Path, path: &Path, seq: u64) -> io::Result<(ActiveSegment, Segment)> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    // A fresh salt per segment: payload bytes cannot be made to look like a record of it.
    let salt = fastrand::u64(..);
    file.write_all(&record::segment_header(salt))?;
    let reader = File::open(path)?;
    // The new file's directory entry is durable before it joins the cursor's extent (and,
    // with `fsync: always`, before records in it are acknowledged): a start must never
    // take a file the cursor names for lost when it was only never made durable. Segments
    // are started rarely (every `segment_size`), so this costs little with `interval` too.
    sync_dir(dir)?;
    let key = Key::of_salt(salt);
    Ok((
        ActiveSegment {
            seq,
            file,
            key,
            len: SEGMENT_HEADER_LEN as u64,
        },
        Segment {
            path: path.to_path_buf(),
            reader: Some(SegmentReader {
                file: Arc::new(reader),
                key,
            }),
            len: SEGMENT_HEADER_LEN as u64,
            last_id: None,
        },
    ))
}

struct Replayed {
    entries: VecDeque<Entry>,
    segments: BTreeMap<u64, Segment>,
    next_id: u64,
    next_segment: u64,
    damaged: u64,
    lost_segments: u64,
    lost_records: u64,
}

/// What replay learned of one segment file.
struct Found {
    path: PathBuf,
    len: u64,
    key: Option<Key>,
    first_id: Option<u64>,
    last_id: Option<u64>,
    /// Holds records at or above the watermark.
    live: bool,
}

/// Scans every segment: keeps the records at or above the watermark, quarantines damaged
/// ranges (once: a range already in quarantine is not counted again), truncates a torn tail
/// and reports files missing from the run the cursor recorded. Nothing is deleted here: files
/// with nothing to deliver are left to the first checkpoint, which records the new run first.
fn replay(
    opts: &QueueOptions,
    cursor: &Cursor,
    metrics: &QueueMetrics,
) -> Result<Replayed, StorageError> {
    let dir = &opts.directory;
    let watermark = cursor.watermark();
    let io_err = |what: &str, path: &Path, source: io::Error| StorageError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let mut seqs = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io_err("cannot list", dir, e))? {
        let item = item.map_err(|e| io_err("cannot list", dir, e))?;
        let name = item.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        seqs.push(seq);
    }
    seqs.sort_unstable();
    let mut entries: Vec<Entry> = Vec::new();
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    let mut max_id: Option<u64> = None;
    let mut damaged = 0u64;
    for &seq in &seqs {
        let path = segment_path(dir, seq);
        let bytes = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
        let scan = record::scan(&bytes);
        for d in &scan.damage {
            if quarantine(dir, seq, d, &bytes) {
                damaged += 1;
                metrics.damaged.add(1);
                tracing::warn!(
                    file = %path.display(),
                    offset = d.offset,
                    bytes = d.len,
                    "damaged data in the persistent queue; copied to quarantine and skipped"
                );
            }
        }
        let mut len = bytes.len() as u64;
        if scan.valid_end < len {
            // Best effort: if the torn tail stays, the next start skips it again (it is
            // already in quarantine, so it is not counted twice).
            let cut = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(scan.valid_end));
            match cut {
                Ok(()) => len = scan.valid_end,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot cut the damaged tail off a persistent queue file")
                }
            }
        }
        let mut live = false;
        for r in &scan.records {
            max_id = Some(max_id.map_or(r.id, |m: u64| m.max(r.id)));
            if r.id >= watermark {
                live = true;
                entries.push(Entry {
                    id: r.id,
                    segment: seq,
                    offset: r.offset,
                    payload_len: r.payload_len,
                    items: r.items,
                    weight: weight_of(opts.sizer, r.payload_len as usize, r.items),
                    state: EntryState::Pending,
                    acks: Vec::new(),
                });
            }
        }
        found.insert(
            seq,
            Found {
                path,
                len,
                key: scan.key,
                // The scan only accepts growing ids.
                first_id: scan.records.first().map(|r| r.id),
                last_id: scan.records.last().map(|r| r.id),
                live,
            },
        );
    }
    let extent = cursor.extent();
    let (lost_segments, lost_records) = report_missing(dir, &mut found, extent, watermark);
    metrics.lost_segments.add(lost_segments);
    let mut segments = BTreeMap::new();
    for (seq, f) in found {
        let reader = match (f.live, f.key) {
            (true, Some(key)) => {
                let file = File::open(&f.path).map_err(|e| io_err("cannot open", &f.path, e))?;
                Some(SegmentReader {
                    file: Arc::new(file),
                    key,
                })
            }
            _ => None,
        };
        segments.insert(
            seq,
            Segment {
                path: f.path,
                reader,
                len: f.len,
                last_id: f.last_id,
            },
        );
    }
    // Ids only grow, so this is a no-op unless files were moved around by hand.
    entries.sort_by_key(|e| e.id);
    entries.dedup_by_key(|e| e.id);
    // The scan never accepts `NO_ID`, so this cannot overflow; if it did, the writer
    // refuses appends rather than reuse ids. The cursor's next id is never ahead of the
    // truth, and keeps the ids of records in lost files from being given again.
    let next_id = max_id
        .map_or(watermark, |m| {
            m.checked_add(1).unwrap_or(NO_ID).max(watermark)
        })
        .max(extent.map_or(0, |e| e.next_id));
    // Never reuse the number of a file the log had, lost ones included.
    let next_segment = [
        segments.keys().next_back().map(|s| s + 1),
        extent.map(|e| e.end_segment),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    Ok(Replayed {
        entries: entries.into(),
        segments,
        next_id,
        next_segment,
        damaged,
        lost_segments,
        lost_records,
    })
}

/// Finds the segment files missing from the unbroken run the log keeps (the run the cursor
/// recorded, or, without one, the run between the oldest and newest files found), reports
/// each missing range with the undelivered records it held, and puts an empty placeholder in
/// its place so it is reported once. Returns (files lost, records known lost).
fn report_missing(
    dir: &Path,
    found: &mut BTreeMap<u64, Found>,
    extent: Option<Extent>,
    watermark: u64,
) -> (u64, u64) {
    let first = extent
        .map(|e| e.first_segment)
        .or_else(|| found.keys().next().copied());
    let end = [
        extent.map(|e| e.end_segment),
        found.keys().next_back().map(|s| s + 1),
    ]
    .into_iter()
    .flatten()
    .max();
    let (Some(first), Some(end)) = (first, end) else {
        return (0, 0);
    };
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for seq in first..end {
        if found.contains_key(&seq) {
            continue;
        }
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    let (mut lost_segments, mut lost_records) = (0u64, 0u64);
    for (from, to) in runs {
        // Ids are given in order across files, so the records the run held are those
        // between the last one before it and the first one after it.
        let from_id = found
            .range(..from)
            .rev()
            .find_map(|(_, f)| f.last_id)
            .map_or(watermark, |last| last.saturating_add(1).max(watermark));
        let next_id = found.range(to + 1..).find_map(|(_, f)| f.first_id);
        let files = if from == to {
            segment_path(dir, from).display().to_string()
        } else {
            format!(
                "{} to {}",
                segment_path(dir, from).display(),
                segment_path(dir, to).display()
            )
        };
        let count = to - from + 1;
        let (missing, held) = if count == 1 {
            ("a persistent queue file is missing", "it held")
        } else {
            ("persistent queue files are missing", "they held")
        };
        match next_id {
            Some(next) if next <= from_id => {
                tracing::warn!(files, "{missing}, but {held} no undelivered records");
            }
            Some(next) => {
                let records = next - from_id;
                lost_segments += count;
                lost_records += records;
                tracing::error!(
                    files,
                    records,
                    "{missing} (deleted, or lost by the filesystem): the {records} undelivered records {held} are lost"
                );
            }
            // The newest files: records are known only up to the cursor's last write.
            None => {
                let known = extent.map_or(0, |e| e.next_id.saturating_sub(from_id));
                lost_segments += count;
                lost_records += known;
                if known > 0 {
                    tracing::error!(
                        files,
                        records = known,
                        "{missing} (deleted, or lost by the filesystem): at least {known} undelivered records {held} are lost"
                    );
                } else {
                    tracing::error!(
                        files,
                        "{missing} (deleted, or lost by the filesystem): the undelivered records written to it since the last checkpoint, if any, are lost"
                    );
                }
            }
        }
        for seq in from..=to {
            let path = segment_path(dir, seq);
            let made = OpenOptions::new().write(true).create_new(true).open(&path);
            match made {
                Ok(_) => {
                    found.insert(
                        seq,
                        Found {
                            path,
                            len: 0,
                            key: None,
                            first_id: None,
                            last_id: None,
                            live: false,
                        },
                    );
                }
                // Without it the loss is reported again at the next start.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot put a placeholder in place of a missing persistent queue file")
                }
            }
        }
    }
    (lost_segments, lost_records)
}

/// Copies a damaged range into `quarantine/`; false if it was quarantined before.
fn quarantine(dir: &Path, seq: u64, damage: &record::Damage, bytes: &[u8]) -> bool {
    let qdir = dir.join(QUARANTINE_DIR);
    let target = qdir.join(format!(
        "{seq:020}-at-{}-len-{}.bin",
        damage.offset, damage.len
    ));
    if target.exists() {
        return false;
    }
    let start = damage.offset as usize;
    let end = start.saturating_add(damage.len as usize).min(bytes.len());
    // A full disk must not keep the collector from starting: the damaged bytes are then
    // skipped without a copy.
    let copied = std::fs::create_dir_all(&qdir)
        .and_then(|()| std::fs::write(&target, &bytes[start.min(end)..end]));
    if let Err(e) = copied {
        tracing::warn!(file = %target.display(), error = %e, "cannot copy damaged persistent queue data to quarantine");
    }
    true
}

/// Owns the active segment and the cursor; every write to the log happens on its thread.
struct Writer {
    shared: Arc<Shared>,
    /// `None` while no segment could be created (a full disk).
    active: Option<ActiveSegment>,
    cursor: Cursor,
    data_dirty: bool,
    /// Files were created or deleted since the directory was last synced.
    dir_dirty: bool,
    /// The last write found no space: said once, until a write succeeds again.
    out_of_space: bool,
    last_sync: Instant,
    /// Held for the writer's lifetime: the directory's lock.
    _lock: File,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let interval = self
            .shared
            .opts
            .fsync_interval
            .max(Duration::from_millis(1));
        let mut close_reply = None;
        loop {
            let wait = (self.last_sync + interval).saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    self.periodic_sync();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut appends = Vec::new();
            let mut checkpoint = false;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(a) => appends.push(a),
                    Msg::Checkpoint => checkpoint = true,
                    Msg::Close(reply) => {
                        close_reply = Some(reply);
                        break;
                    }
                }
                if appends.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            // Segments the checkpoint deletes free space the appends may need.
            if checkpoint {
                self.checkpoint();
            }
            if !appends.is_empty() {
                self.write_group(appends);
            }
            if close_reply.is_some() {
                break;
            }
            if self.last_sync.elapsed() >= interval {
                self.periodic_sync();
            }
        }
        // Final state for the next start: the watermark, and everything synced.
        self.checkpoint();
        let synced = self
            .active
            .as_ref()
            .map_or(Ok(()), |a| a.file.sync_data())
            .and_then(|()| self.cursor.sync())
            .and_then(|()| sync_dir(&self.shared.opts.directory));
        if let Err(e) = synced {
            tracing::error!(dir = %self.shared.opts.directory.display(), error = %e, "cannot sync the persistent queue at shutdown");
        }
        drop(self);
        if let Some(reply) = close_reply {
            let _ = reply.send(());
        }
    }

    fn periodic_sync(&mut self) {
        if self.data_dirty {
            let synced = self.active.as_ref().map_or(Ok(()), |a| a.file.sync_data());
            if let Err(e) = synced {
                tracing::error!(dir = %self.shared.opts.directory.display(), error = %e, "cannot sync the persistent queue");
            } else {
                self.data_dirty = false;
            }
        }
        if let Err(e) = self.cursor.sync() {
            tracing::warn!(dir = %self.shared.opts.directory.display(), error = %e, "cannot sync the persistent queue's cursor");
        }
        // Deletions and cut tails ride along here (a lost deletion only brings back
        // delivered records).
        if self.dir_dirty {
            match sync_dir(&self.shared.opts.directory) {
                Ok(()) => self.dir_dirty = false,
                Err(e) => {
                    tracing::error!(dir = %self.shared.opts.directory.display(), error = %e, "cannot sync the persistent queue's directory")
                }
            }
        }
        self.last_sync = Instant::now();
    }

    /// Seals the active segment, if any (synced, so nothing acknowledged in it depends on a
    /// later sync), and starts a new one. On failure the active segment stays as it was.
    fn start_segment(&mut self) -> io::Result<()> {
        if let Some(active) = &self.active {
            active.file.sync_data()?;
        }
        let (seq, dir) = {
            let state = self.shared.lock();
            (state.next_segment, self.shared.opts.directory.clone())
        };
        let (active, segment) = create_segment(&dir, seq)?;
        self.active = Some(active);
        // The header is written but not synced: it is synced with the first records.
        self.data_dirty = true;
        let mark = {
            let mut state = self.shared.lock();
            state.disk_used += segment.len;
            self.shared.metrics.disk_bytes.set(state.disk_used as i64);
            state.segments.insert(seq, segment);
            state.active = Some(seq);
            state.next_segment = seq + 1;
            state.mark()
        };
        // So that the new file is missed if it is lost.
        if let Err(e) = self.cursor.store(mark) {
            tracing::warn!(dir = %self.shared.opts.directory.display(), error = %e, "cannot write the persistent queue's cursor");
        }
        Ok(())
    }

    fn write_group(&mut self, appends: Vec<Append>) {
        let shared = self.shared.clone();
        let opts = &shared.opts;
        let group_bytes: u64 = appends
            .iter()
            .map(|a| (HEADER_LEN + a.payload.len()) as u64)
            .sum();
        // Everything delivered but the disk is full of done records in the active segment:
        // start over in a fresh segment so the old one can be reclaimed.
        let reclaim_all = {
            let state = self.shared.lock();
            state.entries.is_empty()
                && self
                    .active
                    .as_ref()
                    .is_some_and(|a| a.len > SEGMENT_HEADER_LEN as u64)
                && state.disk_used + group_bytes > opts.max_disk
        };
        if reclaim_all && self.start_segment().is_ok() {
            self.checkpoint();
        }
        // Why appends fail while there is no segment to write to.
        let mut no_segment: Option<io::Error> = None;
        if self.active.is_none()
            && let Err(e) = self.start_segment()
        {
            no_segment = Some(e);
        }
        let segment_size = opts.segment_size.max(1);
        let always = opts.fsync == FsyncPolicy::Always;
        // (append, segment, offset, id) for each record written, and the failures.
        let mut written: Vec<(Append, u64, u64, u64)> = Vec::new();
        let mut failed: Vec<(Append, io::Error)> = Vec::new();
        let mut chunk: Vec<(Append, u64, u64)> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut next_id = self.shared.lock().next_id;
        for a in appends {
            let len = (HEADER_LEN + a.payload.len()) as u64;
            let filled = self.active.as_ref().map(|s| s.len + buf.len() as u64);
            if filled.is_some_and(|f| f > SEGMENT_HEADER_LEN as u64 && f + len > segment_size) {
                self.flush_chunk(
                    &mut buf,
                    &mut chunk,
                    &mut written,
                    &mut failed,
                    &mut next_id,
                );
                if let Err(e) = self.start_segment() {
                    // Writing goes on in the current segment, past its size.
                    if !out_of_space(&e) {
                        tracing::error!(dir = %opts.directory.display(), error = %e, "cannot start a new persistent queue segment");
                    }
                }
            }
            let Some(active) = self.active.as_ref() else {
                let e = no_segment.as_ref().map_or_else(
                    || io::Error::other("no persistent queue segment to write to"),
                    copy_error,
                );
                failed.push((a, e));
                continue;
            };
            if next_id == NO_ID {
                // 2^64 records cannot be written for real; refusing beats reusing ids.
                let e = io::Error::other("persistent queue record ids are exhausted");
                failed.push((a, e));
                continue;
            }
            let offset = active.len + buf.len() as u64;
            record::encode(&mut buf, active.key, next_id, a.items, &a.payload);
            chunk.push((a, offset, next_id));
            next_id += 1;
        }
        self.flush_chunk(
            &mut buf,
            &mut chunk,
            &mut written,
            &mut failed,
            &mut next_id,
        );
        let mut sync_error = None;
        if always && !written.is_empty() {
            let synced = self.active.as_ref().map_or(Ok(()), |a| a.file.sync_data());
            match synced {
                Ok(()) => self.data_dirty = false,
                Err(e) => sync_error = Some(e),
            }
        }
        self.note_space(&written, &failed, sync_error.as_ref());
        let mut replies = Vec::new();
        {
            let mut state = self.shared.lock();
            let state = &mut *state;
            state.next_id = state.next_id.max(next_id);
            for (a, segment, offset, id) in written {
                let len = (HEADER_LEN + a.payload.len()) as u64;
                state.reserved_weight = state.reserved_weight.saturating_sub(a.weight);
                state.reserved_disk = state
                    .reserved_disk
                    .saturating_sub(reserved_disk_of(a.payload.len()));
                state.disk_used += len;
                state.pending_weight += a.weight;
                state.pending_items += u64::from(a.items);
                if let Some(s) = state.segments.get_mut(&segment) {
                    s.len += len;
                    s.last_id = Some(id);
                }
                state.entries.push_back(Entry {
                    id,
                    segment,
                    offset,
                    payload_len: a.payload.len() as u32,
                    items: a.items,
                    weight: a.weight,
                    state: EntryState::Pending,
                    acks: a.acks,
                });
                state.undone += 1;
                // A failed sync may have lost the data: the sender hears an error and sends
                // again, while the record is still delivered if it did survive (a duplicate).
                let answer = match &sync_error {
                    Some(e) => Err(Refused {
                        error: copy_error(e),
                        acks: Vec::new(),
                    }),
                    None => Ok(()),
                };
                replies.push((a.reply, answer));
            }
            for (a, error) in failed {
                state.reserved_weight = state.reserved_weight.saturating_sub(a.weight);
                state.reserved_disk = state
                    .reserved_disk
                    .saturating_sub(reserved_disk_of(a.payload.len()));
                replies.push((
                    a.reply,
                    Err(Refused {
                        error,
                        acks: a.acks,
                    }),
                ));
            }
            self.shared.unfinished.send_replace(state.undone);
            self.shared.metrics.disk_bytes.set(state.disk_used as i64);
        }
        self.shared.records.notify_waiters();
        self.shared.space.notify_waiters();
        for (reply, answer) in replies {
            let _ = reply.send(answer);
        }
    }

    /// Says once when the disk fills up and once when writes get through again.
    fn note_space(
        &mut self,
        written: &[(Append, u64, u64, u64)],
        failed: &[(Append, io::Error)],
        sync_error: Option<&io::Error>,
    ) {
        let full = failed
            .iter()
            .map(|(_, e)| e)
            .chain(sync_error)
            .find(|e| out_of_space(e));
        let dir = &self.shared.opts.directory;
        if let Some(e) = full {
            if !self.out_of_space {
                self.out_of_space = true;
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "no space left for the persistent queue: new data is refused until there is space (what the log holds is still delivered)"
                );
            }
        } else if self.out_of_space && !written.is_empty() {
            self.out_of_space = false;
            tracing::info!(dir = %dir.display(), "the persistent queue has space again and takes new data");
        }
    }

    /// Writes the buffered records of the active segment in one go.
    fn flush_chunk(
        &mut self,
        buf: &mut Vec<u8>,
        chunk: &mut Vec<(Append, u64, u64)>,
        written: &mut Vec<(Append, u64, u64, u64)>,
        failed: &mut Vec<(Append, io::Error)>,
        next_id: &mut u64,
    ) {
        let Some(active) = self.active.as_mut().filter(|_| !chunk.is_empty()) else {
            return;
        };
        // At the segment's known end, not the file position: whatever a failed write left
        // behind is overwritten by the next one.
        match active.file.write_all_at(buf, active.len) {
            Ok(()) => {
                active.len += buf.len() as u64;
                self.data_dirty = true;
                let segment = active.seq;
                for (a, offset, id) in chunk.drain(..) {
                    written.push((a, segment, offset, id));
                }
            }
            Err(e) => {
                // Cut off whatever part was written (a full disk gets that space back).
                // Then none of these records is on disk and the next ones take their ids;
                // if the cut fails, a record of them may be whole on disk, so the next
                // ones go to a new segment and the ids stay unused.
                match active.file.set_len(active.len) {
                    Ok(()) => {
                        if let Some((_, _, first)) = chunk.first() {
                            *next_id = *first;
                        }
                    }
                    Err(_) => {
                        let _ = self.start_segment();
                    }
                }
                for (a, _, _) in chunk.drain(..) {
                    failed.push((a, copy_error(&e)));
                }
            }
        }
        buf.clear();
    }

    /// Persists the watermark and the extent, then deletes the oldest segments whose records
    /// are all below the watermark.
    fn checkpoint(&mut self) {
        let (mark, reclaim) = {
            let mut state = self.shared.lock();
            let state = &mut *state;
            state.checkpoint_requested = false;
            let watermark = state.watermark();
            // Only the oldest go: the files left stay one unbroken run, so a gap found at the
            // next start is a lost file, never one deleted here.
            let done: Vec<u64> = state
                .segments
                .iter()
                .take_while(|(seq, s)| {
                    Some(**seq) != state.active && s.last_id.is_none_or(|id| id < watermark)
                })
                .map(|(seq, _)| *seq)
                .collect();
            let mut reclaim = Vec::new();
            for seq in done {
                if let Some(s) = state.segments.remove(&seq) {
                    state.disk_used = state.disk_used.saturating_sub(s.len);
                    reclaim.push(s.path);
                }
            }
            self.shared.metrics.disk_bytes.set(state.disk_used as i64);
            (state.mark(), reclaim)
        };
        if let Err(e) = self.cursor.store(mark) {
            tracing::warn!(dir = %self.shared.opts.directory.display(), error = %e, "cannot write the persistent queue's cursor");
        }
        if !reclaim.is_empty() {
            // The cursor's new first file must be durable before older files are gone, or a
            // crash in between would report them lost at the next start. Space matters more
            // than that report, so the files go even if the sync fails.
            if let Err(e) = self.cursor.sync() {
                tracing::warn!(dir = %self.shared.opts.directory.display(), error = %e, "cannot sync the persistent queue's cursor");
            }
        }
        for path in reclaim {
            self.dir_dirty = true;
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a delivered persistent queue segment");
            }
        }
        self.shared.space.notify_waiters();
    }
}
