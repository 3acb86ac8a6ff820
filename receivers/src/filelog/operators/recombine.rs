//! `recombine`: joins consecutive entries of one source (a stack trace, a CRI line split into
//! partials) into one, by `is_first_entry` or `is_last_entry`. Entries it holds keep their
//! file positions uncommitted until the combined entry goes out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sluice_config::{Diagnostic, Node};

use super::entry::{Entry, Value};
use super::expr::Expr;
use super::field::Field;
use super::{Common, OnError, Operator, Output, decode, fail, problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecombineConfig {
    /// The field whose values are joined; required.
    combine_field: Field,
    /// Put between joined values (default `"\n"`).
    #[serde(default)]
    combine_with: Option<String>,
    /// True for the first entry of a series (exactly one of this and `is_last_entry`).
    #[serde(default)]
    is_first_entry: Option<String>,
    /// True for the last entry of a series.
    #[serde(default)]
    is_last_entry: Option<String>,
    /// Most entries joined into one (default 1000).
    #[serde(default)]
    max_batch_size: Option<usize>,
    /// Most entries joined before the first match (default 100; 0 no limit).
    #[serde(default)]
    max_unmatched_batch_size: Option<usize>,
    /// `newest` (default) or `oldest`: whose other fields the joined entry keeps.
    #[serde(default)]
    overwrite_with: Option<String>,
    /// Held entries go out after this long (default 5s).
    #[serde(default)]
    force_flush_period: Option<sluice_config::Duration>,
    /// What tells sources apart (default `attributes["log.file.path"]`).
    #[serde(default)]
    source_identifier: Option<Field>,
    /// Most sources tracked at once (default 1000).
    #[serde(default)]
    max_sources: Option<usize>,
    /// Most bytes of a joined value (default 0: no limit).
    #[serde(default)]
    max_log_size: Option<sluice_config::ByteSize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Match {
    First,
    Last,
}

pub(super) struct Settings {
    pub combine_field: Field,
    pub combine_with: String,
    pub matcher: Match,
    pub expr: Expr,
    pub max_batch_size: usize,
    pub max_unmatched_batch_size: usize,
    pub keep_newest: bool,
    pub force_flush_period: Duration,
    pub source_identifier: Field,
    pub max_sources: usize,
    pub max_log_size: usize,
}

struct Batch {
    entries: Vec<Entry>,
    /// Started by an entry that matched (`is_first_entry`): not limited as unmatched.
    matched: bool,
    first_seen: Instant,
    size: usize,
}

/// The joining logic, shared with the `container` operator's CRI partial lines.
pub(super) struct Recombiner {
    id: String,
    on_error: OnError,
    settings: Settings,
    batches: HashMap<String, Batch>,
    /// Sources in the order their batch started, so flushes keep the read order.
    order: Vec<String>,
}

impl Recombiner {
    pub fn new(id: String, on_error: OnError, settings: Settings) -> Recombiner {
        Recombiner {
            id,
            on_error,
            settings,
            batches: HashMap::new(),
            order: Vec::new(),
        }
    }

    fn source(&self, entry: &Entry) -> String {
        match self.settings.source_identifier.get(entry) {
            Some(Value::Str(s)) => s.clone(),
            Some(other) => other.to_text(),
            None => "DefaultSourceIdentifier".to_string(),
        }
    }

    fn value_size(&self, entry: &Entry) -> usize {
        match self.settings.combine_field.get(entry) {
            Some(Value::Str(s)) => s.len(),
            Some(v) => v.to_text().len(),
            None => 0,
        }
    }

    pub fn add(&mut self, entry: Entry, out: &mut Output) {
        let matches = match self.settings.expr.eval_bool(&entry) {
            Ok(m) => m,
            Err(e) => return fail(&self.id, self.on_error, &e.0, entry, out),
        };
        let source = self.source(&entry);
        if !self.batches.contains_key(&source) && self.batches.len() >= self.settings.max_sources {
            // Too many sources at once: give everything back rather than grow without bound.
            self.flush_all(out);
        }
        let matcher = self.settings.matcher;
        match (matcher, matches) {
            (Match::First, true) => {
                self.flush_source(&source, out);
                self.push(source.clone(), entry, true);
            }
            (Match::Last, true) => {
                self.push(source.clone(), entry, false);
                self.flush_source(&source, out);
                return;
            }
            (_, false) => {
                self.push(source.clone(), entry, false);
                let limit = self.settings.max_unmatched_batch_size;
                let full = self
                    .batches
                    .get(&source)
                    .is_some_and(|b| !b.matched && limit > 0 && b.entries.len() >= limit);
                if full {
                    self.flush_source(&source, out);
                    return;
                }
            }
        }
        // Any batch is bounded by entries and bytes.
        let s = &self.settings;
        let full = self.batches.get(&source).is_some_and(|b| {
            b.entries.len() >= s.max_batch_size || (s.max_log_size > 0 && b.size >= s.max_log_size)
        });
        if full {
            self.flush_source(&source, out);
        }
    }

    fn push(&mut self, source: String, entry: Entry, matched: bool) {
        let size = self.value_size(&entry);
        match self.batches.get_mut(&source) {
            Some(batch) => {
                batch.size += size + self.settings.combine_with.len();
                batch.entries.push(entry);
            }
            None => {
                self.order.push(source.clone());
                self.batches.insert(
                    source,
                    Batch {
                        entries: vec![entry],
                        matched,
                        first_seen: Instant::now(),
                        size,
                    },
                );
            }
        }
    }

    fn flush_source(&mut self, source: &str, out: &mut Output) {
        let Some(batch) = self.batches.remove(source) else {
            return;
        };
        self.order.retain(|s| s != source);
        out.send(0, self.combine(batch.entries));
    }

    fn combine(&self, mut entries: Vec<Entry>) -> Entry {
        if entries.len() == 1
            && let Some(only) = entries.pop()
        {
            return only;
        }
        let s = &self.settings;
        let mut joined = String::new();
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                joined.push_str(&s.combine_with);
            }
            match s.combine_field.get(e) {
                Some(Value::Str(v)) => joined.push_str(v),
                Some(v) => joined.push_str(&v.to_text()),
                None => {}
            }
        }
        let base_index = if s.keep_newest { entries.len() - 1 } else { 0 };
        let mut origin = super::entry::Origin::None;
        for e in &mut entries {
            origin.absorb(std::mem::take(&mut e.origin));
        }
        let mut base = entries.swap_remove(base_index);
        s.combine_field.set(&mut base, Value::Str(joined));
        base.origin = origin;
        base
    }

    pub fn flush_due(&mut self, now: Instant, all: bool, out: &mut Output) {
        let period = self.settings.force_flush_period;
        let due: Vec<String> = self
            .order
            .iter()
            .filter(|s| {
                all || self
                    .batches
                    .get(*s)
                    .is_some_and(|b| now.saturating_duration_since(b.first_seen) >= period)
            })
            .cloned()
            .collect();
        for source in due {
            self.flush_source(&source, out);
        }
    }

    fn flush_all(&mut self, out: &mut Output) {
        let all: Vec<String> = self.order.clone();
        for source in all {
            self.flush_source(&source, out);
        }
    }

    pub fn held(&self, visit: &mut dyn FnMut(&Entry)) {
        for batch in self.batches.values() {
            for e in &batch.entries {
                visit(e);
            }
        }
    }
}

