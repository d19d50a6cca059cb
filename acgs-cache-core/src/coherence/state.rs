//! What an instance knows of the invalidation log, and the check every
//! served value passes.
//!
//! Each entry (L1 or L2) carries the log position its computation started
//! at. The instance keeps, per event name, tag, function and single entry,
//! the position of the last invalidation it heard of, and rejects any entry
//! older than a matching one. Positions come from one ordering (Redis stream
//! ids, or a local counter in L1-only mode), so "older" needs no clocks.
//!
//! What is remembered, and for how long:
//! - names, tags and whole functions: for the retention (the longest TTL
//!   plus stale window), since entries in L2 may carry them that long; there
//!   is one slot per distinct name, so repeated events cost nothing more;
//! - single entries: only for the invalidation window (2 min by default).
//!   An entry invalidation also writes a tombstone over the entry's L2 key,
//!   which refuses writes of computations that started before it, and drops
//!   the entry from every instance's L1 as it is heard; what can still be
//!   stale after that is a computation in flight, and computations older
//!   than the window are not stored. Their number is capped
//!   ([`MAX_REMEMBERED_ENTRIES`]): past it, the function as a whole is
//!   invalidated instead (more recomputation, never a stale value).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use crate::coherence::function::FunctionState;
use crate::coherence::lease::Lease;
use crate::format::key::KeyDigest;
use crate::format::policy::MaxStaleness;
use crate::log_position::LogPosition;
use crate::measure::counter::Counter;
use crate::measure::latency::Latency;
use acgs_cache_grammar::pattern_matches;

/// The most single-entry invalidations an instance remembers at once (about
/// 80 bytes each: 8 MB at most); past it, a new one invalidates its whole
/// function instead.
pub(crate) const MAX_REMEMBERED_ENTRIES: usize = 100_000;

/// One record of the invalidation log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Record {
    /// An event or tag name: drops entries of functions whose patterns match
    /// it and entries tagged with exactly it.
    Name(String),
    /// Every entry of one function (`service:function`).
    Function(String),
    /// One entry of one function (`service:function`), written by the
    /// instance with identity `identity` (an instance of another build,
    /// whose identity differs, tombstones its own key for it).
    Entry {
        scope: String,
        identity: u64,
        digest: KeyDigest,
    },
    /// Everything before it: what an overflowing recovery queue sends.
    All,
}

/// The functions an entry record reaches in this instance: their L1 copies
/// are dropped, and keys of other identities tombstoned.
#[derive(Debug)]
pub(crate) struct EntryTargets {
    pub(crate) identity: u64,
    pub(crate) digest: KeyDigest,
    pub(crate) functions: Vec<Arc<FunctionState>>,
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
    /// (scope, digest) → (position, when it was heard in Unix ms).
    entries: HashMap<(u64, KeyDigest), (u64, u64)>,
    /// Warmers collecting the entry records heard while they run.
    watchers: Vec<std::sync::Weak<Mutex<Vec<WatchedEntry>>>>,
}

/// An entry record a warmer saw while it ran.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchedEntry {
    pub(crate) scope: u64,
    pub(crate) digest: KeyDigest,
    pub(crate) position: u64,
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
    ever_listened: AtomicBool,
    listening_changed: tokio::sync::watch::Sender<bool>,
    /// Why the tailer's last attempt to reach the log failed, while it
    /// fails: calls then do not wait for it (a refused connection will not
    /// be heard in a moment).
    unreachable: std::sync::Mutex<Option<String>>,
    /// Woken at each failed attempt, for the calls waiting for the log.
    attempt_failed: tokio::sync::Notify,
    heard: RwLock<Heard>,
    pub(crate) sent: Counter,
    pub(crate) received: Counter,
    /// Entry invalidations that found the memory full and invalidated their
    /// whole function instead.
    pub(crate) entry_overflows: Counter,
    /// Catch-ups that loaded the log's state instead of reading records.
    pub(crate) state_loads: Counter,
    /// How long single-entry invalidations are remembered.
    entry_window: Duration,
    /// Accept every entry (see `CacheBuilder::unprotected_for_coherence_reports`):
    /// only so that a coherence report can show what the check prevents.
    checks_disabled: bool,
    last_prune_ms: AtomicU64,
    /// Propagation delays of the invalidations heard.
    lags: Latency,
    /// How recently the whole log was known heard (see `lease.rs`).
    pub(crate) lease: Lease,
    /// The shortest lease in use (nanoseconds): the cache's, or a
    /// registered function's. The tailer renews every quarter of it.
    shortest_lease_ns: AtomicU64,
    /// The longest (0: none yet): once that long has passed since an
    /// invalidation, none of this instance's lease-bound functions serves
    /// what it invalidated.
    longest_lease_ns: AtomicU64,
    /// Whether a function (or the cache) opted out of the lease (`l1_ttl`).
    opted_out: AtomicBool,
    /// Woken when the tailer has applied records (the fleet acknowledgement
    /// publisher waits on it).
    pub(crate) heard_more: Arc<tokio::sync::Notify>,
}

