//! Operator access to what L2 stores — one function's entry keys, one
//! entry's bytes, deleting entries — on every topology (the CLI's `keys`,
//! `inspect` and `purge`). Cached calls never use these.

use std::time::Duration;

use crate::cache::Cache;
use crate::error::Error;

/// One entry as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEntry {
    /// The envelope ([`decode_header`](crate::decode_header) reads it).
    pub bytes: Vec<u8>,
    /// Time left before Redis drops it (`None`: no expiry).
    pub ttl: Option<Duration>,
}

/// A key segment (service or function): no separator, no glob character.
fn check_segment(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.contains([':', '*', '?', '[', ']', ' ']) {
        return Err(Error::InvalidName(format!(
            "{what} {value:?} must be non-empty, without `:`, spaces or glob characters"
        )));
    }
    Ok(())
}

impl Cache {
    /// Up to `limit` L2 keys of `service`'s `function` (a bounded `SCAN`, on
    /// every master of a cluster; never `KEYS`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a segment with `:`, spaces or glob
    /// characters; [`Error::Unavailable`] without L2; the Redis error.
    pub async fn stored_keys(
        &self,
        service: &str,
        function: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        check_segment("service", service)?;
        check_segment("function", function)?;
        let pattern = format!("{}:{service}:{function}:*", self.prefix());
        let mut keys = self.l2_tier()?.scan(&pattern, limit).await?;
        keys.sort();
        keys.dedup(); // SCAN may return a key twice
        keys.truncate(limit);
        Ok(keys)
    }

    /// The entry stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2; the Redis error.
    pub async fn stored_entry(&self, key: &str) -> Result<Option<StoredEntry>, Error> {
        let l2 = self.l2_tier()?;
        let Some(bytes) = l2.get(key).await? else {
            return Ok(None);
        };
        let pttl: i64 = l2.query(redis::cmd("PTTL").arg(key)).await?;
        Ok(Some(StoredEntry {
            bytes,
            ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
        }))
    }

    /// Deletes `keys` from L2 (`UNLINK`: one command, or one per key on a
    /// cluster, where keys live in different slots); returns how many
    /// existed. Instances' L1 copies are not touched: invalidate first
    /// ([`Cache::invalidate_function`]).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2; the Redis error.
    pub async fn delete_stored(&self, keys: &[String]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.l2_tier()?.unlink(keys).await
    }

    /// Records in the invalidation log (`XLEN` of its stream).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2; the Redis error.
    pub async fn invalidation_log_length(&self) -> Result<u64, Error> {
        let stream = crate::log::stream_key(self.prefix());
        self.l2_tier()?.query(redis::cmd("XLEN").arg(stream)).await
    }

    fn l2_tier(&self) -> Result<&std::sync::Arc<crate::l2::L2Tier>, Error> {
        self.inner
            .l2
            .as_ref()
            .ok_or(Error::Unavailable("no L2 configured"))
    }
}
