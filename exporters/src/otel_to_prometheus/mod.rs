//! The OTel → Prometheus translation both Prometheus exporters use (the OTel Collector's
//! `pkg/translator/prometheus` rules): metric names with unit and `_total` suffixes, label
//! sanitising, `job`/`instance` from the resource, `target_info`, and resource attributes as
//! labels when asked for.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;

/// `translation_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TranslationStrategy {
    /// Names and labels escaped to `[a-zA-Z0-9_:]`, unit and `_total` suffixes added.
    UnderscoreEscapingWithSuffixes,
    /// Escaped, no suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// UTF-8 names kept, suffixes added.
    #[serde(rename = "NoUTF8EscapingWithSuffixes")]
    NoUtf8EscapingWithSuffixes,
    /// Names and labels as they are.
    NoTranslation,
}

impl TranslationStrategy {
    /// The strategy from `translation_strategy`, else the deprecated `add_metric_suffixes`.
    pub fn resolve(
        strategy: Option<TranslationStrategy>,
        add_metric_suffixes: Option<bool>,
    ) -> Self {
        match (strategy, add_metric_suffixes) {
            (Some(s), _) => s,
            (None, Some(false)) => TranslationStrategy::UnderscoreEscapingWithoutSuffixes,
            _ => TranslationStrategy::UnderscoreEscapingWithSuffixes,
        }
    }

    pub fn suffixes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::NoUtf8EscapingWithSuffixes
        )
    }

    pub fn escapes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::UnderscoreEscapingWithoutSuffixes
        )
    }
}

/// `resource_to_telemetry_conversion`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceToTelemetry {
    /// Put every resource attribute on every series as a label (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Leave out `service.name`, `service.namespace` and `service.instance.id`, which are
    /// already `job` and `instance` (default false).
    #[serde(default)]
    pub exclude_service_attributes: bool,
}

/// `resource_constant_labels`: which resource attributes become labels.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConstantLabels {
    /// These only (empty: every attribute not excluded).
    #[serde(default)]
    pub included: Vec<String>,
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Older spellings, refused upstream here; accepted and read as resource_to_telemetry.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub exclude_service_attributes: Option<bool>,
}

/// How names and resource attributes are translated.
#[derive(Clone, Debug)]
pub struct Translation {
    pub namespace: String,
    pub strategy: TranslationStrategy,
    /// Resource attributes to put on every series, decided per attribute.
    pub resource_labels: ResourceLabels,
    pub scope_labels: bool,
}

#[derive(Clone, Debug, Default)]
pub enum ResourceLabels {
    #[default]
    None,
    All {
        exclude_service: bool,
    },
    Selected {
        included: Vec<String>,
        excluded: Vec<String>,
    },
}

impl ResourceLabels {
    pub fn from_settings(
        to_telemetry: &ResourceToTelemetry,
        constant: Option<&ResourceConstantLabels>,
    ) -> ResourceLabels {
        if let Some(c) = constant {
            if c.enabled == Some(true) {
                return ResourceLabels::All {
                    exclude_service: c.exclude_service_attributes.unwrap_or(false),
                };
            }
            return ResourceLabels::Selected {
                included: c.included.clone(),
                excluded: c.excluded.clone(),
            };
        }
        if to_telemetry.enabled {
            ResourceLabels::All {
                exclude_service: to_telemetry.exclude_service_attributes,
            }
        } else {
            ResourceLabels::None
        }
    }

    fn takes(&self, key: &str) -> bool {
        match self {
            ResourceLabels::None => false,
            ResourceLabels::All { exclude_service } => !(*exclude_service && is_service_key(key)),
            ResourceLabels::Selected { included, excluded } => {
                (included.is_empty() || included.iter().any(|k| k == key))
                    && !excluded.iter().any(|k| k == key)
            }
        }
    }
}

fn is_service_key(key: &str) -> bool {
    matches!(
        key,
        "service.name" | "service.namespace" | "service.instance.id"
    )
}

