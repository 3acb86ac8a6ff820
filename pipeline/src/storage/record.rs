//! The on-disk format of the write-ahead log and the scan that finds every intact record in
//! a segment, resynchronising after damage.
//!
//! A segment starts with a 16-byte header, `magic "SLQS" | salt u64 | crc32 u32`, where the
//! salt is random per segment. Each record is a 28-byte header followed by the payload:
//! `magic "SLQ2" | payload length u32 | record id u64 | items u32 | payload crc u32 |
//! header crc u32`, little endian. Both checksums start from the segment's salt: each is the
//! CRC32 of the salt's bytes followed by the checked bytes.
//!
//! Why the salt: payloads are bytes a client sent, so after damage, when the scan looks for
//! the next record, a payload could hold something shaped like a record. Without knowing the
//! salt (which never leaves the segment file) a client cannot produce checksums that match,
//! so payload bytes cannot pass for a record. The header has its own checksum so a false
//! marker is rejected from 24 bytes, before the (up to segment-sized) payload is hashed:
//! resynchronising over a long damaged range stays linear. Ids only grow within a segment,
//! and `u64::MAX` is never assigned, so an accepted id always leaves room for the next one.
//!
//! The checksums depend on the salt only through the CRC32 of its bytes (the [`Key`]), and a
//! CRC32 step can be run backwards. So when the segment header is damaged, the key comes back
//! from any intact record (its header checksum, run backwards over the header, gives the key;
//! its payload checksum confirms it) and the records of the segment are not lost with it.

/// "SLQS": sluice queue segment.
pub const SEGMENT_MAGIC: [u8; 4] = *b"SLQS";
pub const SEGMENT_HEADER_LEN: usize = 16;
/// "SLQ2": sluice queue record, format 2.
pub const MAGIC: [u8; 4] = *b"SLQ2";
pub const HEADER_LEN: usize = 28;
/// Never a record id: the writer stops before it, and the scan refuses it.
pub const NO_ID: u64 = u64::MAX;

/// One intact record found by [`scan`]: where it sits and what its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    pub id: u64,
    pub items: u32,
    /// Offset of the header in the segment.
    pub offset: u64,
    pub payload_len: u32,
}

impl Located {
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

/// A byte range of a segment that holds no intact record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len: u64,
}

/// What every checksum of a segment starts from: the CRC32 of the segment's salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(u32);

impl Key {
    pub fn of_salt(salt: u64) -> Key {
        Key(crc32fast::hash(&salt.to_le_bytes()))
    }
}

#[derive(Debug, Default)]
pub struct Scan {
    /// `None` when no record of the segment can be checked (its header is damaged and no
    /// intact record gives the key back): then the whole file is damage.
    pub key: Option<Key>,
    pub records: Vec<Located>,
    pub damage: Vec<Damage>,
    /// End of the last intact record (or of the header): everything after it is damage.
    pub valid_end: u64,
}

/// The header a new segment starts with.
pub fn segment_header(salt: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..4].copy_from_slice(&SEGMENT_MAGIC);
    out[4..12].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The salt of an intact segment header.
pub fn read_segment_header(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..SEGMENT_HEADER_LEN)?;
    if header[..4] != SEGMENT_MAGIC || crc32fast::hash(&header[..12]) != u32_at(header, 12) {
        return None;
    }
    Some(u64_at(header, 4))
}

fn salted(key: Key, bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(key.0);
    h.update(bytes);
    h.finalize()
}

/// The table of the reflected CRC32 (polynomial 0xEDB88320) that crc32fast computes.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// For each top byte, the table index whose entry has it. The top bytes of the entries are
/// all different, which is what lets a CRC32 step be undone.
const BY_TOP_BYTE: [u8; 256] = {
    let mut index = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        index[(CRC_TABLE[i] >> 24) as usize] = i as u8;
        i += 1;
    }
    index
};

/// The key under which `bytes` checksum to `crc`: the CRC32 run backwards over `bytes`.
fn key_for(bytes: &[u8], crc: u32) -> Key {
    // A forward step is `next = TABLE[(state ^ byte) & 0xff] ^ (state >> 8)`: the top byte
    // of `next` names the table entry, which gives back all of `state`.
    let mut state = !crc;
    for &byte in bytes.iter().rev() {
        let i = BY_TOP_BYTE[(state >> 24) as usize];
        state = ((state ^ CRC_TABLE[i as usize]) << 8) | u32::from(i ^ byte);
    }
    Key(!state)
}

