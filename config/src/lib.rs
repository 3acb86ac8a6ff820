//! Loading and validating sluice's configuration, written in the OpenTelemetry
//! Collector schema.
//!
//! [`load`] turns YAML sources plus `--set` overrides into one positioned [`Node`] tree;
//! [`Config::from_node`] checks its structure; [`decode`] turns one component's section
//! into a typed struct. Every problem is a [`Diagnostic`] naming file, line, column and
//! key path.

#![warn(missing_docs)]

mod de;
mod emit;
mod error;
mod expand;
mod load;
mod merge;
mod model;
mod node;
mod parse;
mod suggest;
mod units;

pub use de::{DeError, NodeDeserializer, Optional, decode, decode_all};
pub use emit::to_yaml;
pub use error::{ConfigErrors, Diagnostic, Pos};
pub use load::{Source, load};
pub use merge::merge;
pub use model::{
    ComponentConfig, ComponentId, ComponentKind, ComponentRef, Config, DEFAULT_SHUTDOWN_TIMEOUT,
    ParseIdError, PipelineConfig, PipelineId, ServiceConfig, SignalKind,
};
pub use node::{Key, Map, Node, Resolved, Scalar, Value, resolve_plain};
pub use parse::parse_yaml;
pub use suggest::suggest;
pub use units::{ByteSize, Duration};
