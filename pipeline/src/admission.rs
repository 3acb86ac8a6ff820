//! Admission control shared by every receiver: the in-flight byte budget and the memory
//! limiter's verdict, consulted before a request is decoded (ARCHITECTURE.md §4).
//!
//! A receiver first asks whether a request of its declared size could be admitted now
//! ([`Admission::precheck`], which reserves nothing: a client that declares a size and then
//! sends nothing must not hold budget), then reserves the bytes as they actually arrive (the
//! compressed body chunk by chunk, then the decompressed data block by block) and holds the
//! [`Permit`] until it has answered the client. A reservation is refused, retryably, when the
//! bytes in flight would exceed the budget, or when a `memory_limiter` says the process is
//! above its soft limit, or when the bytes admitted since the limiter's last look at the
//! process would carry it past that limit; and permanently when the request alone needs more
//! than the whole budget, since retrying it could never succeed.
//!
//! Once a request is checked, the memory its decoded form would take (the scan's estimate) is
//! reserved as well, before anything is decoded. That part of the permit is split off and
//! travels with the data ([`crate::Batch::hold`]): it is given back when the data leaves the
//! collector (exported, written to a persistent queue, dropped), not when the client is
//! answered, since the data can be decoded later, after it was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::ack::DeliveryError;
use crate::telemetry::{Counter, Gauge, MetricsRegistry};

/// The in-flight budget when no `memory_limiter` is configured: 256 MiB of request bytes
/// (compressed as received plus decompressed) and of the estimated memory of the decoded data
/// the collector holds. With a `memory_limiter` the budget is its spike limit, the headroom it
/// keeps for bursts.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

/// What a client is told to wait before retrying a request refused for lack of budget.
const BUDGET_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Process-wide admission state; cheap to clone (shared).
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(DEFAULT_BUDGET)
    }
}

struct Inner {
    budget: AtomicUsize,
    in_flight: AtomicUsize,
    gates: RwLock<Vec<Arc<MemoryGate>>>,
    metrics: OnceLock<Metrics>,
}

struct Metrics {
    in_flight: Gauge,
    budget: Gauge,
    refused_budget: Counter,
    refused_memory: Counter,
    refused_too_large: Counter,
}

/// Why a reservation was refused. Every refusal but [`Refusal::TooLarge`] is retryable: the
/// client should back off.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the collector is above its memory limit (memory_limiter `{limiter}`); retry later")]
    MemoryLimit {
        limiter: String,
        retry_after: Duration,
    },
    #[error(
        "{requested} more bytes (of the request, or of the memory its decoded form takes) would exceed the in-flight budget ({in_flight} of {budget} bytes in use); retry later"
    )]
    Budget {
        requested: usize,
        in_flight: usize,
        budget: usize,
    },
    /// The request alone needs more than the whole budget: permanent, a retry cannot fit.
    #[error(
        "the request needs at least {requested} bytes (as received, decompressed, and the estimated memory of its decoded form), more than the whole in-flight budget of {budget} bytes; it can never be accepted: send smaller requests"
    )]
    TooLarge { requested: usize, budget: usize },
}

impl Refusal {
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::MemoryLimit { retry_after, .. } => *retry_after,
            Refusal::Budget { .. } | Refusal::TooLarge { .. } => BUDGET_RETRY_AFTER,
        }
    }

    /// True when retrying the same request can never succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Refusal::TooLarge { .. })
    }

    /// The refusal as the pipeline's error kind, for receivers that map that to a status.
    pub fn to_delivery_error(&self) -> DeliveryError {
        if self.is_permanent() {
            return DeliveryError::Permanent {
                reason: self.to_string(),
            };
        }
        DeliveryError::Throttled {
            reason: self.to_string(),
            retry_after: self.retry_after(),
        }
    }
}

