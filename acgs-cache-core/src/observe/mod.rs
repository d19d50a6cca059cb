//! What reads the figures out: the `metrics` publisher, `health()`, the fleet
//! view, operator access to L2.

#[cfg(feature = "redis")]
pub(crate) mod fleet;
pub(crate) mod health;
pub(crate) mod metrics;
#[cfg(feature = "redis")]
pub(crate) mod operator;
