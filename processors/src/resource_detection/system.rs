//! `system`: the machine itself. By default only `host.name` and `os.type`, as in the OTel
//! Collector; `host.id`, `host.arch`, `os.*`, `host.ip`, `host.mac`, `host.interface` and
//! `host.cpu.*` when switched on.

use std::time::Duration;

use super::attributes::{Attr, off, on};
use super::config::{HostnameSource, SystemConfig};
use super::detection::{DetectResult, Found};
use super::host::{Host, Interface};

pub const ATTRIBUTES: &[Attr] = &[
    on("host.name"),
    on("os.type"),
    off("host.id"),
    off("host.arch"),
    off("os.description"),
    off("os.name"),
    off("os.version"),
    off("os.build.id"),
    off("host.ip"),
    off("host.mac"),
    off("host.interface"),
    off("host.cpu.vendor.id"),
    off("host.cpu.family"),
    off("host.cpu.model.id"),
    off("host.cpu.model.name"),
    off("host.cpu.stepping"),
    off("host.cpu.cache.l2.size"),
];

/// `wanted` says which attributes are switched on: work for the others is skipped.
pub fn detect(
    host: &Host,
    cfg: &SystemConfig,
    wanted: &dyn Fn(&str) -> bool,
    timeout: Duration,
) -> DetectResult {
    let mut found = Found::default();
    if wanted("host.name") {
        // Half the detection timeout leaves time to fall back to the next source when the
        // resolver is slow, instead of losing every system attribute to the timeout.
        match hostname(host, &cfg.hostname_sources, timeout / 2)? {
            Some(name) => found.string("host.name", name),
            None => return Err("all hostname sources failed to get a host name".into()),
        }
    }
    found.string("os.type", os_type(std::env::consts::OS));
    // The other attributes are independent of each other: one unreadable file costs only
    // its own attribute.
    if wanted("host.id") {
        match machine_id(host) {
            Ok(Some(id)) => found.string("host.id", id),
            Ok(None) => tracing::warn!("system detector: no machine id; no host.id"),
            Err(e) => tracing::warn!(error = %e, "system detector: no host.id"),
        }
    }
    found.string("host.arch", host_arch(std::env::consts::ARCH));
    let release = match os_release(host) {
        Ok(release) => release,
        Err(e) => {
            tracing::warn!(error = %e, "system detector: os-release unreadable");
            None
        }
    };
    let field = |key: &str| release.as_deref().and_then(|r| os_release_field(r, key));
    if wanted("os.description") {
        match os_description(host, release.as_deref()) {
            Ok(Some(d)) => found.string("os.description", d),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "system detector: no os.description"),
        }
    }
    if let Some(name) = field("ID") {
        found.string("os.name", name);
    }
    if let Some(version) = field("VERSION_ID") {
        found.string("os.version", version);
    }
    if wanted("os.build.id") {
        match field("BUILD_ID") {
            Some(id) => found.string("os.build.id", id),
            None => match host.read_line("/proc/sys/kernel/osrelease") {
                Ok(Some(kernel)) => found.string("os.build.id", kernel),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "system detector: no os.build.id"),
            },
        }
    }
    if ["host.ip", "host.mac", "host.interface"]
        .iter()
        .any(|a| wanted(a))
    {
        match host.names().interfaces() {
            Ok(interfaces) => network(&mut found, &interfaces),
            Err(e) => tracing::warn!(error = %e, "system detector: cannot list network interfaces"),
        }
    }
    if ATTRIBUTES
        .iter()
        .any(|a| a.name.starts_with("host.cpu.") && wanted(a.name))
    {
        match host.read("/proc/cpuinfo") {
            Ok(Some(text)) => cpu(&mut found, &text),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "system detector: no host.cpu attributes"),
        }
    }
    Ok(found)
}

