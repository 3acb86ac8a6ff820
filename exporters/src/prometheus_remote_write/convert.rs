//! OTLP metrics to remote-write time series: one series per label set, its samples in
//! timestamp order, `target_info` per resource, stale points as Prometheus' stale NaN.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, ExponentialHistogramDataPoint, Metric, ResourceMetrics,
    exemplar, metric, number_data_point,
};

use super::proto::{self, BucketSpan, Exemplar, Histogram, Label, Sample, TimeSeries};
use crate::otel_to_prometheus::{Translation, format_float, value_text};

/// Prometheus' stale marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub struct Options<'a> {
    pub translation: &'a Translation,
    pub external_labels: &'a [(String, String)],
    pub target_info: bool,
    pub created_metric: bool,
    pub send_metadata: bool,
}

#[derive(Default)]
pub struct Converted {
    /// Series by their labels, each with samples sorted by time.
    pub series: BTreeMap<Vec<Label>, TimeSeries>,
    pub metadata: BTreeMap<String, proto::MetricMetadata>,
    /// Points that remote write cannot carry (delta temporality), with why.
    pub dropped: Vec<(usize, String)>,
}

fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

fn stale(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

impl Converted {
    fn push(
        &mut self,
        base: &[(String, String)],
        extra: &[(&str, String)],
        name: &str,
        value: f64,
        ts: i64,
    ) -> &mut TimeSeries {
        let labels = self.labels(base, extra, name);
        let series = self
            .series
            .entry(labels.clone())
            .or_insert_with(|| TimeSeries {
                labels,
                ..Default::default()
            });
        series.samples.push(Sample {
            value,
            timestamp: ts,
        });
        series
    }

    fn labels(
        &self,
        base: &[(String, String)],
        extra: &[(&str, String)],
        name: &str,
    ) -> Vec<Label> {
        let mut map: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in base {
            map.insert(k, v);
        }
        for (k, v) in extra {
            map.insert(k, v);
        }
        map.insert("__name__", name);
        map.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| Label {
                name: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn meta(&mut self, options: &Options<'_>, name: &str, kind: i32, metric: &Metric) {
        if options.send_metadata {
            self.metadata
                .entry(name.to_string())
                .or_insert(proto::MetricMetadata {
                    r#type: kind,
                    metric_family_name: name.to_string(),
                    help: metric.description.clone(),
                    unit: metric.unit.clone(),
                });
        }
    }

    /// Sorts each series' samples by time and drops repeats of a timestamp (the last wins).
    pub fn finish(&mut self) {
        for series in self.series.values_mut() {
            series.samples.sort_by_key(|s| s.timestamp);
            dedup_last(&mut series.samples, |s| s.timestamp);
            series.histograms.sort_by_key(|h| h.timestamp);
            dedup_last(&mut series.histograms, |h| h.timestamp);
        }
    }
}

fn dedup_last<T, K: PartialEq>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if let Some(last) = out.last_mut()
            && key(last) == key(&item)
        {
            *last = item;
            continue;
        }
        out.push(item);
    }
    *items = out;
}

pub fn convert(resources: &[ResourceMetrics], options: &Options<'_>) -> Converted {
    let mut out = Converted::default();
    let tr = options.translation;
    for rm in resources {
        let resource = rm.resource.as_ref();
        let mut latest = 0u64;
        for sm in &rm.scope_metrics {
            let mut base = tr.base_labels(resource, sm.scope.as_ref());
            for (k, v) in options.external_labels {
                if !base.iter().any(|(n, _)| n == k) {
                    base.push((k.clone(), v.clone()));
                }
            }
            for metric in &sm.metrics {
                latest = latest.max(convert_metric(&mut out, options, &base, metric));
            }
        }
        if options.target_info
            && latest > 0
            && let Some(mut labels) = tr.target_info(resource)
        {
            for (k, v) in options.external_labels {
                if !labels.iter().any(|(n, _)| n == k) {
                    labels.push((k.clone(), v.clone()));
                }
            }
            let name = if tr.namespace.is_empty() {
                "target_info".to_string()
            } else {
                format!("{}_target_info", tr.namespace)
            };
            out.push(&labels, &[], &name, 1.0, ms(latest));
        }
    }
    out.finish();
    out
}

fn attributes(
    tr: &Translation,
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|a| (tr.label_name(&a.key), value_text(&a.value)))
        .collect()
}

