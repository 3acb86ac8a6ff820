use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::config_keys::{ConfigWarnings, decode_section};
use sluice_pipeline::{
    Batch, BuildContext, Consumer, Metrics, ReceiverFactory, ReceiverOutputs, decode_config,
};
use tokio::sync::mpsc;

use super::*;

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Receiver,
        id: ComponentId::with_name("hostmetrics", "test"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "receivers.hostmetrics/test".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

/// The config decoded as the receiver decodes it, and the warnings it gave.
fn decode(yaml: &str) -> (Result<ScraperSet, ConfigErrors>, Vec<String>) {
    let c = component(yaml);
    let warnings = ConfigWarnings::default();
    let result = decode_section::<HostMetricsConfig>(&c, config::NO_EFFECT, &warnings)
        .and_then(|cfg| ScraperSet::from_config(&cfg, &c, &warnings));
    let warned = warnings.take().iter().map(ToString::to_string).collect();
    (result, warned)
}

fn scrapers(yaml: &str) -> ScraperSet {
    match decode(yaml).0 {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    let (result, warned) = decode(yaml);
    if let Err(e) = result {
        panic!("{e}");
    }
    warned
}

fn config_errors(yaml: &str) -> Vec<String> {
    match decode(yaml).0 {
        Ok(_) => panic!("expected a config error for {yaml}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// A directory standing in for a host's root, removed on drop.
struct Fixture(PathBuf);

impl Fixture {
    fn new() -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-hostmetrics-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixture(dir)
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn root(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn config(&self, scrapers: &str) -> String {
        format!("root_path: {}\nscrapers:\n{scrapers}", self.root())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BTIME: u64 = 1_700_000_000;

fn stat_file(cpu_lines: &str) -> String {
    format!(
        "cpu  0 0 0 0 0 0 0 0 0 0\n{cpu_lines}intr 1 2 3\nctxt 12345\nbtime {BTIME}\nprocesses 4242\nprocs_running 3\nprocs_blocked 1\nsoftirq 1 2 3\n"
    )
}

#[derive(Debug, Clone, PartialEq)]
struct Point {
    attrs: BTreeMap<String, String>,
    value: f64,
    start: u64,
}

/// (unit, kind, points) of metric `name` over every resource.
fn metric_of(
    resources: &[ResourceMetrics],
    name: &str,
) -> Option<(String, &'static str, Vec<Point>)> {
    let mut found = None;
    for r in resources {
        for s in &r.scope_metrics {
            for m in &s.metrics {
                if m.name != name {
                    continue;
                }
                let (kind, points) = match &m.data {
                    Some(metric::Data::Gauge(g)) => ("gauge", &g.data_points),
                    Some(metric::Data::Sum(s)) if s.is_monotonic => ("counter", &s.data_points),
                    Some(metric::Data::Sum(s)) => ("updown", &s.data_points),
                    _ => panic!("unexpected data of {name}"),
                };
                let entry = found.get_or_insert_with(|| (m.unit.clone(), kind, Vec::new()));
                for p in points {
                    let attrs = p
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(any_value::Value::StringValue(s)) => s.clone(),
                                Some(any_value::Value::IntValue(i)) => i.to_string(),
                                other => panic!("unexpected attribute value {other:?}"),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect();
                    let value = match p.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => panic!("no value"),
                    };
                    entry.2.push(Point {
                        attrs,
                        value,
                        start: p.start_time_unix_nano,
                    });
                }
            }
        }
    }
    found
}

fn points(resources: &[ResourceMetrics], name: &str) -> Vec<Point> {
    metric_of(resources, name)
        .map(|(_, _, p)| p)
        .unwrap_or_default()
}

/// The value of the one point of `name` whose attributes include all of `attrs`.
fn value(resources: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> f64 {
    let matching: Vec<Point> = points(resources, name)
        .into_iter()
        .filter(|p| {
            attrs
                .iter()
                .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(matching.len(), 1, "{name} {attrs:?}: {matching:?}");
    matching[0].value
}

fn names(resources: &[ResourceMetrics]) -> Vec<String> {
    let mut names: Vec<String> = resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

// ---------------------------------------------------------------- config

#[test]
fn defaults_follow_the_documented_values() {
    let c = component("scrapers:\n  cpu:\n");
    let cfg: HostMetricsConfig = decode_config(&c).unwrap();
    assert_eq!(cfg.collection_interval.0, StdDuration::from_secs(60));
    assert_eq!(cfg.initial_delay.0, StdDuration::from_secs(1));
    assert_eq!(cfg.timeout.0, StdDuration::ZERO);
    assert_eq!(
        cfg.metadata_collection_interval.0,
        StdDuration::from_secs(300)
    );
    assert_eq!(cfg.root_path, "/");
    assert_eq!(cfg.attribute_names, Naming::Semconv);
    assert!(cfg.scrapers.cpu.is_some() && cfg.scrapers.memory.is_none());
}

#[test]
fn config_errors_name_the_key_path() {
    let e = config_errors("scrapers:\n  cpu:\n    bogus: 1\n");
    assert!(e[0].contains("bogus"), "{e:?}");

    let e = config_errors("scrapers:\n  cpux:\n");
    assert!(e[0].contains("cpux"), "{e:?}");

    let e = config_errors("collection_interval: 0s\nscrapers:\n  cpu:\n");
    assert!(
        e[0].contains("receivers.hostmetrics/test.collection_interval"),
        "{e:?}"
    );

    let e = config_errors("scrapers: {}\n");
    assert!(
        e[0].contains("receivers.hostmetrics/test.scrapers"),
        "{e:?}"
    );
    assert!(e[0].contains("at least one scraper"), "{e:?}");

    let e = config_errors("attribute_names: legacy\nscrapers:\n  cpu:\n");
    assert!(e[0].contains("attribute_names"), "{e:?}");

    let e = config_errors("root_path: relative/dir\nscrapers:\n  cpu:\n");
    assert!(e[0].contains("root_path must be an absolute path"), "{e:?}");
}

#[test]
fn unknown_metric_names_are_errors_with_a_suggestion() {
    let e = config_errors(
        "scrapers:\n  cpu:\n    metrics:\n      system.cpu.utilisation:\n        enabled: true\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("receivers.hostmetrics/test.scrapers.cpu.metrics.system.cpu.utilisation"),
        "{e:?}"
    );
    assert!(
        e[0].contains("did you mean `system.cpu.utilization`"),
        "{e:?}"
    );
}

#[test]
fn bad_regular_expressions_are_reported_at_their_item() {
    let e = config_errors(
        "scrapers:\n  network:\n    include:\n      interfaces: [ok, '(']\n      match_type: regexp\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("receivers.hostmetrics/test.scrapers.network.include.interfaces[1]"),
        "{e:?}"
    );
    assert!(e[0].contains("test.yaml:4:"), "{e:?}");

    let e = config_errors(
        "scrapers:\n  process:\n    exclude:\n      names: ['[']\n      match_type: regexp\n",
    );
    assert!(e[0].contains("scrapers.process.exclude.names[0]"), "{e:?}");
}

#[test]
fn a_metrics_pipeline_is_required() {
    let c = component("scrapers:\n  cpu:\n");
    let err = HostMetricsReceiverFactory
        .build(&c, ReceiverOutputs::default(), &BuildContext::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("metrics or logs pipeline"),
        "{err}"
    );
}

// ---------------------------------------------------------------- fixtures: exact parsing

#[test]
fn cpu_time_per_logical_cpu_and_mode_in_seconds() {
    let f = Fixture::new();
    // cpu1 is offline: numbering must follow the lines, not their order.
    f.write(
        "proc/stat",
        &stat_file("cpu0 100 20 30 400 5 6 7 8 0 0\ncpu2 200 0 60 800 10 2 3 4 0 0\n"),
    );
    let tps = procfs::ticks_per_second() as f64;
    let mut set = scrapers(&f.config("  cpu:\n"));
    let r = set.scrape();
    let (unit, kind, pts) = metric_of(&r, "system.cpu.time").unwrap();
    assert_eq!((unit.as_str(), kind), ("s", "counter"));
    assert_eq!(pts.len(), 14, "7 modes on 2 CPUs: {pts:?}");
    assert!(pts.iter().all(|p| p.start == BTIME * 1_000_000_000));
    let at = |cpu: &str, mode: &str| {
        value(
            &r,
            "system.cpu.time",
            &[("cpu.logical_number", cpu), ("cpu.mode", mode)],
        )
    };
    assert_eq!(at("0", "user"), 100.0 / tps);
    assert_eq!(at("0", "idle"), 400.0 / tps);
    assert_eq!(at("0", "interrupt"), 13.0 / tps, "irq + softirq");
    assert_eq!(at("2", "system"), 60.0 / tps);
    assert_eq!(at("2", "iowait"), 10.0 / tps);
    assert_eq!(at("2", "steal"), 4.0 / tps);
    assert!(
        points(&r, "system.cpu.utilization").is_empty(),
        "off by default"
    );

    let mut set = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  cpu:\n")
    ));
    let r = set.scrape();
    let at =
        |cpu: &str, state: &str| value(&r, "system.cpu.time", &[("cpu", cpu), ("state", state)]);
    assert_eq!(at("cpu0", "interrupt"), 6.0 / tps);
    assert_eq!(at("cpu0", "softirq"), 7.0 / tps);
    assert_eq!(at("cpu2", "wait"), 10.0 / tps);
    assert_eq!(points(&r, "system.cpu.time").len(), 16);
}

#[test]
fn cpu_utilization_comes_from_the_difference_of_two_scrapes() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file("cpu0 100 0 100 800 0 0 0 0 0 0\n"));
    let mut set = scrapers(
        &f.config("  cpu:\n    metrics:\n      system.cpu.utilization:\n        enabled: true\n"),
    );
    let first = set.scrape();
    assert!(
        points(&first, "system.cpu.utilization").is_empty(),
        "needs two samples"
    );
    // 100 ticks pass: 50 user, 25 system, 25 idle.
    f.write("proc/stat", &stat_file("cpu0 150 0 125 825 0 0 0 0 0 0\n"));
    let r = set.scrape();
    let (unit, kind, _) = metric_of(&r, "system.cpu.utilization").unwrap();
    assert_eq!((unit.as_str(), kind), ("1", "gauge"));
    let at = |mode: &str| {
        value(
            &r,
            "system.cpu.utilization",
            &[("cpu.logical_number", "0"), ("cpu.mode", mode)],
        )
    };
    assert_eq!(at("user"), 0.5);
    assert_eq!(at("system"), 0.25);
    assert_eq!(at("idle"), 0.25);
    assert_eq!(at("iowait"), 0.0);
}

const MEMINFO: &str = "MemTotal:       16000 kB
MemFree:         4000 kB
MemAvailable:    9000 kB
Buffers:         1000 kB
Cached:          3000 kB
SwapCached:         0 kB
Active:          5000 kB
Inactive:        4000 kB
SwapTotal:       2048 kB
SwapFree:        1024 kB
Shmem:            100 kB
Slab:             700 kB
SReclaimable:     500 kB
SUnreclaim:       200 kB
Dirty:              0 kB
Writeback:          0 kB
Mapped:           300 kB
Committed_AS:    8000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       10 kB
VmallocChunk:       0 kB
";

#[test]
fn memory_states_from_meminfo() {
    let f = Fixture::new();
    f.write("proc/meminfo", MEMINFO)
        .write("proc/stat", &stat_file(""));
    let mut set = scrapers(&f.config(
        "  memory:\n    metrics:\n      system.memory.limit:\n        enabled: true\n      system.memory.utilization:\n        enabled: true\n",
    ));
    let r = set.scrape();
    let (unit, kind, pts) = metric_of(&r, "system.memory.usage").unwrap();
    assert_eq!((unit.as_str(), kind), ("By", "updown"));
    let state = |s: &str| value(&r, "system.memory.usage", &[("system.memory.state", s)]);
    let kib = 1024.0;
    assert_eq!(state("free"), 4000.0 * kib);
    assert_eq!(state("buffers"), 1000.0 * kib);
    assert_eq!(
        state("cached"),
        3500.0 * kib,
        "page cache + reclaimable slab"
    );
    assert_eq!(state("used"), 7500.0 * kib);
    assert_eq!(pts.iter().map(|p| p.value).sum::<f64>(), 16000.0 * kib);
    assert_eq!(value(&r, "system.memory.limit", &[]), 16000.0 * kib);
    assert_eq!(
        value(
            &r,
            "system.memory.utilization",
            &[("system.memory.state", "used")]
        ),
        7500.0 / 16000.0
    );
    let slab = |s: &str| {
        value(
            &r,
            "system.memory.linux.slab.usage",
            &[("system.memory.linux.slab.state", s)],
        )
    };
    assert_eq!(slab("reclaimable"), 500.0 * kib);
    assert_eq!(slab("unreclaimable"), 200.0 * kib);

    let mut set = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  memory:\n")
    ));
    let r = set.scrape();
    let state = |s: &str| value(&r, "system.memory.usage", &[("state", s)]);
    assert_eq!(state("buffered"), 1000.0 * kib);
    assert_eq!(state("slab_reclaimable"), 500.0 * kib);
    assert_eq!(state("slab_unreclaimable"), 200.0 * kib);
    assert_eq!(points(&r, "system.memory.usage").len(), 6);
    assert!(points(&r, "system.memory.linux.slab.usage").is_empty());
}

#[test]
fn load_averages_from_loadavg() {
    let f = Fixture::new();
    f.write("proc/loadavg", "0.10 0.50 1.25 1/100 123\n")
        .write("proc/stat", &stat_file("cpu0 1 1 1 1\ncpu1 1 1 1 1\n"));
    let r = scrapers(&f.config("  load:\n")).scrape();
    let (unit, kind, _) = metric_of(&r, "system.cpu.load_average.1m").unwrap();
    assert_eq!((unit.as_str(), kind), ("{thread}", "gauge"));
    assert_eq!(value(&r, "system.cpu.load_average.1m", &[]), 0.1);
    assert_eq!(value(&r, "system.cpu.load_average.5m", &[]), 0.5);
    assert_eq!(value(&r, "system.cpu.load_average.15m", &[]), 1.25);
    let r = scrapers(&f.config("  load:\n    cpu_average: true\n")).scrape();
    assert_eq!(value(&r, "system.cpu.load_average.15m", &[]), 0.625);
}

const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sda 1000 50 20000 3000 2000 60 40000 5000 2 7000 9000 0 0 0 0 0 0
   8       1 sda1 900 40 18000 2500 1900 50 38000 4500 0 6500 8000
 253       0 dm-0 10 0 80 5 0 0 0 0 0 5 5
";

#[test]
fn disk_counters_from_diskstats() {
    let f = Fixture::new();
    f.write("proc/diskstats", DISKSTATS)
        .write("proc/stat", &stat_file(""));
    let r = scrapers(&f.config("  disk:\n")).scrape();
    let io = |dev: &str, dir: &str| {
        value(
            &r,
            "system.disk.io",
            &[("system.device", dev), ("disk.io.direction", dir)],
        )
    };
    assert_eq!(io("sda", "read"), 20000.0 * 512.0);
    assert_eq!(io("sda", "write"), 40000.0 * 512.0);
    assert_eq!(io("dm-0", "write"), 0.0);
    let at = |name: &str, attrs: &[(&str, &str)]| value(&r, name, attrs);
    let sda_read = [("system.device", "sda"), ("disk.io.direction", "read")];
    let sda_write = [("system.device", "sda"), ("disk.io.direction", "write")];
    assert_eq!(at("system.disk.operations", &sda_read), 1000.0);
    assert_eq!(at("system.disk.operations", &sda_write), 2000.0);
    assert_eq!(at("system.disk.merged", &sda_read), 50.0);
    assert_eq!(at("system.disk.operation_time", &sda_write), 5.0);
    assert_eq!(at("system.disk.io_time", &[("system.device", "sda")]), 7.0);
    assert_eq!(
        at("system.disk.weighted_io_time", &[("system.device", "sda")]),
        9.0
    );
    assert_eq!(
        at(
            "system.disk.pending_operations",
            &[("system.device", "sda")]
        ),
        2.0
    );
    assert!(
        points(&r, "system.disk.io")
            .iter()
            .all(|p| p.attrs["system.device"] != "loop0"),
        "devices that never did I/O are left out"
    );
    assert_eq!(
        metric_of(&r, "system.disk.operations").unwrap().0,
        "{operation}"
    );

    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  disk:\n    exclude:\n      devices: ['^(sd[a-z]+[0-9]+|dm-.*)$']\n      match_type: regexp\n")
    ))
    .scrape();
    let devices: Vec<String> = points(&r, "system.disk.io")
        .into_iter()
        .map(|p| p.attrs["device"].clone())
        .collect();
    assert_eq!(devices, ["sda", "sda"]);
    assert_eq!(
        metric_of(&r, "system.disk.operations").unwrap().0,
        "{operations}"
    );
    assert_eq!(
        value(&r, "system.disk.io", &[("direction", "read")]),
        20000.0 * 512.0
    );
}

const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000000    4000    3    7    0     0          0         0  2000000    3000    1    2    0     0       0          0
";

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 112 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 113 1 0000000000000000 20 4 30 10 -1
";

#[test]
fn network_counters_from_net_dev_and_connections_from_tcp() {
    let f = Fixture::new();
    f.write("proc/net/dev", NET_DEV)
        .write("proc/net/tcp", TCP)
        .write("proc/stat", &stat_file(""));
    let r = scrapers(&f.config("  network:\n    exclude:\n      interfaces: [lo]\n")).scrape();
    let at = |name: &str, dir: &str| {
        value(
            &r,
            name,
            &[
                ("network.interface.name", "eth0"),
                ("network.io.direction", dir),
            ],
        )
    };
    assert_eq!(at("system.network.io", "receive"), 5_000_000.0);
    assert_eq!(at("system.network.io", "transmit"), 2_000_000.0);
    assert_eq!(at("system.network.packet.count", "receive"), 4000.0);
    assert_eq!(at("system.network.errors", "receive"), 3.0);
    assert_eq!(at("system.network.packet.dropped", "transmit"), 2.0);
    assert!(
        points(&r, "system.network.io")
            .iter()
            .all(|p| p.attrs["network.interface.name"] != "lo")
    );
    let conn = |state: &str| {
        value(
            &r,
            "system.network.connection.count",
            &[
                ("network.transport", "tcp"),
                ("network.connection.state", state),
            ],
        )
    };
    assert_eq!(conn("listen"), 1.0);
    assert_eq!(conn("established"), 2.0);

    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  network:\n    include:\n      interfaces: [lo]\n      match_type: strict\n")
    ))
    .scrape();
    assert_eq!(
        value(
            &r,
            "system.network.packets",
            &[("device", "lo"), ("direction", "transmit")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &r,
            "system.network.dropped",
            &[("device", "lo"), ("direction", "receive")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &r,
            "system.network.connections",
            &[("protocol", "tcp"), ("state", "ESTABLISHED")]
        ),
        2.0
    );
    assert_eq!(
        metric_of(&r, "system.network.packets").unwrap().0,
        "{packets}"
    );
}

#[test]
fn paging_from_swaps_and_vmstat() {
    let f = Fixture::new();
    f.write(
        "proc/swaps",
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sda2                               partition\t2048\t\t512\t\t-2\n",
    )
    .write(
        "proc/vmstat",
        "nr_free_pages 100\npgpgin 1000\npgpgout 2000\npswpin 30\npswpout 40\npgfault 5000\npgmajfault 50\n",
    )
    .write("proc/stat", &stat_file(""));
    let r = scrapers(&f.config("  paging:\n")).scrape();
    let usage = |s: &str| {
        value(
            &r,
            "system.paging.usage",
            &[("system.device", "/dev/sda2"), ("system.paging.state", s)],
        )
    };
    assert_eq!(usage("used"), 512.0 * 1024.0);
    assert_eq!(usage("free"), 1536.0 * 1024.0);
    assert_eq!(
        value(
            &r,
            "system.paging.faults",
            &[("system.paging.fault.type", "major")]
        ),
        50.0
    );
    assert_eq!(
        value(
            &r,
            "system.paging.faults",
            &[("system.paging.fault.type", "minor")]
        ),
        4950.0
    );
    let ops = |dir: &str, t: &str| {
        value(
            &r,
            "system.paging.operations",
            &[
                ("system.paging.direction", dir),
                ("system.paging.fault.type", t),
            ],
        )
    };
    assert_eq!(ops("in", "major"), 30.0);
    assert_eq!(ops("out", "major"), 40.0);
    assert_eq!(ops("in", "minor"), 1000.0);
    assert_eq!(ops("out", "minor"), 2000.0);

    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  paging:\n")
    ))
    .scrape();
    assert_eq!(
        value(
            &r,
            "system.paging.operations",
            &[("direction", "page_out"), ("type", "major")]
        ),
        40.0
    );
    assert_eq!(
        value(
            &r,
            "system.paging.usage",
            &[("device", "/dev/sda2"), ("state", "used")]
        ),
        512.0 * 1024.0
    );
}

/// A `/proc/<pid>/stat` line: state, utime/stime ticks, threads, start ticks, vsize, rss pages.
fn pid_stat(pid: u32, comm: &str, state: char, utime: u64, stime: u64, threads: u64) -> String {
    format!(
        "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194304 100 0 0 0 {utime} {stime} 0 0 20 0 {threads} 0 500 104857600 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 7 0 0 0 0 0 0 0 0 0 0\n"
    )
}

#[test]
fn processes_by_state_and_created() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("proc/10/stat", &pid_stat(10, "a", 'R', 0, 0, 1))
        .write("proc/11/stat", &pid_stat(11, "b", 'S', 0, 0, 1))
        .write("proc/12/stat", &pid_stat(12, "c", 'D', 0, 0, 1))
        .write("proc/13/stat", &pid_stat(13, "d", 'Z', 0, 0, 1))
        .write("proc/14/stat", &pid_stat(14, "e", 'T', 0, 0, 1));
    let r = scrapers(&f.config("  processes:\n")).scrape();
    let count = |s: &str| value(&r, "system.process.count", &[("process.state", s)]);
    assert_eq!(count("running"), 1.0);
    assert_eq!(count("sleeping"), 2.0);
    assert_eq!(count("defunct"), 1.0);
    assert_eq!(count("stopped"), 1.0);
    let (unit, kind, pts) = metric_of(&r, "system.process.created").unwrap();
    assert_eq!((unit.as_str(), kind), ("{process}", "counter"));
    assert_eq!(pts[0].value, 4242.0);

    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  processes:\n")
    ))
    .scrape();
    assert_eq!(
        value(&r, "system.processes.count", &[("status", "running")]),
        3.0
    );
    assert_eq!(
        value(&r, "system.processes.count", &[("status", "blocked")]),
        1.0
    );
    assert_eq!(value(&r, "system.processes.created", &[]), 4242.0);
}

