//! The filter's pre-OTTL `spans`, `metrics` and `logs` include/exclude blocks, compiled into
//! the conditions OTTL is parsed into, so one engine runs both. The matching rules are the OTel
//! Collector's (`internal/filter`):
//!
//! - an item is dropped when `include` is given and does not match, or `exclude` is given and
//!   matches;
//! - inside a block every property given must match; within a list of names any one may
//!   (`strict`: equal; `regexp`: RE2, unanchored), but every `attributes`/`resources` entry
//!   and every `libraries` entry must;
//! - an attribute entry needs the key; with a `value`, `strict` compares type and value (`200`
//!   is not `"200"`) and `regexp` matches the text of string, bool, int and double values
//!   (other types never match);
//! - a span's service is its resource's `service.name`, `<nil-service-name>` when absent.
//!
//! Properties whose upstream meaning depends on a text the data lacks (the service name
//! placeholder, the empty text of an unknown span kind) are resolved here, at compile time,
//! into plain conditions.

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use sluice_pipeline::proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};

use super::config::{Problems, Seg};
use super::exprlang;
use super::lexer::CmpOp;
use super::parser::{Expr, Key, Literal, Operand, Path, ValueType, compile_regex};
use super::paths::Field;

/// `match_type` of a `spans` or `logs` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    Strict,
    Regexp,
}

/// `match_type` of a `metrics` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMatchType {
    Strict,
    Regexp,
    Expr,
}

/// `regexp:` (a cache of match results in the OTel Collector). Its two keys are warned about
/// and taken out before decoding; anything else in it is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexpOptions {}

/// `spans.include` / `spans.exclude`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMatch {
    /// `strict` or `regexp`; needed when names, kinds, libraries or attribute values are
    /// matched. No default.
    pub match_type: Option<MatchType>,
    /// Cache options of the OTel Collector's regexp matcher (no effect).
    pub regexp: Option<RegexpOptions>,
    /// The resource's `service.name` (`<nil-service-name>` when absent); any may match.
    pub services: Vec<String>,
    /// The span name; any may match.
    pub span_names: Vec<String>,
    /// `SPAN_KIND_SERVER` ...; any may match.
    pub span_kinds: Vec<String>,
    /// Span attributes; every entry must match.
    pub attributes: Vec<AttrMatch>,
    /// Resource attributes; every entry must match.
    pub resources: Vec<AttrMatch>,
    /// Instrumentation scopes; every entry must match.
    pub libraries: Vec<LibraryMatch>,
}

/// `metrics.include` / `metrics.exclude`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricMatch {
    /// `strict`, `regexp` (for `metric_names`) or `expr` (for `expressions`). No default.
    pub match_type: Option<MetricMatchType>,
    /// Cache options of the OTel Collector's regexp matcher (no effect).
    pub regexp: Option<RegexpOptions>,
    /// The metric name; any may match. Not read with `match_type: expr`.
    pub metric_names: Vec<String>,
    /// expr-lang expressions over `MetricName`, `MetricType`, `Label(k)`, `HasLabel(k)`,
    /// evaluated per data point; a metric matches when any point satisfies any expression.
    /// Read only with `match_type: expr`.
    pub expressions: Vec<String>,
    /// Resource attributes; every entry must match. Decides for whole resources, before and
    /// apart from the names.
    pub resource_attributes: Vec<AttrMatch>,
}

/// `logs.include` / `logs.exclude`. A block with no property is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogMatch {
    /// `strict` or `regexp`; needed when bodies, severity texts or attribute values are
    /// matched. No default.
    pub match_type: Option<MatchType>,
    /// Resource attributes; every entry must match.
    pub resource_attributes: Vec<AttrMatch>,
    /// Log record attributes; every entry must match.
    pub record_attributes: Vec<AttrMatch>,
    /// The severity text; any may match.
    pub severity_texts: Vec<String>,
    /// A minimum severity number.
    pub severity_number: Option<SeverityMatch>,
    /// The body's text; any may match. `log_bodies` (the attributes processor's name) is
    /// accepted too.
    #[serde(alias = "log_bodies")]
    pub bodies: Vec<String>,
}

