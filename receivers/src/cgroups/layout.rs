//! Which cgroup hierarchies a mount holds, and which of their cgroups are containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::CgroupVersion;

/// The v1 controllers whose files the reader knows.
pub(crate) const V1_CONTROLLERS: [&str; 5] = ["cpuacct", "cpu", "memory", "pids", "blkio"];

/// Deeper than any runtime nests containers (kubepods → qos → pod → container is four);
/// the bound keeps a pathological tree from costing a whole interval.
const MAX_DEPTH: usize = 16;

/// The hierarchies found under a cgroup mount.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Layout {
    /// v1 controller name → its hierarchy's root.
    pub v1: BTreeMap<&'static str, PathBuf>,
    /// The unified (v2) hierarchy: the mount itself on a v2 host, `unified/` on a hybrid one.
    pub v2: Option<PathBuf>,
}

impl Layout {
    pub(crate) fn detect(mount: &Path, version: CgroupVersion) -> Layout {
        let unified_root = mount.join("cgroup.controllers").is_file();
        let mut layout = Layout::default();
        if version != CgroupVersion::V2 && !unified_root {
            for controller in V1_CONTROLLERS {
                let dir = mount.join(controller);
                if dir.is_dir() {
                    layout.v1.insert(controller, dir);
                }
            }
        }
        if version != CgroupVersion::V1 {
            if unified_root {
                layout.v2 = Some(mount.to_path_buf());
            } else if mount.join("unified").join("cgroup.procs").is_file() {
                layout.v2 = Some(mount.join("unified"));
            }
        }
        layout
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v1.is_empty() && self.v2.is_none()
    }
}

/// What a cgroup's path says about the container in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Identity {
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman`; unknown for kubelet's cgroupfs layout, which
    /// names the container by id alone.
    pub runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
}

/// A container's cgroup directories, one per hierarchy it appears in.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Found {
    pub v1: BTreeMap<&'static str, PathBuf>,
    pub v2: Option<PathBuf>,
}

/// Every container cgroup of the layout, keyed by identity.
pub(crate) fn discover(layout: &Layout) -> BTreeMap<Identity, Found> {
    let mut found: BTreeMap<Identity, Found> = BTreeMap::new();
    for (controller, root) in &layout.v1 {
        walk(root, &mut Vec::new(), &mut |identity, dir| {
            found
                .entry(identity)
                .or_default()
                .v1
                .insert(controller, dir);
        });
    }
    if let Some(root) = &layout.v2 {
        walk(root, &mut Vec::new(), &mut |identity, dir| {
            found.entry(identity).or_default().v2 = Some(dir);
        });
    }
    found
}

fn walk(dir: &Path, ancestors: &mut Vec<String>, found: &mut dyn FnMut(Identity, PathBuf)) {
    if ancestors.len() >= MAX_DEPTH {
        return;
    }
    // A cgroup can vanish between listing and reading: that is the normal end of a
    // container, not an error.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // `file_type` does not follow symlinks, so `cpu -> cpu,cpuacct` links are not walked
        // twice and a link loop cannot trap the walk.
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = entry.path();
        if let Some(identity) = classify(&name, ancestors) {
            // Whatever a container nests inside its cgroup (systemd in a container, `init`
            // leaves) is part of that container.
            found(identity, path);
            continue;
        }
        ancestors.push(name);
        walk(&path, ancestors, found);
        ancestors.pop();
    }
}

/// Recognises a container cgroup by its directory name and the directories above it.
pub(crate) fn classify(name: &str, ancestors: &[String]) -> Option<Identity> {
    let pod_uid = ancestors.iter().rev().find_map(|a| pod_uid(a));
    let scoped = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".scope"))
            .filter(|id| is_container_id(id))
            .map(str::to_string)
    };
    let systemd = [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ];
    for (prefix, runtime) in systemd {
        if let Some(id) = scoped(prefix) {
            return Some(Identity {
                id,
                runtime: Some(runtime),
                pod_uid,
            });
        }
    }
    if !is_container_id(name) {
        return None;
    }
    // cgroupfs drivers name the directory by the bare id, under a runtime's or a pod's
    // directory; a bare id elsewhere is not assumed to be a container.
    let parent = ancestors.last().map(String::as_str);
    let runtime = match parent {
        Some("docker") => Some("docker"),
        Some("libpod_parent") => Some("podman"),
        _ if pod_uid.is_some() => None,
        _ => return None,
    };
    Some(Identity {
        id: name.to_string(),
        runtime,
        pod_uid,
    })
}

/// `kubepods-burstable-pod<uid>.slice` (systemd driver, `-` in the uid written `_`) or
/// `pod<uid>` under `kubepods` (cgroupfs driver).
fn pod_uid(component: &str) -> Option<String> {
    if let Some(slice) = component.strip_suffix(".slice")
        && slice.starts_with("kubepods")
    {
        let (_, uid) = slice.rsplit_once("-pod")?;
        let uid = uid.replace('_', "-");
        return is_uid(&uid).then_some(uid);
    }
    let uid = component.strip_prefix("pod")?;
    is_uid(uid).then(|| uid.to_string())
}

fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

pub(crate) fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