fn with(base: &[(String, String)], own: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut all = base.to_vec();
    for (k, v) in own {
        match all.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => all.push((k, v)),
        }
    }
    all
}

fn exemplars(e: &[opentelemetry_proto::tonic::metrics::v1::Exemplar]) -> Vec<Exemplar> {
    e.iter()
        .map(|e| {
            let mut labels = Vec::new();
            if !e.trace_id.is_empty() {
                labels.push(Label {
                    name: "trace_id".into(),
                    value: hex::encode(&e.trace_id),
                });
            }
            if !e.span_id.is_empty() {
                labels.push(Label {
                    name: "span_id".into(),
                    value: hex::encode(&e.span_id),
                });
            }
            Exemplar {
                labels,
                value: match e.value {
                    Some(exemplar::Value::AsDouble(d)) => d,
                    Some(exemplar::Value::AsInt(i)) => i as f64,
                    None => 0.0,
                },
                timestamp: ms(e.time_unix_nano),
            }
        })
        .collect()
}

/// Converts one metric; returns its latest timestamp (ns).
fn convert_metric(
    out: &mut Converted,
    options: &Options<'_>,
    base: &[(String, String)],
    metric: &Metric,
) -> u64 {
    let tr = options.translation;
    let name = tr.metric_name(metric);
    let mut latest = 0;
    let value_of = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    };
    match &metric.data {
        Some(metric::Data::Gauge(g)) => {
            out.meta(options, &name, proto::GAUGE, metric);
            for p in &g.data_points {
                latest = latest.max(p.time_unix_nano);
                let v = if stale(p.flags) {
                    f64::from_bits(STALE_NAN)
                } else {
                    value_of(&p.value)
                };
                let labels = with(base, attributes(tr, &p.attributes));
                let series = out.push(&labels, &[], &name, v, ms(p.time_unix_nano));
                series.exemplars.extend(exemplars(&p.exemplars));
            }
        }
        Some(metric::Data::Sum(s)) => {
            if s.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                out.dropped.push((s.data_points.len(), format!("`{}` is a delta sum; remote write takes cumulative data (put a deltatocumulative processor in front)", metric.name)));
                return 0;
            }
            out.meta(
                options,
                &name,
                if s.is_monotonic {
                    proto::COUNTER
                } else {
                    proto::GAUGE
                },
                metric,
            );
            for p in &s.data_points {
                latest = latest.max(p.time_unix_nano);
                let v = if stale(p.flags) {
                    f64::from_bits(STALE_NAN)
                } else {
                    value_of(&p.value)
                };
                let labels = with(base, attributes(tr, &p.attributes));
                let series = out.push(&labels, &[], &name, v, ms(p.time_unix_nano));
                series.exemplars.extend(exemplars(&p.exemplars));
                if options.created_metric && s.is_monotonic && p.start_time_unix_nano > 0 {
                    let created =
                        format!("{}_created", name.strip_suffix("_total").unwrap_or(&name));
                    out.push(
                        &labels,
                        &[],
                        &created,
                        (p.start_time_unix_nano / 1_000_000) as f64 / 1000.0,
                        ms(p.time_unix_nano),
                    );
                }
            }
        }
        Some(metric::Data::Histogram(h)) => {
            if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                out.dropped.push((h.data_points.len(), format!("`{}` is a delta histogram; remote write takes cumulative data (put a deltatocumulative processor in front)", metric.name)));
                return 0;
            }
            out.meta(options, &name, proto::HISTOGRAM, metric);
            for p in &h.data_points {
                latest = latest.max(p.time_unix_nano);
                let ts = ms(p.time_unix_nano);
                let labels = with(base, attributes(tr, &p.attributes));
                let is_stale = stale(p.flags);
                let nan = f64::from_bits(STALE_NAN);
                let mut cumulative = 0u64;
                for (i, count) in p.bucket_counts.iter().enumerate() {
                    cumulative = cumulative.saturating_add(*count);
                    let le = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    let v = if is_stale { nan } else { cumulative as f64 };
                    out.push(
                        &labels,
                        &[("le", format_float(le))],
                        &format!("{name}_bucket"),
                        v,
                        ts,
                    );
                }
                if p.bucket_counts.is_empty() {
                    let v = if is_stale { nan } else { p.count as f64 };
                    out.push(
                        &labels,
                        &[("le", "+Inf".into())],
                        &format!("{name}_bucket"),
                        v,
                        ts,
                    );
                }
                if let Some(sum) = p.sum.or(Some(0.0)).filter(|_| p.sum.is_some() || is_stale) {
                    out.push(
                        &labels,
                        &[],
                        &format!("{name}_sum"),
                        if is_stale { nan } else { sum },
                        ts,
                    );
                }
                let series = out.push(
                    &labels,
                    &[],
                    &format!("{name}_count"),
                    if is_stale { nan } else { p.count as f64 },
                    ts,
                );
                series.exemplars.extend(exemplars(&p.exemplars));
                if options.created_metric && p.start_time_unix_nano > 0 {
                    out.push(
                        &labels,
                        &[],
                        &format!("{name}_created"),
                        (p.start_time_unix_nano / 1_000_000) as f64 / 1000.0,
                        ts,
                    );
                }
            }
        }
        Some(metric::Data::Summary(s)) => {
            out.meta(options, &name, proto::SUMMARY, metric);
            for p in &s.data_points {
                latest = latest.max(p.time_unix_nano);
                let ts = ms(p.time_unix_nano);
                let labels = with(base, attributes(tr, &p.attributes));
                let is_stale = stale(p.flags);
                let nan = f64::from_bits(STALE_NAN);
                for q in &p.quantile_values {
                    out.push(
                        &labels,
                        &[("quantile", format_float(q.quantile))],
                        &name,
                        if is_stale { nan } else { q.value },
                        ts,
                    );
                }
                out.push(
                    &labels,
                    &[],
                    &format!("{name}_sum"),
                    if is_stale { nan } else { p.sum },
                    ts,
                );
                out.push(
                    &labels,
                    &[],
                    &format!("{name}_count"),
                    if is_stale { nan } else { p.count as f64 },
                    ts,
                );
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                out.dropped.push((h.data_points.len(), format!("`{}` is a delta exponential histogram; remote write takes cumulative data (put a deltatocumulative processor in front)", metric.name)));
                return 0;
            }
            out.meta(options, &name, proto::HISTOGRAM, metric);
            for p in &h.data_points {
                latest = latest.max(p.time_unix_nano);
                let native = match native_histogram(p) {
                    Ok(native) => native,
                    Err(why) => {
                        out.dropped.push((1, format!("`{}`: {why}", metric.name)));
                        continue;
                    }
                };
                let labels = with(base, attributes(tr, &p.attributes));
                let labels = out.labels(&labels, &[], &name);
                let series = out
                    .series
                    .entry(labels.clone())
                    .or_insert_with(|| TimeSeries {
                        labels,
                        ..Default::default()
                    });
                series.histograms.push(native);
            }
        }
        None => {}
    }
    latest
}

