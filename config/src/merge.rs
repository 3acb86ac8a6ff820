//! Deep merge of config trees and `--set` overrides.

use std::sync::Arc;

use crate::error::{Diagnostic, Pos};
use crate::node::{Key, Map, Node, Value, path_key};
use crate::parse::parse_document;

/// Merges `overlay` into `base`: maps merge key by key (existing keys keep their
/// place, new keys go last); anything else in `overlay` replaces what `base` had.
pub fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.value, overlay.value) {
        (Value::Map(bm), Value::Map(om)) => {
            for (k, v) in om.entries {
                match bm.entries.iter_mut().find(|(bk, _)| bk.name == k.name) {
                    Some((bk, bv)) => {
                        // The later source now defines (part of) this value, so errors
                        // about it should point there.
                        *bk = k;
                        merge(bv, v);
                    }
                    None => bm.entries.push((k, v)),
                }
            }
        }
        (_, value) => {
            *base = Node {
                value,
                pos: overlay.pos,
            }
        }
    }
}

/// File name used in positions of `--set` values.
pub const SET_FILE: &str = "--set";

/// Parses one `--set key.path=value` (the `index`-th, 1-based) into an overlay tree
/// holding only that path.
///
/// Path segments are separated by `::` when the path contains it, else by `.`;
/// component ids such as `file/out` are ordinary segments. The value is read as YAML,
/// so `[a,b]` is a list and `5s` a scalar.
pub fn parse_set(index: usize, set: &str) -> Result<(Node, String), Diagnostic> {
    let file: Arc<str> = Arc::from(SET_FILE);
    let pos = Pos::new(file.clone(), index, 1);
    let Some((raw_path, raw_value)) = set.split_once('=') else {
        return Err(Diagnostic::new(
            Some(pos),
            "",
            format!("`--set {set}` must have the form key.path=value"),
        ));
    };
    let raw_path = raw_path.trim();
    let segments: Vec<&str> = if raw_path.contains("::") {
        raw_path.split("::").collect()
    } else {
        raw_path.split('.').collect()
    };
    if raw_path.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(Diagnostic::new(
            Some(pos),
            raw_path,
            format!("`--set {set}` has an empty key in its path"),
        ));
    }
    if segments.len() > 64 {
        return Err(Diagnostic::new(
            Some(pos),
            "",
            format!(
                "`--set` path has {} keys; at most 64 are allowed",
                segments.len()
            ),
        ));
    }
    let path = segments
        .iter()
        .fold(String::new(), |acc, s| path_key(&acc, s));
    let mut value = match parse_document(&file, raw_value) {
        Ok(Some(v)) => v,
        Ok(None) => Node::new(Value::Null, pos.clone()),
        Err(errs) => {
            let detail = errs
                .0
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default();
            return Err(Diagnostic::new(
                Some(pos),
                path,
                format!("invalid value `{raw_value}`: {detail}"),
            ));
        }
    };
    // Positions inside the value are relative to the value text, which the user never
    // sees as a file; point everything at the --set itself.
    reposition(&mut value, &pos);
    let mut node = value;
    for seg in segments.iter().rev() {
        let mut map = Map::default();
        map.entries.push((
            Key {
                name: (*seg).to_string(),
                pos: pos.clone(),
            },
            node,
        ));
        node = Node::new(Value::Map(map), pos.clone());
    }
    Ok((node, path))
}

fn reposition(node: &mut Node, pos: &Pos) {
    node.pos = pos.clone();
    match &mut node.value {
        Value::Null | Value::Scalar(_) => {}
        Value::Seq(items) => items.iter_mut().for_each(|n| reposition(n, pos)),
        Value::Map(m) => {
            for (k, v) in &mut m.entries {
                k.pos = pos.clone();
                reposition(v, pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_yaml;

    #[test]
    fn deep_merge_and_replace() {
        let mut a = parse_yaml(
            "a.yaml",
            "x:\n  keep: 1\n  over: 2\n  nested: {p: 1}\nlist: [1, 2, 3]\n",
        )
        .unwrap();
        let b = parse_yaml(
            "b.yaml",
            "x:\n  over: 20\n  nested: {q: 2}\n  added: 3\nlist: [9]\n",
        )
        .unwrap();
        merge(&mut a, b);
        let x = a.as_map().unwrap().get("x").unwrap().as_map().unwrap();
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            ["keep", "over", "nested", "added"]
        );
        assert_eq!(x.get("over").unwrap().as_str(), Some("20"));
        assert_eq!(&*x.get("over").unwrap().pos.file, "b.yaml");
        let nested = x.get("nested").unwrap().as_map().unwrap();
        assert_eq!(nested.keys().collect::<Vec<_>>(), ["p", "q"]);
        let list = a.as_map().unwrap().get("list").unwrap().as_seq().unwrap();
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn set_paths() {
        let (n, path) = parse_set(2, "exporters.file/out.path=/tmp/x").unwrap();
        assert_eq!(path, "exporters.file/out.path");
        let v = n.get_path(["exporters", "file/out", "path"]).unwrap();
        assert_eq!(v.as_str(), Some("/tmp/x"));
        assert_eq!((&*v.pos.file, v.pos.line, v.pos.col), ("--set", 2, 1));

        let (n, _) = parse_set(1, "service::telemetry::resource::service.name=a=b").unwrap();
        let v = n
            .get_path(["service", "telemetry", "resource", "service.name"])
            .unwrap();
        assert_eq!(v.as_str(), Some("a=b"));

        let (n, _) = parse_set(1, "a.b=[x, y]").unwrap();
        assert_eq!(n.get_path(["a", "b"]).unwrap().as_seq().unwrap().len(), 2);
        let (n, _) = parse_set(1, "a.b=").unwrap();
        assert!(n.get_path(["a", "b"]).unwrap().is_null());

        assert!(parse_set(3, "novalue").is_err());
        assert!(parse_set(3, "=x").is_err());
        assert!(parse_set(3, "a..b=x").is_err());
        let e = parse_set(4, "a=[1, 2").unwrap_err();
        assert_eq!(e.pos.as_ref().unwrap().line, 4);
    }
}
