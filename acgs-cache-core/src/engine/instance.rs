//! One cache instance: its configuration, tiers, coherence state, flights
//! and registry of functions (`Inner`), behind [`Cache`], the cheap handle
//! that calls, warming, the toolkit and the public API share.
//!
//! The handle is defined here, below everything that uses it; its public
//! methods live with what they do (`cache.rs`: building and the figures;
//! `current.rs`: which cache a call uses; `invalidation.rs`, `health.rs`,
//! `operator.rs`, `warm.rs`, `map.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::coherence::function::{FunctionState, Registry};
use crate::coherence::log_script;
use crate::coherence::state::{Coherence, Record};
use crate::engine::flight::Flights;
use crate::format::envelope::EncodeLimits;
use crate::format::key::KeyDigest;
use crate::format::policy::{PolicyOverride, TtlPolicy};
use crate::measure::stats::{InvalidationStats, StatsSnapshot};
use crate::tiers::l1::{L1Entry, L1Key, L1Tier};
use crate::tiers::l2::{L2Settings, L2Tier};

/// A two-tier cache: L1 in process (moka), L2 shared (Redis), used by
/// `#[cached]` functions.
///
/// Cheap to clone (an `Arc`). Build one with [`Cache::builder`] or
/// [`Cache::from_env`]; `#[cached]` functions use the process default
/// ([`Cache::install_default`], or an L1-only cache configured from the
/// environment on first use), unless the attribute names an instance
/// (`cache = path`) or the call runs inside [`Cache::scope`].
///
/// ```
/// use acgs_cache_core::Cache;
///
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder()
///     .service("policy-governance")
///     .l1_max_bytes(32 * 1024 * 1024)
///     .build()?;
/// assert!(!cache.has_l2());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    id: u64,
    /// This instance's name in the fleet (its stats and the positions it
    /// heard are published under it): process id, cache number and a
    /// random part, unique across processes and across caches of one.
    instance: String,
    config: CacheConfig,
    l1: L1Tier,
    l2: Option<Arc<L2Tier>>,
    /// Function instances served so far.
    functions: RwLock<Registry>,
    coherence: Coherence,
    /// Computations in progress, for local stampede protection.
    flights: Flights,
    /// Invalidations waiting for Redis to answer again.
    recovery: crate::coherence::recovery::Recovery,
}

impl CacheConfig {
    pub(crate) fn has_l2(&self) -> bool {
        self.l2.is_some()
    }
}

