//! What typed maps ([`crate::CacheMap`], and the sessions and token
//! verifications built on them) need from the engine: a call site built at
//! run time, the log position a put records, the TTL with run-time
//! overrides, what is left of an entry's TTL, and a revocation through the
//! invalidation log.

use std::sync::Mutex;
use std::time::Duration;

use crate::engine::instance::Cache;
use crate::engine::site::CallSite;
use crate::error::Error;
use crate::format::codec::Codec;
use crate::format::key::KeyDigest;
use crate::format::policy::TtlPolicy;

/// What distinguishes one run-time store from another.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SiteSpec {
    /// Function name in keys, stats and function invalidations.
    pub(crate) name: String,
    pub(crate) module: &'static str,
    /// Hashed into the schema fingerprint with `module` and `version`.
    pub(crate) signature: String,
    pub(crate) version: u32,
    pub(crate) policy: TtlPolicy,
    pub(crate) codec: Codec,
    /// How stale a stored value may be served after its revocation.
    pub(crate) max_staleness: Option<crate::format::policy::MaxStaleness>,
}

impl SiteSpec {
    /// The call site for this description. `#[cached]` emits one `static`
    /// per function; a run-time store gets one per distinct description,
    /// kept for the life of the process like a static: building the same
    /// store again reuses it, so memory is bounded by the number of distinct
    /// stores, not of builds.
    pub(crate) fn intern(self) -> &'static CallSite {
        static SITES: Mutex<Vec<(SiteSpec, &'static CallSite)>> = Mutex::new(Vec::new());
        let mut sites = SITES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, site)) = sites.iter().find(|(spec, _)| *spec == self) {
            return site;
        }
        let fingerprint =
            crate::format::key::fingerprint(self.module, &self.signature, self.version);
        let name: &'static str = Box::leak(self.name.clone().into_boxed_str());
        let policy: &'static TtlPolicy = Box::leak(Box::new(self.policy));
        let mut site = CallSite::with_fingerprint(name, self.module, fingerprint, policy)
            .codec(self.codec)
            .storage();
        if let Some(max) = self.max_staleness {
            site = site.max_staleness(max);
        }
        let site: &'static CallSite = Box::leak(Box::new(site));
        sites.push((self, site));
        site
    }
}

/// Checks a store's name: one segment of letters, digits, `_` and `-` (it
/// becomes part of keys, function names and event names).
pub(crate) fn check_store_name(kind: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName(format!(
            "{kind} name {name:?} must be 1-64 letters, digits, `_` or `-`"
        )))
    }
}

/// The position a value obtained from now on records: read it *before*
/// reading or producing the value, so a revocation that lands meanwhile
/// rejects what is written.
///
/// With L2, the instance first hears the log (at most the soft timeout, as
/// a cached call's first L2 read does): a position taken before that would
/// be older than the log's current generation, and what is written with it
/// rejected.
pub(crate) async fn position_now(cache: &Cache) -> u64 {
    if let Some(l2) = cache.inner.l2() {
        let coherence = &cache.inner.coherence();
        if !coherence.has_listened() {
            coherence.wait_listening(l2.soft_timeout()).await;
        }
    }
    cache.inner.coherence().head()
}

/// The store's TTL with the cache's run-time overrides applied.
pub(crate) fn ttl(cache: &Cache, site: &'static CallSite) -> Duration {
    cache.function(site, "").policy.ttl()
}

/// How long the entry under `digest` has left before it expires, as the
/// tier that decides it says: with L2, the envelope in Redis (its logical
/// expiry, not the stale window Redis keeps it for); without, the L1 copy.
/// `None` when there is no valid entry of this function under that key
/// (missing, a tombstone, another function's or schema's bytes). It does
/// not judge invalidation: the caller reads through the engine first.
///
/// # Errors
///
/// The Redis error.
pub(crate) async fn expires_in(
    cache: &Cache,
    site: &'static CallSite,
    digest: KeyDigest,
) -> Result<Option<Duration>, Error> {
    let function = cache.function(site, "");
    let Some(l2) = cache.inner.l2() else {
        let key = crate::tiers::l1::L1Key::new(function.identity, digest);
        let now = crate::clock::now();
        return Ok(cache
            .inner
            .l1()
            .get(&key)
            .filter(|entry| entry.fresh_until > now)
            .map(|entry| entry.fresh_until.saturating_since(now)));
    };
    let key = crate::format::key::redis_key(&function.key_prefix, digest);
    let limit = cache.inner.config().limits.max_value_bytes;
    let crate::tiers::l2::Fetched::Bytes(bytes) = l2.get_entry(&key, limit).await? else {
        return Ok(None);
    };
    let Ok((header, _)) = crate::format::envelope::decode_header(&bytes) else {
        return Ok(None);
    };
    if header.key != digest.low64() || header.fingerprint != function.identity {
        return Ok(None);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(header
        .expires_at_ms
        .checked_sub(now_ms)
        .map(Duration::from_millis))
}

/// Revokes one entry on every instance: an entry invalidation in the log
/// (applied here before this returns, heard by the others within the
/// propagation delay), then a best-effort `UNLINK`, so that an instance which has
/// not heard the log yet and has no local copy finds nothing either.
pub(crate) async fn revoke_entry(
    cache: &Cache,
    site: &'static CallSite,
    digest: KeyDigest,
) -> Result<crate::log_position::LogPosition, Error> {
    let function = cache.function(site, "");
    let position =
        crate::engine::publish::invalidate_entry(&cache.inner, &function, digest).await?;
    if let Some(l2) = cache.inner.l2() {
        let key = crate::format::key::redis_key(&function.key_prefix, digest);
        // The log already guarantees the revocation; the UNLINK only frees memory sooner.
        let _ = l2.unlink(&[key]).await;
    }
    Ok(position)
}