#[test]
fn process_metrics_per_filtered_process() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("proc/20/stat", &pid_stat(20, "server", 'S', 300, 100, 4))
        .write("proc/20/cmdline", "/usr/bin/server\0--port\08080\0")
        .write(
            "proc/20/io",
            "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
        )
        .write("proc/21/stat", &pid_stat(21, "other", 'S', 1, 1, 1));
    std::os::unix::fs::symlink("/usr/bin/server", f.0.join("proc/20/exe")).unwrap();
    let uid = std::fs::metadata(f.0.join("proc/20")).unwrap().uid();
    f.write(
        "etc/passwd",
        &format!("root:x:0:0::/root:/bin/sh\nsvc:x:{uid}:{uid}::/:/bin/false\n"),
    );

    let r = scrapers(&f.config(
        "  process:\n    include:\n      names: [server]\n      match_type: strict\n    metrics:\n      process.threads: {enabled: true}\n",
    ))
    .scrape();
    assert_eq!(r.len(), 1, "only the included process: {r:?}");
    let attrs: BTreeMap<String, String> = r[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                _ => String::new(),
            };
            (kv.key.clone(), v)
        })
        .collect();
    assert_eq!(attrs["process.pid"], "20");
    assert_eq!(attrs["process.parent_pid"], "1");
    assert_eq!(attrs["process.executable.name"], "server");
    assert_eq!(attrs["process.executable.path"], "/usr/bin/server");
    assert_eq!(attrs["process.command"], "/usr/bin/server");
    assert_eq!(attrs["process.command_line"], "/usr/bin/server --port 8080");
    assert_eq!(attrs["process.owner"], "svc");

    let tps = procfs::ticks_per_second();
    let start = BTIME * 1_000_000_000 + 500 * 1_000_000_000 / tps;
    let cpu = points(&r, "process.cpu.time");
    assert!(cpu.iter().all(|p| p.start == start), "{cpu:?}");
    assert_eq!(
        value(&r, "process.cpu.time", &[("cpu.mode", "user")]),
        300.0 / tps as f64
    );
    assert_eq!(
        value(&r, "process.cpu.time", &[("cpu.mode", "system")]),
        100.0 / tps as f64
    );
    assert_eq!(
        value(&r, "process.memory.usage", &[]),
        (256 * procfs::page_size()) as f64
    );
    assert_eq!(value(&r, "process.memory.virtual", &[]), 104857600.0);
    assert_eq!(value(&r, "process.thread.count", &[]), 4.0);
    assert_eq!(
        value(&r, "process.disk.io", &[("disk.io.direction", "write")]),
        8192.0
    );

    // Without an `exe` link the name is `comm`; a regexp exclude drops it.
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  process:\n    exclude:\n      names: ['^oth']\n      match_type: regexp\n    metrics:\n      process.thread.count: {enabled: true}\n")
    ))
    .scrape();
    assert_eq!(r.len(), 1);
    assert_eq!(value(&r, "process.threads", &[]), 4.0);
    assert_eq!(
        value(&r, "process.cpu.time", &[("state", "user")]),
        300.0 / tps as f64
    );
}

