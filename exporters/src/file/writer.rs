//! One open output file: its compressor, the bytes waiting to be written, and rotation.
//!
//! The compressor writes into memory and this code moves its output to the file. That keeps
//! the stream's state apart from the file's: when a write fails, the bytes that did not make it
//! stay queued here and are written, in order, once the file takes them again, so neither a
//! half-written record nor a broken compressed stream is left behind by a retry.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use flate2::write::GzEncoder;

use super::config::Compression;
use super::rotation::{self, Policy};

/// Bytes gathered before they are written even if no flush is due, which bounds memory.
const WRITE_CHUNK: usize = 256 * 1024;

enum Codec {
    Plain,
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// A compressed stream that has been ended; only rotation or a new stream may follow.
    Ended,
}

impl Codec {
    /// `level` 0 is the codec's default (zstd 3, gzip 6).
    fn new(compression: Compression, level: i32) -> io::Result<Codec> {
        Ok(match compression {
            Compression::None => Codec::Plain,
            Compression::Gzip => {
                let level = match level {
                    0 | -1 => flate2::Compression::default(),
                    n => flate2::Compression::new(n.clamp(1, 9) as u32),
                };
                Codec::Gzip(GzEncoder::new(Vec::new(), level))
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level)?;
                // Lets `zstd -d` and `zstd -t` detect a damaged file.
                encoder.include_checksum(true)?;
                Codec::Zstd(encoder)
            }
        })
    }

    /// The compressed bytes produced so far, moved into `out`.
    fn drain_into(&mut self, out: &mut Vec<u8>) {
        match self {
            Codec::Gzip(e) => out.append(e.get_mut()),
            Codec::Zstd(e) => out.append(e.get_mut()),
            Codec::Plain | Codec::Ended => {}
        }
    }
}

/// Why a record was not taken, telling the caller whether to retry.
#[derive(Debug)]
pub enum WriteError {
    /// The file cannot be opened or written right now.
    Io(io::Error),
    /// The record itself cannot be written (never expected: compressors take any input).
    Encode(io::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Io(e) => e.fmt(f),
            WriteError::Encode(e) => write!(f, "cannot compress: {e}"),
        }
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// An open file being written.
pub struct Output {
    path: PathBuf,
    compression: Compression,
    /// `compression_params.level`.
    level: i32,
    file: File,
    codec: Codec,
    /// Bytes (already compressed, if compressing) not yet written to the file.
    pending: Vec<u8>,
    /// Uncompressed bytes in the current file, which the size limit applies to. A file
    /// opened for appending starts at its size on disk.
    content: u64,
    /// Records went into the compressor since it was last flushed.
    dirty: bool,
    /// The last write error, while bytes are still waiting because of it.
    failure: Option<String>,
    /// The stamp of this file's last backup, so that the next one sorts after it.
    last_backup: Option<NaiveDateTime>,
}

impl Output {
    /// Opens `path`, emptying it when `truncate`, else appending a new stream after what it
    /// holds (concatenated gzip members or zstd frames read as one stream).
    pub fn open(
        path: &Path,
        compression: Compression,
        truncate: bool,
        level: i32,
    ) -> io::Result<Output> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true);
        if truncate {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        let file = options.open(path)?;
        let content = if truncate { 0 } else { file.metadata()?.len() };
        Ok(Output {
            path: path.to_path_buf(),
            compression,
            level,
            file,
            codec: Codec::new(compression, level)?,
            pending: Vec::new(),
            content,
            dirty: false,
            failure: None,
            last_backup: None,
        })
    }

    #[cfg(test)]
    pub fn content_len(&self) -> u64 {
        self.content
    }

