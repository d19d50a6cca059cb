//! What the steps of one call pass each other: the call's identity
//! ([`Call`]), what the L1 probe found, what a tier had, the stamp a value
//! is judged by, how its L2 write is made. The steps themselves are
//! methods of the instance in `read.rs`, `miss.rs` and `land.rs`.

use std::sync::Arc;
use std::time::Instant;

use crate::clock;
use crate::coherence::function::FunctionRef;
use crate::coherence::state::tag_hash;
use crate::engine::instance::Cache;
use crate::engine::site::CallSite;
use crate::format::key::KeyDigest;
use crate::tiers::l1::L1Key;
use crate::tiers::l2::L2Tier;

/// What the synchronous L1 probe found.
pub(super) enum Probe<Out, V> {
    Hit(Out),
    /// A hit past the refresh-ahead point, for a call that refreshes.
    Due(V),
    Miss(L1Miss<V>),
}

/// An L1 probe that did not hit.
pub(super) struct L1Miss<V> {
    /// A stale value to fall back on, if any.
    pub(super) stale: Option<(V, Stamp)>,
    /// L1 was not read: the instance's lease on the log had run out.
    pub(super) unheard: bool,
    /// When the call started.
    pub(super) start: Instant,
}

/// One call's identity, shared by the steps of its path.
pub(super) struct Call<'a> {
    pub(super) site: &'static CallSite,
    pub(super) function: &'a FunctionRef<'static>,
    pub(super) l1_key: L1Key,
    /// The key arguments' digest (in `l1_key`, mixed with the function's).
    pub(super) digest: KeyDigest,
    /// The tier and the entry's Redis key, when there is L2.
    pub(super) l2: Option<(&'a Arc<L2Tier>, String)>,
    /// This call already waited for the log in vain: it does not wait again.
    pub(super) log_unheard: bool,
    /// Its last L2 read found no bytes under the key: its write can be a
    /// plain `SET NX` (see `log_script::put_entry`).
    pub(super) l2_absent: bool,
}

impl<'a> Call<'a> {
    pub(super) fn new(
        site: &'static CallSite,
        function: &'a FunctionRef<'static>,
        digest: KeyDigest,
    ) -> Self {
        Call {
            site,
            function,
            l1_key: L1Key::new(function.identity, digest),
            digest,
            // Filled after L1 (`with_l2`): a hit never builds the Redis key.
            l2: None,
            log_unheard: false,
            l2_absent: false,
        }
    }

    /// Adds the L2 tier and this entry's Redis key (and starts the log
    /// tailer on first use).
    pub(super) fn with_l2(&mut self, cache: &'a Cache) {
        self.l2 = cache.inner.l2().map(|l2| {
            (
                l2,
                crate::format::key::redis_key(&self.function.key_prefix, self.digest),
            )
        });
    }
}

/// When a value's computation started (packed log position) and the tags it
/// answers to: what the invalidation check compares, for values read from a
/// tier and for values handed from one caller to another.
#[derive(Clone)]
pub(super) struct Stamp {
    pub(super) position: u64,
    pub(super) tags: Arc<[u64]>,
    /// When this process started computing the value (`None`: read from a
    /// tier). A waiter whose lease on the log has run out still takes a
    /// value whose computation started within its lease: nothing
    /// acknowledged before that can have been missed by it.
    pub(super) computed_at: Option<clock::Instant>,
}

/// What L1 had for a key.
pub(super) enum Found<V> {
    Fresh(V),
    /// Fresh, and past the policy's refresh-ahead point.
    Due(V),
    /// Past its freshness but within the stale-if-error window.
    Stale(V, Stamp),
    Nothing,
    /// Not read: the instance has not heard the whole log within the
    /// function's lease, so nothing in L1 can be vouched for.
    Unheard,
}

/// What L2 had for a key.
pub(super) enum L2Found<V> {
    Fresh(V, Stamp),
    Stale(V, Stamp),
    /// Nothing usable (rejected, invalidated, unreachable).
    Nothing,
    /// No bytes under the key at all.
    Absent,
}

/// Whether a store waits for Redis to acknowledge its write.
#[derive(Debug, Clone, Copy)]
pub(super) enum L2Write {
    Awaited,
    /// See `CacheBuilder::background_l2_writes`.
    Background,
}

pub(super) fn tag_hashes(tags: &[impl AsRef<str>]) -> Arc<[u64]> {
    if tags.is_empty() {
        return shared_tags(&[]);
    }
    tags.iter().map(|t| tag_hash(t.as_ref())).collect()
}

/// `hashes` as a stamp's tags: the empty set, by far the most common, is
/// one shared allocation rather than one per call.
pub(super) fn shared_tags(hashes: &[u64]) -> Arc<[u64]> {
    static NONE: std::sync::LazyLock<Arc<[u64]>> = std::sync::LazyLock::new(|| Arc::from([]));
    if hashes.is_empty() {
        Arc::clone(&NONE)
    } else {
        Arc::from(hashes)
    }
}
