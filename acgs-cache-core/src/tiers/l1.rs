//! L1: the in-process tier (moka), bounded by bytes, with per-entry TTL.
//!
//! Values are stored decoded (type-erased behind `Arc<dyn Any>`), so a hit is
//! a moka lookup, a `TypeId` check and the clone the caller receives — no
//! decoding. One moka cache serves every function of a [`crate::engine::instance::Cache`], so a
//! single byte budget bounds them all.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{self, Instant};
use crate::format::policy::TtlPolicy;

use crate::format::key::KeyDigest;

/// Bytes charged per entry on top of its value's decoded size: at least
/// what one entry costs the process besides the value's own bytes — moka's
/// node, its hash-table slot, deque links and frequency sketch share, the
/// key, our entry header — 440–470 bytes as measured with `cargo run
/// --release --example l1_memory` (resident growth per entry, less the
/// value). Charging it keeps the resident memory L1 adds within the budget
/// (docs/guarantees.md gives the figures).
pub(crate) const ENTRY_OVERHEAD_BYTES: u32 = 512;

/// Identifies one entry: the function (by fingerprint) and its arguments,
/// mixed into one 128-bit value — moka holds every key more than once, and
/// 16 bytes instead of 32 (a `u64` beside a `u128`, padded) is a tenth of a
/// small entry's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct L1Key(u128);

impl L1Key {
    pub(crate) fn new(function: u64, digest: KeyDigest) -> Self {
        // Multiplying by an odd constant is a bijection of `u128`: distinct
        // functions move the same digest to distinct keys, and two entries
        // of different functions share a key only if their digests differ
        // by exactly that (as likely as a 128-bit digest collision).
        const SPREAD: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;
        L1Key(digest.0 ^ u128::from(function).wrapping_mul(SPREAD))
    }
}

/// The longest an entry is served from L1, whatever its policy asks.
/// Entries die by their own deadline, checked on read (see
/// [`Entry::dies_at`]); a dead entry is overwritten by the next store or
/// evicted under byte pressure (it is never read again, so moka's
/// frequency sketch lets it go first). moka's own time to live is not
/// used: it keeps a write-order queue node per entry, a tenth of a small
/// entry's memory, to free what the byte bound frees anyway.
pub(crate) const L1_MAX_LIFE: Duration = Duration::from_secs(24 * 60 * 60);

/// One L1 entry: a single shared allocation holding the bookkeeping and the
/// (type-erased) value, so that what moka clones out on a hit is one
/// pointer, not a struct copied through every layer of the call.
pub(crate) type L1Entry = Arc<Entry<dyn Any + Send + Sync>>;

pub(crate) struct Entry<S: ?Sized> {
    weight: u32,
    /// Where the invalidation log stood (packed) when the value's computation started.
    pub(crate) position: u64,
    /// Served as fresh until then; kept after it only as a stale-if-error
    /// fallback.
    pub(crate) fresh_until: Instant,
    /// Past this the entry is dead: a miss (overwritten by the next store).
    /// Deadlines are checked on read against the coarse clock; moka's
    /// per-entry expiry (`Expiry`) cost a quarter of a hit (profiled).
    pub(crate) dies_at: Instant,
    /// Past this, a hit refreshes the value in the background
    /// (refresh-ahead); `dies_at` when the policy does not refresh (a fresh
    /// entry is never past it). Not an `Option`: the 8 bytes of its tag
    /// would take a small entry's allocation into the next size class.
    pub(crate) refresh_at: Instant,
    stored: S,
}

/// How long an L1 entry is served, and kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryLife {
    /// Served as fresh for this long.
    pub(crate) fresh_for: Duration,
    /// Then kept this long as a stale-if-error fallback.
    pub(crate) stale_for: Duration,
    /// When a hit starts a background refresh.
    pub(crate) refresh_at: Option<Instant>,
}

impl EntryLife {
    /// How `policy` keeps an entry that has `remaining` of its TTL left:
    /// fresh for the policy's L1 TTL (never past `remaining`), then kept for
    /// the stale window; refreshed once less than (100 - p)% of the TTL is left.
    pub(crate) fn of(policy: &TtlPolicy, remaining: Duration) -> EntryLife {
        let refresh_at = match u32::from(policy.refresh_ahead_percent()) {
            0 => None,
            percent => {
                let keep = policy.ttl() * (100 - percent) / 100;
                Some(clock::now() + remaining.saturating_sub(keep))
            }
        };
        EntryLife {
            fresh_for: policy.l1_ttl().min(remaining),
            stale_for: policy.stale_if_error(),
            refresh_at,
        }
    }
}

