//! The positioned YAML tree every other part of the crate works on.

use crate::error::Pos;

/// A value together with where it was written.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub pos: Pos,
}

/// A YAML value.
#[derive(Clone, Debug)]
pub enum Value {
    /// `~`, `null`, or nothing at all.
    Null,
    /// Any scalar; typing happens when it is decoded.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping.
    Map(Map),
}

/// A scalar's text and whether it was written in a quoted (or block) style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scalar {
    /// The text after YAML unescaping (and env expansion, once loaded).
    pub text: String,
    /// Single/double quoted, literal or folded: always a string, never resolved to bool/number.
    pub quoted: bool,
}

/// A mapping with its keys in the order they were written.
#[derive(Clone, Debug, Default)]
pub struct Map {
    /// Entries in insertion order.
    pub entries: Vec<(Key, Node)>,
}

/// A mapping key and where it was written.
#[derive(Clone, Debug)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

impl Map {
    /// The value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The key and value under `key`.
    pub fn get_entry(&self, key: &str) -> Option<(&Key, &Node)> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, v)| (k, v))
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: an existing entry keeps its place, a new one goes last.
    pub fn insert(&mut self, key: Key, value: Node) {
        match self.entries.iter_mut().find(|(k, _)| k.name == key.name) {
            Some(slot) => *slot = (key, value),
            None => self.entries.push((key, value)),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Node)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The key names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.name.as_str())
    }
}

impl Node {
    /// A node at `pos`.
    pub fn new(value: Value, pos: Pos) -> Self {
        Node { value, pos }
    }

    /// An empty mapping at `pos`.
    pub fn empty_map(pos: Pos) -> Node {
        Node {
            value: Value::Map(Map::default()),
            pos,
        }
    }

    /// A scalar at `pos`.
    pub fn scalar(text: impl Into<String>, quoted: bool, pos: Pos) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                text: text.into(),
                quoted,
            }),
            pos,
        }
    }

    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The mapping, mutably, if this is one.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar, if this is one.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar's text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    /// True for `~`, `null` or an empty value.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value under `key` when this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.get(key)
    }

    /// Follows `keys` through nested mappings.
    pub fn get_path<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Option<&Node> {
        let mut cur = self;
        for k in keys {
            cur = cur.as_map()?.get(k)?;
        }
        Some(cur)
    }

    /// Structural equality that ignores positions and compares scalars by meaning:
    /// a quoted and a plain scalar with the same text are equal when the plain one
    /// would also be read as a string.
    pub fn same_as(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Null, Value::Null) => true,
            (Value::Scalar(a), Value::Scalar(b)) => {
                a.text == b.text
                    && (a.quoted == b.quoted
                        || matches!(resolve_plain(&a.text), Resolved::Str)
                            && matches!(resolve_plain(&b.text), Resolved::Str))
            }
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.entries
                        .iter()
                        .zip(&b.entries)
                        .all(|((ka, va), (kb, vb))| ka.name == kb.name && va.same_as(vb))
            }
            _ => false,
        }
    }

    /// A short name for the kind of value, for messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(_) => "scalar",
            Value::Seq(_) => "list",
            Value::Map(_) => "map",
        }
    }
}

/// What a plain scalar means under the YAML 1.2 core schema (null is resolved while parsing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved {
    /// `true`/`false`, any case.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A float, including `.inf` and `.nan`.
    Float(f64),
    /// Anything else.
    Str,
}

/// Resolves plain scalar text under the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Resolved {
    if text.eq_ignore_ascii_case("true") {
        return Resolved::Bool(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Resolved::Bool(false);
    }
    if let Some(i) = parse_int(text) {
        return match u64::try_from(i) {
            Ok(u) => Resolved::UInt(u),
            Err(_) => match i64::try_from(i) {
                Ok(n) => Resolved::Int(n),
                Err(_) => Resolved::Str,
            },
        };
    }
    if let Some(f) = parse_float(text) {
        return Resolved::Float(f);
    }
    Resolved::Str
}

/// True for the plain spellings YAML reads as null.
pub fn is_null_word(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses a decimal, `0x` or `0o` integer with an optional sign.
pub fn parse_int(text: &str) -> Option<i128> {
    let (neg, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(h) = rest.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = rest.strip_prefix("0o") {
        (8, o)
    } else {
        (10, rest)
    };
    // from_str_radix would also accept a second sign, which YAML does not.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Parses a YAML core-schema float, including `.inf`, `-.inf` and `.nan`.
pub fn parse_float(text: &str) -> Option<f64> {
    let (neg, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if matches!(rest, ".inf" | ".Inf" | ".INF") {
        return Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    // Rust's parser accepts "inf", "nan" and "infinity", which YAML keeps as strings,
    // so the shape is checked first.
    let b = rest.as_bytes();
    let mut i = 0;
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    text.parse::<f64>().ok()
}

/// Appends a map key to a key path.
pub fn path_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Appends a sequence index to a key path.
pub fn path_index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema() {
        assert_eq!(resolve_plain("TRUE"), Resolved::Bool(true));
        assert_eq!(resolve_plain("False"), Resolved::Bool(false));
        assert_eq!(resolve_plain("0x1F"), Resolved::UInt(31));
        assert_eq!(resolve_plain("0o17"), Resolved::UInt(15));
        assert_eq!(resolve_plain("-42"), Resolved::Int(-42));
        assert_eq!(resolve_plain("+7"), Resolved::UInt(7));
        assert_eq!(resolve_plain("1.5"), Resolved::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Resolved::Float(1000.0));
        assert_eq!(resolve_plain(".5"), Resolved::Float(0.5));
        assert_eq!(resolve_plain("-.inf"), Resolved::Float(f64::NEG_INFINITY));
        assert!(matches!(resolve_plain(".nan"), Resolved::Float(f) if f.is_nan()));
        for s in ["inf", "nan", "1.2.3", "0x", "5s", "--1", "yes", "1e", "."] {
            assert_eq!(resolve_plain(s), Resolved::Str, "{s}");
        }
    }
}