#[derive(Clone)]
pub(crate) struct CacheConfig {
    pub(crate) prefix: String,
    pub(crate) service: String,
    pub(crate) l1_enabled: bool,
    pub(crate) l1_max_bytes: u64,
    pub(crate) limits: EncodeLimits,
    pub(crate) overrides: HashMap<String, PolicyOverride>,
    /// How long name, tag and function invalidations are remembered: at
    /// least the longest TTL plus stale window in use.
    pub(crate) retention: Duration,
    /// How long single-entry invalidations are remembered, tombstones hold,
    /// and the longest computation that is still stored.
    pub(crate) invalidation_window: Duration,
    /// The most records the Redis log keeps.
    pub(crate) log_capacity: usize,
    /// Lease of the fleet-wide miss lock; also the longest a miss waits for
    /// another instance's value.
    pub(crate) lock_lease: Duration,
    /// Whether a miss returns before its L2 write is acknowledged.
    pub(crate) background_l2_writes: bool,
    /// How often the counters are published through `metrics` (`None`: never).
    pub(crate) metrics_interval: Option<Duration>,
    /// Whether `#[cached]` calls use the cache at all (see
    /// `CacheBuilder::disable_caching`).
    pub(crate) caching: bool,
    /// How stale an entry may be served, for functions and policies that
    /// do not say (see `MaxStaleness`).
    pub(crate) max_staleness: crate::format::policy::MaxStaleness,
    /// L2's settings, when the cache has L2.
    pub(crate) l2: Option<L2Settings>,
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

impl Inner {
    pub(crate) fn new(config: CacheConfig, l2: Option<Arc<L2Tier>>, unprotected: bool) -> Self {
        let id = NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed);
        // The random part keeps a recycled process id from taking over
        // another instance's name while its records expire.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Inner {
            id,
            instance: format!("{}-{id}-{nanos:08x}", std::process::id()),
            l1: L1Tier::new(config.l1_max_bytes),
            l2,
            // Without L2 the log is local: the instance always hears it.
            coherence: Coherence::new(
                config.has_l2(),
                config.max_staleness,
                config.invalidation_window,
                unprotected,
            ),
            flights: Flights::default(),
            recovery: crate::coherence::recovery::Recovery::default(),
            config,
            functions: RwLock::new(Registry::default()),
        }
    }

    /// The policy `compiled` with this cache's run-time override applied.
    pub(crate) fn effective_policy(&self, compiled: &TtlPolicy) -> TtlPolicy {
        match self.config.overrides.get(compiled.name()) {
            Some(o) => compiled.overridden(o),
            None => *compiled,
        }
    }

    /// A snapshot of every function's counters and of L1's size.
    pub(crate) fn stats(&self) -> StatsSnapshot {
        let (l1_entries, l1_bytes) = self.l1.usage();
        let coherence = &self.coherence;
        let functions = coherence
            .functions()
            .iter()
            .map(|f| {
                f.counters.snapshot(
                    Cow::Owned(f.name.to_string()),
                    f.policy.name(),
                    f.max_staleness.as_lease(),
                )
            })
            .collect();
        let lag = coherence.lag_percentiles();
        let l2 = self.l2.as_ref();
        let (l2_circuit_open, l2_circuit_trips) = l2.map_or((false, 0), |l2| l2.circuit());
        let l2_pool = l2.map(|l2| l2.pool_stats());
        let l2_latency_ns = l2
            .and_then(|l2| l2.latency().percentiles())
            .map(|ps| ps.map(|p| u64::try_from(p.as_nanos()).unwrap_or(u64::MAX)));
        StatsSnapshot {
            functions,
            l1_entries,
            l1_bytes,
            l2_circuit_open,
            l2_circuit_trips,
            l2_pool,
            l2_latency_ns,
            invalidations: InvalidationStats {
                sent: coherence.sent.get(),
                received: coherence.received.get(),
                remembered: coherence.remembered() as u64,
                listening: coherence.is_listening(),
                propagation_p50_us: lag.map(|l| l.0),
                propagation_p99_us: lag.map(|l| l.1),
                queued: self.recovery.len() as u64,
                replayed: self.recovery.replayed.get(),
                dropped: self.recovery.dropped.get(),
                state_loads: coherence.state_loads.get(),
                entry_overflows: coherence.entry_overflows.get(),
                heard_position: crate::coherence::state::unpack(coherence.head()),
                lease_age_us: coherence
                    .lease
                    .age()
                    .map(|age| u64::try_from(age.as_micros()).unwrap_or(u64::MAX)),
                max_staleness_ms: self
                    .config
                    .max_staleness
                    .as_lease()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                lease_renewals: coherence.lease.renewals.get(),
                propagation_histogram: coherence.lag_histogram(),
            },
        }
    }

    /// This instance's number in the process (call sites remember the
    /// first cache they resolved in by it).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// This instance's name in the fleet.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub(crate) fn l1(&self) -> &L1Tier {
        &self.l1
    }

    /// L2, when the cache has one.
    pub(crate) fn l2(&self) -> Option<&Arc<L2Tier>> {
        self.l2.as_ref()
    }

    /// What this instance has heard of the invalidation log.
    pub(crate) fn coherence(&self) -> &Coherence {
        &self.coherence
    }

    /// Computations in progress (local stampede protection).
    pub(crate) fn flights(&self) -> &Flights {
        &self.flights
    }

    /// Invalidations waiting for Redis to answer again.
    pub(crate) fn recovery(&self) -> &crate::coherence::recovery::Recovery {
        &self.recovery
    }

    /// The function instance registered under `address` (a call site and
    /// the probe of its instance), if any.
    pub(crate) fn function_at(&self, address: (usize, usize, usize)) -> Option<Arc<FunctionState>> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_probe
            .get(&address)
            .cloned()
    }

    /// The function instance `identity` names (made by `make` and registered
    /// with coherence on first use), now also found under `address`.
    /// The state of the function instance `identity`, made by `make` with
    /// its name the first time. Two instances that claim one `name` (two
    /// functions given the same `name = "…"`, two maps of one name) would
    /// share a stats row, metric labels and function invalidations: the
    /// second is refused the name — it gets `name#<identity>` — and the
    /// conflict is logged at ERROR.
    pub(crate) fn register_function(
        &self,
        address: (usize, usize, usize),
        identity: u64,
        name: Arc<str>,
        make: impl FnOnce(Arc<str>) -> FunctionState,
    ) -> Arc<FunctionState> {
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let state = match functions.by_identity.get(&identity) {
            Some(state) => Arc::clone(state),
            None => {
                let taken = functions.by_identity.values().any(|f| f.name == name);
                let name = if taken {
                    let own: Arc<str> = Arc::from(format!("{name}#{:08x}", identity >> 32));
                    tracing::error!(
                        target: "acgs_cache",
                        function = %name,
                        shown_as = %own,
                        "two cached functions (or maps) claim the name `{name}`: give one of them another `name = \"…\"`; until then the second is shown as `{own}` in stats, metrics and keys"
                    );
                    own
                } else {
                    name
                };
                let state = Arc::new(make(name));
                self.coherence.register(Arc::clone(&state));
                functions.by_identity.insert(identity, Arc::clone(&state));
                state
            }
        };
        functions.by_probe.insert(address, Arc::clone(&state));
        state
    }

    /// Puts `entry` in L1 as `function`'s entry for `digest` unless an
    /// invalidation it answers to (`tags`, or the function, or the entry)
    /// came after its position. Checked after the insert: an invalidation
    /// heard meanwhile is either seen here, or removes the entry when it is
    /// applied. The one way values reach L1 (calls, refreshes, put values,
    /// warming).
    pub(crate) fn fill_l1(
        &self,
        function: &FunctionState,
        digest: KeyDigest,
        entry: L1Entry,
        tags: &[u64],
    ) {
        let key = L1Key::new(function.identity, digest);
        let position = entry.position;
        self.l1.insert(key, entry);
        if !self.coherence.accepts(function, position, tags, digest) {
            self.l1.remove(&key);
        }
    }

    /// `service:function`, the scope of a function's invalidations.
    pub(crate) fn function_scope(&self, function: &str) -> String {
        format!("{}:{function}", self.config.service)
    }
}

