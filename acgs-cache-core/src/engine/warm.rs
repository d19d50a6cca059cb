//! Warming: bulk priming of many entries of cached functions, from values
//! computed beforehand or computed here with bounded concurrency.
//!
//! Entries are encoded exactly as a miss would store them and written with
//! pipelined single-key `SET … PX` commands (never a multi-key command; on a
//! Redis Cluster, where a pipeline must stay within one slot, the commands
//! go out concurrently and the cluster connection pipelines them per node),
//! on a connection of their own so that a long pipeline never queues
//! in front of the service's hits. Without L2 (or when asked) entries go to
//! L1 instead.
//!
//! Coherence: a warmed entry carries the invalidation-log position of the
//! moment the warmer was created (or the one given with
//! [`Warmer::computed_since`]): an invalidation after it rejects the entry
//! like any other, so values must be read from the source after that moment.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::coherence::log_script;
use crate::coherence::state::tag_hash;
use crate::engine::instance::Cache;
use crate::engine::land::header;
use crate::engine::site::CallSite;
use crate::error::{CodecError, Error};
use crate::format::envelope::{self, EncodeLimits};
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape, Verdict};
use crate::log_position::LogPosition;
use crate::measure::stats::ErrorReason;
use crate::tiers::l1::{EntryLife, L1Entry, Stored};
use crate::tiers::l2::{BulkEntry, BulkWriter};

/// One entry to prime: a cached function's key and value. Made by the
/// `warm_entry_<fn>` companion that `#[cached]` generates next to a free
/// function (same arguments as the function, plus the value).
///
/// ```no_run
/// # use acgs_cache_core::{Cache, WarmEntry};
/// # fn warm_entry_rule(id: u64, rule: String) -> WarmEntry { unimplemented!() }
/// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
/// // `#[cached] async fn rule(id: u64) -> String` generates `warm_entry_rule`.
/// let entries = (1..=1_000u64).map(|id| warm_entry_rule(id, format!("rule {id}")));
/// let report = cache.warmer().await.load(entries).await?;
/// assert_eq!(report.written, 1_000);
/// # Ok(()) }
/// ```
pub struct WarmEntry {
    site: &'static CallSite,
    /// The instance probe and the companion that made it (see `identity.rs`).
    probe: &'static str,
    caller: &'static str,
    key: Result<KeyDigest, CodecError>,
    tags: Vec<String>,
    /// `None`: the value is one the function would not store (an `Err`, a
    /// `None` without negative caching, refused by `cache_if`).
    value: Option<Box<dyn WarmValue>>,
    /// The TTL `ttl_from` or `negative_ttl` chose.
    ttl: Option<Duration>,
}

impl WarmEntry {
    /// An entry holding nothing to store (see `dispatch.rs`); `warm_entry`
    /// fills in the value.
    pub(crate) fn unstorable(
        site: &'static CallSite,
        probe: &'static str,
        caller: &'static str,
        key: Result<KeyDigest, CodecError>,
        tags: Vec<String>,
    ) -> WarmEntry {
        WarmEntry {
            site,
            probe,
            caller,
            key,
            tags,
            value: None,
            ttl: None,
        }
    }
}

impl fmt::Debug for WarmEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmEntry")
            .field("function", &self.site.name())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The value of a [`WarmEntry`], its type erased.
trait WarmValue: Send + Sync {
    fn encode(
        &self,
        site: &'static CallSite,
        header: envelope::EnvelopeHeader,
        limits: EncodeLimits,
    ) -> Result<envelope::Sealed, CodecError>;

    fn l1_entry(
        self: Box<Self>,
        tags: &[u64],
        life: EntryLife,
        encoded_bytes: usize,
        position: u64,
    ) -> Option<L1Entry>;
}

impl<V: Cacheable> WarmValue for V {
    fn encode(
        &self,
        site: &'static CallSite,
        header: envelope::EnvelopeHeader,
        limits: EncodeLimits,
    ) -> Result<envelope::Sealed, CodecError> {
        envelope::encode(self, site.codec, header, limits)
    }

    fn l1_entry(
        self: Box<Self>,
        tags: &[u64],
        life: EntryLife,
        encoded_bytes: usize,
        position: u64,
    ) -> Option<L1Entry> {
        let stored = Stored::new(*self, tags);
        crate::tiers::l1::entry(stored, life, encoded_bytes, position)
    }
}