#[test]
fn uptime_from_proc_uptime() {
    let f = Fixture::new();
    f.write("proc/uptime", "12345.67 2000.00\n")
        .write("proc/stat", &stat_file(""));
    let r = scrapers(&f.config("  system:\n")).scrape();
    let (unit, kind, pts) = metric_of(&r, "system.uptime").unwrap();
    assert_eq!((unit.as_str(), kind), ("s", "gauge"));
    assert_eq!(pts[0].value, 12345.67);
}

#[test]
fn filesystems_from_the_mount_table_under_the_root() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("proc/filesystems", "nodev\tproc\nnodev\ttmpfs\n\text4\n")
        .write(
            "proc/1/mounts",
            "/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /data ext4 ro,relatime 0 0\n/dev/sdc1 /missing ext4 rw 0 0\n",
        );
    std::fs::create_dir_all(f.0.join("data")).unwrap();
    let r = scrapers(&f.config(
        "  filesystem:\n    metrics:\n      system.filesystem.limit:\n        enabled: true\n",
    ))
    .scrape();
    let pts = points(&r, "system.filesystem.usage");
    let mounts: std::collections::BTreeSet<&str> = pts
        .iter()
        .map(|p| p.attrs["system.filesystem.mountpoint"].as_str())
        .collect();
    // proc is virtual; /missing cannot be stat'ed under the root.
    assert_eq!(mounts.into_iter().collect::<Vec<_>>(), ["/", "/data"]);
    let data: Vec<&Point> = pts
        .iter()
        .filter(|p| p.attrs["system.filesystem.mountpoint"] == "/data")
        .collect();
    assert_eq!(data.len(), 3);
    assert!(
        data.iter()
            .all(|p| p.attrs["system.filesystem.mode"] == "ro"
                && p.attrs["system.device"] == "/dev/sdb1"
                && p.attrs["system.filesystem.type"] == "ext4")
    );
    // The states add up to what statvfs says of the directory standing in for the mount.
    let s = rustix::fs::statvfs(f.0.join("data")).unwrap();
    let limit = value(
        &r,
        "system.filesystem.limit",
        &[("system.filesystem.mountpoint", "/data")],
    );
    assert_eq!(limit, (s.f_blocks * s.f_frsize) as f64);
    assert_eq!(data.iter().map(|p| p.value).sum::<f64>(), limit);

    let r = scrapers(&f.config(
        "  filesystem:\n    include_virtual_filesystems: true\n    exclude_mount_points:\n      mount_points: ['/data']\n    include_fs_types:\n      fs_types: [proc, ext4]\n",
    ))
    .scrape();
    let mounts: std::collections::BTreeSet<String> = points(&r, "system.filesystem.usage")
        .into_iter()
        .map(|p| p.attrs["system.filesystem.mountpoint"].clone())
        .collect();
    assert_eq!(mounts.into_iter().collect::<Vec<_>>(), ["/", "/proc"]);
}