/// An attribute value as Prometheus label text.
pub fn value_text(value: &Option<AnyValue>) -> String {
    let Some(v) = value.as_ref().and_then(|v| v.value.as_ref()) else {
        return String::new();
    };
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(b) => hex::encode(b),
        any_value::Value::ArrayValue(a) => {
            let items: Vec<String> = a
                .values
                .iter()
                .map(|v| serde_json::Value::String(value_text(&Some(v.clone()))).to_string())
                .collect();
            format!("[{}]", items.join(","))
        }
        any_value::Value::KvlistValue(kv) => {
            let items: BTreeMap<String, String> = kv
                .values
                .iter()
                .map(|k| (k.key.clone(), value_text(&k.value)))
                .collect();
            serde_json::to_string(&items).unwrap_or_default()
        }
        // A reference into a profiles string table: no text outside profiles.
        _ => String::new(),
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attributes.iter().find(|a| a.key == key)
}

/// `job` (`service.namespace/service.name`) and `instance` (`service.instance.id`) of a resource.
pub fn job_and_instance(resource: Option<&Resource>) -> (Option<String>, Option<String>) {
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]);
    let name = attribute(attributes, "service.name").map(|a| value_text(&a.value));
    let namespace = attribute(attributes, "service.namespace").map(|a| value_text(&a.value));
    let job = match (namespace, name) {
        (Some(ns), Some(name)) if !ns.is_empty() => Some(format!("{ns}/{name}")),
        (_, name) => name,
    };
    let instance = attribute(attributes, "service.instance.id").map(|a| value_text(&a.value));
    (job, instance)
}

impl Translation {
    /// A label name as this strategy writes it.
    pub fn label_name(&self, key: &str) -> String {
        if !self.strategy.escapes() {
            return key.to_string();
        }
        sanitize_label(key)
    }

    /// The labels every series of this resource and scope carries (sorted, unique), before
    /// its own attributes: `job`, `instance`, chosen resource attributes, scope labels.
    pub fn base_labels(
        &self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> Vec<(String, String)> {
        let mut labels = BTreeMap::new();
        if let Some(resource) = resource {
            for a in &resource.attributes {
                if self.resource_labels.takes(&a.key) {
                    labels.insert(self.label_name(&a.key), value_text(&a.value));
                }
            }
        }
        let (job, instance) = job_and_instance(resource);
        if let Some(job) = job {
            labels.insert("job".into(), job);
        }
        if let Some(instance) = instance {
            labels.insert("instance".into(), instance);
        }
        if self.scope_labels
            && let Some(scope) = scope
            && !scope.name.is_empty()
        {
            labels.insert("otel_scope_name".into(), scope.name.clone());
            if !scope.version.is_empty() {
                labels.insert("otel_scope_version".into(), scope.version.clone());
            }
        }
        labels.into_iter().collect()
    }

    /// The labels of `target_info` for a resource: every attribute but the ones `job` and
    /// `instance` come from, with `job` and `instance`. None when there is nothing to say.
    pub fn target_info(&self, resource: Option<&Resource>) -> Option<Vec<(String, String)>> {
        let resource = resource?;
        let mut labels = BTreeMap::new();
        for a in &resource.attributes {
            if !is_service_key(&a.key) {
                labels.insert(self.label_name(&a.key), value_text(&a.value));
            }
        }
        if labels.is_empty() {
            return None;
        }
        let (job, instance) = job_and_instance(Some(resource));
        if let Some(job) = job {
            labels.insert("job".into(), job);
        }
        if let Some(instance) = instance {
            labels.insert("instance".into(), instance);
        }
        Some(labels.into_iter().collect())
    }

    /// The metric's Prometheus name (before `_bucket`/`_sum`/`_count`).
    pub fn metric_name(&self, metric: &Metric) -> String {
        let monotonic_sum = matches!(&metric.data, Some(metric::Data::Sum(s)) if s.is_monotonic);
        let gauge = matches!(&metric.data, Some(metric::Data::Gauge(_)));
        build_name(
            &metric.name,
            &metric.unit,
            &self.namespace,
            self.strategy,
            monotonic_sum,
            gauge,
        )
    }
}

/// Builds a name per the OTel Collector's rules. `gauge` is an OTLP gauge only: upstream
/// adds `_ratio` to gauges of unit `1` and to nothing else, since receivers put unit `1` on
/// counts of things (a non-monotonic sum of unit `1` is rarely a ratio).
pub fn build_name(
    name: &str,
    unit: &str,
    namespace: &str,
    strategy: TranslationStrategy,
    monotonic_sum: bool,
    gauge: bool,
) -> String {
    if strategy == TranslationStrategy::NoTranslation {
        return if namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}_{name}")
        };
    }
    let escape = strategy.escapes();
    let mut tokens: Vec<String> = if escape {
        name.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        name.split('_')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    if strategy.suffixes() {
        let (main, per) = unit_words(unit);
        if let Some(main) = main
            && !tokens.iter().any(|t| t == &main)
        {
            tokens.push(main);
        }
        if let Some(per) = per
            && !tokens.iter().any(|t| t == &per)
        {
            tokens.push("per".into());
            tokens.push(per);
        }
        if monotonic_sum {
            tokens.retain(|t| t != "total");
            tokens.push("total".into());
        }
        if gauge && unit == "1" {
            tokens.retain(|t| t != "ratio");
            tokens.push("ratio".into());
        }
    }
    let mut out = tokens.join("_");
    if !namespace.is_empty() {
        out = format!("{namespace}_{out}");
    }
    if escape {
        if out.starts_with(|c: char| c.is_ascii_digit()) {
            out = format!("_{out}");
        }
        if out.is_empty() {
            out = "_".into();
        }
    }
    out
}

