//! Rendering a [`Node`] back to YAML text, for `sluice print-config`.

use std::fmt::Write;

use crate::node::{Map, Node, Resolved, Scalar, Value, is_null_word, resolve_plain};

/// Renders `node` as block-style YAML with keys in their original order.
///
/// Strings are double-quoted when they would otherwise read back as another type or
/// contain characters that plain YAML cannot hold. Every `$` is written as `$$`, so the
/// output loads back (through env expansion) to the same values.
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(m) if !m.is_empty() => write_map(&mut out, m, 0, false),
        Value::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0, false),
        _ => {
            out.push_str(&inline(node));
            out.push('\n');
        }
    }
    out
}

fn is_block(node: &Node) -> bool {
    match &node.value {
        Value::Map(m) => !m.is_empty(),
        Value::Seq(s) => !s.is_empty(),
        _ => false,
    }
}

/// A value that fits on the current line.
fn inline(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".to_string(),
        Value::Scalar(s) => scalar(s),
        Value::Map(_) => "{}".to_string(),
        Value::Seq(_) => "[]".to_string(),
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// `continue_line`: the first entry goes right after a `- ` already written.
fn write_map(out: &mut String, m: &Map, indent: usize, continue_line: bool) {
    for (i, (k, v)) in m.entries.iter().enumerate() {
        if i > 0 || !continue_line {
            pad(out, indent);
        }
        out.push_str(&key(&k.name));
        out.push(':');
        match &v.value {
            Value::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + 2, false);
            }
            Value::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent + 2, false);
            }
            // `otlp:` reads better than `otlp: null` and means the same.
            Value::Null => out.push('\n'),
            _ => {
                out.push(' ');
                out.push_str(&inline(v));
                out.push('\n');
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Node], indent: usize, continue_line: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !continue_line {
            pad(out, indent);
        }
        out.push_str("- ");
        match &item.value {
            Value::Map(m) if is_block(item) => write_map(out, m, indent + 2, true),
            Value::Seq(s) if is_block(item) => write_seq(out, s, indent + 2, true),
            _ => {
                out.push_str(&inline(item));
                out.push('\n');
            }
        }
    }
}

fn key(name: &str) -> String {
    if plain_safe(name) {
        name.to_string()
    } else {
        double_quoted(name)
    }
}

fn scalar(s: &Scalar) -> String {
    let text = s.text.replace('$', "$$");
    let retypes = s.quoted && !matches!(resolve_plain(&s.text), Resolved::Str);
    // yes/no/on/off are booleans to YAML 1.1 readers; quoting them keeps other tools honest.
    let yaml11_bool = s.quoted
        && ["yes", "no", "on", "off", "y", "n"]
            .iter()
            .any(|w| s.text.eq_ignore_ascii_case(w));
    if retypes || yaml11_bool || is_null_word(&s.text) || !plain_safe(&s.text) {
        double_quoted(&text)
    } else {
        text
    }
}

/// True when `text` written plain in block context reads back as the same text.
fn plain_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if first.is_whitespace() || text.ends_with(char::is_whitespace) {
        return false;
    }
    if "!&*{}[]|>'\"%@`#,".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') {
        match text.chars().nth(1) {
            None => return false,
            Some(c) if c.is_whitespace() => return false,
            _ => {}
        }
    }
    if text.starts_with("---") || text.starts_with("...") {
        return false;
    }
    if text.contains(": ") || text.ends_with(':') || text.contains(" #") {
        return false;
    }
    !text.chars().any(|c| c.is_control() || c == '\u{feff}')
}

fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_yaml;

    #[test]
    fn shape() {
        let n = parse_yaml(
            "x",
            "a:\n  b: 1\n  c: \"true\"\n  d:\n  l:\n    - x\n    - k: v\n      k2: v2\n    - [1, 2]\n  e: {}\n  f: []\n",
        )
        .unwrap();
        let text = to_yaml(&n);
        assert_eq!(
            text,
            "a:\n  b: 1\n  c: \"true\"\n  d:\n  l:\n    - x\n    - k: v\n      k2: v2\n    - - 1\n      - 2\n  e: {}\n  f: []\n"
        );
    }

    #[test]
    fn tricky_strings_round_trip() {
        let texts = [
            "",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "#c",
            "- x",
            "-5",
            "---",
            "x:",
            "null",
            "~",
            "true",
            "1.5",
            "0x10",
            "yes",
            "multi\nline\n",
            "tab\there",
            "quote\"s",
            "back\\slash",
            "{a}",
            "[b]",
            "*star",
            "&amp",
            "!bang",
            "%pct",
            "@at",
            "`tick",
            "'sq",
            "é ü",
            "a,b",
            "1:2",
            "http://x:4317",
            "\u{1}",
            "$money",
            "${env:X}",
            ":x",
            "?x",
            "|",
            ">",
        ];
        for t in texts {
            for quoted in [true, false] {
                let n = Node::scalar(t, quoted, crate::error::Pos::new("x", 1, 1));
                let mut map = Map::default();
                map.insert(
                    crate::node::Key {
                        name: t.to_string(),
                        pos: n.pos.clone(),
                    },
                    n.clone(),
                );
                let root = Node::new(Value::Map(map), n.pos.clone());
                let text = to_yaml(&root);
                let mut back =
                    parse_yaml("y", &text).unwrap_or_else(|e| panic!("{t:?}: {e}\n{text}"));
                let mut errs = Vec::new();
                crate::expand::expand_env(&mut back, "", &|_| None, &mut errs);
                assert!(errs.is_empty(), "{t:?}: {errs:?}");
                let got = back.as_map().unwrap();
                assert_eq!(got.entries[0].0.name, t, "key {t:?} -> {text}");
                let v = &got.entries[0].1;
                if t.is_empty() && !quoted {
                    continue;
                }
                assert!(v.same_as(&n), "{t:?} quoted={quoted}: {text} -> {v:?}");
            }
        }
    }
}
