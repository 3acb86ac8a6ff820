//! `nfs`: NFS client counters from `/proc/net/rpc/nfs` and server counters from
//! `/proc/net/rpc/nfsd`, each read when the host has it (its kernel module is loaded). The
//! OTel Collector's names are the semantic conventions' here, so both namings agree.

use super::emit::{Attr, Emitter, Kind, MetricDef, attr, kv};
use super::{Ctx, ScrapeError};

const TRANSPORT: &[Attr] = &[attr("network.transport", "network.transport")];
const PROCEDURE: &[Attr] = &[
    attr("onc_rpc.version", "onc_rpc.version"),
    attr("onc_rpc.procedure.name", "onc_rpc.procedure.name"),
];
const OPERATION: &[Attr] = &[
    attr("onc_rpc.version", "onc_rpc.version"),
    attr("nfs.operation.name", "nfs.operation.name"),
];

const fn counter(name: &'static str, unit: &'static str, description: &'static str) -> MetricDef {
    MetricDef::new(name, name, unit, unit, Kind::Counter, true, description)
}

pub const CLIENT_NET_COUNT: MetricDef = counter(
    "nfs.client.net.count",
    "{record}",
    "TCP segments and UDP datagrams the NFS client handled.",
)
.attrs(TRANSPORT)
.formerly(&[
    "system.nfs.net.count",
    "system.nfs.net.udp.count",
    "system.nfs.net.tcp.count",
]);
pub const CLIENT_TCP_ACCEPTED: MetricDef = counter(
    "nfs.client.net.tcp.connection.accepted",
    "{connection}",
    "TCP connections the NFS client accepted.",
)
.formerly(&["system.nfs.net.tcp.connection.count"]);
pub const CLIENT_RPC_COUNT: MetricDef = counter(
    "nfs.client.rpc.count",
    "{request}",
    "RPCs the NFS client sent.",
)
.formerly(&["system.nfs.rpc.count"]);
pub const CLIENT_RPC_RETRANSMITS: MetricDef = counter(
    "nfs.client.rpc.retransmit.count",
    "{retransmit}",
    "RPCs the NFS client retransmitted.",
)
.formerly(&["system.nfs.rpc.retransmit.count"]);
pub const CLIENT_RPC_AUTHREFRESH: MetricDef = counter(
    "nfs.client.rpc.authrefresh.count",
    "{authrefresh}",
    "Authentication refreshes of the NFS client.",
)
.formerly(&["system.nfs.rpc.authrefresh.count"]);
pub const CLIENT_PROCEDURES: MetricDef = counter(
    "nfs.client.procedure.count",
    "{procedure}",
    "NFSv3 procedures the client called.",
)
.attrs(PROCEDURE)
.formerly(&["system.nfs.procedure.count"]);
pub const CLIENT_OPERATIONS: MetricDef = counter(
    "nfs.client.operation.count",
    "{operation}",
    "NFSv4 operations the client called (the kernel calls them procedures).",
)
.attrs(OPERATION)
.formerly(&["system.nfs.operation.count"]);
pub const SERVER_REPCACHE: MetricDef = counter(
    "nfs.server.repcache.requests",
    "{request}",
    "Requests to the NFS server's reply cache, by hit status.",
)
.attrs(&[attr(
    "nfs.server.repcache.status",
    "nfs.server.repcache.status",
)])
.formerly(&[
    "system.nfsd.repcache.hits",
    "system.nfsd.repcache.misses",
    "system.nfsd.repcache.nocache",
]);
pub const SERVER_STALE_FH: MetricDef = counter(
    "nfs.server.fh.stale.count",
    "{fh}",
    "Stale file handles the NFS server saw.",
)
.formerly(&["system.nfsd.fh.stale.count"]);
pub const SERVER_IO: MetricDef = counter(
    "nfs.server.io",
    "By",
    "Bytes the NFS server returned to reads (receive) and took from writes (transmit).",
)
.attrs(&[attr("network.io.direction", "network.io.direction")])
.formerly(&["system.nfsd.io.read.count", "system.nfsd.io.write.count"]);
pub const SERVER_THREADS: MetricDef = MetricDef::new(
    "nfs.server.thread.count",
    "nfs.server.thread.count",
    "{thread}",
    "{thread}",
    Kind::UpDown,
    true,
    "Threads of the NFS server.",
)
.formerly(&["system.nfsd.thread.count"]);
pub const SERVER_NET_COUNT: MetricDef = counter(
    "nfs.server.net.count",
    "{record}",
    "TCP segments and UDP datagrams the NFS server handled.",
)
.attrs(TRANSPORT)
.formerly(&[
    "system.nfsd.net.count",
    "system.nfsd.net.udp.count",
    "system.nfsd.net.tcp.count",
]);
pub const SERVER_TCP_ACCEPTED: MetricDef = counter(
    "nfs.server.net.tcp.connection.accepted",
    "{connection}",
    "TCP connections the NFS server accepted.",
)
.formerly(&["system.nfsd.net.tcp.connection.count"]);
pub const SERVER_RPC_COUNT: MetricDef = counter(
    "nfs.server.rpc.count",
    "{request}",
    "RPCs the NFS server handled; bad ones carry `error.type` (format, auth, client).",
)
.attrs(&[attr("error.type", "error.type")])
.formerly(&[
    "system.nfsd.rpc.count",
    "system.nfsd.rpc.bad.count",
    "system.nfsd.rpc.badfmt.count",
    "system.nfsd.rpc.badauth.count",
    "system.nfsd.rpc.badclient.count",
]);
pub const SERVER_PROCEDURES: MetricDef = counter(
    "nfs.server.procedure.count",
    "{procedure}",
    "NFSv3 and NFSv4 procedures the server handled.",
)
.attrs(PROCEDURE)
.formerly(&["system.nfsd.procedure.count"]);
pub const SERVER_OPERATIONS: MetricDef = counter(
    "nfs.server.operation.count",
    "{operation}",
    "NFSv4 operations the server handled.",
)
.attrs(OPERATION)
.formerly(&["system.nfsd.operation.count"]);
pub const METRICS: &[MetricDef] = &[
    CLIENT_NET_COUNT,
    CLIENT_TCP_ACCEPTED,
    CLIENT_RPC_COUNT,
    CLIENT_RPC_RETRANSMITS,
    CLIENT_RPC_AUTHREFRESH,
    CLIENT_PROCEDURES,
    CLIENT_OPERATIONS,
    SERVER_REPCACHE,
    SERVER_STALE_FH,
    SERVER_IO,
    SERVER_THREADS,
    SERVER_NET_COUNT,
    SERVER_TCP_ACCEPTED,
    SERVER_RPC_COUNT,
    SERVER_PROCEDURES,
    SERVER_OPERATIONS,
];

