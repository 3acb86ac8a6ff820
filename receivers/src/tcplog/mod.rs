//! The `tcplog` receiver: lines (or `multiline` entries) over TCP or TLS, with upstream's
//! `tcp_input` keys at its top level. The listening, framing and delivery are
//! [`crate::netlog`]'s.

use std::sync::Arc;

use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::config_keys::{decode_section, problem};
use sluice_pipeline::{BuildContext, FactoryInfo, Receiver, ReceiverFactory, ReceiverOutputs};

use crate::netlog::config::{INPUT_NO_EFFECT, TcpInput};
use crate::netlog::{FramingKeys, Listen, NetlogReceiver, Parts, server_tls};

pub struct TcplogReceiverFactory;

impl ReceiverFactory for TcplogReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "tcplog",
            aliases: &["tcp_log"],
            signals: &[SignalKind::Logs],
            description: "receives log lines over TCP or TLS and parses them with stanza operators",
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
) -> Result<Arc<NetlogReceiver>, ConfigErrors> {
    let operators = config.node.get("operators").cloned();
    let cfg: TcpInput = decode_section(config, INPUT_NO_EFFECT, &ctx.warnings)?;
    let mut errors: Vec<Diagnostic> = cfg
        .problems()
        .into_iter()
        .map(|(key, message)| problem(config, key, message))
        .collect();
    let framing = FramingKeys {
        encoding: &cfg.encoding,
        multiline: cfg.multiline.as_ref(),
        max_log_size: cfg.max_log_size.0 as usize,
        max_octets: cfg.max_log_size.0 as usize,
        one_log_per_packet: cfg.one_log_per_packet,
        keep_leading: cfg.preserve_leading_whitespaces,
        keep_trailing: cfg.preserve_trailing_whitespaces,
        octet_counting: false,
        nul_trailer: false,
    }
    .build()
    .map_err(|e| errors.push(problem(config, "", e.to_string())))
    .ok();
    let tls = server_tls(cfg.tls.as_ref())
        .map_err(|e| errors.push(problem(config, "tls", e.to_string())))
        .ok();
    let (Some(framing), Some(tls), true) = (framing, tls, errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    let idle = cfg.connection_idle_timeout.0;
    let parts = Parts {
        listen: Listen::Tcp {
            address: cfg.listen_address.clone(),
            tls,
            max_connections: cfg.connection_cap(),
            idle_timeout: (!idle.is_zero()).then_some(idle),
        },
        framing,
        add_attributes: cfg.add_attributes,
        attributes: cfg.attributes,
        resource: cfg.resource,
        operators,
        retry_on_failure: cfg.retry_on_failure,
        parse: None,
        input_prefix: "",
    };
    crate::netlog::build(config, outputs, ctx, parts, errors)
}
