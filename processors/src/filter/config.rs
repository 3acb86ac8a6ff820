//! `processors: filter:` in the OTel Collector's shape, and compiling its conditions.

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Node, Pos};
use sluice_pipeline::decode_config;

use super::eval::{EvalError, Item, eval};
use super::parser::{Expr, ParseError, parse};
use super::paths::Context;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub error_mode: ErrorMode,
    pub traces: TracesConditions,
    pub metrics: MetricsConditions,
    pub logs: LogsConditions,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConditions {
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConditions {
    pub metric: Vec<String>,
    pub datapoint: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConditions {
    pub log_record: Vec<String>,
}

/// What a condition that fails to evaluate (not one that is false) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// Log it and treat the condition as false.
    Ignore,
    /// Fail the whole batch with a permanent error (the OTel Collector's default).
    #[default]
    Propagate,
    /// Treat the condition as false without a word.
    Silent,
}

/// The conditions of one list (ORed), with what to do when one fails to evaluate.
pub struct Conditions {
    pub exprs: Vec<Expr>,
    pub mode: ErrorMode,
    /// The processor's id, for log lines.
    pub name: String,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// True when any condition holds; `Err` only under `propagate`.
    pub fn matches(&self, item: &Item<'_>) -> Result<bool, EvalError> {
        for expr in &self.exprs {
            match eval(expr, item) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => match self.mode {
                    ErrorMode::Propagate => return Err(e),
                    ErrorMode::Ignore => {
                        tracing::warn!(processor = %self.name, error = %e, "filter condition failed; treating it as false");
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        Ok(false)
    }
}

/// Every condition list, compiled.
pub struct Program {
    pub span: Conditions,
    pub spanevent: Conditions,
    pub metric: Conditions,
    pub datapoint: Conditions,
    pub log_record: Conditions,
}

impl Program {
    /// Decodes and compiles the section; every condition that does not parse is reported.
    pub fn build(config: &ComponentConfig) -> Result<Program, ConfigErrors> {
        let cfg: FilterConfig = decode_config(config)?;
        let name = config.id.to_string();
        let mut errors = ConfigErrors::default();
        let mut compile = |section: &str, key: &str, ctx: Context, sources: &[String]| {
            let nodes = config
                .node
                .get_path([section, key])
                .and_then(Node::as_seq)
                .unwrap_or(&[]);
            let mut exprs = Vec::with_capacity(sources.len());
            for (i, src) in sources.iter().enumerate() {
                match parse(src, ctx) {
                    Ok(expr) => exprs.push(expr),
                    Err(e) => errors.push(Diagnostic::new(
                        nodes
                            .get(i)
                            .map(|n| error_pos(n, &e))
                            .or_else(|| Some(config.pos.clone())),
                        format!("{}.{section}.{key}[{i}]", config.path),
                        e.to_string(),
                    )),
                }
            }
            Conditions {
                exprs,
                mode: cfg.error_mode,
                name: name.clone(),
            }
        };
        let program = Program {
            span: compile("traces", "span", Context::Span, &cfg.traces.span),
            spanevent: compile(
                "traces",
                "spanevent",
                Context::SpanEvent,
                &cfg.traces.spanevent,
            ),
            metric: compile("metrics", "metric", Context::Metric, &cfg.metrics.metric),
            datapoint: compile(
                "metrics",
                "datapoint",
                Context::DataPoint,
                &cfg.metrics.datapoint,
            ),
            log_record: compile("logs", "log_record", Context::Log, &cfg.logs.log_record),
        };
        errors.into_result(program)
    }
}

/// The error's place in the file: exact for a plain one-line scalar, whose characters sit in
/// the file as written; quoted and block scalars may hold escapes that shift columns, so
/// those point at the scalar and leave the exact column to the message.
fn error_pos(node: &Node, e: &ParseError) -> Pos {
    let mut pos = node.pos.clone();
    if let Some(s) = node.as_scalar()
        && !s.quoted
        && !s.text.contains('\n')
    {
        pos.col += e.col.saturating_sub(1);
    }
    pos
}
