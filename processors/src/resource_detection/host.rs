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
}

/// The operating system's own name services.
pub struct SystemNames;

impl NameService for SystemNames {
    fn hostname(&self) -> io::Result<String> {
        dns_lookup::get_hostname()
    }

    fn canonical_name(&self, host: &str, wait: Duration) -> io::Result<Option<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let name = host.to_string();
        // getaddrinfo cannot be cancelled; on a slow resolver the thread is left to finish on
        // its own so the caller can fall back to the next hostname source in time.
        std::thread::Builder::new()
            .name("sluice-resolve".into())
            .spawn(move || {
                let _ = tx.send(resolve_canonical(&name));
            })?;
        match rx.recv_timeout(wait) {
            Ok(answer) => answer,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the resolver did not answer within {wait:?}"),
            )),
        }
    }
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

    pub fn names(&self) -> &dyn NameService {
        self.names.as_ref()
    }

    /// Path of `absolute` (e.g. `/etc/machine-id`) under the root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// A file's text under the root; `None` when it does not exist (on this OS, or outside a
    /// container), an error when it exists but cannot be read. Invalid UTF-8 is replaced
    /// rather than refused: these files are meant to be text.
    pub fn read(&self, absolute: &str) -> Result<Option<String>, String> {
        let path = self.path(absolute);
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

    /// The first line of a file, trimmed; `None` when absent or blank.
    pub fn read_line(&self, absolute: &str) -> Result<Option<String>, String> {
        Ok(self.read(absolute)?.and_then(|text| {
            let line = text.lines().next().unwrap_or("").trim().to_string();
            (!line.is_empty()).then_some(line)
        }))
    }
}

fn is_absent(e: &io::Error) -> bool {
    // NotADirectory: a path component is a file, e.g. /proc/self on a system without procfs
    // mounted as a directory; it means the same as "not there".
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
