//! Acknowledgements: every batch carries handles that resolve the sender's request once every
//! exporter it fanned out to has taken responsibility for it (ARCHITECTURE.md §4).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use std::{future::Future, pin::Pin};

use tokio::sync::oneshot;

/// Why data was not accepted. The receiver maps each kind to the protocol's status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The pipeline is full; the client should slow down and retry (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    #[error("{reason}")]
    Throttled {
        reason: String,
        retry_after: Duration,
    },
    /// A transient failure; retrying the same data may succeed (HTTP 503, gRPC UNAVAILABLE).
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The data can never be accepted; retrying is pointless (HTTP 400, gRPC INVALID_ARGUMENT).
    #[error("{reason}")]
    Permanent { reason: String },
}

impl DeliveryError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent { .. })
    }
    /// When several exporters fail differently the sender sees the error that keeps the most
    /// data alive: anything retryable beats permanent, so one exporter's transient trouble is
    /// retried even if another rejected the data for good (that one will reject it again).
    fn rank(&self) -> u8 {
        match self {
            DeliveryError::Permanent { .. } => 1,
            DeliveryError::Retryable { .. } => 2,
            DeliveryError::Throttled { .. } => 3,
        }
    }
}

pub type Outcome = Result<(), DeliveryError>;

struct Shared {
    worst: Mutex<Option<DeliveryError>>,
    done: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Shared {
    fn record(&self, error: DeliveryError) {
        if let Ok(mut worst) = self.worst.lock()
            && worst.as_ref().is_none_or(|w| error.rank() > w.rank())
        {
            *worst = Some(error);
        }
    }
}

impl Drop for Shared {
    // The last handle gone means every branch has settled: report the worst outcome.
    fn drop(&mut self) {
        let worst = self.worst.get_mut().ok().and_then(|w| w.take());
        if let Some(done) = self.done.get_mut().ok().and_then(|d| d.take()) {
            let _ = done.send(worst.map_or(Ok(()), Err));
        }
    }
}

/// One branch's share of a sender's acknowledgement. Cloning adds a branch; a handle dropped
/// without [`Ack::settle`] counts as a retryable failure, so a bug or a cancelled task can never
/// acknowledge data that went nowhere.
pub struct Ack {
    shared: Arc<Shared>,
    settled: bool,
}

impl Ack {
    /// A new acknowledgement and the waiter that resolves when all its handles are settled.
    pub fn new() -> (Ack, AckWaiter) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            worst: Mutex::new(None),
            done: Mutex::new(Some(tx)),
        });
        (
            Ack {
                shared,
                settled: false,
            },
            AckWaiter(rx),
        )
    }

    pub fn settle(mut self, outcome: &Outcome) {
        if let Err(error) = outcome {
            self.shared.record(error.clone());
        }
        self.settled = true;
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack {
            shared: self.shared.clone(),
            settled: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.record(DeliveryError::retryable(
                "data was dropped before it was delivered",
            ));
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// Resolves to the combined outcome of every handle of one acknowledgement.
pub struct AckWaiter(oneshot::Receiver<Outcome>);

impl Future for AckWaiter {
    type Output = Outcome;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(DeliveryError::retryable("the pipeline shut down"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_ok_when_every_branch_settles_ok() {
        let (ack, waiter) = Ack::new();
        let other = ack.clone();
        ack.settle(&Ok(()));
        other.settle(&Ok(()));
        assert_eq!(waiter.await, Ok(()));
    }

    #[tokio::test]
    async fn retryable_beats_permanent_and_drop_counts_as_failure() {
        let (ack, waiter) = Ack::new();
        let a = ack.clone();
        let b = ack.clone();
        ack.settle(&Err(DeliveryError::permanent("bad")));
        a.settle(&Ok(()));
        drop(b);
        assert!(matches!(waiter.await, Err(DeliveryError::Retryable { .. })));

        let (ack, waiter) = Ack::new();
        ack.settle(&Err(DeliveryError::permanent("bad")));
        assert!(matches!(waiter.await, Err(DeliveryError::Permanent { .. })));
    }
}
