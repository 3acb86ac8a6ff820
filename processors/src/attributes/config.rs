//! The two processors' config sections (the OTel Collector's shape) and their validation into
//! [`Action`]s and a [`Selector`], each error naming the key path and where it was written.

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Pos, SignalKind};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect, decode_section};
use sluice_pipeline::proto::common::v1::any_value;

use super::actions::{Action, Source};
use super::matching::{
    AttrCriterion, Criteria, LibraryCriterion, Patterns, SPAN_KINDS, Selector, SeverityCriterion,
    ValueMatch,
};
use super::value::{ConfigValue, ConvertedType, text};

/// Keys of the OTel Collector's attributes processor that cannot mean anything in sluice.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "*.regexp.cacheenabled",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
    NoEffect::new(
        "*.regexp.cachemaxnumentries",
        "a cache of regular expression results in the Collector; sluice's matcher needs none",
    ),
];

/// `processors: attributes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, applied in order to every selected span, log record or data point.
    /// Required, at least one.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
    /// Only items matching this block are processed. Unset: all.
    #[serde(default)]
    pub include: Option<MatchConfig>,
    /// Items matching this block are not processed. Unset: none excluded.
    #[serde(default)]
    pub exclude: Option<MatchConfig>,
}

/// `processors: resource:`. The OTel Collector calls the list `attributes`; `actions` is
/// accepted too, so a list copied from an `attributes` processor works unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    #[serde(default, alias = "actions")]
    pub attributes: Vec<ActionConfig>,
}

/// One entry of `actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute the action works on.
    #[serde(default)]
    pub key: Option<String>,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract` or `convert`, any case.
    pub action: ActionKind,
    /// The literal value `insert`/`update`/`upsert` write.
    #[serde(default)]
    pub value: Option<ConfigValue>,
    /// The attribute of the same item `insert`/`update`/`upsert` copy.
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// Request metadata (`metadata.<key>`, `auth.<attr>`, `client.address`): refused until
    /// sluice carries it with the data.
    #[serde(default)]
    pub from_context: Option<String>,
    /// `extract`: a regex with named groups over the value; `delete`/`hash`: a regex over keys.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `convert`: `int`, `double` or `string`.
    #[serde(default)]
    pub converted_type: Option<ConvertedType>,
}

/// The action, read case-insensitively as the OTel Collector reads it (`INSERT` works).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
    Extract,
    Convert,
}

impl ActionKind {
    const ALL: [ActionKind; 7] = [
        ActionKind::Insert,
        ActionKind::Update,
        ActionKind::Upsert,
        ActionKind::Delete,
        ActionKind::Hash,
        ActionKind::Extract,
        ActionKind::Convert,
    ];

    fn name(self) -> &'static str {
        match self {
            ActionKind::Insert => "insert",
            ActionKind::Update => "update",
            ActionKind::Upsert => "upsert",
            ActionKind::Delete => "delete",
            ActionKind::Hash => "hash",
            ActionKind::Extract => "extract",
            ActionKind::Convert => "convert",
        }
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ActionKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ActionKind, E> {
                let lower = v.to_ascii_lowercase();
                ActionKind::ALL
                    .into_iter()
                    .find(|a| a.name() == lower)
                    .ok_or_else(|| {
                        let names: Vec<&str> = ActionKind::ALL.iter().map(|a| a.name()).collect();
                        E::unknown_variant(v, Box::leak(names.into_boxed_slice()))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

/// `regexp:` in a match block (a cache of match results in the OTel Collector). Its two keys
/// are warned about and taken out before decoding; anything else in it is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexpOptions {}

/// `log_severity_number` of a match block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityNumberConfig {
    /// The lowest severity number that matches (1..=24; `INFO` style names are accepted too).
    /// Default 0: every record with a severity.
    pub min: Option<SeverityNumber>,
    /// Whether records without a severity (0) match. Default false.
    pub match_undefined: bool,
}

/// A severity number as written: `9` or `INFO`.
#[derive(Debug, Clone, Copy)]
pub struct SeverityNumber(pub i32);

impl<'de> Deserialize<'de> for SeverityNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SeverityNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a severity number from 0 to 24, or a name such as INFO")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SeverityNumber, E> {
                i32::try_from(v)
                    .ok()
                    .filter(|n| (0..=24).contains(n))
                    .map(SeverityNumber)
                    .ok_or_else(|| {
                        E::custom(format!("severity number {v} is not between 0 and 24"))
                    })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SeverityNumber, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeverityNumber, E> {
                severity_named(v)
                    .map(SeverityNumber)
                    .ok_or_else(|| E::custom(format!("'{v}' is not a valid severity")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `TRACE`..`FATAL4` (any case) as the OTLP severity number.
fn severity_named(name: &str) -> Option<i32> {
    const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let upper = name.to_ascii_uppercase();
    let (level, step) = match upper.char_indices().find(|(_, c)| c.is_ascii_digit()) {
        Some((i, _)) => (&upper[..i], upper[i..].parse::<i32>().ok()?),
        None => (upper.as_str(), 1),
    };
    if !(1..=4).contains(&step) || (step == 1 && level.len() != upper.len()) {
        return None;
    }
    let base = LEVELS.iter().position(|l| *l == level)? as i32;
    Some(base * 4 + step)
}

/// `include:` or `exclude:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `strict` (exact) or `regexp` (RE2, unanchored). Needed when names, kinds, bodies,
    /// libraries or attribute values are matched.
    #[serde(default)]
    pub match_type: Option<MatchType>,
    /// Cache options of the OTel Collector's regexp matcher (no effect).
    #[serde(default)]
    pub regexp: Option<RegexpOptions>,
    /// Log records whose severity number is at least `min`.
    #[serde(default)]
    pub log_severity_number: Option<SeverityNumberConfig>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub span_names: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeMatchConfig>,
    #[serde(default)]
    pub resources: Vec<AttributeMatchConfig>,
    #[serde(default)]
    pub log_bodies: Vec<String>,
    #[serde(default)]
    pub log_severity_texts: Vec<String>,
    #[serde(default)]
    pub metric_names: Vec<String>,
    #[serde(default)]
    pub span_kinds: Vec<String>,
    #[serde(default)]
    pub libraries: Vec<LibraryMatchConfig>,
}

