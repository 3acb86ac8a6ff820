//! stanza's operators: the `operators:` list of the `filelog` receiver (and of any log
//! receiver that takes one), built once from the config and run on each entry.
//!
//! Operators are wired as upstream wires them: each sends to the next one in the list, or to
//! the ids in its `output`; the last sends out of the receiver. A `router` sends each entry to
//! the first route whose expression holds. Stateful operators (`recombine`, `container` for
//! CRI partial lines) hold entries and give them back later; [`Operators::held`] tells the
//! reader which file positions they still hold, so no checkpoint passes them.

mod container;
mod embedded;
pub mod entry;
pub mod expr;
pub mod field;
mod flow;
mod parser;
mod recombine;
#[cfg(test)]
mod tests;
pub mod time;
mod transform;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use sluice_config::{Diagnostic, Node, Value as NodeValue};
use sluice_pipeline::telemetry::{DEFAULT_LOG_INTERVAL, LogLimiter};

pub use entry::{Entry, Map, Origin, Span, Value};
pub use field::Field;

use expr::Expr;

/// What an operator does with an entry it cannot process (upstream's `on_error`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Log the error and send the entry on as it is.
    #[default]
    Send,
    /// Send the entry on; log the error at debug level only.
    SendQuiet,
    /// Log the error and drop the entry.
    Drop,
    /// Drop the entry; log the error at debug level only.
    DropQuiet,
}

/// Entries an operator gives back, each on an output port: 0 is its `output`, a router's
/// routes are 0.. and its `default` comes after them.
#[derive(Default)]
pub struct Output {
    sent: Vec<(usize, Entry)>,
}

impl Output {
    pub fn send(&mut self, port: usize, entry: Entry) {
        self.sent.push((port, entry));
    }
}

/// One step of the pipeline.
pub trait Operator: Send {
    fn process(&mut self, entry: Entry, out: &mut Output);
    /// Gives back what was held longer than the operator's flush period (everything when
    /// `all`, at shutdown or when the reader needs every position released).
    fn flush(&mut self, _now: Instant, _all: bool, _out: &mut Output) {}
    /// Visits the entries held back, so the reader keeps their file positions uncommitted.
    fn held(&self, _visit: &mut dyn FnMut(&Entry)) {}
    /// Whether the operator ever holds entries.
    fn holds(&self) -> bool {
        false
    }
}

/// The work of most operators: change one entry in place, or fail.
pub trait Transform: Send {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String>;
}

/// An operator with upstream's `if` and `on_error` around a [`Transform`].
struct Transformer {
    id: String,
    condition: Option<Expr>,
    on_error: OnError,
    inner: Box<dyn Transform>,
}

impl Operator for Transformer {
    fn process(&mut self, mut entry: Entry, out: &mut Output) {
        if let Some(condition) = &self.condition {
            match condition.eval_bool(&entry) {
                Ok(true) => {}
                Ok(false) => return out.send(0, entry),
                Err(e) => return fail(&self.id, self.on_error, &e.0, entry, out),
            }
        }
        match self.inner.apply(&mut entry) {
            Ok(()) => out.send(0, entry),
            Err(e) => fail(&self.id, self.on_error, &e, entry, out),
        }
    }
}

fn limiter() -> &'static LogLimiter {
    static LIMITER: OnceLock<LogLimiter> = OnceLock::new();
    LIMITER.get_or_init(|| LogLimiter::new(DEFAULT_LOG_INTERVAL))
}

/// Reports an entry an operator could not process, and sends or drops it per `on_error`.
fn fail(id: &str, on_error: OnError, error: &str, entry: Entry, out: &mut Output) {
    match on_error {
        OnError::Send | OnError::Drop => {
            if let Some(suppressed) = limiter().allow("operator_error") {
                tracing::warn!(operator = id, error, suppressed, action = ?on_error, "operator failed on an entry");
            }
        }
        OnError::SendQuiet | OnError::DropQuiet => {
            tracing::debug!(operator = id, error, "operator failed on an entry");
        }
    }
    if matches!(on_error, OnError::Send | OnError::SendQuiet) {
        out.send(0, entry);
    }
}

/// Where an output port leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Operator(usize),
    /// Out of the pipeline, to the receiver's batch.
    Emit,
}

struct Slot {
    id: String,
    operator: Box<dyn Operator>,
    ports: Vec<Vec<Target>>,
}

/// The built `operators:` list.
pub struct Operators {
    slots: Vec<Slot>,
    holds: bool,
}

