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