/// `{name, version}` in `libraries` of a match block: the instrumentation scope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryMatchConfig {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    Strict,
    Regexp,
}

/// `{key, value}` in `attributes`/`resources` of a match block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatchConfig {
    pub key: String,
    #[serde(default)]
    pub value: Option<ConfigValue>,
}

/// A match property only some signals have, checked once the pipeline's signal is known.
#[derive(Clone, Debug)]
pub struct SignalOnly {
    pub field: &'static str,
    pub signals: &'static [SignalKind],
    pub pos: Pos,
    pub path: String,
}

/// The `attributes` processor's checked settings.
#[derive(Clone, Debug)]
pub struct AttributesSettings {
    pub actions: Vec<Action>,
    pub selector: Selector,
    pub signal_only: Vec<SignalOnly>,
    /// Where `include.resources` / `exclude.resources` were written, for the metrics warning.
    pub resources_at: Vec<(Pos, String)>,
}

impl AttributesSettings {
    /// Errors for match properties the pipeline's signal does not have, as the OTel
    /// Collector refuses them (`span_names` in a logs pipeline would otherwise silently match
    /// nothing). In a metrics pipeline the OTel Collector selects by `metric_names` only and
    /// leaves `resources` out: so does sluice, saying so.
    pub fn check_signal(
        &mut self,
        signal: SignalKind,
        warnings: &ConfigWarnings,
    ) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        for s in self
            .signal_only
            .iter()
            .filter(|s| !s.signals.contains(&signal))
        {
            let names: Vec<&str> = s.signals.iter().map(|s| s.as_str()).collect();
            errors.push(Diagnostic::new(
                Some(s.pos.clone()),
                s.path.clone(),
                format!(
                    "`{}` applies only to {}, and this processor is in a {} pipeline",
                    s.field,
                    names.join(" and "),
                    signal.as_str()
                ),
            ));
        }
        if signal == SignalKind::Metrics {
            for (pos, path) in &self.resources_at {
                warnings.push(Diagnostic::new(
                    Some(pos.clone()),
                    path.clone(),
                    "accepted, has no effect in a metrics pipeline: the attributes processor \
                     selects metrics by `metric_names` only (as the OTel Collector's does)",
                ));
            }
            for c in [&mut self.selector.include, &mut self.selector.exclude]
                .into_iter()
                .flatten()
            {
                c.resources.clear();
            }
        }
        errors.into_result(())
    }
}