impl Operators {
    /// No operators: entries go straight out.
    pub fn empty() -> Operators {
        Operators {
            slots: Vec::new(),
            holds: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether an operator may hold entries back (then [`Operators::held`] matters).
    pub fn holds(&self) -> bool {
        self.holds
    }

    /// Runs one entry through, appending what comes out to `emitted`.
    pub fn process(&mut self, entry: Entry, emitted: &mut Vec<Entry>) {
        if self.slots.is_empty() {
            emitted.push(entry);
            return;
        }
        self.run(vec![(0, entry)], emitted);
    }

    /// Gives back what stateful operators held past their flush period (all of it with `all`).
    pub fn flush(&mut self, now: Instant, all: bool, emitted: &mut Vec<Entry>) {
        if !self.holds {
            return;
        }
        // Earlier operators first: what they give back may be held again further on, and
        // is then flushed there in the same pass when `all`.
        for index in 0..self.slots.len() {
            let mut out = Output::default();
            self.slots[index].operator.flush(now, all, &mut out);
            let work = self.route(index, out);
            self.run(work, emitted);
        }
    }

    /// Visits every entry held back by an operator.
    pub fn held(&self, visit: &mut dyn FnMut(&Entry)) {
        for slot in &self.slots {
            slot.operator.held(visit);
        }
    }

    fn route(&self, from: usize, out: Output) -> Vec<(usize, Entry)> {
        let mut work = Vec::new();
        for (port, entry) in out.sent {
            let Some(targets) = self.slots[from].ports.get(port) else {
                continue;
            };
            let mut entry = Some(entry);
            for (i, target) in targets.iter().enumerate() {
                let e = if i + 1 == targets.len() {
                    entry.take()
                } else {
                    entry.clone()
                };
                if let Some(e) = e {
                    match target {
                        Target::Operator(next) => work.push((*next, e)),
                        Target::Emit => work.push((usize::MAX, e)),
                    }
                }
            }
        }
        work
    }

    fn run(&mut self, mut work: Vec<(usize, Entry)>, emitted: &mut Vec<Entry>) {
        // Depth first, in order, so entries come out in the order they went in.
        work.reverse();
        while let Some((index, entry)) = work.pop() {
            if index == usize::MAX {
                emitted.push(entry);
                continue;
            }
            let mut out = Output::default();
            self.slots[index].operator.process(entry, &mut out);
            let mut next = self.route(index, out);
            next.reverse();
            work.extend(next);
        }
    }

    /// The operator ids, in order (for tests and logs).
    pub fn ids(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.id.as_str()).collect()
    }
}

/// Every operator type sluice runs, as configs name them.
pub const KNOWN_TYPES: &[&str] = &[
    "add",
    "container",
    "copy",
    "csv_parser",
    "filter",
    "flatten",
    "json_parser",
    "key_value_parser",
    "move",
    "noop",
    "recombine",
    "regex_parser",
    "remove",
    "retain",
    "router",
    "scope_name_parser",
    "severity_parser",
    "time_parser",
    "trace_parser",
];

/// Upstream operator types that read or write outside the pipeline: they have no place in a
/// receiver's `operators` list.
const NOT_IN_A_PIPELINE: &[&str] = &[
    "file_input",
    "file_output",
    "stdin",
    "stdout",
    "journald_input",
    "k8s_event_input",
    "syslog_input",
    "tcp_input",
    "udp_input",
    "windows_eventlog_input",
    "generate_input",
];

/// The keys every operator has (read here, not by each operator).
struct Common {
    id: String,
    type_name: String,
    output: Option<Vec<String>>,
    condition: Option<Expr>,
    on_error: OnError,
}

/// `output: id` or `output: [a, b]`.
#[derive(Debug)]
pub struct OutputIds(pub Vec<String>);

impl<'de> Deserialize<'de> for OutputIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(OutputIds(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }))
    }
}

/// Decodes an operator's own keys (the common ones already taken out).
pub(crate) fn decode<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, Vec<Diagnostic>> {
    sluice_config::decode_all(node, path)
}

/// A problem with a key of an operator's section, at that key when present.
pub(crate) fn problem(
    node: &Node,
    path: &str,
    key: &str,
    message: impl Into<String>,
) -> Diagnostic {
    let at = node.get(key).map_or(&node.pos, |n| &n.pos);
    let path = if key.is_empty() {
        path.to_string()
    } else {
        format!("{path}.{key}")
    };
    Diagnostic::new(Some(at.clone()), path, message)
}

