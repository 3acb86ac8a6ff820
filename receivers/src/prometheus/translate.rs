//! One scrape's samples to OTLP, by the OTel Collector's rules: counters become cumulative
//! monotonic sums, gauges and untyped metrics gauges, histograms explicit-bucket histograms,
//! summaries summaries; start times come from `_created` (or the first time a series was
//! seen, reset when a counter goes down); `job`/`instance` become the resource;
//! `target_info` and `otel_scope_info` become resource and scope attributes; series that
//! disappear get a point flagged "no recorded value".

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Exemplar as OtlpExemplar, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::relabel::Labels;
use super::text::{Exemplar, Metadata, MetricType, Sample};

/// The scope the OTel Collector's receiver gives its metrics, kept so filters written for it
/// still match.
pub const SCOPE_NAME: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver";

/// What one target remembers between scrapes: start times of cumulative series and the
/// series of the last scrape, for staleness.
#[derive(Default)]
pub struct TargetState {
    starts: HashMap<SeriesKey, (u64, f64)>,
    previous: HashMap<SeriesKey, StaleSeries>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    family: String,
    labels: Labels,
}

/// Enough of a series to write its stale marker.
#[derive(Clone)]
struct StaleSeries {
    /// The metric name the series was sent under (after `trim_metric_suffixes`), so that
    /// the marker lands on the same series downstream.
    name: String,
    kind: MetricType,
    scope: (String, String),
    unit: String,
    help: String,
    explicit_timestamp: bool,
}

pub struct Settings {
    pub trim_metric_suffixes: bool,
    pub track_timestamps_staleness: bool,
    /// `use_start_time_metric`: the metric whose value starts every cumulative series.
    pub start_time_metric: Option<regex::Regex>,
}

/// A scrape's outcome to turn into points.
pub struct Scrape<'a> {
    pub samples: Vec<Sample>,
    pub metadata: &'a HashMap<String, Metadata>,
    /// When the scrape started, nanoseconds since the epoch.
    pub time_ns: u64,
}

