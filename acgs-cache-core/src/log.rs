//! The invalidation log in Redis: a stream whose server-assigned ids are the
//! positions every entry is compared with.
//!
//! Sending is one `XADD` (which also trims records older than the
//! retention). Each instance tails the stream on a connection of its own:
//! on start and after any disconnection it first reads everything after the
//! last id it processed (catch-up), then blocks for new records. If the log
//! was trimmed past what it had read, it raises its floor: every entry that
//! started before the trimmed records is rejected.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::connection::RedisConnection;
use redis::streams::StreamReadReply;
use redis::Value;

use crate::cache::Inner;
use crate::call::unix_ms;
use crate::coherence::Record;
use crate::error::Error;
use crate::key::KeyDigest;
use crate::l2::L2Tier;
use crate::log_position::LogPosition;

/// Records read per `XREAD`.
const BATCH: usize = 512;
/// How long one `XREAD` waits for new records (below the connection's 1 s
/// response timeout).
const BLOCK_MS: u64 = 500;

/// The stream's key: one log per prefix, shared by every service under it
/// (events are domain-wide; function and entry records name their service).
pub(crate) fn stream_key(prefix: &str) -> String {
    format!("{prefix}:invalidation-log")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl L2Tier {
    /// Appends `record`, trimming records older than `retention`.
    pub(crate) async fn append(
        self: &Arc<Self>,
        stream: &str,
        record: &Record,
        retention: Duration,
    ) -> Result<LogPosition, Error> {
        let horizon_ms = unix_ms(SystemTime::now())
            .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream)
            .arg("MINID")
            .arg("~")
            .arg(horizon_ms)
            .arg("*");
        match record {
            Record::Name(name) => cmd.arg("k").arg("n").arg("n").arg(name),
            Record::Function(scope) => cmd.arg("k").arg("f").arg("n").arg(scope),
            Record::Entry(scope, digest) => cmd
                .arg("k")
                .arg("e")
                .arg("n")
                .arg(scope)
                .arg("d")
                .arg(digest.to_string()),
        };
        cmd.arg("t").arg(now_us());
        let id: String = self.query(&cmd).await?;
        LogPosition::parse(&id).ok_or(Error::Unavailable("redis returned an unparsable stream id"))
    }
}

/// A record as read from the stream, or why it could not be read.
fn parse_record(map: &std::collections::HashMap<String, Value>) -> Option<(Record, Option<u64>)> {
    let text = |field: &str| match map.get(field) {
        Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
        Some(Value::SimpleString(s)) => Some(s.as_str()),
        _ => None,
    };
    let name = text("n")?.to_owned();
    let record = match text("k")? {
        "n" => Record::Name(name),
        "f" => Record::Function(name),
        "e" => Record::Entry(name, KeyDigest(u128::from_str_radix(text("d")?, 16).ok()?)),
        _ => return None,
    };
    Some((record, text("t").and_then(|t| t.parse().ok())))
}

/// Starts the tailer of `inner` once.
pub(crate) fn ensure_tailer(inner: &Arc<Inner>) {
    // A plain load first: the swap's write would bounce the cache line
    // between threads on every call.
    if inner.l2.is_some()
        && !inner.tailer_started.load(Ordering::Acquire)
        && !inner.tailer_started.swap(true, Ordering::AcqRel)
    {
        tokio::spawn(tail(Arc::downgrade(inner)));
        // The instance's other background work starts with its first use of L2 too.
        crate::fleet::spawn_publisher(inner);
    }
}

