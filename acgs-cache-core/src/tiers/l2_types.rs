//! What the engine and L2 exchange, the same whether L2 is built (the
//! `redis` feature) or stubbed out (`no_l2.rs`).

/// What `L2Tier::get_entry` found.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a real L2 finds anything
pub(crate) enum Fetched {
    Missing,
    Bytes(Vec<u8>),
    /// Longer than the limit: not read past it.
    TooLarge,
}

/// One entry of a bulk write: `SET key bytes PX px_ms`.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a real L2 writes it
pub(crate) struct BulkEntry {
    pub(crate) key: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) px_ms: u64,
}
