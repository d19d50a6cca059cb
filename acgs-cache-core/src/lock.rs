//! A distributed lock on Redis (single instance semantics): `SET NX PX` with
//! a unique token, lease renewal while held, and token-checked release.
//!
//! Used by `#[cached(lock = true)]` so one instance of the fleet computes a
//! missing entry while the others wait for it. Safety does not depend on the
//! lock: if a lease is lost (a long pause, a failover), two instances may
//! compute, and both write a valid entry — the lock only saves work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::l2::L2Tier;

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// Deletes the lock only if it still holds our token.
const RELEASE: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;
/// Extends the lease only if the lock still holds our token.
const RENEW: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end"#;

fn unique_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{}-{nanos:x}",
        std::process::id(),
        NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
    )
}

/// A held lock. Its lease is renewed (every third of it) until it is
/// released or dropped; dropping releases it in the background.
pub(crate) struct LockGuard {
    l2: Arc<L2Tier>,
    key: String,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
    released: bool,
}

impl L2Tier {
    /// Takes the lock `key` for `lease` if it is free.
    pub(crate) async fn try_lock(
        self: &Arc<Self>,
        key: &str,
        lease: Duration,
    ) -> Result<Option<LockGuard>, Error> {
        let token = unique_token();
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms),
            )
            .await?;
        if taken.is_none() {
            return Ok(None);
        }
        let renewal = tokio::spawn({
            let (l2, key, token) = (Arc::downgrade(self), key.to_owned(), token.clone());
            async move {
                let script = redis::Script::new(RENEW);
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let Some(l2) = l2.upgrade() else { return };
                    let mut invocation = script.key(&key);
                    invocation.arg(&token).arg(lease_ms);
                    match l2.run_script::<i64>(&invocation).await {
                        Ok(1) => {}
                        Ok(_) => {
                            tracing::warn!(target: "acgs_cache", %key, "lock lease lost; another instance may compute too");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(target: "acgs_cache", %key, error = %e, "lock renewal failed; retrying")
                        }
                    }
                }
            }
        });
        Ok(Some(LockGuard {
            l2: Arc::clone(self),
            key: key.to_owned(),
            token,
            renewal,
            released: false,
        }))
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// Releases the lock if it is still ours.
    pub(crate) async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        self.renewal.abort();
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.key(&self.key);
        invocation.arg(&self.token);
        self.l2.run_script::<i64>(&invocation).await.map(drop)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renewal.abort();
        if !self.released {
            let (l2, key, token) = (
                Arc::clone(&self.l2),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            // The holder was cancelled or panicked: free the lock now rather
            // than at the end of its lease.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let script = redis::Script::new(RELEASE);
                    let mut invocation = script.key(&key);
                    invocation.arg(&token);
                    let _ = l2.run_script::<i64>(&invocation).await;
                });
            }
        }
    }
}
