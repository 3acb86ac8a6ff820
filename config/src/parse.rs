//! YAML text to a positioned [`Node`] tree, built from yaml-rust2's event stream so
//! that every node and key keeps the place it was written.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use crate::error::{ConfigErrors, Diagnostic, Pos};
use crate::node::{Key, Map, Node, Scalar, Value, is_null_word, path_index, path_key};

/// Upper bound on nodes produced by alias expansion, so that a "billion laughs" document
/// fails cleanly instead of exhausting memory.
const ALIAS_NODE_BUDGET: usize = 200_000;

/// Nesting deeper than this is refused: every later stage walks the tree recursively.
const MAX_DEPTH: usize = 128;

/// Parses one YAML document. An empty stream gives an empty map at line 1.
/// More than one document in a stream is an error: a config is a single mapping.
pub fn parse_yaml(name: &str, text: &str) -> Result<Node, ConfigErrors> {
    let file: Arc<str> = Arc::from(name);
    Ok(parse_document(&file, text)?.unwrap_or_else(|| Node::empty_map(Pos::new(file, 1, 1))))
}

/// Parses one YAML document; `None` when the stream holds no document at all.
pub(crate) fn parse_document(file: &Arc<str>, text: &str) -> Result<Option<Node>, ConfigErrors> {
    let mut b = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
        errors: Vec::new(),
        alias_nodes: 0,
        aborted: false,
    };
    let mut parser = Parser::new_from_str(text);
    // Events are pulled one at a time rather than through `Parser::load`, which recurses
    // once per nesting level and overflows the stack on hostile input before the
    // depth limit here can stop it.
    let mut pump = || -> Result<(), ScanError> {
        loop {
            let (ev, mark) = parser.next_token()?;
            let end = ev == Event::StreamEnd;
            b.on_event(ev, mark);
            if end || b.aborted {
                return Ok(());
            }
        }
    };
    // A panic inside the YAML library must not take the process down over a bad file.
    let outcome = catch_unwind(AssertUnwindSafe(&mut pump));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let pos = b.pos(*e.marker());
            return Err(
                Diagnostic::new(Some(pos), "", format!("invalid YAML: {}", e.info())).into(),
            );
        }
        Err(_) => {
            return Err(Diagnostic::new(
                Some(Pos::new(file.clone(), 1, 1)),
                "",
                "invalid YAML: the parser failed on this document",
            )
            .into());
        }
    }
    if !b.errors.is_empty() {
        return Err(ConfigErrors(b.errors));
    }
    Ok(b.root)
}

enum KeySlot {
    Expect,
    Have(Key),
    /// The key was not a scalar; its value is parsed and then dropped.
    Invalid,
}

enum Frame {
    Seq {
        anchor: usize,
        pos: Pos,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        pos: Pos,
        map: Map,
        key: KeySlot,
    },
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    /// Anchored nodes with their node count and depth, checked against the limits
    /// each time an alias copies them.
    anchors: HashMap<usize, (Node, usize, usize)>,
    root: Option<Node>,
    documents: usize,
    errors: Vec<Diagnostic>,
    alias_nodes: usize,
    aborted: bool,
}

impl Builder {
    fn pos(&self, m: Marker) -> Pos {
        Pos::new(self.file.clone(), m.line(), m.col() + 1)
    }

