//! Reading NaN and infinities from OTLP/JSON. The proto3 JSON mapping writes them as the
//! strings `"NaN"`, `"Infinity"` and `"-Infinity"` (and so do sluice's own exporters, see
//! [`super::NonFinite`]), but `opentelemetry-proto`'s serde types only take numbers: a data
//! point's value or a histogram's sum written that way was silently dropped (the oneofs are
//! flattened, which turns the error into "no value"), and a `doubleValue` failed the request.
//!
//! So a document that mentions one of those strings is read through a `serde_json::Value`:
//! each such string in a double-valued field becomes a marker number, the request is
//! deserialized, and the markers found in its doubles are turned back into NaN or ±infinity.

use std::any::Any;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ResourceMetrics, exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde_json::Value;

use crate::signal::Signal;

/// Finite numbers that stand in for the non-finite ones while serde reads the document: the
/// largest doubles but for a few units in the last place, which no measurement produces.
const MARKERS: [(u64, &str, f64); 3] = [
    (0x7FEF_FFFF_FFFF_FF01, "NaN", f64::NAN),
    (0x7FEF_FFFF_FFFF_FF02, "Infinity", f64::INFINITY),
    (0xFFEF_FFFF_FFFF_FF03, "-Infinity", f64::NEG_INFINITY),
];

/// The OTLP/JSON fields that hold a double (or, `explicitBounds`, a list of doubles).
const DOUBLE_FIELDS: &[&str] = &[
    "asDouble",
    "doubleValue",
    "sum",
    "min",
    "max",
    "zeroThreshold",
    "quantile",
    "value",
    "explicitBounds",
];

/// Whether the raw document may hold a non-finite double (a cheap scan before any parsing).
pub fn mentions_non_finite(bytes: &[u8]) -> bool {
    bytes.windows(5).any(|w| w == b"\"NaN\"") || bytes.windows(9).any(|w| w == b"Infinity\"")
}

fn marker_for(value: &Value) -> Option<Value> {
    let text = value.as_str()?;
    let (bits, _, _) = MARKERS.iter().find(|(_, name, _)| *name == text)?;
    serde_json::Number::from_f64(f64::from_bits(*bits)).map(Value::Number)
}

/// Replaces the non-finite strings of double-valued fields by markers; true if it found one.
pub fn mark(v: &mut Value) -> bool {
    let mut found = false;
    match v {
        Value::Object(map) => {
            for (field, child) in map.iter_mut() {
                if DOUBLE_FIELDS.contains(&field.as_str()) {
                    if let Some(marker) = marker_for(child) {
                        *child = marker;
                        found = true;
                        continue;
                    }
                    if field == "explicitBounds"
                        && let Value::Array(bounds) = child
                    {
                        for bound in bounds {
                            if let Some(marker) = marker_for(bound) {
                                *bound = marker;
                                found = true;
                            }
                        }
                        continue;
                    }
                }
                found |= mark(child);
            }
        }
        Value::Array(items) => {
            for item in items {
                found |= mark(item);
            }
        }
        _ => {}
    }
    found
}

fn restore_f64(v: &mut f64) {
    let bits = v.to_bits();
    if let Some((_, _, real)) = MARKERS.iter().find(|(marker, _, _)| *marker == bits) {
        *v = *real;
    }
}

fn restore_opt(v: &mut Option<f64>) {
    if let Some(v) = v {
        restore_f64(v);
    }
}

fn restore_any(v: &mut AnyValue) {
    match &mut v.value {
        Some(any_value::Value::DoubleValue(d)) => restore_f64(d),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter_mut().for_each(restore_any),
        Some(any_value::Value::KvlistValue(l)) => restore_attributes(&mut l.values),
        _ => {}
    }
}

fn restore_attributes(attributes: &mut [KeyValue]) {
    for kv in attributes {
        if let Some(v) = &mut kv.value {
            restore_any(v);
        }
    }
}