/// Translates a successful scrape. `synthetic` are the `up`/`scrape_*` gauges, already with
/// the target's labels. Returns the resource and how many series are new.
pub fn translate(
    state: &mut TargetState,
    settings: &Settings,
    target: &Labels,
    scheme: &str,
    scrape: Scrape<'_>,
    synthetic: &dyn Fn(usize) -> Vec<Sample>,
) -> (ResourceMetrics, usize) {
    let mut resource_attributes = base_resource(target, scheme);
    let mut scope_attributes: HashMap<(String, String), Vec<KeyValue>> = HashMap::new();
    let mut builder = Builder::default();
    let start_time_metric = settings.start_time_metric.as_ref().and_then(|re| {
        scrape
            .samples
            .iter()
            .find(|s| re.is_match(&s.name))
            .map(|s| secs_to_ns(s.value))
    });
    let mut seen: HashMap<SeriesKey, StaleSeries> = HashMap::new();
    for sample in scrape.samples {
        if sample.name == "target_info" {
            for (k, v) in &sample.labels {
                if k != "job" && k != "instance" {
                    resource_attributes.push(kv(k, v));
                }
            }
            continue;
        }
        if sample.name == "otel_scope_info" {
            let scope = scope_of(&sample.labels);
            let attributes = scope_attributes.entry(scope).or_default();
            for (k, v) in &sample.labels {
                if !matches!(
                    k.as_str(),
                    "job" | "instance" | "otel_scope_name" | "otel_scope_version"
                ) {
                    attributes.push(kv(k, v));
                }
            }
            continue;
        }
        builder.add(sample, scrape.metadata);
    }
    let mut new_series = 0;
    let mut scopes: BTreeMap<(String, String), Vec<Metric>> = BTreeMap::new();
    for family in builder.families.into_values() {
        let metric = family.into_metric(
            settings,
            scrape.time_ns,
            start_time_metric,
            &mut state.starts,
            &mut seen,
            &mut new_series,
            &state.previous,
        );
        if let Some((scope, metric)) = metric {
            scopes.entry(scope).or_default().push(metric);
        }
    }
    // Series of the last scrape that are gone get a marker, as Prometheus writes a stale NaN.
    let mut stale = Vec::new();
    for (key, series) in state.previous.drain() {
        if seen.contains_key(&key) {
            continue;
        }
        state.starts.remove(&key);
        if series.explicit_timestamp && !settings.track_timestamps_staleness {
            continue;
        }
        stale.push((key, series));
    }
    for (key, series) in stale {
        let metric = stale_metric(&key, &series, scrape.time_ns);
        scopes.entry(series.scope.clone()).or_default().push(metric);
    }
    state.previous = seen;
    let extra = synthetic(new_series);
    let mut synthetic_builder = Builder::default();
    let metadata = HashMap::new();
    for sample in extra {
        synthetic_builder.add(sample, &metadata);
    }
    let default_scope = (
        SCOPE_NAME.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    for mut family in synthetic_builder.families.into_values() {
        family.unit = synthetic_unit(&family.name);
        family.help = synthetic_help(&family.name).to_string();
        if let Some(metric) = family.gauge(scrape.time_ns) {
            scopes
                .entry(default_scope.clone())
                .or_default()
                .push(metric);
        }
    }
    let resource = ResourceMetrics {
        resource: Some(Resource {
            attributes: resource_attributes,
            ..Default::default()
        }),
        scope_metrics: scopes
            .into_iter()
            .map(|(scope, metrics)| ScopeMetrics {
                scope: Some(InstrumentationScope {
                    attributes: scope_attributes.remove(&scope).unwrap_or_default(),
                    name: scope.0,
                    version: scope.1,
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    (resource, new_series)
}

/// A failed scrape: every series of the last scrape gets its stale marker (Prometheus does
/// the same when a target goes down), then the synthetic gauges with `up` 0.
pub fn failed(
    state: &mut TargetState,
    target: &Labels,
    scheme: &str,
    time_ns: u64,
    synthetic: Vec<Sample>,
) -> ResourceMetrics {
    let mut scopes: BTreeMap<(String, String), Vec<Metric>> = BTreeMap::new();
    for (key, series) in state.previous.drain() {
        scopes
            .entry(series.scope.clone())
            .or_default()
            .push(stale_metric(&key, &series, time_ns));
    }
    state.starts.clear();
    let mut builder = Builder::default();
    let metadata = HashMap::new();
    for sample in synthetic {
        builder.add(sample, &metadata);
    }
    let default_scope = (
        SCOPE_NAME.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    for mut family in builder.families.into_values() {
        family.unit = synthetic_unit(&family.name);
        family.help = synthetic_help(&family.name).to_string();
        if let Some(metric) = family.gauge(time_ns) {
            scopes
                .entry(default_scope.clone())
                .or_default()
                .push(metric);
        }
    }
    ResourceMetrics {
        resource: Some(Resource {
            attributes: base_resource(target, scheme),
            ..Default::default()
        }),
        scope_metrics: scopes
            .into_iter()
            .map(|(scope, metrics)| ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: scope.0,
                    version: scope.1,
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn synthetic_unit(name: &str) -> String {
    match name {
        "scrape_duration_seconds" | "scrape_timeout_seconds" => "seconds".into(),
        "scrape_body_size_bytes" => "bytes".into(),
        _ => String::new(),
    }
}

fn synthetic_help(name: &str) -> &'static str {
    match name {
        "up" => "The scraping was successful",
        "scrape_duration_seconds" => "Duration of the scrape",
        "scrape_samples_scraped" => "The number of samples the target exposed",
        "scrape_samples_post_metric_relabeling" => {
            "The number of samples remaining after metric relabeling was applied"
        }
        "scrape_series_added" => "The approximate number of new series in this scrape",
        "scrape_timeout_seconds" => "The configured scrape timeout for a target",
        "scrape_sample_limit" => "The configured sample limit for a target",
        "scrape_body_size_bytes" => "The uncompressed size of the last scrape response",
        _ => "",
    }
}

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// `service.name` from `job`, `service.instance.id` from `instance`, and the address parts.
fn base_resource(target: &Labels, scheme: &str) -> Vec<KeyValue> {
    let mut attributes = Vec::new();
    let job = super::relabel::get(target, "job").unwrap_or("");
    let instance = super::relabel::get(target, "instance").unwrap_or("");
    attributes.push(kv("service.name", job));
    attributes.push(kv("service.instance.id", instance));
    let (host, port) = split_host_port(instance);
    if !host.is_empty() {
        attributes.push(kv("server.address", host));
    }
    if !port.is_empty() {
        attributes.push(kv("server.port", port));
    }
    attributes.push(kv("url.scheme", scheme));
    attributes
}

fn split_host_port(instance: &str) -> (&str, &str) {
    if let Some(rest) = instance.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':').unwrap_or(""));
    }
    match instance.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port)
        }
        _ => (instance, ""),
    }
}

fn scope_of(labels: &Labels) -> (String, String) {
    let name = super::relabel::get(labels, "otel_scope_name");
    match name {
        Some(name) => (
            name.to_string(),
            super::relabel::get(labels, "otel_scope_version")
                .unwrap_or("")
                .to_string(),
        ),
        None => (
            SCOPE_NAME.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    }
}

pub fn secs_to_ns(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1e9) as u64
    } else {
        0
    }
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// The family a sample belongs to and the part of the family it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Value,
    Bucket,
    Count,
    Sum,
    Created,
}

fn family_of<'m>(
    name: &str,
    metadata: &'m HashMap<String, Metadata>,
) -> (String, Part, Option<&'m Metadata>) {
    if let Some(m) = metadata.get(name) {
        return (name.to_string(), Part::Value, Some(m));
    }
    const SUFFIXES: [(&str, Part); 8] = [
        ("_bucket", Part::Bucket),
        ("_count", Part::Count),
        ("_sum", Part::Sum),
        ("_created", Part::Created),
        ("_total", Part::Value),
        ("_gcount", Part::Count),
        ("_gsum", Part::Sum),
        ("_info", Part::Value),
    ];
    for (suffix, part) in SUFFIXES {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(m) = metadata.get(base)
        {
            let fits = match m.kind {
                MetricType::Histogram | MetricType::GaugeHistogram => part != Part::Value,
                MetricType::Summary => matches!(part, Part::Count | Part::Sum | Part::Created),
                MetricType::Counter => matches!(part, Part::Value | Part::Created),
                MetricType::Info => suffix == "_info",
                _ => false,
            };
            if fits {
                return (base.to_string(), part, Some(m));
            }
        }
    }
    (name.to_string(), Part::Value, None)
}

#[derive(Default)]
struct Builder {
    families: BTreeMap<((String, String), String), Family>,
}

struct Family {
    name: String,
    kind: MetricType,
    unit: String,
    help: String,
    scope: (String, String),
    /// By point labels (without `le`/`quantile`), in order of appearance.
    series: Vec<Series>,
    index: HashMap<Labels, usize>,
}

#[derive(Default)]
struct Series {
    labels: Labels,
    value: Option<f64>,
    count: Option<f64>,
    sum: Option<f64>,
    created: Option<f64>,
    buckets: Vec<(f64, f64)>,
    quantiles: Vec<(f64, f64)>,
    timestamp_ms: Option<i64>,
    exemplars: Vec<Exemplar>,
}

impl Builder {
    fn add(&mut self, sample: Sample, metadata: &HashMap<String, Metadata>) {
        let (family_name, part, meta) = family_of(&sample.name, metadata);
        let kind = meta.map(|m| m.kind).unwrap_or_default();
        let scope = scope_of(&sample.labels);
        let key = (scope.clone(), family_name);
        let family = self.families.entry(key).or_insert_with_key(|key| Family {
            name: key.1.clone(),
            kind,
            unit: meta.map(|m| m.unit.clone()).unwrap_or_default(),
            help: meta.map(|m| m.help.clone()).unwrap_or_default(),
            scope,
            series: Vec::new(),
            index: HashMap::new(),
        });
        let mut bound = None;
        let mut labels = Vec::with_capacity(sample.labels.len());
        for (k, v) in sample.labels {
            match k.as_str() {
                "job" | "instance" | "otel_scope_name" | "otel_scope_version" => {}
                "le" if matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram)
                    && part == Part::Bucket =>
                {
                    bound = super::text::parse_value(&v).ok();
                }
                "quantile" if kind == MetricType::Summary && part == Part::Value => {
                    bound = super::text::parse_value(&v).ok();
                }
                _ => labels.push((k, v)),
            }
        }
        let at = match family.index.get(&labels) {
            Some(&i) => i,
            None => {
                family.series.push(Series {
                    labels: labels.clone(),
                    ..Default::default()
                });
                family.index.insert(labels, family.series.len() - 1);
                family.series.len() - 1
            }
        };
        let series = &mut family.series[at];
        if sample.timestamp_ms.is_some() {
            series.timestamp_ms = sample.timestamp_ms;
        }
        if let Some(e) = sample.exemplar {
            series.exemplars.push(e);
        }
        let v = sample.value;
        match (kind, part) {
            (MetricType::Histogram | MetricType::GaugeHistogram, Part::Bucket) => {
                if let Some(b) = bound {
                    series.buckets.push((b, v));
                }
            }
            (MetricType::Summary, Part::Value) => {
                if let Some(q) = bound {
                    series.quantiles.push((q, v));
                }
            }
            (_, Part::Count) => series.count = Some(v),
            (_, Part::Sum) => series.sum = Some(v),
            (_, Part::Created) => series.created = Some(v),
            _ => series.value = Some(v),
        }
    }
}

