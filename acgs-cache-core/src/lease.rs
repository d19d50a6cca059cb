//! A fleet-wide lease on a name: the lock primitive the public API offers
//! (`Cache::try_lease`), on the acquisition, renewal and release that
//! `#[cached(lock = true)]` uses too (`tiers/lock.rs`). The toolkit's
//! `DistributedLock` is built on it.

use std::fmt;
use std::time::Duration;

use crate::engine::instance::Cache;
use crate::error::{Error, Unavailable};
use crate::tiers::l2::LockGuard;

/// A lease on a name, held by this instance until it is released, dropped
/// or lost (see [`Cache::try_lease`]).
///
/// Its lease is renewed in the background while it is held; `release`
/// frees it at once and dropping it frees it in the background.
///
/// ```no_run
/// # use std::time::Duration;
/// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
/// if let Some(lease) = cache.try_lease("compaction", Duration::from_secs(10)).await? {
///     println!("{} held with token {}", lease.name(), lease.fencing_token());
///     lease.release().await?;
/// }
/// # Ok(()) }
/// ```
pub struct LockLease {
    guard: LockGuard,
    name: String,
    fencing_token: u64,
}

impl fmt::Debug for LockLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockLease")
            .field("name", &self.name)
            .field("fencing_token", &self.fencing_token)
            .finish_non_exhaustive()
    }
}

impl LockLease {
    /// The name the lease is on.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, DistributedLock};
    /// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
    /// let lock = DistributedLock::acquire(&cache, "payouts", Duration::from_secs(30), Duration::from_secs(5)).await?;
    /// println!("{} held, fencing token {}", lock.name(), lock.fencing_token());
    /// lock.release().await?; // token-checked: never frees a newer holder's lock
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This acquisition's fencing token: larger than every earlier one of
    /// the name.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, DistributedLock};
    /// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
    /// let lock = DistributedLock::acquire(&cache, "payouts", Duration::from_secs(30), Duration::from_secs(5)).await?;
    /// println!("{} held, fencing token {}", lock.name(), lock.fencing_token());
    /// lock.release().await?; // token-checked: never frees a newer holder's lock
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Frees the name now, if the lease is still ours (token-checked: a
    /// holder whose lease ran out never frees a newer holder's).
    ///
    /// # Errors
    ///
    /// The Redis error if the release could not be sent (the lease then
    /// frees the name when it runs out).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, DistributedLock};
    /// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
    /// let lock = DistributedLock::acquire(&cache, "payouts", Duration::from_secs(30), Duration::from_secs(5)).await?;
    /// println!("{} held, fencing token {}", lock.name(), lock.fencing_token());
    /// lock.release().await?; // token-checked: never frees a newer holder's lock
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<(), Error> {
        self.guard.release().await
    }
}

impl Cache {
    /// Takes a lease on `name` for `lease` if nobody holds one, across
    /// every instance sharing this cache's Redis and prefix; `Ok(None)` when
    /// it is held.
    ///
    /// One `EVALSHA` sets the key `{prefix}:lock:{name}` with a unique token
    /// (`NX PX`) and bumps the name's fencing counter beside it (one hash
    /// slot on a Cluster); the lease is renewed every third of itself while
    /// held. This is a single-Redis lock (no Redlock): a failover to a
    /// replica that had not received the `SET` can admit a second holder,
    /// which is what [`LockLease::fencing_token`] is for. The toolkit's
    /// [`DistributedLock`](crate::DistributedLock) adds waiting.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// if let Some(lease) = cache.try_lease("nightly-report", Duration::from_secs(30)).await? {
    ///     // ... write elsewhere, passing lease.fencing_token() along ...
    ///     lease.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty name or one with braces;
    /// [`Error::Unavailable`] without L2; the Redis error.
    pub async fn try_lease(&self, name: &str, lease: Duration) -> Result<Option<LockLease>, Error> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(Error::InvalidName(format!(
                "lock name {name:?} must be non-empty, without braces"
            )));
        }
        let l2 = self
            .inner
            .l2()
            .ok_or(Error::Unavailable(Unavailable::NotConfigured))?;
        // Braces make the lock and its fencing counter one hash slot (Cluster).
        let key = format!("{}:lock:{{{name}}}", self.inner.config().prefix);
        let fence = format!("{key}:fence");
        Ok(l2
            .try_lock(&key, Some(&fence), lease)
            .await?
            .map(|(guard, fencing_token)| LockLease {
                guard,
                name: name.to_owned(),
                fencing_token,
            }))
    }
}
