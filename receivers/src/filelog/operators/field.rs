//! Fields: references to a value of an entry, written as stanza writes them: `body`,
//! `body.a.b`, `attributes.env`, `attributes["k8s.pod.name"]`, `resource.host`, a bare `a.b`
//! meaning `body.a.b`, and the older `$body` / `$attributes` / `$resource` spellings.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::entry::{Entry, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Body,
    Attributes,
    Resource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub root: Root,
    pub keys: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("`{0}`: a field must not be empty")]
    Empty(String),
    #[error("`{field}`: {why}")]
    Syntax { field: String, why: &'static str },
}

impl Field {
    pub fn body() -> Field {
        Field {
            root: Root::Body,
            keys: Vec::new(),
        }
    }

    pub fn attributes() -> Field {
        Field {
            root: Root::Attributes,
            keys: Vec::new(),
        }
    }

    pub fn attribute(key: &str) -> Field {
        Field {
            root: Root::Attributes,
            keys: vec![key.to_string()],
        }
    }

    pub fn resource(key: &str) -> Field {
        Field {
            root: Root::Resource,
            keys: vec![key.to_string()],
        }
    }

    pub fn body_key(key: &str) -> Field {
        Field {
            root: Root::Body,
            keys: vec![key.to_string()],
        }
    }

