//! `processors: filter:` in the OTel Collector's shape, compiled into a [`Program`]: the OTTL
//! conditions of every form (context-inferred `*_conditions`, the per-context lists under
//! `traces`/`metrics`/`logs`) and the legacy include/exclude blocks, all into the same
//! conditions.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Node, Pos};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect, decode_section};

use super::legacy::{self, LogMatch, MetricMatch, RegexpOptions, SpanMatch};
use super::lexer::{Tok, lex};
use super::parser::{ParseError, parse};
use super::paths::{Context, context_named};
use super::program::{Conditions, ErrorMode, Program};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// What a condition that fails to evaluate does: `ignore` (default, as the OTel
    /// Collector's since v0.153), `silent` or `propagate`. Case-insensitive.
    #[serde(deserialize_with = "error_mode")]
    pub error_mode: ErrorMode,
    /// Conditions on traces whose context (resource, scope, span, spanevent) is inferred
    /// from their paths, or given per group.
    pub trace_conditions: ConditionList,
    /// Conditions on metrics (resource, scope, metric, datapoint).
    pub metric_conditions: ConditionList,
    /// Conditions on logs (resource, scope, log).
    pub log_conditions: ConditionList,
    /// Per-context OTTL conditions on traces.
    pub traces: TracesSection,
    /// Per-context OTTL conditions on metrics, or the legacy include/exclude blocks.
    pub metrics: MetricsSection,
    /// Per-context OTTL conditions on logs, or the legacy include/exclude blocks.
    pub logs: LogsSection,
    /// The legacy include/exclude blocks on spans.
    pub spans: SpansSection,
}

fn error_mode<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorMode, D::Error> {
    let text = String::deserialize(d)?;
    ErrorMode::try_from(text).map_err(de::Error::custom)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesSection {
    /// Resource conditions: a match drops the resource with all its spans.
    pub resource: Vec<String>,
    /// Span conditions: a match drops the span.
    pub span: Vec<String>,
    /// Span event conditions: a match drops the event.
    pub spanevent: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Resource conditions: a match drops the resource with all its metrics.
    pub resource: Vec<String>,
    /// Metric conditions: a match drops the metric.
    pub metric: Vec<String>,
    /// Data point conditions: a match drops the point (a metric left without points goes).
    pub datapoint: Vec<String>,
    /// Legacy: metrics not matching are dropped.
    pub include: Option<MetricMatch>,
    /// Legacy: metrics matching are dropped.
    pub exclude: Option<MetricMatch>,
    /// Cache options of the OTel Collector's regexp matcher (no effect).
    pub regexp: Option<RegexpOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    /// Resource conditions: a match drops the resource with all its log records.
    pub resource: Vec<String>,
    /// Log record conditions: a match drops the record.
    pub log_record: Vec<String>,
    /// Legacy: records not matching are dropped.
    pub include: Option<LogMatch>,
    /// Legacy: records matching are dropped.
    pub exclude: Option<LogMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpansSection {
    /// Legacy: spans not matching are dropped.
    pub include: Option<SpanMatch>,
    /// Legacy: spans matching are dropped.
    pub exclude: Option<SpanMatch>,
}

/// `*_conditions`: a list of conditions (contexts inferred one by one), or of groups.
#[derive(Debug, Default)]
pub struct ConditionList(pub Vec<ConditionEntry>);

impl<'de> Deserialize<'de> for ConditionList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Vec<ConditionEntry>>::deserialize(d).map(|v| ConditionList(v.unwrap_or_default()))
    }
}

#[derive(Debug)]
pub enum ConditionEntry {
    /// A condition whose context is inferred from its paths.
    Flat(String),
    /// A group of conditions with a context (or inferred) and an error mode.
    Group(ContextConditions),
}

