//! The `hostmetrics` receiver in the real binary: host metrics with their units reach a file
//! exporter, read from this machine's `/proc` and from a fixture root.

use crate::common;

use std::collections::BTreeMap;

use common::{Collector, json_lines};

fn config(receiver: &str) -> String {
    format!(
        r#"
receivers:
{receiver}
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
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
      receivers: [hostmetrics]
      exporters: [file/out]
"#
    )
}

/// Metric name → (unit, whether it is a monotonic sum) over every line.
fn metrics(lines: &[serde_json::Value]) -> BTreeMap<String, (String, bool)> {
    let mut found = BTreeMap::new();
    for line in lines {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let monotonic = m["sum"]["isMonotonic"].as_bool().unwrap_or(false);
                    found.insert(
                        m["name"].as_str().unwrap().to_string(),
                        (m["unit"].as_str().unwrap_or("").to_string(), monotonic),
                    );
                }
            }
        }
    }
    found
}

#[test]
fn host_metrics_of_this_machine_reach_the_exporter_with_their_units() {
    let c = Collector::start(
        &config(
            r#"
  hostmetrics:
    collection_interval: 200ms
    initial_delay: 0s
    scrapers:
      cpu:
      memory:
      load:
      disk:
      filesystem:
        include_virtual_filesystems: true
      network:
      paging:
      processes:
      system:
"#,
        ),
        &[],
    );
    // Two collections: one line per batch.
    let lines = json_lines(&c.path("out.jsonl"), 2);
    assert!(lines.len() >= 2, "{}", c.logs());
    let found = metrics(&lines);
    for (name, unit, monotonic) in [
        ("system.cpu.time", "s", true),
        ("system.memory.usage", "By", false),
        ("system.cpu.load_average.1m", "{thread}", false),
        ("system.filesystem.usage", "By", false),
        ("system.network.io", "By", true),
        ("system.paging.faults", "{fault}", true),
        ("system.process.count", "{process}", false),
        ("system.process.created", "{process}", true),
        ("system.uptime", "s", false),
    ] {
        assert_eq!(
            found.get(name),
            Some(&(unit.to_string(), monotonic)),
            "{name} in {found:?}\n{}",
            c.logs()
        );
    }
    // Cumulative sums start at boot.
    let point =
        &lines[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0];
    let start: u64 = point["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let time: u64 = point["timeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && start < time, "{point}");
}

#[test]
fn collector_names_and_a_fixture_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc")).unwrap();
    std::fs::write(
        root.path().join("proc/stat"),
        "cpu  1 0 1 1 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nbtime 1700000000\nprocesses 77\nprocs_running 2\nprocs_blocked 0\n",
    )
    .unwrap();
    std::fs::write(root.path().join("proc/loadavg"), "0.25 0.50 0.75 1/10 99\n").unwrap();
    let c = Collector::start(
        &config(&format!(
            r#"
  hostmetrics:
    collection_interval: 200ms
    initial_delay: 0s
    root_path: "{}"
    attribute_names: collector
    scrapers:
      load:
      processes:
"#,
            root.path().display()
        )),
        &[],
    );
    let lines = json_lines(&c.path("out.jsonl"), 1);
    let found = metrics(&lines);
    assert_eq!(
        found.get("system.processes.created"),
        Some(&("{processes}".to_string(), true)),
        "{found:?}\n{}",
        c.logs()
    );
    let metrics = lines[0]["resourceMetrics"][0]["scopeMetrics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["metrics"].as_array().unwrap().clone())
        .collect::<Vec<_>>();
    let load = metrics
        .iter()
        .find(|m| m["name"] == "system.cpu.load_average.15m")
        .unwrap();
    assert_eq!(load["gauge"]["dataPoints"][0]["asDouble"], 0.75);
    let created = metrics
        .iter()
        .find(|m| m["name"] == "system.processes.created")
        .unwrap();
    assert_eq!(created["sum"]["dataPoints"][0]["asInt"], "77");
    assert_eq!(
        created["sum"]["dataPoints"][0]["startTimeUnixNano"],
        "1700000000000000000"
    );
}

