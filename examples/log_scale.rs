//! Invalidation-log scale report: one million single-entry invalidations,
//! and what they cost an instance that starts after them and one that hears
//! them live.
//!
//! ```text
//! cargo run --release --example log_scale [-- --records 1000000] [--redis-url URL]
//! ```
//!
//! Starts its own `redis-server` unless given a URL. It writes `--records`
//! entry invalidations into the log (pipelined, as `invalidate_<fn>(k)`
//! writes them; the log's capacity is raised to hold them all), then:
//! - a fresh instance connects: the time until it hears the log, and how many
//!   records it read back (none: it loads the log's state);
//! - a running instance hears the same number live: its resident growth and
//!   how many it remembers (at most 100,000; past that, whole functions).
//!
//! The last line is
//! `log_scale: records=N connect_ms=F read_back=N live_rss_mib=F remembered=N overflows=N`.

use acgs_cache_harness as support;
use support::arg;

use std::time::{Duration, Instant};

use acgs_cache::Cache;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Appends `n` entry invalidations to the log, in pipelines of 10,000.
async fn fill(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, n: u64, from: u64) {
    let log = format!("{prefix}:{{invalidation}}:log");
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("XADD")
                .arg(&log)
                .arg("*")
                .arg("k")
                .arg("e")
                .arg("n")
                .arg("log-scale:session-web")
                .arg("i")
                .arg("0")
                .arg("d")
                .arg(format!("{i:032x}"))
                .ignore();
        }
        let _: () = pipe.query_async(conn).await.expect("fill the log");
    }
}

#[tokio::main]
async fn main() {
    let records: u64 = arg("--records", 1_000_000);
    let (url, _own) =
        support::given_or_started(std::env::args().skip_while(|a| a != "--redis-url").nth(1));
    let prefix = format!("scale{}", std::process::id());
    let instance = || {
        Cache::builder()
            .service("log-scale")
            .prefix(prefix.clone())
            .redis_url(url.as_str())
            .invalidation_log_capacity(records as usize * 2)
            .metrics_interval(None)
            .fleet_interval(Duration::ZERO)
            .build()
            .expect("cache")
    };
    let mut raw = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // The log exists (with its generation) before the records go in.
    let writer = instance();
    writer.connect().await.expect("connect");
    writer
        .invalidate("log-scale.start")
        .await
        .expect("invalidate");

    // A running instance hears them all live.
    let live = instance();
    live.connect().await.expect("connect");
    let rss_before = rss_bytes();
    let started = Instant::now();
    fill(&mut raw, &prefix, records, 0).await;
    let log = format!("{prefix}:{{invalidation}}:log");
    let end: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&log)
        .query_async(&mut raw)
        .await
        .expect("xinfo");
    let last = end
        .chunks(2)
        .find(|p| matches!(&p[0], redis::Value::BulkString(b) if b == b"last-generated-id"))
        .and_then(|p| match &p[1] {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        })
        .and_then(|id| acgs_cache::LogPosition::parse(&id))
        .expect("last id");
    while live.log_position() < last {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heard_after = started.elapsed();
    let live_stats = live.stats().await.invalidations;
    let live_rss = rss_bytes().saturating_sub(rss_before);

    // A fresh instance starts after them.
    let fresh = instance();
    let started = Instant::now();
    fresh.connect().await.expect("connect");
    let connect = started.elapsed();
    let fresh_stats = fresh.stats().await.invalidations;

    println!(
        "live instance: heard {records} entry invalidations in {:.1} s; remembers {} (overflows into whole functions: {}); resident growth {:.1} MiB",
        heard_after.as_secs_f64(),
        live_stats.remembered,
        live_stats.entry_overflows,
        live_rss as f64 / 1048576.0
    );
    println!(
        "fresh instance: connected (log heard) in {:.1} ms, read back {} records, loaded the state {} time(s)",
        connect.as_secs_f64() * 1000.0,
        fresh_stats.received,
        fresh_stats.state_loads
    );
    println!(
        "log_scale: records={records} connect_ms={:.1} read_back={} live_rss_mib={:.1} remembered={} overflows={}",
        connect.as_secs_f64() * 1000.0,
        fresh_stats.received,
        live_rss as f64 / 1048576.0,
        live_stats.remembered,
        live_stats.entry_overflows
    );
}
