//! What the `syslog`, `tcplog` and `udplog` receivers share: the TCP and UDP listeners, the
//! framing of messages, the cap on connections, the `operators`, and the delivery of batches
//! with acknowledgements.
//!
//! Each connection (or UDP reader) frames what it reads into messages, makes entries of them
//! (the receiver's own parsing, syslog's, happens there) and hands them to one task over a
//! bounded channel. That task runs the operators, gathers entries into batches (cut at
//! [`MAX_BATCH_RECORDS`] or after [`BATCH_WINDOW`]) and sends them, a bounded number at once.
//! While the pipeline pushes back, the channel fills and TCP connections stop being read, so
//! their senders are slowed by TCP itself; UDP cannot be slowed, so datagrams that find the
//! channel full are dropped and counted.

pub mod config;
pub mod framing;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic};
use sluice_pipeline::admission::{Admission, Refusal};
use sluice_pipeline::config_keys::problem;
use sluice_pipeline::telemetry::{Counter, DEFAULT_LOG_INTERVAL, Gauge, LogLimiter};
use sluice_pipeline::{BuildContext, Lifecycle, Receiver, ReceiverOutputs, StartError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::filelog::config::{MultilineConfig, RetryOnFailure};
use crate::filelog::emit::BatchBuilder;
use crate::filelog::encoding::FileEncoding;
use crate::filelog::operators::expr::ExprString;
use crate::filelog::operators::{self, Entry, Map, Operators, Value};
use crate::filelog::split::Splitter;
use crate::filelog::{Shared, attempt_until_done};
use framing::{Counts, Delimiter, Framing, Stream};

/// Entries in one batch, at most.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Approximate bytes in one batch, at most.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// A batch that is not full is sent this long after its first entry.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Batches sent and not yet acknowledged, at most; then the channel fills and reading pauses.
const MAX_IN_FLIGHT: usize = 16;
/// Reads of one TCP connection (or datagrams) waiting for the operators, per receiver.
const TCP_QUEUE: usize = 64;
/// One read of a TCP connection.
const READ_SIZE: usize = 64 * 1024;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// The UDP socket's receive buffer asked of the kernel.
const UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// A multiline entry is taken as complete when its connection sent nothing for this long.
const FORCE_FLUSH: Duration = Duration::from_millis(500);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often operators that hold entries (`recombine`) are asked for the ones held too long.
const OPERATOR_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Pause after a failed `accept` (out of file descriptors does not pass by retrying at once).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Errors of configuring an input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Encoding(String),
    #[error("{0}")]
    Multiline(String),
    #[error("{0}")]
    Tls(String),
}

/// Turns a message's entry into its parsed form (syslog); kept as it is when absent.
pub type Parse = Arc<dyn Fn(&mut Entry) + Send + Sync>;

/// Where messages come from.
pub enum Listen {
    Tcp {
        address: String,
        tls: Option<Arc<rustls::ServerConfig>>,
        max_connections: Option<usize>,
        idle_timeout: Option<Duration>,
    },
    Udp {
        address: String,
        readers: usize,
        queue: usize,
    },
}

impl Listen {
    fn transport(&self) -> &'static str {
        match self {
            Listen::Tcp { .. } => "tcp",
            Listen::Udp { .. } => "udp",
        }
    }
}

/// The framing keys both inputs share, with what the receiver adds (syslog's octet
/// counting and NUL trailer).
pub struct FramingKeys<'a> {
    pub encoding: &'a str,
    pub multiline: Option<&'a MultilineConfig>,
    pub max_log_size: usize,
    pub max_octets: usize,
    pub one_log_per_packet: bool,
    pub keep_leading: bool,
    pub keep_trailing: bool,
    pub octet_counting: bool,
    pub nul_trailer: bool,
}

