//! A multi-consumer queue bounded by the summed size of its entries (bytes by default), used
//! between pipeline stages and in front of every exporter.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// Why a push did not go in; the entry is handed back so the caller can settle it.
#[derive(Debug)]
pub enum PushError<T> {
    Full(T),
    Closed(T),
}

struct State<T> {
    entries: VecDeque<(T, u32)>,
    closed: bool,
}

pub struct SizedQueue<T> {
    // One permit per unit of free capacity: a push waits for its entry's size in permits.
    space: Semaphore,
    capacity: u32,
    state: Mutex<State<T>>,
    ready: Notify,
    used: AtomicUsize,
    len: AtomicUsize,
}

impl<T> SizedQueue<T> {
    /// `capacity` is clamped to what a semaphore can count (about 4 GiB).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize / 2) as u32;
        SizedQueue {
            space: Semaphore::new(capacity as usize),
            capacity,
            state: Mutex::new(State {
                entries: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            used: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// An entry larger than the whole queue is admitted alone, as if it filled the queue, so
    /// one oversized batch cannot wedge the pipeline forever.
    fn weight(&self, size: usize) -> u32 {
        size.clamp(1, self.capacity as usize) as u32
    }

    /// Waits for room, then enqueues.
    pub async fn push(&self, entry: T, size: usize) -> Result<(), PushError<T>> {
        let weight = self.weight(size);
        match self.space.acquire_many(weight).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(PushError::Closed(entry)),
        }
        self.insert(entry, weight)
    }

    /// Enqueues only if there is room now.
    pub fn try_push(&self, entry: T, size: usize) -> Result<(), PushError<T>> {
        let weight = self.weight(size);
        match self.space.try_acquire_many(weight) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(PushError::Full(entry)),
            Err(TryAcquireError::Closed) => return Err(PushError::Closed(entry)),
        }
        self.insert(entry, weight)
    }

    fn insert(&self, entry: T, weight: u32) -> Result<(), PushError<T>> {
        let Ok(mut state) = self.state.lock() else {
            return Err(PushError::Closed(entry));
        };
        if state.closed {
            drop(state);
            self.space.add_permits(weight as usize);
            return Err(PushError::Closed(entry));
        }
        state.entries.push_back((entry, weight));
        self.used.fetch_add(weight as usize, Ordering::Relaxed);
        self.len.fetch_add(1, Ordering::Relaxed);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// The next entry; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state.lock().ok()?;
                if let Some((entry, weight)) = state.entries.pop_front() {
                    self.used.fetch_sub(weight as usize, Ordering::Relaxed);
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    let more = !state.entries.is_empty();
                    drop(state);
                    self.space.add_permits(weight as usize);
                    if more {
                        // Several consumers may wait; pass the wake-up on.
                        self.ready.notify_one();
                    }
                    return Some(entry);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next entry if one is queued now, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        let (entry, weight) = self.state.lock().ok()?.entries.pop_front()?;
        self.used.fetch_sub(weight as usize, Ordering::Relaxed);
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.space.add_permits(weight as usize);
        Some(entry)
    }

    /// Refuses further pushes (waiting pushers get their entry back); pops drain what is left.
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.space.close();
        self.ready.notify_waiters();
    }

    /// Removes everything still queued (for counting losses at a forced shutdown).
    pub fn drain(&self) -> Vec<T> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        self.used.store(0, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
        state.entries.drain(..).map(|(e, _)| e).collect()
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Summed size of the queued entries.
    pub fn size(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn blocks_when_full_and_resumes_when_drained() {
        let q = Arc::new(SizedQueue::new(100));
        q.push(1, 60).await.unwrap();
        assert!(matches!(q.try_push(2, 60), Err(PushError::Full(2))));
        let pusher = {
            let q = q.clone();
            tokio::spawn(async move { q.push(3, 60).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!pusher.is_finished());
        assert_eq!(q.pop().await, Some(1));
        assert!(pusher.await.unwrap());
        assert_eq!(q.size(), 60);
    }

    #[tokio::test]
    async fn oversized_entry_passes_alone_and_close_drains() {
        let q = SizedQueue::new(10);
        q.push("big", 1000).await.unwrap();
        assert!(matches!(q.try_push("small", 1), Err(PushError::Full(_))));
        q.close();
        assert!(matches!(q.try_push("late", 1), Err(PushError::Closed(_))));
        assert_eq!(q.pop().await, Some("big"));
        assert_eq!(q.pop().await, None);
    }
}
