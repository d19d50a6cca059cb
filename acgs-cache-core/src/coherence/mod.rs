//! The invalidation protocol: what an instance has heard (`state`), the
//! per-function state it judges entries by (`function`), the Redis log
//! (`log`: records, generations; `log_script`: its scripts), the lease
//! that bounds how stale an instance can be (`lease`) and the invalidations
//! kept through an outage (`recovery`).

pub(crate) mod function;
pub(crate) mod lease;
pub(crate) mod log;
// The log's scripts, as functions of an `&L2Tier`; stubbed (like the tier)
// without the `redis` feature.
#[cfg(feature = "redis")]
pub(crate) mod log_script;
#[cfg(not(feature = "redis"))]
#[path = "no_log_script.rs"]
pub(crate) mod log_script;
pub(crate) mod recovery;
pub(crate) mod state;