#[test]
fn a_failing_scraper_does_not_stop_the_others() {
    let f = Fixture::new();
    // No proc/stat, no proc/diskstats: cpu and disk fail, memory still reports, and the boot
    // time falls back to now minus uptime.
    f.write("proc/meminfo", MEMINFO)
        .write("proc/uptime", "100.00 50.00\n");
    let mut set = scrapers(&f.config("  cpu:\n  disk:\n  memory:\n"));
    let r = set.scrape();
    assert_eq!(
        names(&r),
        ["system.memory.linux.slab.usage", "system.memory.usage"]
    );
    let scopes: Vec<&str> = r[0]
        .scope_metrics
        .iter()
        .map(|s| s.scope.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(scopes, ["sluice/receiver/hostmetrics/memory"]);
    let start = points(&r, "system.memory.usage")[0].start;
    assert!(start > 0);
}

// ---------------------------------------------------------------- live: this machine's /proc

fn read_meminfo_total() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024.0
}

#[test]
fn live_cpu_time_grows_between_scrapes() {
    let mut set = scrapers("scrapers:\n  cpu:\n");
    let total = |r: &[ResourceMetrics]| -> f64 {
        points(r, "system.cpu.time").iter().map(|p| p.value).sum()
    };
    let first = set.scrape();
    let before = total(&first);
    assert!(before > 0.0);
    assert!(
        points(&first, "system.cpu.time")
            .iter()
            .all(|p| p.start > 0)
    );
    // Every mode of every CPU together advances with wall-clock time; wait for the next tick.
    let mut after = before;
    for _ in 0..200 {
        std::thread::sleep(StdDuration::from_millis(20));
        after = total(&set.scrape());
        if after > before {
            break;
        }
    }
    assert!(after > before, "{after} > {before}");
}

#[test]
fn live_memory_states_add_up_to_memtotal() {
    let r = scrapers(
        "scrapers:\n  memory:\n    metrics:\n      system.memory.limit:\n        enabled: true\n",
    )
    .scrape();
    let total = read_meminfo_total();
    let pts = points(&r, "system.memory.usage");
    assert_eq!(pts.len(), 4);
    let sum: f64 = pts.iter().map(|p| p.value).sum();
    assert!((sum - total).abs() <= total * 0.01, "{sum} vs {total}");
    assert!(pts.iter().all(|p| p.value >= 0.0 && p.value <= total));
    assert_eq!(value(&r, "system.memory.limit", &[]), total);
}

#[test]
fn live_every_host_scraper_reports() {
    let r = scrapers(
        "scrapers:\n  cpu:\n  memory:\n  load:\n  disk:\n  filesystem:\n    include_virtual_filesystems: true\n  network:\n  paging:\n  processes:\n  system:\n",
    )
    .scrape();
    let names = names(&r);
    for expected in [
        "system.cpu.time",
        "system.memory.usage",
        "system.cpu.load_average.1m",
        "system.filesystem.usage",
        "system.network.io",
        "system.paging.faults",
        "system.process.count",
        "system.process.created",
        "system.uptime",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(value(&r, "system.uptime", &[]) > 0.0);
    // At least this test process exists (its main thread waits, so it may count as sleeping).
    let processes: f64 = points(&r, "system.process.count")
        .iter()
        .map(|p| p.value)
        .sum();
    assert!(processes >= 1.0);
}

#[test]
fn live_own_process_is_found_by_name() {
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_str().unwrap().to_string();
    let r = scrapers(&format!(
        "scrapers:\n  process:\n    include:\n      names: ['{name}']\n    metrics:\n      process.threads: {{enabled: true}}\n      process.open_file_descriptors: {{enabled: true}}\n"
    ))
    .scrape();
    let me = r
        .iter()
        .find(|r| {
            r.resource.as_ref().unwrap().attributes.iter().any(|kv| {
                kv.key == "process.pid"
                    && kv.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&any_value::Value::IntValue(i64::from(std::process::id())))
            })
        })
        .expect("this test process");
    let mine = std::slice::from_ref(me);
    assert!(value(mine, "process.memory.usage", &[]) > 0.0);
    assert!(value(mine, "process.thread.count", &[]) >= 1.0);
    assert!(value(mine, "process.unix.file_descriptor.count", &[]) >= 3.0);
    assert!(points(mine, "process.cpu.time").iter().all(|p| p.start > 0));
}

// ---------------------------------------------------------------- the receiver

struct Collect(mpsc::UnboundedSender<Vec<ResourceMetrics>>);

#[async_trait]
impl Consumer<Metrics> for Collect {
    async fn consume(&self, mut batch: Batch<Metrics>) {
        let _ = self.0.send(batch.take_resources());
        batch.settle(&Ok(()));
    }
}

fn receiver(
    yaml: &str,
) -> (
    Arc<dyn sluice_pipeline::Receiver>,
    mpsc::UnboundedReceiver<Vec<ResourceMetrics>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let outputs = ReceiverOutputs {
        metrics: Some(Arc::new(Collect(tx))),
        ..Default::default()
    };
    let r = HostMetricsReceiverFactory
        .build(&component(yaml), outputs, &BuildContext::default())
        .unwrap();
    (r, rx)
}

#[tokio::test]
async fn the_receiver_sends_one_batch_per_collection_until_shut_down() {
    let f = Fixture::new();
    f.write("proc/meminfo", MEMINFO)
        .write("proc/stat", &stat_file("cpu0 1 2 3 4 5 6 7 8 0 0\n"));
    let (r, mut rx) = receiver(&format!(
        "collection_interval: 20ms\ninitial_delay: 0s\n{}",
        f.config("  cpu:\n  memory:\n")
    ));
    r.start().await.unwrap();
    for _ in 0..2 {
        let batch = rx.recv().await.unwrap();
        assert_eq!(batch.len(), 1, "one host resource");
        assert_eq!(
            names(&batch),
            [
                "system.cpu.time",
                "system.memory.linux.slab.usage",
                "system.memory.usage"
            ]
        );
    }
    r.shutdown(tokio::time::Instant::now() + StdDuration::from_secs(3600))
        .await;
    // The loop has ended: once the receiver is gone, no sender is left.
    drop(r);
    while rx.recv().await.is_some() {}
}

#[tokio::test]
async fn nothing_is_sent_before_the_initial_delay_and_shutdown_does_not_wait_for_it() {
    let f = Fixture::new();
    f.write("proc/meminfo", MEMINFO)
        .write("proc/stat", &stat_file(""));
    let (r, mut rx) = receiver(&format!(
        "collection_interval: 10ms\ninitial_delay: 1h\n{}",
        f.config("  memory:\n")
    ));
    r.start().await.unwrap();
    r.shutdown(tokio::time::Instant::now() + StdDuration::from_secs(3600))
        .await;
    drop(r);
    assert!(rx.recv().await.is_none(), "no collection ran");
}

#[test]
fn the_receiver_answers_to_both_of_its_names() {
    let info = HostMetricsReceiverFactory.info();
    assert_eq!(info.type_name, "hostmetrics");
    assert!(info.answers_to("host_metrics"));
    assert!(info.answers_to("hostmetrics"));
}

