//! Per-function call latency: a log-scale histogram of striped atomic
//! counts, cheap enough for the hit path.
//!
//! Calls that leave L1 (L2 hits, misses, coalesced waits) are all timed: two
//! clock reads are nothing next to a round trip. L1 hits take a fraction of
//! a microsecond, where two clock reads would be a tenth of the call, so one
//! in [`L1_SAMPLE`] is timed and counted [`L1_SAMPLE`] times.
//!
//! Percentiles are of recent calls (see [`WINDOW`]); the exported
//! histogram counts every call since the instance started, so that a
//! scraper can add instances up and compute its own percentiles.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{self, Instant};
use crate::measure::counter::stripe;

/// One L1 hit in this many is timed.
pub(crate) const L1_SAMPLE: u32 = 64;

/// Four buckets per power of two: a bucket's bounds are within 19% of each
/// other, the precision of a reported percentile.
const PER_OCTAVE: u32 = 4;
/// From 128 ns (bucket 0 holds everything faster) to about 68 s.
const FIRST_OCTAVE: u32 = 7;
const OCTAVES: u32 = 29;
const BUCKETS: usize = (OCTAVES * PER_OCTAVE) as usize + 1;
const STRIPES: usize = 4;

/// Whether this L1 hit is one of the timed ones.
pub(crate) fn sample_l1() -> bool {
    thread_local! {
        static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
    }
    COUNTDOWN.with(|c| {
        let left = c.get();
        if left == 0 {
            c.set(L1_SAMPLE - 1);
            true
        } else {
            c.set(left - 1);
            false
        }
    })
}

fn bucket(nanos: u64) -> usize {
    if nanos < 1 << FIRST_OCTAVE {
        return 0;
    }
    let octave = 63 - nanos.leading_zeros(); // ≥ FIRST_OCTAVE
    let fraction = (nanos >> (octave - 2)) & 0b11; // the two bits after the leading one
    let index = (octave - FIRST_OCTAVE) * PER_OCTAVE + fraction as u32 + 1;
    (index as usize).min(BUCKETS - 1)
}

/// The largest latency bucket `index` holds.
fn upper_bound_nanos(index: usize) -> u64 {
    if index == 0 {
        return (1 << FIRST_OCTAVE) - 1;
    }
    let i = u32::try_from(index - 1).unwrap_or(OCTAVES * PER_OCTAVE);
    let octave = FIRST_OCTAVE + i / PER_OCTAVE;
    let fraction = u64::from(i % PER_OCTAVE);
    ((4 + fraction + 1) << (octave - 2)) - 1
}

/// How long one window of [`Latency::percentiles`] lasts: percentiles
/// describe the calls of the current window and the one before it, that is
/// the last 30 to 60 seconds, not the life of the process.
const WINDOW: Duration = Duration::from_secs(30);

/// Exported bucket bounds: every power of two from 256 ns to about 34 s
/// (bounds of the log-scale buckets, so the cumulative counts are exact).
const EXPORTED_OCTAVES: std::ops::RangeInclusive<u32> = 8..=35;

/// Striped counts per bucket.
struct Histogram {
    counts: Box<[[AtomicU64; BUCKETS]; STRIPES]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
        }
    }
}

impl Histogram {
    fn add(&self, bucket: usize, weight: u32) {
        self.counts[stripe() % STRIPES][bucket].fetch_add(u64::from(weight), Ordering::Relaxed);
    }

