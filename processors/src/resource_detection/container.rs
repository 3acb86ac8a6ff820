//! `docker` (alias `container`): the id of the container the collector runs in, from its
//! cgroup, or from its mounts when a private cgroup namespace hides the cgroup path.

use super::detection::{DetectResult, Found};
use super::host::Host;

/// Markers that precede a 64-hex container id, with the runtime each one names. Checked in
/// this order, so the more specific marker wins where two could match.
const MARKERS: &[(&str, Option<&str>)] = &[
    ("cri-containerd-", Some("containerd")),
    ("cri-containerd:", Some("containerd")),
    ("crio-", Some("cri-o")),
    ("libpod-", Some("podman")),
    ("docker-", Some("docker")),
    ("/docker/", Some("docker")),
];

/// Mount markers, for the mountinfo fallback: Docker bind-mounts `/etc/hostname`,
/// `/etc/hosts` and `/etc/resolv.conf` from `.../docker/containers/<id>/`. Sandbox (pod)
/// directories are deliberately not markers: they name the pod's pause container.
const MOUNT_MARKERS: &[(&str, Option<&str>)] = &[
    ("/docker/containers/", Some("docker")),
    ("/containers/", None),
];

#[derive(Debug, PartialEq, Eq)]
pub struct ContainerId {
    pub id: String,
    pub runtime: Option<&'static str>,
}

pub fn detect(host: &Host) -> DetectResult {
    let mut found = Found::default();
    let from_cgroup = host
        .read("/proc/self/cgroup")?
        .and_then(|text| from_cgroup(&text));
    let container = match from_cgroup {
        Some(c) => Some(c),
        None => host
            .read("/proc/self/mountinfo")?
            .and_then(|text| from_mountinfo(&text)),
    };
    if let Some(c) = container {
        found.string("container.id", c.id);
        if let Some(runtime) = c.runtime {
            found.string("container.runtime.name", runtime);
        }
    }
    Ok(found)
}

/// `/proc/self/cgroup`: `hierarchy:controllers:path` lines (cgroup v1), or the single
/// `0::path` line of cgroup v2.
pub fn from_cgroup(text: &str) -> Option<ContainerId> {
    text.lines().find_map(|line| {
        // The path may itself contain ':' (`...slice:cri-containerd:<id>`).
        let path = line.splitn(3, ':').nth(2)?;
        marked_id(path, MARKERS).or_else(|| last_segment_id(path))
    })
}

/// `/proc/self/mountinfo`, for a private cgroup namespace where the cgroup path is just `/`.
pub fn from_mountinfo(text: &str) -> Option<ContainerId> {
    text.lines()
        .find_map(|line| mount_id(line).or_else(|| marked_id(line, MARKERS)))
}

fn mount_id(line: &str) -> Option<ContainerId> {
    for (marker, runtime) in MOUNT_MARKERS {
        for (at, _) in line.match_indices(marker) {
            let rest = &line[at + marker.len()..];
            if let Some(id) = hex64(rest)
                && rest[64..].starts_with('/')
            {
                return Some(ContainerId {
                    id: id.to_string(),
                    runtime: *runtime,
                });
            }
        }
    }
    None
}

