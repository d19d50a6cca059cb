//! Two instances of a service in separate processes: an invalidation sent by
//! one reaches the other's L1.
//!
//! ```text
//! cargo run --release --example multi_instance                         # starts its own redis-server
//! cargo run --release --example multi_instance -- --redis-url redis://127.0.0.1:6379
//! cargo run --release --example multi_instance -- --l1-only            # no Redis: the in-process part
//! ```
//!
//! The parent process starts instances A and B (this program again, with
//! `--instance`), and drives them through their stdin: A evaluates a policy
//! decision (computed, stored in its L1 and in Redis), B evaluates the same
//! (from Redis, now in its L1 too), then A changes the rule in the database
//! and invalidates `governance.rules.updated` while B polls its decision. B,
//! which would otherwise keep serving the old rule from L1 for up to 60 s,
//! recomputes it as soon as it hears the event from the invalidation log.
//! The last line is
//! `multi_instance: instances=2 invalidation_seen_by_other=true propagation_ms=…`.
//!
//! Cross-process invalidation needs Redis: with `--l1-only`, or when no
//! `--redis-url`/`ACGS_CACHE_REDIS_URL` is given and `redis-server` is not
//! installed, it says so and shows the same steps inside one process.

use acgs_cache_harness as support;

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acgs_cache::{cached, Cache};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const POLICY: u64 = 7;
const SUBJECT: &str = "alice";
const EVENT: &str = "governance.rules.updated";
/// How long B polls for the new rule before giving up.
const WATCH_LIMIT: Duration = Duration::from_secs(5);
/// How long the parent waits for any one answer of an instance.
const ANSWER_LIMIT: Duration = Duration::from_secs(15);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub rule_version: u64,
    /// The instance whose computation produced this value.
    pub computed_by: String,
}

/// The database the instances read the rule from: a Redis key they share,
/// or, L1 only, this process's memory.
enum RuleStore {
    Redis {
        db: redis::aio::MultiplexedConnection,
        key: String,
    },
    Local(AtomicU64),
}

impl RuleStore {
    async fn version(&self) -> Result<u64, redis::RedisError> {
        match self {
            RuleStore::Redis { db, key } => db.clone().get(key).await,
            RuleStore::Local(version) => Ok(version.load(Ordering::SeqCst)),
        }
    }

    async fn bump(&self) -> Result<u64, redis::RedisError> {
        match self {
            RuleStore::Redis { db, key } => db.clone().incr(key, 1).await,
            RuleStore::Local(version) => Ok(version.fetch_add(1, Ordering::SeqCst) + 1),
        }
    }
}

static STORE: OnceLock<RuleStore> = OnceLock::new();
static INSTANCE_NAME: OnceLock<String> = OnceLock::new();

fn store() -> &'static RuleStore {
    STORE.get().expect("the store is set before the first call")
}

/// The decision both instances cache: 5 minutes in Redis, 60 s in L1, dropped
/// on every instance by any `governance.*` event.
#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
async fn evaluate_policy(policy_id: u64, subject: String) -> Result<Decision, redis::RedisError> {
    tokio::time::sleep(Duration::from_millis(2)).await; // the rule engine's work
    let rule_version = store().version().await?;
    Ok(Decision {
        // Version 1 of the rule denies odd policies; version 2 allows alice.
        allow: policy_id.is_multiple_of(2) || (rule_version >= 2 && subject == "alice"),
        rule_version,
        computed_by: INSTANCE_NAME.get().cloned().unwrap_or_default(),
    })
}

/// Calls `evaluate_policy` and says where the answer came from, by the
/// function's counters before and after (nothing else calls it meanwhile).
async fn evaluate_and_trace(cache: &Cache) -> Result<(Decision, &'static str), Error> {
    let counters = |stats: acgs_cache::StatsSnapshot| {
        stats
            .function("evaluate_policy")
            .map(|f| (f.l1_hits, f.l2_hits))
            .unwrap_or_default()
    };
    let before = counters(cache.stats().await);
    let decision = evaluate_policy(POLICY, SUBJECT.to_owned()).await?;
    let after = counters(cache.stats().await);
    let source = if after.0 > before.0 {
        "l1"
    } else if after.1 > before.1 {
        "l2"
    } else {
        "computed"
    };
    Ok((decision, source))
}

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "acgs_cache=warn".into()),
        )
        .init();
    if let Some(name) = arg("--instance") {
        return instance(name).await;
    }
    let given = arg("--redis-url").or_else(|| std::env::var("ACGS_CACHE_REDIS_URL").ok());
    if flag("--l1-only") {
        return in_process("--l1-only was given").await;
    }
    if given.is_none() && !redis_server_installed() {
        return in_process("no --redis-url, no ACGS_CACHE_REDIS_URL and no redis-server to start")
            .await;
    }
    two_processes(given).await
}

