//! The keys of upstream's `tcp_input` and `udp_input` operators, as the `tcplog` and
//! `udplog` receivers take them at their top level and `syslog` under `tcp:` and `udp:`.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_config::{ByteSize, Duration};
use sluice_pipeline::config_keys::NoEffect;

use crate::filelog::config::{MultilineConfig, RetryOnFailure};
use crate::tls::ServerTlsSettings;

/// Connections a TCP listener serves at once when `max_connections` is not written.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Keys of upstream's stanza input operators that cannot change anything in sluice.
pub const INPUT_NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "id",
        "the id of upstream's internal input operator; the receiver's own id names it in sluice",
    ),
    NoEffect::new(
        "type",
        "the type of upstream's internal input operator; it is always this receiver's input",
    ),
    NoEffect::new(
        "output",
        "wires upstream's internal input operator to the first of `operators`, which sluice always does",
    ),
];

/// `async.processors`: upstream's goroutines that turn queued datagrams into entries.
pub const UDP_PROCESSORS_NO_EFFECT: &str = "upstream's goroutines that turn queued datagrams into entries; sluice frames each datagram as it is read and runs the operators on one task";

/// `tcp:` of `syslog`, and the top level of `tcplog`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpInput {
    /// `host:port` to listen on; required.
    pub listen_address: String,
    /// Longest message (default 1MiB); longer ones are cut there. `max_buffer_size` is
    /// upstream's older name of it.
    #[serde(alias = "max_buffer_size")]
    pub max_log_size: ByteSize,
    pub tls: Option<ServerTlsSettings>,
    /// `net.*` attributes on every message (default false).
    pub add_attributes: bool,
    /// All a connection sends, up to its end, is one message (default false).
    pub one_log_per_packet: bool,
    /// The input's encoding (default `utf-8`).
    pub encoding: String,
    pub multiline: Option<MultilineConfig>,
    pub preserve_leading_whitespaces: bool,
    pub preserve_trailing_whitespaces: bool,
    /// Connections served at once (default 1024; 0 is no limit, as upstream's default).
    pub max_connections: Option<usize>,
    /// Close a connection that sent nothing for this long (default 0: never).
    pub connection_idle_timeout: Duration,
    /// Attributes added to every message (values may embed `EXPR(...)`).
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes added to every message.
    pub resource: BTreeMap<String, String>,
    /// Receiver-level keys (`tcplog`); `syslog` has them beside `tcp:`.
    pub operators: Option<serde::de::IgnoredAny>,
    pub retry_on_failure: Option<RetryOnFailure>,
}

impl Default for TcpInput {
    fn default() -> Self {
        TcpInput {
            listen_address: String::new(),
            max_log_size: ByteSize(1024 * 1024),
            tls: None,
            add_attributes: false,
            one_log_per_packet: false,
            encoding: "utf-8".to_string(),
            multiline: None,
            preserve_leading_whitespaces: false,
            preserve_trailing_whitespaces: false,
            max_connections: None,
            connection_idle_timeout: Duration(std::time::Duration::ZERO),
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            operators: None,
            retry_on_failure: None,
        }
    }
}

/// `async:` of a UDP input.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncConfig {
    /// Tasks reading the socket (default 1).
    pub readers: usize,
    /// See [`UDP_PROCESSORS_NO_EFFECT`] (taken out before decoding).
    pub processors: Option<usize>,
    /// Datagrams read but not yet taken by the pipeline, at most (default 100); more are
    /// dropped and counted.
    pub max_queue_length: usize,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        AsyncConfig {
            readers: 1,
            processors: None,
            max_queue_length: 100,
        }
    }
}

/// `udp:` of `syslog`, and the top level of `udplog`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpInput {
    pub listen_address: String,
    /// A datagram is one message, not split at newlines (default false).
    pub one_log_per_packet: bool,
    pub add_attributes: bool,
    pub encoding: String,
    pub multiline: Option<MultilineConfig>,
    pub preserve_leading_whitespaces: bool,
    pub preserve_trailing_whitespaces: bool,
    #[serde(rename = "async")]
    pub async_config: Option<AsyncConfig>,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub operators: Option<serde::de::IgnoredAny>,
    pub retry_on_failure: Option<RetryOnFailure>,
}

impl Default for UdpInput {
    fn default() -> Self {
        UdpInput {
            listen_address: String::new(),
            one_log_per_packet: false,
            add_attributes: false,
            encoding: "utf-8".to_string(),
            multiline: None,
            preserve_leading_whitespaces: false,
            preserve_trailing_whitespaces: false,
            async_config: None,
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            operators: None,
            retry_on_failure: None,
        }
    }
}

/// Problems of the keys both inputs have, as (key, message).
pub fn multiline_problems(
    multiline: Option<&MultilineConfig>,
    encoding: &str,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = multiline {
        if !m.line_start_pattern.is_empty() && !m.line_end_pattern.is_empty() {
            out.push((
                "multiline",
                "set only one of `line_start_pattern` and `line_end_pattern`".to_string(),
            ));
        }
        if encoding.eq_ignore_ascii_case("nop")
            && (!m.line_start_pattern.is_empty() || !m.line_end_pattern.is_empty())
        {
            out.push((
                "multiline",
                "patterns cannot be used with `encoding: nop` (raw bytes are not split)"
                    .to_string(),
            ));
        }
    }
    out
}

impl TcpInput {
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = multiline_problems(self.multiline.as_ref(), &self.encoding);
        if self.listen_address.is_empty() {
            out.push(("listen_address", "required (`host:port`)".to_string()));
        }
        if self.max_log_size.0 == 0 {
            out.push(("max_log_size", "must be greater than 0".to_string()));
        }
        out
    }

    /// The connection cap, `None` for none.
    pub fn connection_cap(&self) -> Option<usize> {
        match self.max_connections {
            None => Some(DEFAULT_MAX_CONNECTIONS),
            Some(0) => None,
            Some(n) => Some(n),
        }
    }
}

impl UdpInput {
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = multiline_problems(self.multiline.as_ref(), &self.encoding);
        if self.listen_address.is_empty() {
            out.push(("listen_address", "required (`host:port`)".to_string()));
        }
        if let Some(a) = &self.async_config {
            if a.readers == 0 {
                out.push(("async.readers", "must be at least 1".to_string()));
            }
            if a.max_queue_length == 0 {
                out.push(("async.max_queue_length", "must be at least 1".to_string()));
            }
        }
        out
    }
}
