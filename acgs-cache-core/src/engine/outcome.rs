//! How a `#[cached]` call was answered, for the callers that ask
//! ([`with_outcome`]), as the `cached` crate's `with_cached_flag`.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How a `#[cached]` call was answered.
///
/// Read with [`with_outcome`](crate::with_outcome) around the call:
///
/// ```
/// use acgs_cache_core::{with_outcome, Cache, CacheMap, Outcome};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
/// let (_, first) = with_outcome(rules.get_or_compute(&1, async { "deny".to_owned() })).await;
/// let (_, again) = with_outcome(rules.get_or_compute(&1, async { "deny".to_owned() })).await;
/// assert_eq!((first, again), (Some(Outcome::Computed), Some(Outcome::L1Hit)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// From this process's memory (L1).
    L1Hit,
    /// From Redis (L2), stored by this or another instance.
    L2Hit,
    /// The function's body ran (a miss).
    Computed,
    /// Another caller's computation of the same key, shared.
    Coalesced,
    /// The body failed or timed out and a stale value was served instead.
    StaleServed,
    /// The cache was not used: caching is disabled, or the key arguments
    /// did not serialize.
    Bypassed,
}

impl Outcome {
    /// Whether the value came from a tier (L1 or L2) rather than a
    /// computation.
    ///
    /// ```
    /// use acgs_cache_core::Outcome;
    /// assert!(Outcome::L1Hit.is_hit() && Outcome::L2Hit.is_hit());
    /// assert!(!Outcome::Computed.is_hit());
    /// ```
    #[must_use]
    pub fn is_hit(self) -> bool {
        matches!(self, Outcome::L1Hit | Outcome::L2Hit)
    }
}

tokio::task_local! {
    static ANSWERED: Cell<Option<Outcome>>;
}

/// How many [`with_outcome`] futures are running: calls skip the
/// task-local lookup while none is.
static WATCHING: AtomicUsize = AtomicUsize::new(0);

/// Runs `future` and tells how the last `#[cached]` call it completed was
/// answered (`None` if it made none). Meant to wrap one call; a cached
/// function that calls another reports its own outcome, which completes
/// last.
///
/// ```
/// use acgs_cache_core::{with_outcome, Outcome};
/// # use acgs_cache_core::Cache;
/// # async fn decide(id: u64) -> u64 { id } // a `#[cached]` function in real code
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (decision, outcome) = with_outcome(decide(7)).await;
/// if outcome.is_some_and(Outcome::is_hit) {
///     // e.g. a response header: `x-cache: hit`
/// }
/// # assert_eq!((decision, outcome), (7, None));
/// # }
/// ```
pub async fn with_outcome<F: Future>(future: F) -> (F::Output, Option<Outcome>) {
    struct Watching;
    impl Drop for Watching {
        fn drop(&mut self) {
            WATCHING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    WATCHING.fetch_add(1, Ordering::Relaxed);
    let _watching = Watching;
    ANSWERED
        .scope(Cell::new(None), async {
            let output = future.await;
            (output, ANSWERED.with(Cell::get))
        })
        .await
}

/// Records how the current call was answered, for an enclosing
/// [`with_outcome`].
pub(crate) fn note(outcome: Outcome) {
    if WATCHING.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _ = ANSWERED.try_with(|answered| answered.set(Some(outcome)));
}
