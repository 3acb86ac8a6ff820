//! What the filter runs: for each signal, the conditions of each level (resource, scope, item,
//! inner item), each with what to do when it fails to evaluate. OTTL conditions and the
//! legacy include/exclude blocks both end up here, as the same [`Expr`]s.

use std::sync::Arc;

use sluice_pipeline::telemetry::{DEFAULT_LOG_INTERVAL, LogLimiter};

use super::eval::{EvalError, Item, eval};
use super::parser::Expr;

/// What a condition that fails to evaluate (not one that is false) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorMode {
    /// Log it and treat the condition as false (the OTel Collector's default since v0.153).
    #[default]
    Ignore,
    /// Fail the whole batch with a permanent error.
    Propagate,
    /// Treat the condition as false without a word.
    Silent,
}

impl TryFrom<String> for ErrorMode {
    type Error = String;

    /// Case-insensitive, as the OTel Collector reads it.
    fn try_from(text: String) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "ignore" => Ok(ErrorMode::Ignore),
            "propagate" => Ok(ErrorMode::Propagate),
            "silent" => Ok(ErrorMode::Silent),
            _ => Err(format!(
                "unknown error mode `{text}`, expected `ignore`, `propagate` or `silent`"
            )),
        }
    }
}

/// One condition and its error mode (a condition group may override the processor's).
pub struct Condition {
    pub expr: Expr,
    pub mode: ErrorMode,
}

/// Conditions of one level, ORed: the item goes when any holds.
pub struct Conditions {
    list: Vec<Condition>,
    /// The processor's id, for log lines.
    name: Arc<str>,
    /// A failing condition fails on every item it meets: one line per interval is enough.
    log: Arc<LogLimiter>,
}

impl Conditions {
    pub fn new(name: Arc<str>, log: Arc<LogLimiter>) -> Self {
        Conditions {
            list: Vec::new(),
            name,
            log,
        }
    }

    pub fn push(&mut self, expr: Expr, mode: ErrorMode) {
        self.list.push(Condition { expr, mode });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// True when any condition holds; `Err` only from a condition under `propagate`.
    pub fn matches(&self, item: &Item<'_>) -> Result<bool, EvalError> {
        for condition in &self.list {
            match eval(&condition.expr, item) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => match condition.mode {
                    ErrorMode::Propagate => return Err(e),
                    ErrorMode::Ignore => {
                        if let Some(suppressed) = self.log.allow("filter_condition_failed") {
                            tracing::warn!(processor = %self.name, error = %e, suppressed, "filter condition failed; treating it as false");
                        }
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        Ok(false)
    }
}

/// What one signal drops, level by level. `item` is the span, metric or log record; `inner`
/// the span event or data point (logs have none).
pub struct Rules {
    pub resource: Conditions,
    pub scope: Conditions,
    pub item: Conditions,
    pub inner: Conditions,
}

impl Rules {
    fn new(name: &Arc<str>, log: &Arc<LogLimiter>) -> Self {
        let empty = || Conditions::new(name.clone(), log.clone());
        Rules {
            resource: empty(),
            scope: empty(),
            item: empty(),
            inner: empty(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.resource.is_empty()
            && self.scope.is_empty()
            && self.item.is_empty()
            && self.inner.is_empty()
    }
}

/// Every signal's rules.
pub struct Program {
    pub traces: Rules,
    pub metrics: Rules,
    pub logs: Rules,
}

impl Program {
    pub fn new(name: &str) -> Self {
        let name: Arc<str> = name.into();
        let log = Arc::new(LogLimiter::new(DEFAULT_LOG_INTERVAL));
        Program {
            traces: Rules::new(&name, &log),
            metrics: Rules::new(&name, &log),
            logs: Rules::new(&name, &log),
        }
    }
}
