//! The end-to-end tests: the built `sluice` binary with real clients, servers and files.
//! One test binary with a module per area, so the world is linked once, not once per file.
//! Run one area with `cargo test --test e2e kafka::`.

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod anomaly;
mod answer_without_waiting;
mod backpressure;
mod browser_cors;
mod cgroups;
mod client_metadata;
mod config_cli;
mod config_corpus;
mod connection_limits;
mod docker_stats;
mod enrichment_pipeline;
mod examples;
mod exporter_chains;
mod exporter_http_behaviour;
mod file_exporter;
mod file_proto;
mod filelog;
mod filter;
mod hardening;
mod hostmetrics;
mod http_errors;
mod id_lengths;
mod kafka;
mod lambda;
mod loadgen;
mod memory_amplification;
mod nop;
mod otlp_json;
mod otlp_sdk;
mod persistent_queue;
mod prometheus;
mod resource_detection;
mod self_telemetry;
mod shutdown;
mod smoke;
mod spanmetrics;
mod syslog;
mod threshold;
mod webhook;
