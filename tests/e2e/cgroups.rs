//! The `cgroups` receiver in the real binary: fixture trees laid out as cgroup v2 and v1
//! (hybrid) hosts under `root_path`, with exact values, and a real cgroup the test creates on
//! this machine when it is allowed to.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Collector;
use serde_json::Value;

const ID1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ID2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const POD: &str = "12345678-90ab-cdef-1234-567890abcdef";

fn config(root: &str) -> String {
    format!(
        r#"
receivers:
  cgroups:
    collection_interval: 200ms
    root_path: "{root}"
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
      receivers: [cgroups]
      exporters: [file/out]
"#
    )
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn attrs(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let v = &kv["value"];
            let v = v
                .get("stringValue")
                .or_else(|| v.get("intValue"))
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default();
            (kv["key"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect()
}

/// The latest collection's points of one container: `name{k=v,...}` → value, plus its
/// resource attributes.
fn latest(path: &Path, id: &str) -> Option<(BTreeMap<String, String>, BTreeMap<String, f64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| l.contains(id))?;
    let line: Value = serde_json::from_str(line).ok()?;
    for rm in line["resourceMetrics"].as_array()? {
        let resource = attrs(&rm["resource"]["attributes"]);
        if resource.get("container.id").map(String::as_str) != Some(id) {
            continue;
        }
        let mut values = BTreeMap::new();
        for sm in rm["scopeMetrics"].as_array()? {
            for m in sm["metrics"].as_array()? {
                let data = m.get("gauge").or_else(|| m.get("sum"))?;
                for dp in data["dataPoints"].as_array()? {
                    let labels: Vec<String> = attrs(&dp["attributes"])
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let value = dp.get("asDouble").or_else(|| dp.get("asInt"))?;
                    let value = match value {
                        Value::String(s) => s.parse().ok()?,
                        v => v.as_f64()?,
                    };
                    let name = m["name"].as_str()?;
                    let key = if labels.is_empty() {
                        name.to_string()
                    } else {
                        format!("{name}{{{}}}", labels.join(","))
                    };
                    values.insert(key, value);
                }
            }
        }
        return Some((resource, values));
    }
    None
}

fn wait_latest(
    collector: &Collector,
    id: &str,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = latest(&collector.path("out.jsonl"), id)
            && ready(&found.1)
        {
            return found;
        }
        if Instant::now() > deadline {
            panic!(
                "no metrics for container {id}; collector log:\n{}",
                collector.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cgroup_v2_fixture_through_the_binary() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let pod_slice = format!("kubepods-besteffort-pod{}.slice", POD.replace('-', "_"));
    let d = format!("sys/fs/cgroup/system.slice/docker-{ID1}.scope");
    let k = format!(
        "sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/{pod_slice}/crio-{ID2}.scope"
    );
    write(
        r,
        "sys/fs/cgroup/cgroup.controllers",
        "cpu io memory pids\n",
    );
    write(r, "sys/fs/cgroup/cgroup.procs", "");
    write(
        r,
        &format!("{d}/cpu.stat"),
        "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nnr_periods 8\nnr_throttled 3\nthrottled_usec 750000\n",
    );
    write(r, &format!("{d}/memory.current"), "8388608\n");
    write(r, &format!("{d}/memory.max"), "33554432\n");
    write(
        r,
        &format!("{d}/memory.stat"),
        "anon 1\ninactive_file 4194304\n",
    );
    write(r, &format!("{d}/memory.events"), "oom 4\noom_kill 3\n");
    write(
        r,
        &format!("{d}/io.stat"),
        "8:16 rbytes=111 wbytes=222 rios=1 wios=1\n",
    );
    write(r, &format!("{d}/pids.current"), "5\n");
    write(r, &format!("{d}/pids.max"), "64\n");
    write(r, &format!("{k}/memory.current"), "1024\n");

    let collector = Collector::start(&config(r.to_str().unwrap()), &[]);
    let (resource, v) = wait_latest(&collector, ID1, |_| true);
    assert_eq!(resource["container.runtime.name"], "docker");
    let expect = [
        ("container.cpu.time{cpu.mode=user}", 1.5),
        ("container.cpu.time{cpu.mode=system}", 0.5),
        ("container.cpu.throttling_data.periods", 8.0),
        ("container.cpu.throttling_data.throttled_periods", 3.0),
        ("container.cpu.throttling_data.throttled_time", 0.75),
        ("container.memory.usage", 8388608.0),
        ("container.memory.working_set", 4194304.0),
        ("container.memory.limit", 33554432.0),
        ("container.memory.oom_kills", 3.0),
        (
            "container.disk.io{disk.io.direction=read,system.device=8:16}",
            111.0,
        ),
        (
            "container.disk.io{disk.io.direction=write,system.device=8:16}",
            222.0,
        ),
        ("container.pids.count", 5.0),
        ("container.pids.limit", 64.0),
    ];
    for (name, value) in expect {
        assert_eq!(v.get(name), Some(&value), "{name} in {v:?}");
    }
    let (pod, v) = wait_latest(&collector, ID2, |_| true);
    assert_eq!(pod["k8s.pod.uid"], POD);
    assert_eq!(pod["container.runtime.name"], "cri-o");
    assert_eq!(v.get("container.memory.usage"), Some(&1024.0));
}

#[test]
fn cgroup_v1_hybrid_fixture_through_the_binary() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let c = |ctl: &str, file: &str| format!("sys/fs/cgroup/{ctl}/docker/{ID1}/{file}");
    write(r, &c("cpu,cpuacct", "cpuacct.usage"), "4000000000\n");
    write(r, &c("cpu,cpuacct", "cpuacct.usage_user"), "3000000000\n");
    write(r, &c("cpu,cpuacct", "cpuacct.usage_sys"), "1000000000\n");
    write(
        r,
        &c("cpu,cpuacct", "cpu.stat"),
        "nr_periods 20\nnr_throttled 5\nthrottled_time 1500000000\n",
    );
    write(r, &c("memory", "memory.usage_in_bytes"), "16777216\n");
    write(r, &c("memory", "memory.limit_in_bytes"), "268435456\n");
    write(
        r,
        &c("memory", "memory.stat"),
        "total_inactive_file 8388608\n",
    );
    write(
        r,
        &c("memory", "memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    write(
        r,
        &c("blkio", "blkio.io_service_bytes_recursive"),
        "8:0 Read 300\n8:0 Write 400\n8:0 Total 700\nTotal 700\n",
    );
    write(r, &c("pids", "pids.current"), "2\n");
    write(r, &c("pids", "pids.max"), "max\n");
    write(r, "sys/fs/cgroup/unified/cgroup.procs", "");
    let cg = r.join("sys/fs/cgroup");
    std::os::unix::fs::symlink("cpu,cpuacct", cg.join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", cg.join("cpuacct")).unwrap();

    let collector = Collector::start(&config(r.to_str().unwrap()), &[]);
    let (resource, v) = wait_latest(&collector, ID1, |_| true);
    assert_eq!(resource["container.runtime.name"], "docker");
    let expect = [
        ("container.cpu.time{cpu.mode=user}", 3.0),
        ("container.cpu.time{cpu.mode=system}", 1.0),
        ("container.cpu.throttling_data.periods", 20.0),
        ("container.cpu.throttling_data.throttled_periods", 5.0),
        ("container.cpu.throttling_data.throttled_time", 1.5),
        ("container.memory.usage", 16777216.0),
        ("container.memory.working_set", 8388608.0),
        ("container.memory.limit", 268435456.0),
        ("container.memory.oom_kills", 1.0),
        (
            "container.disk.io{disk.io.direction=read,system.device=8:0}",
            300.0,
        ),
        (
            "container.disk.io{disk.io.direction=write,system.device=8:0}",
            400.0,
        ),
        ("container.pids.count", 2.0),
    ];
    for (name, value) in expect {
        assert_eq!(v.get(name), Some(&value), "{name} in {v:?}");
    }
    assert!(!v.contains_key("container.pids.limit"), "`max` is no limit");
}

/// A cgroup made by the test on this machine, with a busy child process inside it; removed
/// (process killed first) whatever happens.
struct RealCgroup {
    dirs: Vec<PathBuf>,
    child: Option<Child>,
}

impl Drop for RealCgroup {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Children before parents; the kernel needs a moment to empty a cgroup after a kill.
        for dir in self.dirs.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn a_real_cgroup_on_this_machine() {
    let mount = Path::new("/sys/fs/cgroup");
    let id = format!("{:064x}", u128::from(std::process::id()) << 32 | 0x5111ce);
    let parent = format!("sluice-e2e-{}", std::process::id());
    let scope = format!("docker-{id}.scope");
    let v2_root = mount.join("cgroup.controllers").exists();
    // Where the cgroup goes: the unified root on a v2 host; each v1 controller plus the
    // `unified` hierarchy on a hybrid one.
    let hierarchies: Vec<PathBuf> = if v2_root {
        vec![mount.to_path_buf()]
    } else {
        // `cpu` and `cpuacct` are separate mounts on some hosts and links to one
        // `cpu,cpuacct` mount on others: each real hierarchy once.
        let mut seen = Vec::new();
        ["cpu", "cpuacct", "memory", "pids", "blkio", "unified"]
            .iter()
            .map(|h| mount.join(h))
            .filter(|p| p.is_dir())
            .filter(|p| {
                let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                let new = !seen.contains(&real);
                seen.push(real);
                new
            })
            .collect()
    };
    let mut cgroup = RealCgroup {
        dirs: Vec::new(),
        child: None,
    };
    for h in &hierarchies {
        let p = h.join(&parent);
        let c = p.join(&scope);
        if let Err(e) = std::fs::create_dir(&p).and_then(|_| std::fs::create_dir(&c)) {
            println!(
                "SKIPPED a_real_cgroup_on_this_machine: cannot create a cgroup under {} ({e}); \
                 run as root on a host with a writable cgroup mount",
                h.display()
            );
            return;
        }
        cgroup.dirs.push(p);
        cgroup.dirs.push(c);
    }
    if hierarchies.is_empty() {
        println!("SKIPPED a_real_cgroup_on_this_machine: no cgroup hierarchy at /sys/fs/cgroup");
        return;
    }
    let child = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    cgroup.child = Some(child);
    for h in &hierarchies {
        let procs = h.join(&parent).join(&scope).join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, &pid) {
            println!(
                "SKIPPED a_real_cgroup_on_this_machine: cannot move a process into {} ({e})",
                procs.display()
            );
            return;
        }
    }

    let collector = Collector::start(&config("/"), &[]);
    let (resource, v) = wait_latest(&collector, &id, |v| {
        v.get("container.cpu.time{cpu.mode=user}")
            .is_some_and(|&t| t > 0.0)
            && v.contains_key("container.cpu.usage")
    });
    assert_eq!(resource["container.runtime.name"], "docker");
    assert_eq!(v.get("container.pids.count"), Some(&1.0), "{v:?}");
    assert!(v.contains_key("container.memory.usage"), "{v:?}");
    assert!(v["container.cpu.usage"] > 0.0, "{v:?}");
    println!("real cgroup in {hierarchies:?} read as {v:?}");
    drop(cgroup);
}
