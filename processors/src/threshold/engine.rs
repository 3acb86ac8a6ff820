//! The alerting state machine: per-series state, evaluated against data-point timestamps
//! (`for`) and an injected clock (absence, `repeat_interval`, forgetting), so tests drive it
//! with synthetic time.
//!
//! Per series and rule there are two independent alerts: the threshold alert and, for rules
//! with `absent_for`, the absence alert.
//!
//! Choices:
//! - A threshold alert fires once the value has been past a level on every point for `for`
//!   (measured between data-point timestamps); a point on the good side restarts the wait.
//! - Escalation (warning → critical, after critical has held for `for`) emits a new `firing`
//!   record. Severity never drops while firing: a value falling back between the warning and
//!   critical levels keeps the alert critical until it resolves, so a value wobbling around
//!   the critical level does not page twice per wobble.
//! - Resolution is immediate once a value is past `clear` (default: the lowest level set).
//! - Absence is judged by arrival time on the collector's clock, not by data timestamps, so
//!   a client with a skewed clock is not reported absent.

use std::collections::HashMap;
use std::time::Duration;

use sluice_pipeline::proto::common::v1::{AnyValue, KeyValue, any_value};
use sluice_pipeline::proto::metrics::v1::{
    AggregationTemporality, Metric, ResourceMetrics, metric::Data, number_data_point,
};
use sluice_pipeline::telemetry::{Counter, Gauge, MetricsRegistry};

use super::config::{Compiled, Direction, Matcher, Rule, Severity};
use super::value::{Hist, Raw, compute};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// What tripped: the threshold in its direction, or silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Threshold(Direction),
    Absent,
}

/// One state change, to become one log record.
#[derive(Clone, Debug)]
pub struct Alert {
    pub rule: String,
    pub metric: String,
    pub state: State,
    pub severity: Severity,
    pub condition: Condition,
    /// The value that caused the change (for absence: the last value seen, if any).
    pub value: Option<f64>,
    /// The level crossed; for a resolution, the clear level.
    pub threshold: Option<f64>,
    pub hold: Duration,
    pub absent_for: Option<Duration>,
    pub escalated_from: Option<Severity>,
    /// A periodic reminder of an alert still firing.
    pub repeat: bool,
    /// The series went silent past `forget_after`: resolved because it is no longer tracked.
    pub expired: bool,
    pub time: u64,
    pub observed: u64,
    pub resource: Vec<KeyValue>,
    pub attributes: Vec<KeyValue>,
}

struct Series {
    rule: usize,
    metric: String,
    resource: Vec<KeyValue>,
    attributes: Vec<KeyValue>,
    /// Data time of the last point taken; older or equal points are ignored.
    last_time: Option<u64>,
    last_arrival: u64,
    last_value: Option<f64>,
    prev: Option<(u64, Raw)>,
    warn_since: Option<u64>,
    crit_since: Option<u64>,
    firing: Option<Severity>,
    firing_emitted: u64,
    absent: bool,
    absent_emitted: u64,
}

/// One point routed to a rule's series, before evaluation.
struct Sample {
    rule: usize,
    key: String,
    metric: String,
    time: u64,
    raw: Raw,
    resource: Vec<KeyValue>,
    attributes: Vec<KeyValue>,
}

pub struct SelfMetrics {
    dropped: Counter,
    tracked: Gauge,
    firing: HashMap<(usize, Severity), Gauge>,
}

impl SelfMetrics {
    pub fn new(registry: &MetricsRegistry, connector: &str, rules: &[Rule]) -> SelfMetrics {
        let mut firing = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for s in [Severity::Warning, Severity::Critical] {
                firing.insert(
                    (i, s),
                    registry.gauge(
                        "sluice_threshold_alerts_firing",
                        "Alerts currently firing, by rule and severity",
                        &[
                            ("connector", connector),
                            ("rule", &rule.name),
                            ("severity", s.as_str()),
                        ],
                    ),
                );
            }
        }
        SelfMetrics {
            dropped: registry.counter(
                "sluice_threshold_series_dropped",
                "Data points of series not tracked because max_series was reached",
                &[("connector", connector)],
            ),
            tracked: registry.gauge(
                "sluice_threshold_series",
                "Series the threshold connector tracks",
                &[("connector", connector)],
            ),
            firing,
        }
    }

    fn firing(&self, rule: usize, s: Severity, delta: i64) {
        if let Some(g) = self.firing.get(&(rule, s)) {
            g.add(delta);
        }
    }
}

