//! The invalidation protocol: what an instance has heard (`state`), the
//! per-function state it judges entries by (`function`), the Redis log
//! (`log`: records, scripts, generations) and the invalidations kept through
//! an outage (`recovery`).

pub(crate) mod function;
#[cfg(feature = "redis")]
pub(crate) mod log;
pub(crate) mod recovery;
pub(crate) mod state;
