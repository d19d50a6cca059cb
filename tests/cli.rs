//! The operator CLI (`--features cli`) against a real redis-server: each
//! command, its JSON, and its errors on bad input or an unreachable Redis.
#![cfg(feature = "cli")]
// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use acgs_cache_harness as support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, MaxStaleness};
use support::RedisServer;

#[cached(ttl = "compliance_checks", tags = ["tenant.{tenant}"])]
async fn compliance(tenant: u32) -> String {
    format!("computed at {:?}", Instant::now())
}

fn cli(server_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acgs-cache"))
        .arg("--redis-url")
        .arg(server_url)
        .args(args)
        .env_remove("ACGS_CACHE_REDIS_URL")
        .output()
        .expect("run the CLI")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn service(server: &RedisServer) -> Cache {
    Cache::builder()
        .service("cli-svc")
        .redis_url(server.url())
        .fleet_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

#[tokio::test]
async fn health_and_stats_see_the_fleet() {
    let server = RedisServer::start();
    let cache = service(&server);
    cache.scope(compliance(1)).await;
    cache.scope(compliance(1)).await;
    // A publication every 50 ms: wait for one (a loaded machine may delay it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = cli(&server.url(), &["health"]);
        assert!(health.status.success(), "{}", stderr(&health));
        if stdout(&health).contains("1 instance(s) publishing") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", stdout(&health));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The instance publishes from the moment it is built: its first
    // publications may predate the calls. Wait for one that has the row.
    let row = loop {
        let stats = cli(&server.url(), &["stats"]);
        assert!(stats.status.success(), "{}", stderr(&stats));
        let table = stdout(&stats);
        if let Some(row) = table.lines().find(|l| l.contains("compliance")) {
            break row.to_owned();
        }
        assert!(Instant::now() < deadline, "no row: {table}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(row.starts_with("cli-svc"), "{row}");

    // A publication made before the two calls were counted may be the one
    // read first: wait for one that has them.
    loop {
        let json = cli(&server.url(), &["--json", "stats"]);
        let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        if parsed["functions"][0]["stats"]["calls"] == 2 {
            assert_eq!(parsed["functions"][0]["stats"]["l1_hits"], 1, "{parsed}");
            break;
        }
        assert!(Instant::now() < deadline, "{parsed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An instance cut off from Redis (its connections left open) stops
/// publishing what it heard: `health` and `stats` show its lease growing past
/// its bound and flag it STALE, in the table and in the JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flags_an_instance_whose_lease_is_stale() {
    let server = RedisServer::start();
    let proxy = support::TcpProxy::start(server.port());
    let cut_off = Cache::builder()
        .service("cut-off")
        .redis_url(proxy.url())
        .max_staleness(MaxStaleness::Lease(Duration::from_millis(100)))
        .fleet_interval(Duration::ZERO)
        .build()
        .unwrap();
    cut_off.connect().await.unwrap();
    let instance = cut_off.instance_id().to_owned();
    let row = |table: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&instance))
            .map(str::to_owned)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = stdout(&cli(&server.url(), &["health"]));
        if row(&health).is_some_and(|r| r.contains("cut-off") && r.ends_with(" ok")) {
            assert!(health.contains(", 0 stale lease(s)"), "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.freeze();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let health = cli(&server.url(), &["health"]);
    assert!(health.status.success(), "{}", stderr(&health));
    let table = stdout(&health);
    assert!(table.contains(", 1 stale lease(s)"), "{table}");
    let flagged = row(&table).unwrap_or_else(|| panic!("no row: {table}"));
    assert!(
        flagged.contains("STALE") && flagged.contains("100ms"),
        "{flagged}"
    );
    let stats = stdout(&cli(&server.url(), &["stats"]));
    assert!(row(&stats).is_some_and(|r| r.contains("STALE")), "{stats}");
    let json: serde_json::Value =
        serde_json::from_slice(&cli(&server.url(), &["--json", "health"]).stdout).unwrap();
    assert_eq!(
        json["stale_leases"],
        serde_json::json!([instance]),
        "{json}"
    );
    assert_eq!(json["leases"][0]["shortest_lease_ms"], 100, "{json}");
    proxy.thaw();
}

#[tokio::test]
async fn invalidate_reaches_the_services() {
    let server = RedisServer::start();
    let cache = service(&server);
    let first = cache.scope(compliance(7)).await;
    assert_eq!(cache.scope(compliance(7)).await, first);
    let out = cli(&server.url(), &["invalidate", "tenant.7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The service hears the event through the log (within the propagation delay).
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache.scope(compliance(7)).await == first {
        assert!(Instant::now() < deadline, "the invalidation never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bad = cli(&server.url(), &["invalidate", "tenant 7"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("invalid name"), "{}", stderr(&bad));
}

#[tokio::test]
async fn keys_inspect_and_purge() {
    let server = RedisServer::start();
    keys_inspect_and_purge_on(&server.url(), 3).await;
}

/// The same commands on a 3-master cluster, whose entries live on every
/// shard: listings scan each master, purges delete key by key.
#[tokio::test]
async fn keys_inspect_and_purge_on_a_cluster() {
    let cluster = support::ClusterSetup::start(3);
    keys_inspect_and_purge_on(&cluster.url(), 30).await;
}

async fn keys_inspect_and_purge_on(url: &str, tenants: u32) {
    let cache = Cache::builder()
        .service("cli-svc")
        .redis_url(url)
        .fleet_interval(Duration::ZERO)
        .build()
        .unwrap();
    for tenant in 0..tenants {
        cache.scope(compliance(tenant)).await;
    }
    let keys = cli(url, &["keys", "compliance", "--service", "cli-svc"]);
    assert!(keys.status.success(), "{}", stderr(&keys));
    let listed: Vec<String> = stdout(&keys).lines().map(str::to_owned).collect();
    assert_eq!(listed.len(), tenants as usize, "{listed:?}");

    let inspect = cli(url, &["inspect", &listed[0]]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = stdout(&inspect);
    assert!(text.contains("codec        postcard"), "{text}");
    assert!(text.contains("tags         tenant."), "{text}");
    let json = cli(url, &["--json", "inspect", &listed[0]]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(parsed["fresh_for_ms"].as_u64().unwrap() > 0, "{parsed}");
    assert_eq!(parsed["key_matches"], true, "{parsed}");
    assert!(text.contains("(this key)"), "{text}");

    let purge = cli(url, &["purge", "compliance", "--service", "cli-svc"]);
    assert!(purge.status.success(), "{}", stderr(&purge));
    assert!(
        stdout(&purge).contains(&format!("{tenants} key(s) deleted")),
        "{}",
        stdout(&purge)
    );
    let after = cli(url, &["keys", "compliance", "--service", "cli-svc"]);
    assert!(stdout(&after).is_empty(), "{}", stdout(&after));
}

/// One entry's bytes copied under another key: `inspect` says the envelope
/// is bound to another key (a read would count it `wrong_key`).
#[tokio::test]
async fn inspect_names_an_entry_copied_under_another_key() {
    let server = RedisServer::start();
    let cache = service(&server);
    cache.scope(compliance(1)).await;
    cache.scope(compliance(2)).await;
    let keys = stdout(&cli(
        &server.url(),
        &["keys", "compliance", "--service", "cli-svc"],
    ));
    let listed: Vec<&str> = keys.lines().collect();
    assert_eq!(listed.len(), 2, "{keys}");
    let mut raw = server.raw().await;
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(listed[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(listed[1])
        .arg(bytes)
        .query_async(&mut raw)
        .await
        .unwrap();
    let own = stdout(&cli(&server.url(), &["inspect", listed[0]]));
    assert!(own.contains("(this key)"), "{own}");
    let copied = stdout(&cli(&server.url(), &["inspect", listed[1]]));
    assert!(copied.contains("ANOTHER key"), "{copied}");
    let json: serde_json::Value =
        serde_json::from_slice(&cli(&server.url(), &["--json", "inspect", listed[1]]).stdout)
            .unwrap();
    assert_eq!(json["key_matches"], false, "{json}");
}

#[tokio::test]
async fn bad_input_and_an_unreachable_redis_are_clear_errors() {
    let server = RedisServer::start();
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg("acgs:foreign")
        .arg("not an envelope")
        .query_async(&mut raw)
        .await
        .unwrap();
    let foreign = cli(&server.url(), &["inspect", "acgs:foreign"]);
    assert_eq!(foreign.status.code(), Some(1));
    assert!(
        stderr(&foreign).contains("not an acgs-cache entry"),
        "{}",
        stderr(&foreign)
    );
    let missing = cli(&server.url(), &["inspect", "acgs:nothing"]);
    assert_eq!(missing.status.code(), Some(1));
    // Glob characters in a name are literal: `comp*` is no function.
    let glob = cli(&server.url(), &["keys", "comp*", "--service", "cli-svc"]);
    assert_eq!(glob.status.code(), Some(0));
    assert!(stderr(&glob).contains("0 key(s)"), "{}", stderr(&glob));

    // The live view needs a terminal (the test's stdout is a pipe).
    let monitor = cli(&server.url(), &["monitor"]);
    assert_eq!(monitor.status.code(), Some(1));
    assert!(
        stderr(&monitor).contains("needs a terminal"),
        "{}",
        stderr(&monitor)
    );

    let closed = support::closed_port_url().replace("redis://", "redis://ops:hunter2@");
    let down = cli(&closed, &["health"]);
    assert_eq!(down.status.code(), Some(2));
    let message = stderr(&down);
    assert!(
        message.contains("redis at redis://***@127.0.0.1:"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2") && !message.contains("ops"),
        "{message}"
    );
}

/// Every command, as the ACL user the README describes (its prefix and the
/// listed commands only): the README's list is complete.
#[tokio::test]
async fn every_command_runs_as_the_readme_acl_user() {
    let server = RedisServer::start();
    let mut rules = vec!["cache-svc", "on", ">acl-cli-pw"];
    rules.extend_from_slice(support::CACHE_USER_RULES);
    server.acl_setuser(&rules);
    let url = format!("redis://cache-svc:acl-cli-pw@127.0.0.1:{}", server.port());
    let cache = Cache::builder()
        .service("cli-svc")
        .redis_url(&url)
        .fleet_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    cache.scope(compliance(3)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let keys = cli(&url, &["keys", "compliance", "--service", "cli-svc"]);
    assert!(keys.status.success(), "keys: {}", stderr(&keys));
    let key = stdout(&keys).lines().next().unwrap_or_default().to_owned();
    assert!(key.starts_with("acgs:cli-svc:compliance:"), "{key:?}");
    for args in [
        vec!["stats"],
        vec!["health"],
        vec!["invalidate", "tenant.3"],
        vec!["inspect", key.as_str()],
        vec!["purge", "compliance", "--service", "cli-svc"],
        vec!["--json", "stats"],
    ] {
        let out = cli(&url, &args);
        assert!(
            out.status.success(),
            "{args:?} as the ACL user: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}