pub struct Engine {
    name: String,
    rules: Vec<Rule>,
    max_series: usize,
    forget_after: u64,
    series: HashMap<(usize, String), Series>,
    metrics: SelfMetrics,
    cap_logged: bool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An attribute value as text, for matching and series keys.
pub fn value_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn lookup<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

fn all_match(matchers: &[(String, Matcher)], attrs: &[KeyValue]) -> bool {
    matchers.iter().all(|(key, m)| {
        lookup(attrs, key).is_some_and(|kv| m.matches(&value_text(kv.value.as_ref())))
    })
}

fn push_key(key: &mut String, attrs: &[KeyValue]) {
    let mut pairs: Vec<(&str, String)> = attrs
        .iter()
        .map(|kv| (kv.key.as_str(), value_text(kv.value.as_ref())))
        .collect();
    pairs.sort_unstable();
    for (k, v) in pairs {
        // Separators that do not occur in ordinary names keep distinct series distinct.
        key.push('\u{1f}');
        key.push_str(k);
        key.push('\u{1e}');
        key.push_str(&v);
    }
}

impl Engine {
    pub fn new(name: &str, compiled: Compiled, metrics: SelfMetrics) -> Engine {
        Engine {
            name: name.to_string(),
            rules: compiled.rules,
            max_series: compiled.max_series,
            forget_after: nanos(compiled.forget_after),
            series: HashMap::new(),
            metrics,
            cap_logged: false,
        }
    }