impl<'de> Deserialize<'de> for ConditionEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConditionEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a condition or a map with `conditions`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConditionEntry, E> {
                Ok(ConditionEntry::Flat(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ConditionEntry, E> {
                Ok(ConditionEntry::Flat(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ConditionEntry, A::Error> {
                ContextConditions::deserialize(MapAccessDeserializer::new(map))
                    .map(ConditionEntry::Group)
            }
        }
        d.deserialize_any(V)
    }
}

/// One group of `*_conditions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConditions {
    /// `resource`, `scope`, `span`, `spanevent`, `metric`, `datapoint` or `log` (any case);
    /// inferred per condition when not given.
    pub context: Option<String>,
    /// The conditions, ORed.
    pub conditions: Vec<String>,
    /// Overrides the processor's `error_mode` for this group.
    pub error_mode: Option<String>,
}

/// Keys of the OTel Collector's filter that cannot mean anything in sluice.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "spans.*.regexp.cacheenabled",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "spans.*.regexp.cachemaxnumentries",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "metrics.*.regexp.cacheenabled",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "metrics.*.regexp.cachemaxnumentries",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "metrics.regexp.cacheenabled",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "metrics.regexp.cachemaxnumentries",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "profile_conditions",
        "sluice has no profiles signal, so no pipeline carries profiles to filter",
    ),
    NoEffect::new(
        "profiles",
        "sluice has no profiles signal, so no pipeline carries profiles to filter",
    ),
];

/// A step in a key path inside the section.
#[derive(Clone, Copy, Debug)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Problems found after decoding, each placed at its key.
pub struct Problems<'c> {
    config: &'c ComponentConfig,
    pub errors: ConfigErrors,
}

impl<'c> Problems<'c> {
    fn new(config: &'c ComponentConfig) -> Self {
        Problems {
            config,
            errors: ConfigErrors::default(),
        }
    }

