//! The `udplog` receiver: datagrams (split at newlines unless `one_log_per_packet`) with
//! upstream's `udp_input` keys at its top level. The listening, framing and delivery are
//! [`crate::netlog`]'s.

use std::sync::Arc;

use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::config_keys::{NoEffect, decode_section, problem};
use sluice_pipeline::{BuildContext, FactoryInfo, Receiver, ReceiverFactory, ReceiverOutputs};

use crate::netlog::config::{INPUT_NO_EFFECT, UDP_PROCESSORS_NO_EFFECT, UdpInput};
use crate::netlog::{FramingKeys, Listen, NetlogReceiver, Parts};

/// The largest UDP payload: a datagram is never longer.
const MAX_LOG_SIZE: usize = 65_536;

pub struct UdplogReceiverFactory;

impl ReceiverFactory for UdplogReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "udplog",
            aliases: &["udp_log"],
            signals: &[SignalKind::Logs],
            description: "receives log datagrams over UDP and parses them with stanza operators",
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
    let mut no_effect: Vec<NoEffect> = INPUT_NO_EFFECT.to_vec();
    no_effect.push(NoEffect::new("async.processors", UDP_PROCESSORS_NO_EFFECT));
    let cfg: UdpInput = decode_section(config, &no_effect, &ctx.warnings)?;
    let mut errors: Vec<Diagnostic> = cfg
        .problems()
        .into_iter()
        .map(|(key, message)| problem(config, key, message))
        .collect();
    let framing = FramingKeys {
        encoding: &cfg.encoding,
        multiline: cfg.multiline.as_ref(),
        max_log_size: MAX_LOG_SIZE,
        max_octets: MAX_LOG_SIZE,
        one_log_per_packet: cfg.one_log_per_packet,
        keep_leading: cfg.preserve_leading_whitespaces,
        keep_trailing: cfg.preserve_trailing_whitespaces,
        octet_counting: false,
        nul_trailer: false,
    }
    .build()
    .map_err(|e| errors.push(problem(config, "", e.to_string())))
    .ok();
    let (Some(framing), true) = (framing, errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    let a = cfg.async_config.clone().unwrap_or_default();
    let parts = Parts {
        listen: Listen::Udp {
            address: cfg.listen_address.clone(),
            readers: a.readers,
            queue: a.max_queue_length,
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
