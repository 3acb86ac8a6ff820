//! Splits an OTTL condition into tokens, each tagged with its 1-based character column so
//! every error can point at the place it arises.

use std::fmt;

use super::parser::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Names: paths, keywords (`and`, `or`, `not`, `true`, `false`, `nil`), enums, functions.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Op(CmpOp),
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Str(s) => write!(f, "the string {s:?}"),
            Tok::Int(i) => write!(f, "the number {i}"),
            Tok::Float(x) => write!(f, "the number {x}"),
            Tok::Bytes(b) => write!(f, "the bytes 0x{}", hex::encode(b)),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::LBracket => f.write_str("'['"),
            Tok::RBracket => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::Dot => f.write_str("'.'"),
            Tok::Op(op) => write!(f, "'{}'", op.symbol()),
            Tok::End => f.write_str("the end of the condition"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// 1-based, in characters (not bytes), as an editor shows it.
    pub col: usize,
}

/// Tokenizes `src`; the last token is always [`Tok::End`] at one past the last character.
pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        let single = |tok| Token { tok, col };
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => out.push(single(Tok::LParen)),
            ')' => out.push(single(Tok::RParen)),
            '[' => out.push(single(Tok::LBracket)),
            ']' => out.push(single(Tok::RBracket)),
            ',' => out.push(single(Tok::Comma)),
            '.' => out.push(single(Tok::Dot)),
            '=' | '!' | '<' | '>' => {
                let next_eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, next_eq) {
                    ('=', true) => CmpOp::Eq,
                    ('!', true) => CmpOp::Ne,
                    ('<', true) => CmpOp::Le,
                    ('>', true) => CmpOp::Ge,
                    ('<', false) => CmpOp::Lt,
                    ('>', false) => CmpOp::Gt,
                    ('=', false) => {
                        return Err(ParseError::new(col, "'=' is not an operator; use '=='"));
                    }
                    _ => {
                        return Err(ParseError::new(
                            col,
                            "'!' is not an operator; use '!=' or 'not'",
                        ));
                    }
                };
                out.push(single(Tok::Op(op)));
                if next_eq {
                    i += 1;
                }
            }
            '"' => {
                let (text, end) = string(&chars, i)?;
                out.push(single(Tok::Str(text)));
                i = end;
                continue;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let (tok, end) = number(&chars, i)?;
                out.push(single(tok));
                i = end;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(single(Tok::Ident(chars[start..i].iter().collect())));
                continue;
            }
            other => {
                return Err(ParseError::new(
                    col,
                    format!("unexpected character '{other}'"),
                ));
            }
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::End,
        col: chars.len() + 1,
    });
    Ok(out)
}

/// A double-quoted string starting at `start`; returns its text and the index after it.
fn string(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((text, i + 1)),
            '\\' => {
                let escaped = match chars.get(i + 1) {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some(other) => {
                        return Err(ParseError::new(
                            i + 1,
                            format!(
                                "unknown escape '\\{other}' in a string (known: \\\" \\\\ \\n \\t \\r)"
                            ),
                        ));
                    }
                    None => break,
                };
                text.push(escaped);
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(ParseError::new(
        start + 1,
        "string is not closed: expected '\"'",
    ))
}

/// An integer, float or `0x` bytes literal starting at `start` (a digit or a sign before one).
fn number(chars: &[char], start: usize) -> Result<(Tok, usize), ParseError> {
    let col = start + 1;
    if chars[start] == '0' && matches!(chars.get(start + 1), Some('x' | 'X')) {
        let mut i = start + 2;
        while i < chars.len() && chars[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let digits: String = chars[start + 2..i].iter().collect();
        return match hex::decode(&digits) {
            Ok(bytes) if !digits.is_empty() => Ok((Tok::Bytes(bytes), i)),
            _ => Err(ParseError::new(
                col,
                "bytes literal needs an even number of hex digits after '0x'",
            )),
        };
    }
    let mut i = start;
    if chars[i] == '-' || chars[i] == '+' {
        i += 1;
    }
    let digit_run = |mut i: usize| {
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digit_run(i);
    let mut float = false;
    if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        float = true;
        i = digit_run(i + 1);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            i = digit_run(j);
        }
    }
    if chars
        .get(i)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
    {
        return Err(ParseError::new(i + 1, "a number must not run into a name"));
    }
    let text: String = chars[start..i].iter().collect();
    let tok = if float {
        text.parse::<f64>().ok().map(Tok::Float)
    } else {
        text.parse::<i64>().ok().map(Tok::Int)
    };
    tok.map(|t| (t, i))
        .ok_or_else(|| ParseError::new(col, format!("number {text} is out of range")))
}
