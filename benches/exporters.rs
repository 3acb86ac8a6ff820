//! The exporters' encoders: the file exporter end to end (encode a batch, compress, write to
//! `/dev/null`) in its four formats, and the Kafka exporter's message building (partitioning
//! by trace id, encoding, and halving what exceeds the message limit).
//!
//! `cargo bench --bench exporters`; items/s by default, `SLUICE_BENCH_THROUGHPUT=bytes` for
//! bytes/s of the batch as OTLP protobuf.

mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, SignalKind, parse_yaml};
use sluice_loadgen::{Data, SignalArg};
use sluice_pipeline::codec::encoded_proto_len;
use sluice_pipeline::{AnyConsumer, Batch, BuildContext, Traces, deliver};
use tokio::time::Instant;

use support::{ITEMS, payload, throughput};

fn spans() -> Vec<sluice_pipeline::proto::trace::v1::ResourceSpans> {
    match payload(SignalArg::Traces) {
        Data::Traces(r) => r,
        _ => unreachable!("asked for traces"),
    }
}

/// Builds and starts the file exporter from its YAML section, as the collector does.
fn file_exporter(
    runtime: &tokio::runtime::Runtime,
    yaml: &str,
) -> (
    sluice_pipeline::DynConsumer<Traces>,
    sluice_pipeline::BuiltExporter,
) {
    let config = ComponentConfig {
        kind: ComponentKind::Exporter,
        id: ComponentId::with_name("file", "bench"),
        pos: Pos::new("bench.yaml", 1, 1),
        path: "exporters.file/bench".into(),
        node: parse_yaml("bench.yaml", yaml).expect("valid YAML"),
    };
    let mut built = sluice_pipeline::build_exporter(
        &sluice_exporters::file::FileExporterFactory,
        &config,
        &[SignalKind::Traces],
        &BuildContext::default(),
    )
    .expect("valid config");
    runtime.block_on(async {
        for lifecycle in built.lifecycles.iter().rev() {
            lifecycle.start().await.expect("starts");
        }
    });
    let consumer = match built.consumers.pop() {
        Some(AnyConsumer::Traces(c)) => c,
        _ => unreachable!("asked for traces"),
    };
    (consumer, built)
}

fn file(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let resources = spans();
    let bytes = encoded_proto_len::<Traces>(&resources);
    let batch = Batch::<Traces>::new(resources, bytes);
    let mut group = c.benchmark_group("file_exporter/traces");
    group.throughput(throughput(ITEMS, bytes));
    for (name, format, compression) in [
        ("json", "json", "none"),
        ("json_zstd", "json", "zstd"),
        ("proto", "proto", "none"),
        ("proto_zstd", "proto", "zstd"),
    ] {
        // No sending queue: each export runs while the bench waits for its acknowledgement.
        let yaml = format!(
            "path: /dev/null\nformat: {format}\ncompression: {compression}\n\
             sending_queue:\n  enabled: false\n"
        );
        let (consumer, built) = file_exporter(&runtime, &yaml);
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(deliver(&consumer, batch.fork(), Duration::from_secs(5)))
                    .expect("written")
            })
        });
        runtime.block_on(async {
            for lifecycle in &built.lifecycles {
                lifecycle
                    .shutdown(Instant::now() + Duration::from_secs(5))
                    .await;
            }
        });
    }
    group.finish();
}

#[cfg(feature = "kafka")]
fn kafka(c: &mut Criterion) {
    use criterion::BatchSize;
    use sluice_exporters::kafka::Encoding;
    use sluice_exporters::kafka::messages::{Fitted, KafkaSignal, Partitioning, fit};

    let resources = spans();
    let bytes = encoded_proto_len::<Traces>(&resources);
    let mut group = c.benchmark_group("kafka_messages/traces");
    group.throughput(throughput(ITEMS, bytes));
    // 1 MB: the default message limit, no split. 8 KiB: each batch is halved into several.
    for (name, encoding, limit) in [
        ("proto", Encoding::OtlpProto, 1_000_000),
        ("json", Encoding::OtlpJson, 1_000_000),
        ("proto_split_8KiB", Encoding::OtlpProto, 8 * 1024),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || resources.clone(),
                |resources| {
                    let mut out = Fitted::default();
                    fit::<Traces>(resources, encoding, limit, &mut out);
                    out.payloads
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("partition_by_trace_id_proto", |b| {
        b.iter_batched(
            || resources.clone(),
            |resources| {
                let p = Partitioning {
                    by_trace_id: true,
                    by_resource_attributes: false,
                };
                let mut out = Fitted::default();
                for (_key, group) in <Traces as KafkaSignal>::keyed(resources, p) {
                    fit::<Traces>(group, Encoding::OtlpProto, 1_000_000, &mut out);
                }
                out.payloads
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

#[cfg(not(feature = "kafka"))]
fn kafka(_c: &mut Criterion) {
    eprintln!("kafka_messages: skipped (built without the `kafka` feature)");
}

criterion_group!(exporters, file, kafka);
criterion_main!(exporters);
