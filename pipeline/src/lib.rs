//! sluice's data model, wire codecs, component contracts, pipeline runtime and exporter helper.

pub mod ack;
pub mod admission;
pub mod batch;
pub mod batching;
pub mod codec;
pub mod component;
pub mod config_keys;
pub mod consumer;
pub mod exporter;
pub mod metadata;
pub mod net;
pub mod queue;
pub mod service;
pub mod signal;
pub mod storage;
pub mod telemetry;
pub mod tls;

pub use ack::{Ack, AckWaiter, DeliveryError, Outcome};
pub use batch::Batch;
pub use component::{
    BuildContext, BuiltExporter, BuiltStage, ConnectorFactory, ExporterFactory, FactoryInfo,
    Lifecycle, ProcessorFactory, Receiver, ReceiverFactory, ReceiverOutputs, Registry, StartError,
    build_exporter, decode_config,
};
pub use consumer::{
    AckPoint, AnyConsumer, Consumer, DynConsumer, SignalConsumer, WrapConsumer, deliver, fanout,
};
pub use service::Service;
pub use signal::{Logs, Metrics, PerSignal, Signal, SignalKind, Traces};
pub use telemetry::Telemetry;

pub use opentelemetry_proto::tonic as proto;
