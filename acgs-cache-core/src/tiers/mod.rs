//! Storage: L1 (moka) and L2 (Redis through deadpool-redis: connections,
//! topology, TLS, the circuit breaker, per-runtime lanes).

#[cfg(feature = "redis")]
pub(crate) mod breaker;
#[cfg(feature = "redis")]
pub(crate) mod connection;
pub(crate) mod l1;
#[cfg(feature = "redis")]
pub(crate) mod l2;
#[cfg(feature = "tls")]
pub(crate) mod tls;
pub(crate) mod topology;
