//! Operators that move values around an entry: `add`, `copy`, `move`, `remove`, `flatten`,
//! `retain`, and `noop`.

use serde::Deserialize;
use sluice_config::{Diagnostic, Node, Resolved, Value as NodeValue, resolve_plain};

use super::entry::{Entry, Map, Value};
use super::expr::ExprString;
use super::field::{Field, Root};
use super::{Transform, decode, problem};

/// A YAML value from the config as an entry value (`add`'s `value`).
pub fn node_value(node: &Node) -> Value {
    match &node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Scalar(s) if s.quoted => Value::Str(s.text.clone()),
        NodeValue::Scalar(s) => match resolve_plain(&s.text) {
            Resolved::Bool(b) => Value::Bool(b),
            Resolved::UInt(u) => i64::try_from(u).map_or(Value::Float(u as f64), Value::Int),
            Resolved::Int(i) => Value::Int(i),
            Resolved::Float(f) => Value::Float(f),
            Resolved::Str => Value::Str(s.text.clone()),
        },
        NodeValue::Seq(items) => Value::Array(items.iter().map(node_value).collect()),
        NodeValue::Map(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.name.clone(), node_value(v)))
                .collect(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddConfig {
    /// Where the value goes.
    field: Field,
    /// A value of any shape, or a string with `EXPR(...)` evaluated per entry.
    value: serde::de::IgnoredAny,
}

enum AddValue {
    Static(Value),
    Expr(ExprString),
}

struct Add {
    field: Field,
    value: AddValue,
}

impl Transform for Add {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        let value = match &self.value {
            AddValue::Static(v) => v.clone(),
            AddValue::Expr(e) => e.render(entry).map_err(|e| e.0)?,
        };
        self.field.set(entry, value);
        Ok(())
    }
}

pub fn add(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: AddConfig = decode(node, path)?;
    let _ = config.value;
    let Some(value_node) = node.get("value") else {
        return Err(vec![Diagnostic::new(
            Some(node.pos.clone()),
            format!("{path}.value"),
            "`value` is required",
        )]);
    };
    let value = match node_value(value_node) {
        Value::Str(s) if s.contains("EXPR(") => AddValue::Expr(
            ExprString::compile(&s)
                .map_err(|e| vec![problem(node, path, "value", e.to_string())])?,
        ),
        v => AddValue::Static(v),
    };
    Ok(Box::new(Add {
        field: config.field,
        value,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromTo {
    /// The field the value is taken from.
    from: Field,
    /// The field it goes to.
    to: Field,
}

struct Copy(FromTo);

impl Transform for Copy {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        let value = self
            .0
            .from
            .get(entry)
            .cloned()
            .ok_or_else(|| format!("copy: field {} does not exist", self.0.from))?;
        self.0.to.set(entry, value);
        Ok(())
    }
}

pub fn copy(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    Ok(Box::new(Copy(decode(node, path)?)))
}

struct Move(FromTo);

impl Transform for Move {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        if !self.0.from.exists(entry) {
            return Err(format!("move: field {} does not exist", self.0.from));
        }
        let value = self.0.from.delete(entry).unwrap_or(Value::Null);
        self.0.to.set(entry, value);
        Ok(())
    }
}

pub fn move_field(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    Ok(Box::new(Move(decode(node, path)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldConfig {
    /// The field acted on.
    field: Field,
}

struct Remove(Field);

impl Transform for Remove {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        if !self.0.exists(entry) {
            return Err(format!("remove: field {} does not exist", self.0));
        }
        self.0.delete(entry);
        Ok(())
    }
}

pub fn remove(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: FieldConfig = decode(node, path)?;
    Ok(Box::new(Remove(config.field)))
}

struct Flatten(Field);

impl Transform for Flatten {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        let Some(Value::Map(_)) = self.0.get(entry) else {
            return Err(format!("flatten: {} is not a map", self.0));
        };
        let Some(Value::Map(children)) = self.0.delete(entry) else {
            return Err(format!("flatten: {} is not a map", self.0));
        };
        let parent = Field {
            root: self.0.root,
            keys: self.0.keys[..self.0.keys.len() - 1].to_vec(),
        };
        // Set one by one: a map set onto a map merges, which would nest rather than replace.
        for (key, value) in children {
            let mut target = parent.clone();
            target.keys.push(key);
            target.delete(entry);
            target.set(entry, value);
        }
        Ok(())
    }
}

pub fn flatten(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: FieldConfig = decode(node, path)?;
    if config.field.is_root() {
        return Err(vec![problem(
            node,
            path,
            "field",
            "flatten needs a field inside body, attributes or resource, not a whole one",
        )]);
    }
    Ok(Box::new(Flatten(config.field)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetainConfig {
    /// The fields kept; a group (body, attributes, resource) none of them names is kept whole.
    fields: Vec<Field>,
}

struct Retain {
    body: Vec<Field>,
    attributes: Vec<Field>,
    resource: Vec<Field>,
}

impl Transform for Retain {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        let mut kept = Entry::default();
        for field in self
            .body
            .iter()
            .chain(&self.attributes)
            .chain(&self.resource)
        {
            if let Some(value) = field.get(entry) {
                field.set(&mut kept, value.clone());
            }
        }
        if !self.body.is_empty() {
            entry.body = match kept.body {
                Value::Null => Value::Map(Map::new()),
                body => body,
            };
        }
        if !self.attributes.is_empty() {
            entry.attributes = kept.attributes;
        }
        if !self.resource.is_empty() {
            entry.resource = kept.resource;
        }
        Ok(())
    }
}

pub fn retain(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: RetainConfig = decode(node, path)?;
    let group = |root| {
        config
            .fields
            .iter()
            .filter(|f| f.root == root)
            .cloned()
            .collect::<Vec<_>>()
    };
    Ok(Box::new(Retain {
        body: group(Root::Body),
        attributes: group(Root::Attributes),
        resource: group(Root::Resource),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopConfig {}

struct Noop;

impl Transform for Noop {
    fn apply(&mut self, _entry: &mut Entry) -> Result<(), String> {
        Ok(())
    }
}

pub fn noop(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    if !node.is_null() {
        let _: NoopConfig = decode(node, path)?;
    }
    Ok(Box::new(Noop))
}
