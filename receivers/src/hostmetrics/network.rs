//! `network`: `/proc/net/dev` per interface and TCP connections by state from
//! `/proc/net/tcp{,6}`.

use std::collections::BTreeMap;

use procfs::FromBufReadSI;
use procfs::net::{TcpNetEntries, TcpState};

use super::config::Filter;
use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};

const INTERFACE: &[Attr] = &[
    attr("device", "network.interface.name"),
    attr("direction", "network.io.direction"),
];
use super::{Ctx, ScrapeError};

pub const IO: MetricDef = MetricDef::new(
    "system.network.io",
    "system.network.io",
    "By",
    "By",
    Kind::Counter,
    true,
    "Bytes transmitted and received.",
)
.attrs(INTERFACE);
pub const PACKETS: MetricDef = MetricDef::new(
    "system.network.packet.count",
    "system.network.packets",
    "{packet}",
    "{packets}",
    Kind::Counter,
    true,
    "Packets transmitted and received.",
)
.attrs(INTERFACE);
pub const ERRORS: MetricDef = MetricDef::new(
    "system.network.errors",
    "system.network.errors",
    "{error}",
    "{errors}",
    Kind::Counter,
    true,
    "Errors detected while transmitting and receiving.",
)
.attrs(INTERFACE);
pub const DROPPED: MetricDef = MetricDef::new(
    "system.network.packet.dropped",
    "system.network.dropped",
    "{packet}",
    "{packets}",
    Kind::Counter,
    true,
    "Packets dropped although there was no error.",
)
.attrs(INTERFACE);
pub const CONNECTIONS: MetricDef = MetricDef::new(
    "system.network.connection.count",
    "system.network.connections",
    "{connection}",
    "{connections}",
    Kind::UpDown,
    true,
    "TCP connections by state.",
)
.attrs(&[
    attr("protocol", "network.transport"),
    attr("state", "network.connection.state"),
]);
// Semantic conventions have no conntrack metrics: both namings use the collector's names.
pub const CONNTRACK_COUNT: MetricDef = MetricDef::new(
    "system.network.conntrack.count",
    "system.network.conntrack.count",
    "{entry}",
    "{entries}",
    Kind::UpDown,
    false,
    "Entries in the connection tracking table.",
);
pub const CONNTRACK_MAX: MetricDef = MetricDef::new(
    "system.network.conntrack.max",
    "system.network.conntrack.max",
    "{entry}",
    "{entries}",
    Kind::UpDown,
    false,
    "Size limit of the connection tracking table.",
);
pub const METRICS: &[MetricDef] = &[
    IO,
    PACKETS,
    ERRORS,
    DROPPED,
    CONNECTIONS,
    CONNTRACK_COUNT,
    CONNTRACK_MAX,
];

pub fn scrape(ctx: &Ctx, filter: &Filter, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let devices: procfs::net::InterfaceDeviceStatus = ctx.read("proc/net/dev")?;
    let iface = out.pick("network.interface.name", "device");
    let direction = out.pick("network.io.direction", "direction");
    // Sorted so output is stable from one scrape to the next.
    let devices: BTreeMap<_, _> = devices.0.into_iter().collect();
    for (name, d) in &devices {
        if !filter.allows(name) {
            continue;
        }
        let at = |dir: &str| vec![kv(iface, name.as_str()), kv(direction, dir)];
        out.point(&IO, at("receive"), d.recv_bytes);
        out.point(&IO, at("transmit"), d.sent_bytes);
        out.point(&PACKETS, at("receive"), d.recv_packets);
        out.point(&PACKETS, at("transmit"), d.sent_packets);
        out.point(&ERRORS, at("receive"), d.recv_errs);
        out.point(&ERRORS, at("transmit"), d.sent_errs);
        out.point(&DROPPED, at("receive"), d.recv_drop);
        out.point(&DROPPED, at("transmit"), d.sent_drop);
    }
    let mut result = Ok(());
    if out.on(&CONNECTIONS)
        && let Err(e) = connections(ctx, out)
    {
        result = Err(e);
    }
    for (def, file) in [
        (
            &CONNTRACK_COUNT,
            "proc/sys/net/netfilter/nf_conntrack_count",
        ),
        (&CONNTRACK_MAX, "proc/sys/net/netfilter/nf_conntrack_max"),
    ] {
        if !out.on(def) {
            continue;
        }
        // Without the nf_conntrack module there is no table to report on.
        match ctx.read_string(file) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) => out.point(def, vec![], n),
                Err(e) => result = Err(ScrapeError::parse(file, e)),
            },
            Err(e) => result = Err(e),
        }
    }
    result
}

fn connections(ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    let mut read_any = false;
    for file in ["proc/net/tcp", "proc/net/tcp6"] {
        // A host without IPv6 has no tcp6 table; one table is enough.
        let Ok(text) = ctx.read_string(file) else {
            continue;
        };
        let entries = TcpNetEntries::from_buf_read(text.as_bytes(), &ctx.system_info())
            .map_err(|e| ScrapeError::Parse(format!("{file}: {e}")))?;
        read_any = true;
        for e in entries.0 {
            *counts.entry(state_name(&e.state)).or_default() += 1;
        }
    }
    if !read_any {
        return Err(ScrapeError::Read(
            ctx.path("proc/net/tcp").display().to_string(),
        ));
    }
    let semconv = out.semconv();
    for ((state, collector_state), n) in counts {
        let attrs = if semconv {
            vec![
                kv("network.transport", "tcp"),
                kv("network.connection.state", state),
            ]
        } else {
            vec![kv("protocol", "tcp"), kv("state", collector_state)]
        };
        out.point(&CONNECTIONS, attrs, n);
    }
    Ok(())
}

/// (semconv `network.connection.state`, the collector's `state` as gopsutil names it).
fn state_name(state: &TcpState) -> (&'static str, &'static str) {
    match state {
        TcpState::Established => ("established", "ESTABLISHED"),
        TcpState::SynSent => ("syn_sent", "SYN_SENT"),
        TcpState::SynRecv | TcpState::NewSynRecv => ("syn_received", "SYN_RECV"),
        TcpState::FinWait1 => ("fin_wait_1", "FIN_WAIT1"),
        TcpState::FinWait2 => ("fin_wait_2", "FIN_WAIT2"),
        TcpState::TimeWait => ("time_wait", "TIME_WAIT"),
        TcpState::Close => ("close", "CLOSE"),
        TcpState::CloseWait => ("close_wait", "CLOSE_WAIT"),
        TcpState::LastAck => ("last_ack", "LAST_ACK"),
        TcpState::Listen => ("listen", "LISTEN"),
        TcpState::Closing => ("closing", "CLOSING"),
    }
}
