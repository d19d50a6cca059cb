//! Services built on the public API, as a user could have written them:
//! sessions, bearer-token verifications, the shared rate limiter, the named
//! lock. Nothing here imports the engine, the tiers or the coherence layer.

pub(crate) mod lock;
pub mod rate_limit;
pub mod session;
pub mod token;