    fn add_to(&self, merged: &mut [u64; BUCKETS]) {
        for stripe in self.counts.iter() {
            for (sum, count) in merged.iter_mut().zip(stripe) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
    }

    fn clear(&self) {
        for stripe in self.counts.iter() {
            for count in stripe {
                count.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// A latency histogram; see the module docs. Every timed call is counted
/// twice: in the lifetime histogram, whose cumulative counts are exported
/// (they add up across instances and never go down), and in the window it
/// falls in, which percentiles read.
pub(crate) struct Latency {
    lifetime: Histogram,
    /// Two windows used in turn: the current one and the one before.
    windows: [Histogram; 2],
    /// The window number whose counts each of `windows` holds.
    holds: [AtomicU64; 2],
    born: Instant,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            lifetime: Histogram::default(),
            windows: Default::default(),
            holds: [AtomicU64::new(0), AtomicU64::new(u64::MAX)],
            born: clock::now(),
        }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency").finish_non_exhaustive()
    }
}

/// Timed calls by duration since the instance started, cumulative, as a
/// Prometheus histogram has them.
///
/// ```
/// use acgs_cache_core::{Cache, CacheMap};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
/// rules.get_or_compute(&1, async { "deny".to_owned() }).await;
/// let stats = cache.stats().await;
/// let histogram = &stats.function("map-rules").expect("called").latency_histogram;
/// assert!(histogram.quantile(0.5).is_some());
/// # let _ = acgs_cache_core::LatencyHistogram::bounds_seconds();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencyHistogram {
    /// `(bound in ns, calls that took at most that long)`, bounds ascending.
    /// For call latency: every power of two from 256 ns to 2^35 ns (about
    /// 34 s), sampled L1 hits counting for the calls they stand for; for
    /// propagation: four buckets per power of two, 128 ns to about 68 s.
    pub buckets: Vec<(u64, u64)>,
    /// All timed calls (the `+Inf` bucket).
    pub count: u64,
}

impl LatencyHistogram {
    /// The bucket bounds in ns.
    pub(crate) fn bounds_ns() -> impl Iterator<Item = u64> {
        EXPORTED_OCTAVES.map(|octave| 1u64 << octave)
    }

    /// The bucket bounds in seconds: the `le` labels of the metrics
    /// publisher's `acgs_cache_call_duration_seconds_bucket` counters.
    ///
    /// ```
    /// let bounds = acgs_cache_core::LatencyHistogram::bounds_seconds();
    /// assert_eq!(bounds[0], 256e-9);
    /// assert!(bounds.windows(2).all(|w| w[1] == 2.0 * w[0]));
    /// ```
    ///
    /// ```
    /// // The `le` labels of the Prometheus buckets.
    /// let bounds = acgs_cache_core::LatencyHistogram::bounds_seconds();
    /// assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    /// ```
    #[must_use]
    pub fn bounds_seconds() -> Vec<f64> {
        Self::bounds_ns().map(|ns| ns as f64 / 1e9).collect()
    }

    /// The `quantile` (0.5 for the median, 0.99…) of the counted calls: the
    /// bound of the first bucket that holds that many, `None` when nothing
    /// was counted or it lies past the last bound.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn propagation(stats: &acgs_cache_core::StatsSnapshot) -> Option<Duration> {
    /// // Propagation histograms have four buckets per power of two: a
    /// // percentile read from them is within 19% of the true value.
    /// stats.invalidations.propagation_histogram.quantile(0.99)
    /// # }
    /// ```
    ///
    /// ```
    /// let empty = acgs_cache_core::LatencyHistogram::default();
    /// assert_eq!(empty.quantile(0.99), None);
    /// ```
    #[must_use]
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        // The rank as the caller would count it: at least the first call.
        let rank = (self.count as f64 * quantile.clamp(0.0, 1.0))
            .ceil()
            .max(1.0);
        self.buckets
            .iter()
            .find(|(_, seen)| *seen as f64 >= rank)
            .map(|(bound, _)| Duration::from_nanos(*bound))
    }

    /// Adds `other`'s counts to these (instances of a fleet add up).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// // Summing histograms (of instances, of functions) keeps them exact.
    /// let mut sum = acgs_cache_core::LatencyHistogram::default();
    /// for row in cache.stats().await.functions {
    ///     sum.add(&row.latency_histogram);
    /// }
    /// assert_eq!(sum.quantile(0.5), None); // nothing recorded
    /// # Ok(()) }
    /// ```
    pub fn add(&mut self, other: &LatencyHistogram) {
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
        } else if self.buckets.len() == other.buckets.len() {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
        self.count += other.count;
    }
}

impl Latency {
    /// Counts one call that took `elapsed`, `weight` times (sampled calls
    /// stand for the ones that were not timed).
    pub(crate) fn record(&self, elapsed: Duration, weight: u32) {
        self.record_in(self.window_now(), elapsed, weight);
    }

