//! The `docker_stats` receiver in the real binary against the machine's real Docker engine.
//! There is no image registry here, so the test builds a tiny image from Debian's
//! busybox-static (`docker import` of a rootfs tarball) and removes everything it made, even
//! when it fails. An unreachable engine fails the test loudly: it never passes by skipping.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Collector;
use serde_json::Value;

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `docker`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the containers and image the test made, whatever happens to the test.
struct Cleanup {
    image: String,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

impl Cleanup {
    fn run(&mut self, args: &[&str]) -> String {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        let id = docker(&full).unwrap_or_else(|e| panic!("{e}"));
        self.containers.push(id.clone());
        id
    }
}

/// A rootfs with busybox and the applets the test runs, imported as an image.
fn build_image(tag: &str) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/test.sh does)"
    );
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "true", "yes", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    let tar = root.path().with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    let imported = docker(&["import", tar.to_str().unwrap(), tag]);
    let _ = std::fs::remove_file(&tar);
    imported.unwrap_or_else(|e| panic!("{e}"));
}

fn config() -> String {
    r#"
receivers:
  docker_stats:
    collection_interval: 500ms
    stopped_grace_period: 1m
    container_labels_to_metric_labels:
      sluice.test.team: team.name
    env_vars_to_metric_labels:
      APP_ENV: deployment.environment.name
exporters:
  file/metrics:
    path: "@DIR@/metrics.jsonl"
    format: json
    flush_interval: 0s
  file/logs:
    path: "@DIR@/logs.jsonl"
    format: json
    flush_interval: 0s
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    metrics:
      receivers: [docker_stats]
      exporters: [file/metrics]
    logs:
      receivers: [docker_stats]
      exporters: [file/logs]
"#
    .to_string()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn attrs(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let v = &kv["value"];
                    let v = v
                        .get("stringValue")
                        .or_else(|| v.get("intValue"))
                        .or_else(|| v.get("boolValue"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    (kv["key"].as_str().unwrap_or_default().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_f64().unwrap(),
    }
}

fn nanos(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_u64().unwrap(),
    }
}

/// One data point of a container, from one exported batch (line).
#[derive(Debug)]
struct Point {
    batch: usize,
    resource: BTreeMap<String, Value>,
    metric: String,
    attrs: BTreeMap<String, Value>,
    value: f64,
    time: u64,
}

fn points(path: &Path, id: &str) -> Vec<Point> {
    let mut out = Vec::new();
    for (batch, line) in lines(path).iter().enumerate() {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            let resource = attrs(&rm["resource"]["attributes"]);
            if resource.get("container.id").and_then(Value::as_str) != Some(id) {
                continue;
            }
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let data = m.get("gauge").or_else(|| m.get("sum"));
                    let dps = data.and_then(|d| d["dataPoints"].as_array());
                    for dp in dps.into_iter().flatten() {
                        let value = dp
                            .get("asDouble")
                            .or_else(|| dp.get("asInt"))
                            .map(number)
                            .unwrap_or(f64::NAN);
                        out.push(Point {
                            batch,
                            resource: resource.clone(),
                            metric: m["name"].as_str().unwrap_or_default().to_string(),
                            attrs: attrs(&dp["attributes"]),
                            value,
                            time: nanos(&dp["timeUnixNano"]),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Lifecycle records of one container: (action, severity text, record).
fn records(path: &Path, id: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for line in lines(path) {
        for rl in line["resourceLogs"].as_array().into_iter().flatten() {
            let resource = attrs(&rl["resource"]["attributes"]);
            if resource.get("container.id").and_then(Value::as_str) != Some(id) {
                continue;
            }
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let a = attrs(&r["attributes"]);
                    let action = a
                        .get("docker.container.action")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    out.push((
                        action,
                        r["severityText"].as_str().unwrap_or_default().to_string(),
                        r.clone(),
                    ));
                }
            }
        }
    }
    out
}

/// Polls until `check` answers, or fails with what the collector logged. The deadline only
/// bounds a broken run; no assertion depends on how fast things happen.
fn wait_for<T>(collector: &Collector, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "gave up waiting for {what}; collector log:\n{}",
                collector.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn docker_stats_against_the_real_engine() {
    if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
        panic!(
            "\n\n*** The Docker engine is not reachable, so the docker_stats receiver cannot be \
             tested: {e}\n*** Start dockerd (the socket is /var/run/docker.sock) and run again.\n\n"
        );
    }
    let unique = format!("{}-{}", std::process::id(), common::free_port());
    let image = format!("sluice-e2e-busybox:{unique}");
    let mut cleanup = Cleanup {
        image: image.clone(),
        containers: Vec::new(),
    };
    build_image(&image);

    let collector = Collector::start(&config(), &[]);
    let metrics = collector.path("metrics.jsonl");
    let logs = collector.path("logs.jsonl");
    // The receiver follows the event stream before the first container starts.
    wait_for(&collector, "the connection to the daemon", || {
        collector
            .logs()
            .contains("connected to the Docker daemon")
            .then_some(())
    });

    // Discovery: a container started now is found through the event stream.
    let idle_name = format!("sluice-e2e-idle-{unique}");
    let idle = cleanup.run(&[
        "--name",
        &idle_name,
        "--hostname",
        "idle-host",
        "--label",
        "sluice.test.team=core",
        "-e",
        "APP_ENV=e2e",
        &image,
        "sleep",
        "600",
    ]);
    let started = wait_for(&collector, "the start record", || {
        records(&logs, &idle)
            .into_iter()
            .find(|(action, _, _)| action == "start")
    });
    let start_time = nanos(&started.2["timeUnixNano"]);
    let up = wait_for(&collector, "container.up of the new container", || {
        points(&metrics, &idle)
            .into_iter()
            .find(|p| p.metric == "container.up")
    });
    assert_eq!(up.value, 1.0);
    // Found by the event, not a later listing: it is in the first or, when the tick raced the
    // inspection, the second collection stamped after its start.
    let batches_after_start: Vec<usize> = {
        let mut seen = Vec::new();
        for (i, line) in lines(&metrics).iter().enumerate() {
            let stamped_after = line["resourceMetrics"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|rm| rm["scopeMetrics"].as_array().into_iter().flatten())
                .flat_map(|sm| sm["metrics"].as_array().into_iter().flatten())
                .filter(|m| m["name"] == "container.up")
                .flat_map(|m| m["gauge"]["dataPoints"].as_array().into_iter().flatten())
                .any(|dp| nanos(&dp["timeUnixNano"]) > start_time);
            if stamped_after {
                seen.push(i);
            }
        }
        seen
    };
    assert!(
        batches_after_start[..2.min(batches_after_start.len())].contains(&up.batch),
        "first seen in batch {}, collections after the start: {batches_after_start:?}",
        up.batch
    );
    let r = &up.resource;
    assert_eq!(r["container.name"], idle_name.as_str());
    assert_eq!(r["container.image.name"], "sluice-e2e-busybox");
    assert_eq!(r["container.image.tag"], unique.as_str());
    assert_eq!(r["container.runtime.name"], "docker");
    assert_eq!(r["container.hostname"], "idle-host");
    assert_eq!(r["team.name"], "core");
    assert_eq!(r["deployment.environment.name"], "e2e");
    wait_for(
        &collector,
        "memory, pids and uptime of the idle container",
        || {
            let p = points(&metrics, &idle);
            let has = |name: &str| p.iter().any(|x| x.metric == name && x.value > 0.0);
            (has("container.memory.usage")
                && has("container.pids.count")
                && has("container.uptime"))
            .then_some(())
        },
    );

    // CPU: a busy loop shows up as CPU time and as utilisation.
    let burner = cleanup.run(&[&image, "sh", "-c", "while :; do :; done"]);
    let busy = wait_for(&collector, "CPU utilisation of the busy container", || {
        points(&metrics, &burner)
            .into_iter()
            .find(|p| p.metric == "container.cpu.usage" && p.value > 0.1)
    });
    assert!(
        busy.value <= 2.5,
        "more CPUs than the machine has: {}",
        busy.value
    );
    let user_time = points(&metrics, &burner)
        .into_iter()
        .filter(|p| p.metric == "container.cpu.time" && p.attrs["cpu.mode"] == "user")
        .map(|p| p.value)
        .fold(0.0, f64::max);
    assert!(user_time > 0.0, "no user CPU time for the busy container");

    // Stop: the state flips to 0, stays visible, and the lifecycle is logged.
    docker(&["stop", "-t", "1", &idle]).unwrap();
    let down = wait_for(&collector, "container.up 0 after the stop", || {
        points(&metrics, &idle)
            .into_iter()
            .find(|p| p.metric == "container.up" && p.value == 0.0)
    });
    let later = wait_for(
        &collector,
        "a later collection that still shows the stopped container",
        || {
            points(&metrics, &idle)
                .into_iter()
                .find(|p| p.metric == "container.up" && p.batch > down.batch)
        },
    );
    assert_eq!(later.value, 0.0);
    assert!(later.time > down.time);
    let lifecycle = wait_for(&collector, "stop and die records", || {
        let r = records(&logs, &idle);
        let die = r.iter().find(|(a, _, _)| a == "die").cloned();
        let stop = r.iter().any(|(a, _, _)| a == "stop");
        die.filter(|_| stop)
    });
    let die_attrs = attrs(&lifecycle.2["attributes"]);
    // `sleep` as PID 1 ignores SIGTERM, so the stop ends in SIGKILL.
    assert_eq!(die_attrs["process.exit.code"], "137");
    assert_eq!(lifecycle.1, "WARN");
    assert!(
        lifecycle.2["body"]["stringValue"]
            .as_str()
            .unwrap()
            .contains("died with exit code 137")
    );

    // OOM: a shell variable that doubles until the 8 MiB limit kills it.
    let hog = cleanup.run(&[
        "--memory",
        "8m",
        "--memory-swap",
        "8m",
        &image,
        "sh",
        "-c",
        "x=a; while :; do x=$x$x; done",
    ]);
    let oom = wait_for(&collector, "the OOM record", || {
        records(&logs, &hog)
            .into_iter()
            .find(|(a, _, _)| a == "oom")
    });
    assert_eq!(oom.1, "ERROR");
    assert!(
        oom.2["body"]["stringValue"]
            .as_str()
            .unwrap()
            .contains("OOM-killed")
    );
    wait_for(&collector, "the OOM-killed container going down", || {
        points(&metrics, &hog)
            .into_iter()
            .find(|p| p.metric == "container.up" && p.value == 0.0)
    });
    drop(cleanup);
}

/// Metric name → unit, over every line.
fn units(path: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in lines(path) {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    found.insert(
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["unit"].as_str().unwrap_or_default().to_string(),
                    );
                }
            }
        }
    }
    found
}

/// A config written for the OTel Collector's docker_stats receiver: its metric names and
/// switches, resource attribute switches, a regular expression in `excluded_images`, and
/// event filters on the lifecycle records.
#[test]
fn docker_stats_with_the_collectors_names_against_the_real_engine() {
    if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
        panic!(
            "\n\n*** The Docker engine is not reachable: {e}\n*** Start dockerd and run again.\n\n"
        );
    }
    let unique = format!("{}-{}", std::process::id(), common::free_port());
    let image = format!("sluice-e2e-busybox:{unique}");
    let skipped = format!("sluice-e2e-skipped:{unique}");
    let mut cleanup = Cleanup {
        image: image.clone(),
        containers: Vec::new(),
    };
    build_image(&image);
    docker(&["tag", &image, &skipped]).unwrap();
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = docker(&["rmi", "-f", &self.0]);
        }
    }
    let _untag = Untag(skipped.clone());

    let config = r#"