// The kernel's numbering of each table (index = position in the `procN` line).
const V3_PROCEDURES: &[&str] = &[
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "READ",
    "WRITE",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    "COMMIT",
];
const V4_CLIENT_OPERATIONS: &[&str] = &[
    "NULL",
    "READ",
    "WRITE",
    "COMMIT",
    "OPEN",
    "OPEN_CONFIRM",
    "OPEN_NOATTR",
    "OPEN_DOWNGRADE",
    "CLOSE",
    "SETATTR",
    "FSINFO",
    "RENEW",
    "SETCLIENTID",
    "SETCLIENTID_CONFIRM",
    "LOCK",
    "LOCKT",
    "LOCKU",
    "ACCESS",
    "GETATTR",
    "LOOKUP",
    "LOOKUP_ROOT",
    "REMOVE",
    "RENAME",
    "LINK",
    "SYMLINK",
    "CREATE",
    "PATHCONF",
    "STATFS",
    "READLINK",
    "READDIR",
    "SERVER_CAPS",
    "DELEGRETURN",
    "GETACL",
    "SETACL",
    "FS_LOCATIONS",
    "RELEASE_LOCKOWNER",
    "SECINFO",
    "FSID_PRESENT",
    "EXCHANGE_ID",
    "CREATE_SESSION",
    "DESTROY_SESSION",
    "SEQUENCE",
    "GET_LEASE_TIME",
    "RECLAIM_COMPLETE",
    "GETDEVICEINFO",
    "LAYOUTGET",
    "LAYOUTCOMMIT",
    "LAYOUTRETURN",
    "SECINFO_NO_NAME",
    "TEST_STATEID",
    "FREE_STATEID",
    "GETDEVICELIST",
    "BIND_CONN_TO_SESSION",
    "DESTROY_CLIENTID",
    "SEEK",
    "ALLOCATE",
    "DEALLOCATE",
    "LAYOUTSTATS",
    "CLONE",
    "COPY",
    "OFFLOAD_CANCEL",
    "COPY_NOTIFY",
    "LOOKUPP",
    "LAYOUTERROR",
    "GETXATTR",
    "SETXATTR",
    "LISTXATTRS",
    "REMOVEXATTR",
    "READ_PLUS",
];
const V4_SERVER_PROCEDURES: &[&str] = &["NULL", "COMPOUND"];
const V4_SERVER_OPERATIONS: &[&str] = &[
    "UNUSED0",
    "UNUSED1",
    "UNUSED2",
    "ACCESS",
    "CLOSE",
    "COMMIT",
    "CREATE",
    "DELEGPURGE",
    "DELEGRETURN",
    "GETATTR",
    "GETFH",
    "LINK",
    "LOCK",
    "LOCKT",
    "LOCKU",
    "LOOKUP",
    "LOOKUPP",
    "NVERIFY",
    "OPEN",
    "OPENATTR",
    "OPEN_CONFIRM",
    "OPEN_DOWNGRADE",
    "PUTFH",
    "PUTPUBFH",
    "PUTROOTFH",
    "READ",
    "READDIR",
    "READLINK",
    "REMOVE",
    "RENAME",
    "RENEW",
    "RESTOREFH",
    "SAVEFH",
    "SECINFO",
    "SETATTR",
    "SETCLIENTID",
    "SETCLIENTID_CONFIRM",
    "VERIFY",
    "WRITE",
    "RELEASE_LOCKOWNER",
    "BACKCHANNEL_CTL",
    "BIND_CONN_TO_SESSION",
    "EXCHANGE_ID",
    "CREATE_SESSION",
    "DESTROY_SESSION",
    "FREE_STATEID",
    "GET_DIR_DELEGATION",
    "GETDEVICEINFO",
    "GETDEVICELIST",
    "LAYOUTCOMMIT",
    "LAYOUTGET",
    "LAYOUTRETURN",
    "SECINFO_NO_NAME",
    "SEQUENCE",
    "SET_SSV",
    "TEST_STATEID",
    "WANT_DELEGATION",
    "DESTROY_CLIENTID",
    "RECLAIM_COMPLETE",
    "ALLOCATE",
    "COPY",
    "COPY_NOTIFY",
    "DEALLOCATE",
    "IO_ADVISE",
    "LAYOUTERROR",
    "LAYOUTSTATS",
    "OFFLOAD_CANCEL",
    "OFFLOAD_STATUS",
    "READ_PLUS",
    "SEEK",
    "WRITE_SAME",
    "CLONE",
    "GETXATTR",
    "SETXATTR",
    "LISTXATTRS",
    "REMOVEXATTR",
];