fn restore_resource(resource: &mut Option<Resource>) {
    if let Some(r) = resource {
        restore_attributes(&mut r.attributes);
    }
}

fn restore_scope(scope: &mut Option<InstrumentationScope>) {
    if let Some(s) = scope {
        restore_attributes(&mut s.attributes);
    }
}

fn restore_exemplars(exemplars: &mut [Exemplar]) {
    for e in exemplars {
        restore_attributes(&mut e.filtered_attributes);
        if let Some(exemplar::Value::AsDouble(d)) = &mut e.value {
            restore_f64(d);
        }
    }
}

fn restore_traces(resources: &mut [ResourceSpans]) {
    for rs in resources {
        restore_resource(&mut rs.resource);
        for ss in &mut rs.scope_spans {
            restore_scope(&mut ss.scope);
            for span in &mut ss.spans {
                restore_attributes(&mut span.attributes);
                for event in &mut span.events {
                    restore_attributes(&mut event.attributes);
                }
                for link in &mut span.links {
                    restore_attributes(&mut link.attributes);
                }
            }
        }
    }
}

fn restore_metrics(resources: &mut [ResourceMetrics]) {
    for rm in resources {
        restore_resource(&mut rm.resource);
        for sm in &mut rm.scope_metrics {
            restore_scope(&mut sm.scope);
            for m in &mut sm.metrics {
                restore_attributes(&mut m.metadata);
                let number_points = match &mut m.data {
                    Some(metric::Data::Gauge(g)) => Some(&mut g.data_points),
                    Some(metric::Data::Sum(s)) => Some(&mut s.data_points),
                    _ => None,
                };
                for p in number_points.into_iter().flatten() {
                    restore_attributes(&mut p.attributes);
                    restore_exemplars(&mut p.exemplars);
                    if let Some(number_data_point::Value::AsDouble(d)) = &mut p.value {
                        restore_f64(d);
                    }
                }
                match &mut m.data {
                    Some(metric::Data::Histogram(h)) => {
                        for p in &mut h.data_points {
                            restore_attributes(&mut p.attributes);
                            restore_exemplars(&mut p.exemplars);
                            restore_opt(&mut p.sum);
                            restore_opt(&mut p.min);
                            restore_opt(&mut p.max);
                            p.explicit_bounds.iter_mut().for_each(restore_f64);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for p in &mut h.data_points {
                            restore_attributes(&mut p.attributes);
                            restore_exemplars(&mut p.exemplars);
                            restore_opt(&mut p.sum);
                            restore_opt(&mut p.min);
                            restore_opt(&mut p.max);
                            restore_f64(&mut p.zero_threshold);
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for p in &mut s.data_points {
                            restore_attributes(&mut p.attributes);
                            restore_f64(&mut p.sum);
                            for q in &mut p.quantile_values {
                                restore_f64(&mut q.quantile);
                                restore_f64(&mut q.value);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn restore_logs(resources: &mut [ResourceLogs]) {
    for rl in resources {
        restore_resource(&mut rl.resource);
        for sl in &mut rl.scope_logs {
            restore_scope(&mut sl.scope);
            for record in &mut sl.log_records {
                restore_attributes(&mut record.attributes);
                if let Some(body) = &mut record.body {
                    restore_any(body);
                }
            }
        }
    }
}

/// Turns the markers `mark` wrote back into NaN and ±infinity, in every double of the data.
/// (A `Vec`, not a slice: the signal's concrete type is found by downcasting a sized value.)
#[allow(clippy::ptr_arg)]
pub fn restore<S: Signal>(resources: &mut Vec<S::Resource>) {
    let any: &mut dyn Any = resources;
    if let Some(r) = any.downcast_mut::<Vec<ResourceSpans>>() {
        restore_traces(r);
    } else if let Some(r) = any.downcast_mut::<Vec<ResourceMetrics>>() {
        restore_metrics(r);
    } else if let Some(r) = any.downcast_mut::<Vec<ResourceLogs>>() {
        restore_logs(r);
    }
}
