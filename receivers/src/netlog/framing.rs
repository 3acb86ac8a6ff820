//! Cutting a byte stream (a TCP connection) or a datagram into messages: RFC 6587 octet
//! counting (`123 <message>`), newline or NUL trailers, or filelog's `multiline` patterns;
//! messages longer than their limit are cut there and the rest of them skipped.

use crate::filelog::encoding::{FileEncoding, utf16_to_utf8};
use crate::filelog::split::{Splitter, trim};

/// How messages end when they are not octet-counted.
#[derive(Debug)]
pub enum Delimiter {
    /// Newlines (a `\r` before one is dropped) or `multiline` patterns.
    Split(Splitter),
    /// A NUL byte (`non_transparent_framing_trailer: NUL`).
    Nul,
}

/// How one receiver frames its input.
#[derive(Debug)]
pub struct Framing {
    pub delimiter: Delimiter,
    /// Messages may be prefixed by their length (a message that does not start with a digit
    /// is framed by the delimiter instead, so senders mixing both are still understood).
    pub octet_counting: bool,
    /// Longest message, bytes; the rest of a longer one is skipped.
    pub max_log_size: usize,
    /// Longest octet-counted message (`max_octets`).
    pub max_octets: usize,
    /// A datagram, or all a connection sends, is one message.
    pub one_log_per_packet: bool,
    pub keep_leading: bool,
    pub keep_trailing: bool,
    pub encoding: FileEncoding,
}

/// Digits of an octet count before the space, at most: a longer run is not a count.
const MAX_COUNT_DIGITS: usize = 10;

/// What is left to skip of a message that was too long.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Skip {
    #[default]
    Nothing,
    /// The rest of an octet-counted message.
    Bytes(usize),
    /// Up to and including the next delimiter.
    ToDelimiter,
}

/// The framing state of one stream.
#[derive(Debug, Default)]
pub struct Stream {
    buf: Vec<u8>,
    skip: Skip,
    /// UTF-16 input not yet transcoded (an odd byte, half a surrogate pair).
    raw: Vec<u8>,
    /// The byte order of `utf-16` input, once its first bytes were seen.
    little_endian: Option<bool>,
}

/// What framing found, beside the messages.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages cut at their limit.
    pub truncated: u64,
}

impl Stream {
    /// Whether bytes wait for the end of their message.
    pub fn has_data(&self) -> bool {
        !self.buf.is_empty() || !self.raw.is_empty()
    }
}

impl Framing {
    /// Frames one datagram: every message in it, the last one ending with it.
    pub fn datagram(&self, data: &[u8], out: &mut Vec<Vec<u8>>, counts: &mut Counts) {
        let mut stream = Stream::default();
        self.feed(&mut stream, data, true, out, counts);
    }

    /// Adds `data` read from a stream and appends the messages completed to `out`; with
    /// `end`, the stream is over and what is left of it is the last message.
    pub fn feed(
        &self,
        stream: &mut Stream,
        data: &[u8],
        end: bool,
        out: &mut Vec<Vec<u8>>,
        counts: &mut Counts,
    ) {
        self.decode_into(stream, data);
        if self.one_log_per_packet {
            // The message is everything until the end: only its first max_log_size bytes are
            // kept, so a long connection cannot grow the buffer without bound.
            if stream.buf.len() > self.max_log_size {
                if stream.skip == Skip::Nothing {
                    counts.truncated += 1;
                }
                stream.buf.truncate(self.max_log_size);
                stream.skip = Skip::ToDelimiter;
            }
            if end {
                let message = std::mem::take(&mut stream.buf);
                self.emit(&message, out);
                stream.skip = Skip::Nothing;
            }
            return;
        }
        let buf = std::mem::take(&mut stream.buf);
        let used = self.frame(stream, &buf, end, out, counts);
        stream.buf = buf;
        stream.buf.drain(..used);
    }

