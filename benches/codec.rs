//! Hot paths of every pipeline: OTLP protobuf and OTLP/JSON decode/encode per signal (the
//! codecs sluice's receivers and exporters use), the protobuf check receivers run instead of
//! decoding, and the batch processor's merge and split.
//!
//! `cargo bench --bench codec`; items/s by default, `SLUICE_BENCH_THROUGHPUT=bytes` for
//! bytes/s (bytes of the encoding being decoded or produced).

mod support;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sluice_loadgen::{Data, SignalArg};
use sluice_pipeline::codec::{decode_json, decode_proto, encode_json, encode_proto, scan};
use sluice_pipeline::{Batch, Logs, Metrics, Signal, Traces};

use support::{ITEMS, payload, throughput};

fn codecs<S: Signal>(c: &mut Criterion, name: &str, resources: Vec<S::Resource>) {
    let mut proto = Vec::new();
    encode_proto::<S>(&resources, &mut proto);
    let mut json = Vec::new();
    encode_json::<S>(&resources, &mut json).expect("generated data encodes");
    eprintln!(
        "{name}: {ITEMS} items, {} bytes protobuf, {} bytes OTLP/JSON",
        proto.len(),
        json.len()
    );

    let mut group = c.benchmark_group(format!("otlp_proto/{name}"));
    group.throughput(throughput(ITEMS, proto.len()));
    group.bench_function("decode", |b| {
        b.iter(|| decode_proto::<S>(black_box(&proto)).expect("valid"))
    });
    // What a receiver does instead of decoding: the check that lets a request travel as its
    // bytes until a component looks inside.
    group.bench_function("check", |b| {
        b.iter(|| scan(S::KIND, black_box(&proto)).expect("valid"))
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            encode_proto::<S>(black_box(&resources), &mut out);
            out
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("otlp_json/{name}"));
    group.throughput(throughput(ITEMS, json.len()));
    group.bench_function("decode", |b| {
        b.iter(|| decode_json::<S>(black_box(&json)).expect("valid"))
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            encode_json::<S>(black_box(&resources), &mut out).expect("encodes");
            out
        })
    });
    group.finish();
}

/// The batch processor's work at its default size: 82 requests of 100 items merged into one
/// batch of 8200, and a batch of 8200 split into pieces of 1000 (`send_batch_max_size`).
fn batching<S: Signal>(c: &mut Criterion, name: &str, resources: Vec<S::Resource>) {
    const REQUESTS: usize = 82;
    let mut proto = Vec::new();
    encode_proto::<S>(&resources, &mut proto);
    let request_bytes = proto.len();
    let mut group = c.benchmark_group(format!("batch/{name}"));
    group.throughput(throughput(ITEMS * REQUESTS, request_bytes * REQUESTS));
    group.bench_function("merge_82x100", |b| {
        b.iter_batched(
            || {
                (0..REQUESTS)
                    .map(|_| Batch::<S>::new(resources.clone(), request_bytes))
                    .collect::<Vec<_>>()
            },
            |batches| {
                let mut merged: Option<Batch<S>> = None;
                for batch in batches {
                    match merged.as_mut() {
                        Some(m) => m.merge(batch),
                        None => merged = Some(batch),
                    }
                }
                merged
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("split_8200_by_1000", |b| {
        b.iter_batched(
            || {
                let mut all = Vec::with_capacity(REQUESTS * resources.len());
                for _ in 0..REQUESTS {
                    all.extend(resources.iter().cloned());
                }
                Batch::<S>::new(all, request_bytes * REQUESTS)
            },
            |mut batch| {
                let mut pieces = Vec::new();
                while batch.items() > 0 {
                    pieces.push(batch.split_front(1000));
                }
                pieces
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    for signal in [SignalArg::Traces, SignalArg::Metrics, SignalArg::Logs] {
        match payload(signal) {
            Data::Traces(r) => {
                codecs::<Traces>(c, "traces", r.clone());
                batching::<Traces>(c, "traces", r);
            }
            Data::Metrics(r) => {
                codecs::<Metrics>(c, "metrics", r.clone());
                batching::<Metrics>(c, "metrics", r);
            }
            Data::Logs(r) => {
                codecs::<Logs>(c, "logs", r.clone());
                batching::<Logs>(c, "logs", r);
            }
        }
    }
}

criterion_group!(codec, benches);
criterion_main!(codec);
