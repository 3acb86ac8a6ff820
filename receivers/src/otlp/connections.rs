//! Serving connections, for both OTLP protocols: an accept loop that caps how many connections
//! are open and backs off when accepting fails (out of file descriptors, above all), TLS
//! handshakes beside it, and one supervisor per connection that closes it when its first
//! request is too long coming, when it has been idle too long, when an answer takes too long
//! or when it reaches its maximum age. Without them, a peer that opens connections and sends
//! nothing holds one file descriptor each, forever, until the process can accept no more.
//!
//! Everything a peer can trigger at will is logged through a [`LogLimiter`] (one line per
//! cause per interval) and counted:
//! - `sluice_receiver_connections{receiver, transport}`: open now;
//! - `sluice_receiver_connections_refused_total`: closed at once, `max_connections` were open;
//! - `sluice_receiver_connections_closed_total{reason}`: closed by sluice, by reason;
//! - `sluice_receiver_accept_errors_total`: failed `accept` calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sluice_pipeline::telemetry::{
    Counter, DEFAULT_LOG_INTERVAL, Gauge, LogLimiter, MetricsRegistry,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::stopped;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// When connections are closed, from a protocol's settings. `None` is no limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionPolicy {
    /// Connections served at once; the ones over it are closed as soon as they are accepted.
    pub max_connections: usize,
    /// From accept to the first request's headers, TLS handshake included.
    pub first_request_timeout: Option<Duration>,
    /// Without a request in progress: after the last answer, or after accept.
    pub idle_timeout: Option<Duration>,
    /// From a request's headers to the end of its answer.
    pub write_timeout: Option<Duration>,
    /// After this, the connection is told to go away (HTTP/2 GOAWAY, HTTP/1 `Connection:
    /// close`)...
    pub max_age: Option<Duration>,
    /// ...and after this much more, it is closed whatever it is doing.
    pub max_age_grace: Option<Duration>,
    /// Close a connection once its first request is answered (`keep_alives_enabled: false`).
    pub one_request_per_connection: bool,
}

/// How long a connection told to go away, with no request in progress, may take to close on
/// its own before it is closed. A well-behaved HTTP/2 client answers a GOAWAY at once; an HTTP/1
/// client stuck in the middle of its request headers does not answer at all.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The TLS handshake's limit when `read_header_timeout` sets none.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once per listener: they cost CPU and memory, so a flood of
/// them waits (within its connection's deadline) instead.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Pauses after a failed `accept`: the first, and the longest when it keeps failing. Running
/// out of file descriptors does not go away by retrying at once, and retrying at once is what
/// makes an accept loop spin at 100% CPU.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Why sluice closed a connection (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    ReadHeaderTimeout,
    IdleTimeout,
    WriteTimeout,
    MaxConnectionAge,
    TlsHandshake,
}

impl CloseReason {
    const ALL: [CloseReason; 5] = [
        CloseReason::ReadHeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::WriteTimeout,
        CloseReason::MaxConnectionAge,
        CloseReason::TlsHandshake,
    ];

    fn label(self) -> &'static str {
        match self {
            CloseReason::ReadHeaderTimeout => "read_header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::MaxConnectionAge => "max_connection_age",
            CloseReason::TlsHandshake => "tls_handshake",
        }
    }
}

/// What one receiver's listeners of one transport count and log.
#[derive(Clone)]
pub(crate) struct ConnectionReport {
    receiver: String,
    transport: &'static str,
    open: Gauge,
    refused: Counter,
    accept_errors: Counter,
    closed: Arc<[Counter; 5]>,
    log: Arc<LogLimiter>,
}

impl ConnectionReport {
    /// Each transport has its own log limiter, so a flood on one port does not hide what
    /// happens on the other.
    pub(crate) fn new(
        metrics: &Arc<MetricsRegistry>,
        receiver: &str,
        transport: &'static str,
    ) -> ConnectionReport {
        let labels = [("receiver", receiver), ("transport", transport)];
        let log = Arc::new(LogLimiter::counted(DEFAULT_LOG_INTERVAL, metrics, &labels));
        ConnectionReport {
            receiver: receiver.to_string(),
            transport,
            open: metrics.gauge(
                "sluice_receiver_connections",
                "Connections open on a receiver",
                &labels,
            ),
            refused: metrics.counter(
                "sluice_receiver_connections_refused",
                "Connections closed as soon as accepted because max_connections were open",
                &labels,
            ),
            accept_errors: metrics.counter(
                "sluice_receiver_accept_errors",
                "Failed attempts to accept a connection (out of file descriptors, and the like)",
                &labels,
            ),
            closed: Arc::new(CloseReason::ALL.map(|reason| {
                metrics.counter(
                    "sluice_receiver_connections_closed",
                    "Connections closed by the receiver, by reason",
                    &[
                        ("receiver", receiver),
                        ("transport", transport),
                        ("reason", reason.label()),
                    ],
                )
            })),
            log,
        }
    }

    fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].add(1);
    }

    fn refused(&self, peer: SocketAddr, max_connections: usize) {
        self.refused.add(1);
        if let Some(suppressed) = self.log.allow("max_connections") {
            tracing::warn!(
                receiver = %self.receiver,
                transport = self.transport,
                %peer,
                max_connections,
                suppressed,
                "connection closed at once: max_connections are open"
            );
        }
    }

    /// Logs and counts a failed accept; returns how long to pause before the next one.
    fn accept_failed(&self, error: &std::io::Error, backoff: &mut Backoff) -> Option<Duration> {
        self.accept_errors.add(1);
        let errno = rustix::io::Errno::from_io_error(error);
        // The connection went away between the kernel's handshake and our accept: nothing is
        // wrong with the listener.
        let peer_gone = matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionRefused
        );
        if peer_gone {
            if let Some(suppressed) = self.log.allow("accept_peer_gone") {
                tracing::debug!(receiver = %self.receiver, transport = self.transport, %error, suppressed, "accept failed");
            }
            return None;
        }
        let out_of_files = matches!(
            errno,
            Some(rustix::io::Errno::MFILE) | Some(rustix::io::Errno::NFILE)
        );
        let pause = backoff.next();
        if out_of_files {
            if let Some(suppressed) = self.log.allow("accept_out_of_files") {
                tracing::warn!(
                    receiver = %self.receiver,
                    transport = self.transport,
                    %error,
                    suppressed,
                    retry_in = ?pause,
                    "cannot accept connections: out of file descriptors (raise the open-file \
                     limit, or lower max_connections)"
                );
            }
        } else if let Some(suppressed) = self.log.allow("accept_failed") {
            tracing::warn!(receiver = %self.receiver, transport = self.transport, %error, suppressed, retry_in = ?pause, "cannot accept connections");
        }
        Some(pause)
    }

    fn timed_out(&self, peer: SocketAddr, reason: CloseReason) {
        self.closed(reason);
        let (cause, what) = match reason {
            CloseReason::ReadHeaderTimeout => (
                "read_header_timeout",
                "connection closed: no request within read_header_timeout",
            ),
            CloseReason::WriteTimeout => (
                "write_timeout",
                "connection closed: an answer took longer than write_timeout",
            ),
            // Normal ends of a connection's life: not worth a warning.
            CloseReason::IdleTimeout | CloseReason::MaxConnectionAge => {
                if let Some(suppressed) = self.log.allow(reason.label()) {
                    tracing::debug!(receiver = %self.receiver, transport = self.transport, %peer, reason = reason.label(), suppressed, "closing connection");
                }
                return;
            }
            CloseReason::TlsHandshake => ("tls_handshake_timeout", "TLS handshake timed out"),
        };
        if let Some(suppressed) = self.log.allow(cause) {
            tracing::warn!(receiver = %self.receiver, transport = self.transport, %peer, suppressed, "{what}");
        }
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &std::io::Error) {
        self.closed(CloseReason::TlsHandshake);
        if let Some(suppressed) = self.log.allow("tls_handshake") {
            tracing::warn!(receiver = %self.receiver, transport = self.transport, %peer, %error, suppressed, "TLS handshake failed");
        }
    }

    /// A connection that ended with an error: malformed HTTP is the peer's fault and worth a
    /// warning; resets and the like are how connections end.
    fn connection_failed(&self, peer: SocketAddr, error: &BoxError) {
        let malformed = error
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_parse() || e.is_parse_too_large());
        if malformed {
            if let Some(suppressed) = self.log.allow("protocol_error") {
                tracing::warn!(receiver = %self.receiver, transport = self.transport, %peer, %error, suppressed, "malformed request; connection closed");
            }
        } else if let Some(suppressed) = self.log.allow("connection_error") {
            tracing::debug!(receiver = %self.receiver, transport = self.transport, %peer, %error, suppressed, "connection ended with an error");
        }
    }
}

/// Exponential pauses between failed accepts, back to the shortest after a success.
#[derive(Default)]
struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self
            .last
            .map_or(FIRST_ACCEPT_PAUSE, |d| (d * 2).min(LONGEST_ACCEPT_PAUSE));
        self.last = Some(pause);
        pause
    }

    fn reset(&mut self) {
        self.last = None;
    }
}

