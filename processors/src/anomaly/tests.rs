//! The algorithm on synthetic series (step, spike, seasonal, counters), the series table,
//! config errors, and the connector's events, forecast gauges and acknowledgements.

use std::sync::Mutex;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::proto::common::v1::{AnyValue, KeyValue, any_value::Value};
use sluice_pipeline::proto::logs::v1::ResourceLogs;
use sluice_pipeline::proto::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
    number_data_point,
};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::{Ack, Batch, BuildContext, ConnectorFactory, Consumer};

use super::series::{Counts, Detector};
use super::*;

// ---- synthetic data ----

/// Deterministic standard-normal noise (xorshift64* and Box-Muller), so every run sees the
/// same series.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn params(yaml: &str) -> Params {
    Params::from_config(&config::load(&component(yaml)).unwrap())
}

/// Every event with the index of the point that raised it.
fn run(series: &[f64], p: &Params) -> Vec<(usize, Event)> {
    let mut model = Model::new(p);
    series
        .iter()
        .enumerate()
        .filter_map(|(i, y)| model.observe(*y, p).and_then(|e| e.event).map(|e| (i, e)))
        .collect()
}

fn flat_with_noise(n: usize, level: f64, sigma: f64, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..n).map(|_| level + sigma * noise.normal()).collect()
}

fn seasonal(n: usize, period: usize, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..n)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * (i % period) as f64 / period as f64;
            200.0 + 40.0 * phase.sin() + 0.05 * i as f64 + 2.0 * noise.normal()
        })
        .collect()
}

// ---- the algorithm ----

