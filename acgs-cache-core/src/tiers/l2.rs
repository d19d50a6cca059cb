//! L2: the shared tier (Redis through a deadpool-redis pool of the
//! configured topology: one server, a Sentinel-named master or a Cluster).
//!
//! deadpool-redis 0.23 sends `UNWATCH` + `PING` on every `pool.get()`, which
//! would double the cost of a hit. Its connections (multiplexed, or a
//! cluster's) are built to be
//! shared by any number of concurrent requests, so the hot path keeps one
//! checked-out connection (the *lane*) and clones its handle per request: a
//! hit costs exactly one round trip. The pool stays the factory of
//! connections (and their configuration); when a lane's connection breaks it
//! is taken out of the pool and the next request checks out a fresh one.
//! While Redis cannot be reached, reconnect attempts are spaced out so that
//! calls do not each pay a connect timeout.
//!
//! **One lane per calling runtime.** redis-rs drives a connection from a
//! task spawned on the runtime that made it: when that runtime ends (each
//! `#[tokio::test]` has its own), the connection is dead for every caller.
//! So each runtime that calls gets a lane of its own, made on it, and a
//! lane whose runtime has ended is dropped. Connections that outlive any
//! caller (the log tailer's, confirmed invalidations', large values') are
//! made on the cache's own runtime (`background.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::tiers::breaker::Breaker;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Unavailable};
use crate::tiers::connection::{Checkout, PoolSettings, Pools};
use crate::tiers::reads::{head_read, ReadBatcher};
use crate::tiers::topology::RedisConfig;

pub(crate) use crate::tiers::connection::RedisConnection;
pub(crate) use crate::tiers::l2_types::{BulkEntry, Fetched};
pub(crate) use crate::tiers::lock::LockGuard;

/// Settings of the L2 tier.
#[derive(Clone)]
pub(crate) struct L2Settings {
    pub(crate) redis: RedisConfig,
    pub(crate) soft_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_backoff: Duration,
    pub(crate) pool_size: usize,
    /// Connections per calling runtime, each task's requests on one of them
    /// (at most `pool_size`).
    pub(crate) lanes: usize,
    /// Consecutive failures that open the breaker.
    pub(crate) breaker_threshold: u32,
    pub(crate) confirm: ConfirmInvalidations,
    /// Pause between the open breaker's probes.
    pub(crate) probe_interval: Duration,
}

impl L2Settings {
    /// The Redis these settings name, as logs show it (no credentials).
    pub(crate) fn shown(&self) -> String {
        self.redis.to_string()
    }

    /// The response timeout of connections other than the lane (the log
    /// tailer's blocking reads stay well under it).
    fn other_timeout(&self) -> Duration {
        self.soft_timeout.max(Duration::from_secs(1))
    }
}

impl std::fmt::Debug for L2Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Settings")
            .field("redis", &self.redis)
            .field("soft_timeout", &self.soft_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("pool_size", &self.pool_size)
            .field("lanes", &self.lanes)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("confirm", &self.confirm)
            .field("probe_interval", &self.probe_interval)
            .finish()
    }
}

struct Lane {
    /// The pooled object (`None`: a connection of its own, made because
    /// every pooled one was in use by other runtimes' lanes).
    checked_out: Option<Checkout>,
    handle: RedisConnection,
    /// The lane's entry reads, batched (see `reads.rs`); `None` on a
    /// cluster, whose keys live on different nodes.
    reads: Option<ReadBatcher>,
    /// Operations on the lane now (see [`pick`]).
    in_use: AtomicUsize,
}

impl Lane {
    fn new(checked_out: Option<Checkout>, handle: RedisConnection) -> Self {
        let reads = (!handle.is_cluster()).then(|| ReadBatcher::start(handle.clone()));
        Lane {
            checked_out,
            handle,
            reads,
            in_use: AtomicUsize::new(0),
        }
    }

    /// Counts one operation on the lane until the guard drops (also when
    /// the operation is cancelled).
    fn enter(&self) -> InUse<'_> {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        InUse(&self.in_use)
    }

    /// The first `end + 1` bytes of `key` (`GETRANGE key 0 end`), in the
    /// lane's next batch when it has a batcher.
    async fn read_head(&self, key: &str, end: usize) -> redis::RedisResult<Vec<u8>> {
        if let Some(reads) = &self.reads {
            if let Some(answer) = reads.read(key, end).await {
                return answer;
            }
            // The batcher ended with its runtime: asked directly, the
            // connection tells why.
        }
        head_read(key, end)
            .query_async(&mut self.handle.clone())
            .await
    }
}

/// One operation on a lane (see [`Lane::enter`]).
struct InUse<'a>(&'a AtomicUsize);

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(checked_out) = self.checked_out.take() {
            checked_out.detach();
        }
    }
}