fn marked_id(text: &str, markers: &[(&str, Option<&'static str>)]) -> Option<ContainerId> {
    for (marker, runtime) in markers {
        for (at, _) in text.match_indices(marker) {
            if let Some(id) = hex64(&text[at + marker.len()..]) {
                return Some(ContainerId {
                    id: id.to_string(),
                    runtime: *runtime,
                });
            }
        }
    }
    None
}

/// Kubernetes with the cgroupfs driver (`/kubepods/<qos>/pod<uid>/<id>`) and ECS
/// (`/ecs/<task>/<id>`) name the container by its bare id as the last path segment.
fn last_segment_id(path: &str) -> Option<ContainerId> {
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    let last = last.strip_suffix(".scope").unwrap_or(last);
    (last.len() == 64 && hex64(last).is_some()).then(|| ContainerId {
        id: last.to_string(),
        runtime: None,
    })
}

/// The 64 lowercase hex digits `text` starts with, when exactly 64 follow.
fn hex64(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if bytes.len() < 64 || !bytes[..64].iter().all(is_hex) {
        return None;
    }
    if bytes.get(64).is_some_and(is_hex) {
        return None;
    }
    // All 64 bytes are ASCII, so 64 is a character boundary.
    text.get(..64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::{FakeNames, Fixture, host_in};

    const ID: &str = "3c5bd0d4e9bc2f7a1d6b3f0e9c8a7b6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

    fn cgroup(text: &str) -> Option<ContainerId> {
        from_cgroup(text)
    }

    fn id(runtime: Option<&'static str>) -> Option<ContainerId> {
        Some(ContainerId {
            id: ID.into(),
            runtime,
        })
    }

    #[test]
    fn cgroup_v1_forms() {
        let docker = format!("12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n");
        assert_eq!(cgroup(&docker), id(Some("docker")));
        let kube_cgroupfs =
            format!("4:pids:/kubepods/besteffort/pod5b5d47d4-0a8b-4b8e-9a1f-2a1f1b1c1d1e/{ID}\n");
        assert_eq!(cgroup(&kube_cgroupfs), id(None));
        let ecs = format!("9:perf_event:/ecs/55091c13-b8cf-4801-b527-f4601742204d/{ID}\n");
        assert_eq!(cgroup(&ecs), id(None));
        let systemd_docker = format!("1:name=systemd:/system.slice/docker-{ID}.scope\n");
        assert_eq!(cgroup(&systemd_docker), id(Some("docker")));
    }

    #[test]
    fn cgroup_v2_forms() {
        let containerd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(cgroup(&containerd), id(Some("containerd")));
        let colon = format!("0::/kubepods-besteffort-pod1234.slice:cri-containerd:{ID}\n");
        assert_eq!(cgroup(&colon), id(Some("containerd")));
        let crio = format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope\n");
        assert_eq!(cgroup(&crio), id(Some("cri-o")));
        let podman = format!("0::/machine.slice/libpod-{ID}.scope/container\n");
        assert_eq!(cgroup(&podman), id(Some("podman")));
        let docker = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(cgroup(&docker), id(Some("docker")));
    }

    #[test]
    fn ignores_paths_without_a_container_id() {
        assert_eq!(cgroup("0::/\n"), None);
        assert_eq!(
            cgroup("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
        // 63 and 65 hex digits are not ids; upper case is not how runtimes write them.
        assert_eq!(cgroup(&format!("0::/docker/{}\n", &ID[..63])), None);
        assert_eq!(cgroup(&format!("0::/docker/{ID}f\n")), None);
        assert_eq!(cgroup(&format!("0::/x/{}\n", ID.to_uppercase())), None);
        assert_eq!(cgroup("garbage without colons\n\n:::\n"), None);
    }

    #[test]
    fn mountinfo_fallback_forms() {
        let docker = format!(
            "1 0 0:1 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/{ID}/diff\n\
             734 728 254:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(from_mountinfo(&docker), id(Some("docker")));
        let other = format!(
            "734 728 254:1 /data/containers/{ID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(from_mountinfo(&other), id(None));
        let containerd = format!(
            "900 800 0:27 /kubepods-pod1.slice:cri-containerd:{ID} /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
        );
        assert_eq!(from_mountinfo(&containerd), id(Some("containerd")));
        let crio =
            format!("900 800 0:27 /crio-{ID}.scope /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
        assert_eq!(from_mountinfo(&crio), id(Some("cri-o")));
        // A pod sandbox directory names the pause container, not ours.
        let sandbox = format!(
            "700 600 254:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{ID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(from_mountinfo(&sandbox), None);
    }

    #[test]
    fn detects_from_cgroup_first_then_mountinfo_under_the_root() {
        let other = ID.replace('3', "4");
        let fx = Fixture::new()
            .file(
                "/proc/self/cgroup",
                &format!("0::/system.slice/docker-{ID}.scope\n"),
            )
            .file(
                "/proc/self/mountinfo",
                &format!(
                    "1 0 0:1 /var/lib/docker/containers/{other}/hosts /etc/hosts rw - ext4 x rw\n"
                ),
            );
        let found = detect(&host_in(&fx, FakeNames::none())).unwrap();
        assert_eq!(found.get_str("container.id"), Some(ID));
        assert_eq!(found.get_str("container.runtime.name"), Some("docker"));

        // Private cgroup namespace: cgroup says `/`, the mounts tell.
        let fx = Fixture::new().file("/proc/self/cgroup", "0::/\n").file(
            "/proc/self/mountinfo",
            &format!(
                "1 0 0:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4 x rw\n"
            ),
        );
        let found = detect(&host_in(&fx, FakeNames::none())).unwrap();
        assert_eq!(found.get_str("container.id"), Some(ID));
    }

    #[test]
    fn finds_nothing_outside_a_container_or_without_proc() {
        let fx = Fixture::new()
            .file(
                "/proc/self/cgroup",
                "0::/user.slice/user-1000.slice/session-1.scope\n",
            )
            .file(
                "/proc/self/mountinfo",
                "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n",
            );
        assert!(detect(&host_in(&fx, FakeNames::none())).unwrap().is_empty());
        assert!(
            detect(&host_in(&Fixture::new(), FakeNames::none()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_unreadable_cgroup_file_is_an_error() {
        let fx = Fixture::new().dir("/proc/self/cgroup");
        let err = detect(&host_in(&fx, FakeNames::none())).unwrap_err();
        assert!(err.contains("cgroup"), "{err}");
    }
}
