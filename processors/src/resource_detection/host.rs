//! What detectors look at: environment variables, files under a root, and the system's name
//! services. Each is injectable so tests describe a machine instead of mutating the real
//! process (environment variables are process-global; tests run in parallel).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Files larger than this are read only this far: the files detectors read are a few lines,
/// and a runaway one must not cost the collector its memory.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// `AI_CANONNAME` is 2 in every libc (glibc, musl, the BSDs, macOS) and in Winsock.
const AI_CANONNAME: i32 = 2;

/// Where environment variables come from.
#[derive(Clone, Debug)]
pub enum Vars {
    /// The collector's own environment.
    Process,
    /// A fixed set, for tests.
    #[cfg(test)]
    Fixed(std::collections::HashMap<String, String>),
}

/// Answers that come from the operating system rather than from files.
pub trait NameService: Send + Sync {
    /// The kernel's host name of this machine (`gethostname`).
    fn hostname(&self) -> io::Result<String>;
    /// The canonical (normally fully qualified) name the resolver gives `host`, waiting at
    /// most `wait` for it.
    fn canonical_name(&self, host: &str, wait: Duration) -> io::Result<Option<String>>;
    /// The name the reverse lookup of one of `host`'s addresses gives, waiting at most `wait`.
    fn reverse_name(&self, _host: &str, _wait: Duration) -> io::Result<Option<String>> {
        Ok(None)
    }
    /// The machine's network interfaces.
    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        Ok(Vec::new())
    }
}

/// A network interface as the system describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    pub addresses: Vec<std::net::IpAddr>,
    /// The hardware address, when the interface has one.
    pub mac: Option<Vec<u8>>,
}

/// Runs a resolver call on a thread of its own and waits at most `wait` for it: getaddrinfo
/// cannot be cancelled, so on a slow resolver the thread is left to finish on its own and the
/// caller falls back in time.
fn with_deadline<T: Send + 'static>(
    wait: Duration,
    call: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-resolve".into())
        .spawn(move || {
            let _ = tx.send(call());
        })?;
    match rx.recv_timeout(wait) {
        Ok(answer) => answer,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the resolver did not answer within {wait:?}"),
        )),
    }
}

/// The operating system's own name services.
pub struct SystemNames;

impl NameService for SystemNames {
    fn hostname(&self) -> io::Result<String> {
        dns_lookup::get_hostname()
    }

    fn canonical_name(&self, host: &str, wait: Duration) -> io::Result<Option<String>> {
        let name = host.to_string();
        with_deadline(wait, move || resolve_canonical(&name))
    }

    fn reverse_name(&self, host: &str, wait: Duration) -> io::Result<Option<String>> {
        let name = host.to_string();
        with_deadline(wait, move || {
            let addresses = dns_lookup::lookup_host(&name)
                .map_err(|e| io::Error::other(format!("cannot resolve `{name}`: {e:?}")))?;
            let mut last = None;
            for address in addresses {
                match dns_lookup::lookup_addr(&address) {
                    Ok(found) => {
                        let found = found.trim().trim_end_matches('.');
                        if !found.is_empty() {
                            return Ok(Some(found.to_string()));
                        }
                    }
                    Err(e) => last = Some(format!("{e:?}")),
                }
            }
            match last {
                Some(e) => Err(io::Error::other(format!(
                    "no address of `{name}` has a reverse name: {e}"
                ))),
                None => Ok(None),
            }
        })
    }

    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        system_interfaces()
    }
}

/// The interfaces `getifaddrs` lists, their addresses and (on Linux) hardware addresses
/// merged per name.
fn system_interfaces() -> io::Result<Vec<Interface>> {
    let mut found: Vec<Interface> = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs; every pointer is
    // read only while the list lives and checked for null first.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = head;
        while !at.is_null() {
            let entry = &*at;
            at = entry.ifa_next;
            if entry.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(entry.ifa_name)
                .to_string_lossy()
                .into_owned();
            let index = match found.iter().position(|i| i.name == name) {
                Some(i) => i,
                None => {
                    found.push(Interface {
                        name: name.clone(),
                        up: entry.ifa_flags & libc::IFF_UP as u32 != 0,
                        loopback: entry.ifa_flags & libc::IFF_LOOPBACK as u32 != 0,
                        ..Default::default()
                    });
                    found.len() - 1
                }
            };
            if entry.ifa_addr.is_null() {
                continue;
            }
            let family = i32::from((*entry.ifa_addr).sa_family);
            if family == libc::AF_INET {
                let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                found[index].addresses.push(ip.into());
            } else if family == libc::AF_INET6 {
                let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                found[index].addresses.push(ip.into());
            } else {
                #[cfg(target_os = "linux")]
                if family == libc::AF_PACKET {
                    let ll = &*(entry.ifa_addr as *const libc::sockaddr_ll);
                    let len = usize::from(ll.sll_halen).min(ll.sll_addr.len());
                    if len > 0 {
                        found[index].mac = Some(ll.sll_addr[..len].to_vec());
                    }
                }
            }
        }
        libc::freeifaddrs(head);
    }
    Ok(found)
}

