//! What is stored and how it is named: key digests and the Redis key layout, the
//! versioned envelope, codecs, TTL policies and `MaxStaleness`,
//! return shapes, function identities. Depends on nothing else of the crate
//! but `error`, `clock` and `log_position`.

pub(crate) mod codec;
pub(crate) mod envelope;
pub(crate) mod identity;
pub(crate) mod key;
pub(crate) mod policy;
pub(crate) mod shape;