/// `severity_number` of a logs block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityMatch {
    /// `TRACE`..`FATAL4` (any case) or `1`..`24`: records at least this severe match. Unset
    /// means 0, so every record with a severity matches.
    pub min: Option<SeverityName>,
    /// Whether records without a severity (0) match. Default false.
    pub match_undefined: bool,
}

/// A severity as written: a name or a number.
#[derive(Debug)]
pub struct SeverityName(String);

impl<'de> Deserialize<'de> for SeverityName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SeverityName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a severity name such as INFO, or a number from 1 to 24")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeverityName, E> {
                Ok(SeverityName(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SeverityName, E> {
                Ok(SeverityName(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SeverityName, E> {
                Ok(SeverityName(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl SeverityName {
    /// The severity number, as the OTel Collector reads the name.
    fn number(&self) -> Option<i64> {
        const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        let upper = self.0.to_ascii_uppercase();
        if let Ok(n) = upper.parse::<i64>() {
            return (1..=24).contains(&n).then_some(n);
        }
        let (level, step) = match upper.char_indices().find(|(_, c)| c.is_ascii_digit()) {
            Some((i, _)) => (&upper[..i], upper[i..].parse::<i64>().ok()?),
            None => (upper.as_str(), 1),
        };
        if !(1..=4).contains(&step) || (step == 1 && level.len() != upper.len()) {
            return None;
        }
        let base = LEVELS.iter().position(|l| *l == level)? as i64;
        Some(base * 4 + step)
    }
}

/// `{key, value}`: the attribute must be there and, with a value, match it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttrMatch {
    pub key: String,
    #[serde(default)]
    pub value: Option<ConfigValue>,
}

/// `{name, version}`: the instrumentation scope's name and, when given, its version (both
/// matched with the block's match type).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryMatch {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// A `value:` as YAML types it (`42` an int, `"42"` a string, lists, maps).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigValue(pub AnyValue);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(ConfigValue)
    }
}

struct ValueVisitor;

fn any(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, list or map")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::BoolValue(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::IntValue(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AnyValue, E> {
        i64::try_from(v)
            .map(|v| any(any_value::Value::IntValue(v)))
            .map_err(|_| E::custom(format!("`{v}` is larger than an attribute integer can be")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::DoubleValue(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::StringValue(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(ConfigValue(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(any(any_value::Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some((key, ConfigValue(v))) = map.next_entry::<String, ConfigValue>()? {
            values.push(KeyValue {
                key,
                value: Some(v),
                ..Default::default()
            });
        }
        Ok(any(any_value::Value::KvlistValue(KeyValueList { values })))
    }
}

// ---- building conditions ----

fn field(field: Field) -> Operand {
    Operand::Path(Path {
        field,
        keys: Vec::new(),
    })
}

fn keyed(field: Field, key: &str) -> Operand {
    Operand::Path(Path {
        field,
        keys: vec![Key::Str(key.to_string())],
    })
}

fn cmp(a: Operand, op: CmpOp, lit: Literal) -> Expr {
    Expr::Cmp(a, op, Operand::Lit(lit))
}

fn is(ty: ValueType, a: Operand) -> Expr {
    Expr::Truth(Operand::IsType(Box::new(a), ty))
}

fn is_match(a: Operand, re: Regex) -> Expr {
    Expr::Truth(Operand::IsMatch(Box::new(a), re))
}

pub fn constant(b: bool) -> Expr {
    Expr::Truth(Operand::Lit(Literal::Bool(b)))
}

/// True when any term is (false for none).
pub fn any_of(mut terms: Vec<Expr>) -> Expr {
    match terms.len() {
        0 => constant(false),
        1 => terms.pop().unwrap_or_else(|| constant(false)),
        _ => Expr::Or(terms),
    }
}

/// True when every term is (true for none).
pub fn all_of(mut terms: Vec<Expr>) -> Expr {
    match terms.len() {
        0 => constant(true),
        1 => terms.pop().unwrap_or_else(|| constant(true)),
        _ => Expr::And(terms),
    }
}

/// Whether the value is one the regexp match type can read as text.
fn has_text(a: impl Fn() -> Operand) -> Expr {
    any_of(vec![
        is(ValueType::String, a()),
        is(ValueType::Bool, a()),
        is(ValueType::Int, a()),
        is(ValueType::Double, a()),
    ])
}

/// `include`/`exclude` into "drop this item": not matching `include`, or matching `exclude`.
fn skip(include: Option<Expr>, exclude: Option<Expr>) -> Option<Expr> {
    let mut terms = Vec::new();
    if let Some(i) = include {
        terms.push(Expr::Not(Box::new(i)));
    }
    terms.extend(exclude);
    (!terms.is_empty()).then(|| any_of(terms))
}

/// The names of one list property, compiled for its match type.
enum Names {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl Names {
    /// Any name matching the operand's text.
    fn condition(&self, a: impl Fn() -> Operand) -> Expr {
        match self {
            Names::Strict(names) => any_of(
                names
                    .iter()
                    .map(|n| cmp(a(), CmpOp::Eq, Literal::Str(n.clone())))
                    .collect(),
            ),
            Names::Regexp(res) => any_of(res.iter().map(|r| is_match(a(), r.clone())).collect()),
        }
    }

    /// Whether the names match `text` (decided here, for texts the data does not hold).
    fn matches_text(&self, text: &str) -> bool {
        match self {
            Names::Strict(names) => names.iter().any(|n| n == text),
            Names::Regexp(res) => res.iter().any(|r| r.is_match(text)),
        }
    }
}

/// Reads a block's list properties for its match type, reporting each problem at its entry.
struct Block<'p, 'c> {
    problems: &'p mut Problems<'c>,
    at: Vec<Seg<'static>>,
    regexp: Option<bool>,
}

impl Block<'_, '_> {
    fn seg(&self, more: &[Seg<'static>]) -> Vec<Seg<'static>> {
        let mut v = self.at.clone();
        v.extend_from_slice(more);
        v
    }

    /// The match type, or an error (once per block) saying it is needed for `what`.
    fn regexp(&mut self, what: &'static str) -> Option<bool> {
        if self.regexp.is_none() {
            let at = self.seg(&[]);
            self.problems.at(
                &at,
                format!("`match_type` is needed to match `{what}`: `strict` (exact) or `regexp`"),
            );
            // Reported once; later properties are read as strict so their own errors show.
            self.regexp = Some(false);
        }
        self.regexp
    }

    fn names(&mut self, key: &'static str, list: &[String]) -> Option<Names> {
        if list.is_empty() {
            return None;
        }
        let regexp = self.regexp(key)?;
        if !regexp {
            return Some(Names::Strict(list.to_vec()));
        }
        let mut res = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            match compile_regex(p) {
                Ok(r) => res.push(r),
                Err(why) => {
                    let at = self.seg(&[Seg::Key(key), Seg::Index(i)]);
                    self.problems
                        .at(&at, format!("invalid regular expression {p:?}: {why}"));
                }
            }
        }
        Some(Names::Regexp(res))
    }

    /// Every entry of an attribute list, on the attributes `map` reads.
    fn attributes(&mut self, key: &'static str, list: &[AttrMatch], map: Field) -> Vec<Expr> {
        let mut out = Vec::with_capacity(list.len());
        let base = self.at.clone();
        for (i, entry) in list.iter().enumerate() {
            let at = |leaf: &'static str| {
                let mut v = base.clone();
                v.extend([Seg::Key(key), Seg::Index(i), Seg::Key(leaf)]);
                v
            };
            if entry.key.is_empty() {
                let at = at("key");
                self.problems
                    .at(&at, "the attribute key must not be empty".to_string());
                continue;
            }
            let a = || keyed(map, &entry.key);
            let value = entry.value.as_ref().and_then(|v| v.0.value.as_ref());
            let Some(value) = value else {
                out.push(cmp(a(), CmpOp::Ne, Literal::Nil));
                continue;
            };
            let Some(regexp) = self.regexp(key) else {
                continue;
            };
            use any_value::Value as V;
            let condition = match (regexp, value) {
                (false, V::StringValue(s)) => cmp(a(), CmpOp::Eq, Literal::Str(s.clone())),
                (false, V::BoolValue(b)) => cmp(a(), CmpOp::Eq, Literal::Bool(*b)),
                // OTTL compares numbers across types; the legacy match does not.
                (false, V::IntValue(n)) => all_of(vec![
                    is(ValueType::Int, a()),
                    cmp(a(), CmpOp::Eq, Literal::Int(*n)),
                ]),
                (false, V::DoubleValue(x)) => all_of(vec![
                    is(ValueType::Double, a()),
                    cmp(a(), CmpOp::Eq, Literal::Double(*x)),
                ]),
                (false, _) => cmp(
                    a(),
                    CmpOp::Eq,
                    Literal::Composite(entry.value.clone().map(|v| v.0).unwrap_or_default()),
                ),
                (true, V::StringValue(p)) => match compile_regex(p) {
                    Ok(re) => all_of(vec![has_text(a), is_match(a(), re)]),
                    Err(why) => {
                        let at = at("value");
                        self.problems
                            .at(&at, format!("invalid regular expression {p:?}: {why}"));
                        continue;
                    }
                },
                (true, _) => {
                    let at = at("value");
                    self.problems.at(
                        &at,
                        format!(
                            "with `match_type: regexp` the value for {:?} must be a string \
                             (a regular expression)",
                            entry.key
                        ),
                    );
                    continue;
                }
            };
            out.push(condition);
        }
        out
    }
}

const NIL_SERVICE_NAME: &str = "<nil-service-name>";

/// The span kinds by number, as the OTel Collector names them.
const SPAN_KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

fn span_block(m: &SpanMatch, block: &'static str, problems: &mut Problems<'_>) -> Expr {
    let mut b = Block {
        problems,
        at: vec![Seg::Key("spans"), Seg::Key(block)],
        regexp: m.match_type.map(|t| t == MatchType::Regexp),
    };
    let nothing = m.services.is_empty()
        && m.span_names.is_empty()
        && m.span_kinds.is_empty()
        && m.attributes.is_empty()
        && m.resources.is_empty()
        && m.libraries.is_empty();
    if nothing {
        let at = b.seg(&[]);
        b.problems.at(
            &at,
            format!(
                "`spans.{block}` has nothing to match on: give at least one of `services`, \
                 `span_names`, `span_kinds`, `attributes`, `resources`, `libraries`"
            ),
        );
    }
    let mut terms = Vec::new();
    if let Some(names) = b.names("services", &m.services) {
        let service = || keyed(Field::ResourceAttributes, "service.name");
        let mut any = vec![names.condition(service)];
        if names.matches_text(NIL_SERVICE_NAME) {
            any.push(cmp(service(), CmpOp::Eq, Literal::Nil));
        }
        terms.push(any_of(any));
    }
    if let Some(names) = b.names("span_names", &m.span_names) {
        terms.push(names.condition(|| field(Field::SpanName)));
    }
    if !m.span_kinds.is_empty() && m.match_type == Some(MatchType::Strict) {
        for (i, kind) in m.span_kinds.iter().enumerate() {
            if !SPAN_KINDS[1..].contains(&kind.as_str()) {
                let at = b.seg(&[Seg::Key("span_kinds"), Seg::Index(i)]);
                b.problems.at(
                    &at,
                    format!(
                        "unknown span kind {kind:?}: with `match_type: strict` it must be one \
                         of {}",
                        SPAN_KINDS[1..].join(", ")
                    ),
                );
            }
        }
    }
    if let Some(names) = b.names("span_kinds", &m.span_kinds) {
        // Matched against the kind's name; a kind outside the enum has the empty name.
        let kind = || field(Field::SpanKind);
        let mut any: Vec<Expr> = (0..SPAN_KINDS.len())
            .filter(|&k| names.matches_text(SPAN_KINDS[k]))
            .map(|k| cmp(kind(), CmpOp::Eq, Literal::Int(k as i64)))
            .collect();
        if names.matches_text("") {
            any.push(cmp(kind(), CmpOp::Lt, Literal::Int(0)));
            any.push(cmp(
                kind(),
                CmpOp::Gt,
                Literal::Int(SPAN_KINDS.len() as i64 - 1),
            ));
        }
        terms.push(any_of(any));
    }
    for (i, lib) in m.libraries.iter().enumerate() {
        let Some(regexp) = b.regexp("libraries") else {
            continue;
        };
        let mut one = |text: &str, leaf: &'static str, f: Field| -> Option<Expr> {
            let names = if regexp {
                match compile_regex(text) {
                    Ok(r) => Names::Regexp(vec![r]),
                    Err(why) => {
                        let at = b.seg(&[Seg::Key("libraries"), Seg::Index(i), Seg::Key(leaf)]);
                        b.problems
                            .at(&at, format!("invalid regular expression {text:?}: {why}"));
                        return None;
                    }
                }
            } else {
                Names::Strict(vec![text.to_string()])
            };
            Some(names.condition(|| field(f)))
        };
        let name = one(&lib.name, "name", Field::ScopeName);
        let version = lib
            .version
            .as_deref()
            .map(|v| one(v, "version", Field::ScopeVersion));
        terms.extend(name);
        if let Some(v) = version {
            terms.extend(v);
        }
    }
    terms.extend(b.attributes("attributes", &m.attributes, Field::SpanAttributes));
    terms.extend(b.attributes("resources", &m.resources, Field::ResourceAttributes));
    all_of(terms)
}

/// `spans.include`/`exclude` as one span condition: true drops the span.
pub fn spans(
    include: Option<&SpanMatch>,
    exclude: Option<&SpanMatch>,
    problems: &mut Problems<'_>,
) -> Option<Expr> {
    let include = include.map(|m| span_block(m, "include", problems));
    let exclude = exclude.map(|m| span_block(m, "exclude", problems));
    skip(include, exclude)
}

fn log_block(m: &LogMatch, block: &'static str, problems: &mut Problems<'_>) -> Option<Expr> {
    let empty = m.resource_attributes.is_empty()
        && m.record_attributes.is_empty()
        && m.severity_texts.is_empty()
        && m.severity_number.is_none()
        && m.bodies.is_empty();
    if empty {
        // As the OTel Collector: a block with nothing to match on is not applied.
        return None;
    }
    let mut b = Block {
        problems,
        at: vec![Seg::Key("logs"), Seg::Key(block)],
        regexp: m.match_type.map(|t| t == MatchType::Regexp),
    };
    let mut terms = Vec::new();
    if let Some(names) = b.names("bodies", &m.bodies) {
        // The body's text; an absent body reads as the empty text.
        let body = || field(Field::LogBody);
        let mut any = vec![match &names {
            Names::Strict(_) => names.condition(body),
            Names::Regexp(_) => all_of(vec![has_text(body), names.condition(body)]),
        }];
        if names.matches_text("") {
            any.push(cmp(body(), CmpOp::Eq, Literal::Nil));
        }
        terms.push(any_of(any));
    }
    if let Some(names) = b.names("severity_texts", &m.severity_texts) {
        terms.push(names.condition(|| field(Field::LogSeverityText)));
    }
    if let Some(sev) = &m.severity_number {
        let min = match &sev.min {
            None => Some(0),
            Some(name) => {
                let n = name.number();
                if n.is_none() {
                    let at = b.seg(&[Seg::Key("severity_number"), Seg::Key("min")]);
                    b.problems.at(
                        &at,
                        format!(
                            "'{}' is not a valid severity: give TRACE, DEBUG, INFO, WARN, \
                             ERROR or FATAL (optionally 2 to 4 after it, e.g. INFO2), or a \
                             number from 1 to 24",
                            name.0
                        ),
                    );
                }
                n
            }
        };
        if let Some(min) = min {
            let number = || field(Field::LogSeverityNumber);
            let undefined = cmp(number(), CmpOp::Eq, Literal::Int(0));
            let at_least = all_of(vec![
                cmp(number(), CmpOp::Ne, Literal::Int(0)),
                cmp(number(), CmpOp::Ge, Literal::Int(min)),
            ]);
            terms.push(if sev.match_undefined {
                any_of(vec![undefined, at_least])
            } else {
                at_least
            });
        }
    }
    terms.extend(b.attributes(
        "record_attributes",
        &m.record_attributes,
        Field::LogAttributes,
    ));
    terms.extend(b.attributes(
        "resource_attributes",
        &m.resource_attributes,
        Field::ResourceAttributes,
    ));
    Some(all_of(terms))
}

/// `logs.include`/`exclude` as one log record condition: true drops the record.
pub fn logs(
    include: Option<&LogMatch>,
    exclude: Option<&LogMatch>,
    problems: &mut Problems<'_>,
) -> Option<Expr> {
    let include = include.and_then(|m| log_block(m, "include", problems));
    let exclude = exclude.and_then(|m| log_block(m, "exclude", problems));
    skip(include, exclude)
}

/// One metrics block: the resource condition (from `resource_attributes`) and the metric
/// condition (from names or expressions), each absent when the block has nothing for it.
fn metric_block(
    m: &MetricMatch,
    block: &'static str,
    problems: &mut Problems<'_>,
) -> (Option<Expr>, Option<Expr>) {
    let match_type = m.match_type;
    let mut b = Block {
        problems,
        at: vec![Seg::Key("metrics"), Seg::Key(block)],
        regexp: match match_type {
            Some(MetricMatchType::Regexp) => Some(true),
            Some(MetricMatchType::Strict) => Some(false),
            Some(MetricMatchType::Expr) | None => None,
        },
    };
    let metric = if match_type == Some(MetricMatchType::Expr) {
        let mut exprs = Vec::new();
        for (i, src) in m.expressions.iter().enumerate() {
            match exprlang::compile(src) {
                Ok(e) => exprs.push(e),
                Err(why) => {
                    let at = b.seg(&[Seg::Key("expressions"), Seg::Index(i)]);
                    b.problems.at(&at, why);
                }
            }
        }
        (!m.expressions.is_empty())
            .then(|| Expr::Truth(Operand::AnyDataPoint(Box::new(any_of(exprs)))))
    } else {
        b.names("metric_names", &m.metric_names)
            .map(|names| names.condition(|| field(Field::MetricName)))
    };
    let resource = if m.resource_attributes.is_empty() {
        None
    } else {
        let with_values = m.resource_attributes.iter().any(|a| a.value.is_some());
        if with_values && match_type == Some(MetricMatchType::Expr) {
            let at = b.seg(&[Seg::Key("match_type")]);
            b.problems.at(
                &at,
                "`resource_attributes` with values are matched `strict` or `regexp`, not \
                 `expr`"
                    .to_string(),
            );
            b.regexp = Some(false);
        }
        Some(all_of(b.attributes(
            "resource_attributes",
            &m.resource_attributes,
            Field::ResourceAttributes,
        )))
    };
    (resource, metric)
}

/// The conditions `metrics.include`/`exclude` make: one on resources (their
/// `resource_attributes` decide for all metrics of a resource) and one on metrics.
pub struct MetricConditions {
    pub resource: Option<Expr>,
    pub metric: Option<Expr>,
}

pub fn metrics(
    include: Option<&MetricMatch>,
    exclude: Option<&MetricMatch>,
    problems: &mut Problems<'_>,
) -> MetricConditions {
    let (inc_res, inc_metric) = include
        .map(|m| metric_block(m, "include", problems))
        .unwrap_or_default();
    let (exc_res, exc_metric) = exclude
        .map(|m| metric_block(m, "exclude", problems))
        .unwrap_or_default();
    MetricConditions {
        resource: skip(inc_res, exc_res),
        metric: skip(inc_metric, exc_metric),
    }
}

#[cfg(test)]
mod tests {
    use super::SeverityName;

    #[test]
    fn severity_names_and_numbers() {
        let n = |s: &str| SeverityName(s.to_string()).number();
        assert_eq!(n("TRACE"), Some(1));
        assert_eq!(n("debug"), Some(5));
        assert_eq!(n("Info"), Some(9));
        assert_eq!(n("INFO2"), Some(10));
        assert_eq!(n("WARN4"), Some(16));
        assert_eq!(n("error3"), Some(19));
        assert_eq!(n("FATAL4"), Some(24));
        assert_eq!(n("9"), Some(9));
        assert_eq!(n("24"), Some(24));
        for bad in ["0", "25", "INFO5", "INFO1", "VERBOSE", "", "INFO0"] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
