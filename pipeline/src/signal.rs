//! The three OTLP signals behind one trait, so batching, queueing, codecs and fan-out are
//! written once and instantiated per signal.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use sluice_config::SignalKind;

/// One OTLP signal: its wire types and how to count and split its items.
pub trait Signal: Send + Sync + Sized + 'static {
    /// `ResourceSpans`, `ResourceMetrics` or `ResourceLogs`.
    type Resource: prost::Message
        + Clone
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// The OTLP export request, which is field-for-field the `*Data` message files hold.
    type Request: prost::Message + Default + Serialize + DeserializeOwned + Send + 'static;
    /// The OTLP export response, which may report a partial success.
    type Response: prost::Message + Default + Serialize + DeserializeOwned + Send + 'static;

    const KIND: SignalKind;
    /// The item word in OTel Collector self-metric names: `spans`, `metric_points`, `log_records`.
    const ITEM_NAME: &'static str;
    /// The top-level key of the signal's OTLP/JSON request: `resourceSpans`, ...
    const JSON_KEY: &'static str;
    /// The gRPC method of the signal's OTLP export service.
    const GRPC_METHOD: &'static str;

    fn resource_items(resource: &Self::Resource) -> usize;
    fn into_request(resources: Vec<Self::Resource>) -> Self::Request;
    fn from_request(request: Self::Request) -> Vec<Self::Resource>;
    fn request_resources(request: &Self::Request) -> &[Self::Resource];
    /// Moves the first `n` items out of `resource` into a new resource carrying the same
    /// resource and scope headers; `n` is less than the resource's item count.
    fn split_resource(resource: &mut Self::Resource, n: usize) -> Self::Resource;
    fn resource(resource: &Self::Resource) -> Option<&Resource>;
    fn resource_mut(resource: &mut Self::Resource) -> &mut Option<Resource>;
    /// Items a backend rejected in a partial success, with its message.
    fn rejected(response: &Self::Response) -> Option<(i64, &str)>;
}

pub fn item_count<S: Signal>(resources: &[S::Resource]) -> usize {
    resources.iter().map(S::resource_items).sum()
}

/// Moves up to `max_items` items from the front of `resources` into a new vector, splitting
/// a resource (and inside it a scope) when the limit falls in its middle.
pub fn split_front<S: Signal>(
    resources: &mut Vec<S::Resource>,
    max_items: usize,
) -> Vec<S::Resource> {
    let mut whole = 0;
    let mut left = max_items;
    for resource in resources.iter() {
        let items = S::resource_items(resource);
        if items > left {
            break;
        }
        left -= items;
        whole += 1;
    }
    let mut front: Vec<S::Resource> = resources.drain(..whole).collect();
    if left > 0
        && let Some(first) = resources.first_mut()
    {
        front.push(S::split_resource(first, left));
    }
    front
}

/// A two-level container (resource → scopes, scope → items) whose front can be split off.
trait Nested {
    type Child;
    fn children(&mut self) -> &mut Vec<Self::Child>;
    fn child_items(child: &Self::Child) -> usize;
    fn split_child(child: &mut Self::Child, n: usize) -> Self::Child;
    /// A copy of the headers (resource, scope, schema url) with no children.
    fn shell(&self) -> Self;
}

fn take_front<N: Nested>(node: &mut N, n: usize) -> N {
    let mut out = node.shell();
    let mut left = n;
    let children = node.children();
    let mut whole = 0;
    for child in children.iter() {
        let items = N::child_items(child);
        if items > left {
            break;
        }
        left -= items;
        whole += 1;
    }
    let mut front: Vec<N::Child> = children.drain(..whole).collect();
    if left > 0
        && let Some(first) = children.first_mut()
    {
        front.push(N::split_child(first, left));
    }
    *out.children() = front;
    out
}

