//! The instance's side of the invalidation log: the tailer that hears it
//! (catching up after a start or an outage), and the appends of this
//! instance's own invalidations, replayed after an outage. The log itself —
//! keys, records, scripts, generations — is `log.rs`.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::clock::unix_ms;
use crate::coherence::log::{now_us, AppendSettings, LogKeys};
use crate::coherence::state::Record;
use crate::engine::instance::Inner;
use crate::error::Error;
use crate::format::log_position::{tombstone, tombstone_everything, LogPosition};
use crate::tiers::l2::{L2Tier, RedisConnection};

/// Records read per `XREAD`.
const BATCH: usize = 512;
/// Records read back after a reconnection before loading the state instead.
const MAX_CATCH_UP_RECORDS: usize = 20 * BATCH;
/// How long one `XREAD` waits for new records (below the connection's 1 s
/// response timeout); each wait that ends empty also checks the generation.
const BLOCK_MS: u64 = 500;

/// Starts tailing the log of `inner` (which has L2), on the process's
/// background runtime: the log must stay heard whichever runtime called
/// first. Called once, when the cache is built.
pub(crate) fn start_tailer(inner: &Arc<Inner>) {
    crate::background::spawn(tail(Arc::downgrade(inner)));
}

/// Where this instance stands in the log.
#[derive(Debug, Default)]
struct TailState {
    cursor: LogPosition,
    /// The generation last read (`None` before the first read).
    epoch: Option<String>,
}

