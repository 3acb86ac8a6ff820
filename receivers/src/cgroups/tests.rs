use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric, number_data_point};

use super::layout::{Identity, Layout, classify, discover};
use super::read::{parse_blkio, parse_io_stat};
use super::*;

const ID1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const ID2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const POD: &str = "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab";

/// A directory tree under the system temp dir, removed on drop.
pub(crate) struct Tree(PathBuf);

impl Tree {
    pub(crate) fn new(tag: &str) -> Tree {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-cgroups-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }
    pub(crate) fn file(&self, rel: &str, text: &str) -> &Self {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ids(layout: &Layout) -> Vec<Identity> {
    discover(layout).into_keys().collect()
}

fn anc(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[test]
fn container_cgroups_are_recognised_by_name() {
    let docker = classify(&format!("docker-{ID1}.scope"), &anc(&["system.slice"])).unwrap();
    assert_eq!((docker.id.as_str(), docker.runtime), (ID1, Some("docker")));
    let cfs = classify(ID1, &anc(&["docker"])).unwrap();
    assert_eq!(cfs.runtime, Some("docker"));
    let pod_slice = format!("kubepods-burstable-pod{}.slice", POD.replace('-', "_"));
    let cri = classify(
        &format!("cri-containerd-{ID2}.scope"),
        &anc(&["kubepods.slice", "kubepods-burstable.slice", &pod_slice]),
    )
    .unwrap();
    assert_eq!(cri.runtime, Some("containerd"));
    assert_eq!(cri.pod_uid.as_deref(), Some(POD));
    let crio = classify(&format!("crio-{ID2}.scope"), &anc(&["kubepods.slice"])).unwrap();
    assert_eq!(crio.runtime, Some("cri-o"));
    let kubelet_cgroupfs =
        classify(ID2, &anc(&["kubepods", "besteffort", &format!("pod{POD}")])).unwrap();
    assert_eq!(kubelet_cgroupfs.runtime, None);
    assert_eq!(kubelet_cgroupfs.pod_uid.as_deref(), Some(POD));
    // Not containers: conmon, a bare id outside any runtime's directory, short ids, services.
    assert!(classify(&format!("crio-conmon-{ID2}.scope"), &[]).is_none());
    assert!(classify(ID1, &anc(&["user.slice"])).is_none());
    assert!(classify("docker-1234.scope", &[]).is_none());
    assert!(classify("docker.service", &anc(&["system.slice"])).is_none());
}

#[test]
fn parsers_read_the_kernel_formats() {
    let io = parse_io_stat(
        "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=5 wbytes=0\n",
    );
    assert_eq!(io.get("8:0"), Some(&(100, 200)));
    assert_eq!(io.get("259:0"), Some(&(5, 0)));
    let blkio = parse_blkio(
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Total 12288\nTotal 12288\n",
    );
    assert_eq!(blkio.len(), 1);
    assert_eq!(blkio.get("8:0"), Some(&(4096, 8192)));
}

/// A v2 host: systemd-driver docker container plus a containerd container in a pod.
pub(crate) fn v2_fixture() -> Tree {
    let t = Tree::new("v2");
    let pod_slice = format!("kubepods-burstable-pod{}.slice", POD.replace('-', "_"));
    let d = format!("system.slice/docker-{ID1}.scope");
    let k =
        format!("kubepods.slice/kubepods-burstable.slice/{pod_slice}/cri-containerd-{ID2}.scope");
    t.file("sys/fs/cgroup/cgroup.controllers", "cpu memory io pids\n")
        .file("sys/fs/cgroup/cgroup.procs", "")
        .file("sys/fs/cgroup/system.slice/cgroup.procs", "")
        .file("sys/fs/cgroup/system.slice/ssh.service/cpu.stat", "usage_usec 1\n")
        .file(
            &format!("sys/fs/cgroup/{d}/cpu.stat"),
            "usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\nnr_periods 40\nnr_throttled 4\nthrottled_usec 250000\n",
        )
        .file(&format!("sys/fs/cgroup/{d}/memory.current"), "10485760\n")
        .file(&format!("sys/fs/cgroup/{d}/memory.max"), "67108864\n")
        .file(
            &format!("sys/fs/cgroup/{d}/memory.stat"),
            "anon 4096\nfile 8192\ninactive_file 2097152\nactive_file 0\n",
        )
        .file(
            &format!("sys/fs/cgroup/{d}/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n",
        )
        .file(
            &format!("sys/fs/cgroup/{d}/io.stat"),
            "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n",
        )
        .file(&format!("sys/fs/cgroup/{d}/pids.current"), "7\n")
        .file(&format!("sys/fs/cgroup/{d}/pids.max"), "max\n")
        .file(&format!("sys/fs/cgroup/{k}/cpu.stat"), "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n")
        .file(&format!("sys/fs/cgroup/{k}/memory.current"), "4096\n")
        .file(&format!("sys/fs/cgroup/{k}/memory.max"), "max\n");
    t
}

/// A hybrid v1 host (this machine's kind): cgroupfs-driver docker under each controller,
/// `cpu` and `cpuacct` as links to `cpu,cpuacct`, plus an empty `unified` v2 hierarchy.
pub(crate) fn v1_fixture() -> Tree {
    let t = Tree::new("v1");
    let c = |ctl: &str, file: &str| format!("sys/fs/cgroup/{ctl}/docker/{ID1}/{file}");
    t.file(&c("cpu,cpuacct", "cpuacct.usage"), "3000000000\n")
        .file(&c("cpu,cpuacct", "cpuacct.usage_user"), "2000000000\n")
        .file(&c("cpu,cpuacct", "cpuacct.usage_sys"), "1000000000\n")
        .file(&c("cpu,cpuacct", "cpuacct.stat"), "user 150\nsystem 50\n")
        .file(
            &c("cpu,cpuacct", "cpu.stat"),
            "nr_periods 10\nnr_throttled 2\nthrottled_time 500000000\n",
        )
        .file(&c("memory", "memory.usage_in_bytes"), "20971520\n")
        .file(
            &c("memory", "memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .file(
            &c("memory", "memory.stat"),
            "cache 100\ninactive_file 1\ntotal_inactive_file 1048576\n",
        )
        .file(
            &c("memory", "memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .file(&c("blkio", "blkio.io_service_bytes_recursive"), "Total 0\n")
        .file(
            &c("blkio", "blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
        )
        .file(&c("pids", "pids.current"), "3\n")
        .file(&c("pids", "pids.max"), "100\n")
        .file("sys/fs/cgroup/unified/cgroup.procs", "")
        .file(
            "sys/fs/cgroup/memory/user.slice/memory.usage_in_bytes",
            "1\n",
        );
    let root = t.path().join("sys/fs/cgroup");
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).unwrap();
    t
}

/// `name` → every point as (attributes, value), attributes as `k=v` strings.
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

fn resource_attr(r: &ResourceMetrics, key: &str) -> Option<String> {
    r.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn by_id<'a>(rs: &'a [ResourceMetrics], id: &str) -> &'a ResourceMetrics {
    rs.iter()
        .find(|r| resource_attr(r, "container.id").as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no resource for {id}"))
}

#[test]
fn v2_fixture_reports_exact_values() {
    let t = v2_fixture();
    let mount = t.path().join("sys/fs/cgroup");
    let layout = Layout::detect(&mount, CgroupVersion::Auto);
    assert!(layout.v1.is_empty());
    assert_eq!(ids(&layout).len(), 2);
    let mut c = Collector::new(mount, CgroupVersion::Auto);
    let rs = c.collect_at(1000, Instant::now());
    assert_eq!(rs.len(), 2);
    let d = by_id(&rs, ID1);
    assert_eq!(
        resource_attr(d, "container.runtime.name").as_deref(),
        Some("docker")
    );
    assert_eq!(
        value(d, "container.cpu.time", &["cpu.mode=user"]),
        Some(2.5)
    );
    assert_eq!(
        value(d, "container.cpu.time", &["cpu.mode=system"]),
        Some(1.0)
    );
    assert_eq!(
        value(d, "container.cpu.throttling_data.periods", &[]),
        Some(40.0)
    );
    assert_eq!(
        value(d, "container.cpu.throttling_data.throttled_periods", &[]),
        Some(4.0)
    );
    assert_eq!(
        value(d, "container.cpu.throttling_data.throttled_time", &[]),
        Some(0.25)
    );
    assert_eq!(value(d, "container.memory.usage", &[]), Some(10485760.0));
    assert_eq!(
        value(d, "container.memory.working_set", &[]),
        Some(8388608.0)
    );
    assert_eq!(value(d, "container.memory.limit", &[]), Some(67108864.0));
    assert_eq!(value(d, "container.memory.oom_kills", &[]), Some(1.0));
    assert_eq!(
        value(
            d,
            "container.disk.io",
            &["disk.io.direction=read", "system.device=8:0"]
        ),
        Some(1024.0)
    );
    assert_eq!(
        value(
            d,
            "container.disk.io",
            &["disk.io.direction=write", "system.device=8:0"]
        ),
        Some(2048.0)
    );
    assert_eq!(value(d, "container.pids.count", &[]), Some(7.0));
    assert_eq!(
        value(d, "container.pids.limit", &[]),
        None,
        "`max` is no limit"
    );
    assert_eq!(
        value(d, "container.cpu.usage", &[]),
        None,
        "no rate before a second look"
    );
    let k = by_id(&rs, ID2);
    assert_eq!(resource_attr(k, "k8s.pod.uid").as_deref(), Some(POD));
    assert_eq!(
        resource_attr(k, "container.runtime.name").as_deref(),
        Some("containerd")
    );
    assert_eq!(value(k, "container.memory.limit", &[]), None);
}

#[test]
fn cpu_usage_is_the_rate_between_collections() {
    let t = v2_fixture();
    let mount = t.path().join("sys/fs/cgroup");
    let mut c = Collector::new(mount, CgroupVersion::Auto);
    let t0 = Instant::now();
    c.collect_at(1000, t0);
    t.file(
        &format!("sys/fs/cgroup/system.slice/docker-{ID1}.scope/cpu.stat"),
        "usage_usec 5500000\nuser_usec 3500000\nsystem_usec 2000000\n",
    );
    let rs = c.collect_at(2000, t0 + Duration::from_secs(4));
    let d = by_id(&rs, ID1);
    assert_eq!(value(d, "container.cpu.usage", &[]), Some(0.5));
    // Cumulative series keep the start they had when the container was first seen.
    let sum = d.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "container.cpu.time")
        .unwrap();
    let metric::Data::Sum(s) = sum.data.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 1000);
}

#[test]
fn v1_hybrid_fixture_reports_exact_values() {
    let t = v1_fixture();
    let mount = t.path().join("sys/fs/cgroup");
    let layout = Layout::detect(&mount, CgroupVersion::Auto);
    assert!(layout.v2.is_some(), "the unified hierarchy is seen");
    assert_eq!(
        layout.v1.keys().copied().collect::<Vec<_>>(),
        vec!["blkio", "cpu", "cpuacct", "memory", "pids"]
    );
    let mut c = Collector::new(mount, CgroupVersion::Auto);
    let rs = c.collect_at(1000, Instant::now());
    assert_eq!(rs.len(), 1, "only the container; user.slice is not one");
    let d = &rs[0];
    assert_eq!(resource_attr(d, "container.id").as_deref(), Some(ID1));
    assert_eq!(
        resource_attr(d, "container.runtime.name").as_deref(),
        Some("docker")
    );
    assert_eq!(
        value(d, "container.cpu.time", &["cpu.mode=user"]),
        Some(2.0)
    );
    assert_eq!(
        value(d, "container.cpu.time", &["cpu.mode=system"]),
        Some(1.0)
    );
    assert_eq!(
        value(d, "container.cpu.throttling_data.periods", &[]),
        Some(10.0)
    );
    assert_eq!(
        value(d, "container.cpu.throttling_data.throttled_periods", &[]),
        Some(2.0)
    );
    assert_eq!(
        value(d, "container.cpu.throttling_data.throttled_time", &[]),
        Some(0.5)
    );
    assert_eq!(value(d, "container.memory.usage", &[]), Some(20971520.0));
    assert_eq!(
        value(d, "container.memory.working_set", &[]),
        Some(19922944.0)
    );
    assert_eq!(
        value(d, "container.memory.limit", &[]),
        None,
        "the v1 'unlimited' value"
    );
    assert_eq!(value(d, "container.memory.oom_kills", &[]), Some(2.0));
    assert_eq!(
        value(
            d,
            "container.disk.io",
            &["disk.io.direction=read", "system.device=8:0"]
        ),
        Some(4096.0)
    );
    assert_eq!(
        value(
            d,
            "container.disk.io",
            &["disk.io.direction=write", "system.device=8:0"]
        ),
        Some(8192.0)
    );
    assert_eq!(value(d, "container.pids.count", &[]), Some(3.0));
    assert_eq!(value(d, "container.pids.limit", &[]), Some(100.0));
}

#[test]
fn v1_without_split_usage_falls_back_to_ticks() {
    let t = Tree::new("ticks");
    t.file(
        &format!("cg/cpuacct/docker/{ID1}/cpuacct.stat"),
        "user 150\nsystem 50\n",
    );
    let mut c = Collector::new(t.path().join("cg"), CgroupVersion::V1);
    let rs = c.collect_at(1, Instant::now());
    assert_eq!(
        value(&rs[0], "container.cpu.time", &["cpu.mode=user"]),
        Some(1.5)
    );
    assert_eq!(
        value(&rs[0], "container.cpu.time", &["cpu.mode=system"]),
        Some(0.5)
    );
}

#[test]
fn a_missing_mount_reports_nothing() {
    let mut c = Collector::new(
        PathBuf::from("/nonexistent/sluice/cgroup"),
        CgroupVersion::Auto,
    );
    assert!(c.collect().is_empty());
}

#[test]
fn config_errors_name_the_key() {
    let node =
        sluice_config::parse_yaml("t.yaml", "collection_interval: 0s\ncgroup_path: relative\n")
            .unwrap();
    let component = ComponentConfig {
        id: "cgroups".parse().unwrap(),
        kind: sluice_config::ComponentKind::Receiver,
        pos: sluice_config::Pos::new("t.yaml", 1, 1),
        path: "receivers.cgroups".into(),
        node,
    };
    let Err(e) = CgroupsReceiverFactory.build(
        &component,
        ReceiverOutputs::default(),
        &BuildContext::default(),
    ) else {
        panic!("accepted a bad config")
    };
    let text = e.to_string();
    assert!(
        text.contains("receivers.cgroups.collection_interval"),
        "{text}"
    );
    assert!(text.contains("receivers.cgroups.cgroup_path"), "{text}");
}
