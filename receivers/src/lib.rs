//! sluice's receivers, one folder each.

pub mod cgroups;
#[cfg(feature = "docker")]
pub mod docker_stats;
pub mod filelog;
pub mod hostmetrics;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metric_keys;
pub mod netlog;
pub mod nop;
pub mod otlp;
pub mod prometheus;
pub mod syslog;
pub mod tcplog;
pub mod tls;
pub mod udplog;

use std::sync::Arc;

use sluice_pipeline::ReceiverFactory;

/// Every receiver type this crate provides.
pub fn factories() -> Vec<Arc<dyn ReceiverFactory>> {
    vec![
        Arc::new(otlp::OtlpReceiverFactory),
        Arc::new(hostmetrics::HostMetricsReceiverFactory),
        Arc::new(cgroups::CgroupsReceiverFactory),
        Arc::new(nop::NopReceiverFactory),
        Arc::new(filelog::FilelogReceiverFactory),
        Arc::new(prometheus::PrometheusReceiverFactory),
        Arc::new(syslog::SyslogReceiverFactory),
        Arc::new(tcplog::TcplogReceiverFactory),
        Arc::new(udplog::UdplogReceiverFactory),
        #[cfg(feature = "docker")]
        Arc::new(docker_stats::DockerStatsReceiverFactory),
        #[cfg(feature = "kafka")]
        Arc::new(kafka::KafkaReceiverFactory),
        #[cfg(feature = "lambda")]
        Arc::new(lambda::LambdaReceiverFactory),
    ]
}
