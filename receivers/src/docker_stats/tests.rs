use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
    ContainerMemoryStats, ContainerNetworkStats, ContainerStatsResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};

use super::config::Settings;
use super::events::{Action, lifecycle_record};
use super::metrics::{cpu_usage, running, stopped, working_set};
use super::state::{CpuSample, State, Tracked, parse_rfc3339_nanos, split_image};
use super::*;
use sluice_pipeline::Logs;
use sluice_pipeline::config_keys::{ConfigWarnings, decode_section};

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Receiver,
        id: ComponentId::new("docker_stats"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "receivers.docker_stats".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

fn settings(yaml: &str) -> Result<Settings, ConfigErrors> {
    settings_and_warnings(yaml).0
}

fn settings_and_warnings(yaml: &str) -> (Result<Settings, ConfigErrors>, Vec<String>) {
    let c = component(yaml);
    let warnings = ConfigWarnings::default();
    let result = decode_section::<DockerStatsConfig>(&c, &[], &warnings)
        .and_then(|cfg| cfg.validate(&c, &warnings));
    let warned = warnings.take().iter().map(ToString::to_string).collect();
    (result, warned)
}

#[test]
fn images_split_into_name_and_tag() {
    assert_eq!(split_image("redis"), ("redis".into(), "latest".into()));
    assert_eq!(split_image("redis:7"), ("redis".into(), "7".into()));
    assert_eq!(
        split_image("registry:5000/team/app:1.2@sha256:abc"),
        ("registry:5000/team/app".into(), "1.2".into())
    );
    assert_eq!(
        split_image("registry:5000/team/app"),
        ("registry:5000/team/app".into(), "latest".into())
    );
}

#[test]
fn docker_timestamps_parse() {
    assert_eq!(
        parse_rfc3339_nanos("1970-01-01T00:00:01.5Z"),
        Some(1_500_000_000)
    );
    assert_eq!(
        parse_rfc3339_nanos("2024-02-29T12:00:00.000000001Z"),
        Some(1_709_208_000_000_000_001)
    );
    assert_eq!(
        parse_rfc3339_nanos("2024-02-29T13:00:00+01:00"),
        Some(1_709_208_000_000_000_000)
    );
    assert_eq!(parse_rfc3339_nanos("0001-01-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339_nanos("garbage"), None);
}

#[test]
fn config_is_checked_with_key_paths() {
    let s = settings("api_version: 1.41\nexcluded_images: [\"redis*\"]\n").unwrap();
    assert_eq!(s.api_version, Some((1, 41)));
    assert!(s.excluded("redis:7"));
    assert!(s.excluded("redis"));
    assert!(!s.excluded("nginx:redis"));
    let Err(e) = settings(
        "endpoint: ftp://x\ncollection_interval: 0s\napi_version: one\nexcluded_images: [\"a[\"]\n",
    ) else {
        panic!("accepted a bad config")
    };
    let text = e.to_string();
    for key in [
        "receivers.docker_stats.endpoint",
        "receivers.docker_stats.collection_interval",
        "receivers.docker_stats.api_version",
        "receivers.docker_stats.excluded_images",
    ] {
        assert!(text.contains(key), "{key} missing from: {text}");
    }
    assert!(settings("bogus: 1\n").is_err(), "unknown keys are refused");
}

fn stats(total: u64, system: u64) -> ContainerStatsResponse {
    ContainerStatsResponse {
        cpu_stats: Some(ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                usage_in_usermode: Some(3_000_000_000),
                usage_in_kernelmode: Some(1_000_000_000),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(4),
            ..Default::default()
        }),
        memory_stats: Some(ContainerMemoryStats {
            usage: Some(100_000),
            limit: Some(400_000),
            stats: Some(HashMap::from([("total_inactive_file".to_string(), 20_000)])),
            ..Default::default()
        }),
        networks: Some(HashMap::from([(
            "eth0".to_string(),
            ContainerNetworkStats {
                rx_bytes: Some(10),
                tx_bytes: Some(20),
                ..Default::default()
            },
        )])),
        blkio_stats: Some(ContainerBlkioStats {
            io_service_bytes_recursive: Some(vec![
                ContainerBlkioStatEntry {
                    major: Some(8),
                    minor: Some(0),
                    op: Some("Read".into()),
                    value: Some(512),
                },
                ContainerBlkioStatEntry {
                    major: Some(8),
                    minor: Some(0),
                    op: Some("write".into()),
                    value: Some(1024),
                },
                ContainerBlkioStatEntry {
                    major: Some(8),
                    minor: Some(0),
                    op: Some("Total".into()),
                    value: Some(1536),
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn cpu_usage_follows_docker_stats() {
    // 0.5 s of container CPU while the host's 4 CPUs spent 4 s: half of one CPU (50 %).
    let previous = CpuSample {
        container: 1_000_000_000,
        system: 10_000_000_000,
    };
    let now = stats(1_500_000_000, 14_000_000_000);
    assert_eq!(cpu_usage(&now, Some(previous)), Some(0.5));
    assert_eq!(cpu_usage(&now, None), None, "no rate from one sample");
    assert_eq!(working_set(&now), Some(80_000));
}

fn tracked(state: State) -> Tracked {
    Tracked {
        id: "abc".into(),
        name: "web".into(),
        resource: vec![crate::cgroups::builder::string_kv("container.id", "abc")],
        started_at: 1_000_000_000,
        restart_count: 2,
        state,
        previous_cpu: None,
        limits: Default::default(),
        emit_metrics: true,
    }
}

fn points(r: &ResourceMetrics) -> Vec<(String, Vec<String>, f64)> {
    let mut out = Vec::new();
    for m in &r.scope_metrics[0].metrics {
        let dps = match m.data.as_ref().unwrap() {
            metric::Data::Gauge(g) => &g.data_points,
            metric::Data::Sum(s) => &s.data_points,
            _ => panic!(),
        };
        for dp in dps {
            let attrs = dp
                .attributes
                .iter()
                .map(
                    |kv| match kv.value.as_ref().unwrap().value.as_ref().unwrap() {
                        Value::StringValue(s) => format!("{}={s}", kv.key),
                        other => format!("{}={other:?}", kv.key),
                    },
                )
                .collect();
            let v = match dp.value.unwrap() {
                number_data_point::Value::AsInt(i) => i as f64,
                number_data_point::Value::AsDouble(d) => d,
            };
            out.push((m.name.clone(), attrs, v));
        }
    }
    out
}

fn value(r: &ResourceMetrics, name: &str, attrs: &[&str]) -> Option<f64> {
    points(r)
        .into_iter()
        .find(|(n, a, _)| n == name && a.iter().map(String::as_str).eq(attrs.iter().copied()))
        .map(|(_, _, v)| v)
}

#[test]
fn a_running_container_reports_its_stats() {
    let plan = settings("").unwrap().plan;
    let r = running(
        &tracked(State::Running),
        Some(&stats(1, 1)),
        Some(0.25),
        11_000_000_000,
        &plan,
    );
    assert_eq!(value(&r, "container.up", &[]), Some(1.0));
    assert_eq!(value(&r, "container.restarts", &[]), Some(2.0));
    assert_eq!(value(&r, "container.uptime", &[]), Some(10.0));
    assert_eq!(
        value(&r, "container.cpu.time", &["cpu.mode=user"]),
        Some(3.0)
    );
    assert_eq!(
        value(&r, "container.cpu.time", &["cpu.mode=system"]),
        Some(1.0)
    );
    assert_eq!(value(&r, "container.cpu.usage", &[]), Some(0.25));
    assert_eq!(value(&r, "container.memory.usage", &[]), Some(100_000.0));
    assert_eq!(
        value(&r, "container.memory.working_set", &[]),
        Some(80_000.0)
    );
    assert_eq!(value(&r, "container.memory.limit", &[]), Some(400_000.0));
    assert_eq!(value(&r, "container.memory.percent", &[]), Some(20.0));
    assert_eq!(
        value(
            &r,
            "container.network.io",
            &[
                "network.interface.name=eth0",
                "network.io.direction=transmit"
            ]
        ),
        Some(20.0)
    );
    assert_eq!(
        value(
            &r,
            "container.disk.io",
            &["disk.io.direction=read", "system.device=8:0"]
        ),
        Some(512.0)
    );
    assert_eq!(
        value(
            &r,
            "container.disk.io",
            &["disk.io.direction=write", "system.device=8:0"]
        ),
        Some(1024.0)
    );
}

#[test]
fn a_stopped_container_reports_only_that_it_is_down() {
    let r = stopped(
        &tracked(State::Stopped {
            since: std::time::Instant::now(),
        }),
        5,
        &settings("").unwrap().plan,
    );
    assert_eq!(points(&r), vec![("container.up".to_string(), vec![], 0.0)]);
}

#[test]
fn lifecycle_events_become_log_records() {
    let attrs = HashMap::from([("exitCode".to_string(), "137".to_string())]);
    let logs = lifecycle_record(Action::Die, "web", &attrs, vec![], 7, 8);
    let record = &logs.scope_logs[0].log_records[0];
    assert_eq!(record.time_unix_nano, 7);
    assert_eq!(record.severity_text, "WARN");
    assert_eq!(record.event_name, "docker.container.lifecycle");
    let Some(Value::StringValue(body)) = record.body.as_ref().unwrap().value.as_ref() else {
        panic!()
    };
    assert_eq!(body, "container web died with exit code 137");
    assert!(
        record
            .attributes
            .iter()
            .any(|kv| kv.key == "process.exit.code"
                && kv.value.as_ref().unwrap().value == Some(Value::IntValue(137)))
    );
    let oom = lifecycle_record(Action::Oom, "web", &HashMap::new(), vec![], 7, 8);
    assert_eq!(oom.scope_logs[0].log_records[0].severity_text, "ERROR");
}

#[tokio::test]
async fn an_unreachable_daemon_does_not_stop_the_start() {
    let c =
        component("endpoint: unix:///nonexistent/sluice/docker.sock\ncollection_interval: 10ms\n");
    let sink: DynConsumer<Metrics> = Arc::new(Sink::default());
    let receiver = DockerStatsReceiverFactory
        .build(
            &c,
            ReceiverOutputs {
                metrics: Some(sink),
                ..Default::default()
            },
            &BuildContext::default(),
        )
        .unwrap();
    receiver.start().await.unwrap();
    receiver
        .shutdown(Instant::now() + std::time::Duration::from_secs(5))
        .await;
}

#[derive(Default)]
struct Sink(std::sync::Mutex<usize>);

#[async_trait]
impl sluice_pipeline::Consumer<Metrics> for Sink {
    async fn consume(&self, batch: sluice_pipeline::Batch<Metrics>) {
        *self.0.lock().unwrap() += batch.items();
    }
}

// ---- a fake daemon on a unix socket, to prove the event stream is followed across reconnects ----

/// Lifecycle actions the logs output received, in order.
#[derive(Default)]
struct LogSink(std::sync::Mutex<Vec<String>>);

#[async_trait]
impl sluice_pipeline::Consumer<Logs> for LogSink {
    async fn consume(&self, batch: sluice_pipeline::Batch<Logs>) {
        for rl in batch.resources() {
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    for kv in &r.attributes {
                        if kv.key == "docker.container.action"
                            && let Some(Value::StringValue(a)) =
                                kv.value.as_ref().and_then(|v| v.value.clone())
                        {
                            self.0.lock().unwrap().push(a);
                        }
                    }
                }
            }
        }
    }
}

struct FakeDaemon {
    /// The query of every `/events` request, in order.
    events_requests: std::sync::Mutex<Vec<String>>,
    lists: std::sync::atomic::AtomicUsize,
    /// Signalled when stats were served: the container dies only after it was polled.
    polled: tokio::sync::Notify,
}

const T0: u64 = 1_767_225_600_000_000_000;

fn event(action: &str, nanos: u64, extra: &str) -> String {
    format!(
        r#"{{"Type":"container","Action":"{action}","Actor":{{"ID":"c1","Attributes":{{"image":"img:1","name":"web"{extra}}}}},"time":{},"timeNano":{nanos}}}"#,
        nanos / 1_000_000_000
    ) + "\n"
}

async fn fake_daemon(
    daemon: Arc<FakeDaemon>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::body::Body;
    use futures::StreamExt;
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let json = |text: &str| {
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(text.to_string()))
            .unwrap()
    };
    if path.ends_with("/_ping") {
        return json("OK");
    }
    if path.ends_with("/containers/json") {
        // Empty before the container starts; running when the receiver lists again after
        // the reconnect.
        let n = daemon
            .lists
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return json(if n == 0 {
            "[]"
        } else {
            r#"[{"Id":"c1","Image":"img:1","State":"running"}]"#
        });
    }
    if path.ends_with("/containers/c1/json") {
        return json(
            r#"{"Id":"c1","Name":"/web","RestartCount":0,"Config":{"Image":"img:1","Hostname":"h"},"State":{"Status":"running","StartedAt":"2026-01-01T00:00:00Z"}}"#,
        );
    }
    if path.ends_with("/containers/c1/stats") {
        daemon.polled.notify_one();
        return json(r#"{"memory_stats":{"usage":1000,"limit":4000},"pids_stats":{"current":1}}"#);
    }
    if path.ends_with("/events") {
        let n = {
            let mut requests = daemon.events_requests.lock().unwrap();
            requests.push(query);
            requests.len()
        };
        let chunks: Vec<Result<String, std::io::Error>> = if n == 1 {
            // The daemon "restarts" right after the container starts: the stream ends.
            vec![Ok(event("start", T0, ""))]
        } else {
            vec![Ok(event("die", T0 + 5, r#","exitCode":"3""#))]
        };
        let body =
            futures::stream::iter(chunks).chain(futures::stream::unfold(n, |n| async move {
                if n == 1 {
                    None
                } else {
                    futures::future::pending::<Option<(Result<String, std::io::Error>, usize)>>()
                        .await
                }
            }));
        return axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(body))
            .unwrap();
    }
    axum::response::Response::builder()
        .status(404)
        .body(Body::from(format!("{{\"message\":\"no {path}\"}}")))
        .unwrap()
}

#[tokio::test]
async fn events_are_followed_across_a_daemon_restart() {
    let dir = crate::cgroups::tests::Tree::new("docker-sock");
    let socket = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let daemon = Arc::new(FakeDaemon {
        events_requests: Default::default(),
        lists: Default::default(),
        polled: Default::default(),
    });
    let app = axum::Router::new().fallback({
        let daemon = daemon.clone();
        move |request: axum::extract::Request| fake_daemon(daemon.clone(), request)
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let c = component(&format!(
        "endpoint: unix://{}\napi_version: \"1.41\"\ncollection_interval: 20ms\n",
        socket.display()
    ));
    let metrics = Arc::new(Sink::default());
    let logs = Arc::new(LogSink::default());
    let receiver = DockerStatsReceiverFactory
        .build(
            &c,
            ReceiverOutputs {
                metrics: Some(metrics.clone()),
                logs: Some(logs.clone()),
                ..Default::default()
            },
            &BuildContext::default(),
        )
        .unwrap();
    receiver.start().await.unwrap();
    // Bounds a broken run only.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    // The die is sent once stats were served, but the poll that read them may hand its batch
    // over after the die's record: wait for both.
    while (logs.0.lock().unwrap().len() < 2 || *metrics.0.lock().unwrap() == 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    receiver
        .shutdown(Instant::now() + std::time::Duration::from_secs(5))
        .await;
    server.abort();

    assert_eq!(*logs.0.lock().unwrap(), vec!["start", "die"]);
    let requests = daemon.events_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "reconnected once: {requests:?}");
    // The second stream resumes where the first one stopped, so nothing in between is lost.
    assert!(
        requests[1].contains("since=1767225600.000000000"),
        "{requests:?}"
    );
    assert!(
        *metrics.0.lock().unwrap() > 0,
        "the container's stats were read"
    );
}

#[tokio::test]
async fn stopped_containers_stay_visible_for_the_grace_period_only() {
    let shared = Shared {
        name: "docker_stats".into(),
        settings: settings("stopped_grace_period: 1h\n").unwrap(),
        containers: Mutex::new(Containers::new()),
        client: Mutex::new(None),
        metrics: None,
        logs: None,
    };
    let now = std::time::Instant::now();
    let mut recent = tracked(State::Stopped { since: now });
    recent.id = "recent".into();
    let mut old = tracked(State::Stopped {
        since: now
            .checked_sub(std::time::Duration::from_secs(7200))
            .unwrap(),
    });
    old.id = "old".into();
    shared
        .containers
        .lock()
        .unwrap()
        .extend([("recent".to_string(), recent), ("old".to_string(), old)]);
    let resources = poll::collect(&shared).await;
    assert_eq!(resources.len(), 1);
    assert_eq!(
        points(&resources[0]),
        vec![("container.up".to_string(), vec![], 0.0)]
    );
    assert!(!shared.containers.lock().unwrap().contains_key("old"));
}

// ---- the OTel Collector's keys ----

#[test]
fn excluded_images_take_literals_globs_regexes_and_negations() {
    let s =
        settings("excluded_images: [redis, \"nginx:*\", \"/^registry\\\\.local/.*:v[0-9]+$/\"]\n")
            .unwrap();
    assert!(s.excluded("redis"));
    assert!(!s.excluded("redis:7"), "a literal is the whole image");
    assert!(s.excluded("nginx:1.25"));
    assert!(s.excluded("registry.local/team/app:v3"));
    assert!(!s.excluded("registry.local/team/app:latest"));
    // Negated: every image that does not match is excluded.
    let s = settings("excluded_images: [\"!/^keep-/\"]\n").unwrap();
    assert!(!s.excluded("keep-me:1"));
    assert!(s.excluded("other:1"));
    let s = settings("excluded_images: [\"!only\"]\n").unwrap();
    assert!(!s.excluded("only"));
    assert!(s.excluded("anything-else"));
    let Err(e) = settings("excluded_images: [ok, \"/(/\"]\n") else {
        panic!("accepted a bad regex")
    };
    assert!(e.to_string().contains("excluded_images[1]"), "{e}");
}

#[test]
fn api_versions_are_read_as_the_collector_reads_them() {
    assert_eq!(
        settings("api_version: 1.4\n").unwrap().api_version,
        Some((1, 40))
    );
    assert_eq!(
        settings("api_version: \"1.44\"\n").unwrap().api_version,
        Some((1, 44))
    );
    assert_eq!(settings("api_version: \"\"\n").unwrap().api_version, None);
    let Err(e) = settings("api_version: \"1.24\"\n") else {
        panic!("accepted a version below the minimum")
    };
    assert!(e.to_string().contains("at least 1.25"), "{e}");
}

#[test]
fn retry_waits_and_event_times_are_checked() {
    let s = settings(
        "min_docker_retry_wait: 2s\nmax_docker_retry_wait: 1m\nlogs:\n  since: \"1700000000\"\n  until: \"2030-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    assert_eq!(s.min_retry, std::time::Duration::from_secs(2));
    assert_eq!(s.events.since, Some(1_700_000_000_000_000_000));
    assert_eq!(s.events.until, Some(1_893_456_000_000_000_000));
    let Err(e) = settings(
        "min_docker_retry_wait: 1m\nmax_docker_retry_wait: 1s\nlogs:\n  since: yesterday\n",
    ) else {
        panic!("accepted bad waits")
    };
    let text = e.to_string();
    assert!(text.contains("max_docker_retry_wait"), "{text}");
    assert!(text.contains("logs.since"), "{text}");
}

#[test]
fn event_filters_match_as_docker_matches_container_events() {
    let s =
        settings("logs:\n  filters:\n    event: [die, oom]\n    label: [\"team=core\"]\n").unwrap();
    let labels = HashMap::from([("team".to_string(), "core".to_string())]);
    let facts = |action| config::EventFacts {
        action,
        id: "abcdef",
        name: "web",
        image: "img:1",
        labels: &labels,
        time: 5,
    };
    assert!(s.events.allows(&facts("die")));
    assert!(!s.events.allows(&facts("start")));
    let other = HashMap::new();
    assert!(!s.events.allows(&config::EventFacts {
        labels: &other,
        ..facts("die")
    }));
    let s = settings("logs:\n  filters:\n    container: [abc]\n    image: [img]\n").unwrap();
    assert!(s.events.allows(&facts("start")), "id prefix and image name");
    let (s, w) = settings_and_warnings("logs:\n  filters:\n    network: [bridge]\n");
    assert!(!s.unwrap().events.allows(&facts("start")));
    assert!(w[0].contains("logs.filters.network"), "{w:?}");
    let s = settings("logs:\n  until: \"1\"\n").unwrap();
    assert!(s.events.allows(&facts("start")), "at 5 ns, before until");
    let late = config::EventFacts {
        time: 2_000_000_000,
        ..facts("start")
    };
    assert!(!s.events.allows(&late), "after until");
}

fn upstream_stats() -> ContainerStatsResponse {
    let mut s = stats(1_500_000_000, 14_000_000_000);
    if let Some(cpu) = s.cpu_stats.as_mut() {
        if let Some(u) = cpu.cpu_usage.as_mut() {
            u.percpu_usage = Some(vec![700, 800]);
        }
        cpu.throttling_data = Some(bollard::models::ContainerThrottlingData {
            periods: Some(10),
            throttled_periods: Some(2),
            throttled_time: Some(3_000_000_000),
        });
    }
    if let Some(m) = s.memory_stats.as_mut() {
        m.stats = Some(HashMap::from([
            ("total_inactive_file".to_string(), 20_000),
            ("total_cache".to_string(), 30_000),
            ("pgfault".to_string(), 7),
        ]));
        m.max_usage = Some(150_000);
        m.failcnt = Some(1);
    }
    s
}

#[test]
fn collector_names_units_and_attributes() {
    let plan = settings(
        "attribute_names: collector\nmetrics:\n  container.cpu.usage.percpu: {enabled: true}\n  container.memory.pgfault: {enabled: true}\n  container.cpu.throttling_data.throttled_time: {enabled: true}\n  container.restarts: {enabled: true}\n",
    )
    .unwrap()
    .plan;
    let r = running(
        &tracked(State::Running),
        Some(&upstream_stats()),
        Some(0.5),
        11_000_000_000,
        &plan,
    );
    let names: Vec<String> = r.scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.clone())
        .collect();
    for name in [
        "container.cpu.usage.total",
        "container.cpu.usage.kernelmode",
        "container.cpu.usage.usermode",
        "container.cpu.utilization",
        "container.memory.usage.limit",
        "container.memory.usage.total",
        "container.memory.percent",
        "container.memory.total_cache",
        "container.blockio.io_service_bytes_recursive",
        "container.network.io.usage.rx_bytes",
        "container.network.io.usage.tx_bytes",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    // sluice's own set is off under collector names, and so are the Collector's optional ones.
    for name in [
        "container.up",
        "container.cpu.time",
        "container.uptime",
        "container.memory.usage.max",
    ] {
        assert!(!names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_eq!(value(&r, "container.cpu.usage.usermode", &[]), Some(3e9));
    assert_eq!(value(&r, "container.cpu.utilization", &[]), Some(50.0));
    assert_eq!(
        value(&r, "container.memory.usage.total", &[]),
        Some(80_000.0)
    );
    assert_eq!(value(&r, "container.memory.percent", &[]), Some(20.0));
    assert_eq!(
        value(&r, "container.memory.total_cache", &[]),
        Some(30_000.0)
    );
    assert_eq!(value(&r, "container.memory.pgfault", &[]), Some(7.0));
    assert_eq!(value(&r, "container.restarts", &[]), Some(2.0));
    assert_eq!(
        value(&r, "container.cpu.throttling_data.throttled_time", &[]),
        Some(3e9),
        "nanoseconds, as the Collector reports it"
    );
    assert_eq!(
        value(&r, "container.cpu.usage.percpu", &["core=cpu1"]),
        Some(800.0)
    );
    assert_eq!(
        value(
            &r,
            "container.network.io.usage.tx_bytes",
            &["interface=eth0"]
        ),
        Some(20.0)
    );
    assert_eq!(
        value(
            &r,
            "container.blockio.io_service_bytes_recursive",
            &["device_major=8", "device_minor=0", "operation=read"]
        ),
        Some(512.0)
    );
    let unit = |name: &str| {
        r.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.unit.clone())
    };
    assert_eq!(unit("container.memory.percent").as_deref(), Some("1"));
    assert_eq!(unit("container.cpu.usage.total").as_deref(), Some("ns"));
    assert_eq!(unit("container.restarts").as_deref(), Some("{restarts}"));
}

#[test]
fn collector_metrics_switched_on_under_semconv_names_come_with_a_warning() {
    let (s, w) = settings_and_warnings(
        "metrics:\n  container.memory.usage.total: {enabled: true}\n  container.memory.pgfault: {enabled: true}\n  container.up: {enabled: false}\n",
    );
    let plan = s.unwrap().plan;
    assert_eq!(w.len(), 1, "only the one with a sluice counterpart: {w:?}");
    assert!(w[0].contains("container.memory.working_set"), "{w:?}");
    let r = running(
        &tracked(State::Running),
        Some(&upstream_stats()),
        None,
        11_000_000_000,
        &plan,
    );
    assert_eq!(
        value(&r, "container.memory.usage.total", &[]),
        Some(80_000.0)
    );
    assert_eq!(
        value(&r, "container.memory.working_set", &[]),
        Some(80_000.0)
    );
    assert_eq!(value(&r, "container.memory.pgfault", &[]), Some(7.0));
    assert_eq!(value(&r, "container.up", &[]), None);
    // Under semconv names the shared names are sluice's: seconds and %.
    assert_eq!(
        value(&r, "container.cpu.throttling_data.throttled_time", &[]),
        Some(3.0)
    );
}

#[test]
fn metric_switch_errors_point_at_the_name() {
    let Err(e) = settings("metrics:\n  container.memory.usage.totl:\n    enabled: true\n") else {
        panic!("accepted an unknown metric")
    };
    let text = e.to_string();
    assert!(text.starts_with("test.yaml:2:3:"), "{text}");
    assert!(
        text.contains("did you mean `container.memory.usage.total`"),
        "{text}"
    );
}

#[test]
fn the_former_per_core_switch_still_works() {
    let (s, w) =
        settings_and_warnings("attribute_names: collector\nprovide_per_core_cpu_metrics: true\n");
    assert!(w[0].contains("provide_per_core_cpu_metrics"), "{w:?}");
    let r = running(
        &tracked(State::Running),
        Some(&upstream_stats()),
        None,
        11_000_000_000,
        &s.unwrap().plan,
    );
    assert_eq!(
        value(&r, "container.cpu.usage.percpu", &["core=cpu0"]),
        Some(700.0)
    );
}

#[test]
fn attributes_merge_block_io_over_devices() {
    let plan = settings(
        "attribute_names: collector\nmetrics:\n  container.blockio.io_service_bytes_recursive:\n    attributes: [operation]\n",
    )
    .unwrap()
    .plan;
    let mut s = upstream_stats();
    if let Some(entries) = s
        .blkio_stats
        .as_mut()
        .and_then(|b| b.io_service_bytes_recursive.as_mut())
    {
        entries.push(ContainerBlkioStatEntry {
            major: Some(253),
            minor: Some(1),
            op: Some("read".into()),
            value: Some(100),
        });
    }
    let r = running(&tracked(State::Running), Some(&s), None, 1, &plan);
    assert_eq!(
        value(
            &r,
            "container.blockio.io_service_bytes_recursive",
            &["operation=read"]
        ),
        Some(612.0)
    );
}

fn inspect(json: &str) -> bollard::models::ContainerInspectResponse {
    serde_json::from_str(json).unwrap()
}

const INSPECT: &str = r#"{"Id":"c1","Name":"/web","Image":"sha256:feed","RestartCount":1,
 "Config":{"Image":"redis:7","Hostname":"h1","Cmd":["redis-server","--port","6380"],"Labels":{"team":"core"}},
 "HostConfig":{"NanoCpus":1500000000,"CpuShares":512},
 "State":{"Status":"running","StartedAt":"2026-01-01T00:00:00Z"}}"#;

fn resource_of(t: &Tracked) -> BTreeMap<String, String> {
    t.resource
        .iter()
        .map(
            |kv| match kv.value.as_ref().unwrap().value.as_ref().unwrap() {
                Value::StringValue(s) => (kv.key.clone(), s.clone()),
                other => (kv.key.clone(), format!("{other:?}")),
            },
        )
        .collect()
}

#[test]
fn resource_attributes_follow_the_naming_and_the_switches() {
    let t = state::track(&inspect(INSPECT), &settings("").unwrap()).unwrap();
    let r = resource_of(&t);
    assert_eq!(r["container.image.name"], "redis");
    assert_eq!(r["container.image.tag"], "7");
    assert_eq!(r["container.runtime.name"], "docker");
    assert!(!r.contains_key("container.image.id"));

    let s = settings(
        "attribute_names: collector\ncontainer_labels_to_metric_labels: {team: team.name}\nresource_attributes:\n  container.image.id: {enabled: true}\n  container.command_line: {enabled: true}\n  container.hostname: {enabled: false}\n  container.name: {override_value: cache}\n",
    )
    .unwrap();
    let t = state::track(&inspect(INSPECT), &s).unwrap();
    let r = resource_of(&t);
    assert_eq!(r["container.image.name"], "redis:7");
    assert_eq!(r["container.runtime"], "docker");
    assert_eq!(r["container.image.id"], "sha256:feed");
    assert_eq!(r["container.command_line"], "redis-server --port 6380");
    assert_eq!(r["container.name"], "cache");
    assert_eq!(r["team.name"], "core");
    assert!(!r.contains_key("container.hostname"));
    assert!(!r.contains_key("container.image.tag"));
    assert!(t.emit_metrics);

    // CPU settings of the container.
    let plan = settings("attribute_names: collector\nmetrics:\n  container.cpu.limit: {enabled: true}\n  container.cpu.shares: {enabled: true}\n").unwrap().plan;
    let m = running(&t, None, None, 1, &plan);
    assert_eq!(value(&m, "container.cpu.limit", &[]), Some(1.5));
    assert_eq!(value(&m, "container.cpu.shares", &[]), Some(512.0));
    assert_eq!(state::cpuset_size("0-3,8"), Some(5.0));

    let s = settings(
        "resource_attributes:\n  container.image.name:\n    metrics_exclude: [{regexp: '^red'}]\n",
    )
    .unwrap();
    assert!(!state::track(&inspect(INSPECT), &s).unwrap().emit_metrics);
}

#[test]
fn every_collector_metric_is_known_with_its_default() {
    let on: Vec<&str> = metrics::METRICS
        .iter()
        .filter(|d| d.set == metrics::Set::Collector && d.default_on)
        .map(|d| d.name)
        .collect();
    assert_eq!(
        on,
        [
            "container.cpu.usage.total",
            "container.cpu.usage.kernelmode",
            "container.cpu.usage.usermode",
            "container.cpu.utilization",
            "container.memory.usage.limit",
            "container.memory.usage.total",
            "container.memory.percent",
            "container.memory.total_cache",
            "container.memory.file",
            "container.blockio.io_service_bytes_recursive",
            "container.network.io.usage.rx_bytes",
            "container.network.io.usage.tx_bytes",
            "container.network.io.usage.rx_dropped",
            "container.network.io.usage.tx_dropped",
        ]
    );
    let all = metrics::METRICS
        .iter()
        .filter(|d| d.set == metrics::Set::Collector)
        .count();
    assert_eq!(all, 71);
}
