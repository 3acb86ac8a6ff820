//! Turning spans into call counts, duration histograms and event counts, and those into OTLP
//! metrics, as the OTel Collector's spanmetrics connector does: one output resource per input
//! resource (told apart by its attributes, or by `resource_metrics_key_attributes`), one
//! series per distinct set of dimension values, per metric.
//!
//! Kept free of timers and clocks (callers pass `now`) so it can be tested exactly.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_pipeline::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use sluice_pipeline::proto::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram as OtlpExponentialHistogram, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar,
    metric::Data, number_data_point,
};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::{ResourceSpans, Span, span::SpanKind, status::StatusCode};

use super::config::{DimensionRule, Settings, Temporality};
use super::exponential::ExponentialHistogram;
use super::sampling::{Rounding, adjusted_count};

pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";
/// The scope of the metrics produced, as the OTel Collector names it.
pub const SCOPE_NAME: &str = "spanmetricsconnector";
pub const COLLECTOR_INSTANCE_ID: &str = "collector.instance.id";
const SCOPE_NAME_KEY: &str = "span.instrumentation.scope.name";
const SCOPE_VERSION_KEY: &str = "span.instrumentation.scope.version";
const SAMPLING_METHOD_KEY: &str = "sampling.method";

/// The most series sluice keeps over all resources and metrics when
/// `aggregation_cardinality_limit` sets none: beyond it, new series are counted in their
/// resource's overflow series. It bounds memory against runaway cardinality; it is far above
/// what a backend would accept, so it changes nothing for a sane configuration.
pub const SERIES_SAFETY_BOUND: usize = 1_000_000;

/// The key of the overflow series: no encoded attribute list starts with a 0 byte.
const OVERFLOW_KEY: &str = "\0overflow";

#[derive(Clone, Debug)]
struct SpanExemplar {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    value: f64,
}

#[derive(Clone, Debug)]
enum Buckets {
    Explicit {
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
    Exponential(ExponentialHistogram),
}

#[derive(Clone, Debug)]
struct Series<P> {
    attributes: Vec<KeyValue>,
    /// When the series began counting (the arrival of its first span).
    start: u64,
    last_seen: u64,
    exemplars: Vec<SpanExemplar>,
    /// Cumulative sums report 0 at their first flush, as the OTel Collector's do, so that
    /// rate functions see the series start from zero.
    first: bool,
    point: P,
}

/// The series of one metric of one resource.
#[derive(Clone, Debug)]
struct SeriesMap<P> {
    map: HashMap<String, Series<P>>,
}

impl<P> Default for SeriesMap<P> {
    fn default() -> Self {
        SeriesMap {
            map: HashMap::new(),
        }
    }
}

/// What a new series needs to know to be created.
struct NewSeries<'a, P> {
    key: String,
    attributes: &'a dyn Fn() -> Vec<KeyValue>,
    point: &'a dyn Fn() -> P,
    now: u64,
}

impl<P> SeriesMap<P> {
    /// The series of `key`; a new one when there is room, else the overflow series. The
    /// flag says whether it was the overflow.
    fn get_or_create(
        &mut self,
        new: NewSeries<'_, P>,
        limit: usize,
        room: &mut Room,
    ) -> (&mut Series<P>, bool) {
        let exists = self.map.contains_key(&new.key);
        let full = (limit > 0 && self.map.len() >= limit) || room.total >= SERIES_SAFETY_BOUND;
        let (key, overflow) = if exists || !full {
            (new.key, false)
        } else {
            (OVERFLOW_KEY.to_string(), true)
        };
        if !self.map.contains_key(&key) {
            room.total += 1;
        }
        let series = self.map.entry(key).or_insert_with(|| Series {
            attributes: if overflow {
                vec![KeyValue {
                    key: OVERFLOW_ATTRIBUTE.into(),
                    value: Some(AnyValue {
                        value: Some(Value::BoolValue(true)),
                    }),
                    ..Default::default()
                }]
            } else {
                (new.attributes)()
            },
            start: new.now,
            last_seen: new.now,
            exemplars: Vec::new(),
            first: true,
            point: (new.point)(),
        });
        series.last_seen = new.now;
        (series, overflow)
    }