    /// Transcodes UTF-16 input to UTF-8 (framing works on UTF-8 then); other input is framed
    /// as it is.
    fn decode_into(&self, stream: &mut Stream, data: &[u8]) {
        let little_endian = match self.encoding {
            FileEncoding::Utf16Le => true,
            FileEncoding::Utf16Be => false,
            FileEncoding::Utf16 => {
                if stream.little_endian.is_none() {
                    stream.raw.extend_from_slice(data);
                    if stream.raw.len() < 2 {
                        return;
                    }
                    let (le, bom) = match stream.raw[..2] {
                        [0xFE, 0xFF] => (false, true),
                        [0xFF, 0xFE] => (true, true),
                        _ => (true, false),
                    };
                    stream.little_endian = Some(le);
                    if bom {
                        stream.raw.drain(..2);
                    }
                    let raw = std::mem::take(&mut stream.raw);
                    let used = utf16_to_utf8(&raw, le, &mut stream.buf);
                    stream.raw = raw[used..].to_vec();
                    return;
                }
                stream.little_endian.unwrap_or(true)
            }
            _ => {
                stream.buf.extend_from_slice(data);
                return;
            }
        };
        stream.raw.extend_from_slice(data);
        let raw = std::mem::take(&mut stream.raw);
        let used = utf16_to_utf8(&raw, little_endian, &mut stream.buf);
        stream.raw = raw[used..].to_vec();
    }

    /// Frames `buf`, returning how many of its bytes are used up.
    fn frame(
        &self,
        stream: &mut Stream,
        buf: &[u8],
        end: bool,
        out: &mut Vec<Vec<u8>>,
        counts: &mut Counts,
    ) -> usize {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match stream.skip {
                Skip::Nothing => {}
                Skip::Bytes(n) => {
                    let k = n.min(rest.len());
                    pos += k;
                    if k < n {
                        stream.skip = Skip::Bytes(n - k);
                        return pos;
                    }
                    stream.skip = Skip::Nothing;
                    continue;
                }
                Skip::ToDelimiter => {
                    let at = match &self.delimiter {
                        Delimiter::Nul => memchr::memchr(0, rest),
                        Delimiter::Split(_) => memchr::memchr(b'\n', rest),
                    };
                    match at {
                        Some(i) => {
                            pos += i + 1;
                            stream.skip = Skip::Nothing;
                            continue;
                        }
                        None => {
                            if end {
                                stream.skip = Skip::Nothing;
                            }
                            return buf.len();
                        }
                    }
                }
            }
            if rest.is_empty() {
                return pos;
            }
            if self.octet_counting && rest[0].is_ascii_digit() {
                match octet_count(rest) {
                    Count::NeedMore if !end => return pos,
                    Count::Frame { header, length } => {
                        let available = rest.len() - header;
                        let limit = self.max_octets;
                        if length <= available && length <= limit {
                            self.emit(&rest[header..header + length], out);
                            pos += header + length;
                            continue;
                        }
                        if length > limit && available >= limit {
                            counts.truncated += 1;
                            self.emit(&rest[header..header + limit], out);
                            pos += header + limit;
                            stream.skip = Skip::Bytes(length - limit);
                            continue;
                        }
                        if !end {
                            return pos;
                        }
                        // The stream ended inside the frame: keep what came of it.
                        self.emit(&rest[header..], out);
                        return buf.len();
                    }
                    // Not a count after all: framed by the delimiter.
                    Count::NeedMore | Count::Invalid => {}
                }
            }
            let token = match &self.delimiter {
                Delimiter::Split(splitter) => splitter
                    .next(rest, end)
                    .map(|t| (t.start, t.end, t.advance)),
                Delimiter::Nul => match memchr::memchr(0, rest) {
                    Some(i) => Some((0, i, i + 1)),
                    None => end.then_some((0, rest.len(), rest.len())),
                },
            };
            match token {
                Some((start, stop, advance)) => {
                    let message = &rest[start..stop];
                    if message.len() > self.max_log_size {
                        counts.truncated += 1;
                        self.emit(&message[..self.max_log_size], out);
                    } else {
                        self.emit(message, out);
                    }
                    pos += advance.max(1);
                }
                None if rest.len() > self.max_log_size => {
                    counts.truncated += 1;
                    self.emit(&rest[..self.max_log_size], out);
                    pos += self.max_log_size;
                    // Newline and NUL framing skip to the delimiter; pattern framing goes
                    // on with the rest as the next piece, as filelog's splitting does.
                    let plain = matches!(
                        &self.delimiter,
                        Delimiter::Nul | Delimiter::Split(Splitter::Newline)
                    );
                    if plain {
                        stream.skip = Skip::ToDelimiter;
                    }
                }
                None => return pos,
            }
        }
    }

    fn emit(&self, message: &[u8], out: &mut Vec<Vec<u8>>) {
        let message = if matches!(self.encoding, FileEncoding::Nop) {
            message
        } else {
            trim(message, self.keep_leading, self.keep_trailing)
        };
        // An empty line between messages is not a message.
        if !message.is_empty() {
            out.push(message.to_vec());
        }
    }
}

