//! Services built on the engine: sessions, bearer-token verifications, the
//! shared rate limiter.

pub mod rate_limit;
pub mod session;
pub mod token;