/// The lanes of one calling runtime.
struct RuntimeLane {
    runtime: tokio::runtime::Id,
    /// A task that never ends, spawned on that runtime: finished once the
    /// runtime has shut down (and with it the lanes' connection drivers).
    alive: tokio::task::JoinHandle<()>,
    /// Multiplexed connections; a task's requests go through one of them
    /// (see [`pick`]). One connection's driver is one task, which
    /// caps the requests it pipelines; several spread them.
    lanes: Vec<Arc<Lane>>,
    /// How many lanes this runtime gets: the configured number, or fewer
    /// once the pool had no connection left for another.
    wanted: usize,
    /// Whether a connect for this runtime is in flight.
    reconnecting: bool,
}

impl RuntimeLane {
    fn has_ended(&self) -> bool {
        self.alive.is_finished()
    }
}

impl Drop for RuntimeLane {
    fn drop(&mut self) {
        self.alive.abort();
    }
}

/// The entry of `runtime` in `lanes`, made if missing; the entries of
/// runtimes that ended are moved to `ended`, for the caller to drop after
/// releasing the lock.
fn lane_entry<'a>(
    lanes: &'a mut Vec<RuntimeLane>,
    runtime: &tokio::runtime::Handle,
    wanted: usize,
    ended: &mut Vec<RuntimeLane>,
) -> &'a mut RuntimeLane {
    let id = runtime.id();
    let mut at = 0;
    while at < lanes.len() {
        if lanes[at].runtime != id && lanes[at].has_ended() {
            ended.push(lanes.swap_remove(at));
        } else {
            at += 1;
        }
    }
    let at = match lanes.iter().position(|lane| lane.runtime == id) {
        Some(at) => at,
        None => {
            lanes.push(RuntimeLane {
                runtime: id,
                alive: runtime.spawn(std::future::pending()),
                lanes: Vec::new(),
                wanted,
                reconnecting: false,
            });
            lanes.len() - 1
        }
    };
    &mut lanes[at]
}

/// The lane an operation takes: the calling task's own while it is idle,
/// else the least used. A sequential caller's requests then all go through
/// one connection's driver, as on a raw multiplexed connection; taken in
/// turn, a miss's read and write went through two drivers, and the caller
/// more often woke a worker parked on the I/O driver (an `eventfd` write,
/// then a second hop). `perf stat` of `perf_report --profile miss`, Redis
/// included, two alternating pairs: `write` calls per miss 4.1 → 3.5,
/// context switches 12.4 → 12.1, CPU time −2 to −4%; the rate of misses
/// moved within the noise. Many tasks, or many calls of one task in flight
/// together (`join_all`), spread over the lanes. Outside a task
/// (`block_on`'s own future), the thread stands for the task.
fn pick(lanes: &[Arc<Lane>]) -> &Arc<Lane> {
    use std::hash::BuildHasher;
    let slot = match tokio::task::try_id() {
        Some(id) => rustc_hash::FxBuildHasher.hash_one(id),
        None => crate::measure::counter::stripe() as u64,
    };
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the remainder is below `lanes.len()`, a usize"
    )]
    let home = (slot % lanes.len() as u64) as usize;
    let in_use = |at: usize| lanes[at].in_use.load(Ordering::Relaxed);
    if in_use(home) == 0 {
        return &lanes[home];
    }
    let least = (1..lanes.len())
        .map(|step| (home + step) % lanes.len())
        .fold(
            home,
            |best, at| if in_use(at) < in_use(best) { at } else { best },
        );
    &lanes[least]
}

/// The runtime the caller is on (the cache's own when it is on none; `None`
/// when there is neither, see `background`).
fn calling_runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .ok()
        .or_else(crate::background::handle)
}

/// Bytes of an entry read on the shared lane; the rest of a larger one is
/// read on a connection of its own.
pub(crate) const FIRST_READ: usize = 64 * 1024;

/// The most `SCAN` round trips on one node for one listing.
const MAX_SCAN_CALLS_PER_NODE: usize = 1_000;