/// Tails the log until the cache is dropped.
async fn tail(weak: Weak<Inner>) {
    let mut state = TailState::default();
    let mut backoff = Duration::from_millis(50);
    loop {
        // The task holds the cache only while it works on it (never across
        // a blocking read), so that dropping the last handle ends the task
        // and frees the cache.
        match follow(&weak, &mut state).await {
            Ok(()) => return, // the cache was dropped
            Err(e) => {
                let Some(inner) = weak.upgrade() else { return };
                if inner.coherence().is_listening() {
                    tracing::warn!(target: "acgs_cache", error = %e, "lost the invalidation log; catching up when redis answers");
                } else {
                    tracing::debug!(target: "acgs_cache", error = %e, "invalidation log still unreachable");
                }
                inner.coherence().set_listening(false);
            }
        }
        tokio::time::sleep(backoff).await;
        // Capped low: after an outage or a failover, entries are served
        // from L2 only once the log is heard again.
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Catches up, then follows new records; every empty wait checks the
/// generation. Returns `Ok` when the cache is gone, `Err` when the
/// connection fails.
async fn follow(weak: &Weak<Inner>, state: &mut TailState) -> Result<(), Error> {
    let (mut conn, keys) = {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        // Started only with L2: without it there is no log to tail.
        let Some(l2) = inner.l2() else {
            return Ok(());
        };
        let keys = LogKeys::new(&inner.config().prefix);
        let mut conn = l2.dedicated_connection().await?;
        catch_up(&inner, l2, &mut conn, &keys, state).await?;
        inner.coherence().set_listening(true);
        tracing::debug!(target: "acgs_cache", cursor = %state.cursor, "invalidation log caught up");
        replay(&inner).await;
        (conn, keys)
    };
    loop {
        // Hold the cache only while processing, so dropping it ends the task.
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let Some(l2) = inner.l2() else {
            return Ok(());
        };
        let read = read_batch(
            &inner,
            l2,
            &mut conn,
            &keys,
            &mut state.cursor,
            Some(BLOCK_MS),
        )
        .await?;
        if read == 0 {
            // Quiet: is this still the log we were reading?
            let head = LogPosition::from_packed(inner.coherence().head());
            let synced = l2.sync(&mut conn, &keys, head, false).await?;
            if state.epoch.as_deref() != Some(synced.epoch.as_str()) {
                catch_up(&inner, l2, &mut conn, &keys, state).await?;
                replay(&inner).await;
            }
        }
        if inner.recovery().len() > 0 {
            // Redis answers again (this read did): send what was kept.
            replay(&inner).await;
        }
        let now_ms = unix_ms(SystemTime::now());
        inner
            .coherence()
            .maybe_prune(inner.config().retention, now_ms);
    }
}

/// Brings this instance up to the log: reads what it missed, or, when that
/// is not possible or too long (a new instance, a new generation, records
/// trimmed, a long absence), loads the log's state instead.
async fn catch_up(
    inner: &Arc<Inner>,
    l2: &Arc<L2Tier>,
    conn: &mut RedisConnection,
    keys: &LogKeys,
    state: &mut TailState,
) -> Result<(), Error> {
    let coherence = &inner.coherence();
    l2.decide_confirmation(conn).await;
    let head = LogPosition::from_packed(coherence.head());
    let synced = l2.sync(conn, keys, head, false).await?;
    let same_generation = state.epoch.as_deref() == Some(synced.epoch.as_str());
    let trimmed =
        synced.first.is_some_and(|first| state.cursor < first) && state.cursor < synced.last;
    if same_generation && !trimmed {
        let mut read = 0;
        loop {
            let n = read_batch(inner, l2, conn, keys, &mut state.cursor, None).await?;
            read += n;
            if n < BATCH {
                return Ok(());
            }
            if read >= MAX_CATCH_UP_RECORDS {
                break; // a long absence: the state is quicker
            }
        }
    }
    let synced = l2.sync(conn, keys, head, true).await?;
    match &state.epoch {
        None => {
            // A new instance: entries from before this generation began
            // belong to a log it cannot read.
            coherence.raise_floor(synced.start.packed());
        }
        Some(epoch) if *epoch != synced.epoch => {
            tracing::warn!(target: "acgs_cache", old = %epoch, new = %synced.epoch, "the invalidation log was re-created or its server changed; every older entry is rejected");
            coherence.raise_floor((coherence.head() + 1).max(synced.start.packed()));
        }
        Some(_) => {
            tracing::info!(target: "acgs_cache", cursor = %state.cursor, "catching up from the log's state (records were trimmed, or too many to read back); L1 cleared");
        }
    }
    if state.epoch.is_some() {
        // Single-entry invalidations are not in the state: nothing in L1
        // can be vouched for.
        inner.l1().clear();
    }
    for (field, at) in &synced.state {
        let record = match field.split_once(':') {
            Some(("n", name)) => Record::Name(name.to_owned()),
            Some(("f", scope)) => Record::Function(scope.to_owned()),
            Some(("a", _)) => Record::All,
            _ => continue,
        };
        coherence.apply(at.packed(), &record);
    }
    coherence.raise_head(synced.last.packed());
    coherence.state_loads.inc();
    state.cursor = synced.last;
    state.epoch = Some(synced.epoch);
    Ok(())
}

/// Reads and applies one batch after `cursor`; returns how many records it held.
async fn read_batch(
    inner: &Arc<Inner>,
    l2: &L2Tier,
    conn: &mut RedisConnection,
    keys: &LogKeys,
    cursor: &mut LogPosition,
    block_ms: Option<u64>,
) -> Result<usize, Error> {
    let entries = l2.read_log(conn, keys, *cursor, BATCH, block_ms).await?;
    let count = entries.len();
    let now = now_us();
    for entry in entries {
        let Some(position) = entry.position else {
            continue;
        };
        *cursor = position;
        match entry.record {
            Some((record, sent_us)) => {
                inner.apply_heard(position.packed(), &record).await;
                inner.coherence().received.inc();
                // Only records heard live measure propagation; catch-up
                // after a start or a disconnection would count the downtime.
                if let (Some(sent), Some(_)) = (sent_us, block_ms) {
                    inner
                        .coherence()
                        .record_lag(Duration::from_micros(now.saturating_sub(sent)));
                }
            }
            None => {
                // An invalidation we cannot read (a newer format, or a foreign
                // writer): assume it concerned everything.
                tracing::warn!(target: "acgs_cache", id = %entry.id, "unreadable invalidation record; rejecting every older entry");
                inner.coherence().raise_floor(position.packed());
            }
        }
    }
    Ok(count)
}

/// Appends `record` to the log (tombstoning `entry_key` for an entry
/// record): in one script where the key lives on the log's node; on a
/// cluster, a tombstone that refuses every write first, the record, then
/// the record's own tombstone.
pub(crate) async fn send(
    inner: &Arc<Inner>,
    record: &Record,
    entry_key: Option<&str>,
) -> Result<LogPosition, Error> {
    let l2 = inner
        .l2()
        .ok_or(Error::Unavailable(crate::error::Unavailable::NotConfigured))?;
    let keys = LogKeys::new(&inner.config().prefix);
    let head = LogPosition::from_packed(inner.coherence().head());
    let settings = AppendSettings {
        max_len: inner.config().log_capacity,
        tombstone_for: inner.config().invalidation_window,
        confirm: l2.confirmation(),
    };
    let hold = inner.config().invalidation_window;
    match entry_key {
        Some(key) if l2.is_cluster() => {
            l2.tombstone(key, &tombstone_everything(), hold).await?;
            let position = l2.append(&keys, record, head, &[], settings).await?;
            l2.tombstone(key, &tombstone(position), hold).await?;
            Ok(position)
        }
        Some(key) => {
            l2.append(&keys, record, head, &[key.to_owned()], settings)
                .await
        }
        None => l2.append(&keys, record, head, &[], settings).await,
    }
}

/// Sends what was kept while Redis could not be reached, oldest first,
/// until the queue is empty or a send fails.
pub(crate) async fn replay(inner: &Arc<Inner>) {
    while let Some(pending) = inner.recovery().front() {
        match send(inner, &pending.record, pending.entry_key.as_deref()).await {
            Ok(position) | Err(Error::Unconfirmed { position, .. }) => {
                inner.apply_heard(position.packed(), &pending.record).await;
                inner.recovery().pop(&pending);
                inner.recovery().replayed.inc();
            }
            Err(e) => {
                tracing::debug!(target: "acgs_cache", error = %e, queued = inner.recovery().len(), "kept invalidations not sent yet");
                return;
            }
        }
    }
}