// ---------------------------------------------------------------- the OTel Collector's keys

#[test]
fn an_unknown_metric_is_reported_at_its_name() {
    let e = config_errors(
        "scrapers:\n  memory:\n    metrics:\n      system.memory.utilisation:\n        enabled: true\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    // Line 4, where the name is, not line 5 where `enabled` is.
    assert!(e[0].starts_with("test.yaml:4:7:"), "{e:?}");
    assert!(
        e[0].contains("did you mean `system.memory.utilization`"),
        "{e:?}"
    );
}

#[test]
fn regexp_cache_settings_are_accepted_with_a_warning() {
    let w = warnings(
        "scrapers:\n  disk:\n    include:\n      devices: ['^sd']\n      match_type: regexp\n      regexp:\n        cacheenabled: true\n        cachemaxnumentries: 100\n  hardware:\n    temperature:\n      exclude:\n        sensors: [x]\n        match_type: strict\n        regexp: {cacheenabled: true}\n",
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("scrapers.disk.include.regexp"), "{w:?}");
    assert!(w[0].contains("has no effect"), "{w:?}");
    assert!(
        w[1].contains("scrapers.hardware.temperature.exclude.regexp"),
        "{w:?}"
    );
}

#[test]
fn an_empty_root_path_means_the_root() {
    let set = scrapers("root_path: ''\nscrapers:\n  cpu:\n");
    assert_eq!(set.root, PathBuf::from("/"));
}

#[test]
fn every_upstream_default_is_kept() {
    // Off upstream, so off here: threads and file descriptors of each process.
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("proc/30/stat", &pid_stat(30, "p", 'S', 1, 1, 3))
        .write(
            "proc/30/io",
            "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 5\nwrite_bytes: 6\ncancelled_write_bytes: 0\n",
        );
    let r = scrapers(&f.config("  process:\n")).scrape();
    assert_eq!(
        names(&r),
        [
            "process.cpu.time",
            "process.disk.io",
            "process.memory.usage",
            "process.memory.virtual"
        ]
    );
}

#[test]
fn attributes_narrow_a_metric_and_merge_its_points() {
    let f = Fixture::new();
    f.write(
        "proc/stat",
        &stat_file("cpu0 100 0 50 400 0 0 0 0 0 0\ncpu1 300 0 150 200 0 0 0 0 0 0\n"),
    );
    let tps = procfs::ticks_per_second() as f64;
    let r = scrapers(
        &f.config("  cpu:\n    metrics:\n      system.cpu.time:\n        attributes: [state]\n"),
    )
    .scrape();
    // One point per mode, the CPUs summed.
    assert_eq!(points(&r, "system.cpu.time").len(), 7);
    assert_eq!(
        value(&r, "system.cpu.time", &[("cpu.mode", "user")]),
        400.0 / tps
    );
    let r = scrapers(&f.config(
        "  cpu:\n    metrics:\n      system.cpu.time:\n        attributes: [cpu.mode]\n        aggregation_strategy: max\n",
    ))
    .scrape();
    assert_eq!(
        value(&r, "system.cpu.time", &[("cpu.mode", "idle")]),
        400.0 / tps
    );
    // Under collector names the attribute is `state`.
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  cpu:\n    metrics:\n      system.cpu.time:\n        attributes: []\n")
    ))
    .scrape();
    let all = points(&r, "system.cpu.time");
    assert_eq!(all.len(), 1);
    assert!(all[0].attrs.is_empty());
    assert_eq!(all[0].value, 1200.0 / tps);

    let e = config_errors(
        "scrapers:\n  cpu:\n    metrics:\n      system.cpu.time:\n        aggregation_strategy: median\n",
    );
    assert!(e[0].contains("aggregation_strategy"), "{e:?}");
    let e = config_errors(
        "scrapers:\n  cpu:\n    metrics:\n      system.cpu.time:\n        attributes: [state, core]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("metrics.system.cpu.time.attributes[1]")
            && e[0].contains("no attribute `core`"),
        "{e:?}"
    );
    let e = config_errors(
        "scrapers:\n  system:\n    metrics:\n      system.uptime:\n        attributes: []\n",
    );
    assert!(e[0].contains("no data point attributes"), "{e:?}");
}

#[test]
fn cpu_physical_count_and_frequency() {
    let f = Fixture::new();
    f.write(
        "proc/stat",
        &stat_file("cpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\ncpu2 1 0 1 1 0 0 0 0 0 0\ncpu3 1 0 1 1 0 0 0 0 0 0\n"),
    )
    .write(
        "proc/cpuinfo",
        "processor\t: 0\ncpu MHz\t\t: 2400.000\nphysical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.500\nphysical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 2\ncpu MHz\t\t: 2400.000\nphysical id\t: 0\ncore id\t\t: 1\n\nprocessor\t: 3\ncpu MHz\t\t: 2400.000\nphysical id\t: 0\ncore id\t\t: 1\n",
    );
    let on = "    metrics:\n      system.cpu.physical.count: {enabled: true}\n      system.cpu.logical.count: {enabled: true}\n      system.cpu.frequency: {enabled: true}\n";
    let r = scrapers(&f.config(&format!("  cpu:\n{on}"))).scrape();
    // Two cores with two threads each.
    assert_eq!(value(&r, "system.cpu.physical.count", &[]), 2.0);
    assert_eq!(value(&r, "system.cpu.logical.count", &[]), 4.0);
    let (unit, kind, _) = metric_of(&r, "system.cpu.frequency").unwrap();
    assert_eq!((unit.as_str(), kind), ("Hz", "gauge"));
    assert_eq!(
        value(&r, "system.cpu.frequency", &[("cpu.logical_number", "1")]),
        1_200_500_000.0
    );
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config(&format!("  cpu:\n{on}"))
    ))
    .scrape();
    assert_eq!(
        value(&r, "system.cpu.frequency", &[("cpu", "cpu0")]),
        2_400_000_000.0
    );
    // The sysfs topology wins over cpuinfo when it is there.
    for (cpu, core) in [(0, 0), (1, 1), (2, 2), (3, 3)] {
        f.write(
            &format!("sys/devices/system/cpu/cpu{cpu}/topology/core_id"),
            &format!("{core}\n"),
        )
        .write(
            &format!("sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id"),
            "0\n",
        );
    }
    let r = scrapers(&f.config(&format!("  cpu:\n{on}"))).scrape();
    assert_eq!(value(&r, "system.cpu.physical.count", &[]), 4.0);
}

const HUGE: &str = "Dirty:              12 kB
HugePages_Total:      10
HugePages_Free:        4
HugePages_Rsvd:        1
HugePages_Surp:        2
Hugepagesize:       2048 kB
";

#[test]
fn memory_page_size_dirty_shared_and_huge_pages() {
    let f = Fixture::new();
    // Dirty in MEMINFO is 0: the later line wins in the parsed map.
    f.write("proc/meminfo", &format!("{MEMINFO}{HUGE}"))
        .write("proc/stat", &stat_file(""));
    let names_on = [
        "system.memory.page_size",
        "system.linux.memory.dirty",
        "system.memory.linux.shared",
        "system.memory.linux.hugepages.limit",
        "system.memory.linux.hugepages.page_size",
        "system.memory.linux.hugepages.reserved",
        "system.memory.linux.hugepages.surplus",
        "system.memory.linux.hugepages.usage",
        "system.memory.linux.hugepages.utilization",
        "system.linux.memory.available",
    ];
    let switches: String = names_on
        .iter()
        .map(|n| format!("      {n}: {{enabled: true}}\n"))
        .collect();
    let r = scrapers(&f.config(&format!("  memory:\n    metrics:\n{switches}"))).scrape();
    let kib = 1024.0;
    assert_eq!(
        value(&r, "system.memory.page_size", &[]),
        procfs::page_size() as f64
    );
    assert_eq!(value(&r, "system.linux.memory.dirty", &[]), 12.0 * kib);
    assert_eq!(value(&r, "system.memory.linux.shared", &[]), 100.0 * kib);
    assert_eq!(
        value(&r, "system.memory.linux.available", &[]),
        9000.0 * kib
    );
    assert_eq!(value(&r, "system.memory.linux.hugepages.limit", &[]), 10.0);
    assert_eq!(
        value(&r, "system.memory.linux.hugepages.page_size", &[]),
        2048.0 * kib
    );
    assert_eq!(
        value(&r, "system.memory.linux.hugepages.reserved", &[]),
        1.0
    );
    assert_eq!(value(&r, "system.memory.linux.hugepages.surplus", &[]), 2.0);
    let state = "system.memory.linux.hugepages.state";
    assert_eq!(
        value(
            &r,
            "system.memory.linux.hugepages.usage",
            &[(state, "used")]
        ),
        6.0
    );
    assert_eq!(
        value(
            &r,
            "system.memory.linux.hugepages.utilization",
            &[(state, "free")]
        ),
        0.4
    );
    assert_eq!(
        metric_of(&r, "system.memory.linux.hugepages.usage")
            .unwrap()
            .0,
        "{page}"
    );

    // Collector names: slab is two more states of usage and utilisation.
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  memory:\n    metrics:\n      system.memory.utilization: {enabled: true}\n      system.linux.memory.available: {enabled: true}\n")
    ))
    .scrape();
    assert_eq!(
        value(
            &r,
            "system.memory.utilization",
            &[("state", "slab_unreclaimable")]
        ),
        200.0 / 16000.0
    );
    assert_eq!(
        value(&r, "system.linux.memory.available", &[]),
        9000.0 * kib
    );
    // Switching usage off under collector names takes its slab states with it.
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  memory:\n    metrics:\n      system.memory.usage: {enabled: false}\n")
    ))
    .scrape();
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn network_conntrack_table() {
    let f = Fixture::new();
    f.write("proc/net/dev", NET_DEV)
        .write("proc/net/tcp", TCP)
        .write("proc/sys/net/netfilter/nf_conntrack_count", "29\n")
        .write("proc/sys/net/netfilter/nf_conntrack_max", "262144\n")
        .write("proc/stat", &stat_file(""));
    let r = scrapers(&f.config("  network:\n")).scrape();
    assert!(
        points(&r, "system.network.conntrack.count").is_empty(),
        "off by default"
    );
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config("  network:\n    metrics:\n      system.network.conntrack.count: {enabled: true}\n      system.network.conntrack.max: {enabled: true}\n")
    ))
    .scrape();
    let (unit, kind, pts) = metric_of(&r, "system.network.conntrack.count").unwrap();
    assert_eq!((unit.as_str(), kind), ("{entries}", "updown"));
    assert_eq!(pts[0].value, 29.0);
    assert_eq!(value(&r, "system.network.conntrack.max", &[]), 262144.0);
}