pub(crate) struct L2Tier {
    pools: Pools,
    settings: L2Settings,
    /// The lanes of the runtimes that call, a handful at most (a test
    /// binary's concurrent tests): found by a scan.
    /// Behind a read-write lock: every operation looks its lane up (a read,
    /// side by side with the others); lanes change rarely.
    lanes: RwLock<Vec<RuntimeLane>>,
    /// Bumped after every connect attempt, to wake waiting callers.
    attempts: tokio::sync::watch::Sender<u64>,
    /// Milliseconds since `epoch` before which no reconnect is tried.
    retry_after_ms: AtomicU64,
    epoch: Instant,
    pub(crate) breaker: Breaker,
    /// The last failure to reach Redis, for `health()`.
    last_error: Mutex<Option<String>>,
    /// Why the last connect was refused by the server (bad credentials),
    /// told to callers waiting for a connection instead of "unreachable".
    refusal: Mutex<Option<String>>,
    /// How long operations on the lane took (answered or not).
    pub(crate) latency: crate::measure::latency::Latency,
    /// The connection confirmed invalidations use (`WAIT` holds it).
    confirm_lane: tokio::sync::Mutex<Option<RedisConnection>>,
    /// The connection the tail of large values is read on.
    large_lane: tokio::sync::Mutex<Option<RedisConnection>>,
    /// Replicas that acknowledge each invalidation, once decided.
    confirm: std::sync::OnceLock<Option<(u32, Duration)>>,
}

/// Whether invalidations wait for replicas to acknowledge them (`WAIT`).
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::{Cache, ConfirmInvalidations};
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// // An invalidation returns once two replicas hold it (or fails, and says so).
/// let cache = Cache::builder()
///     .confirm_invalidations(ConfirmInvalidations::Replicas(2, Duration::from_millis(200)))
///     .build()?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConfirmInvalidations {
    /// On when the server has replicas (a Sentinel-named master always, a
    /// standalone server when it reports connected replicas at start): one
    /// replica, within 500 ms. Off on a cluster.
    #[default]
    Auto,
    /// Never wait: an invalidation a master acknowledged can be lost if it
    /// fails before replicating it (the generation change after a failover
    /// still rejects every entry stamped before it).
    Off,
    /// Wait for this many replicas, at most this long; fewer is
    /// [`Error::Unconfirmed`](crate::error::Error::Unconfirmed).
    Replicas(u32, Duration),
}

impl L2Tier {
    pub(crate) fn new(settings: L2Settings) -> Result<Self, Error> {
        let pools = Pools::new(
            &settings.redis,
            &PoolSettings {
                size: settings.pool_size,
                connect_timeout: settings.connect_timeout,
                response_timeout: settings.other_timeout(),
            },
        )?;
        Ok(L2Tier {
            pools,
            refusal: Mutex::new(None),
            lanes: RwLock::new(Vec::new()),
            attempts: tokio::sync::watch::Sender::new(0),
            retry_after_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            breaker: Breaker::new(settings.breaker_threshold),
            last_error: Mutex::new(None),
            latency: crate::measure::latency::Latency::default(),
            confirm_lane: tokio::sync::Mutex::new(None),
            large_lane: tokio::sync::Mutex::new(None),
            confirm: std::sync::OnceLock::new(),
            settings,
        })
    }

    fn lanes(&self) -> std::sync::RwLockWriteGuard<'_, Vec<RuntimeLane>> {
        self.lanes.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lanes_read(&self) -> std::sync::RwLockReadGuard<'_, Vec<RuntimeLane>> {
        self.lanes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The calling runtime's next lane, if it has one, and whether it
    /// should get another.
    fn pick_lane(&self) -> (Option<Arc<Lane>>, bool) {
        let Some(runtime) = calling_runtime().map(|runtime| runtime.id()) else {
            return (None, false);
        };
        let lanes = self.lanes_read();
        let Some(entry) = lanes.iter().find(|lane| lane.runtime == runtime) else {
            return (None, false);
        };
        let grow = entry.lanes.len() < entry.wanted && !entry.reconnecting;
        if entry.lanes.is_empty() {
            return (None, grow);
        }
        (Some(Arc::clone(pick(&entry.lanes))), grow)
    }

    /// The calling runtime's next lane, if it has one.
    fn current_lane(&self) -> Option<Arc<Lane>> {
        self.pick_lane().0
    }

    /// Gives the calling runtime `lane` too.
    fn adopt_lane(&self, lane: Arc<Lane>) {
        let Some(runtime) = calling_runtime() else {
            return;
        };
        let mut ended = Vec::new();
        lane_entry(&mut self.lanes(), &runtime, self.settings.lanes, &mut ended)
            .lanes
            .push(lane);
        // Outside the lock: detaching takes the pool's lock.
        drop(ended);
    }

    /// Forgets `lane` (its connection broke).
    fn drop_lane(&self, lane: &Arc<Lane>) {
        // Dropped outside the lock: detaching takes the pool's lock.
        let mut dropped = None;
        for entry in self.lanes().iter_mut() {
            if let Some(at) = entry.lanes.iter().position(|l| Arc::ptr_eq(l, lane)) {
                dropped = Some(entry.lanes.swap_remove(at));
                break;
            }
        }
        drop(dropped);
    }