/// The metadata key `from_context` names: `metadata.<key>` (or, as upstream still
/// accepts, a bare key) is a request header / gRPC metadata key the receiver kept with
/// `include_metadata`.
fn context_key(text: &str) -> Result<String, String> {
    if text.starts_with("auth.") {
        return Err(
            "`auth.` values come from server authenticators, which sluice does not have yet; \
             use `metadata.<header>`"
                .into(),
        );
    }
    if text == "client.address" {
        return Err(
            "`client.address` is not carried with the data in sluice; use `metadata.<header>` \
             (e.g. `metadata.x-forwarded-for`)"
                .into(),
        );
    }
    let key = text.strip_prefix("metadata.").unwrap_or(text);
    if key.is_empty() {
        return Err("name a metadata key: `metadata.<header>`".into());
    }
    Ok(key.to_ascii_lowercase())
}

/// A step in a key path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Builds diagnostics that point at a place inside the component's section.
struct Errors<'c> {
    config: &'c ComponentConfig,
    list: ConfigErrors,
}

impl<'c> Errors<'c> {
    fn new(config: &'c ComponentConfig) -> Self {
        Errors {
            config,
            list: ConfigErrors::default(),
        }
    }

    /// The position of the deepest node of `segs` that exists, and the full key path.
    fn locate(&self, segs: &[Seg<'_>]) -> (Pos, String) {
        let mut node = Some(&self.config.node);
        let mut pos = match &self.config.node.value {
            // An empty section has no position of its own worth showing; its key does.
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
        (pos, path)
    }

    fn push(&mut self, segs: &[Seg<'_>], message: impl Into<String>) {
        let (pos, path) = self.locate(segs);
        self.list
            .push(Diagnostic::new(Some(pos), path, message.into()));
    }

    fn regex(&mut self, pattern: &str, segs: &[Seg<'_>]) -> Option<Regex> {
        match Regex::new(pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                // The regex crate's message spans several lines (pattern, caret, reason);
                // a diagnostic is one line, and the pattern is already quoted in it.
                let full = e.to_string();
                let reason = full
                    .lines()
                    .rev()
                    .find_map(|l| l.trim().strip_prefix("error: "))
                    .unwrap_or(full.trim());
                self.push(
                    segs,
                    format!("invalid regular expression `{pattern}`: {reason}"),
                );
                None
            }
        }
    }

    fn count(&self) -> usize {
        self.list.len()
    }
}

/// Decodes and checks an `attributes` processor section.
pub fn attributes_settings(
    config: &ComponentConfig,
    warnings: &ConfigWarnings,
) -> Result<AttributesSettings, ConfigErrors> {
    let raw: AttributesConfig = decode_section(config, NO_EFFECT, warnings)?;
    let mut errors = Errors::new(config);
    let actions = compile_actions(&raw.actions, "actions", &mut errors);
    let mut signal_only = Vec::new();
    let mut resources_at = Vec::new();
    let mut block = |m: &MatchConfig, name: &'static str, errors: &mut Errors<'_>| {
        if !m.resources.is_empty() {
            let (pos, path) = errors.locate(&[Seg::Key(name), Seg::Key("resources")]);
            resources_at.push((pos, path));
        }
        compile_criteria(m, name, errors, &mut signal_only)
    };
    let include = raw
        .include
        .as_ref()
        .map(|m| block(m, "include", &mut errors));
    let exclude = raw
        .exclude
        .as_ref()
        .map(|m| block(m, "exclude", &mut errors));
    errors.list.into_result(AttributesSettings {
        actions,
        selector: Selector { include, exclude },
        signal_only,
        resources_at,
    })
}

/// Decodes and checks a `resource` processor section.
pub fn resource_actions(
    config: &ComponentConfig,
    warnings: &ConfigWarnings,
) -> Result<Vec<Action>, ConfigErrors> {
    let raw: ResourceConfig = decode_section(config, &[], warnings)?;
    let list_key = if config
        .node
        .as_map()
        .is_some_and(|m| m.contains_key("actions"))
    {
        "actions"
    } else {
        "attributes"
    };
    let mut errors = Errors::new(config);
    let actions = compile_actions(&raw.attributes, list_key, &mut errors);
    errors.list.into_result(actions)
}

fn compile_actions(list: &[ActionConfig], list_key: &str, errors: &mut Errors<'_>) -> Vec<Action> {
    if list.is_empty() {
        errors.push(
            &[Seg::Key(list_key)],
            format!("no actions: `{list_key}` needs at least one entry"),
        );
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let before = errors.count();
        let at = |field: &'static str| [Seg::Key(list_key), Seg::Index(i), Seg::Key(field)];
        let item = [Seg::Key(list_key), Seg::Index(i)];
        let name = a.action.name();
        let unused = |errors: &mut Errors<'_>, field: &'static str, present: bool| {
            if present {
                errors.push(
                    &at(field),
                    format!("`{field}` is not used by the `{name}` action"),
                );
            }
        };

        let context_key = a
            .from_context
            .as_deref()
            .and_then(|k| match context_key(k) {
                Ok(key) => Some(key),
                Err(why) => {
                    errors.push(&at("from_context"), why);
                    None
                }
            });
        if a.key.as_deref() == Some("") {
            errors.push(&at("key"), "key must not be empty");
        }
        if a.from_attribute.as_deref() == Some("") {
            errors.push(&at("from_attribute"), "from_attribute must not be empty");
        }
        let key = a.key.clone().filter(|k| !k.is_empty());
        let need_key = |errors: &mut Errors<'_>, what: &str| {
            if a.key.is_none() {
                errors.push(
                    &item,
                    format!("the `{name}` action needs `key`: the attribute {what}"),
                );
            }
        };
        let pattern = |errors: &mut Errors<'_>| {
            a.pattern
                .as_deref()
                .and_then(|p| errors.regex(p, &at("pattern")))
        };

        let action = match a.action {
            ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
                need_key(errors, "to set");
                unused(errors, "pattern", a.pattern.is_some());
                unused(errors, "converted_type", a.converted_type.is_some());
                let given = [
                    a.value.is_some(),
                    a.from_attribute.is_some(),
                    a.from_context.is_some(),
                ]
                .iter()
                .filter(|g| **g)
                .count();
                let source = match (&a.value, &a.from_attribute, &context_key) {
                    _ if given > 1 => {
                        // At the second source written.
                        let second = if a.from_context.is_some() {
                            "from_context"
                        } else {
                            "from_attribute"
                        };
                        errors.push(
                            &at(second),
                            "give one of `value`, `from_attribute` and `from_context`, not several",
                        );
                        None
                    }
                    (Some(v), _, _) => Some(Source::Value(v.0.clone())),
                    (_, Some(f), _) => Some(Source::Attribute(f.clone())),
                    (_, _, Some(k)) => Some(Source::Context(k.clone())),
                    // A `from_context` that was refused above: a second error would mislead.
                    _ if a.from_context.is_some() => None,
                    _ => {
                        errors.push(
                            &item,
                            format!(
                                "the `{name}` action needs `value`, `from_attribute` or \
                                 `from_context`: where the new value comes from"
                            ),
                        );
                        None
                    }
                };
                match (key, source) {
                    (Some(key), Some(source)) => Some(match a.action {
                        ActionKind::Insert => Action::Insert { key, source },
                        ActionKind::Update => Action::Update { key, source },
                        _ => Action::Upsert { key, source },
                    }),
                    _ => None,
                }
            }
            ActionKind::Delete | ActionKind::Hash => {
                unused(errors, "value", a.value.is_some());
                unused(errors, "from_attribute", a.from_attribute.is_some());
                unused(errors, "from_context", a.from_context.is_some());
                unused(errors, "converted_type", a.converted_type.is_some());
                if a.key.is_none() && a.pattern.is_none() {
                    errors.push(
                        &item,
                        format!(
                            "the `{name}` action needs `key` or `pattern` (a regular \
                             expression over attribute keys)"
                        ),
                    );
                }
                let pattern = pattern(errors);
                Some(if a.action == ActionKind::Delete {
                    Action::Delete { key, pattern }
                } else {
                    Action::Hash { key, pattern }
                })
            }
            ActionKind::Extract => {
                need_key(errors, "whose value the pattern is matched against");
                unused(errors, "value", a.value.is_some());
                unused(errors, "from_attribute", a.from_attribute.is_some());
                unused(errors, "from_context", a.from_context.is_some());
                unused(errors, "converted_type", a.converted_type.is_some());
                if a.pattern.is_none() {
                    errors.push(
                        &item,
                        "the `extract` action needs `pattern`: a regular expression whose \
                         named groups, e.g. `(?P<name>...)`, become attributes",
                    );
                }
                let regex = pattern(errors);
                if let Some(r) = &regex
                    && r.capture_names().flatten().next().is_none()
                {
                    errors.push(
                        &at("pattern"),
                        "the pattern has no named groups, so `extract` would add nothing; \
                         name each group to extract, e.g. `(?P<name>...)`",
                    );
                }
                match (key, regex) {
                    (Some(key), Some(regex)) => Some(Action::Extract { key, regex }),
                    _ => None,
                }
            }
            ActionKind::Convert => {
                need_key(errors, "to convert");
                unused(errors, "value", a.value.is_some());
                unused(errors, "from_attribute", a.from_attribute.is_some());
                unused(errors, "from_context", a.from_context.is_some());
                unused(errors, "pattern", a.pattern.is_some());
                if a.converted_type.is_none() {
                    errors.push(
                        &item,
                        "the `convert` action needs `converted_type`: `int`, `double` or `string`",
                    );
                }
                match (key, a.converted_type) {
                    (Some(key), Some(to)) => Some(Action::Convert { key, to }),
                    _ => None,
                }
            }
        };
        if errors.count() == before
            && let Some(action) = action
        {
            out.push(action);
        }
    }
    out
}

