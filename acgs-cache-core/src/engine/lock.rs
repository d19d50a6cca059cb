//! Named locks held across the fleet ([`Cache::lock`]): the public face of
//! the Redis lock in `tiers/lock.rs`, with a fencing token.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::instance::Cache;
use crate::error::{Error, Unavailable};
use crate::tiers::l2::{L2Tier, LockGuard};

/// A named lock held across the fleet (see [`Cache::lock`]).
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
pub struct DistributedLock {
    guard: LockGuard,
    name: String,
    fencing_token: u64,
}

impl std::fmt::Debug for DistributedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedLock")
            .field("name", &self.name)
            .field("fencing_token", &self.fencing_token)
            .finish_non_exhaustive()
    }
}

impl DistributedLock {
    /// The lock's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This acquisition's fencing token: larger than every earlier one of the name.
    #[must_use]
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Frees the lock now, if it is still ours (token-checked).
    ///
    /// # Errors
    ///
    /// The Redis error if the release could not be sent (the lease then
    /// frees the lock when it runs out).
    pub async fn release(self) -> Result<(), Error> {
        self.guard.release().await
    }
}

impl Cache {
    fn lock_keys(&self, name: &str) -> Result<(Arc<L2Tier>, String, String), Error> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(Error::InvalidName(format!(
                "lock name {name:?} must be non-empty, without braces"
            )));
        }
        let l2 = self
            .inner
            .l2()
            .cloned()
            .ok_or(Error::Unavailable(Unavailable::NotConfigured))?;
        // Braces make the lock and its fencing counter one hash slot (Cluster).
        let key = format!("{}:lock:{{{name}}}", self.inner.config().prefix);
        let fence = format!("{key}:fence");
        Ok((l2, key, fence))
    }

    /// Takes the lock `name` for `lease` if nobody holds it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::Unavailable`] without L2, or the
    /// Redis error.
    pub async fn try_lock(
        &self,
        name: &str,
        lease: Duration,
    ) -> Result<Option<DistributedLock>, Error> {
        let (l2, key, fence) = self.lock_keys(name)?;
        Ok(l2
            .try_lock(&key, Some(&fence), lease)
            .await?
            .map(|(guard, fencing_token)| DistributedLock {
                guard,
                name: name.to_owned(),
                fencing_token,
            }))
    }

    /// Takes the lock `name` for `lease`, waiting at most `wait` for it.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// let lock = cache.lock("nightly-report", Duration::from_secs(30), Duration::from_secs(5)).await?;
    /// // ... write elsewhere, passing lock.fencing_token() along ...
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] when it stayed taken for `wait`; otherwise as
    /// [`Cache::try_lock`](crate::engine::instance::Cache::try_lock).
    pub async fn lock(
        &self,
        name: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<DistributedLock, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(lock) = self.try_lock(name, lease).await? {
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
}
