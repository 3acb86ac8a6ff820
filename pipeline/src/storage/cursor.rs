//! The delivery watermark: the lowest record id not yet delivered (every record below it is
//! done). It is written to one of two checksummed slots in turn, so a write torn by a crash
//! damages only the slot being written and the other still holds the previous watermark. A
//! stale watermark only means records are delivered again (duplicates), never lost.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SLOT_MAGIC: [u8; 4] = *b"SLQC";
const SLOT_LEN: usize = 24;

/// `magic | crc32 of the rest | sequence u64 | watermark u64`.
fn encode_slot(sequence: u64, watermark: u64) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..4].copy_from_slice(&SLOT_MAGIC);
    slot[8..16].copy_from_slice(&sequence.to_le_bytes());
    slot[16..24].copy_from_slice(&watermark.to_le_bytes());
    let crc = crc32fast::hash(&slot[8..]);
    slot[4..8].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// (sequence, watermark) of an intact slot.
fn decode_slot(slot: &[u8]) -> Option<(u64, u64)> {
    if slot.len() < SLOT_LEN || slot[..4] != SLOT_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(slot[4..8].try_into().ok()?);
    if crc32fast::hash(&slot[8..SLOT_LEN]) != crc {
        return None;
    }
    let sequence = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let watermark = u64::from_le_bytes(slot[16..24].try_into().ok()?);
    Some((sequence, watermark))
}

pub struct Cursor {
    file: File,
    sequence: u64,
    watermark: u64,
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
        let best = [&bytes[..SLOT_LEN], &bytes[SLOT_LEN..]]
            .into_iter()
            .filter_map(decode_slot)
            .max_by_key(|(sequence, _)| *sequence);
        let (sequence, watermark) = best.unwrap_or((0, 0));
        Ok(Cursor {
            file,
            sequence,
            watermark,
            dirty: false,
        })
    }

    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Writes the watermark into the slot not holding the newest value. Not synced here:
    /// losing the latest write costs duplicates only, so syncing waits for [`Cursor::sync`].
    pub fn store(&mut self, watermark: u64) -> io::Result<()> {
        if watermark == self.watermark {
            return Ok(());
        }
        let sequence = self.sequence + 1;
        let slot = (sequence % 2) * SLOT_LEN as u64;
        self.file
            .write_all_at(&encode_slot(sequence, watermark), slot)?;
        self.sequence = sequence;
        self.watermark = watermark;
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

    #[test]
    fn newest_slot_wins_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let mut c = Cursor::open(&path).unwrap();
        assert_eq!(c.watermark(), 0);
        c.store(10).unwrap();
        c.store(25).unwrap();
        c.sync().unwrap();
        assert_eq!(Cursor::open(&path).unwrap().watermark(), 25);

        // Sequence 2 (watermark 25) sits in slot 0; tear it as a crash mid-write would.
        let bytes = std::fs::read(&path).unwrap();
        let mut torn = bytes.clone();
        torn[20] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(Cursor::open(&path).unwrap().watermark(), 10);

        // Both slots unreadable: replay everything (duplicates, never loss).
        std::fs::write(&path, [0x55u8; 2 * SLOT_LEN]).unwrap();
        assert_eq!(Cursor::open(&path).unwrap().watermark(), 0);
        std::fs::write(&path, &bytes[..7]).unwrap();
        let mut c = Cursor::open(&path).unwrap();
        assert_eq!(c.watermark(), 0);
        c.store(3).unwrap();
        assert_eq!(Cursor::open(&path).unwrap().watermark(), 3);
    }
}