fn compile_criteria(
    m: &MatchConfig,
    block: &'static str,
    errors: &mut Errors<'_>,
    signal_only: &mut Vec<SignalOnly>,
) -> Criteria {
    let names_given = [
        &m.services,
        &m.span_names,
        &m.span_kinds,
        &m.log_bodies,
        &m.log_severity_texts,
        &m.metric_names,
    ]
    .iter()
    .any(|l| !l.is_empty())
        || !m.libraries.is_empty()
        || m.attributes
            .iter()
            .chain(&m.resources)
            .any(|a| a.value.is_some());
    if m.match_type.is_none() && names_given {
        errors.push(
            &[Seg::Key(block)],
            "missing required key `match_type`: `strict` (exact) or `regexp`, needed to match \
             names, kinds, bodies, libraries or attribute values",
        );
    }
    let regexp = m.match_type == Some(MatchType::Regexp);
    let patterns = |errors: &mut Errors<'_>, field: &'static str, list: &[String]| {
        if list.is_empty() {
            return None;
        }
        Some(if regexp {
            let compiled = list
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    errors.regex(p, &[Seg::Key(block), Seg::Key(field), Seg::Index(i)])
                })
                .collect();
            Patterns::Regexp(compiled)
        } else {
            Patterns::Strict(list.to_vec())
        })
    };
    let mut criteria = Criteria {
        services: patterns(errors, "services", &m.services),
        span_names: patterns(errors, "span_names", &m.span_names),
        log_bodies: patterns(errors, "log_bodies", &m.log_bodies),
        log_severity_texts: patterns(errors, "log_severity_texts", &m.log_severity_texts),
        metric_names: patterns(errors, "metric_names", &m.metric_names),
        span_kinds: patterns(errors, "span_kinds", &m.span_kinds),
        ..Default::default()
    };
    if !regexp {
        // A misspelt kind would silently match nothing.
        let known = SPAN_KINDS.iter().flat_map(|(short, long)| [*short, *long]);
        for (i, kind) in m.span_kinds.iter().enumerate() {
            if !known.clone().any(|k| k == kind) {
                let (pos, path) =
                    errors.locate(&[Seg::Key(block), Seg::Key("span_kinds"), Seg::Index(i)]);
                let names: Vec<&str> = SPAN_KINDS.iter().map(|(short, _)| *short).collect();
                errors.list.push(
                    Diagnostic::new(
                        Some(pos),
                        path,
                        format!(
                            "unknown span kind `{kind}`, expected one of {} (or \
                             `SPAN_KIND_SERVER` style)",
                            names.join(", ")
                        ),
                    )
                    .with_suggestion(sluice_config::suggest(kind, known.clone())),
                );
            }
        }
    }
    for (i, lib) in m.libraries.iter().enumerate() {
        let at = |leaf: &'static str| {
            [
                Seg::Key(block),
                Seg::Key("libraries"),
                Seg::Index(i),
                Seg::Key(leaf),
            ]
        };
        let one = |errors: &mut Errors<'_>, text: &str, leaf: &'static str| {
            if regexp {
                errors
                    .regex(text, &at(leaf))
                    .map(|r| Patterns::Regexp(vec![r]))
            } else {
                Some(Patterns::Strict(vec![text.to_string()]))
            }
        };
        let name = one(errors, &lib.name, "name");
        let version = match lib.version.as_deref() {
            None => Some(None),
            Some(v) => one(errors, v, "version").map(Some),
        };
        if let (Some(name), Some(version)) = (name, version) {
            criteria.libraries.push(LibraryCriterion { name, version });
        }
    }
    if let Some(sev) = &m.log_severity_number {
        criteria.log_severity_number = Some(SeverityCriterion {
            min: sev.min.map_or(0, |n| n.0),
            match_undefined: sev.match_undefined,
        });
    }
    const TRACES: &[SignalKind] = &[SignalKind::Traces];
    const LOGS: &[SignalKind] = &[SignalKind::Logs];
    const METRICS: &[SignalKind] = &[SignalKind::Metrics];
    const TRACES_LOGS: &[SignalKind] = &[SignalKind::Traces, SignalKind::Logs];
    for (field, given, signals) in [
        ("services", !m.services.is_empty(), TRACES),
        ("span_names", !m.span_names.is_empty(), TRACES),
        ("span_kinds", !m.span_kinds.is_empty(), TRACES),
        ("log_bodies", !m.log_bodies.is_empty(), LOGS),
        ("log_severity_texts", !m.log_severity_texts.is_empty(), LOGS),
        ("log_severity_number", m.log_severity_number.is_some(), LOGS),
        ("metric_names", !m.metric_names.is_empty(), METRICS),
        ("attributes", !m.attributes.is_empty(), TRACES_LOGS),
        ("libraries", !m.libraries.is_empty(), TRACES_LOGS),
    ] {
        if given {
            let (pos, path) = errors.locate(&[Seg::Key(block), Seg::Key(field)]);
            signal_only.push(SignalOnly {
                field,
                signals,
                pos,
                path,
            });
        }
    }
    criteria.attributes = attr_criteria(&m.attributes, block, "attributes", regexp, errors);
    criteria.resources = attr_criteria(&m.resources, block, "resources", regexp, errors);

    let empty = [
        &m.services,
        &m.span_names,
        &m.log_bodies,
        &m.log_severity_texts,
        &m.metric_names,
    ]
    .iter()
    .all(|l| l.is_empty())
        && m.attributes.is_empty()
        && m.resources.is_empty()
        && m.span_kinds.is_empty()
        && m.libraries.is_empty()
        && m.log_severity_number.is_none();
    if empty {
        errors.push(
            &[Seg::Key(block)],
            format!(
                "`{block}` has nothing to match on: give at least one of `services`, \
                 `span_names`, `span_kinds`, `attributes`, `resources`, `libraries`, \
                 `log_bodies`, `log_severity_texts`, `log_severity_number`, `metric_names`"
            ),
        );
    }
    criteria
}