impl Admission {
    /// An admission state whose budget, until a memory limiter sets one, is `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Admission {
            inner: Arc::new(Inner {
                budget: AtomicUsize::new(budget),
                in_flight: AtomicUsize::new(0),
                gates: RwLock::new(Vec::new()),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Exposes the bytes in flight, the budget and the refusals as self-metrics (once; later
    /// calls do nothing).
    pub fn report_to(&self, registry: &MetricsRegistry) {
        let _ = self.inner.metrics.get_or_init(|| {
            let refused = |reason: &str| {
                registry.counter(
                    "sluice_admission_refused_requests",
                    "Requests refused before decoding, by reason",
                    &[("reason", reason)],
                )
            };
            let metrics = Metrics {
                in_flight: registry.gauge(
                    "sluice_admission_bytes_in_flight",
                    "Bytes reserved: request bytes (compressed as received plus decompressed) until the receiver answers, and the estimated memory of their decoded form while the collector holds the data",
                    &[],
                ),
                budget: registry.gauge(
                    "sluice_admission_budget_bytes",
                    "Largest number of bytes that may be reserved at once (sluice_admission_bytes_in_flight)",
                    &[],
                ),
                refused_budget: refused("in_flight_budget"),
                refused_memory: refused("memory_limit"),
                refused_too_large: refused("larger_than_budget"),
            };
            metrics
                .in_flight
                .set(self.inner.in_flight.load(Ordering::Relaxed) as i64);
            metrics.budget.set(self.budget() as i64);
            metrics
        });
    }

    pub fn budget(&self) -> usize {
        self.inner.budget.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a memory limiter currently refuses new data; receivers check this before they
    /// read anything.
    pub fn check(&self) -> Result<(), Refusal> {
        let gates = self.gates();
        for gate in gates.iter() {
            if gate.refusing.load(Ordering::Relaxed) {
                return Err(self.refused(Refusal::MemoryLimit {
                    limiter: gate.name.clone(),
                    retry_after: gate.retry_after,
                }));
            }
        }
        Ok(())
    }

    /// Whether a request that says it is `bytes` long could be admitted now, without reserving
    /// anything: refused when a memory limiter refuses, permanently when `bytes` alone exceed
    /// the budget, retryably when they do not fit beside the bytes in flight. The bytes are
    /// reserved as they arrive ([`Permit::grow`]), which can still be refused.
    pub fn precheck(&self, bytes: usize) -> Result<(), Refusal> {
        self.check()?;
        let budget = self.budget();
        if bytes > budget {
            return Err(self.refused(Refusal::TooLarge {
                requested: bytes,
                budget,
            }));
        }
        let in_flight = self.in_flight();
        if in_flight.saturating_add(bytes) > budget {
            return Err(self.refused(Refusal::Budget {
                requested: bytes,
                in_flight,
                budget,
            }));
        }
        Ok(())
    }

    /// Reserves `bytes` for a request about to be read; the permit gives them back when dropped.
    pub fn reserve(&self, bytes: usize) -> Result<Permit, Refusal> {
        let mut permit = Permit {
            admission: self.clone(),
            bytes: 0,
        };
        permit.grow(bytes)?;
        Ok(permit)
    }

    fn gates(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<MemoryGate>>> {
        self.inner
            .gates
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `bytes` more for a request that already holds `held`.
    fn take(&self, held: usize, bytes: usize) -> Result<(), Refusal> {
        self.check()?;
        let budget = self.budget();
        let total = held.saturating_add(bytes);
        if total > budget {
            return Err(self.refused(Refusal::TooLarge {
                requested: total,
                budget,
            }));
        }
        let taken =
            self.inner
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                    current.checked_add(bytes).filter(|&n| n <= budget)
                });
        if let Err(current) = taken {
            return Err(self.refused(Refusal::Budget {
                requested: bytes,
                in_flight: current,
                budget,
            }));
        }
        // Bytes admitted since the limiter last measured the process count against the room
        // it saw below its soft limit, so a burst between two measurements is bounded too.
        let gates = self.gates();
        for (i, gate) in gates.iter().enumerate() {
            if !gate.take_headroom(bytes) {
                for earlier in &gates[..i] {
                    earlier.give_back_headroom(bytes);
                }
                self.inner.in_flight.fetch_sub(bytes, Ordering::AcqRel);
                let refusal = Refusal::MemoryLimit {
                    limiter: gate.name.clone(),
                    retry_after: gate.retry_after,
                };
                drop(gates);
                return Err(self.refused(refusal));
            }
        }
        drop(gates);
        if let Some(m) = self.inner.metrics.get() {
            m.in_flight.add(bytes as i64);
        }
        Ok(())
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.inner.in_flight.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(m) = self.inner.metrics.get() {
            m.in_flight.add(-(bytes as i64));
        }
    }

    fn refused(&self, refusal: Refusal) -> Refusal {
        if let Some(m) = self.inner.metrics.get() {
            match refusal {
                Refusal::MemoryLimit { .. } => m.refused_memory.add(1),
                Refusal::Budget { .. } => m.refused_budget.add(1),
                Refusal::TooLarge { .. } => m.refused_too_large.add(1),
            }
        }
        refusal
    }

    /// Registers the memory limiter `name` (or returns the gate it already has: a processor
    /// used in several pipelines is built once per pipeline but is one limiter). The budget
    /// becomes the smallest spike limit of all limiters.
    pub fn memory_gate(
        &self,
        name: &str,
        spike_limit: usize,
        retry_after: Duration,
    ) -> Arc<MemoryGate> {
        let mut gates = self
            .inner
            .gates
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(gate) = gates.iter().find(|g| g.name == name) {
            return gate.clone();
        }
        let gate = Arc::new(MemoryGate {
            name: name.to_string(),
            refusing: AtomicBool::new(false),
            headroom: AtomicI64::new(i64::MAX),
            retry_after,
            sampler_claimed: AtomicBool::new(false),
        });
        gates.push(gate.clone());
        // The first limiter replaces the default; later ones can only lower the budget.
        let spike_limit = spike_limit.max(1);
        let budget = if gates.len() == 1 {
            spike_limit
        } else {
            spike_limit.min(self.budget())
        };
        self.inner.budget.store(budget, Ordering::Relaxed);
        if let Some(m) = self.inner.metrics.get() {
            m.budget.set(budget as i64);
        }
        gate
    }
}

/// One memory limiter's verdict, written by its sampler and read by every receiver.
pub struct MemoryGate {
    name: String,
    refusing: AtomicBool,
    /// Bytes that may still be admitted before the next measurement.
    headroom: AtomicI64,
    retry_after: Duration,
    sampler_claimed: AtomicBool,
}

impl MemoryGate {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for exactly one caller: the one that should run this limiter's sampler.
    pub fn claim_sampler(&self) -> bool {
        !self.sampler_claimed.swap(true, Ordering::AcqRel)
    }

    /// Gives the sampler back (it stopped), so a later start can run it again.
    pub fn release_sampler(&self) {
        self.sampler_claimed.store(false, Ordering::Release);
    }

    /// Records a measurement: whether to refuse, and how many bytes may be admitted until the
    /// next one.
    pub fn update(&self, refusing: bool, headroom: u64) {
        self.refusing.store(refusing, Ordering::Relaxed);
        self.headroom.store(
            i64::try_from(headroom).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    fn give_back_headroom(&self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let _ = self
            .headroom
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h != i64::MAX).then(|| h.saturating_add(bytes))
            });
    }

    fn take_headroom(&self, bytes: usize) -> bool {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.headroom
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                if h == i64::MAX {
                    Some(h)
                } else if h >= bytes {
                    Some(h - bytes)
                } else {
                    None
                }
            })
            .is_ok()
    }
}

/// Bytes reserved for one request; given back when dropped (when the request is answered).
pub struct Permit {
    admission: Admission,
    bytes: usize,
}

impl Permit {
    /// Reserves `more` bytes for this request (the next chunk of a body, the next block of
    /// decompressed data).
    /// Refused permanently ([`Refusal::TooLarge`]) when this request alone would then hold
    /// more than the whole budget.
    pub fn grow(&mut self, more: usize) -> Result<(), Refusal> {
        self.admission.take(self.bytes, more)?;
        self.bytes += more;
        Ok(())
    }