/// The numbers of each line of a `/proc/net/rpc` file, by the line's first word. Fields that
/// are not whole numbers (the obsolete histogram of `th`) end the line's numbers.
fn lines(text: &str) -> Vec<(&str, Vec<u64>)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let values = fields.map_while(|f| f.parse().ok()).collect();
            Some((name, values))
        })
        .collect()
}

/// `procN` lines: a count of entries, then one counter per entry, named by `names`; entries
/// past the names (a newer kernel) are left out.
fn calls<'a>(values: &[u64], names: &'a [&'a str]) -> Vec<(&'a str, u64)> {
    let Some((&n, counts)) = values.split_first() else {
        return Vec::new();
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    names
        .iter()
        .zip(counts.iter().take(n))
        .map(|(name, count)| (*name, *count))
        .collect()
}

pub fn scrape(ctx: &Ctx, out: &mut Emitter<'_>) -> Result<(), ScrapeError> {
    let client = ctx.read_string("proc/net/rpc/nfs").ok();
    let server = ctx.read_string("proc/net/rpc/nfsd").ok();
    if let Some(text) = &client {
        client_metrics(text, out);
    }
    if let Some(text) = &server {
        server_metrics(text, out);
    }
    if client.is_none() && server.is_none() {
        // No NFS module loaded: nothing to report, and nothing wrong.
        tracing::debug!("neither /proc/net/rpc/nfs nor /proc/net/rpc/nfsd exists");
    }
    Ok(())
}

fn net(values: &[u64], count: &MetricDef, accepted: &MetricDef, out: &mut Emitter<'_>) {
    if let [_, udp, tcp, connections, ..] = values {
        out.point(count, vec![kv("network.transport", "udp")], *udp);
        out.point(count, vec![kv("network.transport", "tcp")], *tcp);
        out.point(accepted, vec![], *connections);
    }
}

fn per_call(
    def: &MetricDef,
    version: i64,
    name_key: &str,
    values: &[u64],
    names: &[&str],
    out: &mut Emitter<'_>,
) {
    for (name, count) in calls(values, names) {
        out.point(
            def,
            vec![kv("onc_rpc.version", version), kv(name_key, name)],
            count,
        );
    }
}

fn client_metrics(text: &str, out: &mut Emitter<'_>) {
    for (line, values) in lines(text) {
        match line {
            "net" => net(&values, &CLIENT_NET_COUNT, &CLIENT_TCP_ACCEPTED, out),
            "rpc" => {
                if let [calls, retransmits, refreshes, ..] = values[..] {
                    out.point(&CLIENT_RPC_COUNT, vec![], calls);
                    out.point(&CLIENT_RPC_RETRANSMITS, vec![], retransmits);
                    out.point(&CLIENT_RPC_AUTHREFRESH, vec![], refreshes);
                }
            }
            "proc3" => per_call(
                &CLIENT_PROCEDURES,
                3,
                "onc_rpc.procedure.name",
                &values,
                V3_PROCEDURES,
                out,
            ),
            "proc4" => per_call(
                &CLIENT_OPERATIONS,
                4,
                "nfs.operation.name",
                &values,
                V4_CLIENT_OPERATIONS,
                out,
            ),
            _ => {}
        }
    }
}

fn server_metrics(text: &str, out: &mut Emitter<'_>) {
    for (line, values) in lines(text) {
        match line {
            "rc" => {
                if let [hits, misses, nocache, ..] = values[..] {
                    let status = "nfs.server.repcache.status";
                    out.point(&SERVER_REPCACHE, vec![kv(status, "hit")], hits);
                    out.point(&SERVER_REPCACHE, vec![kv(status, "miss")], misses);
                    out.point(&SERVER_REPCACHE, vec![kv(status, "nocache")], nocache);
                }
            }
            "fh" => {
                if let Some(stale) = values.first() {
                    out.point(&SERVER_STALE_FH, vec![], *stale);
                }
            }
            "io" => {
                if let [read, write, ..] = values[..] {
                    let direction = "network.io.direction";
                    out.point(&SERVER_IO, vec![kv(direction, "receive")], read);
                    out.point(&SERVER_IO, vec![kv(direction, "transmit")], write);
                }
            }
            "th" => {
                if let Some(threads) = values.first() {
                    out.point(&SERVER_THREADS, vec![], *threads);
                }
            }
            "net" => net(&values, &SERVER_NET_COUNT, &SERVER_TCP_ACCEPTED, out),
            "rpc" => {
                if let [good, _bad, format, auth, client, ..] = values[..] {
                    out.point(&SERVER_RPC_COUNT, vec![], good);
                    for (kind, n) in [("format", format), ("auth", auth), ("client", client)] {
                        out.point(&SERVER_RPC_COUNT, vec![kv("error.type", kind)], n);
                    }
                }
            }
            "proc3" => per_call(
                &SERVER_PROCEDURES,
                3,
                "onc_rpc.procedure.name",
                &values,
                V3_PROCEDURES,
                out,
            ),
            "proc4" => per_call(
                &SERVER_PROCEDURES,
                4,
                "onc_rpc.procedure.name",
                &values,
                V4_SERVER_PROCEDURES,
                out,
            ),
            "proc4ops" => per_call(
                &SERVER_OPERATIONS,
                4,
                "nfs.operation.name",
                &values,
                V4_SERVER_OPERATIONS,
                out,
            ),
            _ => {}
        }
    }
}
