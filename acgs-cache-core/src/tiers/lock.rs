//! A distributed lock on Redis (single instance semantics): `SET NX PX` with
//! a unique token, lease renewal while held, and token-checked release.
//!
//! Used by `#[cached(lock = true)]` so one instance of the fleet computes a
//! missing entry while the others wait for it, and by the public lease
//! (`lease.rs`, which the toolkit's `DistributedLock` builds on). A miss's
//! safety does not depend on the lock: if a lease is lost (a long pause, a
//! failover), two instances may compute, and both write a valid entry — the
//! lock only saves work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::tiers::l2::L2Tier;

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
    /// `None` only when no runtime could run it (see `background`).
    renewal: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

/// Takes the lock and bumps its fencing counter in one step; returns the
/// new fencing token, or 0 when the lock is held by someone else.
const ACQUIRE_FENCED: &str = r#"if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return redis.call("INCR", KEYS[2]) else return 0 end"#;

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl L2Tier {
    /// Takes the lock `key` for `lease` if it is free: the one acquisition
    /// of both the named locks and `#[cached(lock = true)]`. With
    /// `fence_key` (same hash slot) it also bumps that counter in the same
    /// step and returns the new value as the fencing token; without, a plain
    /// `SET NX PX` (token 0). A miss's lock needs no fence: what its holder
    /// writes is an entry checked against tombstones, valid whoever wrote it,
    /// so a second holder after a lost lease costs work, never correctness.
    ///
    /// An attempt that failed may still have been executed by Redis (a
    /// timeout: the answer was late, not the command): the lock would then
    /// be held by nobody until its lease ran out. Such a lock is released by
    /// its token in the background as soon as Redis answers.
    pub(crate) async fn try_lock(
        self: &Arc<Self>,
        key: &str,
        fence_key: Option<&str>,
        lease: Duration,
    ) -> Result<Option<(LockGuard, u64)>, Error> {
        let token = unique_token();
        // `Some(fencing token)` when taken.
        let taken: Result<Option<u64>, Error> = match fence_key {
            Some(fence_key) => {
                let script = redis::Script::new(ACQUIRE_FENCED);
                let mut invocation = script.key(key);
                invocation.key(fence_key).arg(&token).arg(lease_ms(lease));
                self.run_script::<u64>(&invocation)
                    .await
                    .map(|fence| (fence > 0).then_some(fence))
            }
            None => self
                .query::<Option<String>>(
                    redis::cmd("SET")
                        .arg(key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease_ms(lease)),
                )
                .await
                .map(|taken| taken.map(|_| 0)),
        };
        match taken {
            Ok(taken) => Ok(taken.map(|fence| (self.hold(key, token, lease), fence))),
            Err(e) => {
                self.release_later(key.to_owned(), token, lease);
                Err(e)
            }
        }
    }

    /// Releases `key` if it still holds `token`, retrying until Redis
    /// answers or the lease is over (when the lock frees itself).
    fn release_later(self: &Arc<Self>, key: String, token: String, lease: Duration) {
        let l2 = Arc::downgrade(self);
        crate::background::spawn(async move {
            let give_up = tokio::time::Instant::now() + lease;
            let script = redis::Script::new(RELEASE);
            let mut pause = Duration::from_millis(20);
            while tokio::time::Instant::now() < give_up {
                let Some(l2) = l2.upgrade() else { return };
                let mut invocation = script.key(&key);
                invocation.arg(&token);
                if l2.run_script::<i64>(&invocation).await.is_ok() {
                    return;
                }
                drop(l2);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        });
    }

    /// A guard for a lock just taken: renews its lease every third of it.
    fn hold(self: &Arc<Self>, key: &str, token: String, lease: Duration) -> LockGuard {
        let lease_ms = lease_ms(lease);
        let renewal = crate::background::spawn({
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
                            tracing::warn!(target: "acgs_cache", %key, "lock lease lost; another holder may have taken it");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(target: "acgs_cache", %key, error = %e, "lock renewal failed; retrying")
                        }
                    }
                }
            }
        });
        LockGuard {
            l2: Arc::clone(self),
            key: key.to_owned(),
            token,
            renewal,
            released: false,
        }
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
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.key(&self.key);
        invocation.arg(&self.token);
        self.l2.run_script::<i64>(&invocation).await.map(drop)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
        if !self.released {
            let (l2, key, token) = (
                Arc::clone(&self.l2),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            // The holder was cancelled or panicked: free the lock now rather
            // than at the end of its lease.
            crate::background::spawn(async move {
                let script = redis::Script::new(RELEASE);
                let mut invocation = script.key(&key);
                invocation.arg(&token);
                let _ = l2.run_script::<i64>(&invocation).await;
            });
        }
    }
}
