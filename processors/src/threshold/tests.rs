//! The state machine driven with synthetic timestamps (no timers), the records it produces,
//! config errors, and the connector as the service builds it.

use std::sync::Mutex;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sluice_config::{ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::telemetry::MetricsRegistry;
use sluice_pipeline::{Ack, Outcome};

use super::engine::{Alert, Condition, State};
use super::*;

const S: u64 = 1_000_000_000;
const M: u64 = 60 * S;

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Connector,
        id: ComponentId::with_name("threshold", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "connectors.threshold/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

fn engine(yaml: &str) -> (Engine, Arc<MetricsRegistry>) {
    let registry = Arc::new(MetricsRegistry::default());
    let compiled = Compiled::build(&component(yaml)).unwrap_or_else(|e| panic!("{e}"));
    let metrics = SelfMetrics::new(&registry, "threshold/t", &compiled.rules);
    (Engine::new("threshold/t", compiled, metrics), registry)
}

fn errors(yaml: &str) -> Vec<String> {
    match Compiled::build(&component(yaml)) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.into_iter().map(|d| d.to_string()).collect(),
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource_metrics(host: &str, metric: Metric) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("host.name", host)],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![metric],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn point(v: f64, t: u64, attrs: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: t,
        start_time_unix_nano: 1,
        value: Some(number_data_point::Value::AsDouble(v)),
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn gauge(name: &str, host: &str, v: f64, t: u64) -> Vec<ResourceMetrics> {
    gauge_points(name, host, vec![point(v, t, &[])])
}

fn gauge_points(name: &str, host: &str, points: Vec<NumberDataPoint>) -> Vec<ResourceMetrics> {
    resource_metrics(
        host,
        Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        },
    )
}

fn counter(name: &str, host: &str, v: f64, t: u64) -> Vec<ResourceMetrics> {
    resource_metrics(
        host,
        Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![point(v, t, &[])],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        },
    )
}

/// A cumulative latency histogram with bounds 0.1, 0.5, 1 (seconds).
fn histogram(name: &str, buckets: [u64; 4], sum: f64, t: u64) -> Vec<ResourceMetrics> {
    resource_metrics(
        "web-1",
        Metric {
            name: name.into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: t,
                    start_time_unix_nano: 1,
                    count: buckets.iter().sum(),
                    sum: Some(sum),
                    bucket_counts: buckets.to_vec(),
                    explicit_bounds: vec![0.1, 0.5, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    )
}

fn summary(alerts: &[Alert]) -> Vec<(State, &'static str)> {
    alerts
        .iter()
        .map(|a| (a.state, a.severity.as_str()))
        .collect()
}

const CPU_RULE: &str = r#"
rules:
  - name: cpu-high
    metric: system.cpu.utilization
    above: { warning: 0.8, critical: 0.9 }
    clear: 0.7
    for: 5m
"#;

fn firing(registry: &MetricsRegistry, rule: &str, severity: &str) -> String {
    let text = registry.render();
    let prefix = format!(
        "sluice_threshold_alerts_firing{{connector=\"threshold/t\",rule=\"{rule}\",severity=\"{severity}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("missing")
        .to_string()
}

#[test]
fn a_breach_shorter_than_for_does_not_fire() {
    let (mut e, _) = engine(CPU_RULE);
    let mut all = Vec::new();
    // Above the warning level for 4 minutes, then back to normal, then above again.
    for (i, v) in [0.85, 0.85, 0.85, 0.85, 0.85, 0.5, 0.85, 0.85]
        .iter()
        .enumerate()
    {
        all.extend(e.ingest(
            &gauge("system.cpu.utilization", "web-1", *v, i as u64 * M),
            0,
        ));
    }
    assert!(all.is_empty(), "{all:?}");
}

#[test]
fn a_held_breach_fires_once_escalates_and_resolves_only_below_clear() {
    let (mut e, registry) = engine(CPU_RULE);
    let mut at =
        |v: f64, minute: u64| e.ingest(&gauge("system.cpu.utilization", "web-1", v, minute * M), 0);
    for minute in 0..5 {
        assert!(at(0.85, minute).is_empty(), "minute {minute}");
    }
    // Held for 5m at minute 5: fires once, as a warning.
    let fired = at(0.85, 5);
    assert_eq!(summary(&fired), vec![(State::Firing, "warning")]);
    assert_eq!(fired[0].threshold, Some(0.8));
    assert_eq!(fired[0].value, Some(0.85));
    assert_eq!(fired[0].time, 5 * M);
    for minute in 6..9 {
        assert!(at(0.85, minute).is_empty(), "fires only once");
    }
    assert_eq!(firing(&registry, "cpu-high", "warning"), "1");
    // Critical from minute 9; escalates once critical has held for 5m (minute 14).
    for minute in 9..14 {
        assert!(at(0.95, minute).is_empty(), "minute {minute}");
    }
    let escalated = at(0.95, 14);
    assert_eq!(summary(&escalated), vec![(State::Firing, "critical")]);
    assert_eq!(escalated[0].escalated_from, Some(Severity::Warning));
    assert_eq!(escalated[0].threshold, Some(0.9));
    assert_eq!(firing(&registry, "cpu-high", "warning"), "0");
    assert_eq!(firing(&registry, "cpu-high", "critical"), "1");
    // Below warning but above clear: still firing, and still critical (no de-escalation).
    assert!(at(0.75, 15).is_empty());
    assert!(at(0.85, 16).is_empty());
    assert!(at(0.7, 17).is_empty(), "clear is exclusive");
    let resolved = at(0.65, 18);
    assert_eq!(summary(&resolved), vec![(State::Resolved, "critical")]);
    assert_eq!(resolved[0].threshold, Some(0.7));
    assert_eq!(firing(&registry, "cpu-high", "critical"), "0");
    // Quiet afterwards, and a new breach needs `for` again.
    assert!(at(0.85, 19).is_empty());
}

#[test]
fn below_rules_and_default_clear() {
    let (mut e, _) = engine(
        r#"
rules:
  - name: disk-free-low
    metric: disk.free
    below: { critical: 10 }
"#,
    );
    let mut at = |v: f64, t: u64| e.ingest(&gauge("disk.free", "db-1", v, t), 0);
    assert!(at(12.0, 1).is_empty());
    assert_eq!(summary(&at(9.0, 2)), vec![(State::Firing, "critical")]);
    assert!(at(10.0, 3).is_empty(), "resolves only past the level");
    assert_eq!(summary(&at(11.0, 4)), vec![(State::Resolved, "critical")]);
}

#[test]
fn absence_fires_when_a_reporting_series_goes_silent_and_resolves_when_it_returns() {
    let (mut e, registry) = engine(
        r#"
check_interval: 1s
rules:
  - name: host-silent
    metric: system.cpu.utilization
    absent_for: 2m
"#,
    );
    assert!(
        e.tick(10 * M).is_empty(),
        "nothing reported yet: nothing absent"
    );
    assert!(
        e.ingest(&gauge("system.cpu.utilization", "web-1", 0.2, 5), 10 * M)
            .is_empty()
    );
    assert!(e.tick(11 * M).is_empty());
    let absent = e.tick(12 * M);
    assert_eq!(summary(&absent), vec![(State::Firing, "critical")]);
    assert_eq!(absent[0].condition, Condition::Absent);
    assert_eq!(absent[0].value, Some(0.2), "carries the last value seen");
    assert!(e.tick(13 * M).is_empty(), "fires once");
    assert_eq!(firing(&registry, "host-silent", "critical"), "1");
    let back = e.ingest(&gauge("system.cpu.utilization", "web-1", 0.3, 6), 14 * M);
    assert_eq!(summary(&back), vec![(State::Resolved, "critical")]);
    assert_eq!(back[0].condition, Condition::Absent);
    assert_eq!(firing(&registry, "host-silent", "critical"), "0");
}

#[test]
fn repeat_interval_reminds_while_firing_and_silent_series_are_forgotten() {
    let (mut e, registry) = engine(
        r#"
forget_after: 1h
rules:
  - name: mem
    metric: mem
    above: { warning: 1 }
    repeat_interval: 10m
"#,
    );
    assert_eq!(e.ingest(&gauge("mem", "a", 2.0, 1), 0).len(), 1);
    assert!(e.tick(9 * M).is_empty());
    let again = e.tick(10 * M);
    assert_eq!(summary(&again), vec![(State::Firing, "warning")]);
    assert!(again[0].repeat);
    assert!(e.tick(15 * M).is_empty());
    assert_eq!(e.tick(20 * M).len(), 1);
    let forgotten = e.tick(60 * M);
    assert_eq!(summary(&forgotten), vec![(State::Resolved, "warning")]);
    assert!(forgotten[0].expired);
    assert_eq!(e.series_count(), 0);
    assert_eq!(firing(&registry, "mem", "warning"), "0");
}

#[test]
fn rate_of_a_cumulative_counter_with_a_reset() {
    let (mut e, _) = engine(
        r#"
rules:
  - name: errors-rate
    metric: http.errors
    above: { warning: 5 }
"#,
    );
    let mut at = |v: f64, secs: u64| e.ingest(&counter("http.errors", "web-1", v, secs * S), 0);
    assert!(at(100.0, 0).is_empty(), "one point is no rate");
    assert!(at(140.0, 10).is_empty(), "4/s");
    let fired = at(200.0, 20);
    assert_eq!(summary(&fired), vec![(State::Firing, "warning")]);
    assert_eq!(fired[0].value, Some(6.0));
    // The process restarts: the counter drops; that interval is skipped, not a negative rate.
    assert!(at(3.0, 30).is_empty());
    let resolved = at(13.0, 40);
    assert_eq!(summary(&resolved), vec![(State::Resolved, "warning")]);
    assert_eq!(resolved[0].value, Some(1.0));
}

#[test]
fn histogram_percentile_from_cumulative_buckets() {
    let (mut e, _) = engine(
        r#"
rules:
  - name: slow
    metric: http.server.request.duration
    value: p90
    above: { warning: 0.4, critical: 0.9 }
"#,
    );
    let name = "http.server.request.duration";
    // Lifetime so far: 100 fast requests, p90 in the first bucket.
    assert!(
        e.ingest(&histogram(name, [100, 0, 0, 0], 5.0, 10 * S), 0)
            .is_empty()
    );
    // Then 100 requests in (0.1, 0.5]: p90 of that interval = 0.1 + 0.4 * 0.9 = 0.46.
    let fired = e.ingest(&histogram(name, [100, 100, 0, 0], 35.0, 20 * S), 0);
    assert_eq!(summary(&fired), vec![(State::Firing, "warning")]);
    let v = fired[0].value.unwrap();
    assert!((v - 0.46).abs() < 1e-9, "{v}");
    // Then 10 in (0.5, 1] and 90 above 1 s: the open bucket reports its lower bound, 1.
    let worse = e.ingest(&histogram(name, [100, 100, 10, 90], 150.0, 30 * S), 0);
    assert_eq!(summary(&worse), vec![(State::Firing, "critical")]);
    assert_eq!(worse[0].value, Some(1.0));
    // No requests in the next interval: nothing to judge, nothing changes.
    assert!(
        e.ingest(&histogram(name, [100, 100, 10, 90], 150.0, 40 * S), 0)
            .is_empty()
    );
    // Then only fast ones again.
    let ok = e.ingest(&histogram(name, [200, 100, 10, 90], 155.0, 50 * S), 0);
    assert_eq!(summary(&ok), vec![(State::Resolved, "critical")]);
}

#[test]
fn histogram_mean() {
    let (mut e, _) = engine(
        r#"
rules:
  - name: slow-mean
    metric: latency
    value: mean
    above: { warning: 0.2 }
"#,
    );
    assert!(
        e.ingest(&histogram("latency", [10, 0, 0, 0], 1.0, 10 * S), 0)
            .is_empty()
    );
    let fired = e.ingest(&histogram("latency", [10, 10, 0, 0], 4.0, 20 * S), 0);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].value, Some(0.3));
}

#[test]
fn match_glob_and_group_by_select_and_shape_series() {
    let (mut e, _) = engine(
        r#"
rules:
  - name: web-cpu
    metric: "system.cpu.*"
    match:
      resource:
        host.name: { regex: "web-[0-9]+" }
      attributes:
        cpu.mode: user
    group_by: [host.name]
    above: { warning: 0.5 }
"#,
    );
    let points = vec![
        point(0.4, 10, &[("cpu", "0"), ("cpu.mode", "user")]),
        point(0.7, 10, &[("cpu", "1"), ("cpu.mode", "user")]),
        point(0.9, 10, &[("cpu", "1"), ("cpu.mode", "idle")]),
    ];
    let fired = e.ingest(
        &gauge_points("system.cpu.utilization", "web-1", points.clone()),
        0,
    );
    // One series per host; the worst user-mode core decides; idle is not matched.
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].value, Some(0.7));
    assert_eq!(fired[0].resource, vec![kv("host.name", "web-1")]);
    assert!(fired[0].attributes.is_empty());
    assert!(
        e.ingest(
            &gauge_points("system.cpu.utilization", "db-1", points.clone()),
            0
        )
        .is_empty()
    );
    assert!(
        e.ingest(
            &gauge_points("system.memory.utilization", "web-10x", points),
            0
        )
        .is_empty()
    );
}

