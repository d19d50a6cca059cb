//! What reads the figures out: the `metrics` publisher, `health()`, the fleet
//! view, what the fleet has heard of the invalidation log (and the wait for
//! it), operator access to L2.

pub(crate) mod ack;
#[cfg(feature = "redis")]
pub(crate) mod fleet;
pub(crate) mod health;
#[cfg(feature = "redis")]
pub(crate) mod heard;
pub(crate) mod metrics;
#[cfg(feature = "redis")]
pub(crate) mod operator;