/// A fixture `/proc/<pid>/status` with the fields procfs needs.
fn pid_status(pid: u32, uid: u32, voluntary: u64, involuntary: u64, shdpnd: &str) -> String {
    format!(
        "Name:\tserver\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\nTracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\nThreads:\t4\nSigQ:\t0/63455\nSigPnd:\t0000000000000000\nShdPnd:\t{shdpnd}\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nvoluntary_ctxt_switches:\t{voluntary}\nnonvoluntary_ctxt_switches:\t{involuntary}\n"
    )
}

/// A fixture root with one process, pid 40 (`server`, started 500 ticks after boot).
fn process_fixture() -> Fixture {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    f.write("proc/stat", &stat_file("cpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\n"))
        .write("proc/meminfo", MEMINFO)
        .write("proc/40/stat", &pid_stat(40, "server", 'S', 300, 100, 4))
        .write("proc/40/cmdline", "/usr/bin/server\0--port\08080\0")
        .write(
            "proc/40/io",
            "rchar: 1\nwchar: 2\nsyscr: 30\nsyscw: 40\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
        )
        .write("proc/40/cgroup", "0::/system.slice/server.service\n");
    std::os::unix::fs::symlink("/usr/bin/server", f.0.join("proc/40/exe")).unwrap();
    let uid = std::fs::metadata(f.0.join("proc/40")).unwrap().uid();
    f.write(
        "proc/40/status",
        &pid_status(40, uid, 7, 3, "0000000000000006"),
    );
    f
}

fn resource_attrs(r: &ResourceMetrics) -> BTreeMap<String, String> {
    r.resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

#[test]
fn process_optional_metrics() {
    let f = process_fixture();
    let all = "    metrics:\n      process.cpu.utilization: {enabled: true}\n      process.memory.utilization: {enabled: true}\n      process.disk.operations: {enabled: true}\n      process.paging.faults: {enabled: true}\n      process.context_switches: {enabled: true}\n      process.signals_pending: {enabled: true}\n      process.uptime: {enabled: true}\n";
    let mut set = scrapers(&f.config(&format!("  process:\n{all}")));
    let r = set.scrape();
    assert!(
        points(&r, "process.cpu.utilization").is_empty(),
        "needs two scrapes"
    );
    let rss = (256 * procfs::page_size()) as f64;
    assert_eq!(
        value(&r, "process.memory.utilization", &[]),
        rss / (16000.0 * 1024.0)
    );
    assert_eq!(
        value(
            &r,
            "process.disk.operations",
            &[("disk.io.direction", "read")]
        ),
        30.0
    );
    assert_eq!(
        value(
            &r,
            "process.disk.operations",
            &[("disk.io.direction", "write")]
        ),
        40.0
    );
    assert_eq!(
        value(
            &r,
            "process.paging.faults",
            &[("system.paging.fault.type", "minor")]
        ),
        100.0
    );
    assert_eq!(
        value(
            &r,
            "process.context_switches",
            &[("process.context_switch.type", "voluntary")]
        ),
        7.0
    );
    // ShdPnd 0x6: signals 2 and 3 pending.
    assert_eq!(value(&r, "process.signals_pending", &[]), 2.0);
    let tps = procfs::ticks_per_second();
    let start = BTIME * 1_000_000_000 + 500 * 1_000_000_000 / tps;
    let uptime = value(&r, "process.uptime", &[]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        uptime > 0.0 && uptime <= (now - start) as f64 / 1e9,
        "{uptime}"
    );

    // 2 logical CPUs; the process used 100 more user ticks.
    f.write("proc/40/stat", &pid_stat(40, "server", 'S', 400, 100, 4));
    let r = set.scrape();
    let user = value(&r, "process.cpu.utilization", &[("cpu.mode", "user")]);
    let system = value(&r, "process.cpu.utilization", &[("cpu.mode", "system")]);
    assert!(user > 0.0 && system == 0.0, "{user} {system}");

    // Collector names and units; memory utilisation as the collector reports it, a percentage.
    let r = scrapers(&format!(
        "attribute_names: collector\n{}",
        f.config(&format!("  process:\n{all}"))
    ))
    .scrape();
    assert_eq!(
        value(&r, "process.memory.utilization", &[]),
        rss / (16000.0 * 1024.0) * 100.0
    );
    assert_eq!(
        value(&r, "process.context_switches", &[("type", "involuntary")]),
        3.0
    );
    assert_eq!(
        metric_of(&r, "process.paging.faults").unwrap().0,
        "{faults}"
    );
    assert_eq!(
        metric_of(&r, "process.disk.operations").unwrap().0,
        "{operations}"
    );
}

#[test]
fn process_resource_attributes_switches_overrides_and_filters() {
    let f = process_fixture();
    let r = scrapers(&f.config(
        "  process:\n    resource_attributes:\n      process.pid: {enabled: false}\n      process.command_line: {enabled: false}\n      process.cgroup: {enabled: true}\n      process.owner: {override_value: nobody}\n",
    ))
    .scrape();
    assert_eq!(r.len(), 1);
    let attrs = resource_attrs(&r[0]);
    assert!(!attrs.contains_key("process.pid"), "{attrs:?}");
    assert!(!attrs.contains_key("process.command_line"), "{attrs:?}");
    assert_eq!(attrs["process.cgroup"], "0::/system.slice/server.service");
    assert_eq!(attrs["process.owner"], "nobody");
    assert_eq!(attrs["process.command"], "/usr/bin/server");

    let kept = |yaml: &str| scrapers(&f.config(yaml)).scrape().len();
    assert_eq!(
        kept(
            "  process:\n    resource_attributes:\n      process.executable.name:\n        metrics_include: [{regexp: '^ser'}]\n"
        ),
        1
    );
    assert_eq!(
        kept(
            "  process:\n    resource_attributes:\n      process.executable.name:\n        metrics_include: [{strict: other}]\n"
        ),
        0
    );
    assert_eq!(
        kept(
            "  process:\n    resource_attributes:\n      process.pid:\n        metrics_exclude: [{strict: '40'}]\n"
        ),
        0
    );
    let e = config_errors(
        "scrapers:\n  process:\n    resource_attributes:\n      process.pidd: {enabled: false}\n      process.owner:\n        metrics_include: [{strict: a, regexp: b}]\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter().any(|e| e.contains("did you mean `process.pid`")),
        "{e:?}"
    );
    assert!(e.iter().any(|e| e.contains("metrics_include[0]")), "{e:?}");
}

#[test]
fn scrape_process_delay_leaves_out_young_processes() {
    let f = process_fixture();
    // Started 500 ticks after a boot in 2023: old.
    assert_eq!(
        scrapers(&f.config("  process:\n    scrape_process_delay: 10s\n"))
            .scrape()
            .len(),
        1
    );
    // Started just now.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tps = procfs::ticks_per_second();
    let start_ticks = (now - BTIME) * tps;
    let stat =
        pid_stat(40, "server", 'S', 1, 1, 1).replacen(" 500 ", &format!(" {start_ticks} "), 1);
    f.write("proc/40/stat", &stat);
    assert_eq!(
        scrapers(&f.config("  process:\n    scrape_process_delay: 1h\n"))
            .scrape()
            .len(),
        0
    );
    assert_eq!(scrapers(&f.config("  process:\n")).scrape().len(), 1);
}

#[test]
fn process_read_errors_are_reported_unless_muted() {
    let f = process_fixture();
    // A second process whose executable and owner cannot be resolved.
    f.write("proc/41/stat", &pid_stat(41, "worker", 'S', 1, 1, 1))
        .write(
            "proc/41/io",
            "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 5\nwrite_bytes: 6\ncancelled_write_bytes: 0\n",
        )
        // Whoever owns the fixture's files has no name here.
        .write("etc/passwd", "nosuchuser:x:4294967294:4294967294::/:/bin/false\n");
    let errors = |yaml: &str| {
        let mut set = scrapers(&f.config(yaml));
        let r = set.scrape();
        (r.len(), set.last_errors())
    };
    let (n, e) = errors("  process:\n");
    assert_eq!(n, 2, "both processes are still reported");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "process");
    assert!(e[0].1.contains("executable"), "{e:?}");
    let (n, e) =
        errors("  process:\n    mute_process_exe_error: true\n    mute_process_user_error: true\n");
    assert_eq!(n, 2);
    assert!(e.is_empty(), "{e:?}");
    let (_, e) = errors("  process:\n    mute_process_exe_error: true\n");
    assert!(e[0].1.contains("has no user name"), "{e:?}");
    let (_, e) = errors(
        "  process:\n    mute_process_all_errors: true\n    metrics:\n      process.open_file_descriptors: {enabled: true}\n",
    );
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn a_windows_only_metric_is_accepted_with_a_warning() {
    let w =
        warnings("scrapers:\n  process:\n    metrics:\n      process.handles: {enabled: true}\n");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("scrapers.process.metrics.process.handles"),
        "{w:?}"
    );
    assert!(w[0].contains("Windows"), "{w:?}");
}