impl FramingKeys<'_> {
    pub fn build(&self) -> Result<Framing, InputError> {
        let encoding = FileEncoding::from_name(self.encoding).map_err(InputError::Encoding)?;
        let raw = matches!(encoding, FileEncoding::Nop);
        let delimiter = if self.nul_trailer {
            Delimiter::Nul
        } else {
            Delimiter::Split(Splitter::new(self.multiline, raw).map_err(InputError::Multiline)?)
        };
        Ok(Framing {
            delimiter,
            octet_counting: self.octet_counting,
            max_log_size: self.max_log_size,
            max_octets: self.max_octets,
            one_log_per_packet: self.one_log_per_packet,
            keep_leading: self.keep_leading,
            keep_trailing: self.keep_trailing,
            encoding,
        })
    }
}

/// The TLS configuration of a `tls:` section, read now so a bad file is a config error.
pub fn server_tls(
    settings: Option<&crate::tls::ServerTlsSettings>,
) -> Result<Option<Arc<rustls::ServerConfig>>, InputError> {
    settings
        .map(|t| t.server_config(&[]))
        .transpose()
        .map_err(InputError::Tls)
}

/// Everything a receiver's factory gathered from its config.
pub struct Parts {
    pub listen: Listen,
    pub framing: Framing,
    pub add_attributes: bool,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub resource: std::collections::BTreeMap<String, String>,
    /// The raw `operators` node and its key (`operators`).
    pub operators: Option<sluice_config::Node>,
    pub retry_on_failure: Option<RetryOnFailure>,
    pub parse: Option<Parse>,
    /// Where the input's own keys are (`tcp.` for syslog, empty for tcplog), for errors.
    pub input_prefix: &'static str,
}

/// What each connection and reader needs to make entries.
struct Intake {
    framing: Framing,
    add_attributes: bool,
    attributes: Vec<(String, ExprString)>,
    resource: Vec<(String, ExprString)>,
    parse: Option<Parse>,
    tx: mpsc::Sender<Vec<Entry>>,
    counters: Counters,
    name: String,
}

#[derive(Clone)]
struct Counters {
    open: Gauge,
    connections_refused: Counter,
    truncated: Counter,
    dropped: Counter,
    refused: Counter,
    log: Arc<LogLimiter>,
}

/// What `start` takes once.
struct Prepared {
    listen: Listen,
    framing: Framing,
    add_attributes: bool,
    attributes: Vec<(String, ExprString)>,
    resource: Vec<(String, ExprString)>,
    parse: Option<Parse>,
    operators: Operators,
}

struct Running {
    listeners: Vec<tokio::task::JoinHandle<()>>,
    drain: watch::Sender<Option<Instant>>,
    processor: tokio::task::JoinHandle<()>,
}

/// A `syslog`, `tcplog` or `udplog` receiver.
pub struct NetlogReceiver {
    shared: Arc<Shared>,
    counters: Counters,
    admission: Admission,
    prepared: Mutex<Option<Prepared>>,
    running: Mutex<Option<Running>>,
}

impl Receiver for NetlogReceiver {}

