//! A rate limiter shared by every instance: GCRA in one Redis script.
//!
//! The generic cell rate algorithm keeps one number per key, the
//! *theoretical arrival time* (TAT): when the bucket would be empty again if
//! every request so far had arrived on schedule. A request of cost `c` is
//! allowed when pushing the TAT forward by `c` emission intervals leaves it at
//! most `burst` intervals ahead of now. One number per key means one `GET`
//! and one `SET` inside a Lua script: one round trip per check, atomic on the
//! server, so concurrent checks from any number of instances never admit more
//! than the limit. The script reads the *server's* clock (`TIME`), so
//! instances whose clocks disagree still agree on every decision.
//!
//! Without Redis configured, the same algorithm runs in process (exact for
//! that process). When Redis is configured but cannot answer (down, slower
//! than the soft timeout, circuit open), the limiter fails open or closed as
//! configured, and counts it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::error::Error;
use acgs_cache_grammar::check_dotted_name;

/// The Lua script each shared check runs (`EVALSHA`; loaded on first use).
///
/// `KEYS[1]` is the key's bucket; `ARGV` are the emission interval and the
/// burst tolerance in microseconds, and the cost. It returns
/// `{allowed, remaining, retry_after_us, reset_after_us, reset_damaged}`.
/// Times are microseconds since the epoch as Lua numbers (doubles), exact up
/// to 2^53 µs (the year 2255); the TAT is written with `%.0f` because Lua's
/// default number formatting keeps only 14 significant digits.
///
/// A bucket this script cannot have written — not a number, `nan`, `inf`,
/// further ahead than one burst (a valid TAT is never more than the
/// tolerance past the time it was written), or not a string at all — is
/// damaged: it is deleted and the check runs on an empty bucket, and the
/// fifth field says so (counted as `reset_damaged`). A damaged bucket is
/// never a permanent allow nor a permanent deny.
pub const GCRA_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local damaged = 0
local ok, stored = pcall(redis.call, 'GET', KEYS[1])
local tat = now
if not ok then
  damaged = 1
elseif stored then
  local n = tonumber(stored)
  if n == nil or n ~= n or n > now + tolerance + interval then
    damaged = 1
  else
    tat = n
  end
end
if damaged == 1 then redis.call('DEL', KEYS[1]) end
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
if now < allow_at then
  local remaining = math.floor((now - (tat - tolerance)) / interval)
  if remaining < 0 then remaining = 0 end
  return {0, remaining, allow_at - now, tat - now, damaged}
end
if cost > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
end
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now, damaged}
";

/// Keys longer than this are replaced by their SHA-256 in the Redis key (and
/// the in-process table): arbitrary input stays bounded.
pub const MAX_VERBATIM_KEY_BYTES: usize = 128;

/// What the limiter does when Redis is configured but cannot answer a check.
///
/// ```
/// # use std::time::Duration;
/// use acgs_cache_core::rate_limit::{FailureMode, RateLimiter};
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = acgs_cache_core::Cache::builder().build()?;
/// // A login limiter denies while Redis cannot be asked.
/// let logins = RateLimiter::builder("login")
///     .rate(5, Duration::from_secs(60))
///     .on_redis_failure(FailureMode::Closed)
///     .build(&cache)?;
/// # let _ = logins; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Allow the request (counted as `failed_open`): availability first.
    #[default]
    Open,
    /// Deny the request (counted as `failed_closed`): protection first, for
    /// limits that guard against abuse (logins, password resets).
    Closed,
}

/// Who made a [`Decision`].
///
/// ```
/// # use std::time::Duration;
/// use acgs_cache_core::rate_limit::{DecidedBy, RateLimiter};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = acgs_cache_core::Cache::builder().build()?; // no Redis: in process
/// let api = RateLimiter::builder("api").rate(10, Duration::from_secs(1)).build(&cache)?;
/// assert_eq!(api.check("alice").await?.decided_by, DecidedBy::InProcess);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecidedBy {
    /// The shared script in Redis: the limit holds across the fleet.
    Redis,
    /// The in-process algorithm (no Redis configured): the limit holds per process.
    InProcess,
    /// Redis could not answer and the limiter fails open: allowed, unlimited.
    FailedOpen,
    /// Redis could not answer and the limiter fails closed: denied.
    FailedClosed,
}

