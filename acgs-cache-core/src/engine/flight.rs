//! Local stampede protection: concurrent misses of one key in one process
//! run the function once; the other callers get its value.
//!
//! The first caller of a missing key leads a *flight*; later callers wait on
//! it. The leader's guard always ends the flight — with the value, with
//! "failed" (an `Err` is not shared, since `E` need not be `Clone`: waiters
//! then compute themselves), or, if the leader panics or is cancelled, with
//! "retry": a waiter looks again and one of them takes over. No caller waits on a flight that
//! nobody is flying.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::tiers::l1::L1Key;

#[derive(Clone)]
pub(crate) enum Landing {
    /// The value (type-erased `V`), with where the log stood when its
    /// computation started and the tags it answers to: a waiter checks them
    /// against what it knows, like any value read from a tier.
    Value {
        value: Arc<dyn Any + Send + Sync>,
        position: u64,
        tags: Arc<[u64]>,
        /// When the leader started computing it (`None`: read from a tier).
        computed_at: Option<crate::clock::Instant>,
    },
    /// The function returned something that is not shared (an `Err`).
    Failed,
    /// Look again: the leader panicked or was cancelled, or stored the value
    /// before anyone was waiting.
    Retry,
}

/// One computation in progress. A flight costs one small allocation and,
/// when it lands, one notification: it is boarded on every miss.
#[derive(Default)]
pub(crate) struct Flight {
    landing: OnceLock<Landing>,
    landed: Notify,
    /// Callers that boarded as waiters (counted under the map's lock).
    waiters: AtomicUsize,
}

#[derive(Default)]
pub(crate) struct Flights {
    /// Keys are digests already: the Fx hasher is enough.
    flying: Mutex<FxHashMap<L1Key, Arc<Flight>>>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights").finish_non_exhaustive()
    }
}

pub(crate) enum Boarding<'a> {
    Lead(Leader<'a>),
    Wait(Arc<Flight>),
}

impl Flights {
    /// Whether a computation of `key` is in progress.
    pub(crate) fn is_flying(&self, key: L1Key) -> bool {
        self.flying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
    }

    pub(crate) fn board(&self, key: L1Key) -> Boarding<'_> {
        let mut flying = self.flying.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = flying.get(&key) {
            flight.waiters.fetch_add(1, Ordering::Relaxed);
            return Boarding::Wait(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        flying.insert(key, Arc::clone(&flight));
        Boarding::Lead(Leader {
            flights: self,
            key,
            flight,
            landed: false,
        })
    }
}

/// Waits for a flight to land.
pub(crate) async fn landing(flight: Arc<Flight>) -> Landing {
    loop {
        // Register before looking, so a landing between the two is not missed.
        let notified = flight.landed.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if let Some(landing) = flight.landing.get() {
            return landing.clone();
        }
        notified.await;
    }
}

/// The leader of a flight; dropping it without landing abandons the flight.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: L1Key,
    flight: Arc<Flight>,
    landed: bool,
}

impl Leader<'_> {
    /// Whether anyone waits for this flight (values are cloned only for them).
    pub(crate) fn has_waiters(&self) -> bool {
        self.flight.waiters.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn land(mut self, landing: Landing) {
        self.finish(landing);
    }

    fn finish(&mut self, landing: Landing) {
        self.landed = true;
        // Leave the map first: later callers start a flight of their own
        // rather than waiting on one that is over.
        self.flights
            .flying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        let _ = self.flight.landing.set(landing);
        self.flight.landed.notify_waiters();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.landed {
            self.finish(Landing::Retry);
        }
    }
}