impl Nested for ResourceSpans {
    type Child = ScopeSpans;
    fn children(&mut self) -> &mut Vec<ScopeSpans> {
        &mut self.scope_spans
    }
    fn child_items(child: &ScopeSpans) -> usize {
        child.spans.len()
    }
    fn split_child(child: &mut ScopeSpans, n: usize) -> ScopeSpans {
        ScopeSpans {
            scope: child.scope.clone(),
            spans: child.spans.drain(..n).collect(),
            schema_url: child.schema_url.clone(),
        }
    }
    fn shell(&self) -> Self {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Nested for ResourceLogs {
    type Child = ScopeLogs;
    fn children(&mut self) -> &mut Vec<ScopeLogs> {
        &mut self.scope_logs
    }
    fn child_items(child: &ScopeLogs) -> usize {
        child.log_records.len()
    }
    fn split_child(child: &mut ScopeLogs, n: usize) -> ScopeLogs {
        ScopeLogs {
            scope: child.scope.clone(),
            log_records: child.log_records.drain(..n).collect(),
            schema_url: child.schema_url.clone(),
        }
    }
    fn shell(&self) -> Self {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Nested for ResourceMetrics {
    type Child = ScopeMetrics;
    fn children(&mut self) -> &mut Vec<ScopeMetrics> {
        &mut self.scope_metrics
    }
    fn child_items(child: &ScopeMetrics) -> usize {
        child.metrics.iter().map(metric_points).sum()
    }
    fn split_child(child: &mut ScopeMetrics, n: usize) -> ScopeMetrics {
        take_front(child, n)
    }
    fn shell(&self) -> Self {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Nested for ScopeMetrics {
    type Child = Metric;
    fn children(&mut self) -> &mut Vec<Metric> {
        &mut self.metrics
    }
    fn child_items(child: &Metric) -> usize {
        metric_points(child)
    }
    fn split_child(child: &mut Metric, n: usize) -> Metric {
        split_metric(child, n)
    }
    fn shell(&self) -> Self {
        ScopeMetrics {
            scope: self.scope.clone(),
            metrics: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
}

/// Data points in one metric; a metric with no data counts as none.
pub fn metric_points(metric: &Metric) -> usize {
    match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn split_metric(metric: &mut Metric, n: usize) -> Metric {
    use metric::Data;
    let data = match &mut metric.data {
        Some(Data::Gauge(g)) => Some(Data::Gauge(
            opentelemetry_proto::tonic::metrics::v1::Gauge {
                data_points: g.data_points.drain(..n).collect(),
            },
        )),
        Some(Data::Sum(s)) => Some(Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
            data_points: s.data_points.drain(..n).collect(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        })),
        Some(Data::Histogram(h)) => Some(Data::Histogram(
            opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            },
        )),
        Some(Data::ExponentialHistogram(h)) => Some(Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            },
        )),
        Some(Data::Summary(s)) => Some(Data::Summary(
            opentelemetry_proto::tonic::metrics::v1::Summary {
                data_points: s.data_points.drain(..n).collect(),
            },
        )),
        None => None,
    };
    Metric {
        name: metric.name.clone(),
        description: metric.description.clone(),
        unit: metric.unit.clone(),
        metadata: metric.metadata.clone(),
        data,
    }
}

/// One value per signal, for components that keep per-signal settings or counters in one
/// object.
#[derive(Clone, Debug, Default)]
pub struct PerSignal<T> {
    pub traces: T,
    pub metrics: T,
    pub logs: T,
}

impl<T> PerSignal<T> {
    pub fn new(mut make: impl FnMut(SignalKind) -> T) -> Self {
        PerSignal {
            traces: make(SignalKind::Traces),
            metrics: make(SignalKind::Metrics),
            logs: make(SignalKind::Logs),
        }
    }

    pub fn get(&self, signal: SignalKind) -> &T {
        match signal {
            SignalKind::Traces => &self.traces,
            SignalKind::Metrics => &self.metrics,
            SignalKind::Logs => &self.logs,
        }
    }

    pub fn get_mut(&mut self, signal: SignalKind) -> &mut T {
        match signal {
            SignalKind::Traces => &mut self.traces,
            SignalKind::Metrics => &mut self.metrics,
            SignalKind::Logs => &mut self.logs,
        }
    }
}

/// Marker type for the traces signal.
pub struct Traces;
/// Marker type for the metrics signal.
pub struct Metrics;
/// Marker type for the logs signal.
pub struct Logs;

impl Signal for Traces {
    type Resource = ResourceSpans;
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const KIND: SignalKind = SignalKind::Traces;
    const ITEM_NAME: &'static str = "spans";
    const JSON_KEY: &'static str = "resourceSpans";
    const GRPC_METHOD: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn resource_items(resource: &ResourceSpans) -> usize {
        resource.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
    fn into_request(resources: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: resources,
        }
    }
    fn from_request(request: ExportTraceServiceRequest) -> Vec<ResourceSpans> {
        request.resource_spans
    }
    fn request_resources(request: &ExportTraceServiceRequest) -> &[ResourceSpans] {
        &request.resource_spans
    }
    fn split_resource(resource: &mut ResourceSpans, n: usize) -> ResourceSpans {
        take_front(resource, n)
    }
    fn resource(resource: &ResourceSpans) -> Option<&Resource> {
        resource.resource.as_ref()
    }
    fn resource_mut(resource: &mut ResourceSpans) -> &mut Option<Resource> {
        &mut resource.resource
    }
    fn rejected(response: &Self::Response) -> Option<(i64, &str)> {
        let p = response.partial_success.as_ref()?;
        (p.rejected_spans > 0 || !p.error_message.is_empty())
            .then_some((p.rejected_spans, p.error_message.as_str()))
    }
}

impl Signal for Metrics {
    type Resource = ResourceMetrics;
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const KIND: SignalKind = SignalKind::Metrics;
    const ITEM_NAME: &'static str = "metric_points";
    const JSON_KEY: &'static str = "resourceMetrics";
    const GRPC_METHOD: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

    fn resource_items(resource: &ResourceMetrics) -> usize {
        resource
            .scope_metrics
            .iter()
            .flat_map(|s| s.metrics.iter())
            .map(metric_points)
            .sum()
    }
    fn into_request(resources: Vec<ResourceMetrics>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: resources,
        }
    }
    fn from_request(request: ExportMetricsServiceRequest) -> Vec<ResourceMetrics> {
        request.resource_metrics
    }
    fn request_resources(request: &ExportMetricsServiceRequest) -> &[ResourceMetrics] {
        &request.resource_metrics
    }
    fn split_resource(resource: &mut ResourceMetrics, n: usize) -> ResourceMetrics {
        take_front(resource, n)
    }
    fn resource(resource: &ResourceMetrics) -> Option<&Resource> {
        resource.resource.as_ref()
    }
    fn resource_mut(resource: &mut ResourceMetrics) -> &mut Option<Resource> {
        &mut resource.resource
    }
    fn rejected(response: &Self::Response) -> Option<(i64, &str)> {
        let p = response.partial_success.as_ref()?;
        (p.rejected_data_points > 0 || !p.error_message.is_empty())
            .then_some((p.rejected_data_points, p.error_message.as_str()))
    }
}

impl Signal for Logs {
    type Resource = ResourceLogs;
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const KIND: SignalKind = SignalKind::Logs;
    const ITEM_NAME: &'static str = "log_records";
    const JSON_KEY: &'static str = "resourceLogs";
    const GRPC_METHOD: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    fn resource_items(resource: &ResourceLogs) -> usize {
        resource
            .scope_logs
            .iter()
            .map(|s| s.log_records.len())
            .sum()
    }
    fn into_request(resources: Vec<ResourceLogs>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: resources,
        }
    }
    fn from_request(request: ExportLogsServiceRequest) -> Vec<ResourceLogs> {
        request.resource_logs
    }
    fn request_resources(request: &ExportLogsServiceRequest) -> &[ResourceLogs] {
        &request.resource_logs
    }
    fn split_resource(resource: &mut ResourceLogs, n: usize) -> ResourceLogs {
        take_front(resource, n)
    }
    fn resource(resource: &ResourceLogs) -> Option<&Resource> {
        resource.resource.as_ref()
    }
    fn resource_mut(resource: &mut ResourceLogs) -> &mut Option<Resource> {
        &mut resource.resource
    }
    fn rejected(response: &Self::Response) -> Option<(i64, &str)> {
        let p = response.partial_success.as_ref()?;
        (p.rejected_log_records > 0 || !p.error_message.is_empty())
            .then_some((p.rejected_log_records, p.error_message.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint};
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn spans(scopes: &[usize]) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: scopes
                .iter()
                .map(|&n| ScopeSpans {
                    spans: (0..n)
                        .map(|i| Span {
                            name: format!("s{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            schema_url: "u".into(),
        }
    }

    #[test]
    fn split_front_cuts_inside_a_scope_and_keeps_headers() {
        let mut all = vec![spans(&[2, 3]), spans(&[4])];
        let front = split_front::<Traces>(&mut all, 4);
        assert_eq!(item_count::<Traces>(&front), 4);
        assert_eq!(item_count::<Traces>(&all), 5);
        assert_eq!(front.len(), 1);
        assert_eq!(front[0].scope_spans.len(), 2);
        assert_eq!(front[0].scope_spans[1].spans.len(), 2);
        assert_eq!(all[0].scope_spans[0].spans[0].name, "s2");
        assert_eq!(all[0].schema_url, "u");
        let rest = split_front::<Traces>(&mut all, 100);
        assert_eq!(item_count::<Traces>(&rest), 5);
        assert!(all.is_empty());
    }

    #[test]
    fn split_metrics_inside_one_metric() {
        let metric = Metric {
            name: "m".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); 5],
            })),
            ..Default::default()
        };
        let mut all = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let front = split_front::<Metrics>(&mut all, 3);
        assert_eq!(item_count::<Metrics>(&front), 3);
        assert_eq!(item_count::<Metrics>(&all), 2);
        assert_eq!(front[0].scope_metrics[0].metrics[0].name, "m");
        assert_eq!(all[0].scope_metrics[0].metrics[0].name, "m");
    }
}
