//! The keys the OTel Collector generates for every scraping receiver (mdatagen's metrics
//! builder config), shared by the receivers that accept them: per metric `enabled`,
//! `attributes` and `aggregation_strategy`; per resource attribute `enabled`,
//! `metrics_include`, `metrics_exclude` and `override_value`. Also the checker that reports
//! problems found in them at their key.

use std::collections::HashSet;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};
use regex::Regex;
use serde::{Deserialize, Deserializer};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Node, Pos};
use sluice_pipeline::config_keys::ConfigWarnings;

/// `metrics: {<name>: {enabled, attributes, aggregation_strategy}}` of one metric.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricSettings {
    /// Emit the metric (default: the metric's own default).
    pub enabled: Option<bool>,
    /// Keep only these data point attributes and merge the points that become alike
    /// (default: every attribute the metric has).
    pub attributes: Option<Vec<String>>,
    /// How merged points combine: `sum` (default for sums), `avg` (default for gauges),
    /// `min`, `max`.
    pub aggregation_strategy: Option<Aggregation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
}

/// `attributes:` / `aggregation_strategy:` of one metric: data points that differ only in the
/// attributes left out are merged into one.
#[derive(Clone, Debug)]
pub struct Regroup {
    /// The attribute keys kept, in the naming in use.
    pub keep: Vec<&'static str>,
    pub strategy: Aggregation,
}

/// Keeps only the attributes `regroup` names and merges the points that become alike.
pub fn regroup_points(points: &mut Vec<NumberDataPoint>, regroup: &Regroup) {
    let mut merged: Vec<(NumberDataPoint, u32)> = Vec::with_capacity(points.len());
    for mut p in points.drain(..) {
        p.attributes
            .retain(|kv| regroup.keep.contains(&kv.key.as_str()));
        let same = merged.iter_mut().find(|(m, _)| {
            m.attributes == p.attributes
                && m.start_time_unix_nano == p.start_time_unix_nano
                && m.time_unix_nano == p.time_unix_nano
        });
        match same {
            Some((m, n)) => {
                m.value = combine(m.value, p.value, regroup.strategy);
                *n += 1;
            }
            None => merged.push((p, 1)),
        }
    }
    for (mut p, n) in merged {
        if regroup.strategy == Aggregation::Avg && n > 1 {
            p.value = match p.value {
                Some(number_data_point::Value::AsInt(i)) => {
                    Some(number_data_point::Value::AsInt(i / i64::from(n)))
                }
                Some(number_data_point::Value::AsDouble(d)) => {
                    Some(number_data_point::Value::AsDouble(d / f64::from(n)))
                }
                None => None,
            };
        }
        points.push(p);
    }
}

fn combine(
    a: Option<number_data_point::Value>,
    b: Option<number_data_point::Value>,
    strategy: Aggregation,
) -> Option<number_data_point::Value> {
    use number_data_point::Value::{AsDouble, AsInt};
    Some(match (a?, b?) {
        (AsInt(x), AsInt(y)) => AsInt(match strategy {
            Aggregation::Sum | Aggregation::Avg => x.saturating_add(y),
            Aggregation::Min => x.min(y),
            Aggregation::Max => x.max(y),
        }),
        (x, y) => {
            let f = |v| match v {
                AsInt(i) => i as f64,
                AsDouble(d) => d,
            };
            let (x, y) = (f(x), f(y));
            AsDouble(match strategy {
                Aggregation::Sum | Aggregation::Avg => x + y,
                Aggregation::Min => x.min(y),
                Aggregation::Max => x.max(y),
            })
        }
    })
}

/// `resource_attributes: {<name>: {...}}` of one resource attribute.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceAttributeSettings {
    /// Put the attribute on the resource (default: the attribute's own default).
    pub enabled: Option<bool>,
    /// Emit only resources whose value of this attribute matches one of these.
    pub metrics_include: Vec<ValueFilter>,
    /// Drop resources whose value of this attribute matches one of these.
    pub metrics_exclude: Vec<ValueFilter>,
    /// A fixed value to report instead of the one read.
    pub override_value: Option<OverrideValue>,
}

/// `{strict: value}` or `{regexp: pattern}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueFilter {
    pub strict: Option<String>,
    pub regexp: Option<String>,
}