/// Builds a [`WarmEntry`] from what the function would return (what the
/// `warm_entry_<fn>` companions call). Not a public API.
pub(crate) fn warm_entry<S>(
    site: &'static CallSite,
    probe: &'static str,
    caller: &'static str,
    shape: S,
    key: Result<KeyDigest, CodecError>,
    out: S::Out,
    tags: Vec<String>,
) -> WarmEntry
where
    S: Shape,
    S::Value: Cacheable,
{
    let (value, ttl): (Option<Box<dyn WarmValue>>, _) = match shape.verdict(&out) {
        Verdict::Store(value, ttl) => (Some(Box::new(value.clone())), ttl),
        Verdict::Negative(value) => match site.negative_ttl {
            Some(ttl) => (Some(Box::new(value.clone())), Some(ttl)),
            None => (None, None),
        },
        Verdict::Skip => (None, None),
    };
    WarmEntry {
        value,
        ttl,
        ..WarmEntry::unstorable(site, probe, caller, key, tags)
    }
}

/// How far a warming run got. Passed to the progress callback after every
/// batch, and returned at the end.
///
/// ```
/// use acgs_cache_core::Cache;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let report = cache.warmer().await.load(Vec::new()).await?; // entries from `warm_entry_<fn>`
/// assert_eq!((report.entries, report.written, report.rejected, report.failed), (0, 0, 0, 0));
/// println!("{report} ({:.0}/s)", report.per_second());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WarmReport {
    /// Entries handed to the warmer (computations that returned `None` are
    /// not entries).
    pub entries: u64,
    /// Entries written to L2 (or put in L1 without L2).
    pub written: u64,
    /// Entries that could not be encoded (a key or value that does not
    /// serialize, a value over the size limit).
    pub rejected: u64,
    /// Entries whose write failed (Redis unreachable, timed out).
    pub failed: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl WarmReport {
    /// Written entries per second.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.load(Vec::new()).await?;
    /// println!("{:.0} entries/s", report.per_second());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.written as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for WarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries, {} written, {} rejected, {} failed in {:.2?} ({:.0}/s)",
            self.entries,
            self.written,
            self.rejected,
            self.failed,
            self.elapsed,
            self.per_second()
        )
    }
}

type Progress<'a> = Box<dyn Fn(&WarmReport) + Send + Sync + 'a>;

/// Primes entries in bulk; see [`Cache::warmer`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = acgs_cache_core::Cache::builder().build()?;
/// let report = cache
///     .warmer()
///     .await
///     .batch_size(1_000)        // entries per pipeline
///     .pipelines_in_flight(4)
///     .on_progress(|p| eprintln!("warming: {p}"))
///     .load(Vec::new())         // `warm_entry_<fn>(args, value)` entries
///     .await?;
/// assert_eq!(report.entries, 0);
/// # Ok(()) }
/// ```
pub struct Warmer<'a> {
    cache: &'a Cache,
    position: u64,
    batch_size: usize,
    pipelines: usize,
    concurrency: usize,
    fill_l1: bool,
    timeout: Duration,
    progress: Option<Progress<'a>>,
    /// Entry invalidations heard since the warmer was made: after the run,
    /// their keys get tombstones again (a warming `SET` may have replaced one).
    watch: Arc<std::sync::Mutex<Vec<crate::coherence::state::WatchedEntry>>>,
}

impl fmt::Debug for Warmer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warmer")
            .field("position", &LogPosition::from_packed(self.position))
            .field("batch_size", &self.batch_size)
            .field("pipelines", &self.pipelines)
            .field("concurrency", &self.concurrency)
            .field("fill_l1", &self.fill_l1)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A warmer for this cache's functions. Values it writes must be read
    /// from their source after this call returns (or see
    /// [`Warmer::computed_since`]): an invalidation after it rejects them.
    ///
    /// With L2, this first [connects](Cache::connect): the instance reads
    /// the invalidation log up to now, so that the position it records is
    /// the log's current one; otherwise the entries would be stamped older
    /// than events the log already holds, and rejected.
    ///
    /// ```
    /// use acgs_cache_core::Cache;
    /// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
    /// let report = cache
    ///     .warmer()
    ///     .await
    ///     .batch_size(1_000)
    ///     .on_progress(|p| eprintln!("warming: {p}"))
    ///     .load(Vec::new()) // entries from the `warm_entry_<fn>` companions
    ///     .await?;
    /// assert_eq!(report.entries, 0);
    /// # Ok(()) }
    /// ```
    pub async fn warmer(&self) -> Warmer<'_> {
        if let Err(e) = self.connect().await {
            tracing::warn!(target: "acgs_cache", error = %e, "warming before the invalidation log could be read: entries may be rejected as older than events in it");
        }
        Warmer {
            cache: self,
            position: self.inner.coherence().head(),
            batch_size: 512,
            pipelines: 4,
            concurrency: 16,
            fill_l1: !self.has_l2(),
            timeout: Duration::from_secs(10),
            progress: None,
            watch: self.inner.coherence().watch_entries(),
        }
    }
}

