//! Every collection interval: one stats read per running container (concurrently), then one
//! batch holding every watched container's metrics.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures::StreamExt;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use sluice_pipeline::Batch;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::metrics::{cpu_sample, cpu_usage};
use super::state::{State, Tracked};
use super::{Shared, metrics, stopped};
use crate::cgroups::builder::now_nanos;

pub(crate) async fn run(shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let Some(output) = shared.metrics.clone() else {
        return;
    };
    tokio::select! {
        _ = tokio::time::sleep(shared.settings.initial_delay) => {}
        _ = stopped(stop.clone()) => return,
    }
    let mut ticks = tokio::time::interval(shared.settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped(stop.clone()) => return,
        }
        let resources = collect(&shared).await;
        if !resources.is_empty() {
            output.consume(Batch::from_resources(resources)).await;
        }
    }
}

pub(crate) async fn collect(shared: &Shared) -> Vec<ResourceMetrics> {
    let grace = shared.settings.grace;
    let snapshot: Vec<Tracked> = match shared.containers.lock() {
        Ok(mut containers) => {
            containers.retain(|_, t| match t.state {
                State::Running => true,
                State::Stopped { since } => since.elapsed() < grace,
            });
            containers.values().cloned().collect()
        }
        Err(_) => return Vec::new(),
    };
    let client = shared.client();
    let reads = snapshot.iter().map(|t| {
        let client = client.clone();
        async move {
            match (&client, t.is_running()) {
                (Some(docker), true) => read_stats(docker, &t.id, shared.settings.timeout).await,
                _ => None,
            }
        }
    });
    let stats = futures::future::join_all(reads).await;
    let now = now_nanos();
    let mut resources = Vec::with_capacity(snapshot.len());
    let mut samples = Vec::new();
    let plan = &shared.settings.plan;
    let mut keep = |r: ResourceMetrics| {
        if r.scope_metrics.iter().any(|s| !s.metrics.is_empty()) {
            resources.push(r);
        }
    };
    for (container, stats) in snapshot.iter().zip(stats) {
        if !container.is_running() {
            if container.emit_metrics {
                keep(metrics::stopped(container, now, plan));
            }
            continue;
        }
        // No answer (daemon away, or the container ended mid-read): whether it still runs is
        // unknown, so nothing is said rather than a `container.up` 1 that may be false. The
        // die event or the next listing settles it.
        let Some(stats) = stats else { continue };
        let usage = cpu_usage(&stats, container.previous_cpu);
        if let Some(sample) = cpu_sample(&stats) {
            samples.push((container.id.clone(), sample));
        }
        if container.emit_metrics {
            keep(metrics::running(container, Some(&stats), usage, now, plan));
        }
    }
    if let Ok(mut containers) = shared.containers.lock() {
        for (id, sample) in samples {
            // A container that stopped while its stats were read keeps no sample: the next
            // run starts its rate afresh.
            if let Some(t) = containers.get_mut(&id).filter(|t| t.is_running()) {
                t.previous_cpu = Some(sample);
            }
        }
    }
    resources
}

/// One stats sample. `one-shot` skips the second sample the daemon would otherwise wait a
/// second for: the receiver keeps the previous sample itself.
async fn read_stats(
    docker: &Docker,
    id: &str,
    timeout: std::time::Duration,
) -> Option<ContainerStatsResponse> {
    let options = StatsOptionsBuilder::default()
        .stream(false)
        .one_shot(true)
        .build();
    let started = StdInstant::now();
    let mut stream = docker.stats(id, Some(options));
    match tokio::time::timeout(timeout, stream.next()).await {
        Ok(Some(Ok(stats))) => Some(stats),
        Ok(Some(Err(e))) => {
            tracing::debug!(container = id, error = %e, "cannot read container stats");
            None
        }
        Ok(None) => None,
        Err(_) => {
            tracing::debug!(container = id, waited = ?started.elapsed(), "container stats timed out");
            None
        }
    }
}
