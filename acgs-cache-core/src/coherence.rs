//! What an instance knows of the invalidation log, and the check every
//! served value passes.
//!
//! Each entry (L1 or L2) carries the log position its computation started
//! at. The instance keeps, per event name, tag, function and single entry,
//! the position of the last invalidation it heard of, and rejects any entry
//! older than a matching one. Positions come from one ordering (Redis stream
//! ids, or a local counter in L1-only mode), so "older" needs no clocks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use crate::cache::FunctionState;
use crate::grammar::pattern_matches;
use crate::key::KeyDigest;
use crate::log_position::LogPosition;
use crate::stats::Counter;

/// How many recent propagation delays are kept for percentiles.
const LAG_SAMPLES: usize = 4096;

/// What a `#[cached]` function serves from L1 while its instance cannot hear
/// invalidations (Redis unreachable, or the log not yet read after start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// Keep serving L1 entries, each for at most its L1 TTL (60 s by
    /// default): bounded staleness, no extra load while Redis is away.
    #[default]
    Bounded,
    /// Bypass L1 until the instance hears the log again: never stale, every
    /// call computes meanwhile.
    Strict,
}

/// One record of the invalidation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// An event or tag name: drops entries of functions whose patterns match
    /// it and entries tagged with exactly it.
    Name(String),
    /// Every entry of one function (`service:function`).
    Function(String),
    /// One entry of one function.
    Entry(String, KeyDigest),
}

pub(crate) fn scope_hash(scope: &str) -> u64 {
    xxh3_64(scope.as_bytes())
}

pub(crate) fn tag_hash(tag: &str) -> u64 {
    xxh3_64(tag.as_bytes())
}

/// The last position of each invalidation heard, pruned past the retention,
/// and the functions they apply to (one lock: a function registered while a
/// record is applied either sees the record or is seen by it).
#[derive(Debug, Default)]
struct Heard {
    registered: Vec<Arc<FunctionState>>,
    names: HashMap<String, u64>,
    tags: HashMap<u64, u64>,
    functions: HashMap<u64, u64>,
    entries: HashMap<(u64, KeyDigest), u64>,
}

/// Per-cache knowledge of the log.
#[derive(Debug)]
pub(crate) struct Coherence {
    /// Highest position heard (packed): what a computation starting now records.
    head: AtomicU64,
    /// Entries below this position are rejected: the instance may have missed
    /// events before it (log trimmed past what it had read).
    floor: AtomicU64,
    /// Whether the instance currently hears the log (always, in L1-only mode).
    listening: AtomicBool,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    ever_listened: AtomicBool,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    listening_changed: tokio::sync::watch::Sender<bool>,
    heard: RwLock<Heard>,
    pub(crate) sent: Counter,
    pub(crate) received: Counter,
    last_prune_ms: AtomicU64,
    lags_us: Mutex<VecDeque<u64>>,
}

impl Coherence {
    pub(crate) fn new(listening: bool) -> Self {
        Coherence {
            head: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            listening: AtomicBool::new(listening),
            ever_listened: AtomicBool::new(listening),
            listening_changed: tokio::sync::watch::Sender::new(listening),
            heard: RwLock::new(Heard::default()),
            sent: Counter::default(),
            received: Counter::default(),
            last_prune_ms: AtomicU64::new(0),
            lags_us: Mutex::new(VecDeque::with_capacity(LAG_SAMPLES)),
        }
    }

