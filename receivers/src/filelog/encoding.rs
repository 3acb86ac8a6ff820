//! The encodings of files, as upstream names them: `utf-8` (invalid bytes replaced),
//! `utf-8-raw` (kept), `nop` (raw bytes, never split), `ascii` (read as UTF-8, as upstream),
//! `utf-16le`/`utf-16be`, `utf-16` (the byte order of the file's byte-order mark, which is
//! passed over, little-endian without one, as upstream), and the IANA names of the rest (`big5`, `shift_jis`,
//! `iso-8859-1`, `windows-1252`...).
//!
//! Lines are split on the encoded newline; UTF-16 text is split after transcoding to UTF-8,
//! with the byte offsets mapped back, so checkpoints always count file bytes.

use encoding_rs::Encoding;

use super::operators::Value;

#[derive(Clone, Copy, Debug)]
pub enum FileEncoding {
    Utf8,
    Utf8Raw,
    Nop,
    Utf16Le,
    Utf16Be,
    /// UTF-16 in the byte order of each file's byte-order mark (little-endian without one).
    Utf16,
    /// An ASCII-compatible legacy encoding: newlines are single `\n` bytes.
    Legacy(&'static Encoding),
}

impl FileEncoding {
    pub fn from_name(name: &str) -> Result<FileEncoding, String> {
        let lower = name.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "" | "utf-8" | "utf8" | "ascii" | "us-ascii" => FileEncoding::Utf8,
            "utf-8-raw" | "utf8-raw" => FileEncoding::Utf8Raw,
            "nop" => FileEncoding::Nop,
            "utf-16le" | "utf16le" => FileEncoding::Utf16Le,
            "utf-16" | "utf16" => FileEncoding::Utf16,
            "utf-16be" | "utf16be" => FileEncoding::Utf16Be,
            other => match Encoding::for_label(other.as_bytes()) {
                Some(e) if e == encoding_rs::UTF_8 => FileEncoding::Utf8,
                Some(e) if e == encoding_rs::UTF_16LE => FileEncoding::Utf16Le,
                Some(e) if e == encoding_rs::UTF_16BE => FileEncoding::Utf16Be,
                Some(e) if e.is_ascii_compatible() => FileEncoding::Legacy(e),
                _ => return Err(format!("unsupported encoding `{name}`")),
            },
        })
    }

    /// The body for one token of file bytes (after transcoding for UTF-16).
    pub fn body(self, token: &[u8]) -> Value {
        match self {
            FileEncoding::Nop => Value::Bytes(token.to_vec()),
            FileEncoding::Utf8
            | FileEncoding::Utf16
            | FileEncoding::Utf16Le
            | FileEncoding::Utf16Be => Value::Str(String::from_utf8_lossy(token).into_owned()),
            FileEncoding::Utf8Raw => match std::str::from_utf8(token) {
                Ok(s) => Value::Str(s.to_string()),
                Err(_) => Value::Bytes(token.to_vec()),
            },
            FileEncoding::Legacy(e) => {
                Value::Str(e.decode_without_bom_handling(token).0.into_owned())
            }
        }
    }
}

/// Transcodes whole UTF-16 code units of `raw` to UTF-8 in `out`, returning how many bytes of
/// `raw` were used (an odd last byte, or a lone high surrogate at the end, waits for more).
pub fn utf16_to_utf8(raw: &[u8], little_endian: bool, out: &mut Vec<u8>) -> usize {
    let unit = |i: usize| -> u16 {
        let pair = [raw[i], raw[i + 1]];
        if little_endian {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    };
    let mut i = 0;
    let mut buf = [0u8; 4];
    while i + 1 < raw.len() {
        let u = unit(i);
        if (0xD800..0xDC00).contains(&u) {
            if i + 3 >= raw.len() {
                break;
            }
            let low = unit(i + 2);
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                let ch = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 4;
                continue;
            }
            out.extend_from_slice("\u{FFFD}".as_bytes());
            i += 2;
            continue;
        }
        let ch = char::from_u32(u32::from(u)).unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        i += 2;
    }
    i
}

/// File bytes a prefix of transcoded UTF-8 text took in UTF-16: two per unit. A replacement
/// character stands for one unit, as the transcoder writes it for one bad unit.
pub fn utf16_len(text: &[u8]) -> usize {
    String::from_utf8_lossy(text)
        .chars()
        .map(|c| c.len_utf16() * 2)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_upstream() {
        assert!(matches!(
            FileEncoding::from_name("UTF-8"),
            Ok(FileEncoding::Utf8)
        ));
        assert!(matches!(
            FileEncoding::from_name("ascii"),
            Ok(FileEncoding::Utf8)
        ));
        assert!(matches!(
            FileEncoding::from_name("utf-16le"),
            Ok(FileEncoding::Utf16Le)
        ));
        assert!(matches!(
            FileEncoding::from_name("UTF-16"),
            Ok(FileEncoding::Utf16)
        ));
        assert!(matches!(
            FileEncoding::from_name("big5"),
            Ok(FileEncoding::Legacy(_))
        ));
        assert!(matches!(
            FileEncoding::from_name("shift_jis"),
            Ok(FileEncoding::Legacy(_))
        ));
        assert!(matches!(
            FileEncoding::from_name("nop"),
            Ok(FileEncoding::Nop)
        ));
        assert!(FileEncoding::from_name("klingon").is_err());
    }

    #[test]
    fn utf16_round_trips_offsets() {
        let text = "héllo 𝄞\nnext";
        let raw: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut out = Vec::new();
        let used = utf16_to_utf8(&raw[..raw.len() - 1], true, &mut out);
        assert_eq!(used, raw.len() - 2);
        let newline = out.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(
            utf16_len(&out[..=newline]),
            "héllo 𝄞\n".encode_utf16().count() * 2
        );
        let big5 = FileEncoding::from_name("big5").unwrap();
        assert_eq!(big5.body(&[0xA4, 0xA4]), Value::Str("中".into()));
    }
}