/// What builds one operator from its section (common keys removed) and path.
type Builder = fn(&Node, &str, &mut Common) -> Result<Box<dyn Operator>, Vec<Diagnostic>>;

/// Builds a [`Transformer`] from a transform builder.
fn transformer(
    common: &mut Common,
    inner: Result<Box<dyn Transform>, Vec<Diagnostic>>,
) -> Result<Box<dyn Operator>, Vec<Diagnostic>> {
    Ok(Box::new(Transformer {
        id: common.id.clone(),
        condition: common.condition.take(),
        on_error: common.on_error,
        inner: inner?,
    }))
}

fn builder(type_name: &str) -> Option<Builder> {
    Some(match type_name {
        "add" => |n, p, c| transformer(c, transform::add(n, p)),
        "copy" => |n, p, c| transformer(c, transform::copy(n, p)),
        "move" => |n, p, c| transformer(c, transform::move_field(n, p)),
        "remove" => |n, p, c| transformer(c, transform::remove(n, p)),
        "flatten" => |n, p, c| transformer(c, transform::flatten(n, p)),
        "retain" => |n, p, c| transformer(c, transform::retain(n, p)),
        "noop" => |n, p, c| transformer(c, transform::noop(n, p)),
        "json_parser" => |n, p, c| transformer(c, parser::json(n, p)),
        "regex_parser" => |n, p, c| transformer(c, parser::regex(n, p)),
        "key_value_parser" => |n, p, c| transformer(c, parser::key_value(n, p)),
        "csv_parser" => |n, p, c| transformer(c, parser::csv(n, p)),
        "time_parser" => |n, p, c| transformer(c, embedded::time_parser(n, p)),
        "severity_parser" => |n, p, c| transformer(c, embedded::severity_parser(n, p)),
        "trace_parser" => |n, p, c| transformer(c, embedded::trace_parser(n, p)),
        "scope_name_parser" => |n, p, c| transformer(c, embedded::scope_name_parser(n, p)),
        "filter" => |n, p, c| flow::filter(n, p, c),
        "router" => |n, p, c| flow::router(n, p, c),
        "recombine" => |n, p, c| recombine::build(n, p, c),
        "container" => |n, p, c| container::build(n, p, c),
        _ => return None,
    })
}

