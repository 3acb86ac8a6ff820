//! What the `lambda` receiver shares with the extension loop in the binary, and a minimal
//! HTTP/1.1 client for the Lambda Runtime API (plain HTTP on a local address: a full client
//! would cost start-up time for nothing).

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The registered extension, set by the extension loop before the service starts. It is
/// process-wide because the receiver is built by the generic pipeline builder, which knows
/// nothing of Lambda.
#[derive(Clone, Debug)]
pub struct ExtensionContext {
    /// `host:port` of the Runtime API (`AWS_LAMBDA_RUNTIME_API`).
    pub runtime_api: String,
    pub extension_id: String,
    pub account_id: Option<String>,
}

static CONTEXT: OnceLock<ExtensionContext> = OnceLock::new();
static TRACKER: OnceLock<Tracker> = OnceLock::new();

/// Records the registration; false if one was recorded already.
pub fn set_extension(context: ExtensionContext) -> bool {
    CONTEXT.set(context).is_ok()
}

pub fn extension() -> Option<&'static ExtensionContext> {
    CONTEXT.get()
}

pub fn tracker() -> &'static Tracker {
    TRACKER.get_or_init(Tracker::default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Milestone {
    /// `platform.runtimeDone`: the function finished; its logs and span are in the pipeline.
    RuntimeDone,
    /// `platform.report`: the invocation's metrics are in the pipeline.
    Report,
}

/// The milestones seen, and the order they came in (to forget the oldest).
type Seen = (HashSet<(Milestone, String)>, VecDeque<(Milestone, String)>);

/// Which invocations' milestones the receiver has handed to the pipeline, so the extension
/// loop can wait for them before flushing.
#[derive(Default)]
pub struct Tracker {
    seen: Mutex<Seen>,
    changed: tokio::sync::Notify,
    subscribed: std::sync::atomic::AtomicBool,
}

/// Invocations remembered; far more than can be outstanding at once.
const REMEMBERED: usize = 256;

impl Tracker {
    pub fn mark(&self, milestone: Milestone, request_id: &str) {
        if let Ok(mut guard) = self.seen.lock() {
            let (set, order) = &mut *guard;
            let key = (milestone, request_id.to_string());
            if set.insert(key.clone()) {
                order.push_back(key);
                while order.len() > REMEMBERED {
                    if let Some(old) = order.pop_front() {
                        set.remove(&old);
                    }
                }
            }
        }
        self.changed.notify_waiters();
    }

    pub fn has(&self, milestone: Milestone, request_id: &str) -> bool {
        self.seen
            .lock()
            .map(|g| g.0.contains(&(milestone, request_id.to_string())))
            .unwrap_or(false)
    }

    pub fn set_subscribed(&self) {
        self.subscribed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether some receiver subscribed to platform events (otherwise no milestone will come).
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the milestone was seen or `deadline`; true if seen.
    pub async fn wait_for(
        &self,
        milestone: Milestone,
        request_id: &str,
        deadline: Instant,
    ) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.has(milestone, request_id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.has(milestone, request_id);
            }
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`). `timeout` bounds the whole
/// exchange; `None` waits as long as it takes (the event/next long poll).
pub async fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Option<Duration>,
) -> Result<Response, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            if k.contains(['\r', '\n']) || v.contains(['\r', '\n']) {
                return Err(format!("header {k} has a line break"));
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        stream
            .write_all(&out)
            .await
            .map_err(|e| format!("cannot send to {address}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("cannot read from {address}: {e}"))?;
        parse_response(&raw)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, exchange)
            .await
            .map_err(|_| format!("{method} {path}: no answer within {t:?}"))?,
        None => exchange.await,
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response has no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sized_and_chunked_responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: abc\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(
            (
                r.status,
                r.header("lambda-extension-identifier"),
                r.body.as_slice()
            ),
            (200, Some("abc"), &b"{}"[..])
        );
        let r = parse_response(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, &b"abcde"[..]));
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[tokio::test]
    async fn waiting_for_a_milestone_ends_when_it_is_marked_or_at_the_deadline() {
        let t = Tracker::default();
        assert!(
            !t.wait_for(
                Milestone::Report,
                "r1",
                Instant::now() + Duration::from_millis(5)
            )
            .await
        );
        let (a, ()) = tokio::join!(
            t.wait_for(
                Milestone::RuntimeDone,
                "r1",
                Instant::now() + Duration::from_secs(30)
            ),
            async {
                tokio::task::yield_now().await;
                t.mark(Milestone::RuntimeDone, "r1");
            }
        );
        assert!(a);
        assert!(!t.has(Milestone::Report, "r1"));
    }
}
