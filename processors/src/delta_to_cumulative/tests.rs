use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};

use super::state::{Accumulator, downscale_for_tests};

fn delta(name: &str, v: i64, start: u64, t: u64) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: name.into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: t,
                        value: Some(number_data_point::Value::AsInt(v)),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn value(r: &[ResourceMetrics]) -> Option<(i64, u64, i32)> {
    let Some(metric::Data::Sum(s)) = &r[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    let p = s.data_points.first()?;
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => {
            Some((i, p.start_time_unix_nano, s.aggregation_temporality))
        }
        _ => None,
    }
}

#[test]
fn deltas_add_up_and_out_of_order_points_are_dropped() {
    let mut acc = Accumulator::new(Duration::from_secs(300), usize::MAX);
    let mut a = delta("c", 3, 100, 200);
    acc.process(&mut a);
    assert_eq!(value(&a), Some((3, 100, 2)));
    let mut b = delta("c", 4, 200, 300);
    acc.process(&mut b);
    assert_eq!(value(&b), Some((7, 100, 2)));
    let mut old = delta("c", 5, 100, 250);
    assert_eq!(acc.process(&mut old).0, 1);
    assert_eq!(value(&old), None);
}

#[test]
fn max_streams_bounds_the_state_and_stale_streams_go() {
    let mut acc = Accumulator::new(Duration::from_millis(20), 1);
    let mut a = delta("a", 1, 1, 2);
    acc.process(&mut a);
    let mut b = delta("b", 1, 1, 2);
    let (dropped, refused) = acc.process(&mut b);
    assert_eq!((dropped, refused), (1, true));
    assert_eq!(acc.streams(), 1);
    std::thread::sleep(Duration::from_millis(60));
    let mut b = delta("b", 1, 1, 2);
    acc.process(&mut b);
    assert_eq!(
        value(&b),
        Some((1, 1, 2)),
        "once `a` went stale there is room for `b`"
    );
    assert_eq!(acc.streams(), 1);
}

#[test]
fn histograms_add_bucket_by_bucket() {
    let hist = |counts: Vec<u64>, t: u64| {
        vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "h".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            start_time_unix_nano: t - 1,
                            time_unix_nano: t,
                            count: counts.iter().sum(),
                            sum: Some(1.0),
                            bucket_counts: counts,
                            explicit_bounds: vec![1.0],
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    };
    let mut acc = Accumulator::new(Duration::from_secs(300), usize::MAX);
    acc.process(&mut hist(vec![1, 2], 10));
    let mut b = hist(vec![3, 4], 20);
    acc.process(&mut b);
    let Some(metric::Data::Histogram(h)) = &b[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    assert_eq!(h.data_points[0].bucket_counts, vec![4, 6]);
    assert_eq!(h.data_points[0].count, 10);
    assert_eq!(h.data_points[0].sum, Some(2.0));
    assert_eq!(h.data_points[0].start_time_unix_nano, 9);
}

#[test]
fn exponential_buckets_merge_to_the_coarser_scale() {
    // Scale 1 buckets at offsets 0..4 merge pairwise at scale 0.
    assert_eq!(
        downscale_for_tests(&(0, vec![1, 2, 3, 4]), 1),
        (0, vec![3, 7])
    );
    assert_eq!(
        downscale_for_tests(&(-3, vec![1, 1, 1]), 1),
        (-2, vec![1, 2])
    );
}

fn exponential_delta(scale: i32, offset: i32, counts: Vec<u64>, t: u64) -> Vec<ResourceMetrics> {
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, exponential_histogram_data_point,
    };
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "e".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        start_time_unix_nano: t - 1,
                        time_unix_nano: t,
                        count: counts.iter().sum(),
                        scale,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset,
                            bucket_counts: counts,
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn exponential_point(
    r: &[ResourceMetrics],
) -> opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint {
    let Some(metric::Data::ExponentialHistogram(h)) = &r[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    h.data_points[0].clone()
}

#[test]
fn far_apart_exponential_buckets_are_downscaled_not_allocated() {
    let mut acc = Accumulator::new(Duration::from_secs(300), usize::MAX);
    acc.process(&mut exponential_delta(0, i32::MIN, vec![1], 10));
    // 2^32 buckets apart: adding them at scale 0 would need a 32 GiB vector.
    let mut b = exponential_delta(0, i32::MAX, vec![2], 20);
    acc.process(&mut b);
    let p = exponential_point(&b);
    let positive = p.positive.unwrap();
    assert!(
        positive.bucket_counts.len() as i64 <= super::state::MAX_BUCKETS,
        "{} buckets",
        positive.bucket_counts.len()
    );
    assert_eq!(
        positive.bucket_counts.iter().sum::<u64>(),
        3,
        "no count lost"
    );
    assert_eq!(p.count, 3);
    assert!(p.scale < 0, "downscaled to fit: scale {}", p.scale);
}

#[test]
fn hostile_scales_do_not_overflow() {
    let mut acc = Accumulator::new(Duration::from_secs(300), usize::MAX);
    acc.process(&mut exponential_delta(i32::MAX, 5, vec![1, 1], 10));
    let mut b = exponential_delta(i32::MIN, -5, vec![1], 20);
    acc.process(&mut b);
    let p = exponential_point(&b);
    assert_eq!(p.count, 3);
    assert_eq!(p.positive.unwrap().bucket_counts.iter().sum::<u64>(), 3);
}

#[test]
fn nearby_exponential_buckets_keep_their_scale() {
    let mut acc = Accumulator::new(Duration::from_secs(300), usize::MAX);
    acc.process(&mut exponential_delta(3, 10, vec![1, 2], 10));
    let mut b = exponential_delta(3, 11, vec![4, 8], 20);
    acc.process(&mut b);
    let p = exponential_point(&b);
    assert_eq!(p.scale, 3);
    let positive = p.positive.unwrap();
    assert_eq!(
        (positive.offset, positive.bucket_counts),
        (10, vec![1, 6, 8])
    );
}