/// What every connection of one listener shares.
struct Listener<S> {
    builder: auto::Builder<TokioExecutor>,
    service: S,
    policy: ConnectionPolicy,
    report: ConnectionReport,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshakes: Semaphore,
}

/// Serves `listener` until `stop`: each connection with `builder` (HTTP/1 and/or HTTP/2
/// settings) and `service`, within `policy`; then lets the requests in progress finish.
pub(crate) fn serve<S, B>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    policy: ConnectionPolicy,
    report: ConnectionReport,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let shared = Arc::new(Listener {
        builder,
        service,
        policy,
        report,
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        handshakes: Semaphore::new(MAX_CONCURRENT_HANDSHAKES),
    });
    tokio::spawn(async move {
        // Dropping the set (the task aborted at the shutdown deadline) aborts every connection.
        let mut connections = JoinSet::new();
        let mut backoff = Backoff::default();
        let mut stopping = pin!(stopped(stop.clone()));
        loop {
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                _ = &mut stopping => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if let Some(pause) = shared.report.accept_failed(&error, &mut backoff) {
                        tokio::select! {
                            _ = &mut stopping => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                    continue;
                }
            };
            backoff.reset();
            // Finished connections are reaped above, so this counts the open ones.
            if connections.len() >= shared.policy.max_connections {
                shared.report.refused(peer, shared.policy.max_connections);
                drop(tcp);
                continue;
            }
            let _ = tcp.set_nodelay(true);
            connections.spawn(connection(tcp, peer, shared.clone(), stop.clone()));
        }
        // No new connections from here on; the open ones close once their requests are done.
        drop(listener);
        while connections.join_next().await.is_some() {}
    })
}

/// Counts a connection as open while it lives (aborted included).
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(gauge: &Gauge) -> OpenConnection {
        gauge.add(1);
        OpenConnection(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

async fn connection<S, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Listener<S>>,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let _open = OpenConnection::new(&shared.report.open);
    let accepted = Instant::now();
    let Some(acceptor) = &shared.tls else {
        return supervise(tcp, peer, accepted, &shared, stop).await;
    };
    let limit = shared
        .policy
        .first_request_timeout
        .unwrap_or(HANDSHAKE_TIMEOUT);
    let handshake = async {
        let _permit = shared.handshakes.acquire().await;
        acceptor.accept(tcp).await
    };
    let handshake = tokio::select! {
        done = tokio::time::timeout_at(accepted + limit, handshake) => done,
        _ = stop.wait_for(|stop| *stop) => return,
    };
    match handshake {
        Ok(Ok(tls)) => supervise(tls, peer, accepted, &shared, stop).await,
        Ok(Err(error)) => shared.report.handshake_failed(peer, &error),
        Err(_) => shared.report.timed_out(peer, CloseReason::TlsHandshake),
    }
}

/// What a connection's requests are doing, shared by its service and its supervisor.
struct Activity {
    state: Mutex<ActivityState>,
    /// Wakes the supervisor when a request starts or ends.
    changed: Notify,
}

struct ActivityState {
    started: bool,
    next_id: u64,
    /// Requests in progress and when each started.
    in_flight: BTreeMap<u64, Instant>,
    /// When the connection was last without a request in progress.
    idle_since: Instant,
}

/// What the supervisor decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    started: bool,
    in_flight: usize,
    idle_since: Instant,
    oldest_request: Option<Instant>,
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                started: false,
                next_id: 0,
                in_flight: BTreeMap::new(),
                idle_since: accepted,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent under every operation; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) -> RequestInProgress {
        let id = {
            let mut state = self.state();
            state.started = true;
            let id = state.next_id;
            state.next_id += 1;
            state.in_flight.insert(id, Instant::now());
            id
        };
        self.changed.notify_one();
        RequestInProgress {
            activity: self.clone(),
            id,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            started: state.started,
            in_flight: state.in_flight.len(),
            idle_since: state.idle_since,
            oldest_request: state.in_flight.values().min().copied(),
        }
    }
}

/// A request from its headers until its answer has been written (or abandoned).
struct RequestInProgress {
    activity: Arc<Activity>,
    id: u64,
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        {
            let mut state = self.activity.state();
            state.in_flight.remove(&self.id);
            if state.in_flight.is_empty() {
                state.idle_since = Instant::now();
            }
        }
        self.activity.changed.notify_one();
    }
}

/// The service of one connection: `inner`, with each request tracked until its answer's body
/// has been written.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let request_in_progress = self.activity.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _request: request_in_progress,
            }))
        })
    }
}

