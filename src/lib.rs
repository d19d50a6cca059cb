//! Two-tier caching for async Rust functions with one attribute: L1 in
//! process ([moka]), L2 shared ([Redis] through a deadpool-redis pool), named
//! TTL policies checked at compile time, tag and event invalidation that
//! reaches every instance, stampede protection, and calls that keep
//! answering when Redis is slow or gone.
//!
//! ```
//! use acgs_cache::cached;
//! # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! # pub struct Decision { allow: bool }
//! # #[derive(Debug)]
//! # pub struct DbError;
//!
//! #[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
//! async fn evaluate_policy(policy_id: u64, subject: &str) -> Result<Decision, DbError> {
//!     # let _ = subject;
//!     Ok(Decision { allow: policy_id % 2 == 0 }) // the query
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() { assert!(evaluate_policy(2, "alice").await.unwrap().allow); }
//! ```
//!
//! A tour:
//!
//! - [`cached`]: the attribute and every argument (the reference);
//!   [`cached_companions`] for trait impls; [`invalidates`] for write
//!   functions; [`with_outcome`] to learn how a call was answered.
//! - [`Cache`] and [`CacheBuilder`]: configuration (also from
//!   `ACGS_CACHE_*` variables, [`Cache::from_env`]), [`invalidate`],
//!   [`Cache::wait_for_fleet`], [`Cache::stats`], [`Cache::health`],
//!   [`Warmer`].
//! - Without the attribute: [`CacheMap`]. The toolkit, built on the public
//!   API alone: [`SessionStore`], [`TokenCache`], [`RateLimiter`] and, with
//!   Redis, [`DistributedLock`] (on the lease primitive [`Cache::try_lease`]).
//! - The guide, one page per topic: [`guide::invalidation`] (the guarantee
//!   and the staleness bound), [`guide::toolkit`], [`guide::testing`],
//!   [`guide::operations`] (policies, configuration, topologies,
//!   observability, the CLI), [`guide::guarantees`] and
//!   [`guide::benchmarks`].
//!
//! [moka]: https://crates.io/crates/moka
//! [Redis]: https://redis.io
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use acgs_cache_core::{
    decode_header, fingerprint, grammar, invalidate, parse_duration, policies, with_outcome,
    AlreadyInstalled, Cache, CacheBuilder, CacheMap, CacheMapBuilder, Codec, CodecError,
    EnvelopeHeader, Error, ErrorReason, FleetAck, FunctionStats, HealthReport, HealthStatus,
    InvalidationHealth, InvalidationStats, KeyDigest, L1Health, L2Health, LatencyHistogram,
    LogPosition, MaxStaleness, Outcome, PolicyOverride, PoolStats, RateLimiter, RedactedUrl,
    RedisConfig, Reject, RuntimeDefaultGuard, Session, SessionStore, StatsSnapshot, TokenCache,
    TtlPolicy, Unavailable, WarmEntry, WarmReport, Warmer, DEFAULT_L1_CAP, DEFAULT_MAX_STALENESS,
    ENV_REDIS_URL, FLAG_COMPRESSED, FORMAT_VERSION, MAGIC, MIN_MAX_STALENESS,
};

/// A rate limiter shared by every instance (GCRA, one Redis script per check).
pub use acgs_cache_core::rate_limit;
/// Sessions: create, get, touch, revoke — revocation reaches every instance.
pub use acgs_cache_core::session;
/// A cache of bearer-token verifications, keyed by the token's SHA-256.
pub use acgs_cache_core::token;

pub use acgs_cache_core::{DistributedLock, LockLease};
#[cfg(feature = "redis")]
pub use acgs_cache_core::{FleetFunction, FleetMember, FleetStats, InstanceLease};

#[doc = include_str!("../docs/cached.md")]
pub use acgs_cache_macros::cached;

