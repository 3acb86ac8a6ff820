//! The push interface between stages, fan-out, and the receiver side of admission.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ack::{Ack, DeliveryError, Outcome};
use crate::batch::Batch;
use crate::signal::{Logs, Metrics, Signal, SignalKind, Traces};

/// Takes batches of one signal. Outcomes travel back through the batch's acknowledgements, not
/// the return value, so a consumer that queues data can answer later. `consume` may wait
/// (backpressure); a caller that stops waiting drops the batch and its handles, which the
/// sender sees as a retryable failure.
#[async_trait]
pub trait Consumer<S: Signal>: Send + Sync + 'static {
    async fn consume(&self, batch: Batch<S>);

    /// When this consumer settles the acknowledgements it is given. A stage in front of it
    /// that holds data (the batch processor) may answer senders itself once it holds the
    /// data in memory only when everything after it answers on memory too; otherwise memory
    /// would stand in for a disk write or a delivery the configuration asked for. Stages that
    /// pass batches on report their next stage's point; the default is the strictest, so a
    /// consumer that says nothing never lets a stage in front of it answer early.
    fn ack_point(&self) -> AckPoint {
        AckPoint::Delivered
    }
}

/// What "taken responsibility" means for a consumer, from weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AckPoint {
    /// Answered once the data is held in memory (an in-memory sending queue, a connector
    /// that has counted it, a discarding exporter).
    Memory,
    /// Answered once the data is in a persistent queue's log on disk.
    Stored,
    /// Answered once the data is delivered.
    Delivered,
}

pub type DynConsumer<S> = Arc<dyn Consumer<S>>;

/// A consumer of any one signal, for code that wires components without knowing their signal.
#[derive(Clone)]
pub enum AnyConsumer {
    Traces(DynConsumer<Traces>),
    Metrics(DynConsumer<Metrics>),
    Logs(DynConsumer<Logs>),
}

impl AnyConsumer {
    pub fn signal(&self) -> SignalKind {
        match self {
            AnyConsumer::Traces(_) => SignalKind::Traces,
            AnyConsumer::Metrics(_) => SignalKind::Metrics,
            AnyConsumer::Logs(_) => SignalKind::Logs,
        }
    }

    pub fn ack_point(&self) -> AckPoint {
        match self {
            AnyConsumer::Traces(c) => c.ack_point(),
            AnyConsumer::Metrics(c) => c.ack_point(),
            AnyConsumer::Logs(c) => c.ack_point(),
        }
    }

    /// Applies a signal-generic wrapper (a processor) to whichever signal this is.
    pub fn wrap<W: WrapConsumer>(self, wrapper: &W) -> Result<AnyConsumer, W::Error> {
        Ok(match self {
            AnyConsumer::Traces(c) => AnyConsumer::Traces(wrapper.wrap(c)?),
            AnyConsumer::Metrics(c) => AnyConsumer::Metrics(wrapper.wrap(c)?),
            AnyConsumer::Logs(c) => AnyConsumer::Logs(wrapper.wrap(c)?),
        })
    }

    /// Fans out to every consumer given; all must be of `signal`.
    pub fn fanout(signal: SignalKind, consumers: Vec<AnyConsumer>) -> AnyConsumer {
        match signal {
            SignalKind::Traces => AnyConsumer::Traces(fanout(collect_signal(consumers))),
            SignalKind::Metrics => AnyConsumer::Metrics(fanout(collect_signal(consumers))),
            SignalKind::Logs => AnyConsumer::Logs(fanout(collect_signal(consumers))),
        }
    }
}

fn collect_signal<S: SignalConsumer>(consumers: Vec<AnyConsumer>) -> Vec<DynConsumer<S>> {
    consumers
        .into_iter()
        .filter_map(|c| S::from_any(c))
        .collect()
}

/// Moving between the typed and the untyped consumer.
pub trait SignalConsumer: Signal {
    fn to_any(consumer: DynConsumer<Self>) -> AnyConsumer;
    fn from_any(consumer: AnyConsumer) -> Option<DynConsumer<Self>>;
}

macro_rules! signal_consumer {
    ($signal:ident) => {
        impl SignalConsumer for $signal {
            fn to_any(consumer: DynConsumer<Self>) -> AnyConsumer {
                AnyConsumer::$signal(consumer)
            }
            fn from_any(consumer: AnyConsumer) -> Option<DynConsumer<Self>> {
                match consumer {
                    AnyConsumer::$signal(c) => Some(c),
                    _ => None,
                }
            }
        }
    };
}
signal_consumer!(Traces);
signal_consumer!(Metrics);
signal_consumer!(Logs);