/// Appends one encoded record to `out`. The caller guarantees `payload.len() <= u32::MAX`
/// and `id != NO_ID`.
pub fn encode(out: &mut Vec<u8>, key: Key, id: u64, items: u32, payload: &[u8]) {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&id.to_le_bytes());
    header[16..20].copy_from_slice(&items.to_le_bytes());
    header[20..24].copy_from_slice(&salted(key, payload).to_le_bytes());
    let header_crc = salted(key, &header[..24]);
    header[24..].copy_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The payload length of the record header at `at` if its marker and checksum match.
fn header_at(bytes: &[u8], key: Key, at: usize) -> Option<u32> {
    let header = bytes.get(at..at.checked_add(HEADER_LEN)?)?;
    (header[..4] == MAGIC && salted(key, &header[..24]) == u32_at(header, 24))
        .then(|| u32_at(header, 4))
}

/// The record starting at `at` if it is whole and both checksums match. The payload is
/// hashed only once the header checked out.
fn record_at(bytes: &[u8], key: Key, at: usize) -> Option<Located> {
    let len = header_at(bytes, key, at)?;
    let header = &bytes[at..at + HEADER_LEN];
    let id = u64_at(header, 8);
    if id == NO_ID {
        return None;
    }
    let start = at + HEADER_LEN;
    let payload = bytes.get(start..start.checked_add(len as usize)?)?;
    (salted(key, payload) == u32_at(header, 20)).then_some(Located {
        id,
        items: u32_at(header, 16),
        offset: at as u64,
        payload_len: len,
    })
}

/// Every intact record of a segment file (header included), and the damaged ranges.
pub fn scan(bytes: &[u8]) -> Scan {
    if let Some(salt) = read_segment_header(bytes) {
        return scan_records(bytes, Key::of_salt(salt), false);
    }
    // The header is damaged. Its salt field may still be right (the damage hit the magic or
    // the checksum), and intact records give the key back: keep the key whose records reach
    // furthest into the file. A record forged inside a payload can give a key too (when the
    // real records before it are damaged), but its records end where the real record holding
    // them ends, and the real key's records go on after it.
    let stored = bytes.get(4..12).map(|_| Key::of_salt(u64_at(bytes, 4)));
    let mut keys: Vec<Key> = stored.into_iter().collect();
    for key in recovered_keys(bytes) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|key| scan_records(bytes, key, true))
        .filter(|found| !found.records.is_empty())
        .max_by_key(|found| (found.valid_end, record_bytes(found)))
        .unwrap_or_else(|| {
            let mut whole = Scan::default();
            if !bytes.is_empty() {
                whole.damage.push(Damage {
                    offset: 0,
                    len: bytes.len() as u64,
                });
            }
            whole
        })
}

fn record_bytes(scan: &Scan) -> u64 {
    scan.records.iter().map(Located::total_len).sum()
}

/// Keys tried at most when a segment header is lost (each costs one scan of the file).
const MAX_RECOVERED_KEYS: usize = 4;

/// Keys of intact records found without the segment header: each record marker's header
/// checksum run backwards gives a candidate key, which the record's payload checksum must
/// confirm. Records of a key already found are stepped over, payload included.
fn recovered_keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    // Confirming a candidate hashes its payload; a file full of false markers claiming long
    // payloads must not make this quadratic, so the hashing is bounded by the file's size.
    let mut budget = bytes.len().saturating_mul(2);
    let mut at = SEGMENT_HEADER_LEN;
    while keys.len() < MAX_RECOVERED_KEYS {
        let Some(candidate) = find_magic(bytes, at) else {
            break;
        };
        at = candidate + 1;
        if let Some(len) = keys.iter().find_map(|k| header_at(bytes, *k, candidate)) {
            at = candidate.saturating_add(HEADER_LEN + len as usize);
            continue;
        }
        let Some(header) = bytes.get(candidate..candidate + HEADER_LEN) else {
            break;
        };
        let key = key_for(&header[..24], u32_at(header, 24));
        let record_len = HEADER_LEN + u32_at(header, 4) as usize;
        if candidate.saturating_add(record_len) > bytes.len() {
            continue;
        }
        if record_len > budget {
            break;
        }
        budget -= record_len;
        if record_at(bytes, key, candidate).is_some() {
            keys.push(key);
            at = candidate + record_len;
        }
    }
    keys
}

