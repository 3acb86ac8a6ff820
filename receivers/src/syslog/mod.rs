//! The `syslog` receiver: RFC 5424 and RFC 3164 messages over TCP (octet counting, newline
//! or NUL framing, TLS) or UDP, parsed into the attributes the Collector's syslog receiver
//! gives them. The listening, framing and delivery are [`crate::netlog`]'s.

pub mod parser;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::config_keys::{NoEffect, decode_section, problem};
use sluice_pipeline::{BuildContext, FactoryInfo, Receiver, ReceiverFactory, ReceiverOutputs};

use crate::filelog::config::RetryOnFailure;
use crate::netlog::config::{TcpInput, UDP_PROCESSORS_NO_EFFECT, UdpInput};
use crate::netlog::{FramingKeys, Listen, Parts, server_tls};
use parser::{Protocol, SyslogParser};

/// The largest UDP payload: a datagram is never longer.
const UDP_MAX_LOG_SIZE: usize = 65_536;

/// `non_transparent_framing_trailer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Trailer {
    #[serde(rename = "LF")]
    Lf,
    #[serde(rename = "NUL")]
    Nul,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub tcp: Option<TcpInput>,
    pub udp: Option<UdpInput>,
    /// `rfc3164` or `rfc5424`; required.
    pub protocol: Option<Protocol>,
    /// Time zone of RFC 3164 timestamps (default UTC).
    pub location: String,
    /// RFC 6587 octet counting (RFC 5424 only).
    pub enable_octet_counting: bool,
    /// Longest octet-counted message (default 8192).
    pub max_octets: usize,
    /// Messages without `<PRI>` are parsed, without priority, facility and severity.
    pub allow_skip_pri_header: bool,
    /// `LF` or `NUL`: RFC 6587 non-transparent framing (RFC 5424 only).
    pub non_transparent_framing_trailer: Option<Trailer>,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub operators: Option<serde::de::IgnoredAny>,
    pub retry_on_failure: Option<RetryOnFailure>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            tcp: None,
            udp: None,
            protocol: None,
            location: "UTC".to_string(),
            enable_octet_counting: false,
            max_octets: 8192,
            allow_skip_pri_header: false,
            non_transparent_framing_trailer: None,
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            operators: None,
            retry_on_failure: None,
        }
    }
}

/// Keys accepted with a warning: upstream's internal operator ids, and `udp.async.processors`.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "id",
        "the id of upstream's internal syslog input operator; the receiver's own id names it in sluice",
    ),
    NoEffect::new(
        "type",
        "the type of upstream's internal syslog input operator; it is always a syslog input here",
    ),
    NoEffect::new(
        "output",
        "wires upstream's internal syslog input operator to the first of `operators`, which sluice always does",
    ),
    NoEffect::new("udp.async.processors", UDP_PROCESSORS_NO_EFFECT),
];

impl SyslogConfig {
    fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |key: &str, message: &str| out.push((key.to_string(), message.to_string()));
        match (&self.tcp, &self.udp) {
            (None, None) => add("", "configure `tcp` or `udp`"),
            (Some(_), Some(_)) => add("", "configure only one of `tcp` and `udp`"),
            _ => {}
        }
        if self.protocol.is_none() {
            add("protocol", "required: `rfc3164` or `rfc5424`");
        }
        let rfc3164 = self.protocol == Some(Protocol::Rfc3164);
        if rfc3164 && self.enable_octet_counting {
            add(
                "enable_octet_counting",
                "octet counting is only compatible with `protocol: rfc5424`",
            );
        }
        if rfc3164 && self.non_transparent_framing_trailer.is_some() {
            add(
                "non_transparent_framing_trailer",
                "non-transparent framing is only compatible with `protocol: rfc5424`",
            );
        }
        if self.enable_octet_counting && self.non_transparent_framing_trailer.is_some() {
            add(
                "non_transparent_framing_trailer",
                "cannot be used with `enable_octet_counting`: only one framing at a time",
            );
        }
        if self.enable_octet_counting && self.allow_skip_pri_header {
            add(
                "allow_skip_pri_header",
                "cannot be used with `enable_octet_counting`",
            );
        }
        if self.max_octets == 0 {
            add("max_octets", "must be greater than 0");
        }
        if let Some(tcp) = &self.tcp {
            for (key, message) in tcp.problems() {
                out.push((format!("tcp.{key}"), message));
            }
            if tcp.operators.is_some() {
                out.push((
                    "tcp.operators".into(),
                    "belongs beside `tcp`, at the receiver's level".into(),
                ));
            }
            if tcp.retry_on_failure.is_some() {
                out.push((
                    "tcp.retry_on_failure".into(),
                    "belongs beside `tcp`, at the receiver's level".into(),
                ));
            }
        }
        if let Some(udp) = &self.udp {
            for (key, message) in udp.problems() {
                out.push((format!("udp.{key}"), message));
            }
            if udp.operators.is_some() {
                out.push((
                    "udp.operators".into(),
                    "belongs beside `udp`, at the receiver's level".into(),
                ));
            }
            if udp.retry_on_failure.is_some() {
                out.push((
                    "udp.retry_on_failure".into(),
                    "belongs beside `udp`, at the receiver's level".into(),
                ));
            }
        }
        out
    }
}