/// The outcome of one [`RateLimiter::check`].
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let logins = RateLimiter::builder("login").rate(1, Duration::from_secs(60)).burst(1).build(&cache)?;
/// assert!(logins.check("10.0.0.7").await?.allowed);
/// let denied = logins.check("10.0.0.7").await?;
/// assert!(!denied.allowed && denied.retry_after.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests of cost 1 that would still be allowed right now.
    pub remaining: u64,
    /// When denied: how long until a request of the same cost would be allowed.
    pub retry_after: Option<Duration>,
    /// How long until the key's bucket is full again (its whole burst available).
    pub reset_after: Duration,
    /// Who decided.
    pub decided_by: DecidedBy,
}

/// Counters of one limiter since it was built.
///
/// ```
/// # use std::time::Duration;
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = acgs_cache_core::Cache::builder().build()?;
/// let api = acgs_cache_core::rate_limit::RateLimiter::builder("api").rate(10, Duration::from_secs(1)).build(&cache)?;
/// let stats = api.stats(); // allowed, denied, failed open / closed
/// assert_eq!(stats.allowed + stats.denied, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Checks allowed (by Redis or in process).
    pub allowed: u64,
    /// Checks denied (by Redis or in process).
    pub denied: u64,
    /// Checks allowed because Redis could not answer ([`FailureMode::Open`]).
    pub failed_open: u64,
    /// Checks denied because Redis could not answer ([`FailureMode::Closed`]).
    pub failed_closed: u64,
    /// Buckets found damaged in Redis (garbage, `nan`, `inf`, a time too far
    /// ahead, another type) and reset before the check.
    pub reset_damaged: u64,
}

/// A named GCRA rate limiter: `rate` requests per period per key, bursts of
/// up to `burst`.
///
/// Cheap to clone. Build one per limit at startup with
/// [`RateLimiter::builder`]; checks go to the cache's Redis when it has one
/// (see the [module docs](self)), else run in process.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?; // no Redis: exact, in process
/// let logins = RateLimiter::builder("login")
///     .rate(10, Duration::from_secs(60))
///     .burst(3)
///     .fail_closed()
///     .build(&cache)?;
/// for _ in 0..3 {
///     assert!(logins.check("alice@example.com").await?.allowed);
/// }
/// let fourth = logins.check("alice@example.com").await?;
/// assert!(!fourth.allowed);
/// // One request's worth comes back every 6 s (10 per minute).
/// assert!(fourth.retry_after.unwrap() <= Duration::from_secs(6));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<LimiterInner>,
}

struct LimiterInner {
    name: String,
    gcra: Gcra,
    failure_mode: FailureMode,
    backend: Backend,
    counts: [AtomicU64; 5],
}

enum Backend {
    #[cfg(feature = "redis")]
    Redis {
        cache: Cache,
        script: redis::Script,
        /// `{prefix}:rl:{name}:`
        key_prefix: String,
    },
    InProcess(LocalBuckets),
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RateLimiter")
            .field("name", &inner.name)
            .field("emission_interval", &inner.gcra.interval())
            .field("burst", &inner.gcra.burst)
            .field("failure_mode", &inner.failure_mode)
            .field("shared", &!matches!(inner.backend, Backend::InProcess(_)))
            .finish_non_exhaustive()
    }
}

const ALLOWED: usize = 0;
const DENIED: usize = 1;
const FAILED_OPEN: usize = 2;
const FAILED_CLOSED: usize = 3;
const RESET_DAMAGED: usize = 4;

impl RateLimiter {
    /// A builder for the limiter `name` (letters, digits, `_`, `-`, dots
    /// between segments: it is part of Redis keys).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(100, Duration::from_secs(1)).build(&cache)?;
    /// assert_eq!(api.name(), "api");
    /// # Ok(()) }
    /// ```
    pub fn builder(name: impl Into<String>) -> RateLimiterBuilder {
        RateLimiterBuilder {
            name: name.into(),
            rate: None,
            burst: None,
            failure_mode: FailureMode::default(),
        }
    }