    /// A position after every one heard, for an invalidation only this
    /// instance applies because Redis cannot be reached. It follows the last
    /// Redis id heard, never the local clock: a clock ahead of the server's
    /// would let entries started before later events look newer than them.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    pub(crate) fn next_local_position(&self) -> u64 {
        self.head.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The position of an invalidation in L1-only mode, where the log is this
    /// instance's: ordered like stream ids (ms, seq) from the local clock, so
    /// the retention prunes it like the Redis log.
    pub(crate) fn next_clock_position(&self, now_ms: u64) -> u64 {
        let clock = LogPosition { ms: now_ms, seq: 0 }.packed();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let next = clock.max(head + 1);
            match self
                .head
                .compare_exchange_weak(head, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(current) => head = current,
            }
        }
    }

    /// The position a computation starting now records.
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Whether the instance has ever caught up with the log.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    pub(crate) fn has_listened(&self) -> bool {
        self.ever_listened.load(Ordering::Acquire)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    pub(crate) fn set_listening(&self, listening: bool) {
        if listening {
            self.ever_listened.store(true, Ordering::Release);
        }
        if self.listening.swap(listening, Ordering::AcqRel) != listening {
            self.listening_changed.send_replace(listening);
        }
    }

    /// Waits until the instance hears the log, at most `timeout`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    pub(crate) async fn wait_listening(&self, timeout: Duration) -> bool {
        if self.is_listening() {
            return true;
        }
        let mut changes = self.listening_changed.subscribe();
        tokio::time::timeout(timeout, changes.wait_for(|listening| *listening))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    pub(crate) fn raise_floor(&self, position: u64) {
        self.floor.fetch_max(position, Ordering::AcqRel);
        self.head.fetch_max(position, Ordering::AcqRel);
    }

    /// Applies one record heard at `position` (idempotent: the sender applies
    /// its own records at once and hears them again from the log).
    pub(crate) fn apply(&self, position: u64, record: &Record) {
        let mut heard = self.heard.write().unwrap_or_else(|p| p.into_inner());
        let heard = &mut *heard;
        let functions = &heard.registered;
        match record {
            Record::Name(name) => {
                raise(heard.names.entry(name.clone()).or_default(), position);
                raise(heard.tags.entry(tag_hash(name)).or_default(), position);
                for f in functions {
                    if f.patterns.iter().any(|p| pattern_matches(p, name)) {
                        f.invalidated_at.fetch_max(position, Ordering::AcqRel);
                    }
                }
            }
            Record::Function(scope) => {
                let scope = scope_hash(scope);
                raise(heard.functions.entry(scope).or_default(), position);
                for f in functions.iter().filter(|f| f.scope == scope) {
                    f.invalidated_at.fetch_max(position, Ordering::AcqRel);
                }
            }
            Record::Entry(scope, digest) => {
                let scope = scope_hash(scope);
                raise(heard.entries.entry((scope, *digest)).or_default(), position);
                for f in functions.iter().filter(|f| f.scope == scope) {
                    f.has_entry_invalidations.store(true, Ordering::Release);
                }
            }
        }
        // Raised while the map is locked, so a computation that reads the new
        // head also finds the record in the map.
        self.head.fetch_max(position, Ordering::AcqRel);
    }

    /// Registers a function: it starts with the thresholds of what was heard
    /// before its first call.
    pub(crate) fn register(&self, function: Arc<FunctionState>) {
        let mut heard = self.heard.write().unwrap_or_else(|p| p.into_inner());
        let by_pattern = heard
            .names
            .iter()
            .filter(|(name, _)| function.patterns.iter().any(|p| pattern_matches(p, name)))
            .map(|(_, position)| *position)
            .max()
            .unwrap_or(0);
        let by_function = heard.functions.get(&function.scope).copied().unwrap_or(0);
        function
            .invalidated_at
            .fetch_max(by_pattern.max(by_function), Ordering::AcqRel);
        if heard
            .entries
            .keys()
            .any(|(scope, _)| *scope == function.scope)
        {
            function
                .has_entry_invalidations
                .store(true, Ordering::Release);
        }
        heard.registered.push(function);
    }

    /// The registered functions, in registration order.
    pub(crate) fn functions(&self) -> Vec<Arc<FunctionState>> {
        self.heard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .registered
            .clone()
    }

    /// Whether an entry that started computing at `position`, tagged `tags`,
    /// may still be served.
    pub(crate) fn accepts(
        &self,
        function: &FunctionState,
        position: u64,
        tags: &[u64],
        digest: KeyDigest,
    ) -> bool {
        if position < self.floor.load(Ordering::Acquire)
            || position < function.invalidated_at.load(Ordering::Acquire)
        {
            return false;
        }
        let per_entry = function.has_entry_invalidations.load(Ordering::Acquire);
        if tags.is_empty() && !per_entry {
            return true;
        }
        let heard = self.heard.read().unwrap_or_else(|p| p.into_inner());
        let tagged_after = tags
            .iter()
            .any(|t| heard.tags.get(t).is_some_and(|at| position < *at));
        let entry_after = per_entry
            && heard
                .entries
                .get(&(function.scope, digest))
                .is_some_and(|at| position < *at);
        !(tagged_after || entry_after)
    }

    /// Forgets invalidations older than the retention, at most once per
    /// `min(retention, 60 s)`. An entry that started before them has outlived
    /// every TTL the retention covers.
    pub(crate) fn maybe_prune(&self, retention: Duration, now_ms: u64) {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let every_ms = retention_ms.min(60_000);
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(every_ms)
            || self
                .last_prune_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let horizon = LogPosition {
            ms: now_ms.saturating_sub(retention_ms),
            seq: 0,
        };
        self.prune(horizon.packed());
    }

    fn prune(&self, horizon: u64) {
        let mut heard = self.heard.write().unwrap_or_else(|p| p.into_inner());
        heard.names.retain(|_, at| *at >= horizon);
        heard.tags.retain(|_, at| *at >= horizon);
        heard.functions.retain(|_, at| *at >= horizon);
        heard.entries.retain(|_, at| *at >= horizon);
    }

    /// Number of remembered invalidations (names, functions, entries).
    pub(crate) fn remembered(&self) -> usize {
        let heard = self.heard.read().unwrap_or_else(|p| p.into_inner());
        heard.names.len() + heard.functions.len() + heard.entries.len()
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis log's side
    pub(crate) fn record_lag(&self, lag: Duration) {
        let mut lags = self.lags_us.lock().unwrap_or_else(|p| p.into_inner());
        if lags.len() == LAG_SAMPLES {
            lags.pop_front();
        }
        lags.push_back(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
    }

    /// (p50, p99) of recent propagation delays in µs, if any were measured.
    pub(crate) fn lag_percentiles(&self) -> Option<(u64, u64)> {
        let mut lags: Vec<u64> = self
            .lags_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if lags.is_empty() {
            return None;
        }
        lags.sort_unstable();
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
        Some((at(0.50), at(0.99)))
    }
}

fn raise(slot: &mut u64, position: u64) {
    *slot = (*slot).max(position);
}

/// The position as an envelope field.
pub(crate) fn unpack(position: u64) -> LogPosition {
    LogPosition::from_packed(position)
}