const NFS_CLIENT: &str = "net 18628 0 18628 6
rpc 4329 2 1
proc3 22 0 1000 0 450 30 0 200 100 5 0 0 0 0 0 0 0 0 12 0 2 1 7
proc4 5 0 40 60 3 9
";

const NFS_SERVER: &str = "rc 15000 320 150
fh 25 0 0 0 0
io 8000000 4500000
th 16 0 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000
ra 32 0 0 0 0 0 0 0 0 0 0 0
net 25000 0 25000 128
rpc 30000 15 5 6 4
proc3 22 1 4500 800 3200 4000 0 6000 5500 0 0 0 0 0 0 0 0 0 0 0 0 0 0
proc4 2 3 15000
proc4ops 8 0 0 0 2800 0 1200 0 0
";

#[test]
fn nfs_client_and_server_counters() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("proc/net/rpc/nfs", NFS_CLIENT)
        .write("proc/net/rpc/nfsd", NFS_SERVER);
    let r = scrapers(&f.config("  nfs:\n")).scrape();
    let (unit, kind, _) = metric_of(&r, "nfs.client.net.count").unwrap();
    assert_eq!((unit.as_str(), kind), ("{record}", "counter"));
    assert_eq!(
        value(&r, "nfs.client.net.count", &[("network.transport", "tcp")]),
        18628.0
    );
    assert_eq!(
        value(&r, "nfs.client.net.tcp.connection.accepted", &[]),
        6.0
    );
    assert_eq!(value(&r, "nfs.client.rpc.count", &[]), 4329.0);
    assert_eq!(value(&r, "nfs.client.rpc.retransmit.count", &[]), 2.0);
    assert_eq!(value(&r, "nfs.client.rpc.authrefresh.count", &[]), 1.0);
    let proc3 = |name: &str| {
        value(
            &r,
            "nfs.client.procedure.count",
            &[("onc_rpc.version", "3"), ("onc_rpc.procedure.name", name)],
        )
    };
    // The first counter of a procN line is NULL.
    assert_eq!(proc3("NULL"), 0.0);
    assert_eq!(proc3("GETATTR"), 1000.0);
    assert_eq!(proc3("COMMIT"), 7.0);
    assert_eq!(
        value(
            &r,
            "nfs.client.operation.count",
            &[("onc_rpc.version", "4"), ("nfs.operation.name", "WRITE")]
        ),
        60.0
    );
    let status = |s: &str| {
        value(
            &r,
            "nfs.server.repcache.requests",
            &[("nfs.server.repcache.status", s)],
        )
    };
    assert_eq!(status("hit"), 15000.0);
    assert_eq!(status("nocache"), 150.0);
    assert_eq!(value(&r, "nfs.server.fh.stale.count", &[]), 25.0);
    assert_eq!(
        value(&r, "nfs.server.io", &[("network.io.direction", "receive")]),
        8_000_000.0
    );
    let (_, kind, pts) = metric_of(&r, "nfs.server.thread.count").unwrap();
    assert_eq!((kind, pts[0].value), ("updown", 16.0));
    assert_eq!(
        value(&r, "nfs.server.net.tcp.connection.accepted", &[]),
        128.0
    );
    assert_eq!(
        value(&r, "nfs.server.rpc.count", &[("error.type", "auth")]),
        6.0
    );
    assert_eq!(
        points(&r, "nfs.server.rpc.count")
            .iter()
            .find(|p| p.attrs.is_empty())
            .unwrap()
            .value,
        30000.0
    );
    assert_eq!(
        value(
            &r,
            "nfs.server.procedure.count",
            &[
                ("onc_rpc.version", "4"),
                ("onc_rpc.procedure.name", "COMPOUND")
            ]
        ),
        15000.0
    );
    assert_eq!(
        value(
            &r,
            "nfs.server.operation.count",
            &[("onc_rpc.version", "4"), ("nfs.operation.name", "COMMIT")]
        ),
        1200.0
    );

    // Without the NFS modules there is nothing to report, and no error.
    let empty = Fixture::new();
    empty.write("proc/stat", &stat_file(""));
    let mut set = scrapers(&empty.config("  nfs:\n"));
    assert!(set.scrape().is_empty());
    assert!(set.last_errors().is_empty());
}

#[test]
fn former_nfs_metric_names_apply_to_the_current_ones_with_a_warning() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("proc/net/rpc/nfs", NFS_CLIENT);
    let yaml = f.config("  nfs:\n    metrics:\n      system.nfs.rpc.count: {enabled: false}\n");
    let w = warnings(&yaml);
    assert!(
        w[0].contains("`system.nfs.rpc.count` is a former name of `nfs.client.rpc.count`"),
        "{w:?}"
    );
    let r = scrapers(&yaml).scrape();
    assert!(points(&r, "nfs.client.rpc.count").is_empty());
    assert!(!points(&r, "nfs.client.rpc.retransmit.count").is_empty());
}

#[test]
fn hardware_temperatures_and_limits() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file(""))
        .write("sys/class/hwmon/hwmon0/name", "acpitz\n")
        .write("sys/class/hwmon/hwmon0/temp1_input", "51000\n")
        .write("sys/class/hwmon/hwmon2/name", "coretemp\n")
        .write("sys/class/hwmon/hwmon2/temp1_input", "47000\n")
        .write("sys/class/hwmon/hwmon2/temp1_label", "Package id 0\n")
        .write("sys/class/hwmon/hwmon2/temp1_crit", "100000\n")
        .write("sys/class/hwmon/hwmon2/temp1_max", "80000\n")
        .write("sys/class/hwmon/hwmon2/temp1_min", "-273000\n")
        .write("sys/class/hwmon/hwmon2/temp2_input", "48500\n")
        .write("sys/class/hwmon/hwmon2/temp2_label", "Core 0\n");
    let r = scrapers(
        &f.config("  hardware:\n    metrics:\n      hw.temperature.limit: {enabled: true}\n"),
    )
    .scrape();
    let (unit, kind, pts) = metric_of(&r, "hw.temperature").unwrap();
    assert_eq!((unit.as_str(), kind, pts.len()), ("Cel", "gauge", 3));
    let core = value(&r, "hw.temperature", &[("hw.sensor_location", "Core 0")]);
    assert_eq!(core, 48.5);
    let p = points(&r, "hw.temperature")
        .into_iter()
        .find(|p| p.attrs["hw.sensor_location"] == "temp1")
        .unwrap();
    assert_eq!(p.attrs["hw.id"], "acpitz_hwmon0_temp1");
    assert_eq!(p.attrs["hw.name"], "acpitz");
    assert_eq!(p.attrs["hw.parent"], "acpitz_hwmon0");
    let limits = points(&r, "hw.temperature.limit");
    // crit and max of the package; an implausible min is left out.
    assert_eq!(limits.len(), 2, "{limits:?}");
    assert_eq!(
        value(
            &r,
            "hw.temperature.limit",
            &[("hw.limit_type", "high.critical")]
        ),
        100.0
    );
    let r = scrapers(&f.config(
        "  hardware:\n    temperature:\n      include:\n        sensors: ['^Core']\n        match_type: regexp\n",
    ))
    .scrape();
    assert_eq!(points(&r, "hw.temperature").len(), 1);
    // hwmon_path, as the first hardware scraper releases had it, read under the root.
    f.write("elsewhere/hwmon7/name", "nvme\n")
        .write("elsewhere/hwmon7/temp1_input", "30000\n");
    let r = scrapers(&f.config("  hardware:\n    hwmon_path: /elsewhere\n")).scrape();
    assert_eq!(value(&r, "hw.temperature", &[("hw.name", "nvme")]), 30.0);
}