enum Count {
    Frame { header: usize, length: usize },
    NeedMore,
    Invalid,
}

/// `<digits> <message>`: the length of the header (digits and space) and of the message.
fn octet_count(data: &[u8]) -> Count {
    let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_COUNT_DIGITS {
        return Count::Invalid;
    }
    match data.get(digits) {
        None => Count::NeedMore,
        Some(b' ') => {
            let text = std::str::from_utf8(&data[..digits]).unwrap_or("");
            match text.parse::<usize>() {
                Ok(length) if length > 0 => Count::Frame {
                    header: digits + 1,
                    length,
                },
                _ => Count::Invalid,
            }
        }
        Some(_) => Count::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(octets: bool, max: usize) -> Framing {
        Framing {
            delimiter: Delimiter::Split(Splitter::Newline),
            octet_counting: octets,
            max_log_size: max,
            max_octets: max,
            one_log_per_packet: false,
            keep_leading: false,
            keep_trailing: false,
            encoding: FileEncoding::Utf8,
        }
    }

    fn text(out: &[Vec<u8>]) -> Vec<String> {
        out.iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// Feeds `chunks` one read at a time, then ends the stream.
    fn run(f: &Framing, chunks: &[&[u8]]) -> (Vec<String>, Counts) {
        let mut stream = Stream::default();
        let mut out = Vec::new();
        let mut counts = Counts::default();
        for c in chunks {
            f.feed(&mut stream, c, false, &mut out, &mut counts);
        }
        f.feed(&mut stream, b"", true, &mut out, &mut counts);
        (text(&out), counts)
    }

    #[test]
    fn newline_framing_across_reads() {
        let f = framing(false, 100);
        let (out, _) = run(&f, &[b"one\r\ntw", b"o\n\nthr", b"ee"]);
        assert_eq!(out, ["one", "two", "three"]);
    }

    #[test]
    fn octet_counting_across_reads() {
        let f = framing(true, 100);
        // Cut inside the count, inside the message, and right after the space.
        let (out, _) = run(&f, &[b"1", b"1 hello", b" world5 ", b"abcde3 x\ny"]);
        assert_eq!(out, ["hello world", "abcde", "x\ny"]);
        // A message without a count is framed by newlines.
        let (out, _) = run(&f, &[b"<13>1 - - - - - - plain\n5 abcde"]);
        assert_eq!(out, ["<13>1 - - - - - - plain", "abcde"]);
    }

    #[test]
    fn oversize_messages_are_cut_and_the_rest_skipped() {
        let f = framing(true, 4);
        let (out, counts) = run(&f, &[b"10 0123", b"456789", b"2 ok"]);
        assert_eq!(out, ["0123", "ok"]);
        assert_eq!(counts.truncated, 1);
        let f = framing(false, 4);
        let (out, counts) = run(&f, &[b"abcdefgh", b"ijk\nnext\nlongline\n"]);
        assert_eq!(out, ["abcd", "next", "long"]);
        assert_eq!(counts.truncated, 2);
    }

    #[test]
    fn nul_trailer_and_datagrams() {
        let f = Framing {
            delimiter: Delimiter::Nul,
            ..framing(false, 100)
        };
        let (out, _) = run(&f, &[b"a\nb\0c", b"\0"]);
        assert_eq!(out, ["a\nb", "c"]);
        let f = framing(false, 100);
        let mut out = Vec::new();
        let mut counts = Counts::default();
        f.datagram(b"one\ntwo", &mut out, &mut counts);
        assert_eq!(text(&out), ["one", "two"]);
        let whole = Framing {
            one_log_per_packet: true,
            ..framing(false, 100)
        };
        out.clear();
        whole.datagram(b"one\ntwo", &mut out, &mut counts);
        assert_eq!(text(&out), ["one\ntwo"]);
    }

    #[test]
    fn utf16_is_transcoded_before_framing() {
        let f = Framing {
            encoding: FileEncoding::Utf16Le,
            ..framing(false, 100)
        };
        let raw: Vec<u8> = "héllo\nnext\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let (out, _) = run(&f, &[&raw[..3], &raw[3..]]);
        assert_eq!(out, ["héllo", "next"]);
    }
}
