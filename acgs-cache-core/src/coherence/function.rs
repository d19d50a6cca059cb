//! The functions a cache serves: each instance's state (policy, counters,
//! what coherence needs to judge its entries) and the registry that finds
//! it from a call site.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use crate::coherence::lease::LeaseLimit;
use crate::format::policy::{MaxStaleness, TtlPolicy};
use crate::measure::stats::FunctionCounters;

/// A function instance's state within one cache.
#[derive(Debug)]
pub(crate) struct FunctionState {
    /// The instance's name (`orders::get`, `db::Service<db::Pg>::find`):
    /// stats rows, metrics labels, keys, whole-function invalidations.
    pub(crate) name: Arc<str>,
    /// The instance's identity: L1 keys, L2 keys and the envelope's
    /// fingerprint (see `identity.rs`).
    pub(crate) identity: u64,
    /// The compiled policy with this cache's overrides applied.
    pub(crate) policy: TtlPolicy,
    pub(crate) counters: FunctionCounters,
    /// `invalidate_on` patterns.
    pub(crate) patterns: &'static [&'static str],
    /// Hash of `service:name`: the scope of whole-function and single-entry
    /// invalidations.
    pub(crate) scope: u64,
    /// How stale its entries may be (the site's, the policy's or the cache's).
    pub(crate) max_staleness: MaxStaleness,
    /// `max_staleness` as the hit path compares it.
    pub(crate) lease: LeaseLimit,
    /// Entries that started before this position are rejected (the last
    /// matching event or whole-function invalidation heard).
    pub(crate) invalidated_at: AtomicU64,
    /// Whether single entries of this function were invalidated (only then
    /// does a hit look them up).
    pub(crate) has_entry_invalidations: AtomicBool,
    /// `{prefix}:{service}:{name}:{identity}:`, formatted once: an entry's
    /// Redis key is this and its digest.
    pub(crate) key_prefix: String,
}

/// The functions a cache has served, by descriptor and probe (the fast
/// path of a call that missed its descriptor's first entry) and by identity
/// (where copies of one function's descriptor, in its companions, meet).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) by_probe: HashMap<(usize, usize, usize), Arc<FunctionState>>,
    pub(crate) by_identity: HashMap<u64, Arc<FunctionState>>,
}

/// A function's state, borrowed from its static call site when possible.
#[derive(Debug)]
pub(crate) enum FunctionRef<'a> {
    Borrowed(&'a FunctionState),
    Shared(Arc<FunctionState>),
}

impl Clone for FunctionRef<'_> {
    fn clone(&self) -> Self {
        match self {
            FunctionRef::Borrowed(f) => FunctionRef::Borrowed(f),
            FunctionRef::Shared(f) => FunctionRef::Shared(Arc::clone(f)),
        }
    }
}

impl std::ops::Deref for FunctionRef<'_> {
    type Target = FunctionState;
    fn deref(&self) -> &FunctionState {
        match self {
            FunctionRef::Borrowed(f) => f,
            FunctionRef::Shared(f) => f,
        }
    }
}
