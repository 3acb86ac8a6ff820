//! Cutting a file's text into entries: at newlines (default), before each match of
//! `multiline.line_start_pattern`, after each match of `line_end_pattern`, or not at all for
//! `encoding: nop`; entries longer than `max_log_size` are cut there.

use regex::bytes::Regex;

use super::config::MultilineConfig;

#[derive(Debug)]
pub enum Splitter {
    Newline,
    LineStart {
        regex: Regex,
        omit: bool,
    },
    LineEnd {
        regex: Regex,
        omit: bool,
    },
    /// Raw bytes: chunks of up to `max_log_size`.
    Whole,
}

/// One entry found: the bytes `start..end` of the buffer are its text, and the buffer may be
/// consumed up to `advance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub advance: usize,
}

impl Splitter {
    pub fn new(multiline: Option<&MultilineConfig>, raw: bool) -> Result<Splitter, String> {
        if raw {
            return Ok(Splitter::Whole);
        }
        let Some(m) = multiline else {
            return Ok(Splitter::Newline);
        };
        let compile = |pattern: &str| {
            Regex::new(&format!("(?m){pattern}"))
                .map_err(|e| format!("invalid pattern `{pattern}`: {e}"))
        };
        if !m.line_start_pattern.is_empty() {
            return Ok(Splitter::LineStart {
                regex: compile(&m.line_start_pattern)?,
                omit: m.omit_pattern,
            });
        }
        if !m.line_end_pattern.is_empty() {
            return Ok(Splitter::LineEnd {
                regex: compile(&m.line_end_pattern)?,
                omit: m.omit_pattern,
            });
        }
        Ok(Splitter::Newline)
    }

    /// The next entry of `data`, or `None` when more data is needed. With `flush`, the data
    /// is taken to end where it ends (the file has not grown for `force_flush_period`).
    pub fn next(&self, data: &[u8], flush: bool) -> Option<Token> {
        if data.is_empty() {
            return None;
        }
        let all = Token {
            start: 0,
            end: data.len(),
            advance: data.len(),
        };
        match self {
            Splitter::Newline => match memchr::memchr(b'\n', data) {
                Some(i) => {
                    let end = if i > 0 && data[i - 1] == b'\r' {
                        i - 1
                    } else {
                        i
                    };
                    Some(Token {
                        start: 0,
                        end,
                        advance: i + 1,
                    })
                }
                None => flush.then_some(all),
            },
            Splitter::Whole => flush.then_some(all),
            Splitter::LineStart { regex, omit } => {
                let Some(first) = regex.find(data) else {
                    return flush.then_some(all);
                };
                if first.start() != 0 {
                    // Text before the first start belongs to no entry that began here: emit
                    // it on its own rather than lose it.
                    return Some(Token {
                        start: 0,
                        end: first.start(),
                        advance: first.start(),
                    });
                }
                let body_start = if *omit { first.end() } else { 0 };
                if first.end() == data.len() {
                    return flush.then_some(Token {
                        start: body_start,
                        ..all
                    });
                }
                let mut from = first.end();
                let second = loop {
                    match regex.find_at(data, from) {
                        Some(m) if m.start() > first.end() => break Some(m),
                        Some(m) if m.end() < data.len() => from = m.end().max(from + 1),
                        _ => break None,
                    }
                };
                match second {
                    Some(second) => Some(Token {
                        start: body_start,
                        end: second.start(),
                        advance: second.start(),
                    }),
                    None => flush.then_some(Token {
                        start: body_start,
                        ..all
                    }),
                }
            }
            Splitter::LineEnd { regex, omit } => {
                let mut from = 0;
                let m = loop {
                    match regex.find_at(data, from) {
                        Some(m) if m.end() == 0 => {
                            if data.len() <= 1 {
                                break None;
                            }
                            from = 1;
                        }
                        other => break other,
                    }
                };
                let Some(m) = m else {
                    return flush.then_some(all);
                };
                // A match that reaches the end of what was read may go on in the next read.
                if m.end() == data.len() && !flush {
                    return None;
                }
                Some(Token {
                    start: 0,
                    end: if *omit { m.start() } else { m.end() },
                    advance: m.end(),
                })
            }
        }
    }
}

/// Trims ASCII whitespace at either end unless asked to keep it.
pub fn trim(text: &[u8], keep_leading: bool, keep_trailing: bool) -> &[u8] {
    let mut s = text;
    if !keep_leading {
        while let [first, rest @ ..] = s {
            if first.is_ascii_whitespace() {
                s = rest;
            } else {
                break;
            }
        }
    }
    if !keep_trailing {
        while let [rest @ .., last] = s {
            if last.is_ascii_whitespace() {
                s = rest;
            } else {
                break;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &Splitter, text: &str, flush: bool) -> Vec<String> {
        let mut data = text.as_bytes();
        let mut out = Vec::new();
        while let Some(t) = s.next(data, flush) {
            out.push(String::from_utf8_lossy(&data[t.start..t.end]).into_owned());
            data = &data[t.advance..];
        }
        out
    }

    fn multiline(start: &str, end: &str, omit: bool) -> Splitter {
        Splitter::new(
            Some(&MultilineConfig {
                line_start_pattern: start.into(),
                line_end_pattern: end.into(),
                omit_pattern: omit,
            }),
            false,
        )
        .unwrap()
    }

    #[test]
    fn newlines_and_carriage_returns() {
        let s = Splitter::Newline;
        assert_eq!(tokens(&s, "a\r\nb\n\nc", false), ["a", "b", ""]);
        assert_eq!(tokens(&s, "a\nc", true), ["a", "c"]);
    }

    #[test]
    fn line_start_keeps_the_last_entry_until_flushed() {
        let s = multiline("START ", "", false);
        let text = "START log1\nlog2\nSTART log3\nlog4\n";
        assert_eq!(tokens(&s, text, false), ["START log1\nlog2\n"]);
        assert_eq!(
            tokens(&s, text, true),
            ["START log1\nlog2\n", "START log3\nlog4\n"]
        );
        // Text before the first start is its own entry.
        assert_eq!(
            tokens(&s, "junk\nSTART a\nSTART b", false),
            ["junk\n", "START a\n"]
        );
        let s = multiline("^Exception", "", true);
        assert_eq!(
            tokens(&s, "Exception one\n at x\nException two\n", false),
            [" one\n at x\n"]
        );
    }

    #[test]
    fn line_end_patterns() {
        let s = multiline("", "END\n", false);
        assert_eq!(
            tokens(&s, "a\nb END\nc END\nd", false),
            ["a\nb END\n", "c END\n"]
        );
        let s = multiline("", r"\}$", true);
        assert_eq!(
            tokens(&s, "{\n a\n}\n{ b }\nrest", false),
            ["{\n a\n", "\n{ b "]
        );
    }

    #[test]
    fn trimming() {
        assert_eq!(trim(b"  a b \t", false, false), b"a b");
        assert_eq!(trim(b"  a ", true, false), b"  a");
        assert_eq!(trim(b"  a ", false, true), b"a ");
    }
}
