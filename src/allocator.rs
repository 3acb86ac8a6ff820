//! The process's global allocator: mimalloc unless the `jemalloc` feature picks jemalloc, or
//! the system's when neither feature is on. The measurements behind the choice are in
//! BENCHMARKS.md, "Allocator: system vs jemalloc vs mimalloc".

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: lazy_commit::LazyCommitMimalloc = lazy_commit::LazyCommitMimalloc;

/// Lets the memory_limiter return memory freed inside the global allocator to the system.
pub(crate) fn register_release() {
    #[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
    sluice_processors::memory_limiter::set_global_allocator_release(|| {
        // SAFETY: mi_collect only walks mimalloc's own heaps.
        unsafe { libmimalloc_sys::mi_collect(true) }
    });
}

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
mod lazy_commit {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicBool, Ordering};

    use mimalloc::MiMalloc;

    /// `mi_option_arena_eager_commit`: index 4 of `mi_option_t` in mimalloc 2 and 3 (the
    /// binding has no name for it in 3).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

    static TUNED: AtomicBool = AtomicBool::new(false);

    /// mimalloc with arena memory committed on demand. By default mimalloc commits its arenas
    /// eagerly on Linux, and memory freed after start-up (configuration parsing, TLS roots)
    /// then stays resident: idle RSS was 13.6 MiB of anonymous memory against 2.7 MiB with
    /// lazy commit, at the same throughput. The option is read when the first arena is
    /// reserved, which happens at the first allocation, before `main`: hence setting it here,
    /// on that first allocation.
    pub(super) struct LazyCommitMimalloc;

    impl LazyCommitMimalloc {
        #[inline]
        fn tune_once() {
            if !TUNED.load(Ordering::Relaxed) {
                // SAFETY: sets an integer option; mimalloc allows that at any time, and the
                // first allocation happens before any other thread exists.
                unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
                TUNED.store(true, Ordering::Relaxed);
            }
        }
    }

    // SAFETY: every call is forwarded to mimalloc's own `GlobalAlloc` implementation.
    unsafe impl GlobalAlloc for LazyCommitMimalloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            Self::tune_once();
            // SAFETY: the caller's contract is forwarded unchanged.
            unsafe { MiMalloc.alloc(layout) }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            Self::tune_once();
            // SAFETY: as above.
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as above; a block being reallocated was allocated, so tuned, already.
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}
