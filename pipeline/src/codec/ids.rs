//! Trace ids are 16 bytes and span ids 8 bytes, or empty (no id): the OTLP specification says
//! so and the OTel Collector refuses a request with any other length. Protobuf input is
//! checked by the scan; this checks data decoded from OTLP/JSON, whose hex strings decode to
//! any length, and names the offending field by its place in the JSON document.

use std::any::Any;

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, ResourceMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::signal::Signal;

/// An id of the wrong length, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}.{name} must be {want} bytes ({} hex digits) or empty, not {got} bytes", want * 2)]
pub struct IdError {
    path: String,
    name: &'static str,
    want: usize,
    got: usize,
}

const TRACE_ID: usize = 16;
const SPAN_ID: usize = 8;

/// Checks one id; `path` is only built for an error.
fn check(
    id: &[u8],
    want: usize,
    name: &'static str,
    path: impl FnOnce() -> String,
) -> Result<(), IdError> {
    if id.is_empty() || id.len() == want {
        return Ok(());
    }
    Err(IdError {
        path: path(),
        name,
        want,
        got: id.len(),
    })
}

/// Checks every trace and span id in `resources`.
pub fn check_ids<S: Signal>(resources: &[S::Resource]) -> Result<(), IdError> {
    for (r, resource) in resources.iter().enumerate() {
        let any: &dyn Any = resource;
        if let Some(traces) = any.downcast_ref::<ResourceSpans>() {
            traces_ids(r, traces)?;
        } else if let Some(logs) = any.downcast_ref::<ResourceLogs>() {
            logs_ids(r, logs)?;
        } else if let Some(metrics) = any.downcast_ref::<ResourceMetrics>() {
            metrics_ids(r, metrics)?;
        }
    }
    Ok(())
}

fn traces_ids(r: usize, resource: &ResourceSpans) -> Result<(), IdError> {
    {
        for (s, scope) in resource.scope_spans.iter().enumerate() {
            for (i, span) in scope.spans.iter().enumerate() {
                let at = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                check(&span.trace_id, TRACE_ID, "traceId", at)?;
                check(&span.span_id, SPAN_ID, "spanId", at)?;
                check(&span.parent_span_id, SPAN_ID, "parentSpanId", at)?;
                for (l, link) in span.links.iter().enumerate() {
                    let at = || format!("{}.links[{l}]", at());
                    check(&link.trace_id, TRACE_ID, "traceId", at)?;
                    check(&link.span_id, SPAN_ID, "spanId", at)?;
                }
            }
        }
    }
    Ok(())
}

fn logs_ids(r: usize, resource: &ResourceLogs) -> Result<(), IdError> {
    {
        for (s, scope) in resource.scope_logs.iter().enumerate() {
            for (i, record) in scope.log_records.iter().enumerate() {
                let at = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
                check(&record.trace_id, TRACE_ID, "traceId", at)?;
                check(&record.span_id, SPAN_ID, "spanId", at)?;
            }
        }
    }
    Ok(())
}

fn exemplar_ids(exemplars: &[Exemplar], at: impl Fn() -> String) -> Result<(), IdError> {
    for (e, exemplar) in exemplars.iter().enumerate() {
        let at = || format!("{}.exemplars[{e}]", at());
        check(&exemplar.trace_id, TRACE_ID, "traceId", at)?;
        check(&exemplar.span_id, SPAN_ID, "spanId", at)?;
    }
    Ok(())
}

fn metrics_ids(r: usize, resource: &ResourceMetrics) -> Result<(), IdError> {
    {
        for (s, scope) in resource.scope_metrics.iter().enumerate() {
            for (m, metric) in scope.metrics.iter().enumerate() {
                let at = |kind: &str, p: usize| {
                    format!(
                        "resourceMetrics[{r}].scopeMetrics[{s}].metrics[{m}].{kind}.dataPoints[{p}]"
                    )
                };
                match &metric.data {
                    Some(metric::Data::Gauge(g)) => {
                        for (p, point) in g.data_points.iter().enumerate() {
                            exemplar_ids(&point.exemplars, || at("gauge", p))?;
                        }
                    }
                    Some(metric::Data::Sum(sum)) => {
                        for (p, point) in sum.data_points.iter().enumerate() {
                            exemplar_ids(&point.exemplars, || at("sum", p))?;
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for (p, point) in h.data_points.iter().enumerate() {
                            exemplar_ids(&point.exemplars, || at("histogram", p))?;
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for (p, point) in h.data_points.iter().enumerate() {
                            exemplar_ids(&point.exemplars, || at("exponentialHistogram", p))?;
                        }
                    }
                    Some(metric::Data::Summary(_)) | None => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::codec::{DecodeError, decode_json};
    use crate::signal::{Logs, Metrics, Traces};

    fn span_doc(fields: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":"ok"}},{{{fields}}}]}}]}}]}}"#
        )
    }

    #[test]
    fn json_ids_of_the_wrong_length_are_refused_with_their_place() {
        let ok = span_doc(
            r##""traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","parentSpanId":"""##,
        );
        assert!(decode_json::<Traces>(ok.as_bytes()).is_ok());
        let cases = [
            (
                r#""traceId":"0102030405060708090a0b0c0d0e0f1011""#,
                "resourceSpans[0].scopeSpans[0].spans[1].traceId must be 16 bytes (32 hex digits) or empty, not 17 bytes",
            ),
            (
                r#""spanId":"010203""#,
                "spans[1].spanId must be 8 bytes (16 hex digits) or empty, not 3 bytes",
            ),
            (
                r#""parentSpanId":"010203040506070809""#,
                "spans[1].parentSpanId must be 8 bytes",
            ),
            (
                r#""links":[{},{"traceId":"01"}]"#,
                "spans[1].links[1].traceId must be 16 bytes",
            ),
        ];
        for (fields, expected) in cases {
            let doc = span_doc(fields);
            let error = decode_json::<Traces>(doc.as_bytes()).unwrap_err();
            assert!(matches!(error, DecodeError::Id(_)), "{error:?}");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn log_and_exemplar_ids_are_checked_too() {
        let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"0102"}]}]}]}"#;
        let error = decode_json::<Logs>(logs.as_bytes()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("resourceLogs[0].scopeLogs[0].logRecords[0].spanId must be 8 bytes"),
            "{error}"
        );
        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"dataPoints":[{"asInt":"1","exemplars":[{"traceId":"00"}]}]}}]}]}]}"#;
        let error = decode_json::<Metrics>(metrics.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains(
                "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].exemplars[0].traceId"
            ),
            "{error}"
        );
    }
}