impl<'a> Warmer<'a> {
    /// Entries per pipeline (default 512).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.batch_size(2_000).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn batch_size(mut self, entries: usize) -> Self {
        self.batch_size = entries.max(1);
        self
    }

    /// Pipelines in flight at once (default 4).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.pipelines_in_flight(8).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pipelines_in_flight(mut self, pipelines: usize) -> Self {
        self.pipelines = pipelines.max(1);
        self
    }

    /// Computations in flight at once in [`Warmer::compute`] (default 16).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.concurrency(64).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn concurrency(mut self, computations: usize) -> Self {
        self.concurrency = computations.max(1);
        self
    }

    /// Whether entries also go to this instance's L1 (default: only when
    /// there is no L2).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.fill_l1(true).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn fill_l1(mut self, fill: bool) -> Self {
        self.fill_l1 = fill;
        self
    }

    /// How long one pipeline may take before its entries count as failed
    /// (default 10 s; the cache's soft timeout is meant for single hits).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.pipeline_timeout(std::time::Duration::from_secs(30)).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pipeline_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The values were read from their source after `position` (an earlier
    /// [`Cache::log_position`]), not after the warmer was created.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.computed_since(cache.log_position()).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn computed_since(mut self, position: LogPosition) -> Self {
        self.position = position.packed();
        self
    }

    /// Called with the figures so far after every batch.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.on_progress(|p| eprintln!("{p}")).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn on_progress(mut self, progress: impl Fn(&WarmReport) + Send + Sync + 'a) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Primes precomputed entries.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when L2 is configured but no connection can be
    /// made (nothing is written then). Entries that fail later are counted in
    /// the report, not returned as errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let report = cache.warmer().await.batch_size(512).load(Vec::new()).await?;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    pub async fn load(
        &self,
        entries: impl IntoIterator<Item = WarmEntry>,
    ) -> Result<WarmReport, Error> {
        self.run(stream::iter(entries)).await
    }

    /// Computes entries with `compute` (at most [`Warmer::concurrency`] at
    /// a time) and primes them as they come; `None` skips an argument.
    ///
    /// # Errors
    ///
    /// As [`Warmer::load`].
    ///
    /// ```no_run
    /// # use acgs_cache_core::{Cache, WarmEntry};
    /// # async fn load_rule(id: u64) -> Option<WarmEntry> { None } // `warm_entry_<fn>(id, rule)`
    /// # async fn run(cache: Cache) -> Result<(), acgs_cache_core::Error> {
    /// let report = cache
    ///     .warmer()
    ///     .await
    ///     .concurrency(32) // at most 32 rules loaded at once
    ///     .compute(1..=10_000u64, load_rule)
    ///     .await?;
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    pub async fn compute<A, F, Fut>(
        &self,
        arguments: impl IntoIterator<Item = A>,
        compute: F,
    ) -> Result<WarmReport, Error>
    where
        F: FnMut(A) -> Fut,
        Fut: Future<Output = Option<WarmEntry>>,
    {
        let entries = stream::iter(arguments)
            .map(compute)
            .buffer_unordered(self.concurrency)
            .filter_map(std::future::ready);
        self.run(entries).await
    }

    async fn run(
        &self,
        entries: impl stream::Stream<Item = WarmEntry>,
    ) -> Result<WarmReport, Error> {
        let start = Instant::now();
        let job = Job {
            cache: self.cache,
            position: self.position,
            fill_l1: self.fill_l1,
            writer: match self.cache.inner.l2() {
                Some(l2) => Some(l2.bulk_writer(self.timeout).await?),
                None => None,
            },
        };
        // Batches are encoded and written on this task: spreading the
        // encoding over the runtime's threads was measured slower, since
        // Redis itself needs a core.
        let batches = entries
            .chunks(self.batch_size)
            .map(|batch| job.write(batch));
        let mut batches = std::pin::pin!(batches.buffer_unordered(self.pipelines));
        let mut report = WarmReport::default();
        while let Some(batch) = batches.next().await {
            report.entries += batch.entries;
            report.written += batch.written;
            report.rejected += batch.rejected;
            report.failed += batch.failed;
            report.elapsed = start.elapsed();
            if let Some(progress) = &self.progress {
                progress(&report);
            }
        }
        self.repair().await;
        report.elapsed = start.elapsed();
        tracing::info!(target: "acgs_cache", %report, "warming done");
        Ok(report)
    }

    /// Warming writes with plain `SET`s (a script per entry would halve its
    /// rate), which may replace the tombstone of an entry invalidated since
    /// the warmer was made. Once this instance has heard the log up to its
    /// end, every such key gets its tombstone back.
    async fn repair(&self) {
        let inner = &self.cache.inner;
        let Some(l2) = inner.l2() else { return };
        let keys = crate::coherence::log::LogKeys::new(&inner.config().prefix);
        if let Ok(end) = log_script::log_end(l2, &keys).await {
            let heard = inner
                .coherence()
                .wait_heard(end.packed(), self.timeout)
                .await;
            if !heard {
                tracing::warn!(target: "acgs_cache", "warming: the log was not heard to its end; entry invalidations after it may be undone until their entries expire");
            }
        }
        let seen: Vec<_> =
            std::mem::take(&mut *self.watch.lock().unwrap_or_else(|p| p.into_inner()));
        for watched in seen.into_iter().filter(|w| w.position > self.position) {
            for function in inner.coherence().functions_of_scope(watched.scope) {
                let key = crate::format::key::redis_key(&function.key_prefix, watched.digest);
                let stone =
                    crate::log_position::tombstone(LogPosition::from_packed(watched.position));
                if let Err(e) =
                    log_script::tombstone(l2, &key, &stone, inner.config().invalidation_window)
                        .await
                {
                    tracing::warn!(target: "acgs_cache", error = %e, "warming: a tombstone was not restored");
                }
            }
        }
    }
}

