//! Storage: L1 (moka) and L2 (Redis through deadpool-redis: connections,
//! topology, TLS, the circuit breaker, per-runtime lanes, the lock).
//!
//! Without the `redis` feature, `l2` is a stub (`no_l2.rs`) with the same
//! names and an uninhabited `L2Tier`: the layers above are written once,
//! and their L2 branches compile to nothing.

#[cfg(feature = "redis")]
pub(crate) mod breaker;
#[cfg(feature = "redis")]
pub(crate) mod connection;
pub(crate) mod l1;
#[cfg(feature = "redis")]
pub(crate) mod l2;
#[cfg(not(feature = "redis"))]
#[path = "no_l2.rs"]
pub(crate) mod l2;
pub(crate) mod l2_types;
#[cfg(feature = "redis")]
pub(crate) mod lock;
#[cfg(feature = "redis")]
pub(crate) mod reads;
#[cfg(feature = "tls")]
pub(crate) mod tls;
pub(crate) mod topology;