/// Builds the receiver from what its factory decoded; `errors` are the problems found so far.
pub fn build(
    config: &ComponentConfig,
    outputs: ReceiverOutputs,
    ctx: &BuildContext,
    parts: Parts,
    mut errors: Vec<Diagnostic>,
) -> Result<Arc<NetlogReceiver>, ConfigErrors> {
    let operators = operators::build(
        parts.operators.as_ref(),
        &format!("{}.operators", config.path),
    )
    .map_err(|mut e| errors.append(&mut e))
    .ok();
    let mut compile = |key: &str, map: &std::collections::BTreeMap<String, String>| {
        let mut out = Vec::new();
        for (k, v) in map {
            match ExprString::compile(v) {
                Ok(e) => out.push((k.clone(), e)),
                Err(e) => errors.push(problem(
                    config,
                    &format!("{}{key}.{k}", parts.input_prefix),
                    e.to_string(),
                )),
            }
        }
        out
    };
    let attributes = compile("attributes", &parts.attributes);
    let resource = compile("resource", &parts.resource);
    let (Some(operators), true) = (operators, errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    let name = config.id.to_string();
    let transport = parts.listen.transport();
    let metrics = &ctx.telemetry.metrics;
    let labels = [("receiver", name.as_str()), ("transport", transport)];
    let shared = Arc::new(Shared::new(
        &name,
        transport,
        outputs.logs,
        parts.retry_on_failure,
        metrics,
    ));
    let counters = Counters {
        open: metrics.gauge(
            "sluice_receiver_connections",
            "Connections open on a receiver",
            &labels,
        ),
        connections_refused: metrics.counter(
            "sluice_receiver_connections_refused",
            "Connections closed as soon as accepted because max_connections were open",
            &labels,
        ),
        truncated: metrics.counter(
            "sluice_receiver_truncated_log_records",
            "Log messages longer than max_log_size (or max_octets), cut there",
            &labels,
        ),
        dropped: metrics.counter(
            "sluice_receiver_dropped_log_records",
            "UDP log messages dropped because the pipeline could not take them in time",
            &labels,
        ),
        refused: shared.refused.clone(),
        log: Arc::new(LogLimiter::new(DEFAULT_LOG_INTERVAL)),
    };
    Ok(Arc::new(NetlogReceiver {
        shared,
        counters,
        admission: ctx.admission.clone(),
        prepared: Mutex::new(Some(Prepared {
            listen: parts.listen,
            framing: parts.framing,
            add_attributes: parts.add_attributes,
            attributes,
            resource,
            parse: parts.parse,
            operators,
        })),
        running: Mutex::new(None),
    }))
}

#[async_trait]
impl Lifecycle for NetlogReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let name = self.shared.name.clone();
        let Some(prepared) = self.prepared.lock().ok().and_then(|mut p| p.take()) else {
            return Ok(());
        };
        if self.shared.consumer.is_none() {
            tracing::warn!(receiver = %name, "no logs pipeline takes from this receiver; it does not listen");
            return Ok(());
        }
        let queue = match &prepared.listen {
            Listen::Tcp { .. } => TCP_QUEUE,
            Listen::Udp { queue, .. } => *queue,
        };
        let (tx, rx) = mpsc::channel::<Vec<Entry>>(queue);
        let intake = Arc::new(Intake {
            framing: prepared.framing,
            add_attributes: prepared.add_attributes,
            attributes: prepared.attributes,
            resource: prepared.resource,
            parse: prepared.parse,
            tx,
            counters: self.counters.clone(),
            name: name.clone(),
        });
        let mut listeners = Vec::new();
        match prepared.listen {
            Listen::Tcp {
                address,
                tls,
                max_connections,
                idle_timeout,
            } => {
                let listener = TcpListener::bind(&address).await.map_err(|e| {
                    StartError::new(&name, format!("cannot listen on {address} (TCP): {e}"))
                })?;
                tracing::info!(receiver = %name, address = %listener.local_addr().map_or(address.clone(), |a| a.to_string()), tls = tls.is_some(), "listening for logs over TCP");
                let tcp = Tcp {
                    intake,
                    tls: tls.map(tokio_rustls::TlsAcceptor::from),
                    limit: max_connections.map(|n| (Arc::new(Semaphore::new(n)), n)),
                    idle_timeout,
                };
                listeners.push(tokio::spawn(tcp.serve(listener)));
            }
            Listen::Udp {
                address,
                readers,
                queue: _,
            } => {
                let socket = UdpSocket::bind(&address).await.map_err(|e| {
                    StartError::new(&name, format!("cannot listen on {address} (UDP): {e}"))
                })?;
                tracing::info!(receiver = %name, address = %socket.local_addr().map_or(address.clone(), |a| a.to_string()), "listening for logs over UDP");
                // Bursts wait in the kernel while the readers are not scheduled; the kernel
                // caps the size at net.core.rmem_max.
                if let Err(e) =
                    rustix::net::sockopt::set_socket_recv_buffer_size(&socket, UDP_RECEIVE_BUFFER)
                {
                    tracing::debug!(receiver = %name, error = %e, "cannot enlarge the UDP receive buffer");
                }
                let socket = Arc::new(socket);
                for _ in 0..readers.max(1) {
                    listeners.push(tokio::spawn(serve_udp(socket.clone(), intake.clone())));
                }
            }
        }
        let (drain, draining) = watch::channel(None);
        let processor = tokio::spawn(process(
            self.shared.clone(),
            rx,
            prepared.operators,
            self.admission.clone(),
            draining,
        ));
        if let Ok(mut running) = self.running.lock() {
            *running = Some(Running {
                listeners,
                drain,
                processor,
            });
        }
        Ok(())
    }

    /// Stops listening (open connections are closed), then sends what was read, waiting for
    /// its acknowledgements until the deadline.
    async fn shutdown(&self, deadline: Instant) {
        let Some(running) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        for listener in &running.listeners {
            listener.abort();
        }
        for listener in running.listeners {
            let _ = listener.await;
        }
        let _ = running.drain.send(Some(deadline));
        let abort = running.processor.abort_handle();
        if tokio::time::timeout_at(deadline + Duration::from_secs(1), running.processor)
            .await
            .is_err()
        {
            tracing::warn!(receiver = %self.shared.name, "log records were still unacknowledged at the shutdown deadline");
            abort.abort();
        }
    }
}

