//! An L1 hit allocates nothing beyond the clone the caller receives — and
//! beyond moka's own amortized housekeeping, which a raw moka cache with the
//! same per-entry expiry shows too. Counted with dhat's heap profiler in
//! testing mode (one test in this binary: the profiler is process-wide).

use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const HITS: u64 = 10_000;

#[cached(ttl = "policy_decision")]
async fn score(policy_id: u64, subject: &str) -> u64 {
    policy_id * subject.len() as u64
}

#[cached(ttl = "policy_decision")]
async fn label(policy_id: u64) -> String {
    format!("policy-{policy_id}")
}

/// moka configured as L1 is: per-entry expiry and a weigher.
struct PerEntry;
impl moka::Expiry<u64, u64> for PerEntry {
    fn expire_after_create(&self, _: &u64, _: &u64, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
}

fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

#[test]
fn an_l1_hit_allocates_only_the_returned_clone() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Cache::builder()
        .service("alloc")
        // No background task may allocate inside the measured loop.
        .metrics_interval(None)
        .build()
        .unwrap()
        .install_default()
        .unwrap();
    let _profiler = dhat::Profiler::builder().testing().build();
    runtime.block_on(async {
        let raw: moka::future::Cache<u64, u64> =
            moka::future::Cache::builder().max_capacity(1 << 20).weigher(|_, _| 64).expire_after(PerEntry).build();
        raw.insert(7, 35).await;
        // Misses (and first-use registration) allocate; hits are measured.
        assert_eq!(score(7, "alice").await, 35);
        assert_eq!(label(7).await, "policy-7");

        let start = blocks();
        for _ in 0..HITS {
            assert_eq!(raw.get(&7).await, Some(35));
        }
        let moka_housekeeping = blocks() - start;

        let start = blocks();
        for _ in 0..HITS {
            assert_eq!(score(7, "alice").await, 35);
        }
        let copy_hits = blocks() - start;

        let start = blocks();
        for _ in 0..HITS {
            assert_eq!(label(7).await.len(), 8);
        }
        let string_hits = blocks() - start;

        println!("per {HITS} hits: raw moka {moka_housekeeping}, u64 {copy_hits}, String {string_hits} blocks");
        let slack = HITS / 100; // housekeeping runs at slightly different moments
        assert!(copy_hits <= moka_housekeeping + slack, "a u64 hit adds no allocation: {copy_hits} vs {moka_housekeeping}");
        assert!(
            string_hits <= moka_housekeeping + HITS + slack && string_hits >= HITS,
            "a String hit adds exactly its clone: {string_hits} vs {moka_housekeeping} + {HITS}"
        );
    });
}