/// An answer's body; the request it answers ends when the server drops it, written or not.
struct TrackedBody<B> {
    body: B,
    _request: RequestInProgress,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What the supervisor does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// Tell the connection to go away, counting why.
    GoAway(CloseReason),
    /// Tell it to go away: its one request is answered.
    Done,
    /// Close it now, counting why.
    Close(CloseReason),
    /// Close it now: it was told to go away and has not.
    CloseAfterGrace,
}

/// Since when a connection has been told to go away, and whether for its age (whose grace
/// period then runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Closing {
    since: Instant,
    for_age: bool,
}

/// The next deadline of a connection accepted at `accepted`, and what happens then.
fn next_expiry(
    policy: &ConnectionPolicy,
    activity: &Snapshot,
    accepted: Instant,
    closing: Option<Closing>,
) -> Option<(Instant, Expiry)> {
    let mut next: Option<(Instant, Expiry)> = None;
    let mut consider = |at: Instant, what: Expiry| {
        if next.is_none_or(|(earliest, _)| at < earliest) {
            next = Some((at, what));
        }
    };
    if let (Some(limit), Some(oldest)) = (policy.write_timeout, activity.oldest_request) {
        consider(oldest + limit, Expiry::Close(CloseReason::WriteTimeout));
    }
    match closing {
        None => {
            if !activity.started
                && let Some(limit) = policy.first_request_timeout
            {
                consider(
                    accepted + limit,
                    Expiry::GoAway(CloseReason::ReadHeaderTimeout),
                );
            }
            if activity.in_flight == 0 {
                if activity.started && policy.one_request_per_connection {
                    consider(activity.idle_since, Expiry::Done);
                }
                if let Some(limit) = policy.idle_timeout {
                    consider(
                        activity.idle_since + limit,
                        Expiry::GoAway(CloseReason::IdleTimeout),
                    );
                }
            }
            if let Some(age) = policy.max_age {
                consider(
                    accepted + age,
                    Expiry::GoAway(CloseReason::MaxConnectionAge),
                );
            }
        }
        Some(closing) => {
            if activity.in_flight == 0 {
                consider(
                    closing.since.max(activity.idle_since) + CLOSE_GRACE,
                    Expiry::CloseAfterGrace,
                );
            }
            if closing.for_age
                && let (Some(age), Some(grace)) = (policy.max_age, policy.max_age_grace)
            {
                consider(
                    accepted + age + grace,
                    Expiry::Close(CloseReason::MaxConnectionAge),
                );
            }
        }
    }
    next
}