impl Inner {
    /// Applies a record heard at `position` (or sent from here): the coherence
    /// state, then the L1 copies of the entry it names, and the L2 key of an
    /// instance of this function with another identity (another build), which
    /// its writer's tombstone did not cover.
    pub(crate) async fn apply_heard(&self, position: u64, record: &Record) {
        let Some(targets) = self.coherence.apply(position, record) else {
            return;
        };
        for function in &targets.functions {
            let key = L1Key::new(function.identity, targets.digest);
            self.l1.remove(&key);
            if function.identity != targets.identity {
                if let Some(l2) = &self.l2 {
                    let key = crate::format::key::redis_key(&function.key_prefix, targets.digest);
                    let stone = crate::log_position::tombstone(
                        crate::log_position::LogPosition::from_packed(position),
                    );
                    let (l2, hold) = (Arc::clone(l2), self.config.invalidation_window);
                    crate::background::spawn(async move {
                        if let Err(e) = log_script::tombstone(&l2, &key, &stone, hold).await {
                            tracing::debug!(target: "acgs_cache", error = %e, "tombstone for another build's entry not written");
                        }
                    });
                }
            }
        }
    }
}

/// A cache reached through a `'static` reference, a borrow (a scoped cache,
/// for the synchronous start of a call) or an owned handle.
pub(crate) enum CacheRef<'a> {
    Static(&'static Cache),
    Borrowed(&'a Cache),
    Owned(Cache),
}

impl CacheRef<'_> {
    /// The same cache, kept past the borrow: a borrowed handle is cloned
    /// (what a call past L1 pays, so that a hit does not).
    pub(crate) fn into_owned(self) -> CacheRef<'static> {
        match self {
            CacheRef::Static(c) => CacheRef::Static(c),
            CacheRef::Borrowed(c) => CacheRef::Owned(c.clone()),
            CacheRef::Owned(c) => CacheRef::Owned(c),
        }
    }
}

impl std::ops::Deref for CacheRef<'_> {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        match self {
            CacheRef::Static(c) => c,
            CacheRef::Borrowed(c) => c,
            CacheRef::Owned(c) => c,
        }
    }
}
