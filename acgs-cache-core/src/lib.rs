//! Runtime of [`acgs-cache`](https://docs.rs/acgs-cache): the tiers, the
//! envelope, the TTL policies and the call path behind `#[cached]`.
//!
//! Service code depends on the `acgs-cache` facade, which re-exports this
//! crate and the attribute; depend on this crate directly only to build
//! tooling around the cache.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod background;
mod cache;
mod clock;
mod coherence;
mod current;
mod engine;
mod error;
mod expansion;
mod format;
mod invalidation;
mod lease;
mod log_position;
mod map;
mod measure;
mod observe;
mod tiers;
mod toolkit;

/// Event names, patterns and tag templates (shared with the attribute).
pub use acgs_cache_grammar as grammar;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use cache::ConfirmInvalidations;
pub use cache::{CacheBuilder, DEFAULT_L2_LANES, ENV_REDIS_URL};
pub use current::{AlreadyInstalled, RuntimeDefaultGuard};
pub use engine::instance::Cache;
pub use engine::outcome::{with_outcome, Outcome};
pub use engine::warm::{WarmEntry, WarmReport, Warmer};
pub use error::{CodecError, Error, RedactedUrl, Unavailable};
pub use format::codec::Codec;
pub use format::envelope::{
    decode_header, EnvelopeHeader, Reject, FLAG_COMPRESSED, FORMAT_VERSION, MAGIC,
};
pub use format::key::{fingerprint, KeyDigest};
pub use format::policy::{
    builtin as policies, parse_duration, MaxStaleness, PolicyOverride, TtlPolicy, DEFAULT_L1_CAP,
    DEFAULT_MAX_STALENESS, MIN_MAX_STALENESS,
};
pub use lease::LockLease;
pub use log_position::LogPosition;
pub use map::{CacheMap, CacheMapBuilder};
pub use measure::latency::LatencyHistogram;
pub use measure::stats::{ErrorReason, FunctionStats, InvalidationStats, PoolStats, StatsSnapshot};
pub use observe::ack::FleetAck;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use observe::fleet::{FleetFunction, FleetMember, FleetStats, MAX_FLEET_MEMBERS};
pub use observe::health::{HealthReport, HealthStatus, InvalidationHealth, L1Health, L2Health};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use observe::heard::InstanceLease;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use observe::operator::StoredEntry;
pub use tiers::topology::RedisConfig;
pub use toolkit::lock::DistributedLock;
pub use toolkit::rate_limit::RateLimiter;
pub use toolkit::session::{Session, SessionStore};
pub use toolkit::token::TokenCache;
pub use toolkit::{rate_limit, session, token};

/// Invalidates `event` through the cache `#[cached]` functions use here (the
/// scoped one inside [`Cache::scope`], else the process default); see
/// [`Cache::invalidate`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// // Every `#[cached]` function with a matching `invalidate_on` pattern, and
/// // every entry tagged `governance.rules.updated`, on every instance.
/// let position = acgs_cache_core::invalidate("governance.rules.updated").await?;
/// assert!(acgs_cache_core::invalidate("no spaces.x").await.is_err());
/// # let _ = position; Ok(()) }
/// ```
///
/// # Errors
///
/// As [`Cache::invalidate`].
pub async fn invalidate(event: &str) -> Result<LogPosition, Error> {
    Cache::resolve(None).invalidate(event).await
}

/// What the code `#[cached]` and `#[invalidates]` generate calls, and
/// nothing else (plus the envelope helpers the benchmarks time). Not a
/// public API: names and signatures change without notice.
#[doc(hidden)]
pub mod __private {
    /// The shape of a return type (see `shape.rs`).
    pub use crate::__acgs_shape as shape;
    pub use crate::engine::instance::Cache;
    pub use crate::engine::site::CallSite;
    pub use crate::expansion::{
        decode_envelope, dispatch, encode_envelope, instance, invalidate_entry,
        invalidate_function, literal_policy, publish_after, static_cache, ChooseEngine,
        ChooseReport, ChooseSilent, Written, WrittenAny, WrittenResult,
    };
    pub use crate::format::codec::Codec;
    pub use crate::format::key::KeyBuilder;
    pub use crate::format::policy::{builtin as policies, MaxStaleness};
    pub use crate::format::shape::{cache_if, negative, ttl_from, ShapeOf, ShapeProbe, WarmInto};
    pub use core::time::Duration;
}
