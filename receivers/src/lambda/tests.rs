use std::sync::Mutex;

use serde_json::{Value, json};
use sluice_pipeline::proto::common::v1::any_value::Value as V;
use sluice_pipeline::proto::logs::v1::{LogRecord, ResourceLogs};
use sluice_pipeline::proto::metrics::v1::{Metric, metric, number_data_point};
use sluice_pipeline::{Batch, Consumer, Logs};

use super::events::State;
use super::runtime_api::{Milestone, tracker};
use super::*;

/// An invocation as the Telemetry API reference shows it, with a cold start.
fn cold_invocation(request: &str) -> Vec<Value> {
    json!([
        {"time": "2022-10-12T00:00:15.064Z", "type": "platform.initStart", "record": {
            "initializationType": "on-demand", "phase": "init", "runtimeVersion": "nodejs-14.v3",
            "runtimeVersionArn": "arn", "functionName": "orders", "functionVersion": "$LATEST",
            "instanceId": "i-0abc", "instanceMaxMemory": 256}},
        {"time": "2022-10-12T00:00:15.264Z", "type": "platform.initRuntimeDone", "record": {
            "initializationType": "on-demand", "phase": "init", "status": "success"}},
        {"time": "2022-10-12T00:00:15.270Z", "type": "platform.initReport", "record": {
            "initializationType": "on-demand", "phase": "init", "status": "success",
            "metrics": {"durationMs": 205.5}}},
        {"time": "2022-10-12T00:00:16.000Z", "type": "platform.start", "record": {
            "requestId": request, "version": "$LATEST",
            "tracing": {"spanId": "54565fb41ac79632", "type": "X-Amzn-Trace-Id",
                        "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}}},
        {"time": "2022-10-12T00:00:16.010Z", "type": "function", "record": "2022-10-12T00:00:16.010Z\tINFO\thello text\n"},
        {"time": "2022-10-12T00:00:16.020Z", "type": "function", "record": {
            "timestamp": "2022-10-12T00:00:16.019Z", "level": "ERROR", "requestId": request,
            "message": "payment failed", "orderId": 42, "retry": false}},
        {"time": "2022-10-12T00:00:16.030Z", "type": "extension", "record": "ext line"},
        {"time": "2022-10-12T00:00:16.250Z", "type": "platform.runtimeDone", "record": {
            "requestId": request, "status": "success",
            "metrics": {"durationMs": 250.0, "producedBytes": 12},
            "spans": [{"name": "responseLatency", "start": "2022-10-12T00:00:16.240Z", "durationMs": 5.0}]}},
        {"time": "2022-10-12T00:00:16.300Z", "type": "platform.report", "record": {
            "requestId": request, "status": "success",
            "metrics": {"durationMs": 250.0, "billedDurationMs": 300, "memorySizeMB": 256,
                        "maxMemoryUsedMB": 64, "initDurationMs": 205.5}}}
    ])
    .as_array()
    .cloned()
    .unwrap()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a V> {
    attrs
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_ref()?.value.as_ref())
}

fn named<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics.iter().find(|m| m.name == name).unwrap()
}

fn sum_value(m: &Metric) -> i64 {
    match &m.data {
        Some(metric::Data::Sum(s)) => match s.data_points[0].value {
            Some(number_data_point::Value::AsInt(v)) => v,
            _ => panic!("not an int"),
        },
        _ => panic!("not a sum"),
    }
}

fn hist_sum(m: &Metric) -> f64 {
    match &m.data {
        Some(metric::Data::Histogram(h)) => h.data_points[0].sum.unwrap(),
        _ => panic!("not a histogram"),
    }
}

#[test]
fn text_and_json_logs_carry_the_invocation_and_severity() {
    let mut state = State::default();
    let out = state.map(&cold_invocation("req-1"));
    assert_eq!(out.logs.len(), 3);
    let text = &out.logs[0];
    assert_eq!(
        text.body.as_ref().unwrap().value,
        Some(V::StringValue(
            "2022-10-12T00:00:16.010Z\tINFO\thello text".into()
        ))
    );
    assert_eq!(
        attr(&text.attributes, "faas.invocation_id"),
        Some(&V::StringValue("req-1".into()))
    );
    let json = &out.logs[1];
    assert_eq!(
        (json.severity_number, json.severity_text.as_str()),
        (17, "ERROR")
    );
    assert_eq!(
        json.body.as_ref().unwrap().value,
        Some(V::StringValue("payment failed".into()))
    );
    assert_eq!(attr(&json.attributes, "orderId"), Some(&V::IntValue(42)));
    assert_eq!(attr(&json.attributes, "retry"), Some(&V::BoolValue(false)));
    assert_eq!(json.time_unix_nano, 1_665_532_816_019_000_000);
    assert_eq!(
        attr(&out.logs[2].attributes, "aws.lambda.log.source"),
        Some(&V::StringValue("extension".into()))
    );
    assert_eq!(state.instance_id.as_deref(), Some("i-0abc"));
    assert_eq!(state.max_memory_mb, Some(256));
}

#[test]
fn report_becomes_semconv_metrics_with_units() {
    let mut state = State::default();
    let out = state.map(&cold_invocation("req-1"));
    let invoke = named(&out.metrics, "faas.invoke_duration");
    assert_eq!((invoke.unit.as_str(), hist_sum(invoke)), ("s", 0.25));
    assert_eq!(hist_sum(named(&out.metrics, "faas.init_duration")), 0.2055);
    let mem = named(&out.metrics, "faas.mem_usage");
    assert_eq!(
        (mem.unit.as_str(), hist_sum(mem)),
        ("By", 64.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        hist_sum(named(&out.metrics, "aws.lambda.billed_duration")),
        0.3
    );
    assert_eq!(sum_value(named(&out.metrics, "faas.invocations")), 1);
    assert_eq!(sum_value(named(&out.metrics, "faas.coldstarts")), 1);
    assert_eq!(sum_value(named(&out.metrics, "faas.errors")), 0);
    assert_eq!(sum_value(named(&out.metrics, "faas.timeouts")), 0);
    assert_eq!(
        out.milestones,
        vec![
            (Milestone::RuntimeDone, "req-1".into()),
            (Milestone::Report, "req-1".into())
        ]
    );

    // A warm invocation that times out, then one that errors.
    let warm = |id: &str, status: &str| {
        json!([
            {"time": "2022-10-12T00:01:00.000Z", "type": "platform.start", "record": {"requestId": id}},
            {"time": "2022-10-12T00:01:03.000Z", "type": "platform.runtimeDone", "record": {"requestId": id, "status": status}},
            {"time": "2022-10-12T00:01:03.001Z", "type": "platform.report", "record": {"requestId": id, "status": status,
                "metrics": {"durationMs": 3000.0, "billedDurationMs": 3000, "memorySizeMB": 256, "maxMemoryUsedMB": 70}}}
        ])
        .as_array()
        .cloned()
        .unwrap()
    };
    let timeout = state.map(&warm("req-2", "timeout"));
    assert_eq!(sum_value(named(&timeout.metrics, "faas.timeouts")), 1);
    assert_eq!(sum_value(named(&timeout.metrics, "faas.coldstarts")), 0);
    assert_eq!(timeout.spans[0].status.as_ref().unwrap().code, 2);
    let error = state.map(&warm("req-3", "error"));
    assert_eq!(sum_value(named(&error.metrics, "faas.errors")), 1);
}

#[test]
fn init_and_invocation_become_spans_with_the_function_trace_context() {
    let mut state = State::default();
    let out = state.map(&cold_invocation("req-1"));
    let init = out.spans.iter().find(|s| s.name == "init").unwrap();
    assert_eq!(
        attr(&init.attributes, "faas.coldstart"),
        Some(&V::BoolValue(true))
    );
    assert_eq!(
        init.end_time_unix_nano - init.start_time_unix_nano,
        200_000_000
    );
    let invoke = out.spans.iter().find(|s| s.name == "invoke").unwrap();
    assert_eq!(
        invoke.trace_id,
        hex_bytes("62e900b2710d76f009d6e7785905449a")
    );
    assert_eq!(invoke.parent_span_id, hex_bytes("0efbd19962d95b05"));
    assert_eq!(invoke.span_id, hex_bytes("54565fb41ac79632"));
    assert_eq!(
        invoke.end_time_unix_nano - invoke.start_time_unix_nano,
        250_000_000
    );
    assert_eq!(
        attr(&invoke.attributes, "faas.invocation_id"),
        Some(&V::StringValue("req-1".into()))
    );
    assert_eq!(
        attr(&invoke.attributes, "faas.coldstart"),
        Some(&V::BoolValue(true))
    );
    let phase = out
        .spans
        .iter()
        .find(|s| s.name == "responseLatency")
        .unwrap();
    assert_eq!(
        (phase.trace_id.clone(), phase.parent_span_id.clone()),
        (invoke.trace_id.clone(), invoke.span_id.clone())
    );
}

#[test]
fn dropped_logs_become_a_warning_and_a_counter_and_junk_is_skipped() {
    let mut state = State::default();
    let out = state.map(
        json!([
            {"time": "2022-10-12T00:02:00.000Z", "type": "platform.logsDropped", "record": {
                "reason": "Consumer seems to have fallen behind", "droppedRecords": 123, "droppedBytes": 12345}},
            {"type": "platform.somethingNew", "record": {}},
            {"time": "garbage", "type": "platform.report", "record": {"requestId": 5}},
            42
        ])
        .as_array()
        .unwrap(),
    );
    assert_eq!(out.logs.len(), 1);
    assert_eq!(out.logs[0].severity_number, 13);
    assert_eq!(
        sum_value(named(&out.metrics, "aws.lambda.logs_dropped")),
        123
    );
    assert!(out.spans.is_empty());
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).unwrap())
        .collect()
}

struct Collect(Mutex<Vec<ResourceLogs>>);
#[async_trait]
impl Consumer<Logs> for Collect {
    async fn consume(&self, mut batch: Batch<Logs>) {
        self.0.lock().unwrap().extend(batch.take_resources());
    }
}

#[tokio::test]
async fn pushes_reach_the_pipeline_with_the_lambda_resource_before_the_milestone() {
    let logs = Arc::new(Collect(Mutex::new(Vec::new())));
    let outputs = ReceiverOutputs {
        logs: Some(logs.clone()),
        ..Default::default()
    };
    let accept = shared_for_test(outputs);
    assert!(accept(&cold_invocation("req-resource")).await);
    assert!(tracker().has(Milestone::RuntimeDone, "req-resource"));
    let got = logs.0.lock().unwrap();
    let resource = got[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "faas.name"),
        Some(&V::StringValue("orders".into()))
    );
    assert_eq!(
        attr(&resource.attributes, "cloud.platform"),
        Some(&V::StringValue("aws_lambda".into()))
    );
    assert_eq!(
        attr(&resource.attributes, "faas.instance"),
        Some(&V::StringValue("i-0abc".into()))
    );
    assert_eq!(
        attr(&resource.attributes, "faas.max_memory"),
        Some(&V::IntValue(256 * 1024 * 1024))
    );
    let records: Vec<&LogRecord> = got
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(records.len(), 3);
}
