//! The test harness of acgs-cache: real Redis topologies (standalone,
//! replicas, Sentinel, Cluster, TLS) made of `redis-server` / `redis-cli` /
//! `openssl` processes on free ports and stopped on drop (`topology.rs`), a
//! TCP proxy that partitions a client without closing its connections
//! (`proxy.rs`), log lines kept in memory (`capture.rs`), the report
//! programs' command lines (`args.rs`), and the helpers the integration tests, the example
//! programs and the benches share. Not published.
#![forbid(unsafe_code)]

mod args;
mod capture;
mod proxy;
mod topology;

use std::path::PathBuf;

pub use args::{arg, flag};
pub use capture::LogSink;
pub use proxy::TcpProxy;
pub use topology::*;

impl RedisServer {
    /// A raw redis-rs connection, to look at or tamper with what the cache
    /// stored. Its requests may take 30 s (redis-rs's default is 500 ms, which
    /// planting a 100 MB value on a loaded machine can exceed).
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(30)));
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect to the test redis-server")
    }
}

/// An example program built by `cargo test` (which builds the examples
/// beside the tests): `target/<profile>/examples/<name>`.
pub fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run through `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// The number after `name=` in a report line.
pub fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// Polls `done` every 10 ms until it holds; panics naming `what` after 5 s.
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The ACL rules the README gives for a service user (`ACL SETUSER cache-svc on >… ` + these).
/// The rules of a service user: its own keys (and the shared log under the
/// prefix), no channels, and only the commands the cache sends.
pub const CACHE_USER_RULES: &[&str] = &[
    "resetchannels",
    "~acgs:*",
    "-@all",
    "+get",
    "+set",
    "+del",
    "+incr",
    "+pexpire",
    "+time",
    "+exists",
    "+scan",
    "+ping",
    "+unwatch",
    "+xadd",
    "+xread",
    "+xinfo|stream",
    "+xinfo|groups",
    "+xgroup|create",
    "+xgroup|destroy",
    "+xsetid",
    "+xlen",
    "+hset",
    "+hget",
    "+hgetall",
    "+getrange",
    "+info",
    "+wait",
    "+pttl",
    "+unlink",
    "+evalsha",
    "+script|load",
];