impl Intake {
    /// The entries of the messages of one read, with the `net.*` attributes when asked.
    fn entries(
        &self,
        messages: &mut Vec<Vec<u8>>,
        net: Option<&Map>,
        counts: &mut Counts,
    ) -> Vec<Entry> {
        if counts.truncated > 0 {
            self.counters.truncated.add(counts.truncated);
            if let Some(suppressed) = self.counters.log.allow("truncated") {
                tracing::warn!(receiver = %self.name, messages = counts.truncated, max_log_size = self.framing.max_log_size, suppressed, "messages longer than the size limit were cut there");
            }
            counts.truncated = 0;
        }
        let observed = now_nanos();
        messages
            .drain(..)
            .map(|message| {
                let mut entry = Entry::new(self.framing.encoding.body(&message), observed);
                if let Some(net) = net {
                    entry.attributes = net.clone();
                }
                for (key, value) in &self.attributes {
                    if let Ok(v) = value.render(&entry) {
                        entry.attributes.insert(key.clone(), v);
                    }
                }
                for (key, value) in &self.resource {
                    if let Ok(v) = value.render(&entry) {
                        entry.resource.insert(key.clone(), v);
                    }
                }
                if let Some(parse) = &self.parse {
                    parse(&mut entry);
                }
                entry
            })
            .collect()
    }