fn redis_server_installed() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The parent: starts A and B, drives them, reports.
async fn two_processes(given: Option<String>) -> Result<(), Error> {
    let (url, own_server) = support::given_or_started(given);
    println!(
        "multi_instance: redis at {url}{}",
        if own_server.is_some() {
            " (started for this run)"
        } else {
            ""
        }
    );
    // A key space of this run only, so earlier runs' entries and events do not interfere.
    let run = format!("{}-{}", std::process::id(), fastrand::u32(..));
    let mut db = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot reach Redis at {url}: {e}"))?;
    let _: () = db.set(rule_key(&run), 1u64).await?;

    let mut a = Instance::spawn("A", &url, &run)?;
    let mut b = Instance::spawn("B", &url, &run)?;
    println!("started {} and {}", a.ready().await?, b.ready().await?);

    let first = a.ask("get").await?;
    println!("1. A evaluates policy {POLICY} for {SUBJECT}: {first}");
    let shared = b.ask("get").await?;
    println!("2. B evaluates the same:            {shared}");
    let again = b.ask("get").await?;
    println!("3. B again:                         {again}");

    let watching = b.ask("watch").await?;
    println!("4. B polls its decision; {watching}");
    let sent = a.ask(&format!("update-and-invalidate {EVENT}")).await?;
    println!("5. A writes rule version 2 to the database, then invalidates {EVENT}: {sent}");
    let seen = b.answer().await?;
    println!("6. B answers:                       {seen}");

    let recomputed_by_b = field::<u64>(&seen, "rule_version") == Some(2)
        && field::<String>(&seen, "computed_by").as_deref() == Some("B");
    let heard_us: Option<u64> = field(&seen, "heard_after_us");
    let seen_by_other = recomputed_by_b && heard_us.is_some();
    if let (Some(sent_at), Some(answered)) = (
        field::<u128>(&sent, "at_us"),
        field::<u128>(&seen, "answered_us"),
    ) {
        println!(
            "   B answered the new rule {:.2} ms after A's invalidate call began (its 2 ms recomputation included); \
             B's log tail heard the event {:.2} ms after A sent it",
            answered.saturating_sub(sent_at) as f64 / 1000.0,
            heard_us.unwrap_or(0) as f64 / 1000.0
        );
    }
    let propagation_ms = heard_us.map_or(f64::NAN, |us| us as f64 / 1000.0);

    a.quit().await?;
    b.quit().await?;
    if own_server.is_none() {
        // A Redis of the user's: leave nothing of this run behind.
        let mut keys: Vec<String> = Vec::new();
        let mut iter: redis::AsyncIter<String> = db.scan_match(format!("mi-{run}:*")).await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        drop(iter);
        keys.push(rule_key(&run));
        let _: () = db.del(keys).await?;
    }
    drop(own_server);
    println!(
        "multi_instance: instances=2 invalidation_seen_by_other={seen_by_other} propagation_ms={propagation_ms:.2}"
    );
    if !seen_by_other {
        std::process::exit(1);
    }
    Ok(())
}

fn rule_key(run: &str) -> String {
    format!("mi-{run}:db:rule:{POLICY}")
}

/// The `key=value` field `name` of an instance's answer.
fn field<T: std::str::FromStr>(line: &str, name: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A child process running `instance()`, talked to one line at a time.
struct Instance {
    name: &'static str,
    child: Child,
    commands: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Instance {
    fn spawn(name: &'static str, url: &str, run: &str) -> Result<Instance, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--instance", name, "--redis-url", url, "--run", run])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true) // the parent failing must not leave instances behind
            .spawn()?;
        let commands = child.stdin.take().ok_or("no stdin")?;
        let answers = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Instance {
            name,
            child,
            commands,
            answers,
        })
    }

    async fn answer(&mut self) -> Result<String, Error> {
        match tokio::time::timeout(ANSWER_LIMIT, self.answers.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(format!("instance {} exited", self.name).into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                Err(format!("instance {} did not answer in {ANSWER_LIMIT:?}", self.name).into())
            }
        }
    }

    async fn ask(&mut self, command: &str) -> Result<String, Error> {
        self.commands
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.answer().await
    }

    /// Its first line, printed once its cache is built.
    async fn ready(&mut self) -> Result<String, Error> {
        let line = self.answer().await?;
        Ok(format!("{} ({line})", self.name))
    }

    async fn quit(mut self) -> Result<(), Error> {
        drop(self.commands); // end of input: the instance exits
        let status = self.child.wait().await?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("instance {} exited with {status}", self.name).into())
        }
    }
}

