//! A circuit breaker for the L2 tier: after consecutive failures, calls stop
//! paying timeouts; a background probe closes it when Redis answers again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Consecutive-failure breaker. While open, L2 operations fail at once
/// (the cached call goes on without L2); the tier's probe closes it.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    consecutive_failures: AtomicU32,
    open: AtomicBool,
    /// Times it opened, for stats.
    pub(crate) trips: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32) -> Self {
        Breaker {
            threshold: threshold.max(1),
            consecutive_failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            trips: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Records a success; returns whether this closed the breaker.
    pub(crate) fn on_success(&self) -> bool {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.open.swap(false, Ordering::AcqRel)
    }

    /// Records a failure; returns whether this opened the breaker.
    pub(crate) fn on_failure(&self) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold && !self.open.swap(true, Ordering::AcqRel) {
            self.trips.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::Breaker;

    #[test]
    fn opens_after_the_threshold_and_closes_on_success() {
        let b = Breaker::new(3);
        assert!(!b.on_failure() && !b.on_failure());
        assert!(!b.is_open());
        assert!(b.on_failure(), "third consecutive failure opens it");
        assert!(b.is_open());
        assert!(!b.on_failure(), "already open");
        assert!(b.on_success(), "a success closes it");
        assert!(!b.is_open());
        assert!(!b.on_failure(), "the count restarted");
        assert_eq!(b.trips.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
