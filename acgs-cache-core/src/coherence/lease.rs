//! The lease on the invalidation log: how recently this instance *knew*
//! it had heard every invalidation acknowledged so far.
//!
//! "Connected" is not something an instance can know: a paused process, or
//! a partition that leaves its TCP connection open, looks connected from
//! inside. So the staleness bound is built on time. `heard_at` is the send
//! time of the last log read that returned, with records or empty: the
//! server ran that read after it was sent, so every invalidation
//! acknowledged before `heard_at` was either in its reply or heard before
//! (the tailer renews only from a read that reached the end of the log, of
//! the generation it follows, with nothing trimmed past its cursor).
//! A function with a lease of δ serves an entry only while
//! `now - heard_at <= δ`; hence no instance serves a value whose
//! invalidation was acknowledged more than δ ago, whatever happened to it,
//! given monotonic clocks with bounded drift and a log that keeps what `Ok`
//! acknowledged.
//!
//! Both times come from [`crate::clock`], which the kernel keeps: a thread
//! that runs again after the process was stopped reads the real time, not
//! the time before the pause.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{self, Instant};
use crate::format::policy::MaxStaleness;
use crate::measure::counter::Counter;

/// `heard_at` for an instance that cannot miss anything: its log is local
/// (L1 only), or the lease is switched off for a coherence report.
const ALWAYS: u64 = u64::MAX;

/// A function's lease, as the hit path compares it: the longest age of the
/// lease (in clock nanoseconds, less the clock's resolution) at which it
/// still serves an entry; `u64::MAX` for the `l1_ttl` opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseLimit(u64);

impl LeaseLimit {
    /// Covers once the lease was renewed at all.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only `Cache::connect` waits for it
    pub(crate) const RENEWED: LeaseLimit = LeaseLimit(u64::MAX - 1);

    /// The limit `max` asks for.
    pub(crate) fn of(max: MaxStaleness) -> LeaseLimit {
        match max.as_lease() {
            Some(lease) => LeaseLimit(
                u64::try_from(lease.saturating_sub(clock::resolution()).as_nanos())
                    .unwrap_or(u64::MAX - 1),
            ),
            None => LeaseLimit(u64::MAX),
        }
    }

    /// Whether something `age` old is within the lease (always, for the
    /// opt-out).
    pub(crate) fn allows(self, age: Duration) -> bool {
        u64::try_from(age.as_nanos()).is_ok_and(|age| age <= self.0)
    }

    /// Whether this is the `l1_ttl` opt-out (no lease).
    pub(crate) fn is_opt_out(self) -> bool {
        self.0 == u64::MAX
    }
}

/// The instance's lease on the log.
#[derive(Debug)]
pub(crate) struct Lease {
    /// Clock nanoseconds of the send of the last read that renewed it; 0
    /// before the first, [`ALWAYS`] when nothing can be missed.
    heard_at: AtomicU64,
    /// Woken at every renewal (a call waiting for the lease).
    renewed: Notify,
    /// Renewals so far.
    pub(crate) renewals: Counter,
}

impl Lease {
    /// A lease that is renewed by tailing a log in Redis (`remote`), or one
    /// that always holds: a local log, or a report's unprotected run.
    pub(crate) fn new(remote: bool) -> Lease {
        Lease {
            heard_at: AtomicU64::new(if remote { 0 } else { ALWAYS }),
            renewed: Notify::new(),
            renewals: Counter::default(),
        }
    }

    /// Renews the lease from a read sent at `sent` that reached the end of
    /// the log (its records already applied).
    pub(crate) fn renew(&self, sent: Instant) {
        if self.heard_at.load(Ordering::Acquire) == ALWAYS {
            return;
        }
        self.heard_at.fetch_max(sent.as_nanos(), Ordering::AcqRel);
        self.renewals.inc();
        self.renewed.notify_waiters();
    }

    /// Whether an entry of a function with `limit` may be served at `now`.
    #[inline]
    pub(crate) fn covers(&self, limit: LeaseLimit, now: Instant) -> bool {
        let heard_at = self.heard_at.load(Ordering::Acquire);
        limit.is_opt_out() || (heard_at != 0 && now.as_nanos().saturating_sub(heard_at) <= limit.0)
    }

    /// How long ago the log was last known heard in full: `None` before the
    /// first renewal, zero when nothing can be missed.
    pub(crate) fn age(&self) -> Option<Duration> {
        match self.heard_at.load(Ordering::Acquire) {
            0 => None,
            ALWAYS => Some(Duration::ZERO),
            heard_at => Some(clock::now().saturating_since(Instant::from_nanos(heard_at))),
        }
    }

    /// Waits until the lease covers `limit` again, at most `patience`;
    /// whether it does.
    pub(crate) async fn wait(&self, limit: LeaseLimit, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before the check, so a renewal between the two is seen.
            let renewed = self.renewed.notified();
            if self.covers(limit, clock::now()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, renewed).await.is_err() {
                return self.covers(limit, clock::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_of(ms: u64) -> LeaseLimit {
        LeaseLimit::of(MaxStaleness::Lease(Duration::from_millis(ms)))
    }

    #[test]
    fn a_lease_covers_for_its_length_after_the_renewing_read_was_sent() {
        let lease = Lease::new(true);
        let sent = clock::now();
        assert!(!lease.covers(lease_of(100), sent), "never renewed");
        assert_eq!(lease.age(), None);
        lease.renew(sent);
        assert!(lease.covers(lease_of(100), sent));
        let later = sent + Duration::from_millis(150);
        assert!(!lease.covers(lease_of(100), later), "past its length");
        assert!(
            lease.covers(lease_of(200), later),
            "a longer lease still covers"
        );
        assert!(lease.covers(LeaseLimit::of(MaxStaleness::L1Ttl), later));
        // An older read does not move it back.
        lease.renew(Instant::from_nanos(1));
        assert!(lease.covers(lease_of(100), sent));
        assert_eq!(lease.renewals.get(), 2);
    }

    #[test]
    fn a_local_log_always_covers() {
        let lease = Lease::new(false);
        assert!(lease.covers(lease_of(20), clock::now() + Duration::from_secs(3600)));
        assert_eq!(lease.age(), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_waiting_call_wakes_at_the_renewal() {
        let lease = std::sync::Arc::new(Lease::new(true));
        let renewer = std::sync::Arc::clone(&lease);
        let renewal = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            renewer.renew(clock::now());
        });
        assert!(lease.wait(lease_of(1000), Duration::from_secs(10)).await);
        renewal.await.unwrap();
        assert!(
            !Lease::new(true)
                .wait(lease_of(1000), Duration::from_millis(10))
                .await
        );
    }
}