impl Operator for Recombiner {
    fn process(&mut self, entry: Entry, out: &mut Output) {
        self.add(entry, out);
    }

    fn flush(&mut self, now: Instant, all: bool, out: &mut Output) {
        self.flush_due(now, all, out);
    }

    fn held(&self, visit: &mut dyn FnMut(&Entry)) {
        Recombiner::held(self, visit);
    }

    fn holds(&self) -> bool {
        true
    }
}

/// `recombine` with an `if`: entries the condition rejects pass by untouched.
struct Conditional {
    condition: Expr,
    inner: Recombiner,
}

impl Operator for Conditional {
    fn process(&mut self, entry: Entry, out: &mut Output) {
        match self.condition.eval_bool(&entry) {
            Ok(true) => self.inner.add(entry, out),
            Ok(false) => out.send(0, entry),
            Err(e) => fail(&self.inner.id, self.inner.on_error, &e.0, entry, out),
        }
    }

    fn flush(&mut self, now: Instant, all: bool, out: &mut Output) {
        self.inner.flush_due(now, all, out);
    }

    fn held(&self, visit: &mut dyn FnMut(&Entry)) {
        self.inner.held(visit);
    }

    fn holds(&self) -> bool {
        true
    }
}

pub(super) fn build(
    node: &Node,
    path: &str,
    common: &mut Common,
) -> Result<Box<dyn Operator>, Vec<Diagnostic>> {
    let config: RecombineConfig = decode(node, path)?;
    let mut errors = Vec::new();
    let (matcher, source) = match (&config.is_first_entry, &config.is_last_entry) {
        (Some(e), None) => (Match::First, Some(("is_first_entry", e))),
        (None, Some(e)) => (Match::Last, Some(("is_last_entry", e))),
        _ => {
            errors.push(problem(
                node,
                path,
                "",
                "set exactly one of `is_first_entry` and `is_last_entry`",
            ));
            (Match::First, None)
        }
    };
    let expr = source.and_then(|(key, text)| {
        Expr::compile(text)
            .map_err(|e| errors.push(problem(node, path, key, e.to_string())))
            .ok()
    });
    let keep_newest = match config.overwrite_with.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            errors.push(problem(
                node,
                path,
                "overwrite_with",
                format!("`{other}` is not `newest` or `oldest`"),
            ));
            true
        }
    };
    let max_batch_size = config.max_batch_size.unwrap_or(1000);
    if max_batch_size == 0 {
        errors.push(problem(
            node,
            path,
            "max_batch_size",
            "must be greater than 0",
        ));
    }
    let (Some(expr), true) = (expr, errors.is_empty()) else {
        return Err(errors);
    };
    let settings = Settings {
        combine_field: config.combine_field,
        combine_with: config.combine_with.unwrap_or_else(|| "\n".to_string()),
        matcher,
        expr,
        max_batch_size,
        max_unmatched_batch_size: config.max_unmatched_batch_size.unwrap_or(100),
        keep_newest,
        force_flush_period: config
            .force_flush_period
            .map_or(super::DEFAULT_FORCE_FLUSH, |d| d.0),
        source_identifier: config
            .source_identifier
            .unwrap_or_else(|| Field::attribute("log.file.path")),
        max_sources: config.max_sources.unwrap_or(1000).max(1),
        max_log_size: config.max_log_size.map_or(0, |b| b.0 as usize),
    };
    let inner = Recombiner::new(common.id.clone(), common.on_error, settings);
    Ok(match common.condition.take() {
        Some(condition) => Box::new(Conditional { condition, inner }),
        None => Box::new(inner),
    })
}