    fn window_now(&self) -> u64 {
        clock::now().saturating_since(self.born).as_secs() / WINDOW.as_secs()
    }

    fn record_in(&self, window: u64, elapsed: Duration, weight: u32) {
        let bucket = bucket(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        self.lifetime.add(bucket, weight);
        let slot = (window % 2) as usize;
        let held = self.holds[slot].load(Ordering::Acquire);
        // The first call of a new window empties the slot of the window
        // before the last (a call racing with that may go uncounted in the
        // window; never in the lifetime counts).
        if held != window
            && self.holds[slot]
                .compare_exchange(held, window, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.windows[slot].clear();
        }
        self.windows[slot].add(bucket, weight);
    }

    /// The 50th, 95th and 99th percentiles (upper bounds of their buckets)
    /// of the calls in the current and the previous window, or `None` when
    /// none was timed in them.
    pub(crate) fn percentiles(&self) -> Option<[Duration; 3]> {
        self.percentiles_at(self.window_now())
    }

    fn percentiles_at(&self, window: u64) -> Option<[Duration; 3]> {
        let mut merged = [0u64; BUCKETS];
        for (slot, held) in self.holds.iter().enumerate() {
            let held = held.load(Ordering::Acquire);
            if held == window || held.checked_add(1) == Some(window) {
                self.windows[slot].add_to(&mut merged);
            }
        }
        let total: u64 = merged.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the percentile, in thousandths: integer arithmetic.
        let at = |per_mille: u64| {
            let rank = total.saturating_mul(per_mille).div_ceil(1000).max(1);
            let mut seen = 0;
            for (index, count) in merged.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Duration::from_nanos(upper_bound_nanos(index));
                }
            }
            Duration::from_nanos(upper_bound_nanos(BUCKETS - 1))
        };
        Some([at(500), at(950), at(990)])
    }

    /// Every call timed since the instance started, in all the buckets it
    /// keeps (four per power of two, bounds within 19% of each other): for
    /// delays whose percentiles matter across instances (propagation), not
    /// for export per function.
    pub(crate) fn fine_histogram(&self) -> LatencyHistogram {
        let mut merged = [0u64; BUCKETS];
        self.lifetime.add_to(&mut merged);
        let mut seen = 0;
        let buckets = merged
            .iter()
            .enumerate()
            .map(|(index, count)| {
                seen += count;
                (upper_bound_nanos(index), seen)
            })
            .collect();
        LatencyHistogram {
            buckets,
            count: seen,
        }
    }

