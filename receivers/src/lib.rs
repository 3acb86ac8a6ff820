//! sluice's receivers, one folder each.

pub mod otlp;
pub mod tls;

use std::sync::Arc;

use sluice_pipeline::ReceiverFactory;

/// Every receiver type this crate provides.
pub fn factories() -> Vec<Arc<dyn ReceiverFactory>> {
    vec![Arc::new(otlp::OtlpReceiverFactory)]
}