    fn sorted(&self) -> Vec<(&String, &Series<P>)> {
        let mut all: Vec<_> = self.map.iter().collect();
        // Stable output order makes files and tests reproducible.
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

#[derive(Clone, Debug, Default)]
struct ResourceState {
    attributes: Vec<KeyValue>,
    calls: SeriesMap<u64>,
    durations: SeriesMap<Buckets>,
    events: SeriesMap<u64>,
    last_seen: u64,
    /// Recency for the resource cache.
    used: u64,
}

impl ResourceState {
    fn series(&self) -> usize {
        self.calls.map.len() + self.durations.map.len() + self.events.map.len()
    }
}

/// How many series exist, against [`SERIES_SAFETY_BOUND`].
#[derive(Default)]
struct Room {
    total: usize,
}

pub struct Aggregator {
    s: Arc<Settings>,
    instance_id: String,
    resources: HashMap<String, ResourceState>,
    /// Resources pushed out of the cache since the last flush: still sent once, and brought
    /// back if their spans come again before.
    evicted: HashMap<String, ResourceState>,
    /// Delta: each series' last flush, the start of its next point, with its recency.
    last_flush: HashMap<(String, String), (u64, u64)>,
    tick: u64,
    room: Room,
    rounding: Rounding,
}

/// What one `add` did, for self-metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Added {
    pub spans: u64,
    pub overflowed: u64,
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// A series key: the attributes with their types, so `200` and `"200"` differ.
fn encode(attrs: &[KeyValue], out: &mut String) {
    use std::fmt::Write;
    for kv in attrs {
        out.push_str(&kv.key);
        out.push('\u{1f}');
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => {
                out.push('s');
                out.push_str(s);
            }
            other => {
                let _ = write!(out, "{other:?}");
            }
        }
        out.push('\u{1e}');
    }
}

/// The resource key: its attributes (only `keys` when given), in key order.
fn resource_key(attrs: &[KeyValue], keys: &[String]) -> String {
    let mut kept: Vec<&KeyValue> = attrs
        .iter()
        .filter(|kv| keys.is_empty() || keys.contains(&kv.key))
        .collect();
    kept.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = String::new();
    for kv in kept {
        encode(std::slice::from_ref(kv), &mut out);
    }
    out
}

fn kind_name(kind: i32) -> &'static str {
    SpanKind::try_from(kind).map_or("", |k| k.as_str_name())
}

fn status_name(code: i32) -> &'static str {
    StatusCode::try_from(code).map_or("", |c| c.as_str_name())
}

/// Appends the dimensions `rules` find, looking in `sources` in order.
fn push_dimensions(out: &mut Vec<KeyValue>, rules: &[DimensionRule], sources: &[&[KeyValue]]) {
    for rule in rules {
        match rule {
            DimensionRule::Named { name, default } => {
                let found = sources.iter().find_map(|s| find(s, name));
                if let Some(kv) = found {
                    out.push(KeyValue {
                        key: name.clone(),
                        value: kv.value.clone(),
                        ..Default::default()
                    });
                } else if let Some(d) = default {
                    out.push(string_kv(name, d));
                }
            }
            DimensionRule::Glob(re) => {
                let mut keys: Vec<&str> = sources
                    .iter()
                    .flat_map(|s| s.iter())
                    .map(|kv| kv.key.as_str())
                    .filter(|k| re.is_match(k))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                for key in keys {
                    if find(out, key).is_some() {
                        continue;
                    }
                    if let Some(kv) = sources.iter().find_map(|s| find(s, key)) {
                        out.push(kv.clone());
                    }
                }
            }
        }
    }
}

impl Aggregator {
    pub fn new(s: Settings, instance_id: String) -> Self {
        Aggregator {
            s: Arc::new(s),
            instance_id,
            resources: HashMap::new(),
            evicted: HashMap::new(),
            last_flush: HashMap::new(),
            tick: 0,
            room: Room::default(),
            rounding: Rounding::new(),
        }
    }

    fn excluded(&self, dimension: &str) -> bool {
        self.s.raw.exclude_dimensions.iter().any(|d| d == dimension)
    }

    /// The default dimensions of a span.
    fn defaults(&self, service: &str, span: &Span) -> Vec<KeyValue> {
        let mut out = Vec::with_capacity(8);
        let status = span.status.as_ref().map_or(0, |s| s.code);
        for (key, value) in [
            ("service.name", service),
            ("span.name", span.name.as_str()),
            ("span.kind", kind_name(span.kind)),
            ("status.code", status_name(status)),
            (COLLECTOR_INSTANCE_ID, self.instance_id.as_str()),
        ] {
            if !self.excluded(key) {
                out.push(string_kv(key, value));
            }
        }
        out
    }

