//! sluice's processors and connectors, one folder each.

pub mod anomaly;
pub mod attributes;
pub mod batch;
pub mod cumulative_to_delta;
pub mod delta_to_cumulative;
pub mod filter;
pub mod forward;
pub mod memory_limiter;
pub mod resource_detection;
pub mod spanmetrics;
mod stream_identity;
pub mod threshold;

use std::sync::Arc;

use sluice_pipeline::{ConnectorFactory, ProcessorFactory};

/// Every processor type this crate provides.
pub fn processor_factories() -> Vec<Arc<dyn ProcessorFactory>> {
    vec![
        Arc::new(batch::BatchProcessorFactory),
        Arc::new(resource_detection::ResourceDetectionProcessorFactory),
        Arc::new(attributes::AttributesProcessorFactory),
        Arc::new(attributes::ResourceProcessorFactory),
        Arc::new(filter::FilterProcessorFactory),
        Arc::new(memory_limiter::MemoryLimiterProcessorFactory),
        Arc::new(cumulative_to_delta::CumulativeToDeltaProcessorFactory),
        Arc::new(delta_to_cumulative::DeltaToCumulativeProcessorFactory),
    ]
}

/// Every connector type this crate provides.
pub fn connector_factories() -> Vec<Arc<dyn ConnectorFactory>> {
    vec![
        Arc::new(forward::ForwardConnectorFactory),
        Arc::new(threshold::ThresholdConnectorFactory),
        Arc::new(anomaly::AnomalyConnectorFactory),
        Arc::new(spanmetrics::SpanMetricsConnectorFactory),
    ]
}