#[test]
fn scrapers_not_started_by_the_deadline_are_skipped() {
    let f = Fixture::new();
    f.write("proc/meminfo", MEMINFO)
        .write("proc/stat", &stat_file("cpu0 1 2 3 4 5 6 7 8 0 0\n"));
    let mut set = scrapers(&f.config("  cpu:\n  memory:\n"));
    let mut parts = Vec::new();
    let past = std::time::Instant::now();
    set.scrape_parts(Some(past), &mut |p| parts.push(p));
    assert!(parts.is_empty());
    let errors = set.last_errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|(_, e)| e.contains("timeout")),
        "{errors:?}"
    );
    // No deadline: both report again.
    let r = set.scrape();
    assert_eq!(r[0].scope_metrics.len(), 2);
    assert!(set.last_errors().is_empty());
}

#[test]
fn the_host_entity_event() {
    let logs = entity::host_state(7, StdDuration::from_secs(300));
    let scope = &logs.scope_logs[0];
    assert_eq!(
        scope.scope.as_ref().unwrap().attributes[0].key,
        "otel.entity.event_as_log"
    );
    let record = &scope.log_records[0];
    assert_eq!(record.time_unix_nano, 7);
    let attrs: BTreeMap<&str, String> = record
        .attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.as_str(), v)
        })
        .collect();
    assert_eq!(attrs["otel.entity.event.type"], "entity_state");
    assert_eq!(attrs["otel.entity.type"], "host");
    assert_eq!(attrs["otel.entity.interval"], "300000");
    let once = entity::host_state(7, StdDuration::ZERO);
    assert_eq!(once.scope_logs[0].log_records[0].attributes.len(), 2);
}

struct CollectLogs(mpsc::UnboundedSender<usize>);

#[async_trait]
impl Consumer<sluice_pipeline::Logs> for CollectLogs {
    async fn consume(&self, mut batch: Batch<sluice_pipeline::Logs>) {
        let _ = self.0.send(batch.take_resources().len());
        batch.settle(&Ok(()));
    }
}

#[tokio::test]
async fn a_logs_pipeline_gets_the_entity_event_every_interval() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outputs = ReceiverOutputs {
        logs: Some(Arc::new(CollectLogs(tx))),
        ..Default::default()
    };
    let r = HostMetricsReceiverFactory
        .build(
            &component("metadata_collection_interval: 20ms\nscrapers:\n  cpu:\n"),
            outputs,
            &BuildContext::default(),
        )
        .unwrap();
    r.start().await.unwrap();
    // One at start, then one per interval.
    for _ in 0..3 {
        assert_eq!(rx.recv().await, Some(1));
    }
    r.shutdown(tokio::time::Instant::now() + StdDuration::from_secs(3600))
        .await;
    drop(r);
    while rx.recv().await.is_some() {}
}

#[tokio::test]
async fn a_collection_past_its_timeout_sends_what_finished() {
    let f = Fixture::new();
    f.write("proc/stat", &stat_file("cpu0 1 2 3 4 5 6 7 8 0 0\n"));
    // A read that never returns, as from a hung network mount: a FIFO nobody writes to.
    let fifo = f.0.join("proc/meminfo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (r, mut rx) = receiver(&format!(
        "collection_interval: 50ms\ninitial_delay: 0s\ntimeout: 300ms\n{}",
        f.config("  cpu:\n  memory:\n")
    ));
    r.start().await.unwrap();
    // The CPU scraper finished in time; the memory scraper is still stuck in its read.
    let batch = rx.recv().await.unwrap();
    assert_eq!(names(&batch), ["system.cpu.time"]);
    r.shutdown(tokio::time::Instant::now() + StdDuration::from_secs(3600))
        .await;
    // Release the stuck read (it sees end of file) so the blocking thread can end.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
}

/// Every metric of the OTel Collector's scrapers, with whether it is on by default there.
const UPSTREAM: &[(&str, &[(&str, bool)])] = &[
    (
        "cpu",
        &[
            ("system.cpu.time", true),
            ("system.cpu.utilization", false),
            ("system.cpu.physical.count", false),
            ("system.cpu.logical.count", false),
            ("system.cpu.frequency", false),
        ],
    ),
    (
        "disk",
        &[
            ("system.disk.io", true),
            ("system.disk.operations", true),
            ("system.disk.io_time", true),
            ("system.disk.operation_time", true),
            ("system.disk.weighted_io_time", true),
            ("system.disk.pending_operations", true),
            ("system.disk.merged", true),
        ],
    ),
    (
        "filesystem",
        &[
            ("system.filesystem.usage", true),
            ("system.filesystem.inodes.usage", true),
            ("system.filesystem.utilization", false),
        ],
    ),
    (
        "load",
        &[
            ("system.cpu.load_average.1m", true),
            ("system.cpu.load_average.5m", true),
            ("system.cpu.load_average.15m", true),
        ],
    ),
    (
        "memory",
        &[
            ("system.memory.usage", true),
            ("system.memory.utilization", false),
            ("system.memory.limit", false),
            ("system.memory.page_size", false),
            ("system.linux.memory.available", false),
            ("system.linux.memory.dirty", false),
            ("system.memory.linux.shared", false),
            ("system.memory.linux.hugepages.limit", false),
            ("system.memory.linux.hugepages.page_size", false),
            ("system.memory.linux.hugepages.reserved", false),
            ("system.memory.linux.hugepages.surplus", false),
            ("system.memory.linux.hugepages.usage", false),
            ("system.memory.linux.hugepages.utilization", false),
        ],
    ),
    (
        "network",
        &[
            ("system.network.packets", true),
            ("system.network.dropped", true),
            ("system.network.errors", true),
            ("system.network.io", true),
            ("system.network.connections", true),
            ("system.network.conntrack.count", false),
            ("system.network.conntrack.max", false),
        ],
    ),
    (
        "paging",
        &[
            ("system.paging.usage", true),
            ("system.paging.operations", true),
            ("system.paging.faults", true),
            ("system.paging.utilization", false),
        ],
    ),
    (
        "processes",
        &[
            ("system.processes.count", true),
            ("system.processes.created", true),
        ],
    ),
    (
        "process",
        &[
            ("process.cpu.time", true),
            ("process.cpu.utilization", false),
            ("process.memory.usage", true),
            ("process.memory.virtual", true),
            ("process.memory.utilization", false),
            ("process.disk.io", true),
            ("process.disk.operations", false),
            ("process.paging.faults", false),
            ("process.signals_pending", false),
            ("process.threads", false),
            ("process.open_file_descriptors", false),
            ("process.handles", false),
            ("process.context_switches", false),
            ("process.uptime", false),
        ],
    ),
    ("system", &[("system.uptime", true)]),
    (
        "nfs",
        &[
            ("nfs.client.net.count", true),
            ("nfs.client.net.tcp.connection.accepted", true),
            ("nfs.client.operation.count", true),
            ("nfs.client.procedure.count", true),
            ("nfs.client.rpc.authrefresh.count", true),
            ("nfs.client.rpc.count", true),
            ("nfs.client.rpc.retransmit.count", true),
            ("nfs.server.fh.stale.count", true),
            ("nfs.server.io", true),
            ("nfs.server.net.count", true),
            ("nfs.server.net.tcp.connection.accepted", true),
            ("nfs.server.operation.count", true),
            ("nfs.server.procedure.count", true),
            ("nfs.server.repcache.requests", true),
            ("nfs.server.rpc.count", true),
            ("nfs.server.thread.count", true),
        ],
    ),
    (
        "hardware",
        &[("hw.temperature", true), ("hw.temperature.limit", false)],
    ),
];

#[test]
fn every_upstream_metric_has_its_name_its_default_and_a_switch() {
    let tables: &[(&str, &[emit::MetricDef])] = &[
        ("cpu", cpu::METRICS),
        ("disk", disk::METRICS),
        ("filesystem", filesystem::METRICS),
        ("load", load::METRICS),
        ("memory", memory::METRICS),
        ("network", network::METRICS),
        ("paging", paging::METRICS),
        ("processes", processes::METRICS),
        ("process", process::METRICS),
        ("system", system::METRICS),
        ("nfs", nfs::METRICS),
        ("hardware", hardware::METRICS),
    ];
    for (scraper, metrics) in UPSTREAM {
        let defs = tables.iter().find(|(s, _)| s == scraper).unwrap().1;
        for (name, default) in *metrics {
            let def = defs
                .iter()
                .find(|d| d.collector == *name)
                .unwrap_or_else(|| panic!("{scraper}: no metric named {name}"));
            assert_eq!(def.default_on, *default, "{name}");
            // Both switches of the metric are accepted, under either naming.
            for naming in ["semconv", "collector"] {
                for switch in [*name, def.semconv] {
                    scrapers(&format!(
                        "attribute_names: {naming}\nscrapers:\n  {scraper}:\n    metrics:\n      {switch}: {{enabled: {}}}\n",
                        !default
                    ));
                }
            }
        }
    }
}