fn resolve_canonical(host: &str) -> io::Result<Option<String>> {
    let hints = dns_lookup::AddrInfoHints {
        flags: AI_CANONNAME,
        address: 0,
        socktype: 0,
        protocol: 0,
    };
    let answers = dns_lookup::getaddrinfo(Some(host), None, Some(hints))
        .map_err(|e| io::Error::other(format!("cannot resolve `{host}`: {e:?}")))?;
    for answer in answers {
        if let Some(name) = answer?.canonname {
            let name = name.trim().trim_end_matches('.');
            if !name.is_empty() {
                return Ok(Some(name.to_string()));
            }
        }
    }
    Ok(None)
}

/// The machine a detector describes.
#[derive(Clone)]
pub struct Host {
    root: PathBuf,
    /// Where the collector's own files are (service account token, Kubernetes config): `/`,
    /// whatever `root_path` says, since they belong to the collector's container, not to the
    /// host it describes.
    own_root: PathBuf,
    vars: Vars,
    names: Arc<dyn NameService>,
}

impl Host {
    /// This process's environment and name services, with files under `root`.
    pub fn real(root: impl Into<PathBuf>) -> Host {
        Host::new(root, Vars::Process, Arc::new(SystemNames))
    }

    pub fn new(root: impl Into<PathBuf>, vars: Vars, names: Arc<dyn NameService>) -> Host {
        Host {
            root: root.into(),
            own_root: PathBuf::from("/"),
            vars,
            names,
        }
    }

    /// An environment variable, trimmed; unset, empty and non-UTF-8 values all count as absent.
    pub fn var(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            Vars::Process => std::env::var(name).ok()?,
            #[cfg(test)]
            Vars::Fixed(map) => map.get(name)?.clone(),
        };
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_string())
    }

    /// Whether files are read from this machine's own root, so that the operating system's
    /// answers (host name) describe the same machine as the files.
    pub fn is_own_root(&self) -> bool {
        self.root == Path::new("/")
    }

    #[cfg(test)]
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Host {
        self.root = root.into();
        self
    }

    #[cfg(test)]
    pub fn with_own_root(mut self, root: impl Into<PathBuf>) -> Host {
        self.own_root = root.into();
        self
    }

    /// One of the collector's own files (see `own_root`), like `read`.
    pub fn read_own(&self, absolute: &str) -> Result<Option<String>, String> {
        read_under(&self.own_root, absolute)
    }

    /// The first line of one of the collector's own files, trimmed.
    pub fn read_own_line(&self, absolute: &str) -> Result<Option<String>, String> {
        Ok(first_line(self.read_own(absolute)?))
    }

    pub fn names(&self) -> &dyn NameService {
        self.names.as_ref()
    }

    /// A file's text under the root; `None` when it does not exist (on this OS, or outside a
    /// container), an error when it exists but cannot be read. Invalid UTF-8 is replaced
    /// rather than refused: these files are meant to be text.
    pub fn read(&self, absolute: &str) -> Result<Option<String>, String> {
        read_under(&self.root, absolute)
    }

    /// The first line of a file, trimmed; `None` when absent or blank.
    pub fn read_line(&self, absolute: &str) -> Result<Option<String>, String> {
        Ok(first_line(self.read(absolute)?))
    }
}

fn first_line(text: Option<String>) -> Option<String> {
    text.and_then(|text| {
        let line = text.lines().next().unwrap_or("").trim().to_string();
        (!line.is_empty()).then_some(line)
    })
}

fn read_under(root: &Path, absolute: &str) -> Result<Option<String>, String> {
    let path = root.join(absolute.trim_start_matches('/'));
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn is_absent(e: &io::Error) -> bool {
    // NotADirectory: a path component is a file, e.g. /proc/self on a system without procfs
    // mounted as a directory; it means the same as "not there".
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
