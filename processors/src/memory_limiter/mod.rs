//! `memory_limiter`: refuses new data with retryable errors while the process is above its
//! soft memory limit.
//!
//! A background task measures the process's resident memory every `check_interval` (at least
//! every 100 ms). Above the soft limit (`limit - spike`) it sets the shared admission state to
//! refusing, so every receiver that consults it refuses requests before reading them, and this
//! processor refuses the batches that reach it (for receivers that do not consult it). Below the soft limit it
//! tells the admission state how many more bytes may be reserved before the next measurement
//! (receivers reserve a request's bytes and the memory its decoded form will take), so a burst
//! between two measurements cannot run past the limit either. The spike limit is also the
//! receivers' in-flight budget, which data holds for its decoded form for as long as it is in
//! the collector.

mod config;
mod system;

pub use config::{Limits, MemoryLimiterConfig};
pub use system::set_global_allocator_release;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::admission::MemoryGate;
use sluice_pipeline::config_keys::{NoEffect, decode_section};
use sluice_pipeline::telemetry::{Counter, Gauge};
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DeliveryError, DynConsumer,
    FactoryInfo, Lifecycle, ProcessorFactory, Signal, SignalConsumer, StartError, WrapConsumer,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Measurements are at least this frequent, whatever `check_interval` says: the room admitted
/// between two of them is what a burst can add, and too long a gap would throttle a fast but
/// healthy collector.
const MAX_MEASURE_INTERVAL: StdDuration = StdDuration::from_millis(100);

/// The collector's garbage-collection pacing: sluice frees memory as it goes, with no
/// collector to run.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "min_gc_interval_when_soft_limited",
        "paces Go's garbage collector; sluice has none (memory is freed when data is delivered)",
    ),
    NoEffect::new(
        "min_gc_interval_when_hard_limited",
        "paces Go's garbage collector; sluice has none (memory is freed when data is delivered)",
    ),
    NoEffect::new(
        "max_gc_interval_when_soft_limited",
        "paces Go's garbage collector; sluice has none (memory is freed when data is delivered)",
    ),
    NoEffect::new(
        "max_gc_interval_when_hard_limited",
        "paces Go's garbage collector; sluice has none (memory is freed when data is delivered)",
    ),
];

pub struct MemoryLimiterProcessorFactory;

impl ProcessorFactory for MemoryLimiterProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "memory_limiter",
            aliases: &["memorylimiter"],
            signals: &SignalKind::ALL,
            description: "refuses new data while the process is above its memory limit",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let cfg: MemoryLimiterConfig = decode_section(config, NO_EFFECT, &ctx.warnings)?;
        let limits = cfg.limits(system::available_memory).map_err(|e| {
            let pos = config
                .node
                .as_map()
                .and_then(|m| m.get_entry(e.key))
                .map(|(k, _)| k.pos.clone())
                .unwrap_or_else(|| config.node.pos.clone());
            ConfigErrors::from(Diagnostic::new(
                Some(pos),
                format!("{}.{}", config.path, e.key),
                e.message,
            ))
        })?;
        let name = config.id.to_string();
        let interval = cfg.check_interval.0.min(MAX_MEASURE_INTERVAL);
        let retry_after = cfg.check_interval.0.max(StdDuration::from_secs(1));
        let gate = ctx.admission.memory_gate(
            &name,
            usize::try_from(limits.spike).unwrap_or(usize::MAX),
            retry_after,
        );
        ctx.admission.report_to(&ctx.telemetry.metrics);
        let metrics = &ctx.telemetry.metrics;
        let labels = [("processor", name.as_str())];
        let sampler = Arc::new(Sampler {
            gate: gate.clone(),
            limits,
            interval,
            task: Mutex::new(None),
            rss: metrics.gauge(
                "sluice_memory_limiter_rss_bytes",
                "Resident memory at the memory limiter's last measurement",
                &labels,
            ),
            refusing: metrics.gauge(
                "sluice_memory_limiter_refusing",
                "1 while the process is above the soft limit and new data is refused",
                &labels,
            ),
            over_hard_limit: metrics.counter(
                "sluice_memory_limiter_hard_limit_exceeded",
                "Measurements that found the process above the hard limit",
                &labels,
            ),
        });
        metrics
            .gauge(
                "sluice_memory_limiter_hard_limit_bytes",
                "The memory limiter's hard limit",
                &labels,
            )
            .set(i64::try_from(limits.hard).unwrap_or(i64::MAX));
        metrics
            .gauge(
                "sluice_memory_limiter_soft_limit_bytes",
                "Above this the memory limiter refuses new data",
                &labels,
            )
            .set(i64::try_from(limits.soft()).unwrap_or(i64::MAX));
        let builder = Builder {
            gate,
            retry_after,
            name,
            ctx: ctx.clone(),
        };
        let consumer = next.wrap(&builder)?;
        Ok(BuiltStage {
            consumer,
            lifecycle: Some(sampler),
        })
    }
}

