//! Where each signal keeps the attributes the `attributes` processor edits: span attributes,
//! log-record attributes, and the attributes of every data point of every metric type.

use sluice_pipeline::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use sluice_pipeline::proto::logs::v1::ResourceLogs;
use sluice_pipeline::proto::metrics::v1::{Metric, ResourceMetrics, metric};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::ResourceSpans;
use sluice_pipeline::{Logs, Metrics, Signal, Traces};

/// What `include`/`exclude` may look at besides the item's own attributes.
#[derive(Default)]
pub struct ItemContext<'a> {
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
    pub span_name: Option<&'a str>,
    /// The OTLP enum value.
    pub span_kind: Option<i32>,
    pub log_body: Option<&'a AnyValue>,
    pub severity_text: Option<&'a str>,
    /// The OTLP severity number of a log record.
    pub severity_number: Option<i32>,
    pub metric_name: Option<&'a str>,
}

/// A signal whose items carry attributes.
pub trait AttributeItems: Signal {
    /// Calls `f` on every item, in order, with its context and its attributes.
    fn for_each_item(
        resources: &mut [Self::Resource],
        f: &mut dyn FnMut(&ItemContext<'_>, &mut Vec<KeyValue>),
    );
}

fn resource_attrs(resource: &Option<Resource>) -> &[KeyValue] {
    resource.as_ref().map_or(&[], |r| r.attributes.as_slice())
}

impl AttributeItems for Traces {
    fn for_each_item(
        resources: &mut [ResourceSpans],
        f: &mut dyn FnMut(&ItemContext<'_>, &mut Vec<KeyValue>),
    ) {
        for rs in resources {
            let resource = resource_attrs(&rs.resource);
            for ss in rs.scope_spans.iter_mut() {
                let scope = ss.scope.as_ref();
                for span in ss.spans.iter_mut() {
                    let ctx = ItemContext {
                        resource,
                        scope,
                        span_name: Some(&span.name),
                        span_kind: Some(span.kind),
                        ..Default::default()
                    };
                    f(&ctx, &mut span.attributes);
                }
            }
        }
    }
}

impl AttributeItems for Logs {
    fn for_each_item(
        resources: &mut [ResourceLogs],
        f: &mut dyn FnMut(&ItemContext<'_>, &mut Vec<KeyValue>),
    ) {
        for rl in resources {
            let resource = resource_attrs(&rl.resource);
            for sl in rl.scope_logs.iter_mut() {
                let scope = sl.scope.as_ref();
                for record in sl.log_records.iter_mut() {
                    let ctx = ItemContext {
                        resource,
                        scope,
                        log_body: record.body.as_ref(),
                        severity_text: Some(&record.severity_text),
                        severity_number: Some(record.severity_number),
                        ..Default::default()
                    };
                    f(&ctx, &mut record.attributes);
                }
            }
        }
    }
}

impl AttributeItems for Metrics {
    fn for_each_item(
        resources: &mut [ResourceMetrics],
        f: &mut dyn FnMut(&ItemContext<'_>, &mut Vec<KeyValue>),
    ) {
        for rm in resources {
            let resource = resource_attrs(&rm.resource);
            for sm in rm.scope_metrics.iter_mut() {
                let scope = sm.scope.as_ref();
                for m in sm.metrics.iter_mut() {
                    let Metric { name, data, .. } = m;
                    let ctx = ItemContext {
                        resource,
                        scope,
                        metric_name: Some(name),
                        ..Default::default()
                    };
                    each_point(data, &mut |attrs| f(&ctx, attrs));
                }
            }
        }
    }
}

fn each_point(data: &mut Option<metric::Data>, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
    use metric::Data;
    match data {
        Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        None => {}
    }
}
