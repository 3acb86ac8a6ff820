use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Ready,
    Draining,
}

/// The collector's readiness, shared by the runtime (which sets it) and the health endpoint.
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicU8>);

impl Health {
    pub fn set(&self, state: HealthState) {
        let value = match state {
            HealthState::Starting => 0,
            HealthState::Ready => 1,
            HealthState::Draining => 2,
        };
        self.0.store(value, Ordering::SeqCst);
    }

    pub fn get(&self) -> HealthState {
        match self.0.load(Ordering::SeqCst) {
            1 => HealthState::Ready,
            2 => HealthState::Draining,
            _ => HealthState::Starting,
        }
    }
}