    /// The limiter's name.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(100, Duration::from_secs(1)).build(&cache)?;
    /// assert_eq!(api.name(), "api");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Checks one request of cost 1 for `key` (a user id, an IP address,
    /// anything: keys longer than [`MAX_VERBATIM_KEY_BYTES`] are hashed).
    ///
    /// # Errors
    ///
    /// None today for cost 1; the signature matches [`RateLimiter::check_n`].
    /// Redis failures are not errors: they decide by the [`FailureMode`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(1, Duration::from_secs(60)).burst(1).build(&cache)?;
    /// assert!(api.check("alice").await?.allowed);
    /// assert!(!api.check("alice").await?.allowed);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, key: &str) -> Result<Decision, Error> {
        self.check_n(key, 1).await
    }

    /// Checks one request of cost `cost` for `key`: it is allowed only if
    /// `cost` requests' worth of the limit is available now, and then uses it
    /// all. A cost of 0 consumes nothing and reports the key's state.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `cost` exceeds the burst (such a request
    /// could never be allowed). Redis failures are not errors: the check
    /// decides by the [`FailureMode`] and the decision says so.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let uploads = RateLimiter::builder("upload-mb").rate(10, Duration::from_secs(1)).burst(10).build(&cache)?;
    /// assert!(uploads.check_n("alice", 8).await?.allowed);  // an 8 MB upload
    /// assert!(!uploads.check_n("alice", 8).await?.allowed); // another one must wait
    /// assert!(uploads.check_n("alice", 11).await.is_err());  // never fits the burst
    /// # Ok(()) }
    /// ```
    pub async fn check_n(&self, key: &str, cost: u32) -> Result<Decision, Error> {
        let inner = &self.inner;
        if u64::from(cost) > inner.gcra.burst {
            return Err(Error::InvalidInput(format!(
                "rate limiter {:?}: cost {cost} exceeds the burst of {}; it could never be allowed",
                inner.name, inner.gcra.burst
            )));
        }
        let decision = match &inner.backend {
            #[cfg(feature = "redis")]
            Backend::Redis {
                cache,
                script,
                key_prefix,
            } => {
                let redis_key = bucket_key(key_prefix, key);
                let mut invocation = script.key(redis_key);
                invocation
                    .arg(inner.gcra.interval_us)
                    .arg(inner.gcra.tolerance_us())
                    .arg(cost);
                match cache
                    .run_script::<(i64, i64, i64, i64, i64)>(&invocation)
                    .await
                {
                    Ok(reply) => {
                        if reply.4 == 1 {
                            inner.counts[RESET_DAMAGED].fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(target: "acgs_cache", limiter = %inner.name, "a damaged rate-limit bucket was reset");
                        }
                        Decision::from_reply((reply.0, reply.1, reply.2, reply.3))
                    }
                    Err(e) => {
                        tracing::debug!(target: "acgs_cache", limiter = %inner.name, error = %e, "rate limit check could not reach redis");
                        inner.failed()
                    }
                }
            }
            Backend::InProcess(buckets) => buckets.check(&inner.gcra, key, cost),
        };
        let counter = match decision.decided_by {
            DecidedBy::FailedOpen => FAILED_OPEN,
            DecidedBy::FailedClosed => FAILED_CLOSED,
            _ if decision.allowed => ALLOWED,
            _ => DENIED,
        };
        inner.counts[counter].fetch_add(1, Ordering::Relaxed);
        Ok(decision)
    }

    /// What this limiter decided so far.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let logins = RateLimiter::builder("login").rate(1, Duration::from_secs(60)).burst(1).build(&cache)?;
    /// logins.check("10.0.0.7").await?;
    /// logins.check("10.0.0.7").await?;
    /// let stats = logins.stats();
    /// assert_eq!((stats.allowed, stats.denied), (1, 1));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn stats(&self) -> RateLimitStats {
        let n = |i: usize| self.inner.counts[i].load(Ordering::Relaxed);
        RateLimitStats {
            allowed: n(ALLOWED),
            denied: n(DENIED),
            failed_open: n(FAILED_OPEN),
            failed_closed: n(FAILED_CLOSED),
            reset_damaged: n(RESET_DAMAGED),
        }
    }
}

impl LimiterInner {
    /// The decision when Redis could not answer.
    #[cfg(feature = "redis")]
    fn failed(&self) -> Decision {
        let interval = self.gcra.interval();
        match self.failure_mode {
            FailureMode::Open => Decision {
                allowed: true,
                remaining: 0,
                retry_after: None,
                reset_after: Duration::ZERO,
                decided_by: DecidedBy::FailedOpen,
            },
            // Nothing is known about the bucket; one emission interval is the
            // earliest a retry could succeed, and spaces retries sensibly.
            FailureMode::Closed => Decision {
                allowed: false,
                remaining: 0,
                retry_after: Some(interval),
                reset_after: interval,
                decided_by: DecidedBy::FailedClosed,
            },
        }
    }
}

