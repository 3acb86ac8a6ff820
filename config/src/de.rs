//! serde deserialization straight from a positioned [`Node`], so every error carries
//! the file, line, column and key path of the value that caused it.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::error::{Diagnostic, Pos};
use crate::node::{
    Key, Node, Resolved, Value, parse_float, parse_int, path_index, path_key, resolve_plain,
};
use crate::suggest::suggest;

/// Deserializes `node` (usually one component's section) into `T`.
///
/// `path` is the key path of `node`, e.g. `exporters.file/out`; errors carry the
/// position and full key path of the innermost value involved.
pub fn decode<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, Diagnostic> {
    T::deserialize(NodeDeserializer::new(node, path)).map_err(|e| e.into_diagnostic(node, path))
}

/// Like [`decode`], but reports every problem of the section, not only the first: after an
/// error the offending key or value is set aside and decoding goes on, so a section with four
/// bad keys reports four problems. A required key set aside is not reported missing again.
pub fn decode_all<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, Vec<Diagnostic>> {
    let first = match decode::<T>(node, path) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let mut work = node.clone();
    let mut errors = vec![first];
    // Bounded: each round removes one node, and a section has few.
    for _ in 0..MAX_REPORTED_PER_SECTION {
        let Some(last) = errors.last() else { break };
        let Some(pos) = last.pos.clone() else { break };
        // The section itself is never removed: a problem with it as a whole ends the search.
        if !remove_at(&mut work, &pos) {
            break;
        }
        match decode::<T>(&work, path) {
            Ok(_) => break,
            Err(e) if e.message.starts_with("missing required key") => break,
            Err(e) if errors.contains(&e) => break,
            Err(e) => errors.push(e),
        }
    }
    // Paths were computed on the pruned copy, where list indexes may have moved.
    for e in &mut errors {
        if let Some(pos) = &e.pos
            && let Some(original) = path_of(node, path, pos)
        {
            e.path = original;
        }
    }
    Err(errors)
}

/// More problems than this in one section are not worth listing.
const MAX_REPORTED_PER_SECTION: usize = 64;

/// Removes the map entry whose key or value starts at `pos`, or the list item that does.
fn remove_at(node: &mut Node, pos: &Pos) -> bool {
    match &mut node.value {
        Value::Map(m) => {
            if let Some(i) = m
                .entries
                .iter()
                .position(|(k, v)| &k.pos == pos || &v.pos == pos)
            {
                m.entries.remove(i);
                return true;
            }
            m.entries.iter_mut().any(|(_, v)| remove_at(v, pos))
        }
        Value::Seq(items) => {
            if let Some(i) = items.iter().position(|v| &v.pos == pos) {
                items.remove(i);
                return true;
            }
            items.iter_mut().any(|v| remove_at(v, pos))
        }
        Value::Null | Value::Scalar(_) => false,
    }
}

/// The key path of the key or value at `pos` inside `node` (whose path is `path`).
fn path_of(node: &Node, path: &str, pos: &Pos) -> Option<String> {
    match &node.value {
        Value::Map(m) => m.entries.iter().find_map(|(k, v)| {
            let here = path_key(path, &k.name);
            if &k.pos == pos || &v.pos == pos {
                Some(here)
            } else {
                path_of(v, &here, pos)
            }
        }),
        Value::Seq(items) => items.iter().enumerate().find_map(|(i, v)| {
            let here = path_index(path, i);
            if &v.pos == pos {
                Some(here)
            } else {
                path_of(v, &here, pos)
            }
        }),
        Value::Null | Value::Scalar(_) => None,
    }
}

/// The error type of [`NodeDeserializer`]; convert it with [`DeError::into_diagnostic`].
#[derive(Clone, Debug)]
pub struct DeError {
    pos: Option<Pos>,
    /// `None` until the error has been tied to the node it came from.
    path: Option<String>,
    message: String,
    suggestion: Option<String>,
}

impl DeError {
    fn new(message: impl Into<String>) -> Self {
        DeError {
            pos: None,
            path: None,
            message: message.into(),
            suggestion: None,
        }
    }

    /// Ties an error to a place unless an inner value already did.
    fn locate(mut self, pos: &Pos, path: &str) -> Self {
        if self.path.is_none() {
            self.pos = Some(pos.clone());
            self.path = Some(path.to_string());
        }
        self
    }

