//! L1 memory report: what a process really holds for its L1 budget, and
//! bytes per entry beside raw moka holding the same values.
//!
//! ```text
//! cargo run --release --example l1_memory [-- --quick]
//! ```
//!
//! `--quick` (the test command's smoke run, unoptimized) measures one budget
//! of 32 MiB with 100-byte values only.
//!
//! Each measurement runs in a child process of its own (a clean heap): it
//! writes far more distinct entries than the budget holds, lets L1 evict,
//! and reads the resident set from `/proc/self/statm`. For every value size
//! it prints the resident growth against the budget, then bytes per entry,
//! ours beside a plain `moka::sync::Cache<u128, String>` of the same entries,
//! and ends with
//!
//! ```text
//! l1_memory: rss_vs_budget_max=R per_entry_vs_moka_max=R
//! ```

use std::process::Command;
use std::time::Instant;

use acgs_cache::{cached, Cache};

/// (value bytes, L1 budget in MiB, entries written)
const SIZES: [(usize, u64, u64); 3] = [
    (100, 64, 2_000_000),
    (1_000, 64, 300_000),
    (100_000, 256, 8_000),
];

/// Entries kept for the per-entry comparison (a budget large enough to hold
/// them all).
const PER_ENTRY: [(usize, u64); 3] = [(100, 200_000), (1_000, 100_000), (100_000, 1_000)];

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A value of `size` bytes in an allocation of exactly that size, built the
/// same way for both caches.
fn text_of(id: u64, size: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(size.max(20));
    let _ = write!(text, "{id:020}");
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text
}

#[cached(ttl = "1h", companions = false)]
async fn value(id: u64, size: usize) -> String {
    text_of(id, size)
}

fn child(args: &[String]) {
    let mode = args[0].as_str();
    let size: usize = args[1].parse().expect("size");
    let budget_mib: u64 = args[2].parse().expect("budget");
    let entries: u64 = args[3].parse().expect("entries");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let before = rss_bytes();
    // Each side measures while it still holds everything it filled.
    let (grown, held) = match mode {
        "ours" => runtime.block_on(async {
            let cache = Cache::builder()
                .service("l1-memory")
                .l1_max_bytes(budget_mib << 20)
                .metrics_interval(None)
                .build()
                .expect("cache");
            cache
                .scope(async {
                    for id in 0..entries {
                        value(id, size).await;
                    }
                })
                .await;
            let held = cache.stats().await.l1_entries;
            (rss_bytes().saturating_sub(before), held)
        }),
        "moka" => {
            let moka: moka::sync::Cache<u128, String> = moka::sync::Cache::builder()
                .max_capacity(entries * 2)
                .build();
            for id in 0..entries {
                moka.insert(u128::from(id), text_of(id, size));
            }
            moka.run_pending_tasks();
            (rss_bytes().saturating_sub(before), moka.entry_count())
        }
        other => panic!("unknown mode {other}"),
    };
    println!("grown={grown} held={held}");
}

fn run(mode: &str, size: usize, budget_mib: u64, entries: u64) -> (u64, u64) {
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new(exe)
        .args([
            "--child",
            mode,
            &size.to_string(),
            &budget_mib.to_string(),
            &entries.to_string(),
        ])
        .output()
        .expect("run the child");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text:?} ({:?})", output.stderr))
    };
    (field("grown"), field("held"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let started = Instant::now();
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[(usize, u64, u64)] = if quick { &[(100, 32, 350_000)] } else { &SIZES };
    println!("| value | L1 budget | entries written | held | resident growth | growth / budget |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut worst_budget = 0f64;
    for &(size, budget, entries) in sizes {
        let (grown, held) = run("ours", size, budget, entries);
        let ratio = grown as f64 / (budget << 20) as f64;
        worst_budget = worst_budget.max(ratio);
        println!(
            "| {size} B | {budget} MiB | {entries} | {held} | {:.1} MiB | {ratio:.2} |",
            grown as f64 / 1048576.0
        );
    }
    println!();
    println!("| value | entries | ours, bytes/entry | raw moka, bytes/entry | ours / moka |");
    println!("|---:|---:|---:|---:|---:|");
    let mut worst_entry = 0f64;
    let per_entry: &[(usize, u64)] = if quick { &[(100, 20_000)] } else { &PER_ENTRY };
    for &(size, entries) in per_entry {
        // A budget large enough to keep every entry.
        let budget = ((entries * (size as u64 + 1_000)) >> 20) + 64;
        let (ours, ours_held) = run("ours", size, budget, entries);
        let (moka, moka_held) = run("moka", size, budget, entries);
        let ours_per = ours as f64 / ours_held.max(1) as f64;
        let moka_per = moka as f64 / moka_held.max(1) as f64;
        worst_entry = worst_entry.max(ours_per / moka_per);
        println!(
            "| {size} B | {entries} | {ours_per:.0} | {moka_per:.0} | {:.2} |",
            ours_per / moka_per
        );
    }
    println!();
    println!(
        "l1_memory: rss_vs_budget_max={worst_budget:.2} per_entry_vs_moka_max={worst_entry:.2} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