    /// The deepest node of `segs` that exists and the full key path.
    fn locate(&self, segs: &[Seg<'_>]) -> (Option<&'c Node>, Pos, String) {
        let mut node = Some(&self.config.node);
        let mut pos = match &self.config.node.value {
            sluice_config::Value::Null => self.config.pos.clone(),
            _ => self.config.node.pos.clone(),
        };
        let mut path = self.config.path.clone();
        for seg in segs {
            match seg {
                Seg::Key(k) => {
                    path.push('.');
                    path.push_str(k);
                    node = node.and_then(|n| n.as_map()).and_then(|m| m.get(k));
                }
                Seg::Index(i) => {
                    path.push_str(&format!("[{i}]"));
                    node = node.and_then(|n| n.as_seq()).and_then(|s| s.get(*i));
                }
            }
            if let Some(n) = node {
                pos = n.pos.clone();
            }
        }
        (node, pos, path)
    }

    pub fn at(&mut self, segs: &[Seg<'_>], message: String) {
        let (_, pos, path) = self.locate(segs);
        self.errors.push(Diagnostic::new(Some(pos), path, message));
    }

    /// A condition that does not parse: exact for a plain one-line scalar, whose characters
    /// sit in the file as written; quoted and block scalars may hold escapes that shift
    /// columns, so those point at the scalar and leave the exact column to the message.
    fn condition(&mut self, segs: &[Seg<'_>], e: &ParseError) {
        let (node, mut pos, path) = self.locate(segs);
        if let Some(s) = node.and_then(Node::as_scalar)
            && !s.quoted
            && !s.text.contains('\n')
        {
            pos.col += e.col.saturating_sub(1);
        }
        self.errors
            .push(Diagnostic::new(Some(pos), path, e.to_string()));
    }
}

/// The signals' condition contexts, as `*_conditions` may name them.
#[derive(Clone, Copy)]
enum SignalKind {
    Traces,
    Metrics,
    Logs,
}

impl SignalKind {
    fn key(self) -> &'static str {
        match self {
            SignalKind::Traces => "trace_conditions",
            SignalKind::Metrics => "metric_conditions",
            SignalKind::Logs => "log_conditions",
        }
    }

    fn contexts(self) -> &'static [Context] {
        match self {
            SignalKind::Traces => &[
                Context::Resource,
                Context::Scope,
                Context::Span,
                Context::SpanEvent,
            ],
            SignalKind::Metrics => &[
                Context::Resource,
                Context::Scope,
                Context::Metric,
                Context::DataPoint,
            ],
            SignalKind::Logs => &[Context::Resource, Context::Scope, Context::Log],
        }
    }

    fn context_names(self) -> String {
        self.contexts()
            .iter()
            .map(|c| match c {
                Context::Log => "log".to_string(),
                c => c.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The context a group names, for `signal`.
fn named_context(name: &str, signal: SignalKind) -> Result<Context, String> {
    let lower = name.to_ascii_lowercase();
    let context = match lower.as_str() {
        "profile" => None,
        other => context_named(other),
    };
    match context {
        Some(c) if signal.contexts().contains(&c) => Ok(c),
        _ => Err(format!(
            "context `{name}` cannot be used in `{}`; use one of {}",
            signal.key(),
            signal.context_names()
        )),
    }
}

/// The context of a condition written with context-qualified paths: the deepest one named.
fn infer_context(src: &str, signal: SignalKind) -> Result<Context, ParseError> {
    let tokens = lex(src)?;
    let mut found: Option<Context> = None;
    for (i, t) in tokens.iter().enumerate() {
        let Tok::Ident(word) = &t.tok else {
            continue;
        };
        let starts_path = tokens.get(i + 1).is_some_and(|n| n.tok == Tok::Dot)
            && (i == 0 || tokens[i - 1].tok != Tok::Dot);
        let Some(ctx) = starts_path.then(|| context_named(word)).flatten() else {
            continue;
        };
        if !signal.contexts().contains(&ctx) {
            return Err(ParseError::new(
                t.col,
                format!(
                    "`{word}.` paths cannot be used in `{}`; contexts here: {}",
                    signal.key(),
                    signal.context_names()
                ),
            ));
        }
        if found.is_none_or(|f| ctx.depth() > f.depth()) {
            found = Some(ctx);
        }
    }
    found.ok_or_else(|| {
        ParseError::new(
            1,
            format!(
                "cannot infer the context of this condition: write its paths with their \
                 context (e.g. `resource.attributes[\"k\"]`, `{}.name`), or give the group a \
                 `context`",
                match signal {
                    SignalKind::Traces => "span",
                    SignalKind::Metrics => "metric",
                    SignalKind::Logs => "log",
                }
            ),
        )
    })
}

/// Where a condition of a context goes in a signal's rules.
fn level(rules: &mut super::program::Rules, ctx: Context) -> &mut Conditions {
    match ctx {
        Context::Resource => &mut rules.resource,
        Context::Scope => &mut rules.scope,
        Context::Span | Context::Metric | Context::Log => &mut rules.item,
        Context::SpanEvent | Context::DataPoint => &mut rules.inner,
    }
}

fn rules(program: &mut Program, signal: SignalKind) -> &mut super::program::Rules {
    match signal {
        SignalKind::Traces => &mut program.traces,
        SignalKind::Metrics => &mut program.metrics,
        SignalKind::Logs => &mut program.logs,
    }
}

/// Compiles one `*_conditions` list into the program.
fn inferred(
    list: &ConditionList,
    signal: SignalKind,
    default_mode: ErrorMode,
    program: &mut Program,
    problems: &mut Problems<'_>,
) {
    let key = signal.key();
    let flat = list.0.iter().any(|e| matches!(e, ConditionEntry::Flat(_)));
    let grouped = list.0.iter().any(|e| matches!(e, ConditionEntry::Group(_)));
    if flat && grouped {
        problems.at(
            &[Seg::Key(key)],
            format!(
                "`{key}` mixes conditions and groups of conditions: write either a list of \
                 conditions, or a list of groups with `conditions`"
            ),
        );
        return;
    }
    for (i, entry) in list.0.iter().enumerate() {
        match entry {
            ConditionEntry::Flat(src) => {
                let at = [Seg::Key(key), Seg::Index(i)];
                let parsed = infer_context(src, signal).and_then(|ctx| Ok((ctx, parse(src, ctx)?)));
                match parsed {
                    Ok((ctx, expr)) => level(rules(program, signal), ctx).push(expr, default_mode),
                    Err(e) => problems.condition(&at, &e),
                }
            }
            ConditionEntry::Group(group) => {
                let mode = match &group.error_mode {
                    None => default_mode,
                    Some(m) => match ErrorMode::try_from(m.clone()) {
                        Ok(m) => m,
                        Err(why) => {
                            problems
                                .at(&[Seg::Key(key), Seg::Index(i), Seg::Key("error_mode")], why);
                            continue;
                        }
                    },
                };
                let context = match &group.context {
                    None => None,
                    Some(name) => match named_context(name, signal) {
                        Ok(c) => Some(c),
                        Err(why) => {
                            problems.at(&[Seg::Key(key), Seg::Index(i), Seg::Key("context")], why);
                            continue;
                        }
                    },
                };
                if group.conditions.is_empty() {
                    problems.at(
                        &[Seg::Key(key), Seg::Index(i)],
                        "the group has no `conditions`".to_string(),
                    );
                }
                for (j, src) in group.conditions.iter().enumerate() {
                    let at = [
                        Seg::Key(key),
                        Seg::Index(i),
                        Seg::Key("conditions"),
                        Seg::Index(j),
                    ];
                    let ctx = match context {
                        Some(c) => Ok(c),
                        None => infer_context(src, signal),
                    };
                    match ctx.and_then(|ctx| Ok((ctx, parse(src, ctx)?))) {
                        Ok((ctx, expr)) => level(rules(program, signal), ctx).push(expr, mode),
                        Err(e) => problems.condition(&at, &e),
                    }
                }
            }
        }
    }
}

/// Compiles one per-context list (`traces.span`, ...) into `into`.
fn listed(
    section: &'static str,
    key: &'static str,
    ctx: Context,
    sources: &[String],
    mode: ErrorMode,
    into: &mut Conditions,
    problems: &mut Problems<'_>,
) {
    for (i, src) in sources.iter().enumerate() {
        match parse(src, ctx) {
            Ok(expr) => into.push(expr, mode),
            Err(e) => problems.condition(&[Seg::Key(section), Seg::Key(key), Seg::Index(i)], &e),
        }
    }
}

/// The settings that cannot be combined, as the OTel Collector refuses them: the first
/// present with any of the others present.
fn exclusive(
    problems: &mut Problems<'_>,
    first: (&str, bool),
    others: &[(&str, bool)],
    message: impl Fn(&str, &[&str]) -> String,
) {
    let clashing: Vec<&str> = others.iter().filter(|o| o.1).map(|o| o.0).collect();
    if first.1 && !clashing.is_empty() {
        let segs: Vec<Seg<'_>> = first.0.split('.').map(Seg::Key).collect();
        problems.at(&segs, message(first.0, &clashing));
    }
}

/// Decodes and compiles the section; every problem is reported at once.
pub fn build(config: &ComponentConfig, warnings: &ConfigWarnings) -> Result<Program, ConfigErrors> {
    let cfg: FilterConfig = decode_section(config, NO_EFFECT, warnings)?;
    let mut problems = Problems::new(config);
    let mode = cfg.error_mode;

    let present = |list: &ConditionList| !list.0.is_empty();
    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inferred_clash = |first: &str, others: &[&str]| {
        format!(
            "cannot use the context-inferred `{first}` together with {} : move those \
             conditions into `{first}`",
            quoted(others)
        )
    };
    exclusive(
        &mut problems,
        ("trace_conditions", present(&cfg.trace_conditions)),
        &[
            ("traces.resource", !cfg.traces.resource.is_empty()),
            ("traces.span", !cfg.traces.span.is_empty()),
            ("traces.spanevent", !cfg.traces.spanevent.is_empty()),
        ],
        inferred_clash,
    );
    exclusive(
        &mut problems,
        ("metric_conditions", present(&cfg.metric_conditions)),
        &[
            ("metrics.resource", !cfg.metrics.resource.is_empty()),
            ("metrics.metric", !cfg.metrics.metric.is_empty()),
            ("metrics.datapoint", !cfg.metrics.datapoint.is_empty()),
            ("metrics.include", cfg.metrics.include.is_some()),
            ("metrics.exclude", cfg.metrics.exclude.is_some()),
        ],
        inferred_clash,
    );
    exclusive(
        &mut problems,
        ("log_conditions", present(&cfg.log_conditions)),
        &[
            ("logs.resource", !cfg.logs.resource.is_empty()),
            ("logs.log_record", !cfg.logs.log_record.is_empty()),
            ("logs.include", cfg.logs.include.is_some()),
            ("logs.exclude", cfg.logs.exclude.is_some()),
        ],
        inferred_clash,
    );
    let legacy_clash = |first: &str, others: &[&str]| {
        format!(
            "cannot use OTTL conditions and the legacy `{first}` block for the same signal \
             at the same time ({}); write the block as conditions",
            quoted(others)
        )
    };
    let spans_legacy = cfg.spans.include.is_some() || cfg.spans.exclude.is_some();
    let metrics_legacy = cfg.metrics.include.is_some() || cfg.metrics.exclude.is_some();
    let logs_legacy = cfg.logs.include.is_some() || cfg.logs.exclude.is_some();
    let which = |inc: bool, section: &'static str| {
        if inc {
            format!("{section}.include")
        } else {
            format!("{section}.exclude")
        }
    };
    let spans_at = which(cfg.spans.include.is_some(), "spans");
    exclusive(
        &mut problems,
        (&spans_at, spans_legacy),
        &[
            ("traces.span", !cfg.traces.span.is_empty()),
            ("traces.spanevent", !cfg.traces.spanevent.is_empty()),
        ],
        legacy_clash,
    );
    let metrics_at = which(cfg.metrics.include.is_some(), "metrics");
    exclusive(
        &mut problems,
        (&metrics_at, metrics_legacy),
        &[
            ("metrics.resource", !cfg.metrics.resource.is_empty()),
            ("metrics.metric", !cfg.metrics.metric.is_empty()),
            ("metrics.datapoint", !cfg.metrics.datapoint.is_empty()),
        ],
        legacy_clash,
    );
    let logs_at = which(cfg.logs.include.is_some(), "logs");
    exclusive(
        &mut problems,
        (&logs_at, logs_legacy),
        &[
            ("logs.resource", !cfg.logs.resource.is_empty()),
            ("logs.log_record", !cfg.logs.log_record.is_empty()),
        ],
        legacy_clash,
    );

    let mut program = Program::new(&config.id.to_string());
    inferred(
        &cfg.trace_conditions,
        SignalKind::Traces,
        mode,
        &mut program,
        &mut problems,
    );
    inferred(
        &cfg.metric_conditions,
        SignalKind::Metrics,
        mode,
        &mut program,
        &mut problems,
    );
    inferred(
        &cfg.log_conditions,
        SignalKind::Logs,
        mode,
        &mut program,
        &mut problems,
    );

    let t = &cfg.traces;
    listed(
        "traces",
        "resource",
        Context::Resource,
        &t.resource,
        mode,
        &mut program.traces.resource,
        &mut problems,
    );
    listed(
        "traces",
        "span",
        Context::Span,
        &t.span,
        mode,
        &mut program.traces.item,
        &mut problems,
    );
    listed(
        "traces",
        "spanevent",
        Context::SpanEvent,
        &t.spanevent,
        mode,
        &mut program.traces.inner,
        &mut problems,
    );
    let m = &cfg.metrics;
    listed(
        "metrics",
        "resource",
        Context::Resource,
        &m.resource,
        mode,
        &mut program.metrics.resource,
        &mut problems,
    );
    listed(
        "metrics",
        "metric",
        Context::Metric,
        &m.metric,
        mode,
        &mut program.metrics.item,
        &mut problems,
    );
    listed(
        "metrics",
        "datapoint",
        Context::DataPoint,
        &m.datapoint,
        mode,
        &mut program.metrics.inner,
        &mut problems,
    );
    let l = &cfg.logs;
    listed(
        "logs",
        "resource",
        Context::Resource,
        &l.resource,
        mode,
        &mut program.logs.resource,
        &mut problems,
    );
    listed(
        "logs",
        "log_record",
        Context::Log,
        &l.log_record,
        mode,
        &mut program.logs.item,
        &mut problems,
    );

    if let Some(expr) = legacy::spans(
        cfg.spans.include.as_ref(),
        cfg.spans.exclude.as_ref(),
        &mut problems,
    ) {
        program.traces.item.push(expr, mode);
    }
    let metric = legacy::metrics(
        cfg.metrics.include.as_ref(),
        cfg.metrics.exclude.as_ref(),
        &mut problems,
    );
    if let Some(expr) = metric.resource {
        program.metrics.resource.push(expr, mode);
    }
    if let Some(expr) = metric.metric {
        program.metrics.item.push(expr, mode);
    }
    if let Some(expr) = legacy::logs(
        cfg.logs.include.as_ref(),
        cfg.logs.exclude.as_ref(),
        &mut problems,
    ) {
        program.logs.item.push(expr, mode);
    }
    problems.errors.into_result(program)
}