const STALE_FLAG: u32 = DataPointFlags::NoRecordedValueMask as u32;

/// Prometheus' stale marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

impl Family {
    fn gauge(self, time_ns: u64) -> Option<Metric> {
        let points: Vec<NumberDataPoint> = self
            .series
            .into_iter()
            .filter_map(|s| {
                let v = s.value?;
                Some(number_point(&s.labels, v, 0, time_ns, &[]))
            })
            .collect();
        (!points.is_empty()).then(|| Metric {
            name: self.name,
            description: self.help,
            unit: self.unit,
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn into_metric(
        self,
        settings: &Settings,
        scrape_ns: u64,
        start_time_metric: Option<u64>,
        starts: &mut HashMap<SeriesKey, (u64, f64)>,
        seen: &mut HashMap<SeriesKey, StaleSeries>,
        new_series: &mut usize,
        previous: &HashMap<SeriesKey, StaleSeries>,
    ) -> Option<((String, String), Metric)> {
        let name = if settings.trim_metric_suffixes {
            trim_suffixes(&self.name, self.kind, &self.unit)
        } else {
            self.name.clone()
        };
        let cumulative = matches!(
            self.kind,
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        );
        let mut gauge_points = Vec::new();
        let mut histogram_points = Vec::new();
        let mut summary_points = Vec::new();
        for s in self.series {
            let time_ns = s.timestamp_ms.map(ms_to_ns).unwrap_or(scrape_ns);
            let key = SeriesKey {
                family: self.name.clone(),
                labels: s.labels.clone(),
            };
            if !previous.contains_key(&key) {
                *new_series += 1;
            }
            seen.insert(
                key.clone(),
                StaleSeries {
                    name: name.clone(),
                    kind: self.kind,
                    scope: self.scope.clone(),
                    unit: self.unit.clone(),
                    help: self.help.clone(),
                    explicit_timestamp: s.timestamp_ms.is_some(),
                },
            );
            // The value that shows a reset: the counter, or a histogram's/summary's count.
            let level = match self.kind {
                MetricType::Counter => s.value,
                _ => s.count,
            };
            let start = if !cumulative {
                0
            } else if let Some(created) = s.created {
                secs_to_ns(created)
            } else if let Some(start) = start_time_metric {
                start
            } else {
                let level = level.unwrap_or(0.0);
                match starts.get_mut(&key) {
                    Some((start, last)) if level >= *last => {
                        *last = level;
                        *start
                    }
                    Some(entry) => {
                        *entry = (time_ns, level);
                        time_ns
                    }
                    None => {
                        starts.insert(key.clone(), (time_ns, level));
                        time_ns
                    }
                }
            };
            match self.kind {
                MetricType::Histogram | MetricType::GaugeHistogram => {
                    histogram_points.push(histogram_point(s, start, time_ns));
                }
                MetricType::Summary => summary_points.push(summary_point(s, start, time_ns)),
                _ => {
                    let Some(v) = s.value else { continue };
                    gauge_points.push(number_point(&s.labels, v, start, time_ns, &s.exemplars));
                }
            }
        }
        let data = match self.kind {
            MetricType::Counter => metric::Data::Sum(Sum {
                data_points: gauge_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
            // Info and state sets are non-monotonic sums upstream.
            MetricType::Info | MetricType::StateSet => metric::Data::Sum(Sum {
                data_points: gauge_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: false,
            }),
            MetricType::Histogram | MetricType::GaugeHistogram => {
                metric::Data::Histogram(Histogram {
                    data_points: histogram_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })
            }
            MetricType::Summary => metric::Data::Summary(Summary {
                data_points: summary_points,
            }),
            MetricType::Gauge | MetricType::Unknown => metric::Data::Gauge(Gauge {
                data_points: gauge_points,
            }),
        };
        Some((
            self.scope,
            Metric {
                name,
                description: self.help,
                unit: self.unit,
                data: Some(data),
                ..Default::default()
            },
        ))
    }
}

fn attributes(labels: &Labels) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| kv(k, v)).collect()
}

fn number_point(
    labels: &Labels,
    value: f64,
    start: u64,
    time_ns: u64,
    exemplars: &[Exemplar],
) -> NumberDataPoint {
    let stale = is_stale(value);
    NumberDataPoint {
        attributes: attributes(labels),
        start_time_unix_nano: start,
        time_unix_nano: time_ns,
        value: (!stale).then_some(number_data_point::Value::AsDouble(value)),
        exemplars: exemplars
            .iter()
            .map(|e| otlp_exemplar(e, time_ns))
            .collect(),
        flags: if stale { STALE_FLAG } else { 0 },
    }
}

fn otlp_exemplar(e: &Exemplar, time_ns: u64) -> OtlpExemplar {
    let mut out = OtlpExemplar {
        time_unix_nano: e.timestamp_ms.map(ms_to_ns).unwrap_or(time_ns),
        value: Some(exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for (k, v) in &e.labels {
        match k.as_str() {
            "trace_id" => out.trace_id = hex::decode(v).unwrap_or_default(),
            "span_id" => out.span_id = hex::decode(v).unwrap_or_default(),
            _ => out.filtered_attributes.push(kv(k, v)),
        }
    }
    out
}

fn histogram_point(mut s: Series, start: u64, time_ns: u64) -> HistogramDataPoint {
    s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let stale = s.count.is_some_and(is_stale) || s.buckets.iter().any(|b| is_stale(b.1));
    if stale {
        return HistogramDataPoint {
            attributes: attributes(&s.labels),
            start_time_unix_nano: start,
            time_unix_nano: time_ns,
            flags: STALE_FLAG,
            ..Default::default()
        };
    }
    let mut bounds = Vec::with_capacity(s.buckets.len());
    let mut counts = Vec::with_capacity(s.buckets.len() + 1);
    let mut last_finite = 0.0;
    for (bound, cumulative) in &s.buckets {
        if bound.is_infinite() && *bound > 0.0 {
            continue;
        }
        counts.push((cumulative - last_finite).max(0.0) as u64);
        last_finite = *cumulative;
        bounds.push(*bound);
    }
    let inf = s
        .buckets
        .last()
        .filter(|b| b.0 == f64::INFINITY)
        .map(|b| b.1);
    let total = s.count.or(inf).unwrap_or(last_finite);
    // The +Inf bucket holds what the finite ones do not.
    counts.push((total - last_finite).max(0.0) as u64);
    let exemplars = s
        .exemplars
        .iter()
        .map(|e| otlp_exemplar(e, time_ns))
        .collect();
    HistogramDataPoint {
        attributes: attributes(&s.labels),
        start_time_unix_nano: start,
        time_unix_nano: time_ns,
        count: total as u64,
        sum: s.sum,
        bucket_counts: counts,
        explicit_bounds: bounds,
        exemplars,
        ..Default::default()
    }
}

fn summary_point(mut s: Series, start: u64, time_ns: u64) -> SummaryDataPoint {
    s.quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
    let stale = s.count.is_some_and(is_stale);
    SummaryDataPoint {
        attributes: attributes(&s.labels),
        start_time_unix_nano: start,
        time_unix_nano: time_ns,
        count: if stale {
            0
        } else {
            s.count.unwrap_or(0.0) as u64
        },
        sum: if stale { 0.0 } else { s.sum.unwrap_or(0.0) },
        quantile_values: if stale {
            Vec::new()
        } else {
            s.quantiles
                .iter()
                .map(|(q, v)| ValueAtQuantile {
                    quantile: *q,
                    value: *v,
                })
                .collect()
        },
        flags: if stale { STALE_FLAG } else { 0 },
    }
}

/// The marker of a series that disappeared: one point flagged "no recorded value".
fn stale_metric(key: &SeriesKey, series: &StaleSeries, time_ns: u64) -> Metric {
    let labels = &key.labels;
    let data = match series.kind {
        MetricType::Histogram | MetricType::GaugeHistogram => metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: attributes(labels),
                time_unix_nano: time_ns,
                flags: STALE_FLAG,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        MetricType::Summary => metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: attributes(labels),
                time_unix_nano: time_ns,
                flags: STALE_FLAG,
                ..Default::default()
            }],
        }),
        kind => {
            let point = NumberDataPoint {
                attributes: attributes(labels),
                time_unix_nano: time_ns,
                flags: STALE_FLAG,
                ..Default::default()
            };
            match kind {
                MetricType::Counter | MetricType::Info | MetricType::StateSet => {
                    metric::Data::Sum(Sum {
                        data_points: vec![point],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: kind == MetricType::Counter,
                    })
                }
                _ => metric::Data::Gauge(Gauge {
                    data_points: vec![point],
                }),
            }
        }
    };
    Metric {
        name: series.name.clone(),
        description: series.help.clone(),
        unit: series.unit.clone(),
        data: Some(data),
        ..Default::default()
    }
}

/// The unit words Prometheus names end with, as the OTel Collector trims them.
const UNIT_WORDS: [&str; 30] = [
    "seconds",
    "milliseconds",
    "microseconds",
    "nanoseconds",
    "minutes",
    "hours",
    "days",
    "bytes",
    "kilobytes",
    "megabytes",
    "gigabytes",
    "terabytes",
    "kibibytes",
    "mebibytes",
    "gibibytes",
    "tebibytes",
    "bits",
    "kilobits",
    "megabits",
    "gigabits",
    "terabits",
    "meters",
    "volts",
    "amperes",
    "joules",
    "watts",
    "grams",
    "celsius",
    "hertz",
    "ratio",
];

/// `trim_metric_suffixes`: `_total` of counters, then the unit word (`singing_duration_seconds_total`
/// → `singing_duration`).
pub fn trim_suffixes(name: &str, kind: MetricType, unit: &str) -> String {
    let mut name = name;
    if kind == MetricType::Counter {
        name = name.strip_suffix("_total").unwrap_or(name);
    }
    if kind == MetricType::Unknown || kind == MetricType::Gauge {
        name = name.strip_suffix("_ratio").unwrap_or(name);
    }
    let unit_word = if unit.is_empty() {
        UNIT_WORDS
            .iter()
            .find(|w| name.ends_with(&format!("_{w}")))
            .copied()
    } else {
        Some(unit)
    };
    if let Some(word) = unit_word
        && let Some(trimmed) = name.strip_suffix(&format!("_{word}"))
        && !trimmed.is_empty()
    {
        name = trimmed;
    }
    name.to_string()
}

/// Series counted for `scrape_series_added` and staleness, for tests.
#[cfg(test)]
pub fn tracked(state: &TargetState) -> std::collections::HashSet<String> {
    state.previous.keys().map(|k| k.family.clone()).collect()
}
