//! What the memory limiter measures: the process's resident memory and the memory available
//! to it (the cgroup limit, else physical memory), read from /proc and /sys (Linux).

use std::path::{Path, PathBuf};

/// Limits at or above this mean "none" (cgroup v1 reports an unlimited group as a huge
/// page-rounded number).
const UNLIMITED: u64 = 1 << 60;

/// Resident set size of this process in bytes.
pub fn process_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// The memory this process may use: its cgroup's limit when one is set and smaller than
/// physical memory, else physical memory.
pub fn available_memory() -> Option<u64> {
    let physical = physical_memory(&std::fs::read_to_string("/proc/meminfo").ok()?);
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_limit(&text, Path::new("/sys/fs/cgroup")));
    match (cgroup, physical) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn physical_memory(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The smallest memory limit on the way from the process's cgroup up to the root, given the
/// text of /proc/self/cgroup and where the cgroup filesystem is mounted. cgroup v2
/// (`memory.max`) is preferred; v1 (`memory.limit_in_bytes` of the memory controller) else.
/// Inside a container the group's path is often not visible under the mount; then the
/// mount's own root file (the container's limit) is read.
fn cgroup_limit(proc_cgroup: &str, mount: &Path) -> Option<u64> {
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            if let Some(limit) = smallest_on_path(mount, path, "memory.max") {
                return Some(limit);
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            return smallest_on_path(&mount.join("memory"), path, "memory.limit_in_bytes");
        }
    }
    None
}

fn smallest_on_path(root: &Path, group: &str, file: &str) -> Option<u64> {
    let mut dir: PathBuf = root.join(group.trim_start_matches('/'));
    if !dir.is_dir() {
        dir = root.to_path_buf();
    }
    let mut smallest: Option<u64> = None;
    loop {
        let value = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v < UNLIMITED);
        if let Some(v) = value {
            smallest = Some(smallest.map_or(v, |s| s.min(v)));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return smallest;
        }
    }
}

/// How the process's global allocator gives freed memory back, registered by the binary
/// (this crate does not know which allocator it links).
static GLOBAL_ALLOCATOR_RELEASE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Registers the global allocator's "return freed memory to the system" call, which the
/// limiter makes above the soft limit. The first registration wins.
pub fn set_global_allocator_release(release: fn()) {
    let _ = GLOBAL_ALLOCATOR_RELEASE.set(release);
}

/// Asks the allocators to give freed memory back to the system: the global one (registered
/// with [`set_global_allocator_release`]) and glibc's, which C libraries use; both keep freed
/// memory otherwise, and resident memory would stay above the soft limit long after the load
/// is gone.
pub fn return_free_memory() {
    if let Some(release) = GLOBAL_ALLOCATOR_RELEASE.get() {
        release();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static RELEASED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn returning_free_memory_calls_the_registered_global_allocator() {
        set_global_allocator_release(|| {
            RELEASED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let before = RELEASED.load(std::sync::atomic::Ordering::SeqCst);
        return_free_memory();
        // Other tests may call it too, concurrently: at least this call counted.
        assert!(RELEASED.load(std::sync::atomic::Ordering::SeqCst) > before);
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_v2_takes_the_smallest_limit_up_the_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("memory.max"), "max\n");
        write(&r.join("kubepods/memory.max"), "1073741824\n");
        write(&r.join("kubepods/pod1/memory.max"), "max\n");
        write(&r.join("kubepods/pod1/app/memory.max"), "2147483648\n");
        let text = "0::/kubepods/pod1/app\n";
        assert_eq!(cgroup_limit(text, r), Some(1 << 30));
        // No limit anywhere: none.
        write(&r.join("kubepods/memory.max"), "max\n");
        write(&r.join("kubepods/pod1/app/memory.max"), "max\n");
        assert_eq!(cgroup_limit(text, r), None);
        // The group is not visible (a container's namespace): the mount's own file.
        write(&r.join("memory.max"), "536870912\n");
        assert_eq!(cgroup_limit("0::/elsewhere\n", r), Some(512 << 20));
    }

    #[test]
    fn cgroup_v1_reads_the_memory_controller() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            &r.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            &r.join("memory/docker/abc/memory.limit_in_bytes"),
            "268435456\n",
        );
        let text = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(cgroup_limit(text, r), Some(256 << 20));
        let unlimited = "4:memory:/\n";
        assert_eq!(cgroup_limit(unlimited, r), None);
    }

    #[test]
    fn physical_memory_and_rss_are_read() {
        assert_eq!(
            physical_memory("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16384 * 1024)
        );
        assert!(process_rss().unwrap() > 0);
        assert!(available_memory().unwrap() > 0);
    }
}