/// Companions for the `#[cached]` methods of a trait impl.
///
/// A trait impl holds only the trait's items, so `#[cached]` cannot write
/// `invalidate_<fn>`, `invalidate_all_<fn>`, `warm_entry_<fn>`,
/// `<fn>_uncached` and `refresh_<fn>` beside a method there. Put
/// `#[cached_companions]` on the impl — above `#[async_trait]` when there
/// is one, so it sees the `async fn`s as written — and they go into an
/// inherent impl of the same type beside it: `pub`, or with the visibility
/// given (`#[cached_companions(pub(crate))]`). They name the same function
/// instance as the method (`<Store as Rules>::count`). A method with
/// `companions = false` gets none.
///
/// ```
/// use acgs_cache::{cached, cached_companions};
///
/// pub trait Rules {
///     fn count(&self, tenant: u32) -> impl std::future::Future<Output = u64> + Send;
/// }
///
/// pub struct RuleStore;
///
/// #[cached_companions]
/// impl Rules for RuleStore {
///     #[cached(ttl = "governance_rules", skip(self))]
///     async fn count(&self, tenant: u32) -> u64 {
///         u64::from(tenant) * 10
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache::Error> {
/// let store = RuleStore;
/// assert_eq!(store.count(3).await, 30);
/// store.invalidate_count(3).await?;      // this entry, on every instance
/// store.invalidate_all_count().await?;   // every entry of the method
/// assert_eq!(store.refresh_count(3).await, 30); // computed and stored, no read
/// assert_eq!(store.count_uncached(3).await, 30); // the body, no cache
/// let _entry = store.warm_entry_count(4, 40u64); // for a `Warmer`
/// # Ok(()) }
/// ```
pub use acgs_cache_macros::cached_companions;

/// Publishes events after a write function succeeds (returns `Ok`, for a
/// `Result` under any alias; anything else always), so that writes and the
/// reads they change name the same events:
///
/// ```
/// use acgs_cache::{cached, invalidates};
///
/// #[cached(ttl = "5m", tags = ["tenant.{tenant}"])]
/// async fn quota(tenant: String) -> u64 {
///     100
/// }
///
/// #[invalidates("tenant.{tenant}")]
/// async fn set_quota(tenant: String, quota: u64) -> Result<(), std::io::Error> {
///     // the write
///     Ok(())
/// }
/// ```
///
/// The events are formatted from the arguments before the body runs, as tag
/// templates are (`"tenant.{tenant}"` reaches exactly the entries tagged
/// with the same value). They go through `cache = PATH` if given, else the
/// cache `#[cached]` functions use here. A failure to publish is logged
/// (`WARN`), not returned: the write happened, and the invalidation is
/// retried in the background until Redis takes it.
pub use acgs_cache_macros::invalidates;

/// The process-default cache (see [`Cache::global`]).
///
/// ```
/// let cache = acgs_cache::global(); // built from the environment on first use
/// println!("{}", cache.service());
/// ```
pub fn global() -> &'static Cache {
    Cache::global()
}

/// What the code generated by `#[cached]` calls. Not a public API.
#[doc(hidden)]
pub use acgs_cache_core::__private;

/// The guide in full, one page per topic: what the README summarizes. Each
/// page is a file under `docs/` in the repository too, and every example in
/// it runs as a doctest.
pub mod guide {
    /// Names the pages link to, in scope for their intra-doc links.
    #[allow(unused_imports)]
    use crate::*;

    #[doc = include_str!("../docs/invalidation.md")]
    pub mod invalidation {
        #[allow(unused_imports)]
        use crate::*;
    }

    #[doc = include_str!("../docs/toolkit.md")]
    pub mod toolkit {
        #[allow(unused_imports)]
        use crate::*;
    }

    #[doc = include_str!("../docs/testing.md")]
    pub mod testing {
        #[allow(unused_imports)]
        use crate::*;
    }

    #[doc = include_str!("../docs/operations.md")]
    pub mod operations {
        #[allow(unused_imports)]
        use crate::*;
    }

    #[doc = include_str!("../docs/guarantees.md")]
    pub mod guarantees {
        #[allow(unused_imports)]
        use crate::*;
    }

    #[doc = include_str!("../docs/benchmarks.md")]
    pub mod benchmarks {
        #[allow(unused_imports)]
        use crate::*;
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
