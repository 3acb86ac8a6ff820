//! Which series a data point belongs to, the value the model sees for it, and the bounded
//! table of per-series state.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sluice_pipeline::proto::common::v1::KeyValue;
use sluice_pipeline::proto::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, metric::Data,
    number_data_point,
};

use super::model::{Evaluation, Model, Params};

/// A fixed-size digest of metric name, resource attributes and point attributes (each set
/// sorted by key, so attribute order does not split a series).
pub type SeriesKey = [u8; 16];

/// The OTLP flag marking a point that carries no value (a stale marker).
const NO_RECORDED_VALUE: u32 = 1;

struct Tracked {
    model: Model,
    /// Timestamp of the newest point evaluated; older or equal ones are replays.
    last_time: u64,
    /// Last raw value of a monotonic cumulative sum: (value, time, start time).
    previous: Option<(f64, u64, u64)>,
}

/// One evaluated point: where it is in the input and how it was judged.
#[derive(Clone, Debug)]
pub struct Finding {
    pub metric: usize,
    pub point: usize,
    /// True when the value is the per-second rate of a cumulative counter.
    pub rate: bool,
    pub evaluation: Evaluation,
}

/// Findings of one input resource.
#[derive(Clone, Debug, Default)]
pub struct ResourceFindings {
    pub resource: usize,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Points of new series not evaluated because the table is full.
    pub refused: u64,
    /// Series forgotten for being idle longer than `forget_after`.
    pub forgotten: u64,
}

pub struct Detector {
    params: Params,
    metrics: Vec<String>,
    max_series: usize,
    /// Nanoseconds; 0 never forgets.
    forget_after: u64,
    series: HashMap<SeriesKey, Tracked>,
    /// Newest point timestamp seen in any series: the data's own clock.
    newest: u64,
    /// `newest` at the last sweep for idle series, so a full table is not scanned per point.
    last_sweep: Option<u64>,
}

impl Detector {
    pub fn new(params: Params, metrics: Vec<String>, max_series: usize, forget_after: u64) -> Self {
        Detector {
            params,
            metrics,
            max_series,
            forget_after,
            series: HashMap::new(),
            newest: 0,
            last_sweep: None,
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Series whose alert is firing now.
    pub fn firing_count(&self) -> usize {
        self.series
            .values()
            .filter(|t| t.model.firing().is_some())
            .count()
    }

    /// Makes room by forgetting idle series, at most once per tenth of `forget_after` of
    /// data time.
    fn sweep(&mut self, counts: &mut Counts) {
        if self.forget_after == 0
            || self
                .last_sweep
                .is_some_and(|at| self.newest.saturating_sub(at) < self.forget_after / 10)
        {
            return;
        }
        self.last_sweep = Some(self.newest);
        let cutoff = self.newest.saturating_sub(self.forget_after);
        let before = self.series.len();
        self.series.retain(|_, t| t.last_time >= cutoff);
        counts.forgotten += (before - self.series.len()) as u64;
    }

    /// Evaluates every gauge and sum point, in document order.
    pub fn process(&mut self, resources: &[ResourceMetrics]) -> (Vec<ResourceFindings>, Counts) {
        let mut out = Vec::new();
        let mut counts = Counts::default();
        for (ri, rm) in resources.iter().enumerate() {
            let mut resource_hash = Sha256::new();
            hash_attributes(
                &mut resource_hash,
                rm.resource.as_ref().map_or(&[], |r| &r.attributes[..]),
            );
            let mut found = ResourceFindings {
                resource: ri,
                findings: Vec::new(),
            };
            // Metric indices count across scopes, in order, as output code walks them.
            let mut mi = 0;
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    if self.metrics.is_empty() || self.metrics.contains(&metric.name) {
                        self.metric(metric, mi, &resource_hash, &mut found, &mut counts);
                    }
                    mi += 1;
                }
            }
            if !found.findings.is_empty() {
                out.push(found);
            }
        }
        (out, counts)
    }

    fn metric(
        &mut self,
        metric: &Metric,
        mi: usize,
        resource_hash: &Sha256,
        found: &mut ResourceFindings,
        counts: &mut Counts,
    ) {
        let (points, rate) = match &metric.data {
            Some(Data::Gauge(g)) => (&g.data_points, false),
            Some(Data::Sum(s)) => (
                &s.data_points,
                s.is_monotonic
                    && s.aggregation_temporality == AggregationTemporality::Cumulative as i32,
            ),
            // Distributions have no single value to forecast.
            _ => return,
        };
        for (pi, point) in points.iter().enumerate() {
            if point.flags & NO_RECORDED_VALUE != 0 {
                continue;
            }
            let Some(raw) = value(point) else { continue };
            if !raw.is_finite() {
                continue;
            }
            let key = series_key(resource_hash, &metric.name, &point.attributes);
            self.newest = self.newest.max(point.time_unix_nano);
            if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
                self.sweep(counts);
                if self.series.len() >= self.max_series {
                    counts.refused += 1;
                    continue;
                }
            }
            let tracked = self.series.entry(key).or_insert_with(|| Tracked {
                model: Model::new(&self.params),
                last_time: 0,
                previous: None,
            });
            let t = point.time_unix_nano;
            if t != 0 && t <= tracked.last_time {
                continue;
            }
            tracked.last_time = t;
            let y = if rate {
                let previous = tracked
                    .previous
                    .replace((raw, t, point.start_time_unix_nano));
                match previous {
                    // A reset (lower value or new start time) or no elapsed time starts over.
                    Some((v, pt, start))
                        if raw >= v && t > pt && start == point.start_time_unix_nano =>
                    {
                        (raw - v) / ((t - pt) as f64 / 1e9)
                    }
                    _ => continue,
                }
            } else {
                raw
            };
            if let Some(evaluation) = tracked.model.observe(y, &self.params) {
                found.findings.push(Finding {
                    metric: mi,
                    point: pi,
                    rate,
                    evaluation,
                });
            }
        }
    }
}

fn value(point: &NumberDataPoint) -> Option<f64> {
    match point.value? {
        number_data_point::Value::AsDouble(v) => Some(v),
        number_data_point::Value::AsInt(v) => Some(v as f64),
    }
}

fn hash_attributes(hash: &mut Sha256, attrs: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        // Length-prefixed, so no key or value can be mistaken for a separator.
        let text = format!("{:?}", kv.value);
        hash.update((kv.key.len() as u64).to_le_bytes());
        hash.update(kv.key.as_bytes());
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.update([0xff]);
}

fn series_key(resource_hash: &Sha256, name: &str, attrs: &[KeyValue]) -> SeriesKey {
    let mut hash = resource_hash.clone();
    hash.update((name.len() as u64).to_le_bytes());
    hash.update(name.as_bytes());
    hash_attributes(&mut hash, attrs);
    let digest = hash.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}
