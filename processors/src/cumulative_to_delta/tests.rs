use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};

use super::config::{InitialValue, Matcher, Settings};
use super::state::Tracker;

fn settings(initial: InitialValue) -> Settings {
    Settings {
        max_staleness: std::time::Duration::ZERO,
        initial_value: initial,
        include: Matcher::default(),
        exclude: Matcher::default(),
    }
}

fn counter(name: &str, v: f64, start: u64, t: u64) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: name.into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        attributes: vec![KeyValue {
                            key: "k".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("v".into())),
                            }),
                            ..Default::default()
                        }],
                        start_time_unix_nano: start,
                        time_unix_nano: t,
                        value: Some(number_data_point::Value::AsDouble(v)),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn points(r: &[ResourceMetrics]) -> Vec<(f64, u64, u64, i32)> {
    let Some(metric::Data::Sum(s)) = &r[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    s.data_points
        .iter()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsDouble(d)) => (
                d,
                p.start_time_unix_nano,
                p.time_unix_nano,
                s.aggregation_temporality,
            ),
            _ => panic!(),
        })
        .collect()
}

#[test]
fn deltas_between_points_with_resets() {
    let mut t = Tracker::new(settings(InitialValue::Keep));
    let mut a = counter("c", 10.0, 1, 100);
    t.process(&mut a);
    assert_eq!(points(&a), vec![(10.0, 1, 100, 1)]);
    let mut b = counter("c", 15.0, 1, 200);
    t.process(&mut b);
    assert_eq!(points(&b), vec![(5.0, 100, 200, 1)]);
    let mut c = counter("c", 3.0, 250, 300);
    t.process(&mut c);
    assert_eq!(
        points(&c),
        vec![(3.0, 250, 300, 1)],
        "a reset sends the whole new value"
    );
    let mut old = counter("c", 20.0, 1, 300);
    assert_eq!(
        t.process(&mut old),
        1,
        "a point not newer than the last is dropped"
    );
}

#[test]
fn initial_value_decides_the_first_point() {
    let mut drop = Tracker::new(settings(InitialValue::Drop));
    let mut a = counter("c", 10.0, 1, 100);
    assert_eq!(drop.process(&mut a), 1);
    let mut b = counter("c", 12.0, 1, 200);
    drop.process(&mut b);
    assert_eq!(points(&b), vec![(2.0, 100, 200, 1)]);
    // auto: a start time from before sluice started is not sent.
    let mut auto = Tracker::new(settings(InitialValue::Auto));
    let mut a = counter("c", 10.0, 1, 100);
    assert_eq!(auto.process(&mut a), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut fresh = counter("d", 10.0, now + 1, now + 2);
    assert_eq!(auto.process(&mut fresh), 0);
}

#[test]
fn include_and_exclude_select_metrics() {
    let node = sluice_config::parse_yaml(
        "t.yaml",
        "include:\n  match_type: regexp\n  metrics: ['^keep\\..*']\n",
    )
    .unwrap();
    let config = sluice_config::ComponentConfig {
        kind: sluice_config::ComponentKind::Processor,
        id: sluice_config::ComponentId::new("cumulativetodelta"),
        pos: sluice_config::Pos::new("t.yaml", 1, 1),
        path: "processors.cumulativetodelta".into(),
        node,
    };
    let mut s = super::config::decode(&config, &Default::default()).unwrap();
    s.initial_value = InitialValue::Keep;
    let mut t = Tracker::new(s);
    let mut other = counter("other", 1.0, 1, 100);
    t.process(&mut other);
    assert_eq!(points(&other)[0].3, 2, "not selected: stays cumulative");
    let mut kept = counter("keep.me", 1.0, 1, 100);
    t.process(&mut kept);
    assert_eq!(points(&kept)[0].3, 1);
    let bad = sluice_config::parse_yaml("t.yaml", "include:\n  metrics: [a]\n").unwrap();
    let config = sluice_config::ComponentConfig {
        node: bad,
        ..config
    };
    assert!(super::config::decode(&config, &Default::default()).is_err());
}

#[test]
fn a_stream_unseen_for_max_staleness_is_forgotten() {
    let mut t = Tracker::new(Settings {
        max_staleness: std::time::Duration::from_secs(1),
        ..settings(InitialValue::Keep)
    });
    t.process(&mut counter("c", 10.0, 1, 100));
    assert_eq!(t.streams(), 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Another stream's point runs the sweep; the stale one goes, so its next point is a
    // first point again (sent whole under `initial_value: keep`).
    t.process(&mut counter("d", 1.0, 1, 100));
    assert_eq!(t.streams(), 1);
    let mut again = counter("c", 15.0, 1, 200);
    t.process(&mut again);
    assert_eq!(points(&again), vec![(15.0, 1, 200, 1)]);
}

fn exponential(
    offset: i32,
    counts: Vec<u64>,
    t: u64,
    temporality: AggregationTemporality,
) -> Vec<ResourceMetrics> {
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, exponential_histogram_data_point,
    };
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "e".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        start_time_unix_nano: 1,
                        time_unix_nano: t,
                        count: counts.iter().sum(),
                        scale: 0,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset,
                            bucket_counts: counts,
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: temporality as i32,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

#[test]
fn exponential_offsets_at_the_ends_of_i32_do_not_overflow() {
    let mut tracker = Tracker::new(settings(InitialValue::Auto));
    let cumulative = AggregationTemporality::Cumulative;
    tracker.process(&mut exponential(i32::MAX, vec![1, 1], 10, cumulative));
    // The last point's buckets sit 2^32 buckets below: a reset, not a panic.
    let mut next = exponential(i32::MIN, vec![2, 2], 20, cumulative);
    tracker.process(&mut next);
    let Some(metric::Data::ExponentialHistogram(h)) = &next[0].scope_metrics[0].metrics[0].data
    else {
        panic!()
    };
    assert_eq!(h.data_points.len(), 1);
    assert_eq!(h.data_points[0].count, 4, "a reset sends the whole point");
}