/// `host.ip` (addresses of the interfaces that are up, loopback left out), `host.mac` (their
/// hardware addresses in the IEEE RA form `AA-BB-CC-DD-EE-FF`) and `host.interface` (every
/// interface's name).
fn network(found: &mut Found, interfaces: &[Interface]) {
    let active = || interfaces.iter().filter(|i| i.up && !i.loopback);
    let ips = active()
        .flat_map(|i| i.addresses.iter())
        .filter(|ip| !ip.is_loopback())
        .map(|ip| ip.to_string())
        .collect();
    found.strings("host.ip", ips);
    let macs = active()
        .filter_map(|i| i.mac.as_ref())
        .filter(|mac| !mac.is_empty())
        .map(|mac| {
            mac.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    found.strings("host.mac", macs);
    found.strings(
        "host.interface",
        interfaces.iter().map(|i| i.name.clone()).collect(),
    );
}

/// The `host.cpu.*` attributes from the first processor of `/proc/cpuinfo`.
fn cpu(found: &mut Found, cpuinfo: &str) {
    let first = cpuinfo.split("\n\n").next().unwrap_or("");
    let field = |name: &str| {
        first.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    if let Some(v) = field("vendor_id") {
        found.string("host.cpu.vendor.id", v);
    }
    if let Some(v) = field("cpu family") {
        found.string("host.cpu.family", v);
    }
    if let Some(v) = field("model").filter(|v| !v.is_empty()) {
        found.string("host.cpu.model.id", v);
    }
    if let Some(v) = field("model name") {
        found.string("host.cpu.model.name", v);
    }
    if let Some(v) = field("stepping") {
        found.string("host.cpu.stepping", v);
    }
    // `cache size : 512 KB`: the number, in KB, as the OTel Collector reports it.
    if let Some(size) = field("cache size").and_then(|v| {
        v.split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
    }) {
        found.int("host.cpu.cache.l2.size", size);
    }
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
            HostnameSource::Cname => cname_hostname(host, dns_wait),
            HostnameSource::Lookup => lookup_hostname(host, dns_wait),
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
/// one the resolver gives, else the reverse lookup of its addresses.
fn dns_hostname(host: &Host, wait: Duration) -> Result<Option<String>, String> {
    let Some(short) = os_hostname(host)? else {
        return Ok(None);
    };
    if let Some(hosts) = host.read("/etc/hosts")?
        && let Some(name) = canonical_from_hosts(&hosts, &short)
    {
        return Ok(Some(name));
    }
    match host.names().canonical_name(&short, wait) {
        Ok(Some(name)) => Ok(Some(name)),
        Ok(None) | Err(_) => host
            .names()
            .reverse_name(&short, wait)
            .map_err(|e| e.to_string()),
    }
}

/// The resolver's canonical name of the kernel's host name.
fn cname_hostname(host: &Host, wait: Duration) -> Result<Option<String>, String> {
    let Some(short) = os_hostname(host)? else {
        return Ok(None);
    };
    host.names()
        .canonical_name(&short, wait)
        .map_err(|e| e.to_string())
}

/// The reverse lookup of the addresses the kernel's host name resolves to.
fn lookup_hostname(host: &Host, wait: Duration) -> Result<Option<String>, String> {
    let Some(short) = os_hostname(host)? else {
        return Ok(None);
    };
    host.names()
        .reverse_name(&short, wait)
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

/// os-release, from `/etc` or else `/usr/lib`.
fn os_release(host: &Host) -> Result<Option<String>, String> {
    match host.read("/etc/os-release")? {
        Some(text) => Ok(Some(text)),
        None => host.read("/usr/lib/os-release"),
    }
}

/// One field of os-release, unquoted; empty counts as absent.
pub fn os_release_field(os_release: &str, wanted: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let (key, value) = line.trim().split_once('=')?;
        (key.trim() == wanted)
            .then(|| unquote(value.trim()))
            .filter(|v| !v.is_empty())
    })
}

/// As the OTel Go SDK writes it: the distribution's name and the kernel's `uname`, e.g.
/// `Debian GNU/Linux 12 (bookworm) (Linux web-1 6.1.0-13-amd64 #1 SMP x86_64)`.
fn os_description(host: &Host, release: Option<&str>) -> Result<Option<String>, String> {
    let distro = release.and_then(distribution_name);
    let kernel = uname(host)?;
    Ok(match (distro, kernel) {
        (Some(d), Some(k)) => Some(format!("{d} ({k})")),
        (Some(d), None) => Some(d),
        (None, Some(k)) => Some(k),
        (None, None) => None,
    })
}

/// `sysname nodename release version machine`, from the kernel's files under the root (so a
/// mounted host root describes that host), else the system call.
fn uname(host: &Host) -> Result<Option<String>, String> {
    let parts = [
        host.read_line("/proc/sys/kernel/ostype")?,
        host.read_line("/proc/sys/kernel/hostname")?,
        host.read_line("/proc/sys/kernel/osrelease")?,
        host.read_line("/proc/sys/kernel/version")?,
        host.read_line("/proc/sys/kernel/arch")?,
    ];
    if parts[0].is_some() || parts[2].is_some() {
        let present: Vec<String> = parts.into_iter().flatten().collect();
        return Ok(Some(present.join(" ")));
    }
    if !host.is_own_root() {
        return Ok(None);
    }
    Ok(system_uname())
}

fn system_uname() -> Option<String> {
    // SAFETY: uname fills the zeroed struct; each field is a NUL-terminated array.
    unsafe {
        let mut names: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut names) != 0 {
            return None;
        }
        let field = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        Some(
            [
                field(&names.sysname),
                field(&names.nodename),
                field(&names.release),
                field(&names.version),
                field(&names.machine),
            ]
            .join(" "),
        )
    }
}

/// `PRETTY_NAME` from os-release, else `NAME VERSION`.
pub fn distribution_name(os_release: &str) -> Option<String> {
    let field = |wanted: &str| os_release_field(os_release, wanted);
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
            ..Default::default()
        }
    }

    fn everything(_: &str) -> bool {
        true
    }

    /// As the processor emits it: the detector's defaults applied.
    fn defaults(host: &Host, cfg: &SystemConfig) -> Found {
        let none = Default::default();
        let switches = crate::resource_detection::attributes::Switches::new(ATTRIBUTES, &none);
        let found = detect(host, cfg, &|a| switches.on(a), WAIT).unwrap();
        switches.apply(found)
    }

    fn full_root() -> Fixture {
        Fixture::new()
            .file("/etc/hostname", "web-1\n")
            .file("/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
            .file(
                "/etc/os-release",
                "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            )
            .file("/proc/sys/kernel/ostype", "Linux\n")
            .file("/proc/sys/kernel/hostname", "web-1\n")
            .file("/proc/sys/kernel/osrelease", "6.1.0-13-amd64\n")
            .file("/proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1\n")
            .file(
                "/proc/cpuinfo",
                "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nstepping\t: 7\ncache size\t: 36608 KB\n\nprocessor\t: 1\nvendor_id\t: Other\n",
            )
    }

    #[test]
    fn by_default_only_host_name_and_os_type_as_upstream() {
        let fx = full_root();
        let found = defaults(
            &host_in(&fx, FakeNames::none()),
            &only(&[HostnameSource::Os]),
        );
        assert_eq!(found.keys(), vec!["host.name", "os.type"]);
        assert_eq!(found.get_str("host.name"), Some("web-1"));
        assert_eq!(
            found.get_str("os.type"),
            Some(os_type(std::env::consts::OS))
        );
    }

    #[test]
    fn every_attribute_when_switched_on() {
        let fx = full_root();
        let names = FakeNames {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    up: true,
                    loopback: true,
                    addresses: vec!["127.0.0.1".parse().unwrap()],
                    mac: None,
                },
                Interface {
                    name: "eth0".into(),
                    up: true,
                    loopback: false,
                    addresses: vec!["10.0.0.5".parse().unwrap(), "fe80::1".parse().unwrap()],
                    mac: Some(vec![0x02, 0xab, 0x0c, 0xde, 0x00, 0x01]),
                },
                Interface {
                    name: "eth1".into(),
                    up: false,
                    loopback: false,
                    addresses: vec!["10.9.9.9".parse().unwrap()],
                    mac: Some(vec![1, 2, 3, 4, 5, 6]),
                },
            ],
            ..FakeNames::none()
        };
        let host = host_in(&fx, names);
        let found = detect(&host, &only(&[HostnameSource::Os]), &everything, WAIT).unwrap();
        assert_eq!(
            found.get_str("host.id"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            found.get_str("os.description"),
            Some(
                "Debian GNU/Linux 12 (bookworm) (Linux web-1 6.1.0-13-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1)"
            )
        );
        assert_eq!(found.get_str("os.name"), Some("debian"));
        assert_eq!(found.get_str("os.version"), Some("12"));
        // No BUILD_ID in os-release: the kernel release.
        assert_eq!(found.get_str("os.build.id"), Some("6.1.0-13-amd64"));
        assert_eq!(
            found.get_str("host.arch"),
            Some(host_arch(std::env::consts::ARCH))
        );
        assert_eq!(
            found.get_strings("host.ip"),
            Some(vec!["10.0.0.5", "fe80::1"])
        );
        assert_eq!(
            found.get_strings("host.mac"),
            Some(vec!["02-AB-0C-DE-00-01"])
        );
        assert_eq!(
            found.get_strings("host.interface"),
            Some(vec!["lo", "eth0", "eth1"])
        );
        assert_eq!(found.get_str("host.cpu.vendor.id"), Some("GenuineIntel"));
        assert_eq!(found.get_str("host.cpu.family"), Some("6"));
        assert_eq!(found.get_str("host.cpu.model.id"), Some("85"));
        assert_eq!(
            found.get_str("host.cpu.model.name"),
            Some("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz")
        );
        assert_eq!(found.get_str("host.cpu.stepping"), Some("7"));
        assert_eq!(
            found.get("host.cpu.cache.l2.size"),
            Some(&sluice_pipeline::proto::common::v1::any_value::Value::IntValue(36608))
        );
    }

    #[test]
    fn build_id_comes_from_os_release_when_it_has_one() {
        let fx = Fixture::new()
            .file("/etc/hostname", "h\n")
            .file("/etc/os-release", "ID=fedora\nBUILD_ID=rolling-2026\n")
            .file("/proc/sys/kernel/osrelease", "6.8.0\n");
        let found = detect(
            &host_in(&fx, FakeNames::none()),
            &only(&[HostnameSource::Os]),
            &everything,
            WAIT,
        )
        .unwrap();
        assert_eq!(found.get_str("os.build.id"), Some("rolling-2026"));
    }

    #[test]
    fn dns_source_uses_etc_hosts_then_the_resolver_then_reverse_lookup_then_os() {
        let fx = Fixture::new().file("/etc/hostname", "web-1\n").file(
            "/etc/hosts",
            "127.0.0.1 localhost\n# 10.0.0.1 wrong.example web-1\n10.0.0.5 web-1.prod.example.com. web-1 # primary\n",
        );
        let host = host_in(&fx, FakeNames::none());
        let found = defaults(&host, &dns_os());
        assert_eq!(found.get_str("host.name"), Some("web-1.prod.example.com"));

        // Not in /etc/hosts: the resolver's canonical name.
        let fx = Fixture::new().file("/etc/hostname", "web-2\n");
        let names = FakeNames {
            canonical: Some("web-2.corp.example".into()),
            ..FakeNames::none()
        };
        let found = defaults(&host_in(&fx, names), &dns_os());
        assert_eq!(found.get_str("host.name"), Some("web-2.corp.example"));

        // No canonical name: the reverse lookup.
        let names = FakeNames {
            reverse: Some("ip-10-0-0-7.internal".into()),
            ..FakeNames::none()
        };
        let found = defaults(&host_in(&fx, names), &dns_os());
        assert_eq!(found.get_str("host.name"), Some("ip-10-0-0-7.internal"));

        // The resolver knows nothing: the `os` source answers.
        let found = defaults(&host_in(&fx, FakeNames::none()), &dns_os());
        assert_eq!(found.get_str("host.name"), Some("web-2"));
    }

    #[test]
    fn cname_and_lookup_sources() {
        let fx = Fixture::new().file("/etc/hostname", "box\n");
        let names = || FakeNames {
            canonical: Some("box.cname.example".into()),
            reverse: Some("box.ptr.example".into()),
            ..FakeNames::none()
        };
        let cname = defaults(&host_in(&fx, names()), &only(&[HostnameSource::Cname]));
        assert_eq!(cname.get_str("host.name"), Some("box.cname.example"));
        let lookup = defaults(&host_in(&fx, names()), &only(&[HostnameSource::Lookup]));
        assert_eq!(lookup.get_str("host.name"), Some("box.ptr.example"));
    }

    #[test]
    fn own_root_asks_the_kernel_for_the_host_name() {
        let host = host_with(&[], Some(Arc::new(FakeNames::named("kernel-name"))));
        let host = host.with_root("/");
        let found = defaults(&host, &only(&[HostnameSource::Os]));
        assert_eq!(found.get_str("host.name"), Some("kernel-name"));
    }

    #[test]
    fn falls_back_to_proc_and_dbus_and_usr_lib_files() {
        let fx = Fixture::new()
            .file("/proc/sys/kernel/hostname", "from-proc\n")
            .file("/var/lib/dbus/machine-id", "dbus-id\n")
            .file("/usr/lib/os-release", "NAME=Alpine\nVERSION_ID=3.20.0\n");
        let found = detect(
            &host_in(&fx, FakeNames::none()),
            &dns_os(),
            &everything,
            WAIT,
        )
        .unwrap();
        assert_eq!(found.get_str("host.name"), Some("from-proc"));
        assert_eq!(found.get_str("host.id"), Some("dbus-id"));
        assert_eq!(found.get_str("os.description"), Some("Alpine 3.20.0"));
        assert_eq!(found.get_str("os.version"), Some("3.20.0"));
    }

    #[test]
    fn no_host_name_at_all_is_an_error_as_upstream() {
        let err = detect(
            &host_in(&Fixture::new(), FakeNames::none()),
            &dns_os(),
            &everything,
            WAIT,
        )
        .unwrap_err();
        assert!(err.contains("hostname sources"), "{err}");
        // With host.name switched off, the rest is still found.
        let found = detect(
            &host_in(&Fixture::new(), FakeNames::none()),
            &dns_os(),
            &|a| a != "host.name",
            WAIT,
        )
        .unwrap();
        assert_eq!(
            found.get_str("os.type"),
            Some(os_type(std::env::consts::OS))
        );
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
            &everything,
            WAIT,
        )
        .unwrap_err();
        assert!(err.contains("hostname"), "{err}");

        let found = detect(
            &host_in(&fx, FakeNames::none()),
            &only(&[HostnameSource::Os]),
            &|a| a != "host.name",
            WAIT,
        )
        .unwrap();
        assert_eq!(found.get_str("host.id"), None);
        assert_eq!(found.get_str("os.description"), Some("6.8.0"));
    }

    /// The one test that looks at the real machine (read-only): the kernel's answer arrives
    /// through the real name service, and the real interfaces are listed.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_real_machine_has_a_host_name_and_interfaces() {
        let found = detect(
            &crate::resource_detection::host::Host::real("/"),
            &only(&[HostnameSource::Os]),
            &everything,
            WAIT,
        )
        .unwrap();
        assert!(!found.get_str("host.name").unwrap_or("").is_empty());
        assert_eq!(found.get_str("os.type"), Some("linux"));
        let interfaces = found.get_strings("host.interface").unwrap_or_default();
        assert!(interfaces.contains(&"lo"), "{interfaces:?}");
        assert!(found.get_str("os.description").is_some());
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