/// Tails the log until the cache is dropped.
async fn tail(weak: Weak<Inner>) {
    let mut cursor = LogPosition::ORIGIN;
    let mut backoff = Duration::from_millis(50);
    loop {
        // The task holds the cache only while it works on it (never across
        // `follow`), so that dropping the last handle ends the task and
        // frees the cache.
        match follow(&weak, &mut cursor).await {
            Ok(()) => return, // the cache was dropped
            Err(e) => {
                let Some(inner) = weak.upgrade() else { return };
                if inner.coherence.is_listening() {
                    tracing::warn!(target: "acgs_cache", error = %e, "lost the invalidation log; catching up when redis answers");
                } else {
                    tracing::debug!(target: "acgs_cache", error = %e, "invalidation log still unreachable");
                }
                inner.coherence.set_listening(false);
            }
        }
        tokio::time::sleep(backoff).await;
        // Capped low: after an outage or a failover, entries are served
        // from L2 only once the log is heard again.
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Catches up from `cursor`, then follows new records. Returns `Ok` when the
/// cache is gone, `Err` when the connection fails.
async fn follow(weak: &Weak<Inner>, cursor: &mut LogPosition) -> Result<(), Error> {
    let (mut conn, stream) = {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let l2 = inner.l2.as_ref().expect("tailer runs only with L2");
        let stream = stream_key(&inner.config.prefix);
        let mut conn = l2.dedicated_connection().await?;
        raise_floor_if_trimmed(&inner, &mut conn, &stream, *cursor).await?;
        while read_batch(&inner, &mut conn, &stream, cursor, None).await? == BATCH {}
        inner.coherence.set_listening(true);
        tracing::debug!(target: "acgs_cache", %cursor, "invalidation log caught up");
        (conn, stream)
    };
    loop {
        // Hold the cache only while processing, so dropping it ends the task.
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        read_batch(&inner, &mut conn, &stream, cursor, Some(BLOCK_MS)).await?;
        let now_ms = unix_ms(SystemTime::now());
        inner.coherence.maybe_prune(inner.config.retention, now_ms);
    }
}

/// Records removed from the log after `cursor` were never heard: reject
/// every entry that started before what remains.
///
/// Trimming removes the oldest records, so something after `cursor` is
/// missing exactly when records were ever removed and `cursor` itself is no
/// longer in the stream (it is older than the first record left). `XDEL`
/// can remove any record: `max-deleted-entry-id` covers it.
async fn raise_floor_if_trimmed(
    inner: &Inner,
    conn: &mut RedisConnection,
    stream: &str,
    cursor: LogPosition,
) -> Result<(), Error> {
    let exists: bool = redis::cmd("EXISTS").arg(stream).query_async(conn).await?;
    if !exists {
        if cursor > LogPosition::ORIGIN {
            // The log this instance was reading is gone (Redis restarted
            // without persistence, or the key was deleted): whatever it said
            // after `cursor` is unknowable, so nothing older is trusted.
            tracing::warn!(target: "acgs_cache", %cursor, "the invalidation log disappeared; every older entry is rejected");
            inner.coherence.raise_floor(inner.coherence.head() + 1);
        }
        return Ok(());
    }
    let info: std::collections::HashMap<String, Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(conn)
        .await?;
    let int = |field: &str| match info.get(field) {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    let id = |value: Option<&Value>| match value {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(LogPosition::parse),
        Some(Value::SimpleString(s)) => LogPosition::parse(s),
        Some(Value::Array(entry)) => match entry.first() {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(LogPosition::parse),
            _ => None,
        },
        _ => None,
    };
    let removed = int("entries-added")
        .zip(int("length"))
        .is_some_and(|(added, length)| added > length);
    let first_left = id(info.get("first-entry"));
    let last_generated = id(info.get("last-generated-id"));
    let floor = if removed {
        match (first_left, last_generated) {
            (Some(first), _) if cursor < first => Some(first),
            (None, Some(last)) if cursor < last => Some(last),
            _ => None,
        }
    } else {
        None
    };
    let deleted = id(info.get("max-deleted-entry-id"))
        .filter(|d| *d > cursor)
        .map(|d| LogPosition {
            ms: d.ms,
            seq: d.seq + 1,
        });
    if let Some(floor) = floor.max(deleted) {
        tracing::info!(target: "acgs_cache", %floor, %cursor, "invalidation records were removed before this instance read them; older entries are rejected");
        inner.coherence.raise_floor(floor.packed());
    }
    Ok(())
}

/// Reads and applies one batch after `cursor`; returns how many records it held.
async fn read_batch(
    inner: &Inner,
    conn: &mut RedisConnection,
    stream: &str,
    cursor: &mut LogPosition,
    block_ms: Option<u64>,
) -> Result<usize, Error> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(BATCH);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(stream).arg(cursor.to_string());
    let reply: Option<StreamReadReply> = cmd.query_async(conn).await?;
    let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
    let mut count = 0;
    let now = now_us();
    for entry in ids {
        count += 1;
        let Some(position) = LogPosition::parse(&entry.id) else {
            continue;
        };
        *cursor = position;
        match parse_record(&entry.map) {
            Some((record, sent_us)) => {
                inner.coherence.apply(position.packed(), &record);
                inner.coherence.received.inc();
                // Only records heard live measure propagation; catch-up
                // after a start or a disconnection would count the downtime.
                if let (Some(sent), Some(_)) = (sent_us, block_ms) {
                    inner
                        .coherence
                        .record_lag(Duration::from_micros(now.saturating_sub(sent)));
                }
            }
            None => {
                // An invalidation we cannot read (a newer format, or a foreign
                // writer): assume it concerned everything.
                tracing::warn!(target: "acgs_cache", id = %entry.id, "unreadable invalidation record; rejecting every older entry");
                inner.coherence.raise_floor(position.packed());
            }
        }
    }
    Ok(count)
}