    /// Gives back what was reserved beyond `bytes` (a block reserved for output that turned
    /// out shorter).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.admission.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Moves `bytes` of this reservation (all of it, if it holds fewer) into a new permit,
    /// which gives them back on its own: for the part of a request's reservation that stays
    /// with its data after the request is answered.
    pub fn split_off(&mut self, bytes: usize) -> Permit {
        let moved = bytes.min(self.bytes);
        self.bytes -= moved;
        Permit {
            admission: self.admission.clone(),
            bytes: moved,
        }
    }

    /// Adds `other`'s reservation to this one when both are of the same admission state;
    /// else hands it back.
    pub fn absorb(&mut self, mut other: Permit) -> Result<(), Permit> {
        if !Arc::ptr_eq(&self.admission.inner, &other.admission.inner) {
            return Err(other);
        }
        self.bytes += std::mem::take(&mut other.bytes);
        Ok(())
    }

    /// A second reservation of as many bytes, taken whatever the budget says (the data it
    /// stands for already exists: a copy of a batch for another branch of a pipeline, which
    /// may decode or copy it on its own). Receivers then refuse new data until enough is
    /// given back.
    pub fn duplicate(&self) -> Permit {
        self.admission
            .inner
            .in_flight
            .fetch_add(self.bytes, Ordering::AcqRel);
        if let Some(m) = self.admission.inner.metrics.get() {
            m.in_flight.add(self.bytes as i64);
        }
        Permit {
            admission: self.admission.clone(),
            bytes: self.bytes,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_bytes_in_flight_and_permits_give_them_back() {
        let a = Admission::new(100);
        let mut p = a.reserve(60).unwrap();
        assert!(matches!(a.reserve(50), Err(Refusal::Budget { .. })));
        assert!(p.grow(50).is_err());
        p.grow(40).unwrap();
        assert_eq!(a.in_flight(), 100);
        assert!(a.reserve(1).is_err());
        drop(p);
        assert_eq!(a.in_flight(), 0);
        let q = a.reserve(100).unwrap();
        assert_eq!(q.bytes(), 100);
    }

    #[test]
    fn a_memory_gate_sets_the_budget_and_refuses_while_above_its_soft_limit() {
        let a = Admission::new(1000);
        let g = a.memory_gate("memory_limiter", 300, Duration::from_secs(2));
        assert_eq!(a.budget(), 300);
        // Same name: the same gate; another limiter can only lower the budget.
        let same = a.memory_gate("memory_limiter", 50, Duration::from_secs(2));
        assert!(Arc::ptr_eq(&g, &same));
        assert_eq!(a.budget(), 300);
        let b = a.memory_gate("memory_limiter/b", 200, Duration::from_secs(2));
        assert_eq!(a.budget(), 200);
        assert!(g.claim_sampler());
        assert!(!g.claim_sampler());

        g.update(true, 0);
        let r = a.reserve(0).err().unwrap();
        assert_eq!(r.retry_after(), Duration::from_secs(2));
        assert!(matches!(
            r.to_delivery_error(),
            DeliveryError::Throttled { .. }
        ));
        g.update(false, 150);
        let _p = a.reserve(100).unwrap();
        // 50 bytes of headroom left until the next measurement.
        assert!(matches!(a.reserve(60), Err(Refusal::MemoryLimit { .. })));
        assert_eq!(a.in_flight(), 100);
        // Refused by the second limiter: the first one's headroom is given back.
        b.update(false, 10);
        assert!(matches!(a.reserve(20), Err(Refusal::MemoryLimit { .. })));
        b.update(false, 1000);
        a.reserve(50).unwrap();
    }

    #[test]
    fn a_precheck_reserves_nothing_and_a_request_larger_than_the_budget_is_refused_for_good() {
        let a = Admission::new(100);
        // Many requests declaring 80 bytes pass the precheck: declaring holds nothing.
        for _ in 0..10 {
            a.precheck(80).unwrap();
        }
        assert_eq!(a.in_flight(), 0);
        let too_large = a.precheck(101).unwrap_err();
        assert!(too_large.is_permanent(), "{too_large:?}");
        assert!(matches!(
            too_large.to_delivery_error(),
            DeliveryError::Permanent { .. }
        ));

        let mut p = a.reserve(0).unwrap();
        p.grow(70).unwrap();
        // Does not fit beside the 70 in flight now: retryable.
        let busy = a.precheck(40).unwrap_err();
        assert!(matches!(busy, Refusal::Budget { .. }), "{busy:?}");
        assert!(!busy.is_permanent());
        let mut q = a.reserve(0).unwrap();
        assert!(matches!(q.grow(40), Err(Refusal::Budget { .. })));
        // One request growing past the whole budget: permanent, and nothing more is held.
        let r = p.grow(31).unwrap_err();
        assert!(r.is_permanent(), "{r:?}");
        assert_eq!(a.in_flight(), 70);
        // Unused reservation is given back.
        p.shrink_to(20);
        assert_eq!((p.bytes(), a.in_flight()), (20, 20));
        q.grow(80).unwrap();
        drop((p, q));
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn refusals_and_bytes_in_flight_are_reported() {
        let registry = MetricsRegistry::default();
        let a = Admission::new(10);
        a.report_to(&registry);
        let _p = a.reserve(7).unwrap();
        assert!(a.reserve(7).is_err());
        // A refusal by a limiter leaves the bytes in flight as they were.
        let gate = a.memory_gate("memory_limiter", 10, Duration::from_secs(1));
        gate.update(false, 1);
        assert!(matches!(a.reserve(2), Err(Refusal::MemoryLimit { .. })));
        let text = registry.render();
        assert!(
            text.contains("sluice_admission_bytes_in_flight 7"),
            "{text}"
        );
        assert!(text.contains("sluice_admission_budget_bytes 10"), "{text}");
        assert!(
            text.contains("sluice_admission_refused_requests_total{reason=\"in_flight_budget\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_admission_refused_requests_total{reason=\"memory_limit\"} 1"),
            "{text}"
        );
        gate.update(false, u64::MAX);
        assert!(a.precheck(11).unwrap_err().is_permanent());
        assert!(
            registry.render().contains(
                "sluice_admission_refused_requests_total{reason=\"larger_than_budget\"} 1"
            ),
            "{}",
            registry.render()
        );
    }
}