/// What every batch of one warming run shares.
struct Job<'a> {
    cache: &'a Cache,
    position: u64,
    fill_l1: bool,
    writer: Option<BulkWriter>,
}

impl Job<'_> {
    /// Encodes one batch and writes it in one pipeline.
    async fn write(&self, batch: Vec<WarmEntry>) -> WarmReport {
        let mut outcome = WarmReport {
            entries: batch.len() as u64,
            ..WarmReport::default()
        };
        let mut encoded = Vec::with_capacity(batch.len());
        for entry in batch {
            match self.encode(entry).await {
                Ok(Some(e)) => encoded.push(e),
                Ok(None) => outcome.written += 1, // put in L1 only
                Err(()) => outcome.rejected += 1,
            }
        }
        if let Some(writer) = &self.writer {
            let written = encoded.len() as u64;
            match writer.write(&encoded).await {
                Ok(()) => outcome.written += written,
                Err(e) => {
                    tracing::warn!(target: "acgs_cache", error = %e, entries = written, "warming pipeline failed");
                    outcome.failed += written;
                }
            }
        }
        outcome
    }

    /// Encodes one entry for L2 (and puts it in L1 when asked). `Ok(None)`:
    /// there is no L2 and the entry went to L1. `Err`: it cannot be stored.
    async fn encode(&self, entry: WarmEntry) -> Result<Option<BulkEntry>, ()> {
        let WarmEntry {
            site,
            probe,
            caller,
            key,
            tags,
            value,
            ttl,
        } = entry;
        if site
            .instance
            .is_some_and(|pinned| pinned().inner.id() != self.cache.inner.id())
        {
            // Its entries would land under another cache's prefix and settings.
            tracing::warn!(target: "acgs_cache", function = site.name(), "warming entry of a function pinned to another cache; skipped (warm it with that cache)");
            return Err(());
        }
        // The `warm_entry_<fn>` companion's `impl WarmInto<R>` parameter is
        // one generic more; a trait method's companions (beside its impl)
        // name the method itself (its fn item), which has none.
        let caller = crate::format::identity::Caller {
            name: caller,
            extra_generics: usize::from(caller != site.fn_name),
        };
        let function = self.cache.function_for(site, probe, caller);
        let Ok(digest) = key else {
            function.counters.bypassed.inc();
            return Err(());
        };
        let Some(value) = value else {
            function.counters.not_stored.inc();
            return Err(()); // the function would not have stored it either
        };
        let ttl = ttl.unwrap_or_else(|| function.policy.jittered_ttl(digest.low64()));
        let fill_l1 = self.fill_l1 && self.cache.inner.config().l1_enabled;
        // Hashed only for L1, which judges entries by them.
        let tag_hashes: Vec<u64> = if fill_l1 {
            tags.iter().map(|t| tag_hash(t)).collect()
        } else {
            Vec::new()
        };
        let header = header(site, &function, digest, ttl, tags, self.position);
        let sealed = match value.encode(site, header, self.cache.inner.config().limits) {
            Ok(sealed) => sealed,
            Err(e) => {
                function.counters.error(ErrorReason::Encode);
                tracing::debug!(target: "acgs_cache", function = %function.name, error = %e, "warming entry not encodable");
                return Err(());
            }
        };
        if fill_l1 {
            let life = EntryLife::of(&function.policy, ttl);
            if let Some(entry) = value.l1_entry(&tag_hashes, life, sealed.plain_size, self.position)
            {
                self.cache
                    .inner
                    .fill_l1(&function, digest, entry, &tag_hashes);
            }
        }
        if !self.cache.has_l2() {
            return Ok(None);
        }
        let px = ttl + function.policy.stale_if_error();
        Ok(Some(BulkEntry {
            key: crate::format::key::redis_key(&function.key_prefix, digest),
            bytes: sealed.bytes,
            px_ms: u64::try_from(px.as_millis()).unwrap_or(u64::MAX).max(1),
        }))
    }
}