    /// Every call timed since the instance started, as exported buckets.
    pub(crate) fn histogram(&self) -> LatencyHistogram {
        let mut merged = [0u64; BUCKETS];
        self.lifetime.add_to(&mut merged);
        let mut buckets = Vec::with_capacity(EXPORTED_OCTAVES.clone().count());
        let mut seen = 0;
        let mut index = 0;
        for bound in LatencyHistogram::bounds_ns() {
            // Buckets end at `upper_bound_nanos`, one below a power of two
            // at every octave's end: all of them below `bound` are in.
            while index < BUCKETS && upper_bound_nanos(index) < bound {
                seen += merged[index];
                index += 1;
            }
            buckets.push((bound, seen));
        }
        LatencyHistogram {
            buckets,
            count: merged.iter().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut previous = 0;
        for nanos in [1, 127, 128, 150, 200, 1_000, 12_345, 1_000_000, 123_456_789] {
            let b = bucket(nanos);
            assert!(b >= previous, "{nanos}");
            assert!(upper_bound_nanos(b) >= nanos, "{nanos} in bucket {b}");
            if b > 0 {
                assert!(upper_bound_nanos(b - 1) < nanos, "{nanos} in bucket {b}");
            }
            previous = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_forget_calls_older_than_the_previous_window() {
        let l = Latency::default();
        l.record_in(0, Duration::from_millis(10), 1);
        l.record_in(1, Duration::from_micros(10), 1);
        let [p50, _, p99] = l.percentiles_at(1).unwrap();
        assert!(p50 < Duration::from_micros(12), "{p50:?}");
        assert!(p99 >= Duration::from_millis(10), "{p99:?}");
        // Window 2: window 0 is gone, window 1 is the previous one.
        let [_, _, p99] = l.percentiles_at(2).unwrap();
        assert!(p99 < Duration::from_micros(12), "{p99:?}");
        // Window 3 reuses window 1's slot only once something is recorded.
        assert_eq!(l.percentiles_at(3), None);
        l.record_in(3, Duration::from_millis(1), 1);
        let [p50, _, _] = l.percentiles_at(3).unwrap();
        assert!(p50 >= Duration::from_millis(1), "{p50:?}");
        // The lifetime histogram kept all three calls.
        let h = l.histogram();
        assert_eq!(h.count, 3);
        let at_most = |nanos: u64| h.buckets.iter().find(|(b, _)| *b == nanos).unwrap().1;
        assert_eq!(at_most(1 << 13), 0); // 8.2 µs
        assert_eq!(at_most(1 << 14), 1); // 16.4 µs: the 10 µs call
        assert_eq!(at_most(1 << 20), 2); // 1.05 ms: and the 1 ms one
        assert_eq!(at_most(1 << 24), 3); // 16.8 ms: all
        assert!(h
            .buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn fine_histograms_add_up_and_give_percentiles_within_a_bucket() {
        let (a, b) = (Latency::default(), Latency::default());
        for micros in 1..=99 {
            a.record(Duration::from_micros(micros * 10), 1);
        }
        b.record(Duration::from_millis(400), 1);
        let mut fleet = a.fine_histogram();
        fleet.add(&b.fine_histogram());
        assert_eq!(fleet.count, 100);
        let p50 = fleet.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_micros(500) && p50 < Duration::from_micros(600),
            "{p50:?}"
        );
        let p99 = fleet.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_micros(990) && p99 < Duration::from_micros(1_200),
            "{p99:?}"
        );
        let max = fleet.quantile(1.0).unwrap();
        assert!(
            max >= Duration::from_millis(400) && max < Duration::from_millis(480),
            "{max:?}"
        );
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn histograms_of_instances_add_up() {
        let (a, b) = (Latency::default(), Latency::default());
        a.record(Duration::from_micros(3), 2);
        b.record(Duration::from_secs(2), 1);
        let mut sum = LatencyHistogram::default();
        sum.add(&a.histogram());
        sum.add(&b.histogram());
        assert_eq!(sum.count, 3);
        assert_eq!(sum.buckets.last().unwrap().1, 3);
        assert_eq!(
            sum.buckets.iter().find(|(b, _)| *b == 1 << 12).unwrap().1,
            2
        );
    }

    #[test]
    fn percentiles_of_a_known_mix() {
        let l = Latency::default();
        assert_eq!(l.percentiles(), None);
        for _ in 0..90 {
            l.record(Duration::from_micros(1), 1);
        }
        l.record(Duration::from_millis(1), 9); // a sampled call standing for nine
        l.record(Duration::from_millis(50), 1);
        let [p50, p95, p99] = l.percentiles().unwrap();
        assert!(
            p50 >= Duration::from_micros(1) && p50 < Duration::from_nanos(1_200),
            "{p50:?}"
        );
        assert!(
            p95 >= Duration::from_millis(1) && p95 < Duration::from_micros(1_200),
            "{p95:?}"
        );
        assert!(
            p99 >= Duration::from_millis(1) && p99 < Duration::from_micros(1_200),
            "{p99:?}"
        );
    }
}
