//! A named lock held across the fleet, built on the public
//! [`Cache::try_lease`]: what it adds is waiting for a held name.

use std::time::Duration;

use crate::cache::Cache;
use crate::error::Error;
use crate::lease::LockLease;

/// A named lock held across the fleet.
///
/// Its lease is renewed in the background while it is held; `release`
/// frees it at once, and dropping it frees it in the background. The
/// fencing token grows with every acquisition of the name: pass it to the
/// systems you write to, so they can refuse a write from a holder whose
/// lease was lost (a long pause, a Redis failover) after a newer holder got
/// a larger token.
///
/// Limits, stated plainly: this is a single-Redis lock (no Redlock). Mutual
/// exclusion holds while Redis keeps the key; a failover to a replica that
/// had not received the `SET` can let a second holder in — which is what
/// the fencing token is for.
///
/// ```no_run
/// # use std::time::Duration;
/// use acgs_cache_core::{Cache, DistributedLock};
/// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
/// let lock = DistributedLock::acquire(&cache, "nightly-report", Duration::from_secs(30), Duration::from_secs(5)).await?;
/// // ... write elsewhere, passing lock.fencing_token() along ...
/// lock.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DistributedLock {
    lease: LockLease,
}

impl DistributedLock {
    /// Takes the lock `name` for `lease` if nobody holds it (`Ok(None)`
    /// when somebody does).
    ///
    /// # Errors
    ///
    /// As [`Cache::try_lease`]: [`Error::InvalidName`],
    /// [`Error::Unavailable`] without L2, or the Redis error.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, DistributedLock};
    /// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
    /// match DistributedLock::try_acquire(&cache, "nightly-report", Duration::from_secs(30)).await? {
    ///     Some(lock) => {
    ///         // ... this instance runs the report, passing lock.fencing_token() ...
    ///         lock.release().await?;
    ///     }
    ///     None => { /* another instance is on it */ }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(
        cache: &Cache,
        name: &str,
        lease: Duration,
    ) -> Result<Option<DistributedLock>, Error> {
        Ok(cache
            .try_lease(name, lease)
            .await?
            .map(|lease| DistributedLock { lease }))
    }

    /// Takes the lock `name` for `lease`, waiting at most `wait` for it
    /// (retrying from 5 ms, doubling up to 100 ms).
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] when it stayed taken for `wait`; otherwise as
    /// [`DistributedLock::try_acquire`].
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, DistributedLock, Error};
    /// # async fn run(cache: Cache) -> Result<(), Error> {
    /// match DistributedLock::acquire(&cache, "payouts", Duration::from_secs(30), Duration::from_secs(5)).await {
    ///     Ok(lock) => lock.release().await?,
    ///     Err(Error::LockTimeout(waited)) => println!("still held after {waited:?}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acquire(
        cache: &Cache,
        name: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<DistributedLock, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(lock) = Self::try_acquire(cache, name, lease).await? {
                return Ok(lock);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::LockTimeout(wait));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The lock's name.
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
        self.lease.name()
    }

    /// This acquisition's fencing token: larger than every earlier one of the name.
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
        self.lease.fencing_token()
    }

    /// Frees the lock now, if it is still ours (token-checked).
    ///
    /// # Errors
    ///
    /// The Redis error if the release could not be sent (the lease then
    /// frees the lock when it runs out).
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
        self.lease.release().await
    }
}
