use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::accumulator::Accumulator;
use super::render::{self, Format, Options};
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

fn resource(metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "api"),
                kv("service.instance.id", "i-1"),
                kv("region", "eu"),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn sum(value: i64, temporality: AggregationTemporality, t: u64) -> Metric {
    Metric {
        name: "http.requests".into(),
        description: "Requests.".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: vec![kv("http.method", "GET")],
                time_unix_nano: t,
                value: Some(number_data_point::Value::AsInt(value)),
                ..Default::default()
            }],
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn translation() -> Translation {
    Translation {
        namespace: "app".into(),
        strategy: TranslationStrategy::UnderscoreEscapingWithSuffixes,
        resource_labels: ResourceLabels::None,
        scope_labels: false,
    }
}

fn text(acc: &Accumulator, format: Format, ts: bool) -> String {
    let constant = vec![("dc".to_string(), "x".to_string())];
    render::render(
        acc,
        &Options {
            format,
            send_timestamps: ts,
            const_labels: &constant,
            target_info_name: "app_target_info",
        },
    )
}

#[test]
fn deltas_accumulate_and_names_get_suffixes() {
    let mut acc = Accumulator::default();
    let tr = translation();
    acc.add(
        &[resource(vec![sum(
            3,
            AggregationTemporality::Delta,
            1_000_000_000,
        )])],
        &tr,
    );
    acc.add(
        &[resource(vec![sum(
            4,
            AggregationTemporality::Delta,
            2_000_000_000,
        )])],
        &tr,
    );
    let out = text(&acc, Format::Text, false);
    assert!(
        out.contains("# TYPE app_http_requests_total counter\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "app_http_requests_total{dc=\"x\",http_method=\"GET\",instance=\"i-1\",job=\"api\"} 7\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("app_target_info{dc=\"x\",instance=\"i-1\",job=\"api\",region=\"eu\"} 1\n"),
        "{out}"
    );
    let om = text(&acc, Format::OpenMetrics, true);
    assert!(om.contains("# TYPE app_http_requests counter\n"), "{om}");
    assert!(om.contains("app_http_requests_total{dc=\"x\",http_method=\"GET\",instance=\"i-1\",job=\"api\"} 7 2.000\n"), "{om}");
    assert!(om.ends_with("# EOF\n"));
}

#[test]
fn cumulative_values_replace_and_expire() {
    let mut acc = Accumulator::default();
    let tr = translation();
    acc.add(
        &[resource(vec![sum(
            3,
            AggregationTemporality::Cumulative,
            1,
        )])],
        &tr,
    );
    acc.add(
        &[resource(vec![sum(
            5,
            AggregationTemporality::Cumulative,
            2,
        )])],
        &tr,
    );
    assert!(text(&acc, Format::Text, false).contains("} 5\n"));
    acc.expire(std::time::Duration::ZERO);
    assert!(!text(&acc, Format::Text, false).contains("http_requests"));
}

#[test]
fn exponential_histograms_become_explicit_buckets() {
    let mut acc = Accumulator::default();
    let m = Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                count: 6,
                sum: Some(9.0),
                scale: 0,
                zero_count: 1,
                positive: Some(exponential_histogram_data_point::Buckets {
                    offset: 0,
                    bucket_counts: vec![2, 3],
                }),
                time_unix_nano: 1,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    acc.add(&[resource(vec![m])], &translation());
    let out = text(&acc, Format::Text, false);
    assert!(
        out.contains(
            "app_latency_seconds_bucket{dc=\"x\",instance=\"i-1\",job=\"api\",le=\"4\"} 6\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "app_latency_seconds_bucket{dc=\"x\",instance=\"i-1\",job=\"api\",le=\"+Inf\"} 6\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("app_latency_seconds_count{dc=\"x\",instance=\"i-1\",job=\"api\"} 6\n"),
        "{out}"
    );
}

#[test]
fn an_openmetrics_counter_without_total_is_written_as_unknown() {
    let mut acc = Accumulator::default();
    let tr = Translation {
        strategy: TranslationStrategy::UnderscoreEscapingWithoutSuffixes,
        ..translation()
    };
    acc.add(
        &[resource(vec![sum(
            3,
            AggregationTemporality::Cumulative,
            1_000_000_000,
        )])],
        &tr,
    );
    let om = text(&acc, Format::OpenMetrics, false);
    assert!(om.contains("# TYPE app_http_requests unknown\n"), "{om}");
    assert!(
        om.contains(
            "app_http_requests{dc=\"x\",http_method=\"GET\",instance=\"i-1\",job=\"api\"} 3\n"
        ),
        "{om}"
    );
    assert!(
        !om.contains("# TYPE app_http_requests counter"),
        "an OpenMetrics counter's samples must end in _total: {om}"
    );
    // The Prometheus text format has no such rule: the counter stays a counter.
    let plain = text(&acc, Format::Text, false);
    assert!(
        plain.contains("# TYPE app_http_requests counter\n"),
        "{plain}"
    );
}

#[test]
fn delta_up_down_sums_are_dropped_as_upstream() {
    let mut acc = Accumulator::default();
    let tr = translation();
    let updown = |v: i64, t: u64| {
        let mut m = sum(v, AggregationTemporality::Delta, t);
        m.name = "queue.change".into();
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.is_monotonic = false;
        }
        m
    };
    acc.add(&[resource(vec![updown(3, 1_000_000_000)])], &tr);
    acc.add(&[resource(vec![updown(-1, 2_000_000_000)])], &tr);
    let out = text(&acc, Format::Text, false);
    assert!(!out.contains("queue_change"), "{out}");
}
