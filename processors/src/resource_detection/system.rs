//! `system`: the machine itself — `host.name`, `host.id`, `host.arch`, `os.type`,
//! `os.description`.

use std::time::Duration;

use super::config::{HostnameSource, SystemConfig};
use super::detection::{DetectResult, Found};
use super::host::Host;

pub fn detect(host: &Host, cfg: &SystemConfig, timeout: Duration) -> DetectResult {
    let mut found = Found::default();
    // Half the detection timeout leaves time to fall back to the next source when the
    // resolver is slow, instead of losing every system attribute to the timeout.
    if let Some(name) = hostname(host, &cfg.hostname_sources, timeout / 2)? {
        found.string("host.name", name);
    }
    // The other attributes are independent of each other: one unreadable file costs only
    // its own attribute.
    match machine_id(host) {
        Ok(Some(id)) => found.string("host.id", id),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "system detector: no host.id"),
    }
    found.string("host.arch", host_arch(std::env::consts::ARCH));
    found.string("os.type", os_type(std::env::consts::OS));
    match os_description(host) {
        Ok(Some(d)) => found.string("os.description", d),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "system detector: no os.description"),
    }
    Ok(found)
}

/// The first source that names the host. Failing sources are passed over; only when none
/// answers and at least one failed is that an error (no host name at all, for a reason).
fn hostname(
    host: &Host,
    sources: &[HostnameSource],
    dns_wait: Duration,
) -> Result<Option<String>, String> {
    let mut errors = Vec::new();
    for source in sources {
        let answer = match source {
            HostnameSource::Os => os_hostname(host),
            HostnameSource::Dns => dns_hostname(host, dns_wait),
        };
        match answer {
            Ok(Some(name)) => return Ok(Some(name)),
            Ok(None) => {}
            Err(e) => errors.push(format!("{source:?}: {e}").to_lowercase()),
        }
    }
    if errors.is_empty() {
        Ok(None)
    } else {
        Err(format!(
            "no host name source worked ({})",
            errors.join("; ")
        ))
    }
}

/// The kernel's host name. Under another root, the files of the machine mounted there:
/// asking this kernel would name the collector's container instead.
fn os_hostname(host: &Host) -> Result<Option<String>, String> {
    if host.is_own_root() {
        let name = host
            .names()
            .hostname()
            .map_err(|e| format!("gethostname: {e}"))?;
        let name = name.trim();
        return Ok((!name.is_empty()).then(|| name.to_string()));
    }
    if let Some(name) = host.read_line("/etc/hostname")? {
        return Ok(Some(name));
    }
    host.read_line("/proc/sys/kernel/hostname")
}

/// The fully qualified name: the canonical name `/etc/hosts` gives the short name, else the
/// one the resolver gives.
fn dns_hostname(host: &Host, wait: Duration) -> Result<Option<String>, String> {
    let Some(short) = os_hostname(host)? else {
        return Ok(None);
    };
    if let Some(hosts) = host.read("/etc/hosts")?
        && let Some(name) = canonical_from_hosts(&hosts, &short)
    {
        return Ok(Some(name));
    }
    host.names()
        .canonical_name(&short, wait)
        .map_err(|e| e.to_string())
}

/// In `/etc/hosts` (`address canonical [aliases...]`), the canonical name of the first line
/// that lists `name`.
pub fn canonical_from_hosts(hosts: &str, name: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let _address = fields.next()?;
        let names: Vec<&str> = fields.collect();
        let canonical = names.first()?;
        names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
            .then(|| canonical.trim_end_matches('.').to_string())
    })
}

/// systemd's machine id, or D-Bus's on systems without systemd.
fn machine_id(host: &Host) -> Result<Option<String>, String> {
    if let Some(id) = host.read_line("/etc/machine-id")? {
        return Ok(Some(id));
    }
    host.read_line("/var/lib/dbus/machine-id")
}