/// A scalar of whatever type the attribute has.
#[derive(Clone, Debug, PartialEq)]
pub enum OverrideValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for OverrideValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = OverrideValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Str(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OverrideValue, E> {
                Ok(i64::try_from(v).map_or(OverrideValue::Double(v as f64), OverrideValue::Int))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Double(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Bool(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl OverrideValue {
    fn any_value(&self) -> any_value::Value {
        match self {
            OverrideValue::Str(s) => any_value::Value::StringValue(s.clone()),
            OverrideValue::Int(i) => any_value::Value::IntValue(*i),
            OverrideValue::Double(d) => any_value::Value::DoubleValue(*d),
            OverrideValue::Bool(b) => any_value::Value::BoolValue(*b),
        }
    }
}

/// One resource attribute a receiver can set, under both namings.
#[derive(Clone, Copy, Debug)]
pub struct ResourceAttrDef {
    pub collector: &'static str,
    pub semconv: &'static str,
    pub default_on: bool,
}

impl ResourceAttrDef {
    pub const fn new(collector: &'static str, semconv: &'static str, default_on: bool) -> Self {
        ResourceAttrDef {
            collector,
            semconv,
            default_on,
        }
    }
}

/// Strict values and patterns of `metrics_include` or `metrics_exclude`.
#[derive(Clone, Debug, Default)]
struct ValueMatcher {
    strict: HashSet<String>,
    patterns: Vec<Regex>,
}

impl ValueMatcher {
    fn matches(&self, value: &str) -> bool {
        self.strict.contains(value) || self.patterns.iter().any(|p| p.is_match(value))
    }
}

#[derive(Clone, Debug)]
struct ResourceEntry {
    /// The key emitted, in the naming in use.
    key: &'static str,
    enabled: bool,
    value: Option<OverrideValue>,
}

/// The resource attributes a receiver puts on each resource, and which resources it keeps.
#[derive(Clone, Debug, Default)]
pub struct ResourcePlan {
    entries: Vec<(&'static str, ResourceEntry)>,
    include: Vec<(&'static str, ValueMatcher)>,
    exclude: Vec<(&'static str, ValueMatcher)>,
}

impl ResourcePlan {
    /// Every attribute of `defs` at its default.
    pub fn defaults(defs: &[ResourceAttrDef], semconv: bool) -> Self {
        ResourcePlan {
            entries: defs
                .iter()
                .map(|d| {
                    (
                        d.collector,
                        ResourceEntry {
                            key: if semconv { d.semconv } else { d.collector },
                            enabled: d.default_on,
                            value: None,
                        },
                    )
                })
                .collect(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    fn entry(&self, collector: &str) -> Option<&ResourceEntry> {
        self.entries
            .iter()
            .find(|(name, _)| *name == collector)
            .map(|(_, e)| e)
    }

    /// Whether the attribute (by its Collector name) is put on resources.
    pub fn is_on(&self, collector: &str) -> bool {
        self.entry(collector).is_some_and(|e| e.enabled)
    }

    /// The attribute (by its Collector name) with `value`, or its override; `None` when off.
    pub fn attribute(&self, collector: &str, value: any_value::Value) -> Option<KeyValue> {
        let entry = self.entry(collector).filter(|e| e.enabled)?;
        let value = entry.value.as_ref().map_or(value, OverrideValue::any_value);
        Some(KeyValue {
            key: entry.key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        })
    }

    /// Whether a resource with these attributes is emitted: each `metrics_include` of an
    /// attribute it has must match, no `metrics_exclude` may.
    pub fn keeps(&self, attributes: &[KeyValue]) -> bool {
        let value_of = |collector: &str| -> Option<String> {
            let key = self.entry(collector)?.key;
            let kv = attributes.iter().find(|kv| kv.key == key)?;
            Some(match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                _ => return None,
            })
        };
        self.include
            .iter()
            .all(|(name, m)| value_of(name).is_none_or(|v| m.matches(&v)))
            && !self
                .exclude
                .iter()
                .any(|(name, m)| value_of(name).is_some_and(|v| m.matches(&v)))
    }
}

/// Checks what serde cannot, reporting every problem at its key, and notes the warnings.
pub struct KeyChecker<'a> {
    component: &'a ComponentConfig,
    warnings: &'a ConfigWarnings,
    pub errors: ConfigErrors,
}

impl<'a> KeyChecker<'a> {
    pub fn new(component: &'a ComponentConfig, warnings: &'a ConfigWarnings) -> Self {
        KeyChecker {
            component,
            warnings,
            errors: ConfigErrors::default(),
        }
    }

    fn path(&self, keys: &[&str], index: Option<usize>) -> String {
        let mut path = self.component.path.clone();
        for key in keys {
            path.push('.');
            path.push_str(key);
        }
        if let Some(i) = index {
            path.push_str(&format!("[{i}]"));
        }
        path
    }

    /// The value at `keys` (each one map key, dotted names included), if the file has it.
    pub fn node(&self, keys: &[&str]) -> Option<&'a Node> {
        let mut node = &self.component.node;
        for key in keys {
            node = node.as_map()?.get(key)?;
        }
        Some(node)
    }

    /// Where the deepest of `keys` the file has starts: the key itself when `at_key`, else
    /// its value (or the item `index` of its list).
    fn pos(&self, keys: &[&str], index: Option<usize>, at_key: bool) -> Pos {
        for depth in (1..=keys.len()).rev() {
            let (parents, last) = keys[..depth].split_at(depth - 1);
            let Some((key, value)) = self
                .node(parents)
                .and_then(Node::as_map)
                .and_then(|m| m.get_entry(last[0]))
            else {
                continue;
            };
            if depth == keys.len() {
                if let Some(item) = index.and_then(|i| value.as_seq()?.get(i)) {
                    return item.pos.clone();
                }
                if at_key {
                    return key.pos.clone();
                }
            }
            return value.pos.clone();
        }
        self.component.pos.clone()
    }

    /// A problem with the value at `keys`; `index` names an item of its list.
    pub fn error(&mut self, keys: &[&str], index: Option<usize>, message: impl Into<String>) {
        let pos = self.pos(keys, index, false);
        let path = self.path(keys, index);
        self.errors.push(Diagnostic::new(Some(pos), path, message));
    }

    /// A problem with the key at `keys` itself (an unknown name), with a suggestion.
    pub fn error_at_key(
        &mut self,
        keys: &[&str],
        message: impl Into<String>,
        suggestion: Option<String>,
    ) {
        let pos = self.pos(keys, None, true);
        let path = self.path(keys, None);
        self.errors
            .push(Diagnostic::new(Some(pos), path, message).with_suggestion(suggestion));
    }

    /// A warning about the key at `keys`, shown by `sluice validate` and at start.
    pub fn warn_at_key(&self, keys: &[&str], message: impl Into<String>) {
        let pos = self.pos(keys, None, true);
        self.warnings
            .push(Diagnostic::new(Some(pos), self.path(keys, None), message));
    }

    /// `attributes` / `aggregation_strategy` of the metric at `keys` that declares
    /// `declared` (Collector name, semantic-convention name) attributes; `None` when neither
    /// is set. Names of either naming are accepted; the kept keys are in the naming in use.
    pub fn regroup(
        &mut self,
        keys: &[&str],
        settings: &MetricSettings,
        declared: &[(&'static str, &'static str)],
        semconv: bool,
        default: Aggregation,
    ) -> Option<Regroup> {
        if settings.attributes.is_none() && settings.aggregation_strategy.is_none() {
            return None;
        }
        if declared.is_empty() {
            for key in ["attributes", "aggregation_strategy"] {
                if self.node(&[keys, &[key]].concat()).is_some() {
                    self.error(
                        &[keys, &[key]].concat(),
                        None,
                        "this metric has no data point attributes to re-aggregate over",
                    );
                }
            }
            return None;
        }
        let keep = match &settings.attributes {
            None => declared
                .iter()
                .map(|(c, s)| if semconv { *s } else { *c })
                .collect(),
            Some(names) => {
                let mut keep = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    match declared.iter().find(|(c, s)| c == name || s == name) {
                        Some((c, s)) => keep.push(if semconv { *s } else { *c }),
                        None => {
                            let valid: Vec<&str> = declared.iter().map(|(c, _)| *c).collect();
                            self.error(
                                &[keys, &["attributes"]].concat(),
                                Some(i),
                                format!(
                                    "the metric has no attribute `{name}`; it has: {}",
                                    valid.join(", ")
                                ),
                            );
                        }
                    }
                }
                keep
            }
        };
        Some(Regroup {
            keep,
            strategy: settings.aggregation_strategy.unwrap_or(default),
        })
    }

    /// The resource attributes of `resource_attributes:` (at `keys`) applied to `defs`.
    /// Names of either naming are accepted.
    pub fn resource_attributes(
        &mut self,
        keys: &[&str],
        settings: &std::collections::BTreeMap<String, ResourceAttributeSettings>,
        defs: &[ResourceAttrDef],
        semconv: bool,
    ) -> ResourcePlan {
        let mut plan = ResourcePlan::defaults(defs, semconv);
        for (name, s) in settings {
            let at: Vec<&str> = [keys, &[name.as_str()]].concat();
            let Some(def) = defs
                .iter()
                .find(|d| d.collector == name || d.semconv == name)
            else {
                let known = defs.iter().flat_map(|d| [d.collector, d.semconv]);
                let suggestion = sluice_config::suggest(name, known);
                let listing: Vec<&str> = defs.iter().map(|d| d.collector).collect();
                self.error_at_key(
                    &at,
                    format!(
                        "unknown resource attribute `{name}`; known: {}",
                        listing.join(", ")
                    ),
                    suggestion,
                );
                continue;
            };
            if let Some((_, entry)) = plan.entries.iter_mut().find(|(c, _)| *c == def.collector) {
                if let Some(on) = s.enabled {
                    entry.enabled = on;
                }
                entry.value = s.override_value.clone();
            }
            for (side, filters) in [
                ("metrics_include", &s.metrics_include),
                ("metrics_exclude", &s.metrics_exclude),
            ] {
                if filters.is_empty() {
                    continue;
                }
                let mut matcher = ValueMatcher::default();
                for (i, f) in filters.iter().enumerate() {
                    let side_keys: Vec<&str> = [&at[..], &[side]].concat();
                    match (&f.strict, &f.regexp) {
                        (Some(value), None) => {
                            matcher.strict.insert(value.clone());
                        }
                        (None, Some(pattern)) => match Regex::new(pattern) {
                            Ok(re) => matcher.patterns.push(re),
                            Err(e) => self.error(
                                &side_keys,
                                Some(i),
                                format!("invalid regular expression `{pattern}`: {}", short(&e)),
                            ),
                        },
                        _ => self.error(
                            &side_keys,
                            Some(i),
                            "give exactly one of `strict` and `regexp`",
                        ),
                    }
                }
                let list = if side == "metrics_include" {
                    &mut plan.include
                } else {
                    &mut plan.exclude
                };
                list.push((def.collector, matcher));
            }
        }
        plan
    }
}

/// The last line of a regex parse error (the others draw a caret over the pattern).
pub fn short(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(attrs: &[(&str, &str)], v: i64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v.to_string())),
                    }),
                    ..Default::default()
                })
                .collect(),
            value: Some(number_data_point::Value::AsInt(v)),
            time_unix_nano: 1,
            ..Default::default()
        }
    }

    fn values(points: &[NumberDataPoint]) -> Vec<(Vec<String>, i64)> {
        points
            .iter()
            .map(|p| {
                let Some(number_data_point::Value::AsInt(v)) = p.value else {
                    panic!()
                };
                (p.attributes.iter().map(|kv| kv.key.clone()).collect(), v)
            })
            .collect()
    }

    #[test]
    fn regrouping_merges_points_that_differ_only_in_dropped_attributes() {
        let original = vec![
            point(&[("cpu", "cpu0"), ("state", "user")], 4),
            point(&[("cpu", "cpu1"), ("state", "user")], 6),
            point(&[("cpu", "cpu0"), ("state", "idle")], 10),
        ];
        for (strategy, user) in [
            (Aggregation::Sum, 10),
            (Aggregation::Avg, 5),
            (Aggregation::Min, 4),
            (Aggregation::Max, 6),
        ] {
            let mut points = original.clone();
            regroup_points(
                &mut points,
                &Regroup {
                    keep: vec!["state"],
                    strategy,
                },
            );
            assert_eq!(
                values(&points),
                [
                    (vec!["state".to_string()], user),
                    (vec!["state".into()], 10)
                ],
                "{strategy:?}"
            );
        }
    }
}