/// Every data point of metric `name`: (resource attributes, point attributes).
type Attrs = BTreeMap<String, serde_json::Value>;

fn attrs(list: &serde_json::Value) -> Attrs {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let v = &kv["value"];
            let v = v
                .get("stringValue")
                .or_else(|| v.get("intValue"))
                .or_else(|| v.get("boolValue"))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            (kv["key"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect()
}

fn points_of(lines: &[serde_json::Value], name: &str) -> Vec<(Attrs, Attrs)> {
    let mut out = Vec::new();
    for line in lines {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            let resource = attrs(&rm["resource"]["attributes"]);
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let data = m.get("gauge").or_else(|| m.get("sum")).unwrap();
                    for dp in data["dataPoints"].as_array().into_iter().flatten() {
                        out.push((resource.clone(), attrs(&dp["attributes"])));
                    }
                }
            }
        }
    }
    out
}

/// A config written for the OTel Collector: the receiver under its current name, the
/// Collector's metric names, per-metric switches and re-aggregation, process filters and
/// resource attribute switches, and the host entity event on a logs pipeline.
#[test]
fn an_otel_collector_host_metrics_config_runs_as_written() {
    let c = Collector::start(
        r#"
receivers:
  host_metrics:
    collection_interval: 200ms
    initial_delay: 0s
    timeout: 10s
    metadata_collection_interval: 200ms
    attribute_names: collector
    scrapers:
      cpu:
        metrics:
          system.cpu.time:
            attributes: [state]
          system.cpu.logical.count:
            enabled: true
      memory:
        metrics:
          system.memory.utilization:
            enabled: true
      process:
        include:
          names: [sluice]
          match_type: strict
        mute_process_exe_error: true
        mute_process_io_error: true
        metrics:
          process.threads:
            enabled: true
          process.disk.io:
            enabled: false
        resource_attributes:
          process.command_line:
            enabled: false
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
      receivers: [host_metrics]
      exporters: [file/metrics]
    logs:
      receivers: [host_metrics]
      exporters: [file/logs]
"#,
        &[],
    );
    let lines = json_lines(&c.path("metrics.jsonl"), 2);
    assert!(lines.len() >= 2, "{}", c.logs());
    // Re-aggregated over `state`: no `cpu` attribute left.
    let cpu = points_of(&lines, "system.cpu.time");
    assert!(!cpu.is_empty(), "{}", c.logs());
    assert!(cpu.iter().all(|(_, a)| a.keys().eq(["state"])), "{cpu:?}");
    assert!(!points_of(&lines, "system.cpu.logical.count").is_empty());
    let utilization = points_of(&lines, "system.memory.utilization");
    assert!(
        utilization
            .iter()
            .any(|(_, a)| a.get("state").and_then(|s| s.as_str()) == Some("slab_reclaimable")),
        "{utilization:?}"
    );
    // Only sluice's own process, with the switched metrics and attributes.
    let threads = points_of(&lines, "process.threads");
    assert!(!threads.is_empty(), "{}", c.logs());
    for (resource, _) in &threads {
        assert_eq!(resource["process.executable.name"], "sluice");
        assert!(
            !resource.contains_key("process.command_line"),
            "{resource:?}"
        );
        assert!(resource.contains_key("process.pid"));
    }
    // Other sluice processes may run on this machine; this collector is among them.
    let pid = c.pid().to_string();
    assert!(
        threads
            .iter()
            .any(|(r, _)| r["process.pid"].as_str() == Some(pid.as_str())),
        "{threads:?}"
    );
    assert!(points_of(&lines, "process.disk.io").is_empty());

    // The entity event, at start and again every interval.
    let logs = json_lines(&c.path("logs.jsonl"), 2);
    assert!(logs.len() >= 2, "{}", c.logs());
    let record = &logs[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    let a = attrs(&record["attributes"]);
    assert_eq!(a["otel.entity.event.type"], "entity_state");
    assert_eq!(a["otel.entity.type"], "host");
    assert_eq!(a["otel.entity.interval"], "200");
}
