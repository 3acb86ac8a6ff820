//! The delivery watermark: the lowest record id not yet delivered (every record below it is
//! done), stored with the extent of the log when it was written (the next record id, and the
//! range of segment files that exist) so that a start can tell when files went missing. It is
//! written to one of two checksummed slots in turn, so a write torn by a crash damages only the
//! slot being written and the other still holds the previous value. A stale watermark only
//! means records are delivered again (duplicates), never lost.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SLOT_MAGIC: [u8; 4] = *b"SLQD";
const SLOT_LEN: usize = 48;
/// The earlier format, read so an upgrade keeps its watermark: `"SLQC" | crc32 of the rest |
/// sequence u64 | watermark u64`, slots at 0 and 24.
const OLD_SLOT_MAGIC: [u8; 4] = *b"SLQC";
const OLD_SLOT_LEN: usize = 24;

/// What the log held when the cursor was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Every id below it had been given to a record.
    pub next_id: u64,
    /// The segment files `first_segment..end_segment` existed (deleting files only ever
    /// raises `first_segment`, so a missing one in between was lost).
    pub first_segment: u64,
    pub end_segment: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub watermark: u64,
    pub extent: Extent,
}

/// `magic | crc32 of the rest | sequence u64 | watermark u64 | next_id u64 |
/// first_segment u64 | end_segment u64`.
fn encode_slot(sequence: u64, mark: &Mark) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..4].copy_from_slice(&SLOT_MAGIC);
    slot[8..16].copy_from_slice(&sequence.to_le_bytes());
    slot[16..24].copy_from_slice(&mark.watermark.to_le_bytes());
    slot[24..32].copy_from_slice(&mark.extent.next_id.to_le_bytes());
    slot[32..40].copy_from_slice(&mark.extent.first_segment.to_le_bytes());
    slot[40..48].copy_from_slice(&mark.extent.end_segment.to_le_bytes());
    let crc = crc32fast::hash(&slot[8..]);
    slot[4..8].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The checked body of a slot (after magic and crc), if it is intact.
fn checked(slot: &[u8], magic: [u8; 4], len: usize) -> Option<&[u8]> {
    let slot = slot.get(..len)?;
    if slot[..4] != magic {
        return None;
    }
    let crc = u32::from_le_bytes(slot[4..8].try_into().ok()?);
    (crc32fast::hash(&slot[8..]) == crc).then_some(slot)
}

/// (sequence, mark) of an intact slot.
fn decode_slot(slot: &[u8]) -> Option<(u64, Mark)> {
    let slot = checked(slot, SLOT_MAGIC, SLOT_LEN)?;
    let mark = Mark {
        watermark: u64_at(slot, 16)?,
        extent: Extent {
            next_id: u64_at(slot, 24)?,
            first_segment: u64_at(slot, 32)?,
            end_segment: u64_at(slot, 40)?,
        },
    };
    Some((u64_at(slot, 8)?, mark))
}

/// (sequence, watermark) of an intact slot of the earlier format.
fn decode_old_slot(slot: &[u8]) -> Option<(u64, u64)> {
    let slot = checked(slot, OLD_SLOT_MAGIC, OLD_SLOT_LEN)?;
    Some((u64_at(slot, 8)?, u64_at(slot, 16)?))
}

pub struct Cursor {
    file: File,
    sequence: u64,
    watermark: u64,
    /// `None` until written in this format.
    extent: Option<Extent>,
    /// The slot the next write goes to: not the one holding the newest value.
    next_slot: u64,
    dirty: bool,
}