/// A value with the tags (hashed) it answers to.
pub(crate) struct Stored<V> {
    pub(crate) value: V,
    /// `None` for most entries. A thin pointer (one word, where a boxed
    /// slice takes two): small entries stay in a smaller allocation class.
    #[allow(
        clippy::box_collection,
        reason = "a thin pointer; the second allocation is only for tagged entries"
    )]
    tags: Option<Box<Vec<u64>>>,
}

impl<V> Stored<V> {
    pub(crate) fn new(value: V, tags: &[u64]) -> Self {
        Stored {
            value,
            tags: (!tags.is_empty()).then(|| Box::new(tags.to_vec())),
        }
    }

    /// The tags' hashes.
    pub(crate) fn tags(&self) -> &[u64] {
        self.tags.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl Entry<dyn Any + Send + Sync> {
    /// The stored value if it is a `V`. A value of another type under the
    /// same key (a generic function with an explicit `key`) is a miss, never
    /// a wrong value.
    pub(crate) fn stored<V: 'static>(&self) -> Option<&Stored<V>> {
        self.stored.downcast_ref::<Stored<V>>()
    }
}

pub(crate) struct L1Tier {
    /// Keys are already uniformly distributed hashes (fingerprint + XXH3
    /// digest), so the fast Fx hasher is enough; moka's default SipHash was
    /// 5% of a hit.
    ///
    /// moka's synchronous cache: a hit is a plain function call (its
    /// future cache has no synchronous lookup, and a hit's future moved
    /// through three async layers cost more than the lookup itself).
    /// Inserts and removals do bounded work inline (moka's housekeeping),
    /// never I/O.
    entries: moka::sync::Cache<L1Key, L1Entry, rustc_hash::FxBuildHasher>,
}

impl L1Tier {
    pub(crate) fn new(max_bytes: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .name("acgs-cache-l1")
            .max_capacity(max_bytes)
            .weigher(|_: &L1Key, entry: &L1Entry| entry.weight)
            .build_with_hasher(rustc_hash::FxBuildHasher);
        L1Tier { entries }
    }

    pub(crate) fn get(&self, key: &L1Key) -> Option<L1Entry> {
        self.entries.get(key)
    }

    /// Inserts an entry made by [`entry`].
    pub(crate) fn insert(&self, key: L1Key, entry: L1Entry) {
        self.entries.insert(key, entry);
    }

    /// Drops one entry.
    pub(crate) fn remove(&self, key: &L1Key) {
        self.entries.invalidate(key);
    }

    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Entries and weighted bytes, after pending maintenance has run.
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

/// An L1 entry for `stored`, or `None` when `life` keeps it for no time.
pub(crate) fn entry<V: Send + Sync + 'static>(
    stored: Stored<V>,
    life: EntryLife,
    plain_bytes: usize,
    position: u64,
) -> Option<L1Entry> {
    let EntryLife {
        fresh_for,
        stale_for,
        refresh_at,
    } = life;
    let life = (fresh_for + stale_for).min(L1_MAX_LIFE);
    if life.is_zero() {
        return None;
    }
    let now = clock::now();
    let weight = u32::try_from(plain_bytes)
        .unwrap_or(u32::MAX)
        .saturating_add(ENTRY_OVERHEAD_BYTES);
    let dies_at = now + life;
    Some(Arc::new(Entry {
        weight,
        position,
        fresh_until: now + fresh_for,
        dies_at,
        refresh_at: refresh_at.unwrap_or(dies_at),
        stored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_digest_under_two_functions_is_two_keys() {
        let digest = KeyDigest::of(&(7u64, "alice")).unwrap();
        assert_ne!(L1Key::new(1, digest), L1Key::new(2, digest));
        assert_eq!(L1Key::new(1, digest), L1Key::new(1, digest));
        assert_eq!(std::mem::size_of::<L1Key>(), 16);
    }

    /// A small entry (a `String` value, no tags) fits the allocator's 96-byte
    /// class: 88 bytes of `Arc` and entry (glibc adds 8). One more field
    /// moves every small entry up a class (`l1_memory` shows it per entry).
    #[test]
    fn a_small_entry_stays_in_its_allocation_class() {
        let arc_counts = 2 * std::mem::size_of::<usize>();
        let size = arc_counts + std::mem::size_of::<Entry<Stored<String>>>();
        assert!(size <= 88, "{size} bytes");
    }

    #[test]
    fn tags_cost_nothing_when_there_are_none() {
        let none = Stored::new(1u8, &[]);
        assert!(none.tags.is_none());
        assert_eq!(none.tags(), &[] as &[u64]);
        let some = Stored::new(1u8, &[3, 4]);
        assert_eq!(some.tags(), &[3, 4]);
    }
}