#[test]
fn a_step_change_fires_at_the_second_point_and_resolves_once_learned() {
    let p = params("{}");
    let mut series = flat_with_noise(200, 100.0, 1.0, 7);
    let step = series.len();
    series.extend(flat_with_noise(300, 130.0, 1.0, 8));
    let events = run(&series, &p);
    assert_eq!(
        events[0],
        (step + 1, Event::Firing(Side::Above)),
        "{events:?}"
    );
    let (resolved_at, resolved) = events[1];
    assert_eq!(resolved, Event::Resolved(Side::Above));
    // The baseline learns a lasting shift a bounded step at a time, then goes quiet.
    assert!(resolved_at < step + 100, "resolved only at {resolved_at}");
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn a_drop_fires_below() {
    let p = params("{}");
    let mut series = flat_with_noise(100, 50.0, 0.5, 3);
    series.extend(flat_with_noise(20, 40.0, 0.5, 4));
    let events = run(&series, &p);
    assert_eq!(events.first(), Some(&(101, Event::Firing(Side::Below))));
}

#[test]
fn a_short_spike_fires_and_resolves_within_a_few_points() {
    let p = params("{}");
    let mut series = flat_with_noise(150, 100.0, 1.0, 11);
    series.extend([125.0, 128.0, 126.0]);
    series.extend(flat_with_noise(100, 100.0, 1.0, 12));
    let events = run(&series, &p);
    assert_eq!(
        events,
        vec![
            (151, Event::Firing(Side::Above)),
            (154, Event::Resolved(Side::Above))
        ]
    );
}

#[test]
fn a_single_point_spike_fires_with_min_consecutive_1_and_does_not_widen_the_band() {
    // One point is enough to fire, so the band is made wider than the noise's tail.
    let p = params("{min_consecutive: 1, sensitivity: 5}");
    let mut series = flat_with_noise(150, 100.0, 1.0, 21);
    series.push(200.0);
    series.extend(flat_with_noise(50, 100.0, 1.0, 22));
    let mut model = Model::new(&p);
    let mut before = None;
    let mut after = None;
    let mut events = Vec::new();
    for (i, y) in series.iter().enumerate() {
        let Some(e) = model.observe(*y, &p) else {
            continue;
        };
        if i == 150 {
            before = Some(e);
        }
        if i == 151 {
            after = Some(e);
        }
        if let Some(ev) = e.event {
            events.push((i, ev));
        }
    }
    assert_eq!(events[0], (150, Event::Firing(Side::Above)));
    assert_eq!(events[1], (151, Event::Resolved(Side::Above)));
    assert_eq!(events.len(), 2, "{events:?}");
    let (before, after) = (before.unwrap(), after.unwrap());
    // Learned at full weight the spike would move the level by alpha × 100 = 20 and the
    // band by far more; clamped it moves both by a couple of deviations at most.
    assert!(
        (after.expected - before.expected).abs() < 1.0,
        "{before:?} {after:?}"
    );
    let (w0, w1) = (before.upper - before.lower, after.upper - after.lower);
    assert!(w1 < w0 * 1.5, "band went from {w0} to {w1}");
}

#[test]
fn a_single_point_spike_does_not_fire_with_the_default_min_consecutive() {
    let mut series = flat_with_noise(150, 100.0, 1.0, 31);
    series.push(200.0);
    series.extend(flat_with_noise(50, 100.0, 1.0, 32));
    assert!(run(&series, &params("{}")).is_empty());
}

#[test]
fn a_clean_noisy_seasonal_series_never_alerts_after_warm_up() {
    let p = params("season: 24");
    assert_eq!(p.warmup, 48);
    for seed in 1..=5 {
        let series = seasonal(24 * 40, 24, seed);
        assert_eq!(run(&series, &p), vec![], "seed {seed}");
    }
}

#[test]
fn a_seasonal_series_detects_a_break_in_its_pattern() {
    let p = params("season: 24");
    let mut series = seasonal(24 * 10, 24, 9);
    let at = series.len();
    let tail = seasonal(24 * 12, 24, 10);
    // Same pattern, knocked 30 (15 noise deviations) down from the point it resumes.
    series.extend(tail[at..].iter().map(|v| v - 30.0));
    let events = run(&series, &p);
    assert_eq!(
        events.first(),
        Some(&(at + 1, Event::Firing(Side::Below))),
        "{events:?}"
    );
}

#[test]
fn nothing_alerts_during_warm_up() {
    let p = params("warmup: 60");
    let mut series = flat_with_noise(30, 100.0, 1.0, 5);
    series.extend(flat_with_noise(25, 300.0, 1.0, 6));
    assert!(run(&series, &p).is_empty());
    let mut model = Model::new(&p);
    let evals: Vec<Evaluation> = series
        .iter()
        .filter_map(|y| model.observe(*y, &p))
        .collect();
    assert!(evals.iter().all(|e| !e.warm));
}

#[test]
fn values_that_overflow_the_arithmetic_restart_the_series_instead_of_poisoning_it() {
    let p = params("{warmup: 5}");
    let mut model = Model::new(&p);
    for y in [1.0, f64::MAX, -f64::MAX, f64::MAX] {
        model.observe(y, &p);
    }
    let evals: Vec<Evaluation> = [10.0, 11.0, 10.0, 11.0, 10.0, 11.0, 10.0]
        .iter()
        .filter_map(|y| model.observe(*y, &p))
        .collect();
    let last = evals.last().unwrap();
    assert!(
        last.expected.is_finite() && last.upper.is_finite(),
        "{last:?}"
    );
    assert!((9.0..12.0).contains(&last.expected), "{last:?}");
}

#[test]
fn a_flat_series_with_min_deviation_tolerates_small_moves() {
    let mut series = vec![10.0; 60];
    series.extend([11.0, 11.0, 11.0]);
    assert!(
        !run(&series, &params("{}")).is_empty(),
        "any move of a flat line is news"
    );
    assert!(run(&series, &params("min_deviation: 1")).is_empty());
    series.extend([30.0, 30.0]);
    assert_eq!(run(&series, &params("min_deviation: 1")).len(), 1);
}

// ---- series, counters, the table ----

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn point(t: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        start_time_unix_nano: 1,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn resource(host: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("host.name", host)],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: "{item}".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn counter(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

const SEC: u64 = 1_000_000_000;

fn detector(yaml: &str) -> Detector {
    let cfg = config::load(&component(yaml)).unwrap();
    Detector::new(
        Params::from_config(&cfg),
        cfg.metrics.clone(),
        cfg.max_series,
        cfg.forget_after.0.as_nanos() as u64,
    )
}

#[test]
fn cumulative_counters_are_judged_by_their_rate() {
    let mut d = detector("{}");
    let mut total = 0.0;
    let mut events = Vec::new();
    let mut rates = Vec::new();
    for i in 0..80u64 {
        // 10/s, then 100/s from point 60; a reset to 0 at point 30 is skipped, not a drop.
        let per_sec = if i >= 60 {
            100.0
        } else {
            10.0 + (i % 3) as f64
        };
        total = if i == 30 { 0.0 } else { total + per_sec * 10.0 };
        let (found, _) = d.process(&[resource(
            "a",
            vec![counter(
                "requests",
                vec![point(i * 10 * SEC, total, vec![])],
            )],
        )]);
        for f in found.iter().flat_map(|r| r.findings.iter()) {
            assert!(f.rate);
            rates.push(f.evaluation.value);
            if let Some(e) = f.evaluation.event {
                events.push((i, e));
            }
        }
    }
    // Point 0 has no rate, point 1's rate starts the model: the first judged is point 2's.
    assert!((rates[0] - 12.0).abs() < 1e-9, "first rate {}", rates[0]);
    assert!(
        rates.iter().all(|r| *r >= 10.0),
        "a reset must not read as a negative rate"
    );
    assert_eq!(
        events.first(),
        Some(&(61, Event::Firing(Side::Above))),
        "{events:?}"
    );
}

#[test]
fn replayed_and_out_of_order_points_are_not_learned_twice() {
    let mut d = detector("{}");
    let batch = |t: u64, v: f64| vec![resource("a", vec![gauge("g", vec![point(t, v, vec![])])])];
    assert!(
        d.process(&batch(10, 1.0)).0.is_empty(),
        "first point: no forecast yet"
    );
    assert_eq!(d.process(&batch(20, 1.0)).0.len(), 1);
    assert!(d.process(&batch(20, 1.0)).0.is_empty());
    assert!(d.process(&batch(15, 1.0)).0.is_empty());
    assert_eq!(d.process(&batch(30, 1.0)).0.len(), 1);
}

#[test]
fn series_are_told_apart_by_name_resource_and_attributes_not_attribute_order() {
    let mut d = detector("{}");
    let points = |t| {
        vec![
            resource(
                "a",
                vec![
                    gauge("g", vec![point(t, 1.0, vec![kv("x", "1"), kv("y", "2")])]),
                    gauge(
                        "g",
                        vec![point(t + 1, 1.0, vec![kv("y", "2"), kv("x", "1")])],
                    ),
                    gauge("h", vec![point(t, 1.0, vec![])]),
                ],
            ),
            resource(
                "b",
                vec![gauge(
                    "g",
                    vec![point(t, 1.0, vec![kv("x", "1"), kv("y", "2")])],
                )],
            ),
        ]
    };
    d.process(&points(10));
    assert_eq!(d.series_count(), 3);
}

#[test]
fn the_series_cap_refuses_new_series_and_counts_their_points() {
    let mut d = detector("max_series: 2");
    let batch = |t: u64| {
        vec![resource(
            "a",
            vec![gauge(
                "g",
                (0..4)
                    .map(|i| point(t, 1.0, vec![kv("i", &i.to_string())]))
                    .collect(),
            )],
        )]
    };
    assert_eq!(d.process(&batch(10)).1.refused, 2);
    let (found, counts) = d.process(&batch(20));
    assert_eq!(counts.refused, 2);
    assert_eq!(found[0].findings.len(), 2, "the two tracked series go on");
    assert_eq!(d.series_count(), 2);
}

#[test]
fn idle_series_are_forgotten_to_make_room_by_data_time() {
    let mut d = detector("{max_series: 2, forget_after: 1m}");
    let one = |name: &str, t: u64| {
        vec![resource(
            "a",
            vec![gauge(name, vec![point(t, 1.0, vec![])])],
        )]
    };
    d.process(&one("a", 10 * SEC));
    d.process(&one("b", 20 * SEC));
    let (_, counts) = d.process(&one("c", 30 * SEC));
    assert_eq!(
        counts,
        Counts {
            refused: 1,
            forgotten: 0
        },
        "nobody idle for a minute yet"
    );
    // `b` keeps reporting; `a` has been silent for over a minute of data time.
    d.process(&one("b", 75 * SEC));
    let (_, counts) = d.process(&one("c", 80 * SEC));
    assert_eq!(
        counts,
        Counts {
            refused: 0,
            forgotten: 1
        }
    );
    assert_eq!(d.series_count(), 2);
}

#[test]
fn only_listed_metrics_are_watched_and_histograms_are_ignored() {
    let mut d = detector("metrics: [g]");
    let hist = Metric {
        name: "g2".into(),
        data: Some(Data::Histogram(Default::default())),
        ..Default::default()
    };
    for t in [10, 20] {
        d.process(&[resource(
            "a",
            vec![
                gauge("g", vec![point(t, 1.0, vec![])]),
                gauge("h", vec![point(t, 1.0, vec![])]),
                hist.clone(),
            ],
        )]);
    }
    assert_eq!(d.series_count(), 1);
}

// ---- config ----

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Connector,
        id: ComponentId::with_name("anomaly", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "connectors.anomaly/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

#[test]
fn defaults_are_documented_values() {
    let cfg = config::load(&component("{}")).unwrap();
    assert_eq!(
        (
            cfg.sensitivity,
            cfg.min_consecutive,
            cfg.warmup(),
            cfg.season
        ),
        (3.0, 2, 30, 0)
    );
    assert_eq!(
        config::load(&component("season: 1440")).unwrap().warmup(),
        2880
    );
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        ("alpha: 0", "alpha"),
        ("beta: 1.5", "beta"),
        ("gamma: -0.1", "gamma"),
        ("deviation_alpha: 0", "deviation_alpha"),
        ("sensitivity: 0", "sensitivity"),
        ("min_deviation: -1", "min_deviation"),
        ("min_consecutive: 0", "min_consecutive"),
        ("season: 1", "season"),
        ("season: 100000", "season"),
        ("{season: 24, warmup: 10}", "warmup"),
        ("max_series: 0", "max_series"),
    ];
    for (yaml, key) in cases {
        let text = config::load(&component(yaml))
            .err()
            .unwrap_or_else(|| panic!("{yaml} passed"))
            .to_string();
        assert!(
            text.contains(&format!("connectors.anomaly/t.{key}")),
            "{yaml}: {text}"
        );
    }
    assert!(config::load(&component("sensitivty: 2")).is_err());
}

#[test]
fn a_metrics_output_needs_forecast_true() {
    let sink = Arc::new(MetricsSink(Mutex::new(vec![])));
    let err = AnomalyConnectorFactory
        .build(
            &component("{}"),
            SignalKind::Metrics,
            AnyConsumer::Metrics(sink.clone()),
            &BuildContext::default(),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("connectors.anomaly/t.forecast"), "{err}");
    assert!(
        AnomalyConnectorFactory
            .build(
                &component("forecast: true"),
                SignalKind::Metrics,
                AnyConsumer::Metrics(sink),
                &BuildContext::default()
            )
            .is_ok()
    );
}

// ---- the connector ----

struct LogSink(Mutex<Vec<ResourceLogs>>);

#[async_trait]
impl Consumer<Logs> for LogSink {
    async fn consume(&self, batch: Batch<Logs>) {
        self.0
            .lock()
            .unwrap()
            .extend(batch.resources().iter().cloned());
        batch.settle(&Ok(()));
    }
}

struct MetricsSink(Mutex<Vec<ResourceMetrics>>);

#[async_trait]
impl Consumer<Metrics> for MetricsSink {
    async fn consume(&self, batch: Batch<Metrics>) {
        self.0
            .lock()
            .unwrap()
            .extend(batch.resources().iter().cloned());
        batch.settle(&Ok(()));
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a Value {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .unwrap_or_else(|| panic!("no attribute {key}"))
}

fn queue_depth(t: u64, v: f64) -> Batch<Metrics> {
    Batch::from_resources(vec![resource(
        "db1",
        vec![gauge(
            "queue.depth",
            vec![point(t, v, vec![kv("queue", "orders")])],
        )],
    )])
}

#[tokio::test]
async fn events_are_alert_log_records_and_batches_are_acknowledged() {
    let sink = Arc::new(LogSink(Mutex::new(vec![])));
    let built = AnomalyConnectorFactory
        .build(
            &component("{name: queue-anomaly, min_deviation: 5}"),
            SignalKind::Metrics,
            AnyConsumer::Logs(sink.clone()),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Metrics(input) = built.consumer else {
        panic!("not a metrics consumer")
    };
    let mut t = 0;
    let mut send = |v: f64| {
        t += SEC;
        let input = input.clone();
        async move {
            let (ack, waiter) = Ack::new();
            input.consume(queue_depth(t, v).with_ack(ack)).await;
            assert_eq!(waiter.await, Ok(()));
        }
    };
    for i in 0..40 {
        send(120.0 + (i % 2) as f64).await;
    }
    assert!(sink.0.lock().unwrap().is_empty());
    send(950.0).await;
    send(950.0).await;
    for _ in 0..4 {
        send(120.0).await;
    }
    let logs = sink.0.lock().unwrap().clone();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(
        logs[0].resource.as_ref().unwrap().attributes,
        vec![kv("host.name", "db1")]
    );
    assert_eq!(
        logs[0].scope_logs[0].scope.as_ref().unwrap().name,
        SCOPE_NAME
    );
    let firing = &logs[0].scope_logs[0].log_records[0];
    assert_eq!(firing.event_name, "sluice.alert");
    assert_eq!(firing.severity_number, 13);
    assert_eq!(firing.time_unix_nano, 42 * SEC);
    let a = &firing.attributes;
    assert_eq!(
        attr(a, "event.name"),
        &Value::StringValue("sluice.alert".into())
    );
    assert_eq!(
        attr(a, "alert.rule"),
        &Value::StringValue("queue-anomaly".into())
    );
    assert_eq!(attr(a, "alert.state"), &Value::StringValue("firing".into()));
    assert_eq!(attr(a, "alert.value"), &Value::DoubleValue(950.0));
    assert_eq!(attr(a, "queue"), &Value::StringValue("orders".into()));
    assert_eq!(
        attr(a, "alert.metric"),
        &Value::StringValue("queue.depth".into())
    );
    let num = |k: &str| match attr(a, k) {
        Value::DoubleValue(v) => *v,
        other => panic!("{k} is {other:?}"),
    };
    assert_eq!(num("alert.threshold"), num("anomaly.upper"));
    assert!(
        num("anomaly.lower") < num("anomaly.expected")
            && num("anomaly.expected") < num("anomaly.upper")
    );
    let Some(AnyValue {
        value: Some(Value::StringValue(body)),
    }) = &firing.body
    else {
        panic!("no body")
    };
    assert!(
        body.starts_with("queue.depth 950 is above its expected range "),
        "{body}"
    );
    assert!(body.contains("(expected "), "{body}");
    let resolved = &logs[1].scope_logs[0].log_records[0];
    assert_eq!(
        attr(&resolved.attributes, "alert.state"),
        &Value::StringValue("resolved".into())
    );
    assert_eq!(resolved.severity_number, 9);
}

#[tokio::test]
async fn forecast_gauges_carry_the_band_with_the_series_attributes() {
    let sink = Arc::new(MetricsSink(Mutex::new(vec![])));
    let built = AnomalyConnectorFactory
        .build(
            &component("{forecast: true, warmup: 5}"),
            SignalKind::Metrics,
            AnyConsumer::Metrics(sink.clone()),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Metrics(input) = built.consumer else {
        panic!()
    };
    for i in 1..=7u64 {
        input
            .consume(queue_depth(i * SEC, 100.0 + (i % 2) as f64))
            .await;
    }
    let out = sink.0.lock().unwrap().clone();
    // Points 1..=5 are the warm-up; 6 and 7 are judged and drawn.
    assert_eq!(out.len(), 2);
    let metrics = &out[0].scope_metrics[0].metrics;
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "queue.depth.forecast",
            "queue.depth.lower",
            "queue.depth.upper"
        ]
    );
    assert_eq!(metrics[0].unit, "{item}");
    assert_eq!(
        out[0].resource.as_ref().unwrap().attributes,
        vec![kv("host.name", "db1")]
    );
    let value = |m: &Metric| {
        let Some(Data::Gauge(g)) = &m.data else {
            panic!()
        };
        assert_eq!(g.data_points[0].attributes, vec![kv("queue", "orders")]);
        assert_eq!(g.data_points[0].time_unix_nano, 6 * SEC);
        match g.data_points[0].value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            _ => panic!(),
        }
    };
    let (f, lo, hi) = (value(&metrics[0]), value(&metrics[1]), value(&metrics[2]));
    assert!(
        lo < f && f < hi && (99.0..=102.0).contains(&f),
        "{lo} {f} {hi}"
    );
}

#[test]
fn numbers_in_bodies_read_naturally() {
    assert_eq!(output::number(950.0), "950");
    assert_eq!(output::number(120.25), "120.2");
    assert_eq!(output::number(4.56789), "4.57");
    assert_eq!(output::number(0.012345), "0.0123");
    assert_eq!(output::number(-0.00001), "0");
}