/// An exponential histogram as a native histogram: the scale is the schema (finer scales are
/// merged down to 8), OTel bucket i (base^i, base^(i+1)] is Prometheus bucket i+1. An error
/// says why the point cannot be sent.
pub fn native_histogram(p: &ExponentialHistogramDataPoint) -> Result<Histogram, String> {
    if p.scale < -4 {
        return Err(format!(
            "scale {} is below Prometheus' smallest schema (-4)",
            p.scale
        ));
    }
    // The scale comes from the network: shifting an i64 by 63 already merges everything.
    let down = (i64::from(p.scale) - 8).clamp(0, 63);
    let schema = p.scale.min(8);
    let buckets = |b: &Option<
        opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets,
    >|
     -> Result<(Vec<BucketSpan>, Vec<i64>), String> {
        let Some(b) = b else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Merge 2^down neighbouring buckets into one. Indices in i64: `offset + i` may
        // overflow an i32.
        let mut merged: Vec<(i64, u64)> = Vec::new();
        for (i, c) in b.bucket_counts.iter().enumerate() {
            let index = (i64::from(b.offset) + i as i64) >> down;
            match merged.last_mut() {
                Some((last, total)) if *last == index => *total = total.saturating_add(*c),
                _ => merged.push((index, *c)),
            }
        }
        let (Some(&(first, _)), Some(&(last, _))) = (merged.first(), merged.last()) else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Indices only grow, one step at a time: the span is at most the number of buckets.
        let len = usize::try_from(last - first + 1)
            .map_err(|_| "bucket indices out of order".to_string())?;
        let mut counts = vec![0u64; len];
        for (index, c) in merged {
            if let Some(slot) = usize::try_from(index - first)
                .ok()
                .and_then(|at| counts.get_mut(at))
            {
                *slot = slot.saturating_add(c);
            }
        }
        let mut deltas = Vec::with_capacity(counts.len());
        let mut previous = 0i64;
        for c in &counts {
            // Prometheus counts are i64; a larger count is clamped rather than wrapped.
            let c = i64::try_from(*c).unwrap_or(i64::MAX);
            deltas.push(c.wrapping_sub(previous));
            previous = c;
        }
        // Prometheus bucket i+1 is OTel bucket i; span offsets and lengths are 32-bit.
        let offset = i32::try_from(first + 1)
            .map_err(|_| format!("bucket offset {} does not fit remote write", first + 1))?;
        let length = u32::try_from(counts.len())
            .map_err(|_| format!("{} buckets do not fit remote write", counts.len()))?;
        Ok((vec![BucketSpan { offset, length }], deltas))
    };
    let (positive_spans, positive_deltas) = buckets(&p.positive)?;
    let (negative_spans, negative_deltas) = buckets(&p.negative)?;
    let is_stale = stale(p.flags);
    Ok(Histogram {
        count_int: p.count,
        sum: if is_stale {
            f64::from_bits(STALE_NAN)
        } else {
            p.sum.unwrap_or(0.0)
        },
        schema,
        zero_threshold: p.zero_threshold,
        zero_count_int: p.zero_count,
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        reset_hint: 0,
        timestamp: ms(p.time_unix_nano),
    })
}

