//! The distributed lock across processes: a ledger job run by several
//! processes at once. Each takes the `ledger` lock, checks nobody else is
//! inside, and appends to the ledger a line carrying the lock's fencing
//! token; the ledger (a Redis script standing for the downstream store)
//! refuses a token that is not larger than the last one it accepted.
//!
//! ```text
//! cargo run --example ledger_lock [-- --redis-url URL] [--processes 4] [--rounds 25]
//! ```
//!
//! Starts its own `redis-server` unless given a URL (the lock needs Redis).
//! Last line: `ledger_lock: processes=N acquisitions=N overlaps=N
//! fenced_rejections=N tokens_increasing=BOOL`.

use acgs_cache_harness as support;

use std::process::{Command, Stdio};
use std::time::Duration;

use acgs_cache::{Cache, DistributedLock};
use redis::AsyncCommands;

/// Appends `ARGV[2]` to the ledger if the token `ARGV[1]` is larger than
/// every token seen: what a fenced downstream write looks like.
const FENCED_APPEND: &str = r#"
local last = tonumber(redis.call("GET", KEYS[1]) or "0")
if tonumber(ARGV[1]) <= last then return 0 end
redis.call("SET", KEYS[1], ARGV[1])
redis.call("RPUSH", KEYS[2], ARGV[1] .. " " .. ARGV[2])
return 1
"#;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn number(name: &str, default: u64) -> Result<u64, String> {
    arg(name).map_or(Ok(default), |v| {
        v.parse().map_err(|e| format!("{name}: {e}"))
    })
}

/// One worker process: `rounds` times, lock, check exclusion, fenced append, release.
async fn worker(url: &str, run: &str, rounds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::builder().service("ledger").redis_url(url).build()?;
    let mut redis = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let script = redis::Script::new(FENCED_APPEND);
    let (holder, last, ledger) = (
        format!("ledger:{run}:holder"),
        format!("ledger:{run}:last-token"),
        format!("ledger:{run}:lines"),
    );
    let me = std::process::id().to_string();
    let (mut overlaps, mut rejected) = (0u64, 0u64);
    for round in 0..rounds {
        let lock = DistributedLock::acquire(
            &cache,
            &format!("ledger-{run}"),
            Duration::from_secs(5),
            Duration::from_secs(60),
        )
        .await?;
        // Nobody else may be inside while we hold the lock.
        let entered: bool = redis::cmd("SET")
            .arg(&holder)
            .arg(&me)
            .arg("NX")
            .query_async::<Option<String>>(&mut redis)
            .await?
            .is_some();
        if !entered {
            overlaps += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        let accepted: i64 = script
            .key(&last)
            .key(&ledger)
            .arg(lock.fencing_token())
            .arg(format!("pid {me} round {round}"))
            .invoke_async(&mut redis)
            .await?;
        if accepted == 0 {
            rejected += 1;
        }
        if entered {
            let _: () = redis.del(&holder).await?;
        }
        lock.release().await?;
    }
    println!(
        "worker: pid={me} acquisitions={rounds} overlaps={overlaps} fenced_rejections={rejected}"
    );
    Ok(())
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "acgs_cache=warn".into()),
        )
        .init();
    let rounds = number("--rounds", 25)?;
    if std::env::args().any(|a| a == "--worker") {
        let url = arg("--redis-url").ok_or("--redis-url")?;
        let run = arg("--run").ok_or("--run")?;
        return worker(&url, &run, rounds).await;
    }

    let processes = number("--processes", 4)?;
    let (url, own_server) = support::given_or_started(arg("--redis-url"));
    println!("ledger_lock: {processes} processes × {rounds} rounds on one lock, redis at {url}");
    let run = format!("{}-{}", std::process::id(), fastrand::u32(..));
    let workers: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["--worker", "--redis-url", &url, "--run", &run])
                .args(["--rounds", &rounds.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let (mut acquisitions, mut overlaps, mut rejected) = (0, 0, 0);
    for worker in workers {
        let output = worker.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("  {stdout}");
        if !output.status.success() {
            return Err(format!("a worker failed: {stdout}").into());
        }
        acquisitions += field(&stdout, "acquisitions");
        overlaps += field(&stdout, "overlaps");
        rejected += field(&stdout, "fenced_rejections");
    }

    // Every accepted line carries a larger token than the one before it.
    let mut redis = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let lines: Vec<String> = redis.lrange(format!("ledger:{run}:lines"), 0, -1).await?;
    let tokens: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let increasing = tokens.len() == lines.len() && tokens.windows(2).all(|w| w[0] < w[1]);
    println!(
        "ledger: {} lines, fencing tokens {}..={}",
        lines.len(),
        tokens.first().unwrap_or(&0),
        tokens.last().unwrap_or(&0)
    );
    let _: () = redis
        .del(&[
            format!("ledger:{run}:lines"),
            format!("ledger:{run}:last-token"),
        ])
        .await?;
    drop(own_server);
    println!(
        "ledger_lock: processes={processes} acquisitions={acquisitions} overlaps={overlaps} fenced_rejections={rejected} tokens_increasing={increasing}"
    );
    Ok(())
}