/// The words a UCUM unit adds: `s` → `seconds`, `By/s` → (`bytes`, `second`). As upstream,
/// a part holding an annotation in braces (`{packet}`, `By{x}`) adds nothing, and a unit not
/// in the tables adds itself with everything but letters and digits made `_`.
fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let annotated = |part: &str| part.contains(['{', '}']);
    let main = (!main.is_empty() && !annotated(main))
        .then(|| sanitize_token(main_unit(main).unwrap_or(main)));
    let per = per
        .filter(|p| !p.is_empty() && !annotated(p))
        .map(|p| sanitize_token(per_unit(p).unwrap_or(p)));
    (
        main.filter(|m| !m.is_empty()),
        per.filter(|p| !p.is_empty()),
    )
}

/// Runs of characters other than ASCII letters and digits become one `_`, none at the ends.
fn sanitize_token(t: &str) -> String {
    t.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn main_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        // Upstream's table says `tibibytes`, a misspelling its newer releases correct.
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        _ => return None,
    })
}

fn per_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// A label name with every character Prometheus does not allow made `_`; a leading digit gets
/// `key_`, a single leading `_` gets `key`, as the OTel Collector does.
pub fn sanitize_label(key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out = format!("key_{out}");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out = format!("key{out}");
    }
    out
}

/// `le` and `quantile` values as Prometheus writes floats.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        let s = format!("{v}");
        s
    }
}

