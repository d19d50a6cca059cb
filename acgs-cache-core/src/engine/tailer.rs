//! The instance's side of the invalidation log: the tailer that hears it
//! (catching up after a start or an outage) and renews the instance's lease
//! on it, and the appends of this instance's own invalidations, replayed
//! after an outage. The log itself — keys, records, scripts, generations —
//! is `log.rs`; the lease, `lease.rs`.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::clock::{self, unix_ms};
use crate::coherence::log::{now_us, AppendSettings, LogKeys};
use crate::coherence::log_script;
use crate::coherence::state::Record;
use crate::engine::instance::Inner;
use crate::error::Error;
use crate::log_position::{tombstone, tombstone_everything, LogPosition};
use crate::tiers::l2::{L2Tier, RedisConnection};

/// Records read per `XREAD`.
const BATCH: usize = 512;
/// Records read back after a reconnection before loading the state instead.
const MAX_CATCH_UP_RECORDS: usize = 20 * BATCH;
/// A read that comes back this much later than its block asked (the
/// process was paused, the network stalled) is followed at once by a read
/// that does not block, so that the lease is renewed in one round trip.
const LATE: Duration = Duration::from_millis(50);
/// How long past its block a read may stay unanswered before its connection
/// is given up (a partition that left it open, a server that stopped): at
/// least this, at most the block again.
const SILENCE: Duration = Duration::from_millis(250);

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

/// The cache's Redis as logs show it (no credentials).
fn redis_shown(inner: &Inner) -> String {
    inner
        .config()
        .l2
        .as_ref()
        .map_or_else(String::new, crate::tiers::l2::L2Settings::shown)
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
                let coherence = inner.coherence();
                let redis = redis_shown(&inner);
                // "Unavailable" (the circuit open) follows from the failure
                // before it: that one stays the cause.
                let cause = match (&e, coherence.unreachable_cause()) {
                    (Error::Unavailable(_), Some(cause)) => cause,
                    _ => e.to_string(),
                };
                let before = coherence.note_unreachable(cause.clone());
                if coherence.is_listening() {
                    tracing::warn!(target: "acgs_cache", %redis, error = %e, "lost the invalidation log; catching up when redis answers");
                } else if before.as_deref() != Some(cause.as_str()) {
                    // Once per cause, not once per attempt.
                    tracing::warn!(target: "acgs_cache", %redis, error = %cause, "redis unreachable: L1 only until it answers (entries computed here, none shared)");
                } else {
                    tracing::debug!(target: "acgs_cache", error = %e, "invalidation log still unreachable");
                }
                coherence.set_listening(false);
            }
        }
        tokio::time::sleep(backoff).await;
        // Capped low: after an outage or a failover, entries are served
        // from L2 only once the log is heard again.
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Catches up, then follows new records, renewing the lease with every read
/// that reaches the end of the log it follows: records that follow on from
/// the cursor in the generation followed (see `follows_on`), or nothing,
/// with the generation checked after. Returns `Ok` when the cache is gone,
/// `Err` when the connection fails or stops answering.
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
        catch_up(&inner, l2, &mut conn, &keys, state, false).await?;
        inner.coherence().set_listening(true);
        if inner.coherence().note_reachable() {
            tracing::info!(target: "acgs_cache", redis = %redis_shown(&inner), "redis answers: L1 + L2, invalidations heard");
        }
        tracing::debug!(target: "acgs_cache", cursor = %state.cursor, "invalidation log caught up");
        replay(&inner).await;
        (conn, keys)
    };
    // A catch-up's reads checked the generation before them: the first read
    // after one does not block, and renews the lease in one round trip.
    let mut urgent = true;
    loop {
        // Held across the read: a dropped cache ends the task within a block.
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let Some(l2) = inner.l2() else {
            return Ok(());
        };
        let coherence = inner.coherence();
        let block = if urgent {
            Duration::ZERO
        } else {
            coherence.renewal_interval()
        };
        let from = state.cursor;
        let block_ms = (!urgent).then(|| u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
        let sent = clock::now();
        let read = log_script::read_log(&mut conn, &keys, from, BATCH, block_ms);
        let patience = block + block.max(SILENCE);
        let entries = tokio::time::timeout(patience, read)
            .await
            .map_err(|_| Error::Timeout(patience))??;
        let chained = follows_on(&entries, from, state.epoch.as_deref());
        let read = apply(&inner, entries, &mut state.cursor, true).await;
        if read == 0 || !chained {
            // Nothing came (or records that do not say they follow on from
            // the cursor): is this still the log being followed, with nothing
            // trimmed past the cursor? Asked after the read, so the answer
            // covers it. A generation is never reused.
            let head = LogPosition::from_packed(coherence.head());
            let synced = log_script::sync(&mut conn, &keys, head, false).await?;
            let trimmed = synced.max_deleted.is_some_and(|deleted| deleted > from);
            if state.epoch.as_deref() != Some(synced.epoch.as_str()) || trimmed {
                // The lease is renewed only once this instance is back in sync.
                catch_up(&inner, l2, &mut conn, &keys, state, trimmed).await?;
                replay(&inner).await;
                urgent = true;
                continue;
            }
        }
        if read < BATCH {
            coherence.lease.renew(sent);
        }
        urgent = read >= BATCH || clock::now().saturating_since(sent) > block + LATE;
        if inner.recovery().len() > 0 {
            // Redis answers again (this read did): send what was kept.
            replay(&inner).await;
        }
        let now_ms = unix_ms(SystemTime::now());
        coherence.maybe_prune(inner.config().retention, now_ms);
    }
}