/// Appends a damaged range, joined to the previous one when they touch.
fn push_damage(damage: &mut Vec<Damage>, offset: u64, len: u64) {
    match damage.last_mut() {
        Some(last) if last.offset + last.len == offset => last.len += len,
        _ => damage.push(Damage { offset, len }),
    }
}

/// The records of a segment checked with `key`, from the end of the segment header on;
/// with `header_damaged`, the header itself is the first damaged range.
fn scan_records(bytes: &[u8], key: Key, header_damaged: bool) -> Scan {
    let mut scan = Scan {
        key: Some(key),
        valid_end: SEGMENT_HEADER_LEN as u64,
        ..Scan::default()
    };
    if header_damaged {
        push_damage(
            &mut scan.damage,
            0,
            bytes.len().min(SEGMENT_HEADER_LEN) as u64,
        );
    }
    let mut at = SEGMENT_HEADER_LEN;
    // Ids must grow: a record whose id does not is not one the writer wrote after the
    // previous one, whatever its checksums say.
    let follows = |r: &Located, last: Option<u64>| last.is_none_or(|l| r.id > l);
    let mut last_id: Option<u64> = None;
    while at < bytes.len() {
        if let Some(record) = record_at(bytes, key, at).filter(|r| follows(r, last_id)) {
            at += record.total_len() as usize;
            scan.valid_end = at as u64;
            last_id = Some(record.id);
            scan.records.push(record);
            continue;
        }
        // Resynchronise: the next position where a whole valid record starts.
        let damaged_from = at;
        let mut next = at + 1;
        let resumed = loop {
            match find_magic(bytes, next) {
                Some(candidate)
                    if record_at(bytes, key, candidate).is_some_and(|r| follows(&r, last_id)) =>
                {
                    break Some(candidate);
                }
                Some(candidate) => next = candidate + 1,
                None => break None,
            }
        };
        let end = resumed.unwrap_or(bytes.len());
        push_damage(
            &mut scan.damage,
            damaged_from as u64,
            (end - damaged_from) as u64,
        );
        at = end;
    }
    scan
}

fn find_magic(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .map(|p| p + from)
}

