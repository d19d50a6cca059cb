//! The write side of a call: an entry's envelope, its one L2 write (with
//! the tombstone check), L1, and the flight's landing for the callers that
//! waited; values the toolkit puts rather than computes land the same way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock;
use crate::coherence::function::FunctionState;
use crate::coherence::log_script;
use crate::coherence::state::unpack;
use crate::engine::flight::{Landing, Leader};
use crate::engine::instance::Cache;
use crate::engine::path::{tag_hashes, Call, L2Write, Stamp};
use crate::engine::site::CallSite;
use crate::format::envelope::{self, EnvelopeHeader};
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape};
use crate::measure::stats::ErrorReason;
use crate::tiers::l1::{EntryLife, Stored};

impl Cache {
    /// Stores a computed value: its envelope in L2 (kept past its TTL for
    /// stale-if-error readers), then L1. An L2 failure is counted and L1
    /// still serves the value; a newer tombstone (an invalidation after the
    /// computation started) keeps it out of both.
    pub(super) async fn store<V: Cacheable>(
        &self,
        call: &Call<'_>,
        value: &V,
        ttl: Duration,
        tags: Vec<String>,
        stamp: &Stamp,
        write: L2Write,
    ) {
        let function = call.function;
        let sealed = match self.encode_entry(call, value, ttl, tags, stamp.position) {
            Ok(sealed) => sealed,
            Err(e) => {
                function.counters.error(ErrorReason::Encode);
                tracing::warn!(target: "acgs_cache", function = %function.name, error = %e, "result not cached");
                return;
            }
        };
        let keep_for = ttl + function.policy.stale_if_error();
        if let Ok(false) = self
            .write_l2(call, sealed.bytes, stamp.position, keep_for, write)
            .await
        {
            function.counters.not_stored.inc();
            return;
        }
        self.fill_l1(call, value, stamp, ttl, sealed.plain_size);
    }

    /// The envelope of `value`, computed from `position` on, fresh for `ttl`.
    pub(super) fn encode_entry<V: Cacheable>(
        &self,
        call: &Call<'_>,
        value: &V,
        ttl: Duration,
        tags: Vec<String>,
        position: u64,
    ) -> Result<envelope::Sealed, crate::error::CodecError> {
        let header = header(call.site, call.function, call.digest, ttl, tags, position);
        envelope::encode(value, call.site.codec, header, self.inner.config().limits)
    }

    /// The one L2 write of an entry (calls, refreshes and values the toolkit
    /// puts; warming pipelines its own batches): `SET` with `keep_for`,
    /// refused by the script when a tombstone newer than `position` covers
    /// the key (`Ok(false)`). A failure is counted and returned. In the
    /// background, the outcome is counted when it comes and `Ok(true)`
    /// returned at once; without L2, `Ok(true)`.
    pub(super) async fn write_l2(
        &self,
        call: &Call<'_>,
        bytes: Vec<u8>,
        position: u64,
        keep_for: Duration,
        write: L2Write,
    ) -> Result<bool, crate::error::Error> {
        if let Some((l2, key)) = &call.l2 {
            let function = call.function;
            let started = unpack(position);
            let seen_empty = call.l2_absent;
            match write {
                L2Write::Awaited => {
                    return log_script::put_entry(l2, key, started, &bytes, keep_for, seen_empty)
                        .await
                        .inspect_err(|e| function.counters.error(ErrorReason::of(e)));
                }
                L2Write::Background => {
                    let (l2, key, function) = (Arc::clone(l2), key.clone(), function.clone());
                    crate::background::spawn(async move {
                        match log_script::put_entry(
                            &l2, &key, started, &bytes, keep_for, seen_empty,
                        )
                        .await
                        {
                            Ok(true) => {}
                            Ok(false) => function.counters.not_stored.inc(),
                            Err(e) => function.counters.error(ErrorReason::of(&e)),
                        }
                    });
                }
            }
        }
        Ok(true)
    }