/// Splits series into requests whose encoded size stays under `max_bytes` (a series larger
/// than that alone goes in a request of its own).
pub fn split(
    series: Vec<TimeSeries>,
    metadata: Vec<proto::MetricMetadata>,
    max_bytes: usize,
) -> Vec<proto::WriteRequest> {
    use prost::Message;
    let mut requests = Vec::new();
    let mut current = proto::WriteRequest::default();
    let mut size = 0usize;
    for ts in series {
        // A repeated field costs its length prefix and tag too.
        let len = ts.encoded_len() + 6;
        if size + len > max_bytes && !current.timeseries.is_empty() {
            requests.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.timeseries.push(ts);
    }
    for m in metadata {
        let len = m.encoded_len() + 6;
        if size + len > max_bytes && !(current.timeseries.is_empty() && current.metadata.is_empty())
        {
            requests.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.metadata.push(m);
    }
    if !current.timeseries.is_empty() || !current.metadata.is_empty() {
        requests.push(current);
    }
    requests
}

/// Label sets of every series, for tests.
#[cfg(test)]
pub fn names(c: &Converted) -> std::collections::HashMap<String, usize> {
    let mut out = std::collections::HashMap::new();
    for labels in c.series.keys() {
        if let Some(n) = labels.iter().find(|l| l.name == "__name__") {
            *out.entry(n.value.clone()).or_insert(0) += 1;
        }
    }
    out
}
