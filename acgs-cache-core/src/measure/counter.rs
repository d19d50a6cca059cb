//! Striped event counters: each thread increments its own cache line, so a
//! counter bumped on every cache hit does not bounce one line between cores.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// Stripes per counter: threads increment different cache lines, so a hot
/// counter does not bounce one line between cores on every cache hit.
const STRIPES: usize = 8;

/// A relaxed event counter, striped by thread.
#[derive(Debug, Default)]
pub(crate) struct Counter([CachePadded<AtomicU64>; STRIPES]);

pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl Counter {
    pub(crate) fn inc(&self) {
        self.0[stripe()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}