/// Checks a record read back for delivery and returns its payload.
pub fn verify(bytes: &[u8], key: Key, expected_id: u64) -> Option<&[u8]> {
    let record = record_at(bytes, key, 0)?;
    if record.id != expected_id {
        return None;
    }
    bytes.get(HEADER_LEN..HEADER_LEN + record.payload_len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u64 = 0x5eed_1234_abcd_0042;

    fn key() -> Key {
        Key::of_salt(SALT)
    }

    fn segment(n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut out = segment_header(SALT).to_vec();
        let mut offsets = Vec::new();
        for id in 0..n {
            offsets.push(out.len() as u64);
            encode(
                &mut out,
                key(),
                id,
                id as u32,
                format!("payload-{id}").as_bytes(),
            );
        }
        (out, offsets)
    }

    fn ids(bytes: &[u8]) -> Vec<u64> {
        scan(bytes).records.iter().map(|r| r.id).collect()
    }

    #[test]
    fn intact_segment_scans_clean() {
        let (bytes, offsets) = segment(5);
        let s = scan(&bytes);
        assert_eq!(s.key, Some(key()));
        assert!(s.damage.is_empty());
        assert_eq!(s.valid_end, bytes.len() as u64);
        assert_eq!(ids(&bytes), [0, 1, 2, 3, 4]);
        assert_eq!(s.records[3].offset, offsets[3]);
        let r = s.records[2];
        let raw = &bytes[r.offset as usize..(r.offset + r.total_len()) as usize];
        assert_eq!(verify(raw, key(), 2), Some(&b"payload-2"[..]));
        assert_eq!(verify(raw, key(), 3), None);
        assert_eq!(verify(raw, Key::of_salt(SALT ^ 1), 2), None);
    }

    #[test]
    fn flipped_bits_lose_only_the_hit_record() {
        let (mut bytes, offsets) = segment(5);
        // One bit in the payload of record 1, one in the magic of record 3.
        bytes[offsets[1] as usize + HEADER_LEN + 2] ^= 0x10;
        bytes[offsets[3] as usize] ^= 0x01;
        let s = scan(&bytes);
        assert_eq!(ids(&bytes), [0, 2, 4]);
        assert_eq!(
            s.damage,
            [
                Damage {
                    offset: offsets[1],
                    len: offsets[2] - offsets[1]
                },
                Damage {
                    offset: offsets[3],
                    len: offsets[4] - offsets[3]
                }
            ]
        );
        assert_eq!(s.valid_end, bytes.len() as u64);
    }

    #[test]
    fn torn_tail_and_zero_fill_are_damage_after_the_last_record() {
        let (bytes, offsets) = segment(4);
        let torn = &bytes[..bytes.len() - 3];
        let s = scan(torn);
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.valid_end, offsets[3]);
        assert_eq!(s.damage.len(), 1);
        assert_eq!(s.damage[0].offset + s.damage[0].len, torn.len() as u64);

        let mut zeroed = bytes.clone();
        zeroed.extend_from_slice(&[0u8; 4096]);
        let s = scan(&zeroed);
        assert_eq!(s.records.len(), 4);
        assert_eq!(s.valid_end, bytes.len() as u64);
        assert_eq!(
            s.damage,
            [Damage {
                offset: bytes.len() as u64,
                len: 4096
            }]
        );
    }

    #[test]
    fn corrupt_length_does_not_swallow_the_following_records() {
        let (mut bytes, offsets) = segment(4);
        let at = offsets[1] as usize + 4;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(ids(&bytes), [0, 2, 3]);
    }

    #[test]
    fn the_key_is_the_checksum_of_the_salt_and_runs_backwards_from_any_record() {
        let mut out = Vec::new();
        encode(&mut out, key(), 9, 3, b"some payload");
        let mut plain = crc32fast::Hasher::new();
        plain.update(&SALT.to_le_bytes());
        plain.update(&out[..24]);
        assert_eq!(plain.finalize(), u32_at(&out, 24));
        assert_eq!(key_for(&out[..24], u32_at(&out, 24)), key());
        for len in [0usize, 1, 7, 300] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            assert_eq!(key_for(&data, salted(key(), &data)), key());
        }
    }

    #[test]
    fn every_single_bit_flip_in_the_segment_header_loses_no_record() {
        let (bytes, _) = segment(5);
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let s = scan(&damaged);
            assert_eq!(ids(&damaged), [0, 1, 2, 3, 4], "bit {bit}");
            assert_eq!(s.key, Some(key()), "bit {bit}");
            assert_eq!(
                s.damage,
                [Damage {
                    offset: 0,
                    len: SEGMENT_HEADER_LEN as u64
                }],
                "bit {bit}"
            );
            assert_eq!(s.valid_end, bytes.len() as u64);
        }
    }

    #[test]
    fn a_destroyed_header_and_first_record_lose_only_that_record() {
        let (mut bytes, offsets) = segment(4);
        // Header and the start of record 0 overwritten, salt field included.
        let end = offsets[0] as usize + 10;
        bytes[..end].fill(0xA5);
        let s = scan(&bytes);
        assert_eq!(ids(&bytes), [1, 2, 3]);
        assert_eq!(
            s.damage,
            [Damage {
                offset: 0,
                len: offsets[1]
            }]
        );
    }

    #[test]
    fn a_damaged_header_with_no_intact_record_makes_the_whole_file_damage() {
        assert!(scan(&[]).damage.is_empty());
        let (mut bytes, offsets) = segment(2);
        bytes[5] ^= 0x01;
        bytes[offsets[0] as usize + HEADER_LEN] ^= 0x01;
        bytes[offsets[1] as usize + 2] ^= 0x01;
        let s = scan(&bytes);
        assert_eq!((s.key, s.records.len()), (None, 0));
        assert_eq!(
            s.damage,
            [Damage {
                offset: 0,
                len: bytes.len() as u64
            }]
        );
        assert_eq!(s.valid_end, 0);
        let s = scan(&bytes[..7]);
        assert_eq!((s.records.len(), s.damage.len()), (0, 1));
    }

    /// A record a client could smuggle into a payload: checksummed with a salt it guessed.
    fn forged(salt: u64, id: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, Key::of_salt(salt), id, 1, b"forged");
        out
    }

    #[test]
    fn payload_bytes_cannot_pass_for_a_record_after_damage() {
        let mut bytes = segment_header(SALT).to_vec();
        encode(&mut bytes, key(), 0, 1, b"first");
        let hostile_at = bytes.len();
        // The client's payload holds fake records (one with the largest id), and the
        // real record holding them is then damaged: the scan resynchronises through it.
        let mut hostile = Vec::new();
        for salt in [0, 1, SALT ^ 1, SALT.rotate_left(7)] {
            hostile.extend(forged(salt, NO_ID));
            hostile.extend(forged(salt, 7));
        }
        encode(&mut bytes, key(), 1, 1, &hostile);
        encode(&mut bytes, key(), 2, 1, b"last");
        bytes[hostile_at + 5] ^= 0x40;
        let s = scan(&bytes);
        assert_eq!(ids(&bytes), [0, 2]);
        assert_eq!(s.damage.len(), 1);
    }

    #[test]
    fn without_a_header_the_real_key_beats_keys_forged_inside_a_payload() {
        // The client's payload is the first record and holds records of its own salt; the
        // segment header and that record's header are both damaged, so the first record
        // that checks out under some key is a forged one.
        let client_salt = 77;
        let mut hostile = Vec::new();
        for id in 0..5 {
            hostile.extend(forged(client_salt, 100 + id));
        }
        let mut bytes = segment_header(SALT).to_vec();
        encode(&mut bytes, key(), 0, 1, &hostile);
        for id in 1..4 {
            encode(&mut bytes, key(), id, 1, format!("real-{id}").as_bytes());
        }
        bytes[..SEGMENT_HEADER_LEN].fill(0);
        bytes[SEGMENT_HEADER_LEN + 6] ^= 0x08;
        let s = scan(&bytes);
        assert_eq!(s.key, Some(key()));
        assert_eq!(ids(&bytes), [1, 2, 3]);
        // With the record holding them intact, the forged records are never looked at.
        let mut bytes = segment_header(SALT).to_vec();
        encode(&mut bytes, key(), 0, 1, &hostile);
        encode(&mut bytes, key(), 1, 1, b"real-1");
        bytes[..SEGMENT_HEADER_LEN].fill(0);
        assert_eq!(ids(&bytes), [0, 1]);
    }

    #[test]
    fn the_largest_id_is_never_a_record() {
        let mut bytes = segment_header(SALT).to_vec();
        encode(&mut bytes, key(), 0, 1, b"a");
        let at = bytes.len();
        encode(&mut bytes, key(), NO_ID, 1, b"b");
        let s = scan(&bytes);
        assert_eq!(ids(&bytes), [0]);
        assert_eq!(s.valid_end, at as u64);
    }

    #[test]
    fn resync_accepts_only_ids_that_grow() {
        let mut bytes = segment_header(SALT).to_vec();
        encode(&mut bytes, key(), 10, 1, b"a");
        let damaged_at = bytes.len();
        encode(&mut bytes, key(), 11, 1, b"b");
        // Stale copies of earlier ids after the damage (as if bytes were moved around).
        encode(&mut bytes, key(), 3, 1, b"old");
        encode(&mut bytes, key(), 10, 1, b"dup");
        encode(&mut bytes, key(), 12, 1, b"c");
        bytes[damaged_at] ^= 0x01;
        assert_eq!(ids(&bytes), [10, 12]);
    }

    #[test]
    fn false_markers_with_huge_lengths_are_rejected_by_the_header_checksum() {
        // A tail of markers each claiming to be followed by the rest of the segment:
        // their header checksums fail, so the tail is one damaged range.
        let (mut bytes, _) = segment(2);
        let tail_at = bytes.len();
        for _ in 0..10_000 {
            bytes.extend_from_slice(&MAGIC);
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 2);
        assert_eq!(
            s.damage,
            [Damage {
                offset: tail_at as u64,
                len: (bytes.len() - tail_at) as u64
            }]
        );
    }
}