/// Builds the `operators:` list at `path` (e.g. `receivers.filelog.operators`).
pub fn build(node: Option<&Node>, path: &str) -> Result<Operators, Vec<Diagnostic>> {
    let Some(node) = node else {
        return Ok(Operators::empty());
    };
    let items: &[Node] = match &node.value {
        NodeValue::Null => &[],
        NodeValue::Seq(items) => items,
        _ => {
            return Err(vec![Diagnostic::new(
                Some(node.pos.clone()),
                path,
                format!("expected a list of operators, found {}", node.kind_name()),
            )]);
        }
    };
    let mut errors = Vec::new();
    let mut built: Vec<BuiltOperator> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match build_one(item, &item_path) {
            Ok(b) => built.push(b),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Wire outputs by id. Default ids repeated are numbered (`move`, `move1`...) as upstream
    // does; an id written twice is an error.
    let mut ids: HashMap<String, usize> = HashMap::new();
    for i in 0..built.len() {
        let explicit = items[i].get("id").is_some();
        if !explicit && ids.contains_key(&built[i].0.id) {
            let base = built[i].0.id.clone();
            let mut n = 1;
            while ids.contains_key(&format!("{base}{n}"))
                || built.iter().any(|b| b.0.id == format!("{base}{n}"))
            {
                n += 1;
            }
            built[i].0.id = format!("{base}{n}");
        }
        if ids.insert(built[i].0.id.clone(), i).is_some() {
            errors.push(Diagnostic::new(
                Some(items[i].pos.clone()),
                format!("{path}[{i}].id"),
                format!(
                    "operator id `{}` is used twice; give each operator of the same type its own `id`",
                    built[i].0.id
                ),
            ));
        }
    }
    let count = built.len();
    let mut slots = Vec::with_capacity(count);
    for (i, (common, operator, port_ids)) in built.into_iter().enumerate() {
        let mut ports = Vec::new();
        let resolve = |names: &[String], errors: &mut Vec<Diagnostic>| -> Vec<Target> {
            names
                .iter()
                .filter_map(|name| match ids.get(name) {
                    Some(&target) => Some(Target::Operator(target)),
                    None => {
                        let mut known: Vec<&str> = ids.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        errors.push(Diagnostic::new(
                            Some(items[i].pos.clone()),
                            format!("{path}[{i}]"),
                            format!(
                                "output `{name}` is not the id of an operator in this list (ids: {})",
                                known.join(", ")
                            ),
                        ));
                        None
                    }
                })
                .collect()
        };
        let next = if i + 1 < count {
            Target::Operator(i + 1)
        } else {
            Target::Emit
        };
        if common.type_name == "router" {
            // Routes name their outputs; `default` (last port) drops when absent.
            for names in &port_ids {
                ports.push(resolve(names, &mut errors));
            }
        } else {
            ports.push(match &common.output {
                Some(names) => resolve(names, &mut errors),
                None => vec![next],
            });
        }
        slots.push(Slot {
            id: common.id,
            operator,
            ports,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let holds = slots.iter().any(|s| s.operator.holds());
    Ok(Operators { slots, holds })
}

/// An operator as built from its config: the keys every operator has, the operator, and
/// the ids its `output` names (one list per way out).
type BuiltOperator = (Common, Box<dyn Operator>, Vec<Vec<String>>);

fn build_one(node: &Node, path: &str) -> Result<BuiltOperator, Vec<Diagnostic>> {
    let Some(map) = node.as_map() else {
        return Err(vec![Diagnostic::new(
            Some(node.pos.clone()),
            path,
            format!(
                "expected an operator (a map with `type`), found {}",
                node.kind_name()
            ),
        )]);
    };
    let Some(type_name) = map.get("type").and_then(Node::as_str) else {
        return Err(vec![Diagnostic::new(
            Some(node.pos.clone()),
            path,
            "an operator needs a `type`",
        )]);
    };
    let type_name = type_name.to_string();
    let Some(build) = builder(&type_name) else {
        let message = if NOT_IN_A_PIPELINE.contains(&type_name.as_str()) {
            format!(
                "operator type `{type_name}` reads or writes outside the pipeline and cannot be used in `operators`; known operator types: {}",
                KNOWN_TYPES.join(", ")
            )
        } else {
            format!(
                "unknown operator type `{type_name}`; known operator types: {}",
                KNOWN_TYPES.join(", ")
            )
        };
        let at = map.get("type").map_or(&node.pos, |n| &n.pos);
        return Err(vec![
            Diagnostic::new(Some(at.clone()), format!("{path}.type"), message).with_suggestion(
                sluice_config::suggest(&type_name, KNOWN_TYPES.iter().copied()),
            ),
        ]);
    };
    let mut errors = Vec::new();
    let id = match map.get("id") {
        Some(n) => match n.as_str() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                errors.push(problem(node, path, "id", "`id` must be a non-empty string"));
                type_name.clone()
            }
        },
        None => type_name.clone(),
    };
    let output = match map.get("output") {
        Some(n) => match decode::<OutputIds>(n, &format!("{path}.output")) {
            Ok(ids) => Some(ids.0),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        },
        None => None,
    };
    let condition = match map.get("if").and_then(Node::as_str) {
        Some(source) => match Expr::compile(source) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(problem(node, path, "if", e.to_string()));
                None
            }
        },
        None => None,
    };
    let on_error = match map.get("on_error") {
        Some(n) => decode::<OnError>(n, &format!("{path}.on_error")).unwrap_or_else(|mut e| {
            errors.append(&mut e);
            OnError::Send
        }),
        None => OnError::Send,
    };
    let router = type_name == "router";
    let mut own = node.clone();
    if let Some(m) = own.as_map_mut() {
        let common_keys: &[&str] = if router {
            &["id", "type"]
        } else {
            &["id", "type", "output", "if", "on_error"]
        };
        m.entries
            .retain(|(k, _)| !common_keys.contains(&k.name.as_str()));
    }
    let mut common = Common {
        id,
        type_name,
        output,
        condition,
        on_error,
    };
    let operator = match build(&own, path, &mut common) {
        Ok(op) if errors.is_empty() => op,
        Ok(_) => return Err(errors),
        Err(mut e) => {
            errors.append(&mut e);
            return Err(errors);
        }
    };
    let ports = if router {
        flow::router_ports(&own)
    } else {
        Vec::new()
    };
    Ok((common, operator, ports))
}

/// Default period after which held partial entries are given back (recombine's default).
pub const DEFAULT_FORCE_FLUSH: Duration = Duration::from_secs(5);
