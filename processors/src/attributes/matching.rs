//! `include`/`exclude`: which items the actions apply to.

use regex::Regex;
use sluice_pipeline::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue};

use super::items::ItemContext;
use super::value::text_cow;

/// Names to compare a property against: any one matching is enough.
#[derive(Clone, Debug)]
pub enum Patterns {
    Strict(Vec<String>),
    /// Unanchored, as the OTel Collector's `regexp` match type is.
    Regexp(Vec<Regex>),
}

impl Patterns {
    fn matches(&self, s: &str) -> bool {
        match self {
            Patterns::Strict(names) => names.iter().any(|n| n == s),
            Patterns::Regexp(res) => res.iter().any(|r| r.is_match(s)),
        }
    }
}

#[derive(Clone, Debug)]
pub enum ValueMatch {
    /// Equal value and type: `200` does not match the string `"200"`.
    Strict(AnyValue),
    /// Against the value's text form, so numbers can be matched too.
    Regexp(Regex),
}

/// One `attributes`/`resources` entry: the key must be present and, if a value is given,
/// match it.
#[derive(Clone, Debug)]
pub struct AttrCriterion {
    pub key: String,
    pub value: Option<ValueMatch>,
}

impl AttrCriterion {
    fn matches(&self, attrs: &[KeyValue]) -> bool {
        attrs
            .iter()
            .filter(|kv| kv.key == self.key)
            .any(|kv| match &self.value {
                None => true,
                Some(ValueMatch::Strict(want)) => kv.value.as_ref() == Some(want),
                Some(ValueMatch::Regexp(re)) => re.is_match(&text_cow(kv.value.as_ref())),
            })
    }
}

/// One `include` or `exclude` block: every property given must match.
#[derive(Clone, Debug, Default)]
pub struct Criteria {
    pub services: Option<Patterns>,
    pub span_names: Option<Patterns>,
    pub span_kinds: Option<Patterns>,
    pub log_bodies: Option<Patterns>,
    pub log_severity_texts: Option<Patterns>,
    pub metric_names: Option<Patterns>,
    pub attributes: Vec<AttrCriterion>,
    pub resources: Vec<AttrCriterion>,
    /// Every one must match the item's instrumentation scope (as the OTel Collector checks
    /// them).
    pub libraries: Vec<LibraryCriterion>,
    pub log_severity_number: Option<SeverityCriterion>,
}

/// `log_severity_number`: at least `min`; records without a severity (0) match only when
/// `match_undefined` says so.
#[derive(Clone, Copy, Debug)]
pub struct SeverityCriterion {
    pub min: i32,
    pub match_undefined: bool,
}

impl SeverityCriterion {
    fn matches(&self, severity: Option<i32>) -> bool {
        match severity {
            None => false,
            Some(0) => self.match_undefined,
            Some(n) => n >= self.min,
        }
    }
}

/// `{name, version}`: the scope's name and, if given, its version.
#[derive(Clone, Debug)]
pub struct LibraryCriterion {
    pub name: Patterns,
    pub version: Option<Patterns>,
}

impl LibraryCriterion {
    fn matches(&self, scope: Option<&InstrumentationScope>) -> bool {
        let (name, version) = scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
        self.name.matches(name) && self.version.as_ref().is_none_or(|v| v.matches(version))
    }
}

/// The proto enum's names, short (`Server`, as the OTel Collector prints them) and long
/// (`SPAN_KIND_SERVER`, as OTLP/JSON and the proto spell them); either may be configured.
pub const SPAN_KINDS: [(&str, &str); 6] = [
    ("Unspecified", "SPAN_KIND_UNSPECIFIED"),
    ("Internal", "SPAN_KIND_INTERNAL"),
    ("Server", "SPAN_KIND_SERVER"),
    ("Client", "SPAN_KIND_CLIENT"),
    ("Producer", "SPAN_KIND_PRODUCER"),
    ("Consumer", "SPAN_KIND_CONSUMER"),
];

fn kind_matches(patterns: &Option<Patterns>, kind: Option<i32>) -> bool {
    let Some(p) = patterns else {
        return true;
    };
    let Some((short, long)) = kind
        .and_then(|k| usize::try_from(k).ok())
        .and_then(|k| SPAN_KINDS.get(k))
    else {
        return false;
    };
    p.matches(short) || p.matches(long)
}

const SERVICE_NAME: &str = "service.name";

fn names_match(patterns: &Option<Patterns>, value: Option<&str>) -> bool {
    match patterns {
        None => true,
        // An item without the property (a span has no body) cannot match a list of them.
        Some(p) => value.is_some_and(|v| p.matches(v)),
    }
}

impl Criteria {
    pub fn matches(&self, ctx: &ItemContext<'_>, attrs: &[KeyValue]) -> bool {
        let service = || {
            ctx.resource
                .iter()
                .find(|kv| kv.key == SERVICE_NAME)
                .map(|kv| text_cow(kv.value.as_ref()))
        };
        let body = || ctx.log_body.map(|b| text_cow(Some(b)));
        // Text forms are built only for properties that are asked about.
        (self.services.is_none() || names_match(&self.services, service().as_deref()))
            && names_match(&self.span_names, ctx.span_name)
            && kind_matches(&self.span_kinds, ctx.span_kind)
            && (self.log_bodies.is_none() || names_match(&self.log_bodies, body().as_deref()))
            && names_match(&self.log_severity_texts, ctx.severity_text)
            && names_match(&self.metric_names, ctx.metric_name)
            && self.attributes.iter().all(|c| c.matches(attrs))
            && self.resources.iter().all(|c| c.matches(ctx.resource))
            && self.libraries.iter().all(|l| l.matches(ctx.scope))
            && self
                .log_severity_number
                .is_none_or(|c| c.matches(ctx.severity_number))
    }
}

/// An item is processed when it matches `include` (if given) and not `exclude` (if given).
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub include: Option<Criteria>,
    pub exclude: Option<Criteria>,
}

impl Selector {
    pub fn selects(&self, ctx: &ItemContext<'_>, attrs: &[KeyValue]) -> bool {
        self.include.as_ref().is_none_or(|c| c.matches(ctx, attrs))
            && !self.exclude.as_ref().is_some_and(|c| c.matches(ctx, attrs))
    }
}