    /// Bytes held in memory that the file has not taken yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    pub fn is_failing(&self) -> bool {
        self.failure.is_some()
    }

    /// Makes the output ready for `incoming` more bytes: catches up on a failed write, rotates
    /// when the size limit would be passed, and starts a new stream after an ended one. Any
    /// error leaves the output as it was for the next attempt, and the record not taken.
    pub fn prepare(&mut self, incoming: u64, policy: Option<&Policy>) -> io::Result<()> {
        if self.failure.is_some() {
            self.drain()?;
        }
        if let Some(policy) = policy
            && policy.must_rotate(self.content, incoming)
        {
            return self.rotate(policy);
        }
        if matches!(self.codec, Codec::Ended) {
            // An earlier close ended the stream but did not get to close the file.
            self.drain()?;
            self.codec = Codec::new(self.compression, self.level)?;
        }
        Ok(())
    }

    /// Takes one whole record. Call [`Output::prepare`] first. A write error after the record
    /// is taken does not refuse it: its bytes wait here, and the next `prepare` reports it.
    pub fn append(&mut self, record: &[u8]) -> Result<(), WriteError> {
        match &mut self.codec {
            Codec::Plain => self.pending.extend_from_slice(record),
            Codec::Gzip(e) => e.write_all(record).map_err(WriteError::Encode)?,
            Codec::Zstd(e) => e.write_all(record).map_err(WriteError::Encode)?,
            Codec::Ended => {
                return Err(WriteError::Io(io::Error::other(
                    "the compressed stream has ended",
                )));
            }
        }
        self.codec.drain_into(&mut self.pending);
        self.content += record.len() as u64;
        self.dirty = true;
        if self.pending.len() >= WRITE_CHUNK {
            let _ = self.drain();
        }
        Ok(())
    }

    /// Pushes everything taken so far to the file so that a reader of the live file can
    /// decompress every record written up to now. A compressed stream is ended (its gzip
    /// member or zstd frame closed) rather than flushed: given a frame cut after a flush block,
    /// `zstd -d` holds back output it has decoded, so an idle live file read as ending in the
    /// middle of a line. The next record starts a new member or frame, and concatenated ones
    /// read as one stream.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.dirty && matches!(self.codec, Codec::Gzip(_) | Codec::Zstd(_)) {
            let next = Codec::new(self.compression, self.level)?;
            let tail = match std::mem::replace(&mut self.codec, next) {
                Codec::Gzip(e) => e.finish(),
                Codec::Zstd(e) => e.finish(),
                Codec::Plain | Codec::Ended => Ok(Vec::new()),
            };
            self.pending.append(&mut tail?);
            self.dirty = false;
        }
        self.drain()
    }

    /// Writes the waiting bytes, keeping those the file did not take.
    fn drain(&mut self) -> io::Result<()> {
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Ok(());
            }
            match self.file.write(&self.pending[written..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..written);
        match &result {
            Ok(()) => {
                if self.failure.take().is_some() {
                    tracing::info!(path = %self.path.display(), "file is writable again");
                }
            }
            Err(e) => {
                if self.failure.is_none() {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %e,
                        waiting_bytes = self.pending.len(),
                        "cannot write file; keeping the data and refusing more until it works"
                    );
                }
                self.failure = Some(e.to_string());
            }
        }
        result
    }

    /// Ends a compressed stream (writing its trailer) and writes everything out.
    fn end_stream(&mut self) -> io::Result<()> {
        let codec = std::mem::replace(&mut self.codec, Codec::Ended);
        let tail = match codec {
            Codec::Gzip(e) => Some(e.finish()),
            Codec::Zstd(e) => Some(e.finish()),
            Codec::Plain => {
                self.codec = Codec::Plain;
                None
            }
            Codec::Ended => None,
        };
        if let Some(tail) = tail {
            self.pending.append(&mut tail?);
        }
        self.dirty = false;
        self.drain()
    }

    /// Ends the current file, renames it to a timestamped backup, opens a fresh one and prunes
    /// old backups. Resumable: a failure at any step is picked up there by the next call.
    pub fn rotate(&mut self, policy: &Policy) -> io::Result<()> {
        self.end_stream()?;
        let (backup, stamp) = rotation::next_backup(&self.path, policy.now(), self.last_backup);
        std::fs::rename(&self.path, &backup)?;
        self.last_backup = Some(stamp);
        // Appending rather than truncating: nothing should be at the path after the rename, and
        // if something is, it is not ours to destroy.
        let fresh = Output::open(&self.path, self.compression, false, self.level)?;
        self.file = fresh.file;
        self.codec = fresh.codec;
        self.content = fresh.content;
        for removed in rotation::prune(&self.path, policy, policy.now()) {
            tracing::debug!(backup = %removed.display(), "removed old backup");
        }
        Ok(())
    }

    /// Ends the stream and writes everything; `sync` also waits for the disk. On failure the
    /// output is still usable and holds what was not written.
    pub fn close(&mut self, sync: bool) -> io::Result<()> {
        self.end_stream()?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn plain_append_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let mut out = Output::open(&path, Compression::None, true, 0).unwrap();
        out.prepare(3, None).unwrap();
        out.append(b"a\n").unwrap();
        out.flush().unwrap();
        out.close(true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\n");

        let mut again = Output::open(&path, Compression::None, false, 0).unwrap();
        assert_eq!(again.content_len(), 2);
        again.append(b"b\n").unwrap();
        again.close(false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\n");

        let mut fresh = Output::open(&path, Compression::None, true, 0).unwrap();
        fresh.close(false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn compressed_streams_are_readable_live_and_complete_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let path = dir.path().join(format!("out-{compression:?}"));
            let mut out = Output::open(&path, compression, true, 0).unwrap();
            out.append(b"one\n").unwrap();
            out.flush().unwrap();
            // A reader of the live file sees every flushed record, though the stream has no end.
            let live = std::fs::read(&path).unwrap();
            let mut seen = Vec::new();
            let _ = match compression {
                Compression::Gzip => flate2::read::GzDecoder::new(&live[..]).read_to_end(&mut seen),
                _ => zstd::stream::read::Decoder::new(&live[..])
                    .unwrap()
                    .read_to_end(&mut seen),
            };
            assert_eq!(seen, b"one\n", "{compression:?}");
            out.append(b"two\n").unwrap();
            out.close(true).unwrap();

            // Appending starts a second stream after the first.
            let mut more = Output::open(&path, compression, false, 0).unwrap();
            more.append(b"three\n").unwrap();
            more.close(false).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let text = match compression {
                Compression::Gzip => gunzip(&bytes),
                _ => zstd::decode_all(&bytes[..]).unwrap(),
            };
            assert_eq!(text, b"one\ntwo\nthree\n", "{compression:?}");
        }
    }

    #[test]
    fn write_errors_keep_the_data_and_refuse_more() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut out = Output::open(full, Compression::None, false, 0).unwrap();
        out.prepare(2, None).unwrap();
        out.append(b"x\n").unwrap();
        assert!(out.flush().is_err());
        assert!(out.is_failing());
        assert_eq!(out.pending_len(), 2);
        assert!(out.prepare(2, None).is_err());
    }

    #[test]
    fn rotation_ends_the_stream_and_starts_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl.zst");
        let policy = Policy {
            max_bytes: 10,
            max_backups: 1,
            max_age: None,
            localtime: false,
        };
        let mut out = Output::open(&path, Compression::Zstd, true, 0).unwrap();
        for record in [&b"0123456\n"[..], b"abcdefg\n", b"ABCDEFG\n"] {
            out.prepare(record.len() as u64, Some(&policy)).unwrap();
            out.append(record).unwrap();
        }
        out.close(false).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[1], "out.jsonl.zst");
        assert!(names[0].starts_with("out-") && names[0].ends_with(".jsonl.zst"));
        let backup = std::fs::read(dir.path().join(&names[0])).unwrap();
        assert_eq!(zstd::decode_all(&backup[..]).unwrap(), b"abcdefg\n");
        let current = std::fs::read(&path).unwrap();
        assert_eq!(zstd::decode_all(&current[..]).unwrap(), b"ABCDEFG\n");
    }
}
