//! Per-function call latency: a log-scale histogram of striped atomic
//! counts, cheap enough for the hit path.
//!
//! Calls that leave L1 (L2 hits, misses, coalesced waits) are all timed: two
//! clock reads are nothing next to a round trip. L1 hits take a fraction of
//! a microsecond, where two clock reads would be a tenth of the call, so one
//! in [`L1_SAMPLE`] is timed and counted [`L1_SAMPLE`] times.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stats::stripe;

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
    let i = index as u32 - 1;
    let octave = FIRST_OCTAVE + i / PER_OCTAVE;
    let fraction = u64::from(i % PER_OCTAVE);
    ((4 + fraction + 1) << (octave - 2)) - 1
}

/// A latency histogram; see the module docs.
pub(crate) struct Latency {
    counts: Box<[[AtomicU64; BUCKETS]; STRIPES]>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            counts: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
        }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency").finish_non_exhaustive()
    }
}

impl Latency {
    /// Counts one call that took `elapsed`, `weight` times (sampled calls
    /// stand for the ones that were not timed).
    pub(crate) fn record(&self, elapsed: Duration, weight: u32) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.counts[stripe() % STRIPES][bucket(nanos)]
            .fetch_add(u64::from(weight), Ordering::Relaxed);
    }

    /// The 50th, 95th and 99th percentiles (upper bounds of their buckets),
    /// or `None` before the first timed call.
    pub(crate) fn percentiles(&self) -> Option<[Duration; 3]> {
        let mut merged = [0u64; BUCKETS];
        for stripe in self.counts.iter() {
            for (sum, count) in merged.iter_mut().zip(stripe) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        let total: u64 = merged.iter().sum();
        if total == 0 {
            return None;
        }
        let at = |fraction: f64| {
            let rank = ((total as f64) * fraction).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, count) in merged.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Duration::from_nanos(upper_bound_nanos(index));
                }
            }
            Duration::from_nanos(upper_bound_nanos(BUCKETS - 1))
        };
        Some([at(0.50), at(0.95), at(0.99)])
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