/// An instance: a cache on the shared Redis, commands from stdin, one answer
/// line per command on stdout (`watch` answers twice: at once, and when the
/// rule changed).
async fn instance(name: String) -> Result<(), Error> {
    let url = arg("--redis-url").ok_or("--redis-url")?;
    let run = arg("--run").ok_or("--run")?;
    let db = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    STORE
        .set(RuleStore::Redis {
            db,
            key: rule_key(&run),
        })
        .map_err(|_| "store set twice")?;
    INSTANCE_NAME.set(name).map_err(|_| "name set twice")?;
    let cache = Cache::builder()
        .service("multi-instance")
        .prefix(format!("mi-{run}"))
        .redis_url(url)
        .build()?;
    cache
        .clone()
        .install_default()
        .map_err(|_| "a default cache already exists")?;

    // The log tail starts with the first cached call; that call waits (at most
    // the L2 soft timeout) for the log to be read before it trusts Redis.
    println!("pid {}", std::process::id());

    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        let mut words = command.split_whitespace();
        match (words.next(), words.next()) {
            (Some("get"), None) => {
                let (d, source) = evaluate_and_trace(&cache).await?;
                println!(
                    "rule_version={} allow={} computed_by={} source={source}",
                    d.rule_version, d.allow, d.computed_by
                );
            }
            (Some("watch"), None) => {
                let (old, source) = evaluate_and_trace(&cache).await?;
                println!(
                    "it answers rule_version={} source={source}",
                    old.rule_version
                );
                watch(&cache, old).await?;
            }
            (Some("update-and-invalidate"), Some(event)) => {
                let version = store().bump().await?;
                let at_us = unix_micros();
                let position = acgs_cache::invalidate(event).await?;
                println!("rule_version={version} position={position} at_us={at_us}");
            }
            _ => println!("unknown command {command:?}"),
        }
    }
    Ok(())
}

/// Polls the cached decision until it is no longer `old`: every poll is an L1
/// hit until this instance hears the invalidation, then one recomputation.
async fn watch(cache: &Cache, old: Decision) -> Result<(), Error> {
    let deadline = Instant::now() + WATCH_LIMIT;
    let mut polls = 0u64;
    loop {
        let d = evaluate_policy(POLICY, SUBJECT.to_owned()).await?;
        polls += 1;
        if d != old {
            let answered_us = unix_micros();
            // The cache's own figure: from the sender's clock reading in the
            // log record to this instance's tail reading it (one event heard,
            // so its median is that event's delay).
            let heard_us = cache.stats().await.invalidations.propagation_p50_us;
            println!(
                "rule_version={} allow={} computed_by={} polls={polls} answered_us={answered_us} heard_after_us={}",
                d.rule_version,
                d.allow,
                d.computed_by,
                heard_us.map_or("?".to_owned(), |us| us.to_string())
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            println!(
                "rule_version={} after {WATCH_LIMIT:?}: the invalidation did not arrive",
                d.rule_version
            );
            return Ok(());
        }
        // A timer would add its 1 ms granularity: yield instead.
        tokio::task::yield_now().await;
    }
}

/// Without Redis: one instance, the same steps, the invalidation local.
async fn in_process(why: &str) -> Result<(), Error> {
    println!("multi_instance: L1 only ({why})");
    println!("  cross-process invalidation needs Redis (pass --redis-url or set ACGS_CACHE_REDIS_URL); showing the in-process part");
    STORE
        .set(RuleStore::Local(AtomicU64::new(1)))
        .map_err(|_| "store set twice")?;
    INSTANCE_NAME
        .set("local".to_owned())
        .map_err(|_| "name set twice")?;
    let cache = Cache::builder().service("multi-instance").build()?;
    cache
        .clone()
        .install_default()
        .map_err(|_| "a default cache already exists")?;

    let show = |step: &str, (d, source): (Decision, &str)| {
        println!(
            "{step} rule_version={} allow={} computed_by={} source={source}",
            d.rule_version, d.allow, d.computed_by
        );
        d
    };
    let first = show("1. evaluate:", evaluate_and_trace(&cache).await?);
    show("2. again:   ", evaluate_and_trace(&cache).await?);
    let version = store().bump().await?;
    let position = acgs_cache::invalidate(EVENT).await?;
    println!("3. rule version {version} written, {EVENT} invalidated at log position {position}");
    let after = show("4. evaluate:", evaluate_and_trace(&cache).await?);
    let recomputed = after.rule_version == version && after != first;
    println!(
        "multi_instance: instances=1 redis=none invalidation_seen_by_other=n/a recomputed_in_process={recomputed}"
    );
    if !recomputed {
        std::process::exit(1);
    }
    Ok(())
}