/// An exponential histogram's buckets as explicit upper bounds and cumulative counts, for
/// destinations that take only classic histograms. Bucket `i` covers (base^i, base^(i+1)].
pub fn exponential_to_explicit(
    scale: i32,
    zero_count: u64,
    positive: Option<(i32, &[u64])>,
    negative: Option<(i32, &[u64])>,
) -> Vec<(f64, u64)> {
    // base^index = 2^(index * 2^-scale), computed in floats: scale and offsets come from the
    // network, and neither `-scale` nor `offset + i` may overflow an i32.
    let step = (-f64::from(scale)).exp2();
    let boundary = |index: i64| (index as f64 * step).exp2();
    let mut out = Vec::new();
    let mut cumulative = 0u64;
    if let Some((offset, counts)) = negative {
        // Most negative first: bucket i covers [-base^(i+1), -base^i).
        for (i, c) in counts.iter().enumerate().rev() {
            cumulative = cumulative.saturating_add(*c);
            out.push((-boundary(i64::from(offset) + i as i64), cumulative));
        }
    }
    cumulative = cumulative.saturating_add(zero_count);
    out.push((0.0, cumulative));
    if let Some((offset, counts)) = positive {
        for (i, c) in counts.iter().enumerate() {
            cumulative = cumulative.saturating_add(*c);
            out.push((boundary(i64::from(offset) + i as i64 + 1), cumulative));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, unit: &str, monotonic: bool, gauge: bool) -> String {
        build_name(
            n,
            unit,
            "",
            TranslationStrategy::UnderscoreEscapingWithSuffixes,
            monotonic,
            gauge,
        )
    }

    #[test]
    fn names_follow_the_collector() {
        assert_eq!(
            name("http.server.duration", "ms", false, false),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            name("system.network.io", "By", true, false),
            "system_network_io_bytes_total"
        );
        assert_eq!(name("requests.total", "1", true, false), "requests_total");
        assert_eq!(
            name("cpu.utilization", "1", false, true),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            name("throughput", "By/s", false, true),
            "throughput_bytes_per_second"
        );
        assert_eq!(name("queue.size", "{items}", false, true), "queue_size");
        assert_eq!(
            name("latency_seconds", "s", false, false),
            "latency_seconds"
        );
        assert_eq!(name("1st", "", false, true), "_1st");
        assert_eq!(
            build_name(
                "a.b",
                "s",
                "ns",
                TranslationStrategy::UnderscoreEscapingWithoutSuffixes,
                true,
                false
            ),
            "ns_a_b"
        );
        assert_eq!(
            build_name(
                "a.b",
                "s",
                "",
                TranslationStrategy::NoTranslation,
                true,
                false
            ),
            "a.b"
        );
    }

    #[test]
    fn ratio_is_for_gauges_only_and_units_follow_upstream() {
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, Sum};
        let tr = Translation {
            namespace: String::new(),
            strategy: TranslationStrategy::UnderscoreEscapingWithSuffixes,
            resource_labels: ResourceLabels::None,
            scope_labels: false,
        };
        let metric = |name: &str, data: metric::Data| Metric {
            name: name.into(),
            unit: "1".into(),
            data: Some(data),
            ..Default::default()
        };
        let updown = metric(
            "system.processes.count",
            metric::Data::Sum(Sum {
                is_monotonic: false,
                ..Default::default()
            }),
        );
        assert_eq!(
            tr.metric_name(&updown),
            "system_processes_count",
            "a non-monotonic sum of unit 1 gets no _ratio"
        );
        let gauge = metric("cpu.utilization", metric::Data::Gauge(Gauge::default()));
        assert_eq!(tr.metric_name(&gauge), "cpu_utilization_ratio");
        let moved = metric("ratio.of.hits", metric::Data::Gauge(Gauge::default()));
        assert_eq!(tr.metric_name(&moved), "of_hits_ratio");
        assert_eq!(
            name("disk.size", "TiBy", false, true),
            "disk_size_tebibytes"
        );
        assert_eq!(
            name("cash", "$", false, true),
            "cash",
            "`$` is no unit word"
        );
        assert_eq!(
            name("net.io", "By{packet}", true, false),
            "net_io_total",
            "an annotated unit part adds nothing"
        );
        assert_eq!(
            name("net.rate", "{packet}/s", false, true),
            "net_rate_per_second"
        );
        assert_eq!(name("odd", "foo..bar", false, true), "odd_foo_bar");
    }

    #[test]
    fn exponential_buckets_with_hostile_scale_and_offsets_do_not_panic() {
        let b = exponential_to_explicit(i32::MIN, 0, Some((i32::MAX, &[1, 1])), None);
        assert_eq!(b.len(), 3);
        assert_eq!(b.last().map(|x| x.1), Some(2));
        let b = exponential_to_explicit(i32::MAX, u64::MAX, Some((0, &[u64::MAX])), None);
        assert_eq!(b.last().map(|x| x.1), Some(u64::MAX), "counts saturate");
    }

    #[test]
    fn labels_are_sanitised() {
        assert_eq!(sanitize_label("http.method"), "http_method");
        assert_eq!(sanitize_label("0abc"), "key_0abc");
        assert_eq!(sanitize_label("_x"), "key_x");
        assert_eq!(sanitize_label("__x"), "__x");
    }

    #[test]
    fn exponential_buckets_become_cumulative_bounds() {
        // Scale 0: base 2; positive offset 0: (1,2], (2,4].
        let b = exponential_to_explicit(0, 1, Some((0, &[2, 3])), None);
        assert_eq!(b, vec![(0.0, 1), (2.0, 3), (4.0, 6)]);
    }
}