impl Decision {
    #[cfg(feature = "redis")]
    fn from_reply(
        (allowed, remaining, retry_after_us, reset_after_us): (i64, i64, i64, i64),
    ) -> Self {
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Decision {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: (allowed != 1).then(|| micros(retry_after_us)),
            reset_after: micros(reset_after_us),
            decided_by: DecidedBy::Redis,
        }
    }
}

/// The Redis key of `key`'s bucket: verbatim when short, else its SHA-256
/// (under `sha256:`, which a verbatim key of another caller could only
/// collide with by knowing a preimage).
#[cfg(feature = "redis")]
fn bucket_key(key_prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(key_prefix.len() + MAX_VERBATIM_KEY_BYTES);
    out.push_str(key_prefix);
    push_bucket_name(&mut out, key);
    out
}

fn push_bucket_name(out: &mut String, key: &str) {
    if key.len() <= MAX_VERBATIM_KEY_BYTES {
        out.push_str(key);
    } else {
        out.push_str("sha256:");
        for byte in Sha256::digest(key.as_bytes()) {
            out.push_str(&format!("{byte:02x}"));
        }
    }
}

/// The algorithm's parameters, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Time one request's worth of the limit takes to come back.
    interval_us: u64,
    /// Requests allowed at once from an idle key.
    burst: u64,
}

/// One step of the algorithm, the same arithmetic as [`GCRA_SCRIPT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    allowed: bool,
    remaining: u64,
    retry_after_us: u64,
    reset_after_us: u64,
    /// The key's TAT afterwards.
    tat: u64,
}

impl Gcra {
    fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }

    fn tolerance_us(&self) -> u64 {
        self.interval_us.saturating_mul(self.burst)
    }

    fn step(&self, stored_tat: Option<u64>, now: u64, cost: u32) -> Step {
        // Compared as `now + tolerance` against the TAT rather than `now`
        // against `TAT - tolerance`: the in-process clock starts at 0, where
        // the subtraction would clamp.
        let horizon = now.saturating_add(self.tolerance_us());
        let tat = stored_tat.unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(u64::from(cost).saturating_mul(self.interval_us));
        if horizon < new_tat {
            return Step {
                allowed: false,
                remaining: horizon.saturating_sub(tat) / self.interval_us,
                retry_after_us: new_tat - horizon,
                reset_after_us: tat - now,
                tat,
            };
        }
        Step {
            allowed: true,
            remaining: (horizon - new_tat) / self.interval_us,
            retry_after_us: 0,
            reset_after_us: new_tat - now,
            tat: new_tat,
        }
    }
}

/// The in-process buckets: key → TAT (µs since the limiter was built).
/// Keys whose TAT has passed are equivalent to absent ones and are swept, so
/// the table holds only the keys active within one burst's time.
struct LocalBuckets {
    epoch: Instant,
    table: Mutex<HashMap<String, u64>>,
    /// Table size at which the next insert sweeps expired keys.
    sweep_at: AtomicU64,
}

impl LocalBuckets {
    fn new() -> Self {
        LocalBuckets {
            epoch: Instant::now(),
            table: Mutex::new(HashMap::new()),
            sweep_at: AtomicU64::new(1024),
        }
    }

    fn check(&self, gcra: &Gcra, key: &str, cost: u32) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut bucket = String::new();
        push_bucket_name(&mut bucket, key);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let step = gcra.step(table.get(&bucket).copied(), now, cost);
        if step.allowed && cost > 0 {
            table.insert(bucket, step.tat);
            let len = table.len() as u64;
            if len >= self.sweep_at.load(Ordering::Relaxed) {
                table.retain(|_, tat| *tat > now);
                // Sweep again once the table has doubled from what is live.
                self.sweep_at
                    .store((table.len() as u64 * 2).max(1024), Ordering::Relaxed);
            }
        }
        drop(table);
        Decision {
            allowed: step.allowed,
            remaining: step.remaining,
            retry_after: (!step.allowed).then(|| Duration::from_micros(step.retry_after_us)),
            reset_after: Duration::from_micros(step.reset_after_us),
            decided_by: DecidedBy::InProcess,
        }
    }
}