/// Serves one connection and closes it as [`ConnectionPolicy`] says.
async fn supervise<I, S, B>(
    io: I,
    peer: SocketAddr,
    accepted: Instant,
    shared: &Listener<S>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(Activity::new(accepted));
    let service = Tracked {
        inner: shared.service.clone(),
        activity: activity.clone(),
    };
    let mut conn = pin!(shared.builder.serve_connection(TokioIo::new(io), service));
    let mut closing: Option<Closing> = None;
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let snapshot = activity.snapshot();
        let next = next_expiry(&shared.policy, &snapshot, accepted, closing);
        if let Some((at, what)) = next
            && at <= now
        {
            match what {
                Expiry::GoAway(reason) => {
                    shared.report.timed_out(peer, reason);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Closing {
                        since: now,
                        for_age: reason == CloseReason::MaxConnectionAge,
                    });
                }
                Expiry::Done => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Closing {
                        since: now,
                        for_age: false,
                    });
                }
                Expiry::Close(reason) => {
                    shared.report.timed_out(peer, reason);
                    return;
                }
                Expiry::CloseAfterGrace => return,
            }
            continue;
        }
        let deadline = next.map(|(at, _)| at);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    shared.report.connection_failed(peer, &error);
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                // A connection that never sent a request has nothing to finish.
                if !snapshot.started && snapshot.in_flight == 0 {
                    return;
                }
                if closing.is_none() {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Closing { since: Instant::now(), for_age: false });
                }
            }
            _ = sleep_until(deadline) => {}
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn policy() -> ConnectionPolicy {
        ConnectionPolicy {
            max_connections: 10,
            first_request_timeout: Some(secs(10)),
            idle_timeout: Some(secs(120)),
            write_timeout: None,
            max_age: None,
            max_age_grace: None,
            one_request_per_connection: false,
        }
    }

    fn fresh(accepted: Instant) -> Snapshot {
        Snapshot {
            started: false,
            in_flight: 0,
            idle_since: accepted,
            oldest_request: None,
        }
    }

    #[test]
    fn a_silent_connection_is_told_to_go_away_after_the_header_timeout() {
        let t0 = Instant::now();
        assert_eq!(
            next_expiry(&policy(), &fresh(t0), t0, None),
            Some((
                t0 + secs(10),
                Expiry::GoAway(CloseReason::ReadHeaderTimeout)
            ))
        );
        // Without a header timeout the idle timeout still bounds it.
        let p = ConnectionPolicy {
            first_request_timeout: None,
            ..policy()
        };
        assert_eq!(
            next_expiry(&p, &fresh(t0), t0, None),
            Some((t0 + secs(120), Expiry::GoAway(CloseReason::IdleTimeout)))
        );
        // Without either, nothing does.
        let p = ConnectionPolicy {
            first_request_timeout: None,
            idle_timeout: None,
            ..policy()
        };
        assert_eq!(next_expiry(&p, &fresh(t0), t0, None), None);
    }

    #[test]
    fn a_request_in_progress_is_not_idle_and_idleness_counts_from_the_last_answer() {
        let t0 = Instant::now();
        let busy = Snapshot {
            started: true,
            in_flight: 2,
            idle_since: t0,
            oldest_request: Some(t0 + secs(1)),
        };
        assert_eq!(next_expiry(&policy(), &busy, t0, None), None);
        let idle = Snapshot {
            started: true,
            in_flight: 0,
            idle_since: t0 + secs(50),
            oldest_request: None,
        };
        assert_eq!(
            next_expiry(&policy(), &idle, t0, None),
            Some((t0 + secs(170), Expiry::GoAway(CloseReason::IdleTimeout)))
        );
        // With keep-alives off, the first answer ends the connection.
        let p = ConnectionPolicy {
            one_request_per_connection: true,
            ..policy()
        };
        assert_eq!(
            next_expiry(&p, &idle, t0, None),
            Some((t0 + secs(50), Expiry::Done))
        );
    }

    #[test]
    fn the_oldest_request_bounds_the_write_timeout() {
        let t0 = Instant::now();
        let p = ConnectionPolicy {
            write_timeout: Some(secs(5)),
            ..policy()
        };
        let busy = Snapshot {
            started: true,
            in_flight: 2,
            idle_since: t0,
            oldest_request: Some(t0 + secs(1)),
        };
        assert_eq!(
            next_expiry(&p, &busy, t0, None),
            Some((t0 + secs(6), Expiry::Close(CloseReason::WriteTimeout)))
        );
    }

    #[test]
    fn a_connection_told_to_go_away_is_closed_after_a_grace_once_idle() {
        let t0 = Instant::now();
        let closing = Some(Closing {
            since: t0 + secs(10),
            for_age: false,
        });
        assert_eq!(
            next_expiry(&policy(), &fresh(t0), t0, closing),
            Some((t0 + secs(10) + CLOSE_GRACE, Expiry::CloseAfterGrace))
        );
        // Requests in progress are left to finish.
        let busy = Snapshot {
            started: true,
            in_flight: 1,
            idle_since: t0,
            oldest_request: Some(t0 + secs(9)),
        };
        assert_eq!(next_expiry(&policy(), &busy, t0, closing), None);
    }

    #[test]
    fn max_connection_age_goes_away_then_closes_after_the_grace() {
        let t0 = Instant::now();
        let p = ConnectionPolicy {
            max_age: Some(secs(60)),
            max_age_grace: Some(secs(5)),
            first_request_timeout: None,
            idle_timeout: None,
            ..policy()
        };
        let busy = Snapshot {
            started: true,
            in_flight: 1,
            idle_since: t0,
            oldest_request: Some(t0 + secs(30)),
        };
        assert_eq!(
            next_expiry(&p, &busy, t0, None),
            Some((t0 + secs(60), Expiry::GoAway(CloseReason::MaxConnectionAge)))
        );
        let aged = Some(Closing {
            since: t0 + secs(60),
            for_age: true,
        });
        assert_eq!(
            next_expiry(&p, &busy, t0, aged),
            Some((t0 + secs(65), Expiry::Close(CloseReason::MaxConnectionAge)))
        );
    }

    #[test]
    fn accept_pauses_grow_to_a_second_and_start_over_after_a_success() {
        let mut backoff = Backoff::default();
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert_eq!(pauses[0], FIRST_ACCEPT_PAUSE);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(pauses[9], LONGEST_ACCEPT_PAUSE);
        backoff.reset();
        assert_eq!(backoff.next(), FIRST_ACCEPT_PAUSE);
    }
}