    /// Key path of the value currently being built, for messages.
    fn current_path(&self) -> String {
        let mut path = String::new();
        for f in &self.stack {
            match f {
                Frame::Seq { items, .. } => path = path_index(&path, items.len()),
                Frame::Map {
                    key: KeySlot::Have(k),
                    ..
                } => path = path_key(&path, &k.name),
                Frame::Map { .. } => {}
            }
        }
        path
    }

    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map {
                key: KeySlot::Expect,
                ..
            })
        )
    }

    /// Applies YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`), which real collector
    /// configs use to share settings between components: the merged maps' entries are added
    /// where the map does not set the key itself, earlier merged maps winning over later ones.
    fn merge_keys(&mut self, map: Map) -> Map {
        if !map.entries.iter().any(|(k, _)| k.name == "<<") {
            return map;
        }
        let (sources, mut entries): (Vec<_>, Vec<_>) =
            map.entries.into_iter().partition(|(k, _)| k.name == "<<");
        for (key, value) in sources {
            let maps = match value.value {
                Value::Map(m) => vec![m],
                Value::Seq(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item.value {
                            Value::Map(m) => maps.push(m),
                            _ => self.errors.push(Diagnostic::new(
                                Some(item.pos),
                                "<<",
                                "a merge key (`<<`) takes a mapping or a list of mappings; \
                                 this list item is not a mapping",
                            )),
                        }
                    }
                    maps
                }
                Value::Null => Vec::new(),
                Value::Scalar(_) => {
                    self.errors.push(Diagnostic::new(
                        Some(key.pos),
                        "<<",
                        "a merge key (`<<`) takes a mapping or a list of mappings (e.g. `<<: *defaults`)",
                    ));
                    Vec::new()
                }
            };
            for m in maps {
                for (k, v) in m.entries {
                    if !entries.iter().any(|(have, _)| have.name == k.name) {
                        entries.push((k, v));
                    }
                }
            }
        }
        Map { entries }
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let (size, depth) = measure(&node);
            self.anchors.insert(anchor, (node.clone(), size, depth));
        }
        // Only needed for messages, but must be taken before the frame is borrowed mutably.
        let here = match self.stack.last() {
            Some(Frame::Map { .. }) => self.current_path(),
            _ => String::new(),
        };
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { map, key, pos, .. }) => match std::mem::replace(key, KeySlot::Expect)
            {
                KeySlot::Expect => {
                    // yaml-rust2 marks a block mapping after its first key; the key itself
                    // is where a reader looks for the map.
                    if map.entries.is_empty() {
                        *pos = node.pos.clone();
                    }
                    *key = match node.value {
                        Value::Scalar(s) => KeySlot::Have(Key {
                            name: s.text,
                            pos: node.pos,
                        }),
                        Value::Null => KeySlot::Have(Key {
                            name: String::new(),
                            pos: node.pos,
                        }),
                        Value::Seq(_) | Value::Map(_) => {
                            self.errors.push(Diagnostic::new(
                                Some(node.pos),
                                here,
                                "a mapping key must be a plain value, not a list or map",
                            ));
                            KeySlot::Invalid
                        }
                    };
                }
                KeySlot::Have(k) => {
                    if let Some((first, _)) = map.get_entry(&k.name) {
                        let msg = format!(
                            "duplicate key `{}` (first defined at line {})",
                            k.name, first.pos.line
                        );
                        self.errors.push(Diagnostic::new(Some(k.pos), here, msg));
                    } else {
                        map.entries.push((k, node));
                    }
                }
                KeySlot::Invalid => {}
            },
        }
    }
}