    /// Upstream's `add_attributes` (ports as strings, as upstream sets them).
    fn net_attributes(
        &self,
        transport: &str,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Option<Map> {
        if !self.add_attributes {
            return None;
        }
        let mut map = Map::new();
        map.insert("net.transport".into(), Value::Str(transport.into()));
        map.insert("net.peer.ip".into(), Value::Str(peer.ip().to_string()));
        map.insert("net.peer.port".into(), Value::Str(peer.port().to_string()));
        if let Some(local) = local {
            map.insert("net.host.ip".into(), Value::Str(local.ip().to_string()));
            map.insert("net.host.port".into(), Value::Str(local.port().to_string()));
        }
        Some(map)
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

struct Tcp {
    intake: Arc<Intake>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limit: Option<(Arc<Semaphore>, usize)>,
    idle_timeout: Option<Duration>,
}

impl Tcp {
    /// Accepts connections until aborted; dropping the set of connections closes them all.
    async fn serve(self, listener: TcpListener) {
        let this = Arc::new(self);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let permit = match &this.limit {
                            Some((slots, max)) => match slots.clone().try_acquire_owned() {
                                Ok(p) => Some(p),
                                Err(_) => {
                                    this.refuse(peer, *max);
                                    drop(tcp);
                                    continue;
                                }
                            },
                            None => None,
                        };
                        connections.spawn(this.clone().connection(tcp, peer, permit));
                    }
                    Err(e) => {
                        if let Some(suppressed) = this.intake.counters.log.allow("accept") {
                            tracing::warn!(receiver = %this.intake.name, error = %e, suppressed, "accept failed");
                        }
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    fn refuse(&self, peer: SocketAddr, max_connections: usize) {
        self.intake.counters.connections_refused.add(1);
        if let Some(suppressed) = self.intake.counters.log.allow("max_connections") {
            tracing::warn!(receiver = %self.intake.name, %peer, max_connections, suppressed, "connection closed at once: max_connections are open");
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        _permit: Option<OwnedSemaphorePermit>,
    ) {
        let open = &self.intake.counters.open;
        open.add(1);
        let local = tcp.local_addr().ok();
        let net = self.intake.net_attributes("IP.TCP", peer, local);
        match &self.tls {
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.read(tls, net.as_ref()).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => self.read(tcp, net.as_ref()).await,
        }
        open.add(-1);
    }

    async fn read<R: AsyncRead + Unpin>(&self, mut reader: R, net: Option<&Map>) {
        let intake = &self.intake;
        let patterns = matches!(
            intake.framing.delimiter,
            Delimiter::Split(Splitter::LineStart { .. } | Splitter::LineEnd { .. })
        );
        let mut stream = Stream::default();
        let mut buf = vec![0u8; READ_SIZE];
        let mut messages = Vec::new();
        let mut counts = Counts::default();
        let mut idle = Duration::ZERO;
        loop {
            // A multiline entry has no end of its own: the connection going quiet ends it.
            let wait = match (patterns && stream.has_data(), self.idle_timeout) {
                (true, Some(limit)) => Some(FORCE_FLUSH.min(limit.saturating_sub(idle))),
                (true, None) => Some(FORCE_FLUSH),
                (false, Some(limit)) => Some(limit.saturating_sub(idle)),
                (false, None) => None,
            };
            let started = Instant::now();
            let read = match wait {
                Some(wait) => tokio::time::timeout(wait, reader.read(&mut buf)).await.ok(),
                None => Some(reader.read(&mut buf).await),
            };
            let (data, end): (&[u8], bool) = match read {
                Some(Ok(0)) => (&[], true),
                Some(Ok(n)) => {
                    idle = Duration::ZERO;
                    (&buf[..n], false)
                }
                Some(Err(e)) => {
                    tracing::debug!(receiver = %intake.name, error = %e, "connection read failed");
                    (&[], true)
                }
                None => {
                    idle += started.elapsed();
                    let timed_out = self.idle_timeout.is_some_and(|limit| idle >= limit);
                    if !timed_out {
                        intake
                            .framing
                            .feed(&mut stream, &[], true, &mut messages, &mut counts);
                        if !self.hand_over(&mut messages, net, &mut counts).await {
                            return;
                        }
                        continue;
                    }
                    (&[], true)
                }
            };
            intake
                .framing
                .feed(&mut stream, data, end, &mut messages, &mut counts);
            // Waits while the operators' queue is full: this connection is not read meanwhile.
            if !self.hand_over(&mut messages, net, &mut counts).await || end {
                return;
            }
        }
    }

    async fn hand_over(
        &self,
        messages: &mut Vec<Vec<u8>>,
        net: Option<&Map>,
        counts: &mut Counts,
    ) -> bool {
        if messages.is_empty() {
            return true;
        }
        let entries = self.intake.entries(messages, net, counts);
        self.intake.tx.send(entries).await.is_ok()
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, intake: Arc<Intake>) {
    let local = socket.local_addr().ok();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut messages = Vec::new();
    let mut counts = Counts::default();
    loop {
        let mut received = match socket.recv_from(&mut buf).await {
            Ok(r) => Some(r),
            Err(e) => {
                // ICMP errors of earlier sends surface here on some systems; the socket is fine.
                tracing::debug!(receiver = %intake.name, error = %e, "UDP receive failed");
                continue;
            }
        };
        // Everything already waiting goes in one hand-over: a burst of datagrams then takes
        // a few places in the queue, not one each.
        let mut entries = Vec::new();
        while let Some((n, peer)) = received {
            intake
                .framing
                .datagram(&buf[..n], &mut messages, &mut counts);
            if !messages.is_empty() {
                let net = intake.net_attributes("IP.UDP", peer, local);
                entries.extend(intake.entries(&mut messages, net.as_ref(), &mut counts));
            }
            received = if entries.len() < MAX_BATCH_RECORDS {
                socket.try_recv_from(&mut buf).ok()
            } else {
                None
            };
        }
        if entries.is_empty() {
            continue;
        }
        match intake.tx.try_send(entries) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(entries)) => {
                let lost = entries.len() as u64;
                intake.counters.dropped.add(lost);
                intake.counters.refused.add(lost);
                if let Some(suppressed) = intake.counters.log.allow("udp_dropped") {
                    tracing::warn!(receiver = %intake.name, messages = lost, suppressed, "the pipeline is not keeping up: UDP log messages dropped (UDP senders cannot be slowed down)");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Runs the operators, gathers batches and sends them until every intake is gone, then
/// sends what is left and waits for the acknowledgements until the drain deadline.
async fn process(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Vec<Entry>>,
    mut operators: Operators,
    admission: Admission,
    draining: watch::Receiver<Option<Instant>>,
) {
    let mut sender = Sender {
        shared,
        admission,
        draining,
        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        tasks: JoinSet::new(),
        builder: BatchBuilder::default(),
        window: None,
    };
    let mut emitted = Vec::new();
    let holds = operators.holds();
    let mut tick = tokio::time::interval(OPERATOR_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let window = sender.window;
        tokio::select! {
            received = rx.recv() => match received {
                Some(entries) => {
                    for entry in entries {
                        operators.process(entry, &mut emitted);
                    }
                    sender.push(&mut emitted).await;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(window.unwrap_or_else(Instant::now)), if window.is_some() => {
                sender.send().await;
            }
            _ = tick.tick(), if holds => {
                operators.flush(std::time::Instant::now(), false, &mut emitted);
                sender.push(&mut emitted).await;
            }
        }
        while sender.tasks.try_join_next().is_some() {}
    }
    operators.flush(std::time::Instant::now(), true, &mut emitted);
    sender.push(&mut emitted).await;
    sender.send().await;
    while sender.tasks.join_next().await.is_some() {}
}

struct Sender {
    shared: Arc<Shared>,
    admission: Admission,
    draining: watch::Receiver<Option<Instant>>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    builder: BatchBuilder,
    /// When the batch being gathered is sent if it does not fill first.
    window: Option<Instant>,
}

impl Sender {
    async fn push(&mut self, emitted: &mut Vec<Entry>) {
        for entry in emitted.drain(..) {
            self.builder.push(entry);
            if self.builder.records() >= MAX_BATCH_RECORDS
                || self.builder.bytes() >= MAX_BATCH_BYTES
            {
                self.send().await;
            }
        }
        if self.window.is_none() && self.builder.records() > 0 {
            self.window = Some(Instant::now() + BATCH_WINDOW);
        }
    }

    /// Sends the batch gathered so far, waiting first for a free slot (and for a memory
    /// limiter to let it in): while it waits, nothing more is taken from the intakes.
    async fn send(&mut self) {
        self.window = None;
        let Some(mut batch) = self.builder.take() else {
            return;
        };
        loop {
            match self.admission.reserve(batch.bytes()) {
                Ok(permit) => {
                    batch.hold(permit);
                    break;
                }
                Err(Refusal::TooLarge { .. }) => break,
                Err(refusal) => {
                    if self.draining.borrow().is_some() {
                        break;
                    }
                    tokio::time::sleep(refusal.retry_after().min(Duration::from_millis(200))).await;
                }
            }
        }
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let shared = self.shared.clone();
        let mut draining = self.draining.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            attempt_until_done(&shared, &batch, &mut draining).await;
        });
    }
}