impl Cursor {
    /// Opens (or creates) the cursor file; the newest intact slot wins, none means 0.
    pub fn open(path: &Path) -> io::Result<Cursor> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = [0u8; 2 * SLOT_LEN];
        let mut read = 0;
        while read < bytes.len() {
            match file.read_at(&mut bytes[read..], read as u64)? {
                0 => break,
                n => read += n,
            }
        }
        let mut cursor = Cursor {
            file,
            sequence: 0,
            watermark: 0,
            extent: None,
            next_slot: 0,
            dirty: false,
        };
        let best = [&bytes[..SLOT_LEN], &bytes[SLOT_LEN..]]
            .into_iter()
            .enumerate()
            .filter_map(|(i, slot)| decode_slot(slot).map(|d| (i, d)))
            .max_by_key(|(_, (sequence, _))| *sequence);
        if let Some((slot, (sequence, mark))) = best {
            cursor.sequence = sequence;
            cursor.watermark = mark.watermark;
            cursor.extent = Some(mark.extent);
            cursor.next_slot = 1 - slot as u64;
            return Ok(cursor);
        }
        let old = [&bytes[..OLD_SLOT_LEN], &bytes[OLD_SLOT_LEN..]]
            .into_iter()
            .filter_map(decode_old_slot)
            .max_by_key(|(sequence, _)| *sequence);
        if let Some((sequence, watermark)) = old {
            cursor.sequence = sequence;
            cursor.watermark = watermark;
            // The first write goes past the old slots, so they stay readable until a slot
            // of this format is.
            cursor.next_slot = 1;
        }
        Ok(cursor)
    }

    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// The extent last written, if the cursor was written in this format.
    pub fn extent(&self) -> Option<Extent> {
        self.extent
    }

    /// Writes the mark into the slot not holding the newest value. Not synced here: losing
    /// the latest write costs duplicates only, so syncing waits for [`Cursor::sync`].
    pub fn store(&mut self, mark: Mark) -> io::Result<()> {
        if mark.watermark == self.watermark && Some(mark.extent) == self.extent {
            return Ok(());
        }
        let sequence = self.sequence + 1;
        self.file.write_all_at(
            &encode_slot(sequence, &mark),
            self.next_slot * SLOT_LEN as u64,
        )?;
        self.next_slot = 1 - self.next_slot;
        self.sequence = sequence;
        self.watermark = mark.watermark;
        self.extent = Some(mark.extent);
        self.dirty = true;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(watermark: u64) -> Mark {
        Mark {
            watermark,
            extent: Extent {
                next_id: watermark + 5,
                first_segment: 2,
                end_segment: 4,
            },
        }
    }

    #[test]
    fn newest_slot_wins_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let mut c = Cursor::open(&path).unwrap();
        assert_eq!((c.watermark(), c.extent()), (0, None));
        c.store(mark(10)).unwrap();
        c.store(mark(25)).unwrap();
        c.sync().unwrap();
        let c = Cursor::open(&path).unwrap();
        assert_eq!((c.watermark(), c.extent()), (25, Some(mark(25).extent)));

        // The second write (watermark 25) sits in slot 1; tear it as a crash mid-write would.
        let bytes = std::fs::read(&path).unwrap();
        let mut torn = bytes.clone();
        torn[SLOT_LEN + 20] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(Cursor::open(&path).unwrap().watermark(), 10);

        // Both slots unreadable: replay everything (duplicates, never loss).
        std::fs::write(&path, [0x55u8; 2 * SLOT_LEN]).unwrap();
        let c = Cursor::open(&path).unwrap();
        assert_eq!((c.watermark(), c.extent()), (0, None));
        std::fs::write(&path, &bytes[..7]).unwrap();
        let mut c = Cursor::open(&path).unwrap();
        assert_eq!(c.watermark(), 0);
        c.store(mark(3)).unwrap();
        assert_eq!(Cursor::open(&path).unwrap().watermark(), 3);
    }

    #[test]
    fn the_earlier_format_is_read_and_kept_until_a_new_slot_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let old_slot = |sequence: u64, watermark: u64| {
            let mut slot = [0u8; OLD_SLOT_LEN];
            slot[..4].copy_from_slice(&OLD_SLOT_MAGIC);
            slot[8..16].copy_from_slice(&sequence.to_le_bytes());
            slot[16..24].copy_from_slice(&watermark.to_le_bytes());
            let crc = crc32fast::hash(&slot[8..]);
            slot[4..8].copy_from_slice(&crc.to_le_bytes());
            slot
        };
        let mut old = old_slot(8, 40).to_vec();
        old.extend(old_slot(7, 33));
        std::fs::write(&path, &old).unwrap();
        let mut c = Cursor::open(&path).unwrap();
        assert_eq!((c.watermark(), c.extent()), (40, None));
        c.store(mark(41)).unwrap();
        // The old slots are untouched by the first write in the new format.
        assert_eq!(std::fs::read(&path).unwrap()[..2 * OLD_SLOT_LEN], old[..]);
        let c = Cursor::open(&path).unwrap();
        assert_eq!((c.watermark(), c.extent()), (41, Some(mark(41).extent)));
    }
}