#[test]
fn series_beyond_the_cap_are_counted_not_tracked() {
    let (mut e, registry) = engine(
        r#"
max_series: 2
rules:
  - name: any
    metric: m
    above: { warning: 1 }
"#,
    );
    for host in ["a", "b", "c"] {
        let fired = e.ingest(&gauge("m", host, 5.0, 1), 0);
        assert_eq!(fired.len(), usize::from(host != "c"), "{host}");
    }
    assert_eq!(e.series_count(), 2);
    let text = registry.render();
    assert!(
        text.contains("sluice_threshold_series_dropped_total{connector=\"threshold/t\"} 1"),
        "{text}"
    );
}

#[test]
fn records_follow_the_alert_conventions() {
    let (mut e, _) = engine(CPU_RULE);
    e.ingest(&gauge("system.cpu.utilization", "web-1", 0.93, 0), 0);
    let alerts = e.ingest(&gauge("system.cpu.utilization", "web-1", 0.93, 5 * M), 7);
    let logs = records::to_logs(&alerts);
    assert_eq!(logs.len(), 1);
    assert_eq!(
        logs[0].resource.as_ref().unwrap().attributes,
        vec![kv("host.name", "web-1")]
    );
    let rec = &logs[0].scope_logs[0].log_records[0];
    assert_eq!(rec.event_name, "sluice.alert");
    assert_eq!(rec.severity_number, 17);
    assert_eq!(rec.severity_text, "ERROR");
    assert_eq!(rec.time_unix_nano, 5 * M);
    assert_eq!(rec.observed_time_unix_nano, 7);
    let body = match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body,
        "system.cpu.utilization 0.93 > 0.90 for 5m on host web-1"
    );
    let attr = |k: &str| {
        rec.attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    let s = |v: &str| Some(any_value::Value::StringValue(v.into()));
    assert_eq!(attr("event.name"), s("sluice.alert"));
    assert_eq!(attr("alert.rule"), s("cpu-high"));
    assert_eq!(attr("alert.state"), s("firing"));
    assert_eq!(attr("alert.severity"), s("critical"));
    assert_eq!(attr("alert.for"), s("5m"));
    assert_eq!(
        attr("alert.value"),
        Some(any_value::Value::DoubleValue(0.93))
    );
    assert_eq!(
        attr("alert.threshold"),
        Some(any_value::Value::DoubleValue(0.9))
    );
    let warn = e.ingest(&gauge("system.cpu.utilization", "web-1", 0.5, 6 * M), 8);
    let rec = &records::to_logs(&warn)[0].scope_logs[0].log_records[0];
    assert_eq!(
        (rec.severity_number, rec.severity_text.as_str()),
        (9, "INFO")
    );
}