fn attr_criteria(
    list: &[AttributeMatchConfig],
    block: &'static str,
    field: &'static str,
    regexp: bool,
    errors: &mut Errors<'_>,
) -> Vec<AttrCriterion> {
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let at = |leaf: &'static str| {
            [
                Seg::Key(block),
                Seg::Key(field),
                Seg::Index(i),
                Seg::Key(leaf),
            ]
        };
        if entry.key.is_empty() {
            errors.push(&at("key"), "key must not be empty");
            continue;
        }
        let value = match &entry.value {
            None => None,
            Some(ConfigValue(v)) if !regexp => Some(ValueMatch::Strict(v.clone())),
            Some(ConfigValue(v)) => match &v.value {
                Some(
                    any_value::Value::ArrayValue(_)
                    | any_value::Value::KvlistValue(_)
                    | any_value::Value::BytesValue(_),
                )
                | None => {
                    errors.push(
                        &at("value"),
                        "with `match_type: regexp` the value must be a regular expression                          (matched against the attribute's text form), not a list or map",
                    );
                    None
                }
                // `value: 200` is read as a number by YAML; its text is the pattern meant.
                Some(_) => errors
                    .regex(&text(Some(v)), &at("value"))
                    .map(ValueMatch::Regexp),
            },
        };
        out.push(AttrCriterion {
            key: entry.key.clone(),
            value,
        });
    }
    out
}