struct Builder {
    gate: Arc<MemoryGate>,
    retry_after: StdDuration,
    name: String,
    ctx: BuildContext,
}

impl WrapConsumer for Builder {
    type Error = ConfigErrors;
    fn wrap<S: Signal + SignalConsumer>(
        &self,
        next: DynConsumer<S>,
    ) -> Result<DynConsumer<S>, ConfigErrors> {
        let item = S::ITEM_NAME;
        Ok(Arc::new(MemoryLimiter::<S> {
            next,
            gate: self.gate.clone(),
            retry_after: self.retry_after,
            refused: self.ctx.telemetry.metrics.counter(
                &format!("otelcol_processor_refused_{item}"),
                &format!("Number of {item} refused by the memory limiter"),
                &[("processor", &self.name)],
            ),
        }))
    }
}

pub struct MemoryLimiter<S: Signal> {
    next: DynConsumer<S>,
    gate: Arc<MemoryGate>,
    retry_after: StdDuration,
    refused: Counter,
}

#[async_trait]
impl<S: Signal> Consumer<S> for MemoryLimiter<S> {
    async fn consume(&self, batch: Batch<S>) {
        if self.gate.refusing() {
            self.refused.add(batch.items() as u64);
            batch.settle(&Err(DeliveryError::Throttled {
                reason: format!(
                    "the collector is above its memory limit (memory_limiter `{}`); retry later",
                    self.gate.name()
                ),
                retry_after: self.retry_after,
            }));
            return;
        }
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        self.next.ack_point()
    }
}

/// The measuring task; one per limiter id, however many pipelines use it.
struct Sampler {
    gate: Arc<MemoryGate>,
    limits: Limits,
    interval: StdDuration,
    task: Mutex<Option<JoinHandle<()>>>,
    rss: Gauge,
    refusing: Gauge,
    over_hard_limit: Counter,
}

/// What one measurement concluded.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    refusing: bool,
    /// Request bytes that may be admitted before the next measurement.
    headroom: u64,
}

fn verdict(rss: u64, limits: &Limits) -> Verdict {
    let room = limits.soft().saturating_sub(rss);
    Verdict {
        refusing: room == 0,
        // What receivers reserve counts the decoded form of a request too (its estimate is
        // reserved with the request's bytes), so it is counted against the room as it is.
        headroom: room,
    }
}