#[test]
fn config_errors_name_their_key_paths() {
    let errs = errors(
        r#"
rules:
  - metric: m
    above: { warning: 1 }
  - name: b
    metric: m
  - name: c
    metric: m
    above: { warning: 0.9, critical: 0.8 }
  - name: d
    metric: m
    match:
      attributes:
        k: { regex: "(" }
    above: { warning: 1 }
  - name: e
    metric: m
    value: p100
    below: { warning: 1 }
  - name: f
    metric: m
    above: { warning: 1 }
    clear: 2
"#,
    );
    let text = errs.join("\n");
    for expected in [
        "connectors.threshold/t.rules[0].name",
        "connectors.threshold/t.rules[1]: a rule needs `above` or `below`",
        "connectors.threshold/t.rules[2].above.critical",
        "connectors.threshold/t.rules[3].match.attributes.k.regex",
        "connectors.threshold/t.rules[4].value",
        "connectors.threshold/t.rules[5].clear",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert_eq!(errs.len(), 6, "{text}");
    let unknown = errors("rules:\n  - name: a\n    metric: m\n    abov: {warning: 1}\n");
    assert!(unknown.join("\n").contains("abov"), "{unknown:?}");
    assert!(errors("rules: []\n").join("").contains("at least one rule"));
    let typo = errors(
        "rules:\n  - name: a\n    metric: m\n    match:\n      attributes:\n        k: { regx: a }\n    above: {warning: 1}\n",
    )
    .join("\n");
    assert!(
        typo.contains("rules[0].match.attributes.k: unknown key `regx`"),
        "{typo}"
    );
}

struct Sink(Mutex<Vec<Vec<ResourceLogs>>>);

#[async_trait]
impl Consumer<Logs> for Sink {
    async fn consume(&self, batch: Batch<Logs>) {
        self.0.lock().unwrap().push(batch.resources().to_vec());
        batch.settle(&Ok(()));
    }
}

#[tokio::test]
async fn the_connector_settles_metrics_and_sends_alerts_as_logs() {
    let sink = Arc::new(Sink(Mutex::new(Vec::new())));
    let config =
        component("rules:\n  - name: hot\n    metric: temp\n    above: { critical: 50 }\n");
    let built = ThresholdConnectorFactory
        .build(
            &config,
            SignalKind::Metrics,
            AnyConsumer::Logs(sink.clone()),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Metrics(stage) = built.consumer else {
        panic!("takes metrics");
    };
    assert!(
        built.lifecycle.is_some(),
        "a ticker for absence and repeats"
    );
    for v in [20.0, 60.0] {
        let (ack, waiter) = Ack::new();
        let t = if v > 50.0 { 2 } else { 1 };
        stage
            .consume(Batch::from_resources(gauge("temp", "h", v, t)).with_ack(ack))
            .await;
        let outcome: Outcome = waiter.await;
        assert_eq!(outcome, Ok(()));
    }
    let sent = sink.0.lock().unwrap();
    assert_eq!(sent.len(), 1, "one alert batch");
    assert_eq!(
        sent[0][0].scope_logs[0].log_records[0].event_name,
        "sluice.alert"
    );
}

#[test]
fn the_metrics_side_passes_through() {
    struct Null;
    #[async_trait]
    impl Consumer<Metrics> for Null {
        async fn consume(&self, batch: Batch<Metrics>) {
            batch.settle(&Ok(()));
        }
    }
    let next: DynConsumer<Metrics> = Arc::new(Null);
    let config = component("rules:\n  - name: a\n    metric: m\n    absent_for: 1m\n");
    let built = ThresholdConnectorFactory
        .build(
            &config,
            SignalKind::Metrics,
            AnyConsumer::Metrics(next.clone()),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Metrics(consumer) = built.consumer else {
        panic!("metrics in, metrics out");
    };
    assert!(Arc::ptr_eq(&consumer, &next), "forwarded unchanged");
    assert!(built.lifecycle.is_none());
}