/// The longest a quiet log's blocking read waits: also how often the
/// tailer checks the log's generation when no function uses a lease.
const LONGEST_RENEWAL: Duration = Duration::from_millis(500);
/// The shortest: a lease of 20 ms (the least accepted) renews every 5 ms.
const SHORTEST_RENEWAL: Duration = Duration::from_millis(5);

impl Coherence {
    /// The coherence state of an instance whose log is in Redis (`remote`)
    /// or local; `max_staleness` is the cache's default lease.
    pub(crate) fn new(
        remote: bool,
        max_staleness: MaxStaleness,
        entry_window: Duration,
        checks_disabled: bool,
    ) -> Self {
        let listening = !remote;
        let shortest = max_staleness.as_lease().map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        });
        Coherence {
            lease: Lease::new(remote),
            shortest_lease_ns: AtomicU64::new(shortest),
            longest_lease_ns: AtomicU64::new(if shortest == u64::MAX { 0 } else { shortest }),
            opted_out: AtomicBool::new(max_staleness.as_lease().is_none()),
            heard_more: Arc::default(),
            head: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            listening: AtomicBool::new(listening),
            ever_listened: AtomicBool::new(listening),
            listening_changed: tokio::sync::watch::Sender::new(listening),
            unreachable: std::sync::Mutex::new(None),
            attempt_failed: tokio::sync::Notify::new(),
            heard: RwLock::new(Heard::default()),
            sent: Counter::default(),
            received: Counter::default(),
            entry_overflows: Counter::default(),
            state_loads: Counter::default(),
            entry_window,
            checks_disabled,
            last_prune_ms: AtomicU64::new(0),
            lags: Latency::default(),
        }
    }

    /// A position after every one heard, for an invalidation only this
    /// instance applies because Redis cannot be reached. It follows the last
    /// Redis id heard, never the local clock: a clock ahead of the server's
    /// would let entries started before later events look newer than them.
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
    pub(crate) fn has_listened(&self) -> bool {
        self.ever_listened.load(Ordering::Acquire)
    }

    pub(crate) fn set_listening(&self, listening: bool) {
        if listening {
            self.ever_listened.store(true, Ordering::Release);
        }
        if self.listening.swap(listening, Ordering::AcqRel) != listening {
            self.listening_changed.send_replace(listening);
        }
    }

    /// Records a failed attempt of the tailer to reach the log, and wakes
    /// the calls waiting for it. Returns the cause it replaced, if any: the
    /// state (and its log line) changes only when the cause does.
    pub(crate) fn note_unreachable(&self, cause: String) -> Option<String> {
        let before = self
            .unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(cause);
        self.attempt_failed.notify_waiters();
        before
    }

    /// Records that the tailer reaches the log; whether it did not before.
    pub(crate) fn note_reachable(&self) -> bool {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// Whether the tailer's attempts to reach the log fail (no copy of the
    /// cause: asked on every call that goes past L1).
    pub(crate) fn is_unreachable(&self) -> bool {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Why the log cannot be reached, while the tailer's attempts fail.
    pub(crate) fn unreachable_cause(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `wait` (a wait for the log), giving up as soon as an attempt of
    /// the tailer to reach it fails: `false` then.
    pub(crate) async fn unless_unreachable(
        &self,
        wait: impl std::future::Future<Output = bool>,
    ) -> bool {
        let failed = self.attempt_failed.notified();
        tokio::pin!(failed);
        failed.as_mut().enable();
        if self.is_unreachable() {
            return false;
        }
        tokio::select! {
            heard = wait => heard,
            () = failed => false,
        }
    }

    /// Waits until this instance has heard the log up to `position`, at most
    /// `timeout`; whether it did.
    pub(crate) async fn wait_heard(&self, position: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.head() < position || !self.is_listening() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Waits until the instance hears the log, at most `timeout`.
    pub(crate) async fn wait_listening(&self, timeout: Duration) -> bool {
        if self.is_listening() {
            return true;
        }
        let mut changes = self.listening_changed.subscribe();
        tokio::time::timeout(timeout, changes.wait_for(|listening| *listening))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub(crate) fn raise_floor(&self, position: u64) {
        self.floor.fetch_max(position, Ordering::AcqRel);
        self.head.fetch_max(position, Ordering::AcqRel);
    }

    /// Raises the head to `position` (the log's last id after a catch-up
    /// from its state: computations starting now are at least that recent).
    pub(crate) fn raise_head(&self, position: u64) {
        self.head.fetch_max(position, Ordering::AcqRel);
    }

    /// Applies one record heard at `position` (idempotent: the sender applies
    /// its own records at once and hears them again from the log). For an
    /// entry record, returns the functions it reaches: the caller drops
    /// their L1 copies (and tombstones keys of other identities).
    pub(crate) fn apply(&self, position: u64, record: &Record) -> Option<EntryTargets> {
        let mut heard = self.heard.write().unwrap_or_else(|p| p.into_inner());
        let heard = &mut *heard;
        let functions = &heard.registered;
        let mut targets = None;
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
            Record::Entry {
                scope,
                identity,
                digest,
            } => {
                let scope = scope_hash(scope);
                let reached: Vec<_> = functions
                    .iter()
                    .filter(|f| f.scope == scope)
                    .cloned()
                    .collect();
                let known = heard.entries.contains_key(&(scope, *digest));
                if !known && heard.entries.len() >= MAX_REMEMBERED_ENTRIES {
                    // Memory is bounded: invalidate the whole function instead.
                    self.entry_overflows.inc();
                    raise(heard.functions.entry(scope).or_default(), position);
                    for f in &reached {
                        f.invalidated_at.fetch_max(position, Ordering::AcqRel);
                    }
                } else {
                    let slot = heard.entries.entry((scope, *digest)).or_insert((0, 0));
                    raise(&mut slot.0, position);
                    slot.1 = crate::clock::unix_ms(std::time::SystemTime::now());
                    for f in &reached {
                        f.has_entry_invalidations.store(true, Ordering::Release);
                    }
                }
                heard.watchers.retain(|w| match w.upgrade() {
                    Some(watch) => {
                        watch
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(WatchedEntry {
                                scope,
                                digest: *digest,
                                position,
                            });
                        true
                    }
                    None => false,
                });
                targets = Some(EntryTargets {
                    identity: *identity,
                    digest: *digest,
                    functions: reached,
                });
            }
            Record::All => {
                self.floor.fetch_max(position, Ordering::AcqRel);
            }
        }
        // Raised while the map is locked, so a computation that reads the new
        // head also finds the record in the map.
        self.head.fetch_max(position, Ordering::AcqRel);
        targets
    }

    /// Starts collecting the entry records heard from now on (for a warmer,
    /// which repairs the keys they name once it is done).
    pub(crate) fn watch_entries(&self) -> Arc<Mutex<Vec<WatchedEntry>>> {
        let watch = Arc::new(Mutex::new(Vec::new()));
        self.heard
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .watchers
            .push(Arc::downgrade(&watch));
        watch
    }

    /// The registered functions whose scope hash is `scope`.
    pub(crate) fn functions_of_scope(&self, scope: u64) -> Vec<Arc<FunctionState>> {
        self.heard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .registered
            .iter()
            .filter(|f| f.scope == scope)
            .cloned()
            .collect()
    }

    /// The shortest lease in use, if any function (or the cache) uses one.
    pub(crate) fn shortest_lease(&self) -> Option<Duration> {
        match self.shortest_lease_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// The longest lease in use, if any, and whether anything opted out.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the heard-position publisher reads it
    pub(crate) fn lease_bounds(&self) -> (Option<Duration>, bool) {
        let longest = match self.longest_lease_ns.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        };
        (longest, self.opted_out.load(Ordering::Relaxed))
    }

    /// How long the tailer's read of a quiet log blocks: a quarter of the
    /// shortest lease in use, so that a lease is renewed at least three
    /// times before it runs out (between 5 and 500 ms).
    pub(crate) fn renewal_interval(&self) -> Duration {
        Duration::from_nanos(self.shortest_lease_ns.load(Ordering::Relaxed) / 4)
            .clamp(SHORTEST_RENEWAL, LONGEST_RENEWAL)
    }

    /// Registers a function: it starts with the thresholds of what was heard
    /// before its first call.
    pub(crate) fn register(&self, function: Arc<FunctionState>) {
        match function.max_staleness.as_lease() {
            Some(lease) => {
                let nanos = u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX);
                self.shortest_lease_ns.fetch_min(nanos, Ordering::Relaxed);
                self.longest_lease_ns.fetch_max(nanos, Ordering::Relaxed);
            }
            None => self.opted_out.store(true, Ordering::Relaxed),
        }
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
            return self.checks_disabled;
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
                .is_some_and(|(at, _)| position < *at);
        !(tagged_after || entry_after) || self.checks_disabled
    }

    /// Forgets invalidations older than the retention (names, tags,
    /// functions) and single-entry ones older than the invalidation window,
    /// at most once per `min(window, 60 s)`.
    pub(crate) fn maybe_prune(&self, retention: Duration, now_ms: u64) {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let window_ms = u64::try_from(self.entry_window.as_millis()).unwrap_or(u64::MAX);
        let every_ms = retention_ms.min(window_ms).min(60_000) / 2;
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
        let mut heard = self.heard.write().unwrap_or_else(|p| p.into_inner());
        let horizon = horizon.packed();
        heard.names.retain(|_, at| *at >= horizon);
        heard.tags.retain(|_, at| *at >= horizon);
        heard.functions.retain(|_, at| *at >= horizon);
        let forget_before = now_ms.saturating_sub(window_ms);
        heard
            .entries
            .retain(|_, (_, heard_ms)| *heard_ms >= forget_before);
        // A function with no entry invalidation left skips the lookup again.
        let scopes: std::collections::HashSet<u64> =
            heard.entries.keys().map(|(scope, _)| *scope).collect();
        for f in &heard.registered {
            if !scopes.contains(&f.scope) {
                f.has_entry_invalidations.store(false, Ordering::Release);
            }
        }
    }

    /// Number of remembered invalidations (names, functions, entries).
    pub(crate) fn remembered(&self) -> usize {
        let heard = self.heard.read().unwrap_or_else(|p| p.into_inner());
        heard.names.len() + heard.functions.len() + heard.entries.len()
    }

    pub(crate) fn record_lag(&self, lag: Duration) {
        self.lags.record(lag, 1);
    }

    /// Every propagation delay measured, in cumulative buckets (the fine
    /// ones: a fleet's percentiles are read from their sum).
    pub(crate) fn lag_histogram(&self) -> crate::measure::latency::LatencyHistogram {
        self.lags.fine_histogram()
    }

    /// (p50, p99) of recent propagation delays in µs, if any were measured.
    pub(crate) fn lag_percentiles(&self) -> Option<(u64, u64)> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.lags
            .percentiles()
            .map(|[p50, _, p99]| (micros(p50), micros(p99)))
    }
}

fn raise(slot: &mut u64, position: u64) {
    *slot = (*slot).max(position);
}

/// The position as an envelope field.
pub(crate) fn unpack(position: u64) -> LogPosition {
    LogPosition::from_packed(position)
}