pub struct SyslogReceiverFactory;

impl ReceiverFactory for SyslogReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "syslog",
            aliases: &[],
            signals: &[SignalKind::Logs],
            description: "receives syslog (RFC 5424, RFC 3164) over TCP, TLS or UDP and parses it",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        Ok(build(config, outputs, ctx)?)
    }
}

fn build(
    config: &ComponentConfig,
    outputs: ReceiverOutputs,
    ctx: &BuildContext,
) -> Result<Arc<crate::netlog::NetlogReceiver>, ConfigErrors> {
    let operators = config.node.get("operators").cloned();
    let cfg: SyslogConfig = decode_section(config, NO_EFFECT, &ctx.warnings)?;
    let mut errors: Vec<Diagnostic> = cfg
        .problems()
        .into_iter()
        .map(|(key, message)| problem(config, &key, message))
        .collect();
    let location = TimeZone::get(&cfg.location)
        .map_err(|e| {
            errors.push(problem(
                config,
                "location",
                format!("unknown time zone `{}`: {e}", cfg.location),
            ))
        })
        .ok();
    let (Some(protocol), Some(location), true) = (cfg.protocol, location, errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    let parser = SyslogParser {
        protocol,
        location,
        allow_skip_pri_header: cfg.allow_skip_pri_header,
    };
    let nul_trailer = cfg.non_transparent_framing_trailer == Some(Trailer::Nul);
    let (listen, framing, add_attributes, attributes, resource, prefix) = match (&cfg.tcp, &cfg.udp)
    {
        (Some(tcp), _) => {
            let framing = FramingKeys {
                encoding: &tcp.encoding,
                multiline: tcp.multiline.as_ref(),
                max_log_size: tcp.max_log_size.0 as usize,
                max_octets: cfg.max_octets,
                one_log_per_packet: tcp.one_log_per_packet,
                keep_leading: tcp.preserve_leading_whitespaces,
                keep_trailing: tcp.preserve_trailing_whitespaces,
                octet_counting: cfg.enable_octet_counting,
                nul_trailer,
            }
            .build();
            let tls = server_tls(tcp.tls.as_ref());
            let (framing, tls) = match (framing, tls) {
                (Ok(f), Ok(t)) => (f, t),
                (f, t) => {
                    if let Err(e) = f {
                        errors.push(problem(config, "tcp", e.to_string()));
                    }
                    if let Err(e) = t {
                        errors.push(problem(config, "tcp.tls", e.to_string()));
                    }
                    return Err(ConfigErrors(errors));
                }
            };
            let idle = tcp.connection_idle_timeout.0;
            (
                Listen::Tcp {
                    address: tcp.listen_address.clone(),
                    tls,
                    max_connections: tcp.connection_cap(),
                    idle_timeout: (!idle.is_zero()).then_some(idle),
                },
                framing,
                tcp.add_attributes,
                tcp.attributes.clone(),
                tcp.resource.clone(),
                "tcp.",
            )
        }
        (None, Some(udp)) => {
            let framing = FramingKeys {
                encoding: &udp.encoding,
                multiline: udp.multiline.as_ref(),
                max_log_size: UDP_MAX_LOG_SIZE,
                max_octets: cfg.max_octets,
                one_log_per_packet: udp.one_log_per_packet,
                keep_leading: udp.preserve_leading_whitespaces,
                keep_trailing: udp.preserve_trailing_whitespaces,
                octet_counting: cfg.enable_octet_counting,
                nul_trailer,
            }
            .build()
            .map_err(|e| ConfigErrors::from(problem(config, "udp", e.to_string())))?;
            let a = udp.async_config.clone().unwrap_or_default();
            (
                Listen::Udp {
                    address: udp.listen_address.clone(),
                    readers: a.readers,
                    queue: a.max_queue_length,
                },
                framing,
                udp.add_attributes,
                udp.attributes.clone(),
                udp.resource.clone(),
                "udp.",
            )
        }
        (None, None) => return Err(ConfigErrors(errors)),
    };
    // Receiver-level `attributes`/`resource` come on top of the input's own.
    let mut all_attributes = attributes;
    all_attributes.extend(cfg.attributes.clone());
    let mut all_resource = resource;
    all_resource.extend(cfg.resource.clone());
    let parts = Parts {
        listen,
        framing,
        add_attributes,
        attributes: all_attributes,
        resource: all_resource,
        operators,
        retry_on_failure: cfg.retry_on_failure.clone(),
        parse: Some(Arc::new(move |entry| parser.apply(entry))),
        input_prefix: prefix,
    };
    crate::netlog::build(config, outputs, ctx, parts, errors)
}