receivers:
  docker_stats:
    endpoint: unix:///var/run/docker.sock
    collection_interval: 500ms
    initial_delay: 0s
    timeout: 20s
    attribute_names: collector
    excluded_images:
      - "/^sluice-e2e-skipped:/"
    metrics:
      container.cpu.usage.percpu:
        enabled: true
      container.memory.usage.max:
        enabled: true
      container.network.io.usage.rx_packets:
        enabled: true
      container.restarts:
        enabled: true
      container.memory.percent:
        enabled: false
    resource_attributes:
      container.image.id:
        enabled: true
      container.command_line:
        enabled: true
    logs:
      filters:
        event: [die]
exporters:
  file/metrics:
    path: "@DIR@/metrics.jsonl"
    format: json
    flush_interval: 0s
  file/logs:
    path: "@DIR@/logs.jsonl"
    format: json
    flush_interval: 0s
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    metrics:
      receivers: [docker_stats]
      exporters: [file/metrics]
    logs:
      receivers: [docker_stats]
      exporters: [file/logs]
"#;
    let collector = Collector::start(config, &[]);
    let metrics = collector.path("metrics.jsonl");
    let logs = collector.path("logs.jsonl");
    wait_for(&collector, "the connection to the daemon", || {
        collector
            .logs()
            .contains("connected to the Docker daemon")
            .then_some(())
    });
    let watched = cleanup.run(&[&image, "sleep", "600"]);
    let ignored = cleanup.run(&[&skipped, "sleep", "600"]);

    let total = wait_for(&collector, "container.cpu.usage.total", || {
        points(&metrics, &watched)
            .into_iter()
            .find(|p| p.metric == "container.cpu.usage.total")
    });
    let r = &total.resource;
    assert_eq!(r["container.runtime"], "docker");
    assert_eq!(
        r["container.image.name"],
        image.as_str(),
        "with its tag, as the Collector reports it"
    );
    assert!(
        r["container.image.id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{r:?}"
    );
    assert_eq!(r["container.command_line"], "sleep 600");
    assert!(!r.contains_key("container.image.tag"), "{r:?}");
    wait_for(&collector, "the switched metrics", || {
        let p = points(&metrics, &watched);
        let has = |name: &str| p.iter().any(|x| x.metric == name);
        (has("container.cpu.usage.percpu")
            && has("container.memory.usage.max")
            && has("container.network.io.usage.rx_packets")
            && has("container.restarts")
            // A rate: from the second collection on.
            && has("container.cpu.utilization"))
        .then_some(())
    });
    let p = points(&metrics, &watched);
    assert!(
        p.iter()
            .filter(|x| x.metric == "container.cpu.usage.percpu")
            .all(|x| x.attrs["core"].as_str().unwrap().starts_with("cpu")),
        "per-core points name their core"
    );
    assert!(
        p.iter()
            .filter(|x| x.metric == "container.network.io.usage.rx_packets")
            .all(|x| x.attrs.contains_key("interface"))
    );
    for absent in [
        "container.memory.percent",
        "container.up",
        "container.cpu.time",
    ] {
        assert!(
            !p.iter().any(|x| x.metric == absent),
            "{absent} was emitted"
        );
    }
    let u = units(&metrics);
    assert_eq!(u["container.cpu.usage.total"], "ns");
    assert_eq!(u["container.memory.usage.total"], "By");
    assert_eq!(u["container.cpu.utilization"], "1");

    // Only `die` records pass the event filter.
    docker(&["stop", "-t", "1", &watched]).unwrap();
    wait_for(&collector, "the die record", || {
        records(&logs, &watched)
            .into_iter()
            .find(|(action, _, _)| action == "die")
    });
    let actions: Vec<String> = records(&logs, &watched).into_iter().map(|r| r.0).collect();
    assert_eq!(actions, ["die"]);
    // The excluded image's container never showed up, in metrics or logs.
    assert!(points(&metrics, &ignored).is_empty());
    assert!(records(&logs, &ignored).is_empty());
    drop(cleanup);
}