/// Builds a consumer of signal `S` in front of `next`; written once, generic over the signal.
pub trait WrapConsumer {
    type Error;
    fn wrap<S: Signal + SignalConsumer>(
        &self,
        next: DynConsumer<S>,
    ) -> Result<DynConsumer<S>, Self::Error>;
}

/// Sends every batch to all targets at once, so a slow target delays the others only by the
/// time it takes to hand over (its own queue absorbs the rest).
pub struct Fanout<S: Signal> {
    targets: Vec<DynConsumer<S>>,
}

pub fn fanout<S: Signal>(mut targets: Vec<DynConsumer<S>>) -> DynConsumer<S> {
    if targets.len() == 1
        && let Some(only) = targets.pop()
    {
        return only;
    }
    Arc::new(Fanout { targets })
}

#[async_trait]
impl<S: Signal> Consumer<S> for Fanout<S> {
    async fn consume(&self, batch: Batch<S>) {
        let Some((last, rest)) = self.targets.split_last() else {
            // No target: nothing will ever take the data; say so instead of acknowledging it.
            batch.settle(&Err(DeliveryError::permanent("pipeline has no exporter")));
            return;
        };
        let mut sends = Vec::with_capacity(self.targets.len());
        for target in rest {
            sends.push(target.consume(batch.fork()));
        }
        sends.push(last.consume(batch));
        futures::future::join_all(sends).await;
    }

    /// A batch is answered when every target has answered: the strictest target decides.
    fn ack_point(&self) -> AckPoint {
        self.targets
            .iter()
            .map(|t| t.ack_point())
            .max()
            .unwrap_or(AckPoint::Memory)
    }
}

/// How long a receiver waits for the pipeline to take a request before telling the client to
/// back off. Short enough that clients see 429 rather than their own timeout.
pub const DEFAULT_ADMISSION_WAIT: Duration = Duration::from_secs(5);

/// Hands a receiver's request to the pipeline and waits for its acknowledgement.
pub async fn deliver<S: Signal>(
    consumer: &DynConsumer<S>,
    batch: Batch<S>,
    admission_wait: Duration,
) -> Outcome {
    let (ack, waiter) = Ack::new();
    let batch = batch.with_ack(ack);
    if tokio::time::timeout(admission_wait, consumer.consume(batch))
        .await
        .is_err()
    {
        // The batch was dropped mid-hand-over; whatever branch already took it stays valid.
        drop(waiter);
        return Err(DeliveryError::Throttled {
            reason: "the pipeline is full".into(),
            retry_after: Duration::from_secs(1),
        });
    }
    waiter.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Logs;
    use std::sync::Mutex;

    struct Record(Mutex<Vec<usize>>, Outcome);
    #[async_trait]
    impl Consumer<Logs> for Record {
        async fn consume(&self, batch: Batch<Logs>) {
            self.0.lock().unwrap().push(batch.items());
            batch.settle(&self.1);
        }
    }

    #[tokio::test]
    async fn fanout_reaches_every_target_and_combines_outcomes() {
        let ok = Arc::new(Record(Mutex::new(vec![]), Ok(())));
        let bad = Arc::new(Record(
            Mutex::new(vec![]),
            Err(DeliveryError::permanent("x")),
        ));
        let out = fanout::<Logs>(vec![ok.clone(), bad.clone()]);
        let outcome = deliver(&out, Batch::from_resources(vec![]), Duration::from_secs(1)).await;
        assert!(matches!(outcome, Err(DeliveryError::Permanent { .. })));
        assert_eq!(ok.0.lock().unwrap().len(), 1);
        assert_eq!(bad.0.lock().unwrap().len(), 1);
    }

    struct Stuck;
    #[async_trait]
    impl Consumer<Logs> for Stuck {
        async fn consume(&self, _batch: Batch<Logs>) {
            futures::future::pending::<()>().await;
        }
    }

    #[tokio::test]
    async fn a_blocked_pipeline_throttles_the_sender() {
        let out: DynConsumer<Logs> = Arc::new(Stuck);
        let outcome = deliver(
            &out,
            Batch::from_resources(vec![]),
            Duration::from_millis(10),
        )
        .await;
        assert!(matches!(outcome, Err(DeliveryError::Throttled { .. })));
    }
}