/// The distribution's pretty name and the kernel, e.g.
/// `Debian GNU/Linux 12 (bookworm) (Linux 6.1.0-13-amd64)`.
fn os_description(host: &Host) -> Result<Option<String>, String> {
    let release = match host.read("/etc/os-release")? {
        Some(text) => Some(text),
        None => host.read("/usr/lib/os-release")?,
    };
    let distro = release.as_deref().and_then(distribution_name);
    let kernel = match (
        host.read_line("/proc/sys/kernel/ostype")?,
        host.read_line("/proc/sys/kernel/osrelease")?,
    ) {
        (Some(kind), Some(release)) => Some(format!("{kind} {release}")),
        (None, Some(release)) => Some(release),
        _ => None,
    };
    Ok(match (distro, kernel) {
        (Some(d), Some(k)) => Some(format!("{d} ({k})")),
        (Some(d), None) => Some(d),
        (None, Some(k)) => Some(k),
        (None, None) => None,
    })
}

/// `PRETTY_NAME` from os-release, else `NAME VERSION`.
pub fn distribution_name(os_release: &str) -> Option<String> {
    let field = |wanted: &str| {
        os_release.lines().find_map(|line| {
            let (key, value) = line.trim().split_once('=')?;
            (key.trim() == wanted)
                .then(|| unquote(value.trim()))
                .filter(|v| !v.is_empty())
        })
    };
    field("PRETTY_NAME").or_else(|| {
        let name = field("NAME")?;
        Some(match field("VERSION").or_else(|| field("VERSION_ID")) {
            Some(version) => format!("{name} {version}"),
            None => name,
        })
    })
}