    /// Puts a value in L1: fresh for the policy's L1 TTL (never past
    /// `remaining`, the entry's own life), then kept for the stale window.
    pub(super) fn fill_l1<V: Cacheable>(
        &self,
        call: &Call<'_>,
        value: &V,
        stamp: &Stamp,
        remaining: Duration,
        plain_bytes: usize,
    ) {
        let function = call.function;
        if !self.inner.config().l1_enabled {
            return;
        }
        let stored = Stored::new(value.clone(), &stamp.tags);
        let life = EntryLife::of(&function.policy, remaining);
        if let Some(entry) = crate::tiers::l1::entry(stored, life, plain_bytes, stamp.position) {
            self.inner
                .fill_l1(function, call.digest, entry, &stamp.tags);
        }
    }
}

/// The envelope header of the value of `function` (described by `site`)
/// under `digest`, whose computation started at `position` (packed), fresh
/// for `ttl` from now.
pub(crate) fn header(
    site: &CallSite,
    function: &FunctionState,
    digest: KeyDigest,
    ttl: Duration,
    tags: Vec<String>,
    position: u64,
) -> EnvelopeHeader {
    let now = SystemTime::now();
    EnvelopeHeader {
        codec: site.codec.id(),
        flags: 0,
        fingerprint: function.identity,
        created_at_ms: clock::unix_ms(now),
        expires_at_ms: clock::unix_ms(now + ttl),
        log_position: unpack(position),
        key: digest.low64(),
        tags,
        checksum: 0, // set by encode
    }
}

/// Ends the flight with `value` and returns it to the caller.
pub(super) fn land<S>(
    shape: &S,
    leader: Option<Leader<'_>>,
    value: S::Value,
    stamp: Stamp,
) -> S::Out
where
    S: Shape,
    S::Value: Cacheable,
{
    hand_over(leader, &value, &stamp);
    shape.rebuild(value)
}

/// Ends the flight (if this caller leads one) with `value` for its
/// waiters; with none waiting, the value is not copied (later callers find
/// it where it was stored).
pub(super) fn hand_over<V: Cacheable>(leader: Option<Leader<'_>>, value: &V, stamp: &Stamp) {
    if let Some(leader) = leader {
        let landing = if leader.has_waiters() {
            share(value, stamp)
        } else {
            Landing::Retry
        };
        leader.land(landing);
    }
}

/// A value for the callers waiting on a flight.
pub(super) fn share<V: Cacheable>(value: &V, stamp: &Stamp) -> Landing {
    Landing::Value {
        value: Arc::new(value.clone()),
        position: stamp.position,
        tags: Arc::clone(&stamp.tags),
        computed_at: stamp.computed_at,
    }
}

pub(super) fn finish(leader: Option<Leader<'_>>, landing: Landing) {
    if let Some(leader) = leader {
        leader.land(landing);
    }
}

impl Cache {
    /// Stores `value` as `site`'s entry for `digest` — in L2, then L1 — as a
    /// computation that started at log position `position` would, but with
    /// its own `ttl`, and returning the L2 write's failure instead of only
    /// counting it: for values that are put rather than computed (sessions,
    /// token verifications). Reads go through [`call`] as usual.
    /// `Ok(false)`: not stored, the entry was invalidated after `position`.
    pub(crate) async fn put<V: Cacheable>(
        &self,
        site: &'static CallSite,
        digest: KeyDigest,
        value: &V,
        ttl: Duration,
        tags: Vec<String>,
        position: u64,
    ) -> Result<bool, crate::error::Error> {
        let function = self.function(site, "");
        let mut call = Call::new(site, &function, digest);
        call.with_l2(self);
        let stamp = Stamp {
            position,
            tags: tag_hashes(&tags),
            computed_at: None,
        };
        let sealed = self.encode_entry(&call, value, ttl, tags, position)?;
        if !self
            .write_l2(&call, sealed.bytes, position, ttl, L2Write::Awaited)
            .await?
        {
            return Ok(false);
        }
        self.fill_l1(&call, value, &stamp, ttl, sealed.plain_size);
        Ok(true)
    }
}
