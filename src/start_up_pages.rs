//! Releasing the pages of code and constants that only start-up used, as the Linux kernel
//! frees its `__init` memory once it has booted.
//!
//! Reading the configuration, building the pipelines and starting listeners runs about
//! 1.7 MiB of machine code (serde, YAML, component factories) that never runs again, and the
//! kernel maps code around every page that faults (64 KiB, or a whole large folio), so those
//! pages stay in the process's resident set for good. Once every component has started,
//! [`release`] unmaps the read-only pages of the executable; the ones still needed come back
//! from the page cache on their next use, without a disk read, as the cache still holds them.
//! Release builds lay idle and traffic code out apart from start-up-only code (`build.rs`), so
//! what comes back sits together.
//!
//! Only mappings of the executable that cannot be written and hold no private page are
//! released: their contents are exactly the file's, so dropping them loses nothing. A
//! mapping the loader relocated (`.data.rel.ro`, the GOT) holds private pages and is left
//! alone, as is anything writable.

use std::io;

/// Called once every component has started: releases, and logs what it did at debug level
/// (a failure only costs memory).
pub fn release_after_start() {
    match release() {
        Ok(bytes) => tracing::debug!(bytes, "released the start-up pages of the executable"),
        Err(e) => tracing::debug!(error = %e, "cannot release the start-up pages"),
    }
}

/// Releases the executable's read-only pages; returns how many bytes of mappings it asked
/// the kernel to drop.
#[cfg(target_os = "linux")]
pub fn release() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in releasable(&smaps, &exe) {
        // SAFETY: the range is one whole mapping of this process, file-backed, read-only
        // and without private pages (checked from smaps just now; nothing in the process
        // writes to its executable's read-only mappings). MADV_DONTNEED on such a mapping
        // only unmaps pages that the next access maps again from the file.
        let rc = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        released += mapping.end - mapping.start;
    }
    Ok(released)
}

#[cfg(not(target_os = "linux"))]
pub fn release() -> io::Result<usize> {
    Ok(0)
}

#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
}

/// The mappings in `smaps` of the file `path` that are not writable and hold no private
/// (copied-on-write) page.
fn releasable(smaps: &str, path: &str) -> Vec<Mapping> {
    let mut found = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    for line in smaps.lines() {
        if let Some((range, rest)) = mapping_header(line) {
            if let Some((mapping, true)) = current.take() {
                found.push(mapping);
            }
            // "perms offset device inode path": only the path has a slash, and it may hold
            // spaces.
            let writable = rest.as_bytes().get(1) != Some(&b'-');
            let file = rest.find('/').map(|at| rest[at..].trim_end());
            let candidate = file == Some(path) && !writable;
            current = Some((range, candidate));
        } else if let Some(kib) = private_kib(line)
            && kib > 0
            && let Some((_, candidate)) = current.as_mut()
        {
            *candidate = false;
        }
    }
    if let Some((mapping, true)) = current {
        found.push(mapping);
    }
    found
}

/// `start-end rest` of a mapping's first line in smaps, or `None` for a field line.
fn mapping_header(line: &str) -> Option<(Mapping, &str)> {
    let (range, rest) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (start < end).then_some((Mapping { start, end }, rest))
}

/// The kibibytes of a field that counts a mapping's private copies of pages: copied on
/// write (`Anonymous`), or such copies swapped out. (`Private_Dirty` is no such field: it
/// also counts file pages not yet written back, e.g. of a binary just copied.)
fn private_kib(line: &str) -> Option<u64> {
    let (name, value) = line.split_once(':')?;
    if !matches!(name, "Anonymous" | "Swap") {
        return None;
    }
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00200000-00631000 r--p 00000000 fe:01 123 /opt/sluice/bin/sluice
Rss:                1024 kB
Private_Dirty:       512 kB
Anonymous:             0 kB
Swap:                  0 kB
00631000-017ec000 r-xp 00430000 fe:01 123 /opt/sluice/bin/sluice
Rss:                2028 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
017ec000-018f4000 r--p 015ea000 fe:01 123 /opt/sluice/bin/sluice
Rss:                 328 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
Swap:                  0 kB
018f4000-01901000 rw-p 016f1000 fe:01 123 /opt/sluice/bin/sluice
Rss:                  52 kB
Anonymous:             0 kB
01901000-01915000 rw-p 00000000 00:00 0
Anonymous:            24 kB
7f43cdc0f000-7f43cdd65000 r-xp 00028000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f5000000000-7f5000001000 r--p 00000000 fe:01 789 /opt/sluice/bin/sluice data
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        assert_eq!(
            releasable(SMAPS, "/opt/sluice/bin/sluice"),
            vec![
                Mapping {
                    start: 0x200000,
                    end: 0x631000
                },
                Mapping {
                    start: 0x631000,
                    end: 0x17ec000
                },
            ]
        );
    }

    #[test]
    fn a_path_with_spaces_is_matched_whole() {
        assert_eq!(
            releasable(SMAPS, "/opt/sluice/bin/sluice data"),
            vec![Mapping {
                start: 0x7f5000000000,
                end: 0x7f5000001000
            }]
        );
    }

    #[test]
    fn the_running_test_binary_releases_its_pages_and_keeps_running() {
        let released = release().expect("smaps is readable");
        assert!(released > 0);
        // Code and constants come back on use.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