/// Node count and depth (a scalar has depth 0).
fn measure(node: &Node) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Node>> = match &node.value {
        Value::Null | Value::Scalar(_) => return (1, 0),
        Value::Seq(items) => Box::new(items.iter()),
        Value::Map(m) => Box::new(m.entries.iter().map(|(_, v)| v)),
    };
    children.fold((1, 1), |(n, d), c| {
        let (cn, cd) = measure(c);
        (n + cn, d.max(cd + 1))
    })
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.aborted {
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.errors.push(Diagnostic::new(
                        Some(self.pos(mark)),
                        "",
                        "only one YAML document is allowed per config source",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let mut pos = self.pos(mark);
                // An empty value is marked at whatever token follows it, often on a later
                // line; its key is the useful place to point at.
                if text.is_empty()
                    && style == TScalarStyle::Plain
                    && let Some(Frame::Map {
                        key: KeySlot::Have(k),
                        ..
                    }) = self.stack.last()
                {
                    pos = k.pos.clone();
                }
                let str_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.suffix == "str" || t.suffix.ends_with(":str"));
                let quoted = style != TScalarStyle::Plain || str_tag;
                // Keys keep their written text: `null:` is a key named "null".
                let value = if !quoted && is_null_word(&text) && !self.expecting_key() {
                    Value::Null
                } else {
                    Value::Scalar(Scalar { text, quoted })
                };
                self.complete(Node { value, pos }, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.errors.push(Diagnostic::new(
                    Some(self.pos(mark)),
                    self.current_path(),
                    format!("nested more than {MAX_DEPTH} levels deep"),
                ));
                self.aborted = true;
            }
            Event::SequenceStart(anchor, _) => {
                let pos = self.pos(mark);
                self.stack.push(Frame::Seq {
                    anchor,
                    pos,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                let pos = self.pos(mark);
                self.stack.push(Frame::Map {
                    anchor,
                    pos,
                    map: Map::default(),
                    key: KeySlot::Expect,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { anchor, pos, items }) => {
                    self.complete(
                        Node {
                            value: Value::Seq(items),
                            pos,
                        },
                        anchor,
                    );
                }
                Some(Frame::Map {
                    anchor, pos, map, ..
                }) => {
                    let map = self.merge_keys(map);
                    self.complete(
                        Node {
                            value: Value::Map(map),
                            pos,
                        },
                        anchor,
                    );
                }
                None => {}
            },
            Event::Alias(id) => {
                let pos = self.pos(mark);
                let Some((node, size, depth)) = self.anchors.get(&id) else {
                    self.errors.push(Diagnostic::new(
                        Some(pos),
                        self.current_path(),
                        "unknown alias",
                    ));
                    return;
                };
                if self.stack.len() + depth > MAX_DEPTH {
                    self.errors.push(Diagnostic::new(
                        Some(pos),
                        self.current_path(),
                        format!("nested more than {MAX_DEPTH} levels deep"),
                    ));
                    self.aborted = true;
                    return;
                }
                self.alias_nodes += size;
                if self.alias_nodes > ALIAS_NODE_BUDGET {
                    self.errors.push(Diagnostic::new(
                        Some(pos),
                        self.current_path(),
                        "aliases expand to too many values",
                    ));
                    self.aborted = true;
                    return;
                }
                let mut node = node.clone();
                node.pos = pos;
                self.complete(node, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        parse_yaml("t.yaml", text).unwrap()
    }

    #[test]
    fn positions_and_styles() {
        let n = parse("a:\n  b: 1\n  c: 'x'\n  d:\n  e: ~\nlist:\n  - |\n    lit\n  - plain\n");
        let a = n.as_map().unwrap().get("a").unwrap().as_map().unwrap();
        let (bk, bv) = a.get_entry("b").unwrap();
        assert_eq!((bk.pos.line, bk.pos.col), (2, 3));
        assert_eq!((bv.pos.line, bv.pos.col), (2, 6));
        assert_eq!(
            bv.as_scalar().unwrap(),
            &Scalar {
                text: "1".into(),
                quoted: false
            }
        );
        assert!(a.get("c").unwrap().as_scalar().unwrap().quoted);
        assert!(a.get("d").unwrap().is_null());
        assert_eq!(a.get("d").unwrap().pos.line, 4);
        let a_node = n.as_map().unwrap().get("a").unwrap();
        assert_eq!((a_node.pos.line, a_node.pos.col), (2, 3));
        assert_eq!((n.pos.line, n.pos.col), (1, 1));
        assert!(a.get("e").unwrap().is_null());
        let list = n.as_map().unwrap().get("list").unwrap().as_seq().unwrap();
        assert_eq!(list[0].as_scalar().unwrap().text, "lit\n");
        assert!(list[0].as_scalar().unwrap().quoted);
        assert!(!list[1].as_scalar().unwrap().quoted);
        assert_eq!(&*list[1].pos.file, "t.yaml");
    }

    #[test]
    fn empty_document_is_empty_map() {
        for text in ["", "# only a comment\n", "\n\n"] {
            let n = parse(text);
            assert!(n.as_map().unwrap().is_empty());
        }
    }

    #[test]
    fn merge_keys_fill_in_what_the_map_does_not_set() {
        let text = "
defaults: &defaults
  endpoint: a:1
  timeout: 5s
more: &more
  timeout: 9s
  compression: gzip
one:
  <<: *defaults
  timeout: 1s
two:
  <<: [*more, *defaults]
";
        let root = parse_yaml("t.yaml", text).unwrap();
        let get = |path: &[&str]| {
            root.get_path(path.iter().copied())
                .and_then(|n| n.as_str())
                .map(str::to_string)
        };
        assert_eq!(get(&["one", "endpoint"]).as_deref(), Some("a:1"));
        assert_eq!(get(&["one", "timeout"]).as_deref(), Some("1s"));
        assert_eq!(get(&["two", "timeout"]).as_deref(), Some("9s"));
        assert_eq!(get(&["two", "compression"]).as_deref(), Some("gzip"));
        assert_eq!(get(&["two", "endpoint"]).as_deref(), Some("a:1"));
        assert!(root.get_path(["one", "<<"]).is_none());
        let bad = parse_yaml("t.yaml", "a:\n  <<: 3\n").unwrap_err();
        assert!(bad.to_string().contains("merge key"), "{bad}");
    }

    #[test]
    fn anchors_and_aliases() {
        let n = parse("base: &b\n  x: 1\ncopy: *b\nstr: !!str 5\n");
        let m = n.as_map().unwrap();
        let copy = m.get("copy").unwrap();
        assert_eq!(copy.pos.line, 3);
        assert_eq!(copy.as_map().unwrap().get("x").unwrap().as_str(), Some("1"));
        assert!(m.get("str").unwrap().as_scalar().unwrap().quoted);
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_yaml("bomb.yaml", &text).unwrap_err();
        assert!(err.to_string().contains("too many"), "{err}");
    }

    #[test]
    fn duplicate_key_reports_both_lines() {
        let err = parse_yaml("d.yaml", "a:\n  x: 1\n  x: 2\n").unwrap_err();
        assert_eq!(err.len(), 1);
        let d = &err.0[0];
        assert_eq!(d.pos.as_ref().unwrap().line, 3);
        assert_eq!(d.path, "a.x");
        assert!(d.message.contains("first defined at line 2"), "{d}");
    }

    #[test]
    fn syntax_error_reports_line() {
        let err = parse_yaml("bad.yaml", "a:\n  b: 1\n  c: [1, 2\nd: 3\n").unwrap_err();
        let d = &err.0[0];
        let pos = d.pos.as_ref().unwrap();
        assert_eq!(&*pos.file, "bad.yaml");
        assert!(pos.line >= 3, "{d}");
        assert!(d.message.starts_with("invalid YAML"), "{d}");

        let err = parse_yaml("tab.yaml", "a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(err.0[0].pos.as_ref().unwrap().line, 3, "{err}");
    }

    #[test]
    fn multiple_documents_rejected() {
        let err = parse_yaml("m.yaml", "a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.0[0].pos.as_ref().unwrap().line, 2, "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "- ".repeat(100_000) + "x\n";
        let err = parse_yaml("deep.yaml", &text).unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
        let ok = "- ".repeat(100) + "x\n";
        assert!(parse_yaml("ok.yaml", &ok).is_ok());
        // aliases stacking anchored depth on top of each other
        let mut chain = format!("a0: &a0 {}x{}\n", "[".repeat(60), "]".repeat(60));
        for i in 1..5 {
            chain.push_str(&format!(
                "a{i}: &a{i} {}*a{}{}\n",
                "[".repeat(60),
                i - 1,
                "]".repeat(60)
            ));
        }
        let err = parse_yaml("chain.yaml", &chain).unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
    }

    #[test]
    fn null_key_keeps_text() {
        let n = parse("null: 1\n~: 2\n");
        let m = n.as_map().unwrap();
        assert!(m.contains_key("null") && m.contains_key("~"));
    }
}
