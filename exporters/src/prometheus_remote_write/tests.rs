use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::convert::{self, Options};
use super::proto::{Label, WriteRequest};
use crate::otel_to_prometheus::{ResourceLabels, Translation, TranslationStrategy};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn point(attrs: Vec<KeyValue>, v: f64, t: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        start_time_unix_nano: 1,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn resource(metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "api"),
                kv("service.instance.id", "i-1"),
                kv("host.name", "h"),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1".into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn translation() -> Translation {
    Translation {
        namespace: String::new(),
        strategy: TranslationStrategy::UnderscoreEscapingWithSuffixes,
        resource_labels: ResourceLabels::None,
        scope_labels: true,
    }
}

fn options<'a>(tr: &'a Translation, external: &'a [(String, String)]) -> Options<'a> {
    Options {
        translation: tr,
        external_labels: external,
        target_info: true,
        created_metric: false,
        send_metadata: true,
    }
}

fn label<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

#[test]
fn sums_histograms_and_target_info_become_series() {
    let counter = Metric {
        name: "http.requests".into(),
        unit: "1".into(),
        data: Some(metric::Data::Sum(Sum {
            // Out of order on purpose: series must go out sorted by time.
            data_points: vec![
                point(vec![kv("http.method", "GET")], 7.0, 2_000_000_000),
                point(vec![kv("http.method", "GET")], 5.0, 1_000_000_000),
            ],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 1_000_000_000,
                count: 6,
                sum: Some(2.5),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.1, 1.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let tr = translation();
    let external = vec![("cluster".to_string(), "eu-1".to_string())];
    let c = convert::convert(
        &[resource(vec![counter, histogram])],
        &options(&tr, &external),
    );
    let names = convert::names(&c);
    assert_eq!(names["http_requests_total"], 1);
    assert_eq!(names["latency_seconds_bucket"], 3);
    assert_eq!(names["latency_seconds_sum"], 1);
    assert_eq!(names["latency_seconds_count"], 1);
    assert_eq!(names["target_info"], 1);
    let (labels, series) = c
        .series
        .iter()
        .find(|(l, _)| label(l, "__name__") == Some("http_requests_total"))
        .unwrap();
    assert_eq!(label(labels, "job"), Some("api"));
    assert_eq!(label(labels, "instance"), Some("i-1"));
    assert_eq!(label(labels, "http_method"), Some("GET"));
    assert_eq!(label(labels, "cluster"), Some("eu-1"));
    assert_eq!(label(labels, "otel_scope_name"), Some("lib"));
    let times: Vec<i64> = series.samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(times, vec![1000, 2000]);
    let mut names_sorted: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    let copy = names_sorted.clone();
    names_sorted.sort();
    assert_eq!(names_sorted, copy, "labels are sorted");
    let (labels, _) = c
        .series
        .iter()
        .find(|(l, _)| label(l, "__name__") == Some("target_info"))
        .unwrap();
    assert_eq!(label(labels, "host_name"), Some("h"));
    let inf = c
        .series
        .iter()
        .find(|(l, _)| label(l, "le") == Some("+Inf"))
        .unwrap();
    assert_eq!(inf.1.samples[0].value, 6.0);
    assert_eq!(c.metadata["http_requests_total"].r#type, 1);
}

#[test]
fn delta_sums_are_refused_and_stale_points_are_stale_nan() {
    let delta = Metric {
        name: "d".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point(vec![], 1.0, 1)],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let mut stale = point(vec![], 0.0, 1_000_000);
    stale.flags = 1;
    stale.value = None;
    let gauge = Metric {
        name: "g".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![stale],
        })),
        ..Default::default()
    };
    let tr = translation();
    let c = convert::convert(&[resource(vec![delta, gauge])], &options(&tr, &[]));
    assert_eq!(c.dropped.len(), 1);
    let (_, g) = c
        .series
        .iter()
        .find(|(l, _)| label(l, "__name__") == Some("g"))
        .unwrap();
    assert_eq!(g.samples[0].value.to_bits(), convert::STALE_NAN);
}

#[test]
fn requests_stay_under_the_size_limit() {
    let points: Vec<NumberDataPoint> = (0..500)
        .map(|i| point(vec![kv("i", &i.to_string())], i as f64, 1_000_000))
        .collect();
    let gauge = Metric {
        name: "g".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    };
    let tr = translation();
    let c = convert::convert(&[resource(vec![gauge])], &options(&tr, &[]));
    let series: Vec<_> = c.series.into_values().collect();
    let total = series.len();
    let requests = convert::split(series, vec![], 4000);
    assert!(requests.len() > 1);
    let mut seen = 0;
    for r in &requests {
        assert!(r.encoded_len() <= 4000, "{}", r.encoded_len());
        seen += r.timeseries.len();
        let decoded = WriteRequest::decode(r.encode_to_vec().as_slice()).unwrap();
        assert_eq!(&decoded, r);
    }
    assert_eq!(seen, total, "no series lost or duplicated");
}

mod send_line {
    use std::sync::Arc;
    use std::time::Duration;

    use sluice_pipeline::DeliveryError;

    use super::super::{RetryBounds, SendLine};

    /// The remote write defaults scaled down: attempts of 50 ms, backoff up to 20 ms.
    fn bounds(max_elapsed_ms: u64) -> RetryBounds {
        RetryBounds {
            enabled: true,
            longest_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_millis(max_elapsed_ms),
            timeout: Duration::from_millis(50),
            slack: Duration::from_millis(50),
        }
    }

    fn throttled(ms: u64) -> Result<(), DeliveryError> {
        Err(DeliveryError::Throttled {
            reason: "429".into(),
            retry_after: Duration::from_millis(ms),
        })
    }

    /// Waits for `id`'s turn in the background: the task ends once the batch may send.
    fn queue(line: &Arc<SendLine>, id: u64) -> tokio::task::JoinHandle<()> {
        let line = line.clone();
        tokio::spawn(async move { line.wait_turn(id).await })
    }

    // On tokio's paused clock: the waits are exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_keeps_later_batches_waiting() {
        let line = Arc::new(SendLine::new(bounds(10_000)));
        line.wait_turn(1).await;
        line.finish(1, &throttled(1500));
        let later = queue(&line, 2);
        // Well past the attempt's window (timeout + backoff), still inside the Retry-After.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !later.is_finished(),
            "a later batch must not overtake one waiting out a Retry-After"
        );
        line.wait_turn(1).await;
        assert!(!later.is_finished());
        line.finish(1, &Ok(()));
        tokio::time::timeout(Duration::from_secs(1), later)
            .await
            .expect("the earlier batch delivered: the later one goes")
            .unwrap();
    }

    // On tokio's paused clock: the waits are exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_with_the_retry_budget() {
        let line = Arc::new(SendLine::new(bounds(2000)));
        line.wait_turn(1).await;
        line.finish(1, &throttled(1000));
        let later = queue(&line, 2);
        tokio::time::sleep(Duration::from_millis(700)).await;
        line.wait_turn(1).await;
        assert!(!later.is_finished());
        // A hint ending past the budget: the helper gives up at once, so the line lets go.
        line.finish(1, &throttled(1500));
        tokio::time::timeout(Duration::from_millis(500), later)
            .await
            .expect("a batch the helper gave up on no longer holds the line")
            .unwrap();
    }

    // On tokio's paused clock: the waits are exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_batch_never_tried_again_stops_holding_the_line() {
        let line = Arc::new(SendLine::new(bounds(10_000)));
        line.wait_turn(1).await;
        line.finish(1, &throttled(300));
        let later = queue(&line, 2);
        // The helper was stopped (say, shut down) and never retried batch 1.
        tokio::time::timeout(Duration::from_secs(2), later)
            .await
            .expect("the place is held only until the retry was due")
            .unwrap();
    }

    // On tokio's paused clock: the waits are exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn without_retries_a_failure_is_final() {
        let line = Arc::new(SendLine::new(RetryBounds {
            enabled: false,
            ..bounds(10_000)
        }));
        line.wait_turn(1).await;
        line.finish(1, &throttled(1500));
        tokio::time::timeout(Duration::from_millis(50), line.wait_turn(2))
            .await
            .expect("nothing will retry batch 1");
    }
}

#[test]
fn native_histograms_with_hostile_offsets_and_scales_are_refused_not_panicking() {
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogramDataPoint, exponential_histogram_data_point::Buckets,
    };
    let point = |scale: i32, offset: i32| ExponentialHistogramDataPoint {
        scale,
        count: 3,
        positive: Some(Buckets {
            offset,
            bucket_counts: vec![1, 1, 1],
        }),
        ..Default::default()
    };
    // OTel bucket i is Prometheus bucket i+1: past i32::MAX it cannot be written.
    let refused = convert::native_histogram(&point(0, i32::MAX));
    assert!(refused.is_err_and(|why| why.contains("offset")));
    // A scale far above 8 merges everything into one or two buckets.
    let merged = convert::native_histogram(&point(i32::MAX, i32::MAX - 1)).unwrap();
    assert_eq!(merged.schema, 8);
    let total: i64 = merged
        .positive_deltas
        .iter()
        .scan(0i64, |count, delta| {
            *count += delta;
            Some(*count)
        })
        .sum();
    assert_eq!(total, 3);
}