/// os-release values are shell-quoted: `"..."` with backslash escapes, or `'...'`.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Rust's architecture names to the semantic conventions' `host.arch` values; others as
/// Rust names them.
pub fn host_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// Rust's OS names to the semantic conventions' `os.type` values; others as Rust names them.
pub fn os_type(rust_os: &str) -> &str {
    match rust_os {
        "macos" => "darwin",
        "dragonfly" => "dragonflybsd",
        "illumos" => "solaris",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::{FakeNames, Fixture, host_in, host_with};
    use std::sync::Arc;

    const WAIT: Duration = Duration::from_secs(1);

    fn dns_os() -> SystemConfig {
        SystemConfig::default()
    }

    fn only(sources: &[HostnameSource]) -> SystemConfig {
        SystemConfig {
            hostname_sources: sources.to_vec(),
        }
    }

    #[test]
    fn reads_every_attribute_from_the_root() {
        let fx = Fixture::new()
            .file("/etc/hostname", "web-1\n")
            .file("/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
            .file(
                "/etc/os-release",
                "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            )
            .file("/proc/sys/kernel/ostype", "Linux\n")
            .file("/proc/sys/kernel/osrelease", "6.1.0-13-amd64\n");
        let host = host_in(&fx, FakeNames::none());
        let found = detect(&host, &only(&[HostnameSource::Os]), WAIT).unwrap();
        assert_eq!(found.get_str("host.name"), Some("web-1"));
        assert_eq!(
            found.get_str("host.id"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            found.get_str("os.description"),
            Some("Debian GNU/Linux 12 (bookworm) (Linux 6.1.0-13-amd64)")
        );
        assert_eq!(
            found.get_str("host.arch"),
            Some(host_arch(std::env::consts::ARCH))
        );
        assert_eq!(
            found.get_str("os.type"),
            Some(os_type(std::env::consts::OS))
        );
    }

    #[test]
    fn dns_source_uses_etc_hosts_then_the_resolver_then_falls_back_to_os() {
        let fx = Fixture::new().file("/etc/hostname", "web-1\n").file(
            "/etc/hosts",
            "127.0.0.1 localhost\n# 10.0.0.1 wrong.example web-1\n10.0.0.5 web-1.prod.example.com. web-1 # primary\n",
        );
        let host = host_in(&fx, FakeNames::none());
        let found = detect(&host, &dns_os(), WAIT).unwrap();
        assert_eq!(found.get_str("host.name"), Some("web-1.prod.example.com"));

        // Not in /etc/hosts: the resolver's canonical name.
        let fx = Fixture::new().file("/etc/hostname", "web-2\n");
        let names = FakeNames {
            hostname: None,
            canonical: Some("web-2.corp.example".into()),
        };
        let found = detect(&host_in(&fx, names), &dns_os(), WAIT).unwrap();
        assert_eq!(found.get_str("host.name"), Some("web-2.corp.example"));

        // The resolver knows nothing: the `os` source answers.
        let found = detect(&host_in(&fx, FakeNames::none()), &dns_os(), WAIT).unwrap();
        assert_eq!(found.get_str("host.name"), Some("web-2"));
    }

    #[test]
    fn own_root_asks_the_kernel_for_the_host_name() {
        let host = host_with(&[], Some(Arc::new(FakeNames::named("kernel-name"))));
        let host = host.with_root("/");
        let found = detect(&host, &only(&[HostnameSource::Os]), WAIT).unwrap();
        assert_eq!(found.get_str("host.name"), Some("kernel-name"));
    }

    #[test]
    fn falls_back_to_proc_and_dbus_and_usr_lib_files() {
        let fx = Fixture::new()
            .file("/proc/sys/kernel/hostname", "from-proc\n")
            .file("/var/lib/dbus/machine-id", "dbus-id\n")
            .file("/usr/lib/os-release", "NAME=Alpine\nVERSION_ID=3.20.0\n");
        let found = detect(&host_in(&fx, FakeNames::none()), &dns_os(), WAIT).unwrap();
        assert_eq!(found.get_str("host.name"), Some("from-proc"));
        assert_eq!(found.get_str("host.id"), Some("dbus-id"));
        assert_eq!(found.get_str("os.description"), Some("Alpine 3.20.0"));
    }

    #[test]
    fn finds_nothing_beyond_the_build_constants_on_an_empty_root() {
        let fx = Fixture::new();
        let found = detect(&host_in(&fx, FakeNames::none()), &dns_os(), WAIT).unwrap();
        // host.arch and os.type describe the running binary and are always known.
        assert_eq!(found.keys(), vec!["host.arch", "os.type"]);
    }

    #[test]
    fn an_unreadable_host_name_is_an_error_but_other_files_only_cost_their_attribute() {
        // A directory where a file should be: exists but cannot be read as a file.
        let fx = Fixture::new()
            .dir("/etc/hostname")
            .dir("/etc/machine-id")
            .file("/proc/sys/kernel/osrelease", "6.8.0\n");
        let err = detect(
            &host_in(&fx, FakeNames::none()),
            &only(&[HostnameSource::Os]),
            WAIT,
        )
        .unwrap_err();
        assert!(err.contains("hostname"), "{err}");

        let found = detect(&host_in(&fx, FakeNames::none()), &only(&[]), WAIT).unwrap();
        assert_eq!(found.get_str("host.id"), None);
        assert_eq!(found.get_str("os.description"), Some("6.8.0"));
    }

    /// The one test that looks at the real machine (read-only): the kernel's answer arrives
    /// through the real name service.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_real_machine_has_a_host_name() {
        let found = detect(
            &crate::resource_detection::host::Host::real("/"),
            &only(&[HostnameSource::Os]),
            WAIT,
        )
        .unwrap();
        assert!(!found.get_str("host.name").unwrap_or("").is_empty());
        assert_eq!(found.get_str("os.type"), Some("linux"));
    }

    #[test]
    fn maps_rust_names_to_semantic_convention_values() {
        assert_eq!(host_arch("x86_64"), "amd64");
        assert_eq!(host_arch("aarch64"), "arm64");
        assert_eq!(host_arch("arm"), "arm32");
        assert_eq!(host_arch("powerpc64"), "ppc64");
        assert_eq!(host_arch("riscv64"), "riscv64");
        assert_eq!(os_type("linux"), "linux");
        assert_eq!(os_type("macos"), "darwin");
        assert_eq!(os_type("windows"), "windows");
        assert_eq!(os_type("dragonfly"), "dragonflybsd");
    }

    #[test]
    fn parses_os_release_quoting() {
        assert_eq!(
            distribution_name("PRETTY_NAME='Ubuntu 24.04 LTS'\n").as_deref(),
            Some("Ubuntu 24.04 LTS")
        );
        assert_eq!(
            distribution_name("PRETTY_NAME=\"A \\\"quoted\\\" name\"").as_deref(),
            Some("A \"quoted\" name")
        );
        assert_eq!(distribution_name("ID=x\n"), None);
        assert_eq!(
            canonical_from_hosts("::1 localhost ip6-localhost\n", "IP6-LOCALHOST").as_deref(),
            Some("localhost")
        );
    }
}
