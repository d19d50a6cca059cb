//! This instance's invalidations: a record sent through the log (with the
//! tombstone over an entry's L2 key) and applied here before the call
//! returns; without Redis, or when Redis does not answer, applied here and
//! kept to send when it does (`coherence/recovery.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use crate::clock::unix_ms;
use crate::coherence::function::FunctionState;
use crate::coherence::state::{unpack, Record};
use crate::engine::instance::Inner;
use crate::error::Error;
use crate::format::key::KeyDigest;
use crate::log_position::LogPosition;

/// Invalidates one entry of `function` (the `invalidate_<fn>` companions,
/// the typed maps' removals, session revocation): a record in the log, a
/// tombstone over its L2 key.
pub(crate) async fn invalidate_entry(
    inner: &Arc<Inner>,
    function: &FunctionState,
    digest: KeyDigest,
) -> Result<LogPosition, Error> {
    let record = Record::Entry {
        scope: inner.function_scope(&function.name),
        identity: function.identity,
        digest,
    };
    let key = crate::format::key::redis_key(&function.key_prefix, digest);
    publish(inner, record, Some(key)).await
}

/// Sends `record` through the log (and tombstones `entry_key`), then
/// applies it here; without Redis, applies it here and keeps it for when
/// Redis answers.
pub(crate) async fn publish(
    inner: &Arc<Inner>,
    record: Record,
    entry_key: Option<String>,
) -> Result<LogPosition, Error> {
    let coherence = &inner.coherence();
    coherence.sent.inc();
    if inner.l2().is_some() {
        return match crate::engine::tailer::send(inner, &record, entry_key.as_deref()).await {
            Ok(position) => {
                inner.apply_heard(position.packed(), &record).await;
                Ok(position)
            }
            Err(e) => {
                if !matches!(e, Error::Unconfirmed { .. }) {
                    // Nobody else hears it yet: this instance stops serving
                    // what it concerns at once, and it is sent when Redis
                    // answers again.
                    inner
                        .apply_heard(coherence.next_local_position(), &record)
                        .await;
                    inner.recovery().push(record, entry_key);
                    tracing::warn!(target: "acgs_cache", error = %e, "invalidation not sent to redis; applied to this instance, kept to send when redis answers");
                } else {
                    inner.apply_heard(coherence.head(), &record).await;
                }
                Err(e)
            }
        };
    }
    let _ = entry_key;
    let now_ms = unix_ms(SystemTime::now());
    let position = coherence.next_clock_position(now_ms);
    inner.apply_heard(position, &record).await;
    coherence.maybe_prune(inner.config().retention, now_ms);
    Ok(unpack(position))
}