    /// The resource's state, made (and the cache trimmed) when new.
    fn resource(&mut self, key: String, attrs: &[KeyValue], now: u64) -> &mut ResourceState {
        self.tick += 1;
        if !self.resources.contains_key(&key) {
            let state = self.evicted.remove(&key).unwrap_or_else(|| ResourceState {
                attributes: attrs.to_vec(),
                ..Default::default()
            });
            self.resources.insert(key.clone(), state);
            if self.resources.len() > self.s.resource_cache_size
                && let Some(oldest) = self
                    .resources
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .min_by_key(|(_, r)| r.used)
                    .map(|(k, _)| k.clone())
                && let Some(state) = self.resources.remove(&oldest)
            {
                self.evicted.insert(oldest, state);
            }
        }
        let tick = self.tick;
        let state = self.resources.entry(key).or_default();
        state.used = tick;
        state.last_seen = now;
        state
    }

    pub fn add(&mut self, resources: &[ResourceSpans], now: u64) -> Added {
        let mut added = Added::default();
        for rs in resources {
            let attrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes[..]);
            let spans: u64 = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
            added.spans += spans;
            // As the OTel Collector: spans of a resource without a service are not counted.
            let Some(service) = find(attrs, "service.name") else {
                continue;
            };
            if spans == 0 {
                continue;
            }
            let service = match service.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            let key = resource_key(attrs, &self.s.raw.resource_metrics_key_attributes);
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    added.overflowed +=
                        self.record(&key, attrs, &service, ss.scope.as_ref(), span, now);
                }
            }
        }
        added
    }

    /// Counts one span (and its events); returns how many of its points overflowed.
    fn record(
        &mut self,
        rkey: &str,
        resource: &[KeyValue],
        service: &str,
        scope: Option<&InstrumentationScope>,
        span: &Span,
        now: u64,
    ) -> u64 {
        let unit = self.s.raw.histogram.unit;
        let duration = unit.from_nanos(
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano),
        );
        let (count, adjusted) = match adjusted_count(&span.trace_state) {
            Some(weight) => (self.rounding.count(weight), true),
            None => (1, false),
        };

        // Dimensions every metric has, then each metric's own, then the scope and the
        // sampling method.
        let mut common = self.defaults(service, span);
        push_dimensions(
            &mut common,
            &self.s.dimensions,
            &[&span.attributes, resource],
        );
        let mut tail = Vec::new();
        if let Some(scope) = scope
            && !scope.name.is_empty()
            && self
                .s
                .raw
                .include_instrumentation_scope
                .contains(&scope.name)
        {
            tail.push(string_kv(SCOPE_NAME_KEY, &scope.name));
            if !scope.version.is_empty() {
                tail.push(string_kv(SCOPE_VERSION_KEY, &scope.version));
            }
        }
        if self.s.raw.enable_metrics_sampling_method {
            let method = if adjusted { "extrapolated" } else { "counted" };
            tail.push(string_kv(SAMPLING_METHOD_KEY, method));
        }
        let with = |own: &[DimensionRule], sources: &[&[KeyValue]], common: &[KeyValue]| {
            let mut attrs = common.to_vec();
            push_dimensions(&mut attrs, own, sources);
            attrs.extend(tail.iter().cloned());
            attrs
        };
        let calls_attrs = with(
            &self.s.calls_dimensions,
            &[&span.attributes, resource],
            &common,
        );
        let duration_attrs = (!self.s.raw.histogram.disable).then(|| {
            with(
                &self.s.histogram_dimensions,
                &[&span.attributes, resource],
                &common,
            )
        });

        let exemplar = (self.s.raw.exemplars.enabled && span.trace_id.iter().any(|b| *b != 0))
            .then(|| SpanExemplar {
                trace_id: span.trace_id.clone(),
                span_id: span.span_id.clone(),
                value: duration,
            });
        // The state borrows `self` mutably below; the settings are shared, not copied.
        let s = self.s.clone();
        let (max_exemplars, limit, bounds) = (s.max_exemplars, s.cardinality_limit, &s.bounds);
        let mut overflowed = 0;

        let mut room = std::mem::take(&mut self.room);
        let state = self.resource(rkey.to_string(), resource, now);
        let keep = |exemplars: &mut Vec<SpanExemplar>| {
            if let Some(e) = &exemplar
                && exemplars.len() < max_exemplars
            {
                exemplars.push(e.clone());
            }
        };

        let mut key = String::new();
        encode(&calls_attrs, &mut key);
        let (calls, over) = state.calls.get_or_create(
            NewSeries {
                key,
                attributes: &|| calls_attrs.clone(),
                point: &|| 0u64,
                now,
            },
            limit,
            &mut room,
        );
        calls.point += count;
        keep(&mut calls.exemplars);
        overflowed += u64::from(over);

        if let Some(attrs) = &duration_attrs {
            let mut key = String::new();
            encode(attrs, &mut key);
            let (series, over) = state.durations.get_or_create(
                NewSeries {
                    key,
                    attributes: &|| attrs.clone(),
                    point: &|| match bounds {
                        Some(b) => Buckets::Explicit {
                            counts: vec![0; b.len() + 1],
                            count: 0,
                            sum: 0.0,
                        },
                        None => {
                            Buckets::Exponential(ExponentialHistogram::new(s.exponential_max_size))
                        }
                    },
                    now,
                },
                limit,
                &mut room,
            );
            match (&mut series.point, bounds) {
                (
                    Buckets::Explicit {
                        counts,
                        count: c,
                        sum,
                    },
                    Some(b),
                ) => {
                    *c += count;
                    *sum += duration * count as f64;
                    // OTLP explicit buckets are upper-inclusive: bucket i holds
                    // (bounds[i-1], bounds[i]].
                    let index = b.partition_point(|x| *x < duration);
                    if let Some(slot) = counts.get_mut(index) {
                        *slot += count;
                    }
                }
                (Buckets::Exponential(h), _) => h.record(duration, count),
                _ => {}
            }
            keep(&mut series.exemplars);
            overflowed += u64::from(over);
        }

        if s.raw.events.enabled {
            for event in &span.events {
                let mut attrs = common.clone();
                push_dimensions(
                    &mut attrs,
                    &s.event_dimensions,
                    &[&span.attributes, &event.attributes, resource],
                );
                attrs.extend(tail.iter().cloned());
                let mut key = String::new();
                encode(&attrs, &mut key);
                let (series, over) = state.events.get_or_create(
                    NewSeries {
                        key,
                        attributes: &|| attrs.clone(),
                        point: &|| 0u64,
                        now,
                    },
                    limit,
                    &mut room,
                );
                series.point += count;
                keep(&mut series.exemplars);
                overflowed += u64::from(over);
            }
        }
        self.room = room;
        overflowed
    }

    fn temporality(&self) -> i32 {
        match self.s.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
            Temporality::Delta => AggregationTemporality::Delta as i32,
        }
    }

    fn name(&self, metric: &str) -> String {
        let ns = &self.s.raw.namespace;
        if ns.is_empty() {
            metric.to_string()
        } else {
            format!("{ns}.{metric}")
        }
    }

    /// The metrics to send now, one resource per resource seen; then what a flush forgets:
    /// everything (delta), or evicted resources, exemplars and expired series and resources
    /// (cumulative).
    pub fn flush(&mut self, now: u64) -> Vec<ResourceMetrics> {
        let delta = self.s.temporality == Temporality::Delta;
        let mut keys: Vec<String> = self
            .resources
            .keys()
            .chain(self.evicted.keys())
            .cloned()
            .collect();
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        let mut flushed: Vec<(String, String)> = Vec::new();
        for rkey in keys {
            let Some(state) = self
                .resources
                .get(&rkey)
                .or_else(|| self.evicted.get(&rkey))
            else {
                continue;
            };
            let start = |skey: &str, own: u64| {
                if delta {
                    self.last_flush
                        .get(&(rkey.clone(), skey.to_string()))
                        .map_or(own, |(t, _)| *t)
                } else {
                    own
                }
            };
            let exemplars = |list: &[SpanExemplar]| -> Vec<Exemplar> {
                list.iter()
                    .map(|e| Exemplar {
                        time_unix_nano: now,
                        trace_id: e.trace_id.clone(),
                        span_id: e.span_id.clone(),
                        value: Some(exemplar::Value::AsDouble(e.value)),
                        ..Default::default()
                    })
                    .collect()
            };
            let sum_points = |map: &SeriesMap<u64>| -> Vec<NumberDataPoint> {
                map.sorted()
                    .into_iter()
                    .map(|(skey, s)| NumberDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: start(skey, s.start),
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(if !delta && s.first {
                            0
                        } else {
                            i64::try_from(s.point).unwrap_or(i64::MAX)
                        })),
                        exemplars: exemplars(&s.exemplars),
                        ..Default::default()
                    })
                    .collect()
            };
            let sum = |name: String, map: &SeriesMap<u64>| Metric {
                name,
                data: Some(Data::Sum(Sum {
                    data_points: sum_points(map),
                    aggregation_temporality: self.temporality(),
                    is_monotonic: true,
                })),
                ..Default::default()
            };
            let mut metrics = vec![sum(self.name("calls"), &state.calls)];
            if !self.s.raw.histogram.disable {
                let data = match &self.s.bounds {
                    Some(bounds) => Data::Histogram(Histogram {
                        data_points: state
                            .durations
                            .sorted()
                            .into_iter()
                            .map(|(skey, s)| {
                                let (counts, count, sum) = match &s.point {
                                    Buckets::Explicit { counts, count, sum } => {
                                        (counts.clone(), *count, *sum)
                                    }
                                    Buckets::Exponential(_) => (Vec::new(), 0, 0.0),
                                };
                                HistogramDataPoint {
                                    attributes: s.attributes.clone(),
                                    start_time_unix_nano: start(skey, s.start),
                                    time_unix_nano: now,
                                    count,
                                    sum: Some(sum),
                                    bucket_counts: counts,
                                    explicit_bounds: bounds.clone(),
                                    exemplars: exemplars(&s.exemplars),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        aggregation_temporality: self.temporality(),
                    }),
                    None => Data::ExponentialHistogram(OtlpExponentialHistogram {
                        data_points: state
                            .durations
                            .sorted()
                            .into_iter()
                            .filter_map(|(skey, s)| {
                                let Buckets::Exponential(h) = &s.point else {
                                    return None;
                                };
                                let mut p = h.to_point();
                                p.attributes = s.attributes.clone();
                                p.start_time_unix_nano = start(skey, s.start);
                                p.time_unix_nano = now;
                                p.exemplars = exemplars(&s.exemplars);
                                Some(p)
                            })
                            .collect(),
                        aggregation_temporality: self.temporality(),
                    }),
                };
                metrics.push(Metric {
                    name: self.name("duration"),
                    unit: self.s.raw.histogram.unit.symbol().into(),
                    data: Some(data),
                    ..Default::default()
                });
            }
            if self.s.raw.events.enabled {
                metrics.push(sum(self.name("events"), &state.events));
            }
            if delta {
                let series = state
                    .calls
                    .map
                    .keys()
                    .chain(state.durations.map.keys())
                    .chain(state.events.map.keys());
                flushed.extend(series.map(|k| (rkey.clone(), k.clone())));
            }
            out.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: state.attributes.clone(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        self.evicted.clear();
        if delta {
            self.remember_flush(flushed, now);
            self.resources.clear();
        } else {
            self.forget_after_flush(now);
        }
        self.room.total = self.resources.values().map(ResourceState::series).sum();
        out
    }

    /// Delta: the flush time becomes the start of each series' next point; the least recently
    /// flushed series are forgotten beyond `metric_timestamp_cache_size`.
    fn remember_flush(&mut self, flushed: Vec<(String, String)>, now: u64) {
        self.tick += 1;
        for key in flushed {
            self.last_flush.insert(key, (now, self.tick));
        }
        let cap = self.s.timestamp_cache_size;
        if self.last_flush.len() > cap {
            let mut by_age: Vec<((String, String), u64)> = self
                .last_flush
                .iter()
                .map(|(k, (_, used))| (k.clone(), *used))
                .collect();
            by_age.sort_by_key(|(_, used)| *used);
            let extra = self.last_flush.len() - cap;
            for (k, _) in by_age.into_iter().take(extra) {
                self.last_flush.remove(&k);
            }
        }
    }

    fn forget_after_flush(&mut self, now: u64) {
        let series_ttl =
            u64::try_from(self.s.raw.series_expiration.0.as_nanos()).unwrap_or(u64::MAX);
        let resource_ttl =
            u64::try_from(self.s.raw.metrics_expiration.0.as_nanos()).unwrap_or(u64::MAX);
        let expired = |last: u64, ttl: u64| ttl > 0 && now.saturating_sub(last) >= ttl;
        for state in self.resources.values_mut() {
            for s in state.calls.map.values_mut() {
                s.first = false;
                s.exemplars.clear();
            }
            for s in state.events.map.values_mut() {
                s.first = false;
                s.exemplars.clear();
            }
            for s in state.durations.map.values_mut() {
                s.exemplars.clear();
            }
            state
                .calls
                .map
                .retain(|_, s| !expired(s.last_seen, series_ttl));
            state
                .durations
                .map
                .retain(|_, s| !expired(s.last_seen, series_ttl));
            state
                .events
                .map
                .retain(|_, s| !expired(s.last_seen, series_ttl));
        }
        self.resources.retain(|_, r| {
            let empty =
                r.calls.map.is_empty() && r.durations.map.is_empty() && r.events.map.is_empty();
            !(expired(r.last_seen, resource_ttl) || empty)
        });
    }
}