    /// Forgets the lane if `error` shows its connection is broken.
    /// READONLY: the server was demoted to a replica by a failover; a new
    /// connection asks the Sentinels again. A cluster connection reconnects
    /// its nodes itself: one dead shard must not cost the others their
    /// connection.
    fn drop_lane_if_broken(&self, lane: &Arc<Lane>, e: &redis::RedisError) {
        let broken = if lane.handle.is_cluster() {
            e.is_unrecoverable_error()
        } else {
            e.is_unrecoverable_error()
                || e.is_connection_dropped()
                || e.is_io_error()
                || e.code() == Some("READONLY")
        };
        if broken {
            self.drop_lane(lane);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A handle on the lane. Without a lane, a background task connects
    /// (one at a time, spaced by the backoff after a failure) and the caller
    /// waits for it at most the soft timeout: callers never pay a connect
    /// timeout while Redis is unreachable.
    async fn handle(self: &Arc<Self>) -> Result<Arc<Lane>, Error> {
        let (lane, grow) = self.pick_lane();
        if grow {
            self.start_reconnect();
        }
        if let Some(lane) = lane {
            return Ok(lane);
        }
        // Boxed: every operation's future would otherwise carry the
        // waiting machinery of this rare path.
        Box::pin(self.wait_for_lane(self.settings.soft_timeout)).await
    }

    /// Connects now if needed, waiting up to the connect timeout (a TLS
    /// handshake or a Sentinel lookup may take longer than a soft timeout).
    pub(crate) async fn establish(self: &Arc<Self>) -> Result<(), Error> {
        if self.current_lane().is_none() {
            self.wait_for_lane(self.settings.connect_timeout + self.settings.soft_timeout)
                .await?;
        }
        Ok(())
    }

    async fn wait_for_lane(self: &Arc<Self>, patience: Duration) -> Result<Arc<Lane>, Error> {
        let mut attempts = self.attempts.subscribe();
        self.start_reconnect();
        let wait = async {
            loop {
                if let Some(lane) = self.current_lane() {
                    return Ok(lane);
                }
                if !self.reconnecting() {
                    if let Some(refusal) = self.refusal() {
                        return Err(Error::Auth(refusal));
                    }
                    return Err(Error::Unavailable(Unavailable::Unreachable));
                }
                if attempts.changed().await.is_err() {
                    return Err(Error::Unavailable(Unavailable::ShuttingDown));
                }
            }
        };
        tokio::time::timeout(patience, wait)
            .await
            .unwrap_or(Err(Error::Timeout(patience)))
    }

    /// Whether a connect for the calling runtime is in flight.
    fn reconnecting(&self) -> bool {
        let Some(runtime) = calling_runtime().map(|runtime| runtime.id()) else {
            return false;
        };
        self.lanes_read()
            .iter()
            .any(|lane| lane.runtime == runtime && lane.reconnecting)
    }

    /// Starts connecting a lane for the calling runtime, on that runtime
    /// (the connection's driver must run there), unless one is in flight,
    /// the runtime has the lanes it wants, or the last attempt failed less
    /// than the backoff ago.
    fn start_reconnect(self: &Arc<Self>) {
        if self.elapsed_ms() < self.retry_after_ms.load(Ordering::Relaxed) {
            return;
        }
        let Some(runtime) = calling_runtime() else {
            return;
        };
        let id = runtime.id();
        let mut ended = Vec::new();
        let first = {
            let mut lanes = self.lanes();
            let entry = lane_entry(&mut lanes, &runtime, self.settings.lanes, &mut ended);
            if entry.lanes.len() >= entry.wanted.max(1)
                || std::mem::replace(&mut entry.reconnecting, true)
            {
                return;
            }
            entry.lanes.is_empty()
        };
        // Outside the lock: detaching takes the pool's lock.
        drop(ended);
        let tier = Arc::clone(self);
        runtime.spawn(async move {
            let outcome = tier.connect_lane(first).await;
            // The cause health reports while calls see only "unavailable".
            tier.remember(&outcome);
            if let Err(e) = &outcome {
                tracing::debug!(target: "acgs_cache", error = %e, "L2 (redis) connect failed");
                let backoff =
                    u64::try_from(tier.settings.reconnect_backoff.as_millis()).unwrap_or(u64::MAX);
                tier.retry_after_ms
                    .store(tier.elapsed_ms().saturating_add(backoff), Ordering::Relaxed);
            }
            let lane = outcome.ok();
            let unused = {
                let mut lanes = tier.lanes();
                match lanes.iter_mut().find(|lane| lane.runtime == id) {
                    Some(entry) => {
                        entry.reconnecting = false;
                        match lane {
                            Some(Some(lane)) if entry.lanes.len() < entry.wanted.max(1) => {
                                entry.lanes.push(lane);
                                None
                            }
                            Some(Some(lane)) => Some(lane),
                            // The pool had no connection left for another lane.
                            Some(None) => {
                                entry.wanted = entry.lanes.len();
                                None
                            }
                            None => None,
                        }
                    }
                    None => lane.flatten(),
                }
            };
            // Outside the lock: detaching takes the pool's lock.
            drop(unused);
            tier.attempts.send_modify(|n| *n += 1);
        });
    }

    /// A lane for the calling runtime: a connection checked out of the pool,
    /// or, for a runtime's `first` lane, one of its own when every pooled
    /// connection is another lane; `None` when another lane finds the pool
    /// used up.
    async fn connect_lane(&self, first: bool) -> Result<Option<Arc<Lane>>, Error> {
        // redis-rs times each request out itself (one timer per request):
        // giving the lane the soft timeout spares a second timer per
        // operation, which halved L2 throughput under 64 concurrent callers
        // (measured).
        let (checked_out, handle) = match self.checkout(self.settings.soft_timeout).await? {
            Some((checked_out, handle)) => (Some(checked_out), handle),
            None if first => {
                let handle = tokio::time::timeout(
                    self.settings.connect_timeout,
                    self.pools.dedicated(self.settings.soft_timeout),
                )
                .await
                .map_err(|_| Error::Timeout(self.settings.connect_timeout))??;
                (None, handle)
            }
            None => return Ok(None),
        };
        Ok(Some(Arc::new(Lane::new(checked_out, handle))))
    }

    /// A pooled connection, made within the connect timeout if none is
    /// idle, or `None` when the pool is used up (see `Pools::get_now`); a
    /// refusal of the credentials is remembered for callers and reported
    /// clearly.
    async fn checkout(
        &self,
        response_timeout: Duration,
    ) -> Result<Option<(Checkout, RedisConnection)>, Error> {
        let got = tokio::time::timeout(
            self.settings.connect_timeout,
            self.pools.get_now(response_timeout),
        )
        .await
        .map_err(|_| Error::Timeout(self.settings.connect_timeout))
        .and_then(|got| got);
        let refusal = got
            .as_ref()
            .err()
            .and_then(crate::error::credentials_refused)
            .map(|why| {
                format!(
                    "redis {} refused the credentials of {}: {why}",
                    self.settings.redis,
                    self.settings.redis.user_for_messages()
                )
            });
        // The latest attempt's reason wins (a refusal, or none).
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = refusal.clone();
        match refusal {
            Some(message) => Err(Error::Auth(message)),
            None => got,
        }
    }

    fn refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// While the breaker is open: one `PING` per interval, on a fresh
    /// connection, until Redis answers; then the breaker closes. Callers never
    /// wait for the probe.
    fn start_probe(self: &Arc<Self>) {
        let tier = Arc::downgrade(self);
        let interval = self.settings.probe_interval;
        // On the cache's runtime: the probe must go on after the runtime of
        // the call that opened the circuit has ended.
        crate::background::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(tier) = tier.upgrade() else { return };
                let probe = async {
                    // The background runtime's lane, if it has one (a frozen
                    // server that comes back keeps it); a broken one is
                    // dropped so that the next probe connects afresh. Closes
                    // when any node answers: on a cluster with a dead
                    // master, the others still serve their slots.
                    let (lane, fresh) = match tier.current_lane() {
                        Some(lane) => (lane, false),
                        None => match tier.connect_lane(true).await? {
                            Some(lane) => (lane, true),
                            None => return Err(Error::Unavailable(Unavailable::Unreachable)),
                        },
                    };
                    let answered = lane.handle.clone().ping_nodes().await.map(drop);
                    match &answered {
                        Err(Error::Redis(e)) => tier.drop_lane_if_broken(&lane, e),
                        Ok(()) if fresh => tier.adopt_lane(lane),
                        _ => {}
                    }
                    answered
                };
                if let Ok(Ok(())) = tokio::time::timeout(tier.settings.connect_timeout, probe).await
                {
                    if tier.breaker.on_success() {
                        tracing::info!(target: "acgs_cache", "L2 (redis) answers again; circuit closed");
                    }
                    return;
                }
            }
        });
    }

    /// Whether the breaker is open, and how many times it opened.
    pub(crate) fn circuit(&self) -> (bool, u64) {
        (
            self.breaker.is_open(),
            self.breaker.trips.load(Ordering::Relaxed),
        )
    }

    /// How long operations on the lane took, recently.
    pub(crate) fn latency(&self) -> &crate::measure::latency::Latency {
        &self.latency
    }

    /// Whether L2 operations are attempted (the breaker is closed).
    pub(crate) fn is_available(&self) -> bool {
        !self.breaker.is_open()
    }

    /// The pool's figures.
    pub(crate) fn pool_stats(&self) -> crate::measure::stats::PoolStats {
        let status = self.pools.status();
        crate::measure::stats::PoolStats {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// The configured topology (`standalone`, `sentinel`, `cluster`).
    pub(crate) fn topology(&self) -> &'static str {
        self.settings.redis.topology()
    }

    pub(crate) fn soft_timeout(&self) -> Duration {
        self.settings.soft_timeout
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.settings.connect_timeout
    }

    /// A connection of its own (for blocking reads), outside the pool, made
    /// on the cache's runtime so that it lasts as long as the cache, whichever
    /// runtime asked for it.
    pub(crate) async fn dedicated_connection(self: &Arc<Self>) -> Result<RedisConnection, Error> {
        let tier = Arc::clone(self);
        crate::background::run(
            async move { tier.bulk_connection(tier.settings.other_timeout()).await },
        )
        .await
    }

    /// A connection of its own for bulk writes, whose requests may take
    /// `timeout` (pipelines longer than the soft timeout allows). Made by
    /// the pool's manager but never counted in the pool, so a pool of one
    /// still has its connection for calls.
    pub(crate) async fn bulk_connection(
        &self,
        timeout: Duration,
    ) -> Result<RedisConnection, Error> {
        if self.breaker.is_open() {
            return Err(Error::Unavailable(Unavailable::CircuitOpen));
        }
        tokio::time::timeout(self.settings.connect_timeout, self.pools.dedicated(timeout))
            .await
            .map_err(|_| Error::Timeout(self.settings.connect_timeout))?
    }

    /// A writer for warming's pipelines, on a connection of its own whose
    /// requests may take `timeout`.
    pub(crate) async fn bulk_writer(&self, timeout: Duration) -> Result<BulkWriter, Error> {
        self.bulk_connection(timeout).await.map(BulkWriter)
    }

    /// The connection confirmed invalidations go through, made on first use
    /// and replaced after a failure.
    pub(crate) async fn confirm_connection(
        self: &Arc<Self>,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, RedisConnection>, Error> {
        let mut lane = self.confirm_lane.lock().await;
        if lane.is_none() {
            *lane = Some(self.dedicated_connection().await?);
        }
        tokio::sync::MutexGuard::try_map(lane, Option::as_mut)
            .map_err(|_| Error::Unavailable(Unavailable::Unreachable))
    }

    /// Forgets the confirmation connection (after it failed).
    pub(crate) async fn drop_confirm_connection(&self) {
        self.confirm_lane.lock().await.take();
    }

    /// Replicas each invalidation waits for, as configured or, for `Auto`,
    /// as decided by [`L2Tier::decide_confirmation`] (off until then).
    pub(crate) fn confirmation(&self) -> Option<(u32, Duration)> {
        match self.settings.confirm {
            ConfirmInvalidations::Off => None,
            ConfirmInvalidations::Replicas(n, wait) => Some((n, wait)),
            ConfirmInvalidations::Auto => self.confirm.get().copied().flatten(),
        }
    }

    /// Decides `Auto` confirmation once, from the topology and the number
    /// of replicas the server reports on `conn`.
    pub(crate) async fn decide_confirmation(&self, conn: &mut RedisConnection) {
        if self.confirm.get().is_some() || self.settings.confirm != ConfirmInvalidations::Auto {
            return;
        }
        let decided = match self.settings.redis.kind {
            crate::tiers::topology::Kind::Cluster => None,
            crate::tiers::topology::Kind::Sentinel { .. } => Some((1, Duration::from_millis(500))),
            crate::tiers::topology::Kind::Standalone => {
                let info: Result<String, _> = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(conn)
                    .await;
                let replicas = info.ok().and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("connected_slaves:"))
                        .and_then(|n| n.trim().parse::<u32>().ok())
                });
                replicas
                    .filter(|n| *n > 0)
                    .map(|_| (1, Duration::from_millis(500)))
            }
        };
        let _ = self.confirm.set(decided);
    }

    /// Whether L2 is a cluster (single-key scripts only).
    pub(crate) fn is_cluster(&self) -> bool {
        self.settings.redis.is_cluster()
    }

    /// Runs `op` on the lane within the soft timeout, unless the circuit is open.
    async fn on_lane<T>(
        self: &Arc<Self>,
        op: impl AsyncFnOnce(&mut RedisConnection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        self.with_lane(async |lane| op(&mut lane.handle.clone()).await)
            .await
    }

    /// [`L2Tier::on_lane`], with the lane itself (for its batched reads).
    async fn with_lane<T>(
        self: &Arc<Self>,
        op: impl AsyncFnOnce(&Lane) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        if self.breaker.is_open() {
            return Err(Error::Unavailable(Unavailable::CircuitOpen));
        }
        // Two clock reads are nothing next to a round trip.
        let start = Instant::now();
        let outcome = match self.handle().await {
            // The lane's handle carries the soft timeout (see `connect_lane`).
            Ok(lane) => {
                let answer = {
                    let _in_use = lane.enter();
                    op(&lane).await
                };
                match answer {
                    Ok(value) => Ok(value),
                    Err(e) if e.is_timeout() => Err(Error::Timeout(self.settings.soft_timeout)),
                    Err(e) => {
                        // The next call checks out a new connection.
                        self.drop_lane_if_broken(&lane, &e);
                        Err(e.into())
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.latency.record(start.elapsed(), 1);
        self.note_outcome(&outcome);
        outcome
    }

    /// Runs one command on the lane within the soft timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        self.on_lane(async |conn| cmd.query_async(conn).await).await
    }

    /// Runs a Lua script (`EVALSHA`, loading it on first use) on the lane.
    pub(crate) async fn run_script<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        self.on_lane(async |conn| invocation.invoke_async(conn).await)
            .await
    }

    /// Feeds the breaker. Only failures to reach Redis count: an error reply
    /// proves the server is there.
    pub(crate) fn note_outcome<T>(self: &Arc<Self>, outcome: &Result<T, Error>) {
        let unreachable = match outcome {
            Ok(_) => false,
            Err(Error::Redis(e)) => {
                let lost =
                    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal();
                // On a cluster, a refused or dropped connection is one dead
                // master's: it fails fast (one retry), and the others still
                // serve their slots, so it must not open the circuit for
                // all. Timeouts still count.
                if lost && !e.is_timeout() && self.settings.redis.is_cluster() {
                    self.remember(outcome);
                    return;
                }
                lost || e.is_timeout()
            }
            Err(_) => true,
        };
        if !unreachable {
            if self.breaker.on_success() {
                tracing::info!(target: "acgs_cache", "L2 (redis) answers again; circuit closed");
            }
        } else {
            self.remember(outcome);
            self.note_failure(outcome);
        }
    }

    fn remember<T>(&self, outcome: &Result<T, Error>) {
        // "Unavailable" is the consequence of an earlier failure (the
        // circuit open, no connection): keep that failure, the cause.
        if let Err(e) = outcome {
            if matches!(e, Error::Unavailable(_)) {
                return;
            }
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }

    /// The last failure to reach Redis, if any (errors never carry credentials).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn note_failure<T>(self: &Arc<Self>, outcome: &Result<T, Error>) {
        if self.breaker.on_failure() {
            if let Err(e) = outcome {
                // The failure behind it, not "unavailable", when one is known.
                let cause = self.last_error().unwrap_or_else(|| e.to_string());
                tracing::warn!(target: "acgs_cache", error = %cause, "L2 (redis) unreachable; circuit open, cached calls go on without it");
            }
            self.start_probe();
        }
    }

    pub(crate) async fn get(self: &Arc<Self>, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// An entry's bytes, reading at most `max` of them: the first
    /// [`FIRST_READ`] bytes on the shared lane (every entry we write below
    /// that size is read in one round trip, as a `GET`), the rest, if any,
    /// on a connection of its own, so a large value never holds up the other
    /// calls' requests. A value longer than `max` (a foreign writer's) is
    /// never transferred past `max + 1` bytes.
    pub(crate) async fn get_entry(
        self: &Arc<Self>,
        key: &str,
        max: usize,
    ) -> Result<Fetched, Error> {
        let first_end = FIRST_READ.min(max.saturating_add(1)) - 1;
        let bytes = self
            .with_lane(async |lane| lane.read_head(key, first_end).await)
            .await?;
        if bytes.is_empty() {
            return Ok(Fetched::Missing); // a missing key reads as empty
        }
        if bytes.len() < FIRST_READ {
            return Ok(if bytes.len() > max {
                Fetched::TooLarge
            } else {
                Fetched::Bytes(bytes)
            });
        }
        // Larger than the first read: the rest, off the shared lane. Boxed:
        // making that connection is a large future that every L2 read's
        // state would otherwise carry (it made the boxed state of a call
        // past L1 5 KB instead of 2, allocated and copied on every L1 miss).
        Box::pin(self.read_rest(key, max, bytes)).await
    }

    /// The bytes of `key` past [`FIRST_READ`] (at most `max + 1` in all),
    /// appended to `head`, on the large values' connection.
    async fn read_rest(
        self: &Arc<Self>,
        key: &str,
        max: usize,
        mut head: Vec<u8>,
    ) -> Result<Fetched, Error> {
        let mut conn = self.large_value_connection().await?;
        let rest: Vec<u8> = redis::cmd("GETRANGE")
            .arg(key)
            .arg(FIRST_READ)
            .arg(max) // inclusive: at most max + 1 bytes in all
            .query_async(&mut conn)
            .await?;
        head.extend_from_slice(&rest);
        Ok(if head.len() > max {
            Fetched::TooLarge
        } else {
            Fetched::Bytes(head)
        })
    }

    /// The connection large values are read on, made on first use.
    async fn large_value_connection(self: &Arc<Self>) -> Result<RedisConnection, Error> {
        let mut lane = self.large_lane.lock().await;
        if let Some(conn) = lane.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.dedicated_connection().await?;
        *lane = Some(conn.clone());
        Ok(conn)
    }

    /// Up to `limit` keys matching `pattern`, by `SCAN` (on each master of
    /// a cluster, whose cursors are per node). A key may appear twice.
    pub(crate) async fn scan(
        self: &Arc<Self>,
        pattern: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let mut conn = self.handle().await?.handle.clone();
        let masters = conn.masters().await?;
        let nodes: Vec<Option<&(String, u16)>> = if masters.is_empty() {
            vec![None]
        } else {
            masters.iter().map(Some).collect()
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            // Bounded in round trips too: few matches in a huge keyspace.
            for _ in 0..MAX_SCAN_CALLS_PER_NODE {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1_000);
                let (next, batch): (u64, Vec<String>) = conn.query_on(node, &scan).await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 || keys.len() >= limit {
                    break;
                }
            }
            if keys.len() >= limit {
                break;
            }
        }
        Ok(keys)
    }

    /// The values of `keys` (single-key `GET`s, see `run_all`).
    pub(crate) async fn get_many(
        self: &Arc<Self>,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let gets = keys.iter().map(|key| redis::cmd("GET").arg(key).clone());
        self.on_lane(async |conn| conn.run_all(gets).await).await
    }

    /// `UNLINK`s `keys`, one command per key (valid on a cluster, where they
    /// live in different slots): how many existed.
    pub(crate) async fn unlink(self: &Arc<Self>, keys: &[String]) -> Result<u64, Error> {
        let unlinks = keys.iter().map(|key| redis::cmd("UNLINK").arg(key).clone());
        let existed: Vec<u64> = self
            .on_lane(async |conn| conn.run_all(unlinks).await)
            .await?;
        Ok(existed.into_iter().sum())
    }

    /// The server's `maxmemory-policy` and `maxmemory` (`INFO memory`; on a
    /// cluster, one node's).
    pub(crate) async fn memory_policy(self: &Arc<Self>) -> Result<(String, u64), Error> {
        let info: String = self.query(redis::cmd("INFO").arg("memory")).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                .map(str::trim)
        };
        let policy = field("maxmemory_policy").unwrap_or("unknown").to_owned();
        let bytes = field("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((policy, bytes))
    }

    /// Round-trip time of a `PING` (to each master of a cluster), and how
    /// many nodes answered of how many. An error only when none did.
    pub(crate) async fn ping(self: &Arc<Self>) -> Result<(Duration, u32, u32), Error> {
        if self.breaker.is_open() {
            return Err(Error::Unavailable(Unavailable::CircuitOpen));
        }
        let start = Instant::now();
        let outcome = match self.handle().await {
            Ok(lane) => lane.handle.clone().ping_nodes().await,
            Err(e) => Err(e),
        };
        self.note_outcome(&outcome);
        outcome.map(|(answered, nodes)| (start.elapsed(), answered, nodes))
    }
}

/// Writes warming's batches: single-key `SET ... PX`s in one pipeline each
/// (see `RedisConnection::run_all`: cluster-safe).
pub(crate) struct BulkWriter(RedisConnection);

impl BulkWriter {
    /// Writes `batch` in one pipeline.
    pub(crate) async fn write(&self, batch: &[BulkEntry]) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        // Built in place (`cmd(..).arg(..)` borrows, and cloning it to own
        // it would copy every value once more) and sized up front (grown
        // argument by argument, each command cost a few `realloc`s).
        let sets = batch.iter().map(|e| {
            // "SET", the key, the envelope, "PX" and at most 20 digits.
            let size = 3 + e.key.len() + e.bytes.len() + 2 + 20;
            let mut set = redis::Cmd::with_capacity(5, size);
            set.arg("SET")
                .arg(&e.key)
                .arg(&e.bytes)
                .arg("PX")
                .arg(e.px_ms);
            set
        });
        self.0.clone().run_all::<()>(sets).await?;
        Ok(())
    }
}
