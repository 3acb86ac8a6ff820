//! sluice's processors and connectors, one folder each.

pub mod batch;
pub mod forward;

use std::sync::Arc;

use sluice_pipeline::{ConnectorFactory, ProcessorFactory};

/// Every processor type this crate provides.
pub fn processor_factories() -> Vec<Arc<dyn ProcessorFactory>> {
    vec![Arc::new(batch::BatchProcessorFactory)]
}

/// Every connector type this crate provides.
pub fn connector_factories() -> Vec<Arc<dyn ConnectorFactory>> {
    vec![Arc::new(forward::ForwardConnectorFactory)]
}