impl Sampler {
    fn measure(&self, was_refusing: bool) -> bool {
        let Some(mut rss) = system::process_rss() else {
            return false;
        };
        if rss >= self.limits.soft() {
            // Freed memory the allocator keeps counts as resident: hand it back before
            // deciding, or the process could stay "above the limit" with nothing in it.
            system::return_free_memory();
            if let Some(after) = system::process_rss() {
                tracing::debug!(before = rss, after, "returned free memory to the system");
                rss = after;
            }
        }
        if rss >= self.limits.hard {
            self.over_hard_limit.add(1);
            tracing::warn!(
                processor = %self.gate.name(),
                rss_mib = rss >> 20,
                limit_mib = self.limits.hard >> 20,
                "memory use is above the hard limit"
            );
        }
        let v = verdict(rss, &self.limits);
        self.gate.update(v.refusing, v.headroom);
        self.rss.set(i64::try_from(rss).unwrap_or(i64::MAX));
        self.refusing.set(i64::from(v.refusing));
        if v.refusing && !was_refusing {
            tracing::warn!(
                processor = %self.gate.name(),
                rss_mib = rss >> 20,
                soft_limit_mib = self.limits.soft() >> 20,
                "memory use is above the soft limit: refusing new data"
            );
        } else if !v.refusing && was_refusing {
            tracing::info!(
                processor = %self.gate.name(),
                rss_mib = rss >> 20,
                "memory use is below the soft limit again: accepting data"
            );
        }
        v.refusing
    }
}

#[async_trait]
impl Lifecycle for Sampler {
    async fn start(&self) -> Result<(), StartError> {
        if !self.gate.claim_sampler() {
            // Another pipeline's instance of this limiter measures for both.
            return Ok(());
        }
        // Measured once now, so the verdict is known before the first request.
        let refusing = self.measure(false);
        let this = Sampler {
            gate: self.gate.clone(),
            limits: self.limits,
            interval: self.interval,
            task: Mutex::new(None),
            rss: self.rss.clone(),
            refusing: self.refusing.clone(),
            over_hard_limit: self.over_hard_limit.clone(),
        };
        let task = tokio::spawn(async move {
            let mut refusing = refusing;
            let mut ticks = tokio::time::interval(this.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                refusing = this.measure(refusing);
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        Ok(())
    }

    async fn shutdown(&self, _deadline: Instant) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
            // Draining must not be refused by a verdict nobody will update any more.
            self.gate.update(false, u64::MAX);
            self.gate.release_sampler();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pipeline::admission::Admission;
    use sluice_pipeline::{Logs, deliver};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    #[async_trait]
    impl Consumer<Logs> for Count {
        async fn consume(&self, batch: Batch<Logs>) {
            self.0.fetch_add(1, Ordering::Relaxed);
            batch.settle(&Ok(()));
        }
    }

    #[tokio::test]
    async fn batches_are_refused_with_a_retryable_error_while_above_the_soft_limit() {
        let admission = Admission::new(1000);
        let gate = admission.memory_gate("memory_limiter", 100, StdDuration::from_secs(3));
        let next = Arc::new(Count(AtomicUsize::new(0)));
        let refused = Counter::default();
        let limiter: DynConsumer<Logs> = Arc::new(MemoryLimiter::<Logs> {
            next: next.clone(),
            gate: gate.clone(),
            retry_after: StdDuration::from_secs(3),
            refused: refused.clone(),
        });
        let send = || {
            deliver(
                &limiter,
                Batch::from_resources(vec![]),
                StdDuration::from_secs(1),
            )
        };
        assert_eq!(send().await, Ok(()));
        gate.update(true, 0);
        match send().await {
            Err(DeliveryError::Throttled { retry_after, .. }) => {
                assert_eq!(retry_after, StdDuration::from_secs(3))
            }
            other => panic!("{other:?}"),
        }
        gate.update(false, 1000);
        assert_eq!(send().await, Ok(()));
        assert_eq!(next.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn above_the_soft_limit_refuses_below_it_counts_the_room() {
        let limits = Limits {
            hard: 1000,
            spike: 200,
        };
        assert_eq!(
            verdict(900, &limits),
            Verdict {
                refusing: true,
                headroom: 0
            }
        );
        assert_eq!(
            verdict(400, &limits),
            Verdict {
                refusing: false,
                headroom: 400
            }
        );
    }
}
