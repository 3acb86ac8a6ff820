//! sluice as a Lambda extension against an emulated Lambda Runtime API (Extensions API +
//! Telemetry API subscription), with Telemetry API batches shaped as in AWS's schema reference
//! (2022-12-13).
#![cfg(feature = "lambda")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

const EXT_ID: &str = "8f5e1b2c-0000-4d4e-9a1b-extension01";

/// What sluice exported so far, read from the file exporters' output.
#[derive(Clone, Debug, Default)]
struct Exported {
    logs: Vec<Value>,
    metrics: Vec<Value>,
    spans: Vec<Value>,
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn exported(dir: &Path) -> Exported {
    let flatten = |lines: Vec<Value>, res: &str, scope: &str, item: &str| -> Vec<Value> {
        let mut out = Vec::new();
        for line in lines {
            for r in line[res].as_array().into_iter().flatten() {
                for s in r[scope].as_array().into_iter().flatten() {
                    for i in s[item].as_array().into_iter().flatten() {
                        let mut i = i.clone();
                        i["resource"] = r["resource"].clone();
                        out.push(i);
                    }
                }
            }
        }
        out
    };
    Exported {
        logs: flatten(
            read_lines(&dir.join("logs.jsonl")),
            "resourceLogs",
            "scopeLogs",
            "logRecords",
        ),
        metrics: flatten(
            read_lines(&dir.join("metrics.jsonl")),
            "resourceMetrics",
            "scopeMetrics",
            "metrics",
        ),
        spans: flatten(
            read_lines(&dir.join("traces.jsonl")),
            "resourceSpans",
            "scopeSpans",
            "spans",
        ),
    }
}

fn attr<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn invocation_of(item: &Value) -> Option<&str> {
    attr(item, "faas.invocation_id")?["stringValue"].as_str()
}

impl Exported {
    fn logs_of(&self, request: &str) -> usize {
        self.logs
            .iter()
            .filter(|l| invocation_of(l) == Some(request))
            .count()
    }
    fn span_of(&self, request: &str) -> Option<&Value> {
        self.spans
            .iter()
            .find(|s| s["name"] == "invoke" && invocation_of(s) == Some(request))
    }
    fn metric(&self, name: &str) -> Vec<&Value> {
        self.metrics.iter().filter(|m| m["name"] == name).collect()
    }
    /// Sum over every exported data point of a delta counter.
    fn counter_total(&self, name: &str) -> i64 {
        self.metric(name)
            .iter()
            .flat_map(|m| {
                m["sum"]["dataPoints"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|p| p["asInt"].as_str().unwrap().parse::<i64>().unwrap())
            .sum()
    }
}

struct Invocation {
    request: &'static str,
    /// Pushed one after another once the INVOKE event is out.
    pushes: Vec<Value>,
    /// Pushed only after SHUTDOWN (the last report, as Lambda does).
    after_shutdown: Option<Value>,
    /// Log records of this invocation that must be exported before the next event/next.
    logs: usize,
}

fn ev(time: &str, kind: &str, record: Value) -> Value {
    json!({"time": time, "type": kind, "record": record})
}

fn report(request: &str, time: &str, status: &str, duration: f64, init: Option<f64>) -> Value {
    let mut metrics = json!({"durationMs": duration, "billedDurationMs": duration.ceil(),
        "memorySizeMB": 256, "maxMemoryUsedMB": 64});
    if let Some(i) = init {
        metrics["initDurationMs"] = json!(i);
    }
    ev(
        time,
        "platform.report",
        json!({"requestId": request, "status": status, "metrics": metrics}),
    )
}

fn script() -> Vec<Invocation> {
    let r1 = "11111111-aaaa-4000-8000-000000000001";
    let r2 = "22222222-aaaa-4000-8000-000000000002";
    let r3 = "33333333-aaaa-4000-8000-000000000003";
    vec![
        Invocation {
            request: r1,
            pushes: vec![
                json!([
                    ev(
                        "2026-11-25T04:00:00.000Z",
                        "platform.initStart",
                        json!({"initializationType": "on-demand", "phase": "init",
                        "runtimeVersion": "nodejs:20.v13", "runtimeVersionArn": "arn:aws:lambda:eu-west-1::runtime:abc",
                        "functionName": "orders", "functionVersion": "$LATEST", "instanceId": "2026/11/25/[$LATEST]instance01",
                        "instanceMaxMemory": 256})
                    ),
                    ev(
                        "2026-11-25T04:00:00.300Z",
                        "platform.initRuntimeDone",
                        json!({"initializationType": "on-demand", "phase": "init", "status": "success"})
                    ),
                    ev(
                        "2026-11-25T04:00:00.301Z",
                        "platform.initReport",
                        json!({"initializationType": "on-demand", "phase": "init", "status": "success", "metrics": {"durationMs": 301.0}})
                    ),
                ]),
                json!([
                    ev(
                        "2026-11-25T04:00:00.310Z",
                        "platform.start",
                        json!({"requestId": r1, "version": "$LATEST",
                        "tracing": {"spanId": "54565fb41ac79632", "type": "X-Amzn-Trace-Id",
                                    "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}})
                    ),
                    ev(
                        "2026-11-25T04:00:00.320Z",
                        "function",
                        json!(
                            "2026-11-25T04:00:00.320Z\t11111111-aaaa-4000-8000-000000000001\tINFO\tloading order 7\n"
                        )
                    ),
                    ev(
                        "2026-11-25T04:00:00.330Z",
                        "function",
                        json!({"timestamp": "2026-11-25T04:00:00.330Z", "level": "WARN",
                        "requestId": r1, "message": "stock low", "sku": "A-1", "left": 2})
                    ),
                    ev(
                        "2026-11-25T04:00:00.340Z",
                        "extension",
                        json!("another extension says hi")
                    ),
                ]),
                json!([
                    ev(
                        "2026-11-25T04:00:00.560Z",
                        "platform.runtimeDone",
                        json!({"requestId": r1, "status": "success",
                        "metrics": {"durationMs": 250.0, "producedBytes": 42},
                        "spans": [{"name": "responseLatency", "start": "2026-11-25T04:00:00.550Z", "durationMs": 8.5}]})
                    ),
                    report(
                        r1,
                        "2026-11-25T04:00:00.570Z",
                        "success",
                        250.0,
                        Some(301.0)
                    ),
                ]),
            ],
            after_shutdown: None,
            logs: 3,
        },
        Invocation {
            request: r2,
            pushes: vec![
                json!([
                    ev(
                        "2026-11-25T04:01:00.000Z",
                        "platform.start",
                        json!({"requestId": r2, "version": "$LATEST"})
                    ),
                    ev(
                        "2026-11-25T04:01:00.010Z",
                        "function",
                        json!({"timestamp": "2026-11-25T04:01:00.010Z", "level": "INFO", "requestId": r2, "message": "calling slow service"})
                    ),
                ]),
                json!([
                    ev(
                        "2026-11-25T04:01:03.000Z",
                        "platform.runtimeDone",
                        json!({"requestId": r2, "status": "timeout", "metrics": {"durationMs": 3000.0}})
                    ),
                    report(r2, "2026-11-25T04:01:03.010Z", "timeout", 3000.0, None),
                ]),
            ],
            after_shutdown: None,
            logs: 1,
        },
        Invocation {
            request: r3,
            pushes: vec![json!([
                ev(
                    "2026-11-25T04:02:00.000Z",
                    "platform.start",
                    json!({"requestId": r3, "version": "$LATEST"})
                ),
                ev(
                    "2026-11-25T04:02:00.005Z",
                    "function",
                    json!({"timestamp": "2026-11-25T04:02:00.005Z", "level": "ERROR", "requestId": r3,
                    "message": "unhandled exception", "errorType": "TypeError"})
                ),
                ev(
                    "2026-11-25T04:02:00.006Z",
                    "platform.logsDropped",
                    json!({"reason": "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.",
                    "droppedRecords": 17, "droppedBytes": 4096})
                ),
                ev(
                    "2026-11-25T04:02:00.020Z",
                    "platform.runtimeDone",
                    json!({"requestId": r3, "status": "error", "errorType": "Runtime.UnhandledPromiseRejection", "metrics": {"durationMs": 20.0}})
                ),
            ])],
            after_shutdown: Some(json!([report(
                r3,
                "2026-11-25T04:02:00.030Z",
                "error",
                20.0,
                None
            )])),
            logs: 1,
        },
    ]
}

#[derive(Default)]
struct Record {
    register: Option<(HeaderMap, Value)>,
    register_at: Option<Instant>,
    subscribe: Option<(HeaderMap, Value)>,
    subscribe_at: Option<Instant>,
    next_calls: Vec<(HeaderMap, Instant, Exported)>,
    init_errors: Vec<(HeaderMap, Value)>,
    shutdown_sent: Option<Instant>,
}

struct Emulator {
    out: PathBuf,
    script: Vec<Invocation>,
    record: Mutex<Record>,
    client: reqwest::Client,
}

async fn register(State(emu): State<Arc<Emulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mut r = emu.record.lock().unwrap();
    r.register = Some((headers, body));
    r.register_at = Some(Instant::now());
    (
        [("Lambda-Extension-Identifier", EXT_ID)],
        json_body(json!({"functionName": "orders", "functionVersion": "$LATEST", "handler": "index.handler", "accountId": "123456789012"})),
    )
        .into_response()
}

async fn subscribe(State(emu): State<Arc<Emulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mut r = emu.record.lock().unwrap();
    r.subscribe = Some((headers, body));
    r.subscribe_at = Some(Instant::now());
    (StatusCode::OK, "OK").into_response()
}

async fn init_error(State(emu): State<Arc<Emulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    emu.record.lock().unwrap().init_errors.push((headers, body));
    (StatusCode::ACCEPTED, json_body(json!({"status": "OK"}))).into_response()
}

fn json_body(v: Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn push_later(emu: &Arc<Emulator>, pushes: Vec<Value>) {
    let emu = emu.clone();
    tokio::spawn(async move {
        let uri = {
            let r = emu.record.lock().unwrap();
            r.subscribe.as_ref().unwrap().1["destination"]["URI"]
                .as_str()
                .unwrap()
                .to_string()
        };
        for body in pushes {
            let status = emu
                .client
                .post(&uri)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "{status}");
        }
    });
}

async fn next(State(emu): State<Arc<Emulator>>, headers: HeaderMap) -> Response {
    let snapshot = exported(&emu.out);
    let k = {
        let mut r = emu.record.lock().unwrap();
        r.next_calls.push((headers, Instant::now(), snapshot));
        r.next_calls.len() - 1
    };
    match emu.script.get(k) {
        Some(inv) => {
            push_later(&emu, inv.pushes.clone());
            json_body(json!({"eventType": "INVOKE", "deadlineMs": epoch_ms() + 30_000, "requestId": inv.request,
                "invokedFunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:orders",
                "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}}))
            .into_response()
        }
        None => {
            let late: Vec<Value> = emu
                .script
                .iter()
                .filter_map(|i| i.after_shutdown.clone())
                .collect();
            emu.record.lock().unwrap().shutdown_sent = Some(Instant::now());
            push_later(&emu, late);
            json_body(json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": epoch_ms() + 2000})).into_response()
        }
    }
}

async fn start_emulator(out: PathBuf) -> (Arc<Emulator>, SocketAddr) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = Arc::new(Emulator {
        out,
        script: script(),
        record: Mutex::new(Record::default()),
        client: reqwest::Client::new(),
    });
    let app = axum::Router::new()
        .route("/2020-01-01/extension/register", post(register))
        .route("/2020-01-01/extension/event/next", get(next))
        .route("/2020-01-01/extension/init/error", post(init_error))
        .route("/2022-07-01/telemetry", put(subscribe))
        .with_state(emu.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (emu, addr)
}

fn config(out: &Path) -> String {
    let file = |name: &str| {
        format!(
            "  file/{name}:\n    path: {}\n    flush_interval: 0s\n",
            out.join(format!("{name}.jsonl")).display()
        )
    };
    let pipeline = |signal: &str| {
        format!(
            "    {signal}:\n      receivers: [lambda]\n      processors: [batch]\n      exporters: [file/{signal}]\n"
        )
    };
    [
        "receivers:\n  lambda:\n    endpoint: 127.0.0.1:0\n".to_string(),
        "processors:\n  batch:\n    timeout: 1h\n    send_batch_size: 100000\n".into(),
        "exporters:\n".into(),
        file("logs"),
        file("metrics"),
        file("traces"),
        "service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n".into(),
        pipeline("logs"),
        pipeline("metrics"),
        pipeline("traces"),
    ]
    .concat()
}

fn spawn(api: SocketAddr, config_path: &Path, envs: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .envs(envs.iter().copied())
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("SLUICE_CONFIG", config_path)
        .env("AWS_LAMBDA_FUNCTION_NAME", "orders")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_REGION", "eu-west-1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_exit(child: &mut Child, within: Duration) -> (std::process::ExitStatus, Instant) {
    let give_up = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, Instant::now());
        }
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("sluice did not exit");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_sequence_is_exported_before_each_next_event_and_shutdown_exits_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, api) = start_emulator(dir.path().to_path_buf()).await;
    let config_path = dir.path().join("sluice.yaml");
    std::fs::write(&config_path, config(dir.path())).unwrap();

    let spawned = Instant::now();
    let mut child = spawn(api, &config_path, &[]);
    let (status, exited) = wait_exit(&mut child, Duration::from_secs(120)).await;
    let log = stderr_of(&mut child);
    assert!(status.success(), "{status}\n{log}");

    let r = emu.record.lock().unwrap();
    // Registration: name = the executable's file name, both events, the account id feature.
    let (headers, body) = r.register.as_ref().expect("registered");
    assert_eq!(headers["lambda-extension-name"], "sluice");
    assert_eq!(headers["lambda-extension-accept-feature"], "accountId");
    assert_eq!(body["events"], json!(["INVOKE", "SHUTDOWN"]));
    // Subscription: with the id, the documented schema, buffering within AWS's limits.
    let (headers, body) = r.subscribe.as_ref().expect("subscribed");
    assert_eq!(headers["lambda-extension-identifier"], EXT_ID);
    assert_eq!(body["schemaVersion"], "2022-12-13");
    assert_eq!(body["types"], json!(["platform", "function", "extension"]));
    assert_eq!(body["destination"]["protocol"], "HTTP");
    assert!(
        body["destination"]["URI"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let b = &body["buffering"];
    assert!((1000..=10_000).contains(&b["maxItems"].as_u64().unwrap()));
    assert!((262_144..=1_048_576).contains(&b["maxBytes"].as_u64().unwrap()));
    assert!((25..=30_000).contains(&b["timeoutMs"].as_u64().unwrap()));
    assert!(r.init_errors.is_empty());

    let script = script();
    assert_eq!(
        r.next_calls.len(),
        script.len() + 1,
        "one event/next per INVOKE plus the SHUTDOWN"
    );
    for (headers, _, _) in &r.next_calls {
        assert_eq!(headers["lambda-extension-identifier"], EXT_ID);
    }
    // Nothing of an invocation is left behind when sluice asks for the next event (the batch
    // processor's timeout is an hour: only the flush can have sent it).
    for (i, inv) in script.iter().enumerate() {
        let seen = &r.next_calls[i + 1].2;
        assert_eq!(
            seen.logs_of(inv.request),
            inv.logs,
            "logs of invocation {i} at the next event/next"
        );
        assert!(
            seen.span_of(inv.request).is_some(),
            "span of invocation {i} at the next event/next"
        );
        if inv.after_shutdown.is_none() {
            assert_eq!(
                seen.counter_total("faas.invocations"),
                i as i64 + 1,
                "report of invocation {i}"
            );
        }
    }

    // SHUTDOWN: exits, having exported the report pushed after it.
    let shutdown = r.shutdown_sent.unwrap();
    let shutdown_took = exited.duration_since(shutdown);
    // How fast shutdown is (Lambda allows 2 s) is measured and printed below, not asserted:
    // the machines are shared. What must hold is that it ends and nothing is lost.
    assert!(
        shutdown_took < Duration::from_secs(60),
        "still running {shutdown_took:?} after SHUTDOWN"
    );

    let out = exported(dir.path());
    // Logs: text and JSON, severity, attributes, request ids, resource.
    let text = out
        .logs
        .iter()
        .find(|l| {
            l["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.contains("loading order 7"))
        })
        .unwrap();
    assert_eq!(invocation_of(text), Some(script[0].request));
    let warn = out
        .logs
        .iter()
        .find(|l| l["body"]["stringValue"] == "stock low")
        .unwrap();
    assert_eq!(
        (
            warn["severityNumber"].as_i64(),
            warn["severityText"].as_str()
        ),
        (Some(13), Some("WARN"))
    );
    assert_eq!(attr(warn, "sku").unwrap()["stringValue"], "A-1");
    assert_eq!(attr(warn, "left").unwrap()["intValue"], "2");
    let err = out
        .logs
        .iter()
        .find(|l| l["body"]["stringValue"] == "unhandled exception")
        .unwrap();
    assert_eq!(err["severityNumber"].as_i64(), Some(17));
    assert_eq!(invocation_of(err), Some(script[2].request));
    let dropped = out
        .logs
        .iter()
        .find(|l| {
            attr(l, "event.name").is_some_and(|v| v["stringValue"] == "aws.lambda.logs_dropped")
        })
        .unwrap();
    assert_eq!(dropped["severityText"], "WARN");
    let resource = &warn["resource"];
    for (key, value) in [
        ("faas.name", json!({"stringValue": "orders"})),
        ("faas.version", json!({"stringValue": "$LATEST"})),
        (
            "faas.instance",
            json!({"stringValue": "2026/11/25/[$LATEST]instance01"}),
        ),
        ("faas.max_memory", json!({"intValue": "268435456"})),
        ("cloud.provider", json!({"stringValue": "aws"})),
        ("cloud.platform", json!({"stringValue": "aws_lambda"})),
        ("cloud.region", json!({"stringValue": "eu-west-1"})),
        ("cloud.account.id", json!({"stringValue": "123456789012"})),
    ] {
        assert_eq!(attr(resource, key), Some(&value), "resource {key}");
    }

    // Metrics: values and units.
    let hist_sums = |name: &str| -> (Vec<f64>, String) {
        let ms = out.metric(name);
        let unit = ms
            .first()
            .map(|m| m["unit"].as_str().unwrap().to_string())
            .unwrap_or_default();
        let sums = ms
            .iter()
            .flat_map(|m| {
                m["histogram"]["dataPoints"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|p| p["sum"].as_f64().unwrap())
            .collect();
        (sums, unit)
    };
    assert_eq!(
        hist_sums("faas.invoke_duration"),
        (vec![0.25, 3.0, 0.02], "s".into())
    );
    assert_eq!(hist_sums("faas.init_duration"), (vec![0.301], "s".into()));
    assert_eq!(
        hist_sums("faas.mem_usage"),
        (vec![67_108_864.0; 3], "By".into())
    );
    assert_eq!(hist_sums("aws.lambda.billed_duration").1, "s");
    assert_eq!(out.counter_total("faas.invocations"), 3);
    assert_eq!(out.counter_total("faas.timeouts"), 1);
    assert_eq!(out.counter_total("faas.errors"), 1);
    assert_eq!(out.counter_total("faas.coldstarts"), 1);
    assert_eq!(out.counter_total("aws.lambda.logs_dropped"), 17);

    // Spans: the cold start and the invocations, the first in the function's trace.
    let init = out.spans.iter().find(|s| s["name"] == "init").unwrap();
    assert_eq!(attr(init, "faas.coldstart").unwrap()["boolValue"], true);
    let first = out.span_of(script[0].request).unwrap();
    assert_eq!(first["traceId"], "62e900b2710d76f009d6e7785905449a");
    assert_eq!(first["parentSpanId"], "0efbd19962d95b05");
    assert_eq!(attr(first, "faas.coldstart").unwrap()["boolValue"], true);
    assert!(
        out.spans
            .iter()
            .any(|s| s["name"] == "responseLatency" && s["parentSpanId"] == first["spanId"])
    );
    assert_eq!(out.span_of(script[1].request).unwrap()["status"]["code"], 2);
    assert_eq!(out.span_of(script[2].request).unwrap()["status"]["code"], 2);

    let to_register = r.register_at.unwrap().duration_since(spawned);
    let to_subscribe = r.subscribe_at.unwrap().duration_since(spawned);
    let to_next = r.next_calls[0].1.duration_since(spawned);
    eprintln!(
        "start-up (spawn → emulator saw it): registered {:.1} ms, subscribed {:.1} ms, first event/next {:.1} ms; SHUTDOWN → exit {:.1} ms",
        to_register.as_secs_f64() * 1e3,
        to_subscribe.as_secs_f64() * 1e3,
        to_next.as_secs_f64() * 1e3,
        shutdown_took.as_secs_f64() * 1e3
    );
    eprintln!(
        "sluice's own measure: {}",
        log.lines()
            .find(|l| l.contains("registered and running"))
            .unwrap_or("-")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_reported_through_init_error() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, api) = start_emulator(dir.path().to_path_buf()).await;
    let config_path = dir.path().join("sluice.yaml");
    std::fs::write(&config_path, "receivers:\n  lambdaa:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [lambdaa]\n      exporters: [debug]\n").unwrap();
    let mut child = spawn(api, &config_path, &[]);
    let (status, _) = wait_exit(&mut child, Duration::from_secs(60)).await;
    assert!(!status.success());
    let r = emu.record.lock().unwrap();
    assert_eq!(r.init_errors.len(), 1);
    let (headers, body) = &r.init_errors[0];
    assert_eq!(headers["lambda-extension-identifier"], EXT_ID);
    assert_eq!(
        headers["lambda-extension-function-error-type"],
        "Extension.ConfigInvalid"
    );
    assert_eq!(body["errorType"], "Extension.ConfigInvalid");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("lambdaa"),
        "{body}"
    );
    assert!(r.next_calls.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_at_the_next_invocation_still_exports_everything_by_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, api) = start_emulator(dir.path().to_path_buf()).await;
    let config_path = dir.path().join("sluice.yaml");
    std::fs::write(&config_path, config(dir.path())).unwrap();
    let mut child = spawn(api, &config_path, &[("SLUICE_LAMBDA_FLUSH", "next")]);
    let (status, exited) = wait_exit(&mut child, Duration::from_secs(120)).await;
    let log = stderr_of(&mut child);
    assert!(status.success(), "{status}\n{log}");
    let r = emu.record.lock().unwrap();
    let took = exited.duration_since(r.shutdown_sent.unwrap());
    // Ends (speed is the previous test's measurement), and everything was exported by then.
    assert!(
        took < Duration::from_secs(60),
        "still running {took:?} after SHUTDOWN"
    );
    let out = exported(dir.path());
    for inv in script() {
        assert_eq!(out.logs_of(inv.request), inv.logs);
        assert!(out.span_of(inv.request).is_some());
    }
    assert_eq!(out.counter_total("faas.invocations"), 3);
}