/// Builds a [`RateLimiter`].
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
///
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let api = RateLimiter::builder("api")
///     .rate(100, Duration::from_secs(1)) // 100 a second, sustained
///     .burst(20)                         // and 20 at once
///     .fail_open()                       // Redis unreachable: allow
///     .build(&cache)?;
/// assert_eq!(api.name(), "api");
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct RateLimiterBuilder {
    name: String,
    rate: Option<(u64, Duration)>,
    burst: Option<u64>,
    failure_mode: FailureMode,
}

impl RateLimiterBuilder {
    /// `requests` per `period` per key, sustained (required).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(600, Duration::from_secs(60)).build(&cache)?;
    /// assert!(api.check("alice").await?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn rate(mut self, requests: u64, period: Duration) -> Self {
        self.rate = Some((requests, period));
        self
    }

    /// Requests allowed at once from an idle key (default: the rate's
    /// `requests`, so an idle key may spend one period's worth at once).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(1, Duration::from_secs(1)).burst(3).build(&cache)?;
    /// for _ in 0..3 { assert!(api.check("alice").await?.allowed); }
    /// assert!(!api.check("alice").await?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// What to do when Redis cannot answer a check (default [`FailureMode::Open`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(10, Duration::from_secs(1)).on_redis_failure(acgs_cache_core::rate_limit::FailureMode::Open).build(&cache)?;
    /// # let _ = api;
    /// # Ok(()) }
    /// ```
    pub fn on_redis_failure(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Allow requests while Redis cannot answer ([`FailureMode::Open`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(10, Duration::from_secs(1)).fail_open().build(&cache)?;
    /// # let _ = api;
    /// # Ok(()) }
    /// ```
    pub fn fail_open(self) -> Self {
        self.on_redis_failure(FailureMode::Open)
    }

    /// Deny requests while Redis cannot answer ([`FailureMode::Closed`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(10, Duration::from_secs(1)).fail_closed().build(&cache)?;
    /// # let _ = api;
    /// # Ok(()) }
    /// ```
    pub fn fail_closed(self) -> Self {
        self.on_redis_failure(FailureMode::Closed)
    }

    /// Builds the limiter on `cache`: shared through its Redis when it has
    /// one, in process otherwise. Keys are `{prefix}:rl:{name}:{key}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside the grammar;
    /// [`Error::Config`] without a rate, or for a zero rate, period or burst,
    /// or a rate above one request per microsecond.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{rate_limit::RateLimiter, Cache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let api = RateLimiter::builder("api").rate(10, Duration::from_secs(1)).build(&cache)?;
    /// # let _ = api;
    /// # Ok(()) }
    /// ```
    pub fn build(self, cache: &Cache) -> Result<RateLimiter, Error> {
        check_dotted_name(&self.name)
            .map_err(|e| Error::InvalidName(format!("rate limiter {:?} {e}", self.name)))?;
        let Some((requests, period)) = self.rate else {
            return Err(Error::Config(format!(
                "rate limiter {:?} needs a rate: .rate(requests, period)",
                self.name
            )));
        };
        let burst = self.burst.unwrap_or(requests);
        if requests == 0 || period.is_zero() || burst == 0 {
            return Err(Error::Config(format!(
                "rate limiter {:?}: rate ({requests} per {period:?}) and burst ({burst}) must be positive",
                self.name
            )));
        }
        let interval_us =
            u64::try_from(period.as_micros() / u128::from(requests)).unwrap_or(u64::MAX);
        if interval_us == 0 {
            return Err(Error::Config(format!(
                "rate limiter {:?}: {requests} per {period:?} is more than one request per microsecond",
                self.name
            )));
        }
        let backend = {
            #[cfg(feature = "redis")]
            if cache.has_l2() {
                Backend::Redis {
                    cache: cache.clone(),
                    script: redis::Script::new(GCRA_SCRIPT),
                    key_prefix: format!("{}:rl:{}:", cache.prefix(), self.name),
                }
            } else {
                Backend::InProcess(LocalBuckets::new())
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = cache; // without the feature there is never a Redis to share through
                Backend::InProcess(LocalBuckets::new())
            }
        };
        Ok(RateLimiter {
            inner: Arc::new(LimiterInner {
                name: self.name,
                gcra: Gcra { interval_us, burst },
                failure_mode: self.failure_mode,
                backend,
                counts: Default::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn gcra(per_second: u64, burst: u64) -> Gcra {
        Gcra {
            interval_us: SECOND / per_second,
            burst,
        }
    }

    /// Runs `costs` at `now` against one key, returning the steps.
    fn run(g: &Gcra, mut tat: Option<u64>, now: u64, costs: &[u32]) -> Vec<Step> {
        costs
            .iter()
            .map(|&c| {
                let s = g.step(tat, now, c);
                if s.allowed && c > 0 {
                    tat = Some(s.tat);
                }
                s
            })
            .collect()
    }

    #[test]
    fn an_idle_key_allows_exactly_the_burst() {
        let g = gcra(10, 5);
        let steps = run(&g, None, 100 * SECOND, &[1; 7]);
        let allowed: Vec<bool> = steps.iter().map(|s| s.allowed).collect();
        assert_eq!(allowed, [true, true, true, true, true, false, false]);
        let remaining: Vec<u64> = steps.iter().map(|s| s.remaining).collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0, 0, 0]);
        // Denied: one interval (100 ms) until the next request fits.
        assert_eq!(steps[5].retry_after_us, SECOND / 10);
        // The full burst is back after 5 intervals.
        assert_eq!(steps[4].reset_after_us, 5 * SECOND / 10);
    }

    #[test]
    fn remaining_is_right_at_the_start_of_the_clock() {
        // The in-process clock starts at 0: nothing may clamp there.
        let g = gcra(5, 3);
        let remaining: Vec<u64> = run(&g, None, 0, &[1; 3])
            .iter()
            .map(|s| s.remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        assert!(!g.step(Some(3 * g.interval_us), 0, 1).allowed);
    }

    #[test]
    fn the_limit_refills_at_the_rate() {
        let g = gcra(10, 2);
        let start = 100 * SECOND;
        let tat = run(&g, None, start, &[1, 1]).last().unwrap().tat;
        assert!(!g.step(Some(tat), start, 1).allowed);
        // 100 ms later one request fits, and only one.
        let later = start + SECOND / 10;
        let steps = run(&g, Some(tat), later, &[1, 1]);
        assert!(steps[0].allowed && !steps[1].allowed);
    }

    #[test]
    fn a_costly_request_needs_that_much_room_and_zero_cost_only_reports() {
        let g = gcra(1, 10);
        let now = 100 * SECOND;
        let steps = run(&g, None, now, &[7, 4, 3, 0]);
        assert!(steps[0].allowed);
        assert!(!steps[1].allowed);
        assert_eq!(steps[1].remaining, 3);
        assert_eq!(steps[1].retry_after_us, SECOND);
        assert!(steps[2].allowed);
        assert!(steps[3].allowed);
        assert_eq!(steps[3].remaining, 0);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn long_keys_are_hashed_short_ones_kept() {
        assert_eq!(bucket_key("acgs:rl:login:", "alice"), "acgs:rl:login:alice");
        let long = "x".repeat(10_000);
        let key = bucket_key("acgs:rl:login:", &long);
        assert!(key.starts_with("acgs:rl:login:sha256:"));
        assert_eq!(key.len(), "acgs:rl:login:sha256:".len() + 64);
    }

    #[tokio::test]
    async fn builder_rejects_what_cannot_work() {
        let cache = Cache::builder().build().unwrap();
        let second = Duration::from_secs(1);
        assert!(matches!(
            RateLimiter::builder("bad name")
                .rate(1, second)
                .build(&cache),
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            RateLimiter::builder("login").build(&cache),
            Err(Error::Config(_))
        ));
        assert!(RateLimiter::builder("login")
            .rate(0, second)
            .build(&cache)
            .is_err());
        assert!(RateLimiter::builder("login")
            .rate(1, second)
            .burst(0)
            .build(&cache)
            .is_err());
        assert!(RateLimiter::builder("login")
            .rate(10_000_000, second)
            .build(&cache)
            .is_err());
        let limiter = RateLimiter::builder("login")
            .rate(1, second)
            .build(&cache)
            .unwrap();
        assert!(matches!(
            limiter.check_n("alice", 2).await,
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn local_table_sweeps_expired_keys() {
        let buckets = LocalBuckets::new();
        let g = gcra(1_000_000, 1); // 1 µs interval: entries expire at once
        for i in 0..5000 {
            buckets.check(&g, &i.to_string(), 1);
        }
        assert!(buckets.table.lock().unwrap().len() < 5000);
    }
}