/// Brings this instance up to the log: reads what it missed, or, when that
/// is not possible or too long (a new instance, a new generation, records
/// trimmed — `trimmed`, or seen here —, a long absence), loads the log's
/// state instead.
async fn catch_up(
    inner: &Arc<Inner>,
    l2: &Arc<L2Tier>,
    conn: &mut RedisConnection,
    keys: &LogKeys,
    state: &mut TailState,
    trimmed: bool,
) -> Result<(), Error> {
    let coherence = &inner.coherence();
    l2.decide_confirmation(conn).await;
    let head = LogPosition::from_packed(coherence.head());
    let synced = log_script::sync(conn, keys, head, false).await?;
    let same_generation = state.epoch.as_deref() == Some(synced.epoch.as_str());
    let trimmed = trimmed
        || synced
            .max_deleted
            .is_some_and(|deleted| deleted > state.cursor)
        || (synced.first.is_some_and(|first| state.cursor < first) && state.cursor < synced.last);
    if same_generation && !trimmed {
        let mut read = 0;
        loop {
            let entries = log_script::read_log(conn, keys, state.cursor, BATCH, None).await?;
            let n = apply(inner, entries, &mut state.cursor, false).await;
            read += n;
            if n < BATCH {
                return Ok(());
            }
            if read >= MAX_CATCH_UP_RECORDS {
                break; // a long absence: the state is quicker
            }
        }
    }
    let synced = log_script::sync(conn, keys, head, true).await?;
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

/// Whether `entries`, read after `cursor`, continue the log generation
/// `epoch` from there: each was appended to it and names the one before it
/// (the first, `cursor`). Then nothing between them was missed.
fn follows_on(
    entries: &[crate::coherence::log::LogEntry],
    cursor: LogPosition,
    epoch: Option<&str>,
) -> bool {
    let mut previous = cursor;
    entries.iter().all(|entry| {
        let linked = entry.previous == Some(previous) && entry.generation.as_deref() == epoch;
        previous = entry.position.unwrap_or_default();
        linked && entry.position.is_some()
    })
}

/// Applies records read after `cursor`, moving it past them; returns how
/// many there were. `live`: read as they came (their delays measure
/// propagation), not read back after a start or a disconnection.
async fn apply(
    inner: &Arc<Inner>,
    entries: Vec<crate::coherence::log::LogEntry>,
    cursor: &mut LogPosition,
    live: bool,
) -> usize {
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
                if let (Some(sent), true) = (sent_us, live) {
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
    if count > 0 {
        inner.coherence().heard_more.notify_one();
    }
    count
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
            log_script::tombstone(l2, key, &tombstone_everything(), hold).await?;
            let position = log_script::append(l2, &keys, record, head, &[], settings).await?;
            log_script::tombstone(l2, key, &tombstone(position), hold).await?;
            Ok(position)
        }
        Some(key) => log_script::append(l2, &keys, record, head, &[key.to_owned()], settings).await,
        None => log_script::append(l2, &keys, record, head, &[], settings).await,
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