    #[cfg(test)]
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Evaluates every point of the batch that some rule selects; `now` is the collector's
    /// clock (unix nanoseconds), used for points without a timestamp and for absence.
    pub fn ingest(&mut self, resources: &[ResourceMetrics], now: u64) -> Vec<Alert> {
        let mut samples = Vec::new();
        for rm in resources {
            let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    for (i, rule) in self.rules.iter().enumerate() {
                        if rule.metric.matches(&metric.name) && all_match(&rule.resource, resource)
                        {
                            collect(i, rule, metric, resource, now, &mut samples);
                        }
                    }
                }
            }
        }
        // Points of one series at one time (a `group_by` coarser than the data) are one
        // observation.
        let mut merged: HashMap<(usize, String, u64), Sample> = HashMap::new();
        let mut order = Vec::new();
        for s in samples {
            let k = (s.rule, s.key.clone(), s.time);
            match merged.get_mut(&k) {
                Some(m) => {
                    let direction = self.rules[s.rule].limits.map(|l| l.direction);
                    m.raw.combine(s.raw, direction);
                }
                None => {
                    order.push(k.clone());
                    merged.insert(k, s);
                }
            }
        }
        let mut samples: Vec<Sample> = order.iter().filter_map(|k| merged.remove(k)).collect();
        samples.sort_by_key(|s| s.time);
        let mut alerts = Vec::new();
        for s in samples {
            self.observe(s, now, &mut alerts);
        }
        self.metrics.tracked.set(self.series.len() as i64);
        alerts
    }

    fn observe(&mut self, s: Sample, now: u64, out: &mut Vec<Alert>) {
        let key = (s.rule, s.key);
        if !self.series.contains_key(&key) {
            if self.series.len() >= self.max_series {
                self.metrics.dropped.add(1);
                if !self.cap_logged {
                    self.cap_logged = true;
                    tracing::warn!(connector = %self.name, max_series = self.max_series, "threshold: series limit reached; new series are not evaluated (counted in sluice_threshold_series_dropped_total)");
                }
                return;
            }
            self.series.insert(
                key.clone(),
                Series {
                    rule: s.rule,
                    metric: s.metric,
                    resource: s.resource,
                    attributes: s.attributes,
                    last_time: None,
                    last_arrival: now,
                    last_value: None,
                    prev: None,
                    warn_since: None,
                    crit_since: None,
                    firing: None,
                    firing_emitted: 0,
                    absent: false,
                    absent_emitted: 0,
                },
            );
        }
        let Some(series) = self.series.get_mut(&key) else {
            return;
        };
        let Some(rule) = self.rules.get(s.rule) else {
            return;
        };
        series.last_arrival = series.last_arrival.max(now);
        if series.absent {
            series.absent = false;
            self.metrics.firing(s.rule, rule.absent_severity, -1);
            out.push(alert(
                rule,
                series,
                State::Resolved,
                rule.absent_severity,
                Condition::Absent,
                None,
                s.time,
                now,
            ));
        }
        if series.last_time.is_some_and(|last| s.time <= last) {
            return;
        }
        series.last_time = Some(s.time);
        let value = compute(rule.value, &s.raw, s.time, series.prev.as_ref());
        series.prev = Some((s.time, s.raw));
        let (Some(v), Some(limits)) = (value, rule.limits) else {
            if value.is_some() {
                series.last_value = value;
            }
            return;
        };
        series.last_value = Some(v);
        let t = s.time;
        let level = limits.level(v);
        if level.is_some() {
            series.warn_since.get_or_insert(t);
        } else {
            series.warn_since = None;
        }
        if level == Some(Severity::Critical) {
            series.crit_since.get_or_insert(t);
        } else {
            series.crit_since = None;
        }
        let hold = nanos(rule.hold);
        let held = |since: Option<u64>| since.is_some_and(|since| t.saturating_sub(since) >= hold);
        let due = if held(series.crit_since) {
            Some(Severity::Critical)
        } else if held(series.warn_since) {
            Some(Severity::Warning)
        } else {
            None
        };
        let condition = Condition::Threshold(limits.direction);
        match (series.firing, due) {
            (None, Some(sev)) => {
                series.firing = Some(sev);
                series.firing_emitted = now;
                self.metrics.firing(s.rule, sev, 1);
                let mut a = alert(rule, series, State::Firing, sev, condition, Some(v), t, now);
                a.threshold = Some(limits.threshold(sev));
                out.push(a);
            }
            (Some(cur), _) if limits.clears(v) => {
                series.firing = None;
                self.metrics.firing(s.rule, cur, -1);
                let mut a = alert(
                    rule,
                    series,
                    State::Resolved,
                    cur,
                    condition,
                    Some(v),
                    t,
                    now,
                );
                a.threshold = Some(limits.clear);
                out.push(a);
            }
            (Some(Severity::Warning), Some(Severity::Critical)) => {
                series.firing = Some(Severity::Critical);
                series.firing_emitted = now;
                self.metrics.firing(s.rule, Severity::Warning, -1);
                self.metrics.firing(s.rule, Severity::Critical, 1);
                let mut a = alert(
                    rule,
                    series,
                    State::Firing,
                    Severity::Critical,
                    condition,
                    Some(v),
                    t,
                    now,
                );
                a.threshold = Some(limits.threshold(Severity::Critical));
                a.escalated_from = Some(Severity::Warning);
                out.push(a);
            }
            _ => {}
        }
    }

    /// Absence, reminders and forgetting, as of `now` (unix nanoseconds).
    pub fn tick(&mut self, now: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut forget = Vec::new();
        for (key, series) in self.series.iter_mut() {
            let Some(rule) = self.rules.get(series.rule) else {
                continue;
            };
            let silent = now.saturating_sub(series.last_arrival);
            if silent >= self.forget_after {
                forget.push(key.clone());
                continue;
            }
            if let Some(absent_for) = rule.absent_for
                && !series.absent
                && silent >= nanos(absent_for)
            {
                series.absent = true;
                series.absent_emitted = now;
                // What held before the silence says nothing about after it.
                series.warn_since = None;
                series.crit_since = None;
                self.metrics.firing(series.rule, rule.absent_severity, 1);
                let value = series.last_value;
                out.push(alert(
                    rule,
                    series,
                    State::Firing,
                    rule.absent_severity,
                    Condition::Absent,
                    value,
                    now,
                    now,
                ));
                continue;
            }
            let every = nanos(rule.repeat_interval);
            if every == 0 {
                continue;
            }
            if let Some(sev) = series.firing
                && let Some(limits) = rule.limits
                && now.saturating_sub(series.firing_emitted) >= every
            {
                series.firing_emitted = now;
                let value = series.last_value;
                let mut a = alert(
                    rule,
                    series,
                    State::Firing,
                    sev,
                    Condition::Threshold(limits.direction),
                    value,
                    now,
                    now,
                );
                a.threshold = Some(limits.threshold(sev));
                a.repeat = true;
                out.push(a);
            }
            if series.absent && now.saturating_sub(series.absent_emitted) >= every {
                series.absent_emitted = now;
                let value = series.last_value;
                let mut a = alert(
                    rule,
                    series,
                    State::Firing,
                    rule.absent_severity,
                    Condition::Absent,
                    value,
                    now,
                    now,
                );
                a.repeat = true;
                out.push(a);
            }
        }
        for key in forget {
            let Some(series) = self.series.remove(&key) else {
                continue;
            };
            let Some(rule) = self.rules.get(series.rule) else {
                continue;
            };
            // Resolve what was firing so downstream systems do not keep a stale alert open.
            if let (Some(sev), Some(limits)) = (series.firing, rule.limits) {
                self.metrics.firing(series.rule, sev, -1);
                let mut a = alert(
                    rule,
                    &series,
                    State::Resolved,
                    sev,
                    Condition::Threshold(limits.direction),
                    series.last_value,
                    now,
                    now,
                );
                a.expired = true;
                out.push(a);
            }
            if series.absent {
                self.metrics.firing(series.rule, rule.absent_severity, -1);
                let mut a = alert(
                    rule,
                    &series,
                    State::Resolved,
                    rule.absent_severity,
                    Condition::Absent,
                    series.last_value,
                    now,
                    now,
                );
                a.expired = true;
                out.push(a);
            }
        }
        self.metrics.tracked.set(self.series.len() as i64);
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn alert(
    rule: &Rule,
    series: &Series,
    state: State,
    severity: Severity,
    condition: Condition,
    value: Option<f64>,
    time: u64,
    observed: u64,
) -> Alert {
    Alert {
        rule: rule.name.clone(),
        metric: series.metric.clone(),
        state,
        severity,
        condition,
        value,
        threshold: None,
        hold: rule.hold,
        absent_for: rule.absent_for,
        escalated_from: None,
        repeat: false,
        expired: false,
        time,
        observed,
        resource: series.resource.clone(),
        attributes: series.attributes.clone(),
    }
}

/// The series a point belongs to: the metric name plus every attribute (resource and point)
/// by default, or only the `group_by` attributes (looked up on the point, then the resource).
fn series_of(
    rule: &Rule,
    metric: &str,
    resource: &[KeyValue],
    point: &[KeyValue],
) -> (String, Vec<KeyValue>, Vec<KeyValue>) {
    let mut key = metric.to_string();
    match &rule.group_by {
        None => {
            push_key(&mut key, resource);
            key.push('\u{1d}');
            push_key(&mut key, point);
            (key, resource.to_vec(), point.to_vec())
        }
        Some(names) => {
            let mut res = Vec::new();
            let mut attrs = Vec::new();
            for name in names {
                if let Some(kv) = lookup(point, name) {
                    attrs.push(kv.clone());
                } else if let Some(kv) = lookup(resource, name) {
                    res.push(kv.clone());
                }
            }
            push_key(&mut key, &res);
            key.push('\u{1d}');
            push_key(&mut key, &attrs);
            (key, res, attrs)
        }
    }
}

fn collect(
    i: usize,
    rule: &Rule,
    metric: &Metric,
    resource: &[KeyValue],
    now: u64,
    out: &mut Vec<Sample>,
) {
    let time = |t: u64| if t == 0 { now } else { t };
    let mut push = |attrs: &[KeyValue], t: u64, raw: Raw| {
        if !all_match(&rule.attributes, attrs) {
            return;
        }
        let (key, res, attributes) = series_of(rule, &metric.name, resource, attrs);
        out.push(Sample {
            rule: i,
            key,
            metric: metric.name.clone(),
            time: time(t),
            raw,
            resource: res,
            attributes,
        });
    };
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    };
    match &metric.data {
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                if let Some(v) = number(&p.value) {
                    push(&p.attributes, p.time_unix_nano, Raw::Gauge(v));
                }
            }
        }
        Some(Data::Sum(s)) => {
            let cumulative = s.aggregation_temporality != AggregationTemporality::Delta as i32;
            for p in &s.data_points {
                if let Some(v) = number(&p.value) {
                    push(
                        &p.attributes,
                        p.time_unix_nano,
                        Raw::Sum {
                            value: v,
                            monotonic: s.is_monotonic,
                            cumulative,
                            start: p.start_time_unix_nano,
                        },
                    );
                }
            }
        }
        Some(Data::Histogram(h)) => {
            let cumulative = h.aggregation_temporality != AggregationTemporality::Delta as i32;
            for p in &h.data_points {
                push(
                    &p.attributes,
                    p.time_unix_nano,
                    Raw::Hist {
                        hist: Hist {
                            count: p.count,
                            sum: p.sum,
                            bounds: p.explicit_bounds.clone(),
                            buckets: p.bucket_counts.clone(),
                            min: p.min,
                            max: p.max,
                        },
                        cumulative,
                        start: p.start_time_unix_nano,
                    },
                );
            }
        }
        // Exponential histograms and summaries are not evaluated (yet).
        _ => {}
    }
}
