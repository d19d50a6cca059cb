//! Security: an ACL user restricted to the key prefix and the commands the
//! cache needs; a wrong password or user refused at startup with a clear
//! error; TLS against a server with a certificate the test generates; and
//! credentials that never show in `Debug`, `Display`, logs or errors.

use acgs_cache_harness as support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use acgs_cache::rate_limit::DecidedBy;
use acgs_cache::{cached, Cache, Error, RateLimiter, RedisConfig};
use support::{LogSink, RedisServer};

const PASSWORD: &str = "Zr8-kW2-n0tInLogs";

#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
async fn decide(policy_id: u64) -> u64 {
    policy_id * 2
}

/// Everything any test here logged, at every level.
fn logs() -> LogSink {
    static LOGS: OnceLock<LogSink> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogSink::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .init();
        logs
    })
    .clone()
}

fn acl_server() -> RedisServer {
    let server = RedisServer::start();
    let mut rules = vec!["cache-svc", "on", ">Zr8-kW2-n0tInLogs"];
    rules.extend_from_slice(support::CACHE_USER_RULES);
    server.acl_setuser(&rules);
    server
}

fn acl_url(server: &RedisServer, password: &str) -> String {
    format!("redis://cache-svc:{password}@127.0.0.1:{}", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_restricted_to_the_prefix_runs_every_feature() {
    logs();
    let server = acl_server();
    let build = || {
        Cache::builder()
            .service("acl-test")
            .redis_url(acl_url(&server, PASSWORD))
            .fleet_interval(Duration::from_millis(50))
    };
    let writer = build().connect().await.expect("the ACL user connects");
    let reader = build().disable_l1().connect().await.unwrap();

    // Miss (GET + SET), then an L2 hit on another instance.
    assert_eq!(writer.scope(decide(7)).await, 14);
    assert_eq!(reader.scope(decide(7)).await, 14);
    assert_eq!(reader.stats().await.function("decide").unwrap().l2_hits, 1);
    // The invalidation log (XADD, XREAD, XINFO) reaches the other instance.
    let position = writer.invalidate("governance.rules-changed").await.unwrap();
    support::wait_until("the reader hears the event", || {
        reader.log_position() >= position
    })
    .await;
    assert_eq!(reader.scope(decide(7)).await, 14);
    assert_eq!(reader.stats().await.function("decide").unwrap().misses, 1);
    // Locks and the rate limiter (scripts).
    let lock = writer
        .try_lease("report", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();
    let limiter = RateLimiter::builder("login")
        .rate(10, Duration::from_secs(1))
        .burst(10)
        .fail_closed()
        .build(&writer)
        .unwrap();
    let decision = limiter.check("alice").await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.decided_by, DecidedBy::Redis);
    // The fleet view (SCAN, GET) and health (PING).
    let deadline = Instant::now() + Duration::from_secs(5);
    while writer.fleet_stats().await.unwrap().members.len() < 2 {
        assert!(Instant::now() < deadline, "fleet view incomplete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = writer.health().await;
    assert!(
        health.l2.as_ref().is_some_and(|l2| l2.reachable),
        "{health}"
    );
    // Nothing failed on the way.
    let stats = writer.stats().await;
    assert_eq!(stats.totals().errors, 0, "{stats:?}");

    // The user really is confined: keys outside the prefix are refused.
    let refused = server
        .try_cli_as("cache-svc", PASSWORD, &["SET", "payroll:1", "x"])
        .unwrap_err();
    assert!(refused.contains("NOPERM"), "{refused}");
    let refused = server
        .try_cli_as("cache-svc", PASSWORD, &["FLUSHALL"])
        .unwrap_err();
    assert!(refused.contains("NOPERM"), "{refused}");
}

#[tokio::test]
async fn a_wrong_password_or_user_fails_fast_at_startup_with_a_clear_error() {
    logs();
    let server = acl_server();
    for url in [
        acl_url(&server, "wrong-password"),
        format!("redis://nobody:{PASSWORD}@127.0.0.1:{}", server.port()),
    ] {
        let start = Instant::now();
        let error = Cache::builder()
            .redis_url(&url)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect_err("refused credentials must not connect");
        let elapsed = start.elapsed();
        assert!(matches!(error, Error::Auth(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("refused the credentials"), "{message}");
        assert!(!message.contains(PASSWORD) && !message.contains("wrong-password"));
        // It names the user the URL names, not "the default user".
        let user = if url.contains("nobody") {
            "nobody"
        } else {
            "cache-svc"
        };
        assert!(message.contains(&format!("user \"{user}\"")), "{message}");
        // Fast: one refused handshake, not a connect timeout or a retry loop.
        assert!(
            elapsed < Duration::from_secs(2),
            "took {elapsed:?} to report {message}"
        );
    }
    // `requirepass` (the default user): a password-only URL.
    let mut protected = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let error = Cache::builder()
        .redis_url(format!("redis://:nope@127.0.0.1:{}", protected.port()))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Auth(_)), "{error:?}");
    let ok = Cache::builder()
        .redis(RedisConfig::standalone(protected.url()).password(PASSWORD))
        .connect()
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    protected.stop();
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_with_a_private_ca() {
    logs();
    let server = support::TlsServer::start();
    let config = RedisConfig::standalone(server.url()).root_certificate(server.ca_pem());
    let writer = Cache::builder()
        .service("tls-test")
        .redis(config.clone())
        .connect()
        .await
        .expect("TLS connection trusting the test CA");
    let reader = Cache::builder()
        .service("tls-test")
        .redis(config)
        .disable_l1()
        .connect()
        .await
        .unwrap();
    assert_eq!(writer.scope(decide(21)).await, 42);
    assert_eq!(reader.scope(decide(21)).await, 42);
    assert_eq!(reader.stats().await.function("decide").unwrap().l2_hits, 1);

    // Without the CA the server's certificate is not trusted: an error, no panic.
    let untrusted = Cache::builder()
        .redis_url(server.url())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(untrusted.is_err());
    // A plain connection to the TLS port is not answered either.
    let plain = Cache::builder()
        .redis_url(format!("redis://127.0.0.1:{}", server.port()))
        .connect_timeout(Duration::from_millis(500))
        .l2_soft_timeout(Duration::from_millis(200))
        .connect()
        .await;
    assert!(plain.is_err());
}

#[tokio::test]
async fn credentials_never_appear_in_debug_display_logs_or_errors() {
    let logs = logs();
    let server = acl_server();
    let urls = [
        acl_url(&server, PASSWORD),
        format!("redis+sentinel://cache-svc:{PASSWORD}@127.0.0.1:1,127.0.0.1:2/mymaster"),
        format!("redis+cluster://cache-svc:{PASSWORD}@127.0.0.1:1,127.0.0.1:2"),
    ];
    let mut shown = String::new();
    for url in &urls {
        let config: RedisConfig = url.parse().unwrap();
        shown += &format!("{config} {config:?}\n");
        let builder = Cache::builder().redis_url(url).service("redaction");
        shown += &format!("{builder:?}\n");
        let cache = builder.build().unwrap();
        shown += &format!("{cache:?}\n");
    }
    // A working cache, then the same with a wrong password, then an
    // unreachable one: errors, health, stats and every log line.
    let good = Cache::builder()
        .redis_url(acl_url(&server, PASSWORD))
        .build()
        .unwrap();
    good.scope(decide(1)).await;
    shown += &format!("{}\n{:?}\n", good.health().await, good.stats().await);
    let refused = Cache::builder()
        .redis_url(acl_url(&server, &format!("{PASSWORD}x")))
        .build()
        .unwrap();
    refused.scope(decide(2)).await;
    let error = refused.connect().await.unwrap_err();
    shown += &format!("{error} {error:?}\n{}\n", refused.health().await);
    let unreachable = Cache::builder()
        .redis_url(format!(
            "redis+sentinel://cache-svc:{PASSWORD}@127.0.0.1:1/mymaster"
        ))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    unreachable.scope(decide(3)).await;
    let error = unreachable.connect().await.unwrap_err();
    shown += &format!("{error} {error:?}\n{}\n", unreachable.health().await);
    // A socket URL carrying its credentials as query parameters.
    let unix = Cache::builder()
        .redis_url(format!(
            "redis+unix:///tmp/no-such.sock?user=cache-svc&pass={PASSWORD}"
        ))
        .build()
        .unwrap();
    shown += &format!("{unix:?}\n");
    for bad in [
        format!("redis://cache-svc:{PASSWORD}@[::bad"),
        format!("redis+sentinel://cache-svc:{PASSWORD}@h:1"),
        format!("memcached://cache-svc:{PASSWORD}@h:1"),
        // No scheme at all: still a URL to redact.
        format!("cache-svc:{PASSWORD}@127.0.0.1:6379"),
    ] {
        let error = Cache::builder().redis_url(bad).build().unwrap_err();
        shown += &format!("{error} {error:?}\n");
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // background tasks log too
    let logged = logs.text();
    assert!(
        logged.contains("refused the credentials") || shown.contains("refused the credentials"),
        "the refusal was reported"
    );
    assert!(!logged.is_empty(), "the subscriber captured the logs");
    for (what, text) in [("Debug/Display/errors", &shown), ("logs", &logged)] {
        assert!(
            !text.contains(PASSWORD),
            "the password leaked into {what}:\n{text}"
        );
    }
}