    /// The diagnostic, falling back to `node`/`path` if the error was never located.
    pub fn into_diagnostic(self, node: &Node, path: &str) -> Diagnostic {
        let e = self.locate(&node.pos, path);
        Diagnostic {
            pos: e.pos,
            path: e.path.unwrap_or_default(),
            message: e.message,
            suggestion: e.suggestion,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Diagnostic {
            pos: self.pos.clone(),
            path: self.path.clone().unwrap_or_default(),
            message: self.message.clone(),
            suggestion: self.suggestion.clone(),
        };
        d.fmt(f)
    }
}

impl std::error::Error for DeError {}

fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {unexp}"))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("invalid value {unexp}, expected {exp}"))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {len} items"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::new(format!(
            "unknown value `{variant}`, expected one of {}",
            backticked(expected)
        ));
        e.suggestion = suggest(variant, expected.iter().copied());
        e
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let suggestion = suggest(field, expected.iter().copied());
        let message = match (&suggestion, expected.is_empty()) {
            (Some(_), _) => format!("unknown key `{field}`"),
            (None, true) => format!("unknown key `{field}`: this section takes no keys"),
            (None, false) => format!(
                "unknown key `{field}`, expected one of {}",
                backticked(expected)
            ),
        };
        let mut e = DeError::new(message);
        e.suggestion = suggestion;
        e
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing required key `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("duplicate key `{field}`"))
    }
}

/// How a node is described in "expected X, found Y" messages.
fn found(node: &Node) -> String {
    match &node.value {
        Value::Null => "an empty value".to_string(),
        Value::Scalar(s) => format!("`{}`", s.text),
        Value::Seq(_) => "a list".to_string(),
        Value::Map(_) => "a map".to_string(),
    }
}

fn expected(what: &str, node: &Node) -> DeError {
    DeError::new(format!("expected {what}, found {}", found(node)))
}

/// A [`serde::Deserializer`] over a borrowed [`Node`].
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: String,
    /// Set for the body of an [`Optional`] section: its `enabled` key was already read and
    /// is not one of the section's own.
    skip_enabled: bool,
}

impl<'a> NodeDeserializer<'a> {
    /// A deserializer for `node`, whose key path is `path`.
    pub fn new(node: &'a Node, path: &str) -> Self {
        NodeDeserializer {
            node,
            path: path.to_string(),
            skip_enabled: false,
        }
    }

    /// Runs `f` and ties any error it returns that is not yet located to this node.
    fn run<T>(self, f: impl FnOnce(&'a Node, &str) -> Result<T, DeError>) -> Result<T, DeError> {
        let node = self.node;
        f(node, &self.path).map_err(|e| e.locate(&node.pos, &self.path))
    }
}

fn scalar_int(node: &Node, what: &str) -> Result<i128, DeError> {
    match &node.value {
        Value::Scalar(s) => parse_int(&s.text).ok_or_else(|| expected(what, node)),
        _ => Err(expected(what, node)),
    }
}

macro_rules! int_methods {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.run(|node, _| {
                let n = scalar_int(node, $what)?;
                let v = <$ty>::try_from(n).map_err(|_| {
                    DeError::new(format!("`{n}` is out of range for {}", $what))
                })?;
                visitor.$visit(v)
            })
        }
    )*};
}

impl<'a> de::Deserializer<'a> for NodeDeserializer<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, path| match &node.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar(s) if s.quoted => visitor.visit_borrowed_str(&s.text),
            Value::Scalar(s) => match resolve_plain(&s.text) {
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::UInt(u) => visitor.visit_u64(u),
                Resolved::Int(i) => visitor.visit_i64(i),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str => visitor.visit_borrowed_str(&s.text),
            },
            Value::Seq(items) => visit_seq(items, path, visitor),
            Value::Map(m) => visit_map(&m.entries, path, None, visitor),
        })
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, _| match &node.value {
            Value::Scalar(s) if s.text.eq_ignore_ascii_case("true") => visitor.visit_bool(true),
            Value::Scalar(s) if s.text.eq_ignore_ascii_case("false") => visitor.visit_bool(false),
            _ => Err(expected("`true` or `false`", node)),
        })
    }

    int_methods! {
        deserialize_i8 visit_i8 i8, "an integer (i8)";
        deserialize_i16 visit_i16 i16, "an integer (i16)";
        deserialize_i32 visit_i32 i32, "an integer (i32)";
        deserialize_i64 visit_i64 i64, "an integer (i64)";
        deserialize_i128 visit_i128 i128, "an integer (i128)";
        deserialize_u8 visit_u8 u8, "a non-negative integer (u8)";
        deserialize_u16 visit_u16 u16, "a non-negative integer (u16)";
        deserialize_u32 visit_u32 u32, "a non-negative integer (u32)";
        deserialize_u64 visit_u64 u64, "a non-negative integer (u64)";
        deserialize_u128 visit_u128 u128, "a non-negative integer (u128)";
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, _| match &node.value {
            Value::Scalar(s) => {
                let f = parse_float(&s.text)
                    .or_else(|| parse_int(&s.text).map(|i| i as f64))
                    .ok_or_else(|| expected("a number", node))?;
                visitor.visit_f64(f)
            }
            _ => Err(expected("a number", node)),
        })
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, _| {
            if let Value::Scalar(s) = &node.value {
                let mut chars = s.text.chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    return visitor.visit_char(c);
                }
            }
            Err(expected("a single character", node))
        })
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, _| match &node.value {
            Value::Scalar(s) => visitor.visit_borrowed_str(&s.text),
            _ => Err(expected("a string", node)),
        })
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, path| match &node.value {
            Value::Scalar(s) => visitor.visit_borrowed_bytes(s.text.as_bytes()),
            Value::Seq(items) => visit_seq(items, path, visitor),
            _ => Err(expected("a string", node)),
        })
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, path| match &node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(NodeDeserializer::new(node, path)),
        })
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, _| match &node.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(expected("an empty value", node)),
        })
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == OPTIONAL_SECTION {
            return self.run(|node, path| {
                let enabled = match node.as_map().and_then(|m| m.get(ENABLED)) {
                    None => true,
                    Some(flag) => <bool as serde::Deserialize>::deserialize(
                        NodeDeserializer::new(flag, &path_key(path, ENABLED)),
                    )?,
                };
                if !enabled {
                    return visitor.visit_none();
                }
                visitor.visit_newtype_struct(NodeDeserializer {
                    node,
                    path: path.to_string(),
                    skip_enabled: true,
                })
            });
        }
        self.run(|node, path| visitor.visit_newtype_struct(NodeDeserializer::new(node, path)))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|node, path| match &node.value {
            Value::Null => visit_seq(&[], path, visitor),
            Value::Seq(items) => visit_seq(items, path, visitor),
            _ => Err(expected("a list", node)),
        })
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let skip = self.skip_enabled.then_some(ENABLED);
        self.run(|node, path| match &node.value {
            // `batch:` with no value means "all defaults".
            Value::Null => visit_map(&[], path, skip, visitor),
            Value::Map(m) => visit_map(&m.entries, path, skip, visitor),
            _ => Err(expected("a map", node)),
        })
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.run(|node, path| match &node.value {
            Value::Scalar(s) => visitor.visit_enum(EnumDe {
                variant: &s.text,
                variant_pos: &node.pos,
                variant_path: path.to_string(),
                content: None,
            }),
            Value::Map(m) if m.entries.len() == 1 => {
                let (k, v) = &m.entries[0];
                visitor.visit_enum(EnumDe {
                    variant: &k.name,
                    variant_pos: &k.pos,
                    variant_path: path_key(path, &k.name),
                    content: Some(v),
                })
            }
            _ => Err(expected("a name, or a map with a single key", node)),
        })
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

fn visit_seq<'a, V: Visitor<'a>>(
    items: &'a [Node],
    path: &str,
    visitor: V,
) -> Result<V::Value, DeError> {
    let mut access = SeqDe {
        items: items.iter().enumerate(),
        parent: path,
    };
    let value = visitor.visit_seq(&mut access)?;
    let left = access.items.len();
    if left > 0 {
        return Err(DeError::new(format!(
            "expected {} items, found {}",
            items.len() - left,
            items.len()
        )));
    }
    Ok(value)
}

fn visit_map<'a, V: Visitor<'a>>(
    entries: &'a [(Key, Node)],
    path: &str,
    skip: Option<&'static str>,
    visitor: V,
) -> Result<V::Value, DeError> {
    let mut access = MapDe {
        entries: entries.iter(),
        parent: path,
        pending: None,
        skip,
    };
    let value = visitor.visit_map(&mut access)?;
    if let Some((k, _)) = access.entries.next() {
        return Err(DeError::new(format!("unexpected key `{}`", k.name))
            .locate(&k.pos, &path_key(path, &k.name)));
    }
    Ok(value)
}

struct SeqDe<'a, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    parent: &'p str,
}

impl<'a> SeqAccess<'a> for SeqDe<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => seed
                .deserialize(NodeDeserializer::new(node, &path_index(self.parent, i)))
                .map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    parent: &'p str,
    pending: Option<(&'a Node, String)>,
    /// A key that belongs to the enclosing [`Optional`], not to this map's type.
    skip: Option<&'static str>,
}

impl<'a> MapAccess<'a> for MapDe<'a, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, node)) = self
            .entries
            .by_ref()
            .find(|(k, _)| Some(k.name.as_str()) != self.skip)
        else {
            return Ok(None);
        };
        let path = path_key(self.parent, &key.name);
        let k = seed.deserialize(NameDeserializer {
            name: &key.name,
            pos: &key.pos,
            path: &path,
        })?;
        self.pending = Some((node, path));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.pending.take() {
            Some((node, path)) => seed.deserialize(NodeDeserializer {
                node,
                path,
                skip_enabled: false,
            }),
            None => Err(DeError::new("internal: map value requested before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Deserializes a name: a map key or an enum variant. Errors point at the name itself.
struct NameDeserializer<'a, 'p> {
    name: &'a str,
    pos: &'a Pos,
    path: &'p str,
}

impl<'a> NameDeserializer<'a, '_> {
    fn run<T>(self, f: impl FnOnce(&'a str) -> Result<T, DeError>) -> Result<T, DeError> {
        f(self.name).map_err(|e| e.locate(self.pos, self.path))
    }
}

macro_rules! name_int_methods {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.run(|name| {
                match parse_int(name).and_then(|n| <$ty>::try_from(n).ok()) {
                    Some(v) => visitor.$visit(v),
                    None => Err(DeError::new(format!(
                        "expected an integer ({}) key, found `{name}`",
                        stringify!($ty)
                    ))),
                }
            })
        }
    )*};
}

impl<'a> de::Deserializer<'a> for NameDeserializer<'a, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|name| visitor.visit_borrowed_str(name))
    }

    name_int_methods! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(|name| {
            if name.eq_ignore_ascii_case("true") {
                visitor.visit_bool(true)
            } else if name.eq_ignore_ascii_case("false") {
                visitor.visit_bool(false)
            } else {
                Err(DeError::new(format!(
                    "expected `true` or `false`, found `{name}`"
                )))
            }
        })
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.run(|name| visitor.visit_enum(name.into_deserializer()))
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct EnumDe<'a> {
    variant: &'a str,
    variant_pos: &'a Pos,
    variant_path: String,
    content: Option<&'a Node>,
}

impl<'a> EnumAccess<'a> for EnumDe<'a> {
    type Error = DeError;
    type Variant = VariantDe<'a>;

    fn variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<(S::Value, VariantDe<'a>), DeError> {
        let v = seed.deserialize(NameDeserializer {
            name: self.variant,
            pos: self.variant_pos,
            path: &self.variant_path,
        })?;
        Ok((
            v,
            VariantDe {
                name: self.variant,
                pos: self.variant_pos,
                path: self.variant_path,
                content: self.content,
            },
        ))
    }
}

struct VariantDe<'a> {
    name: &'a str,
    pos: &'a Pos,
    path: String,
    content: Option<&'a Node>,
}

impl VariantDe<'_> {
    fn needs_value(&self) -> DeError {
        DeError::new(format!("`{}` needs a value", self.name)).locate(self.pos, &self.path)
    }
}

impl<'a> VariantAccess<'a> for VariantDe<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some(n) if n.is_null() => Ok(()),
            Some(n) => {
                Err(DeError::new(format!("`{}` takes no value", self.name))
                    .locate(&n.pos, &self.path))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.content {
            Some(node) => seed.deserialize(NodeDeserializer::new(node, &self.path)),
            None => Err(self.needs_value()),
        }
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.content {
            Some(node) => {
                de::Deserializer::deserialize_seq(NodeDeserializer::new(node, &self.path), visitor)
            }
            None => Err(self.needs_value()),
        }
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.content {
            Some(node) => {
                de::Deserializer::deserialize_map(NodeDeserializer::new(node, &self.path), visitor)
            }
            None => Err(self.needs_value()),
        }
    }
}

/// The key of an optional section that turns it off (`batch: {enabled: false}`).
const ENABLED: &str = "enabled";

/// The name [`Optional`] deserializes under, which [`NodeDeserializer`] recognises.
const OPTIONAL_SECTION: &str = "sluice_config::Optional";

/// A section that is on when its key is present, as the OTel Collector's `configoptional`:
/// `batch:` (no value) and `batch: {}` turn it on with its defaults, `batch: {enabled: false}`
/// turns it off, and `enabled: true` is accepted. Absent, it is whatever the field's
/// `#[serde(default)]` says, usually off.
#[derive(Clone, Debug, PartialEq)]
pub struct Optional<T>(pub Option<T>);

impl<T> Default for Optional<T> {
    fn default() -> Self {
        Optional(None)
    }
}

impl<T> Optional<T> {
    /// A section that is on with `value`.
    pub fn on(value: T) -> Self {
        Optional(Some(value))
    }
    /// The section's settings when it is on.
    pub fn as_ref(&self) -> Option<&T> {
        self.0.as_ref()
    }
    /// Whether the section is on.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Optional<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OptionalVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for OptionalVisitor<T> {
            type Value = Optional<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a section")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Optional(None))
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                T::deserialize(d).map(|v| Optional(Some(v)))
            }
        }
        deserializer
            .deserialize_newtype_struct(OPTIONAL_SECTION, OptionalVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_yaml;
    use crate::units::{ByteSize, Duration};
    use serde::Deserialize;
    use std::collections::BTreeMap;

    fn node(text: &str) -> Node {
        parse_yaml("cfg.yaml", text).unwrap()
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rotation {
        max_megabytes: u32,
        #[serde(default)]
        max_backups: u16,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct FileExporter {
        path: String,
        #[serde(default)]
        rotation: Option<Rotation>,
        #[serde(default)]
        flush_interval: Duration,
        #[serde(default)]
        format: Format,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "snake_case")]
    enum Format {
        #[default]
        Json,
        Proto,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Queue {
        size: u32,
        batch: Optional<Batching>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Batching {
        min_size: u32,
    }

    impl Default for Batching {
        fn default() -> Self {
            Batching { min_size: 8192 }
        }
    }

    #[test]
    fn an_optional_section_is_on_when_present_and_off_with_enabled_false() {
        let on = |text: &str| decode::<Queue>(&node(text), "q").unwrap().batch;
        assert_eq!(on("size: 1\n"), Optional(None));
        assert_eq!(on("batch:\n"), Optional::on(Batching::default()));
        assert_eq!(on("batch: {}\n"), Optional::on(Batching::default()));
        assert_eq!(
            on("batch: {min_size: 3}\n"),
            Optional::on(Batching { min_size: 3 })
        );
        assert_eq!(
            on("batch: {enabled: true, min_size: 3}\n"),
            Optional::on(Batching { min_size: 3 })
        );
        assert_eq!(on("batch: {enabled: false, min_size: 3}\n"), Optional(None));
        let e = decode::<Queue>(&node("batch: {enabled: maybe}\n"), "q").unwrap_err();
        assert_eq!(e.path, "q.batch.enabled");
        let e = decode::<Queue>(&node("batch: {min_sise: 3}\n"), "q").unwrap_err();
        assert_eq!(e.path, "q.batch.min_sise");
    }

    #[test]
    fn decode_all_reports_every_problem_of_a_section() {
        let n = node(
            "path: /tmp/x\nflush_intervall: 1s\nformat: xml\nrotation:\n  max_megabytes: ten\n  max_backupz: 3\n",
        );
        let errors = decode_all::<FileExporter>(&n, "exporters.file/out").unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "exporters.file/out.flush_intervall",
                "exporters.file/out.format",
                "exporters.file/out.rotation.max_megabytes",
                "exporters.file/out.rotation.max_backupz",
            ],
            "{errors:?}"
        );
        assert_eq!(errors[0].suggestion.as_deref(), Some("flush_interval"));
        assert!(errors.iter().all(|e| e.pos.is_some()));
        // A required key set aside is not reported as missing on top.
        let n = node("path: [1]\n");
        let errors = decode_all::<FileExporter>(&n, "f").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        // Problems in a list keep the index they had in the file.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Ports {
            ports: Vec<u16>,
        }
        let errors = decode_all::<Ports>(&node("ports: [1, x, 3, y]\n"), "r").unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["r.ports[1]", "r.ports[3]"]);
    }

    #[test]
    fn decodes_struct_with_units_and_enum() {
        let n = node(
            "path: /tmp/x\nrotation:\n  max_megabytes: \"10\"\nflush_interval: 200ms\nformat: proto\n",
        );
        let f: FileExporter = decode(&n, "exporters.file/out").unwrap();
        assert_eq!(
            f,
            FileExporter {
                path: "/tmp/x".into(),
                rotation: Some(Rotation {
                    max_megabytes: 10,
                    max_backups: 0
                }),
                flush_interval: Duration::from_millis(200),
                format: Format::Proto,
            }
        );
    }

    #[test]
    fn unknown_key_with_suggestion_and_position() {
        let n = node("path: /tmp/x\nrotaton:\n  max_megabytes: 1\n");
        let d = decode::<FileExporter>(&n, "exporters.file/out").unwrap_err();
        assert_eq!(d.path, "exporters.file/out.rotaton");
        assert_eq!(d.message, "unknown key `rotaton`");
        assert_eq!(d.suggestion.as_deref(), Some("rotation"));
        let pos = d.pos.as_ref().unwrap();
        assert_eq!((pos.line, pos.col), (2, 1));
        assert_eq!(
            d.to_string(),
            "cfg.yaml:2:1: exporters.file/out.rotaton: unknown key `rotaton` (did you mean `rotation`?)"
        );
    }

    #[test]
    fn nested_error_line_and_column() {
        let n = node("path: /tmp/x\nrotation:\n  max_backups: 2\n  max_megabytes: lots\n");
        let d = decode::<FileExporter>(&n, "exporters.file").unwrap_err();
        assert_eq!(d.path, "exporters.file.rotation.max_megabytes");
        let pos = d.pos.as_ref().unwrap();
        assert_eq!((pos.line, pos.col), (4, 18));
        assert!(d.message.contains("`lots`"), "{d}");

        let n = node("path: /x\nrotation:\n  max_backups: 70000\n  max_megabytes: 1\n");
        let d = decode::<FileExporter>(&n, "e").unwrap_err();
        assert_eq!(d.path, "e.rotation.max_backups");
        assert!(d.message.contains("out of range"), "{d}");

        let n = node("path: /x\nflush_interval: 5\n");
        let d = decode::<FileExporter>(&n, "e").unwrap_err();
        assert_eq!(d.path, "e.flush_interval");
        assert!(d.message.contains("a unit is needed"), "{d}");
    }

    #[test]
    fn missing_field_and_unknown_variant() {
        let n = node("rotation:\n  max_megabytes: 1\n");
        let d = decode::<FileExporter>(&n, "exporters.file").unwrap_err();
        assert_eq!(d.message, "missing required key `path`");
        assert_eq!(d.path, "exporters.file");
        assert_eq!(d.pos.as_ref().unwrap().line, 1);

        let n = node("path: /x\nformat: jsno\n");
        let d = decode::<FileExporter>(&n, "exporters.file").unwrap_err();
        assert_eq!(d.path, "exporters.file.format");
        assert_eq!(d.suggestion.as_deref(), Some("json"));
        assert_eq!(d.pos.as_ref().unwrap().line, 2);
        assert!(d.message.contains("unknown value `jsno`"), "{d}");
    }

    #[test]
    fn null_section_gives_defaults() {
        #[derive(Deserialize, Debug, PartialEq, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Batch {
            timeout: Duration,
            send_batch_size: u32,
            keys: Vec<String>,
        }
        let n = node("batch:\n");
        let b = n.as_map().unwrap().get("batch").unwrap();
        assert!(b.is_null());
        assert_eq!(
            decode::<Batch>(b, "processors.batch").unwrap(),
            Batch::default()
        );
        let n = node("keys:\ntimeout: 0\n");
        assert_eq!(decode::<Batch>(&n, "p").unwrap(), Batch::default());
    }

    #[test]
    fn lenient_scalars() {
        #[derive(Deserialize, Debug)]
        struct S {
            port: String,
            n: u16,
            f: f64,
            b: bool,
            c: char,
            h: i32,
            size: ByteSize,
            o: Option<u8>,
            u: (),
        }
        let n = node("port: 4317\nn: '80'\nf: 3\nb: TRUE\nc: x\nh: -0x10\nsize: 20MiB\no:\nu:\n");
        let s: S = decode(&n, "").unwrap();
        assert_eq!(s.port, "4317");
        assert_eq!(s.n, 80);
        assert_eq!(s.f, 3.0);
        assert!(s.b);
        assert_eq!(s.c, 'x');
        assert_eq!(s.h, -16);
        assert_eq!(s.size, ByteSize::mib(20));
        assert_eq!(s.o, None);
        let () = s.u;
        let d = decode::<S>(&node("port: [1]\n"), "r").unwrap_err();
        assert_eq!(d.path, "r.port");
        assert!(d.message.contains("expected a string, found a list"), "{d}");
    }

    /// A self-describing value, to see exactly what deserialize_any produces.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Any {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        List(Vec<Any>),
        Map(BTreeMap<String, Any>),
    }

    #[test]
    fn quoted_scalars_stay_strings_under_any() {
        let n = node(
            "a: true\nb: \"true\"\nc: 12\nd: '12'\ne: 1.5\nf: ~\ng: [x, 'false']\nh: |\n  true\n",
        );
        let v: Any = decode(&n, "").unwrap();
        let Any::Map(m) = v else { panic!("{v:?}") };
        assert_eq!(m["a"], Any::Bool(true));
        assert_eq!(m["b"], Any::Str("true".into()));
        assert_eq!(m["c"], Any::Int(12));
        assert_eq!(m["d"], Any::Str("12".into()));
        assert_eq!(m["e"], Any::Float(1.5));
        assert_eq!(m["f"], Any::Null);
        assert_eq!(
            m["g"],
            Any::List(vec![Any::Str("x".into()), Any::Str("false".into())])
        );
        assert_eq!(m["h"], Any::Str("true\n".into()));

        let j: serde_json::Value = decode(&n, "").unwrap();
        assert_eq!(j["a"], serde_json::json!(true));
        assert_eq!(j["b"], serde_json::json!("true"));
    }

    #[test]
    fn flatten_and_enums() {
        #[derive(Deserialize, Debug)]
        struct Common {
            endpoint: String,
        }
        #[derive(Deserialize, Debug)]
        struct WithFlatten {
            #[serde(flatten)]
            common: Common,
            #[serde(flatten)]
            rest: BTreeMap<String, serde_json::Value>,
        }
        let n = node("endpoint: localhost:4317\ninsecure: true\ntls: 'true'\n");
        let w: WithFlatten = decode(&n, "x").unwrap();
        assert_eq!(w.common.endpoint, "localhost:4317");
        assert_eq!(w.rest["insecure"], serde_json::json!(true));
        assert_eq!(w.rest["tls"], serde_json::json!("true"));

        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Action {
            Drop,
            Rename(String),
            Set { key: String, value: u8 },
            Pair(u8, u8),
        }
        let n = node("- drop\n- rename: x\n- set: {key: k, value: 3}\n- pair: [1, 2]\n- drop:\n");
        let v: Vec<Action> = decode(&n, "a").unwrap();
        assert_eq!(
            v,
            vec![
                Action::Drop,
                Action::Rename("x".into()),
                Action::Set {
                    key: "k".into(),
                    value: 3
                },
                Action::Pair(1, 2),
                Action::Drop,
            ]
        );
        let d =
            decode::<Vec<Action>>(&node("- drop\n- set: {key: k, valeu: 3}\n"), "a").unwrap_err();
        assert_eq!(d.path, "a[1].set.valeu");
        assert_eq!(d.suggestion.as_deref(), Some("value"));
        let d = decode::<Vec<Action>>(&node("- rename\n"), "a").unwrap_err();
        assert_eq!(d.path, "a[0]");
        assert!(d.message.contains("needs a value"), "{d}");
        let d = decode::<(u8, u8)>(&node("[1, 2, 3]"), "t").unwrap_err();
        assert!(d.message.contains("3"), "{d}");
    }

    #[test]
    fn borrowed_and_keyed() {
        #[derive(Deserialize)]
        struct B<'a> {
            #[serde(borrow)]
            name: &'a str,
            ports: BTreeMap<u16, String>,
        }
        let n = node("name: hi\nports:\n  80: http\n  443: https\n");
        let b: B<'_> = B::deserialize(NodeDeserializer::new(&n, "")).unwrap();
        assert_eq!(b.name, "hi");
        assert_eq!(b.ports[&443], "https");
        let d = decode::<BTreeMap<u16, String>>(&node("http: x\n"), "p").unwrap_err();
        assert_eq!(d.path, "p.http");
    }
}