    pub fn parse(text: &str) -> Result<Field, FieldError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldError::Empty(text.to_string()));
        }
        let parts = split_parts(text)?;
        let (root, rest) = match parts[0].as_str() {
            "body" | "$body" | "$record" | "$" => (Root::Body, &parts[1..]),
            "attributes" | "$attributes" | "$labels" => (Root::Attributes, &parts[1..]),
            "resource" | "$resource" => (Root::Resource, &parts[1..]),
            _ => (Root::Body, &parts[..]),
        };
        Ok(Field {
            root,
            keys: rest.to_vec(),
        })
    }

    /// True for `body`, `attributes` or `resource` as a whole.
    pub fn is_root(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn get<'a>(&self, entry: &'a Entry) -> Option<&'a Value> {
        let (first, rest) = match self.root {
            Root::Body => {
                let mut current = &entry.body;
                for key in &self.keys {
                    current = current.as_map()?.get(key)?;
                }
                return Some(current);
            }
            Root::Attributes => (&entry.attributes, &self.keys[..]),
            Root::Resource => (&entry.resource, &self.keys[..]),
        };
        let (last, path) = rest.split_last()?;
        let mut map = first;
        for key in path {
            map = map.get(key)?.as_map()?;
        }
        map.get(last)
    }

    /// Whether the field exists; `attributes` and `resource` as a whole always do.
    pub fn exists(&self, entry: &Entry) -> bool {
        match (self.root, self.keys.is_empty()) {
            (Root::Attributes | Root::Resource, true) => true,
            _ => self.get(entry).is_some(),
        }
    }

    /// The root map of `attributes`/`resource`, or the body made a map.
    fn root_map<'a>(&self, entry: &'a mut Entry) -> &'a mut Map {
        match self.root {
            Root::Attributes => &mut entry.attributes,
            Root::Resource => &mut entry.resource,
            Root::Body => {
                if !matches!(entry.body, Value::Map(_)) {
                    entry.body = Value::Map(Map::new());
                }
                match &mut entry.body {
                    Value::Map(m) => m,
                    _ => unreachable!("the body was just made a map"),
                }
            }
        }
    }

    /// Sets the field, creating the maps on the way (a value that is not a map on the way is
    /// replaced, as stanza does). A map set where a map already is merges into it.
    pub fn set(&self, entry: &mut Entry, value: Value) {
        if self.keys.is_empty() {
            match self.root {
                Root::Body => match (&mut entry.body, value) {
                    (Value::Map(existing), Value::Map(new)) => existing.extend(new),
                    (body, value) => *body = value,
                },
                Root::Attributes | Root::Resource => {
                    let map = self.root_map(entry);
                    match value {
                        Value::Map(new) => map.extend(new),
                        // Only a map can stand for all attributes; anything else goes under
                        // an empty key rather than being lost.
                        other => {
                            map.insert(String::new(), other);
                        }
                    }
                }
            }
            return;
        }
        let Some((last, path)) = self.keys.split_last() else {
            return;
        };
        let mut map = self.root_map(entry);
        for key in path {
            let slot = map
                .entry(key.clone())
                .or_insert_with(|| Value::Map(Map::new()));
            if !matches!(slot, Value::Map(_)) {
                *slot = Value::Map(Map::new());
            }
            map = match slot {
                Value::Map(m) => m,
                _ => unreachable!("the slot was just made a map"),
            };
        }
        match (map.get_mut(last), value) {
            (Some(Value::Map(existing)), Value::Map(new)) => existing.extend(new),
            (_, value) => {
                map.insert(last.clone(), value);
            }
        }
    }

    /// Removes the field and returns its value. The body as a whole becomes null;
    /// `attributes`/`resource` as a whole become empty.
    pub fn delete(&self, entry: &mut Entry) -> Option<Value> {
        if self.keys.is_empty() {
            return match self.root {
                Root::Body => Some(std::mem::take(&mut entry.body)),
                Root::Attributes => Some(Value::Map(std::mem::take(&mut entry.attributes))),
                Root::Resource => Some(Value::Map(std::mem::take(&mut entry.resource))),
            };
        }
        let (last, path) = self.keys.split_last()?;
        let mut map = match self.root {
            Root::Attributes => &mut entry.attributes,
            Root::Resource => &mut entry.resource,
            Root::Body => match &mut entry.body {
                Value::Map(m) => m,
                _ => return None,
            },
        };
        for key in path {
            map = match map.get_mut(key)? {
                Value::Map(m) => m,
                _ => return None,
            };
        }
        map.remove(last)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.root {
            Root::Body => "body",
            Root::Attributes => "attributes",
            Root::Resource => "resource",
        })?;
        for key in &self.keys {
            if key.contains(['.', '[', ']']) {
                write!(f, "[\"{key}\"]")?;
            } else {
                write!(f, ".{key}")?;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Field::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `a.b["c.d"]['e']` → `a`, `b`, `c.d`, `e`.
fn split_parts(text: &str) -> Result<Vec<String>, FieldError> {
    let bad = |why| FieldError::Syntax {
        field: text.to_string(),
        why,
    };
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut after_bracket = false;
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if current.is_empty() && !after_bracket {
                    return Err(bad("empty key between dots"));
                }
                if !current.is_empty() {
                    parts.push(std::mem::take(&mut current));
                }
                after_bracket = false;
            }
            '[' => {
                if !current.is_empty() {
                    parts.push(std::mem::take(&mut current));
                }
                let quote = match chars.next() {
                    Some(q @ ('"' | '\'')) => q,
                    _ => return Err(bad("a bracketed key must be quoted: [\"key\"]")),
                };
                let mut key = String::new();
                loop {
                    match chars.next() {
                        Some(c) if c == quote => break,
                        Some(c) => key.push(c),
                        None => return Err(bad("unclosed quote in a bracketed key")),
                    }
                }
                if chars.next() != Some(']') {
                    return Err(bad("missing `]` after a bracketed key"));
                }
                parts.push(key);
                after_bracket = true;
            }
            c => {
                if after_bracket {
                    return Err(bad("expected `.` or `[` after `]`"));
                }
                current.push(c);
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    } else if parts.is_empty() || (text.ends_with('.') && !after_bracket) {
        return Err(bad("empty key at the end"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str) -> Field {
        Field::parse(text).unwrap()
    }

    #[test]
    fn parses_every_spelling() {
        assert_eq!(f("body"), Field::body());
        assert_eq!(f("message"), Field::body_key("message"));
        assert_eq!(f("body.a.b").keys, ["a", "b"]);
        assert_eq!(
            f("attributes[\"k8s.pod.name\"]"),
            Field::attribute("k8s.pod.name")
        );
        assert_eq!(f("resource['host.name']"), Field::resource("host.name"));
        assert_eq!(f("$body.x").keys, ["x"]);
        assert_eq!(f("attributes[\"a.b\"].c").keys, ["a.b", "c"]);
        assert!(Field::parse("body..x").is_err());
        assert!(Field::parse("attributes[k]").is_err());
        assert!(Field::parse("").is_err());
        assert_eq!(
            f("attributes[\"log.file.path\"]").to_string(),
            "attributes[\"log.file.path\"]"
        );
    }

    #[test]
    fn set_get_and_delete_follow_stanza() {
        let mut e = Entry::new(Value::Str("raw".into()), 0);
        f("body.a.b").set(&mut e, Value::Int(1));
        assert_eq!(f("body.a.b").get(&e), Some(&Value::Int(1)));
        // A map set onto a map merges.
        let mut m = Map::new();
        m.insert("c".into(), Value::Int(2));
        f("body.a").set(&mut e, Value::Map(m));
        assert_eq!(f("a.b").get(&e), Some(&Value::Int(1)));
        assert_eq!(f("a.c").get(&e), Some(&Value::Int(2)));
        f("attributes.x").set(&mut e, Value::Str("y".into()));
        assert_eq!(
            f("attributes.x").delete(&mut e),
            Some(Value::Str("y".into()))
        );
        assert!(!f("attributes.x").exists(&e));
        assert!(f("attributes").exists(&e));
        f("body").set(&mut e, Value::Str("s".into()));
        assert_eq!(e.body, Value::Str("s".into()));
    }
}
