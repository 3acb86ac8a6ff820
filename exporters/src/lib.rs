//! sluice's exporters, one folder each. Every exporter implements one send attempt
//! ([`sluice_pipeline::exporter::Export`]) and goes through the shared exporter helper.

pub mod debug;
pub mod file;
mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod nop;
mod otel_to_prometheus;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod prometheus;
pub mod prometheus_remote_write;
pub mod self_telemetry;
pub mod webhook;

use std::sync::Arc;

use sluice_pipeline::ExporterFactory;

/// Every exporter type this crate provides.
pub fn factories() -> Vec<Arc<dyn ExporterFactory>> {
    vec![
        Arc::new(file::FileExporterFactory),
        Arc::new(debug::DebugExporterFactory),
        Arc::new(otlp_http::OtlpHttpExporterFactory),
        Arc::new(otlp_grpc::OtlpGrpcExporterFactory),
        Arc::new(webhook::WebhookExporterFactory),
        Arc::new(nop::NopExporterFactory),
        Arc::new(prometheus_remote_write::RemoteWriteExporterFactory),
        Arc::new(prometheus::PrometheusExporterFactory),
        #[cfg(feature = "kafka")]
        Arc::new(kafka::KafkaExporterFactory),
    ]
}
