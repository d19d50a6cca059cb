//! L1 and L2 behaviour against a real redis-server.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use acgs_cache::{cached, Cache, PolicyOverride};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use support::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Decision {
    policy_id: u64,
    subject: String,
    allow: bool,
}

#[cached(ttl = "policy_decision")]
async fn decide(policy_id: u64, subject: &str) -> Decision {
    Decision {
        policy_id,
        subject: subject.to_owned(),
        allow: policy_id.is_multiple_of(2),
    }
}

fn cache(server: &RedisServer, service: &str) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .service(service)
        .build()
        .unwrap()
}

/// A cache without L1: every call reads L2.
fn l2_only(server: &RedisServer, service: &str) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .service(service)
        .disable_l1()
        .build()
        .unwrap()
}

/// `len` letters that do not compress (xorshift), the same on every run.
fn noisy_text(len: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

async fn keys(server: &RedisServer, pattern: &str) -> Vec<String> {
    let mut raw = server.raw().await;
    let mut found: Vec<String> = raw.scan_match(pattern).await.unwrap().collect().await;
    found.sort();
    found
}

// `scan_match` yields an async iterator; collect it.
trait CollectAsync {
    async fn collect(self) -> Vec<String>;
}
impl CollectAsync for redis::AsyncIter<'_, String> {
    async fn collect(mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(item) = self.next_item().await {
            out.push(item.unwrap());
        }
        out
    }
}

#[tokio::test]
async fn l1_hit_then_l2_hit_from_a_second_instance() {
    let server = RedisServer::start();
    let first = cache(&server, "tiers-shared");
    let second = cache(&server, "tiers-shared");

    let a = first.scope(decide(7, "alice")).await;
    let b = first.scope(decide(7, "alice")).await;
    let c = second.scope(decide(7, "alice")).await;
    let d = second.scope(decide(7, "alice")).await;
    assert_eq!(
        a,
        Decision {
            policy_id: 7,
            subject: "alice".into(),
            allow: false
        }
    );
    assert!(a == b && b == c && c == d);

    let s1 = first.stats().await;
    let f1 = s1.function("decide").unwrap();
    assert_eq!((f1.calls, f1.misses, f1.l1_hits, f1.l2_hits), (2, 1, 1, 0));
    let s2 = second.stats().await;
    let f2 = s2.function("decide").unwrap();
    assert_eq!((f2.calls, f2.misses, f2.l1_hits, f2.l2_hits), (2, 0, 1, 1));
    assert_eq!(f2.errors, 0);

    // The entry sits under the documented layout, with the policy's TTL.
    let stored = keys(&server, "acgs:tiers-shared:decide:*").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let parts: Vec<&str> = stored[0].split(':').collect();
    assert_eq!(parts.len(), 5);
    assert_eq!((parts[3].len(), parts[4].len()), (16, 32));
    let ttl_ms: i64 = server.raw().await.pttl(&stored[0]).await.unwrap();
    assert!(ttl_ms > 290_000 && ttl_ms <= 300_000, "{ttl_ms}");
}

static SHORT: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "400ms")]
async fn short_lived(n: u32) -> u32 {
    SHORT.fetch_add(1, Ordering::SeqCst);
    n * 2
}

#[tokio::test]
async fn entries_expire_in_both_tiers() {
    let server = RedisServer::start();
    let cache = cache(&server, "tiers-expiry");
    let before = SHORT.load(Ordering::SeqCst);
    assert_eq!(cache.scope(short_lived(21)).await, 42);
    assert_eq!(cache.scope(short_lived(21)).await, 42);
    assert_eq!(SHORT.load(Ordering::SeqCst) - before, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        keys(&server, "acgs:tiers-expiry:*").await.is_empty(),
        "L2 entry expired"
    );
    assert_eq!(cache.scope(short_lived(21)).await, 42);
    assert_eq!(
        SHORT.load(Ordering::SeqCst) - before,
        2,
        "recomputed after expiry"
    );
    let stats = cache.stats().await;
    let f = stats.function("short_lived").unwrap();
    assert_eq!((f.misses, f.l1_hits, f.l2_hits), (2, 1, 0));
}

#[tokio::test]
async fn run_time_policy_override_changes_both_tiers() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .service("tiers-override")
        .policy_override(
            "policy_decision",
            PolicyOverride {
                ttl: Some(Duration::from_millis(300)),
                ..PolicyOverride::default()
            },
        )
        .build()
        .unwrap();
    cache.scope(decide(1000, "override")).await;
    let stored = keys(&server, "acgs:tiers-override:decide:*").await;
    let ttl_ms: i64 = server.raw().await.pttl(&stored[0]).await.unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= 300,
        "L2 TTL follows the override: {ttl_ms}"
    );
    cache.scope(decide(1000, "override")).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    cache.scope(decide(1000, "override")).await;
    let f = cache.stats().await.function("decide").cloned().unwrap();
    assert_eq!(
        (f.misses, f.l1_hits),
        (2, 1),
        "L1 expired with the overridden TTL too"
    );
}

#[tokio::test]
async fn corrupt_foreign_and_mismatched_entries_are_counted_misses_and_overwritten() {
    let server = RedisServer::start();
    let writer = cache(&server, "tiers-corrupt");
    writer.scope(decide(5, "mallory")).await;
    let key = keys(&server, "acgs:tiers-corrupt:decide:*").await.remove(0);
    let good: Vec<u8> = server.raw().await.get(&key).await.unwrap();

    let mut wrong_fingerprint = good.clone();
    // Bytes 4..12 hold the fingerprint (after magic, version, codec,
    // flags), little-endian: flipping its lowest bit keeps the header
    // parseable.
    wrong_fingerprint[4] ^= 0x01;
    let mut future_version = good.clone();
    future_version[1] = acgs_cache::FORMAT_VERSION + 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt", b"\x00\x01garbage".to_vec()),
        ("corrupt", good[..good.len() / 2].to_vec()),
        ("corrupt", br#"{"written":"by another program"}"#.to_vec()),
        ("unknown_version", future_version),
        ("fingerprint_mismatch", wrong_fingerprint),
        // Appended or flipped payload bytes fail the payload checksum.
        ("corrupt", [&good[..], b"trailing"].concat()),
        ("corrupt", {
            let mut flipped = good.clone();
            *flipped.last_mut().unwrap() ^= 0x40;
            flipped
        }),
    ];
    for (i, (reason, bytes)) in cases.into_iter().enumerate() {
        let reader = cache(&server, "tiers-corrupt");
        let _: () = server.raw().await.set(&key, bytes).await.unwrap();
        let value = reader.scope(decide(5, "mallory")).await;
        assert_eq!(
            value,
            Decision {
                policy_id: 5,
                subject: "mallory".into(),
                allow: false
            },
            "case {i}"
        );
        let stats = reader.stats().await;
        let f = stats.function("decide").unwrap();
        assert_eq!((f.misses, f.l2_hits), (1, 0), "case {i}: recomputed");
        assert_eq!(
            f.rejected.values().sum::<u64>(),
            1,
            "case {i}: exactly one rejection: {:?}",
            f.rejected
        );
        assert!(
            f.rejected.contains_key(reason),
            "case {i}: {:?}",
            f.rejected
        );
        let rewritten: Vec<u8> = server.raw().await.get(&key).await.unwrap();
        assert_eq!(
            rewritten,
            good_without_time(&good, &rewritten),
            "case {i}: overwritten with a valid entry"
        );
    }
}

/// Entries an earlier build wrote (envelope format 1, a postcard header, and
/// format 2, which did not bind the key) are misses counted as
/// `unknown_version`, recomputed and overwritten in format 3 — never read as
/// values.
#[tokio::test]
async fn entries_of_earlier_formats_are_misses_and_are_overwritten() {
    let server = RedisServer::start();
    let writer = cache(&server, "tiers-old-formats");
    let value = writer.scope(decide(6, "trent")).await;
    let key = keys(&server, "acgs:tiers-old-formats:decide:*")
        .await
        .remove(0);
    let v3: Vec<u8> = server.raw().await.get(&key).await.unwrap();
    assert_eq!(v3[..2], [acgs_cache::MAGIC, 3]);
    // The same entry as format 1 wrote it (magic, 1, the header as
    // postcard, the payload), and as format 2 did (no key field).
    let (header, payload) = acgs_cache::decode_header(&v3).unwrap();
    let mut v1 = postcard::to_extend(&header, vec![acgs_cache::MAGIC, 1]).unwrap();
    v1.extend_from_slice(payload);
    let mut v2 = v3.clone();
    v2[1] = 2;
    v2.drain(52..60);
    for (i, old) in [v1, v2].into_iter().enumerate() {
        let _: () = server.raw().await.set(&key, &old).await.unwrap();
        let reader = cache(&server, "tiers-old-formats");
        assert_eq!(reader.scope(decide(6, "trent")).await, value);
        let stats = reader.stats().await;
        let f = stats.function("decide").unwrap();
        assert_eq!((f.l2_hits, f.misses), (0, 1), "format {}: {f:?}", i + 1);
        assert_eq!(f.rejected.get("unknown_version"), Some(&1), "{f:?}");
        assert_eq!(f.rejected.values().sum::<u64>(), 1, "{f:?}");
        let rewritten: Vec<u8> = server.raw().await.get(&key).await.unwrap();
        assert_eq!(rewritten[..2], [acgs_cache::MAGIC, 3]);
    }
}

/// A hostile copy: the bytes of one argument's entry put under another
/// argument's key of the same function pass the magic, version, fingerprint,
/// checksum and invalidation checks — only the key the envelope binds tells
/// them apart. They are a `wrong_key` miss, and the call gets its own value.
#[tokio::test]
async fn an_entry_copied_under_another_key_is_a_counted_miss_not_its_value() {
    let server = RedisServer::start();
    let writer = cache(&server, "tiers-wrong-key");
    let pattern = "acgs:tiers-wrong-key:decide:*";
    let six = writer.scope(decide(6, "trent")).await;
    let six_key = keys(&server, pattern).await.remove(0);
    let seven = writer.scope(decide(7, "trent")).await;
    let seven_key = keys(&server, pattern)
        .await
        .into_iter()
        .find(|k| *k != six_key)
        .unwrap();
    assert_ne!(six, seven);
    let copied: Vec<u8> = server.raw().await.get(&six_key).await.unwrap();
    let (header, _) = acgs_cache::decode_header(&copied).unwrap();
    let (theirs, _) = acgs_cache::decode_header(
        &server
            .raw()
            .await
            .get::<_, Vec<u8>>(&seven_key)
            .await
            .unwrap(),
    )
    .unwrap();
    // Everything a read checks, other than the key, matches.
    assert_eq!(
        (header.fingerprint, header.codec, header.tags.clone()),
        (theirs.fingerprint, theirs.codec, theirs.tags.clone())
    );
    assert_ne!(header.key, theirs.key);
    let _: () = server.raw().await.set(&seven_key, &copied).await.unwrap();

    let reader = cache(&server, "tiers-wrong-key");
    assert_eq!(reader.scope(decide(7, "trent")).await, seven);
    let stats = reader.stats().await;
    let f = stats.function("decide").unwrap();
    assert_eq!((f.l2_hits, f.misses), (0, 1), "{f:?}");
    assert_eq!(f.rejected.get("wrong_key"), Some(&1), "{f:?}");
    assert_eq!(f.rejected.values().sum::<u64>(), 1, "{f:?}");
}

/// The rewritten entry differs from the first one only in its timestamps:
/// compare everything but the header's time fields by decoding both.
fn good_without_time(good: &[u8], rewritten: &[u8]) -> Vec<u8> {
    let (a, pa) = acgs_cache::decode_header(good).unwrap();
    let (b, pb) = acgs_cache::decode_header(rewritten).unwrap();
    assert_eq!(
        (a.fingerprint, a.codec, &a.tags, pa),
        (b.fingerprint, b.codec, &b.tags, pb)
    );
    rewritten.to_vec()
}

#[cached(ttl = "api_responses", codec = "json")]
async fn api_response(path: String) -> Vec<String> {
    vec![path, "ok".to_owned()]
}

#[tokio::test]
async fn json_codec_is_readable_in_redis_and_round_trips() {
    let server = RedisServer::start();
    let first = cache(&server, "tiers-json");
    let value = first.scope(api_response("/v1/health".into())).await;
    let key = keys(&server, "acgs:tiers-json:api_response:*")
        .await
        .remove(0);
    let bytes: Vec<u8> = server.raw().await.get(&key).await.unwrap();
    let (header, payload) = acgs_cache::decode_header(&bytes).unwrap();
    assert_eq!(header.codec, acgs_cache::Codec::Json.id());
    assert_eq!(payload, br#"["/v1/health","ok"]"#);
    let second = cache(&server, "tiers-json");
    assert_eq!(second.scope(api_response("/v1/health".into())).await, value);
    assert_eq!(
        second
            .stats()
            .await
            .function("api_response")
            .unwrap()
            .l2_hits,
        1
    );
}

#[tokio::test]
async fn large_values_are_compressed_and_oversize_values_not_stored() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .service("tiers-size")
        .max_value_bytes(64 * 1024)
        .build()
        .unwrap();
    let big = cache.scope(api_response("x".repeat(20_000))).await;
    let key = keys(&server, "acgs:tiers-size:api_response:*")
        .await
        .remove(0);
    let bytes: Vec<u8> = server.raw().await.get(&key).await.unwrap();
    let (header, _) = acgs_cache::decode_header(&bytes).unwrap();
    assert_ne!(header.flags & acgs_cache::FLAG_COMPRESSED, 0);
    assert!(
        bytes.len() < 2_000,
        "20 kB of 'x' compress well: {}",
        bytes.len()
    );
    assert_eq!(big[0].len(), 20_000);

    // Random-ish content does not compress: 100 kB exceeds the 64 KiB limit.
    let noisy = noisy_text(100_000);
    let value = cache.scope(api_response(noisy.clone())).await;
    assert_eq!(value[0], noisy, "the caller still gets its value");
    let stats = cache.stats().await;
    assert_eq!(
        stats.function("api_response").unwrap().errors,
        1,
        "oversize counted"
    );
    assert_eq!(
        keys(&server, "acgs:tiers-size:api_response:*").await.len(),
        1,
        "not written to L2"
    );
    cache.scope(api_response(noisy)).await;
    let f = cache
        .stats()
        .await
        .function("api_response")
        .cloned()
        .unwrap();
    assert_eq!(
        (f.misses, f.l1_hits),
        (3, 0),
        "not cached in L1 either (the 20 kB value was the first miss)"
    );
}

/// An entry larger than the first read (64 KiB on the shared lane) is read
/// whole by another instance: the rest comes from a connection of its own.
#[tokio::test]
async fn an_entry_larger_than_the_first_read_is_an_l2_hit_elsewhere() {
    let server = RedisServer::start();
    let writer = cache(&server, "tiers-large");
    let reader = l2_only(&server, "tiers-large");
    // Incompressible, so the stored envelope is ~200 kB too.
    let noisy = noisy_text(200_000);
    writer.scope(api_response(noisy.clone())).await;
    let key = keys(&server, "acgs:tiers-large:api_response:*")
        .await
        .remove(0);
    let stored: Vec<u8> = server.raw().await.get(&key).await.unwrap();
    assert!(stored.len() > 64 * 1024, "{} bytes", stored.len());
    for _ in 0..2 {
        assert_eq!(reader.scope(api_response(noisy.clone())).await[0], noisy);
    }
    let stats = reader.stats().await;
    let f = stats.function("api_response").unwrap();
    assert_eq!((f.l2_hits, f.misses, f.errors), (2, 0, 0), "{f:?}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

#[cached(ttl = "user_sessions", name = "golden_profile")]
async fn load_profile(id: u64, tenant: &str) -> Profile {
    Profile {
        id,
        name: format!("{tenant}-{id}"),
    }
}

/// The digest of `(42u64, "alice")` is pinned in the runtime's unit tests
/// (and cross-checked with another XXH3 implementation); this pins the whole
/// L2 key a real cached function writes, so a change to the key layout or to
/// the macro's fingerprint input (which would orphan every deployed entry)
/// cannot go unnoticed.
#[tokio::test]
async fn key_of_a_cached_function_is_a_golden_value() {
    let server = RedisServer::start();
    let cache = cache(&server, "golden");
    assert_eq!(
        cache.scope(load_profile(42, "alice")).await.name,
        "alice-42"
    );
    let stored = keys(&server, "acgs:golden:*").await;
    assert_eq!(stored, vec![GOLDEN_KEY.to_owned()]);
    let fingerprint = acgs_cache::fingerprint("tiers", "load_profile(u64,&str)key()->Profile", 0);
    assert!(
        GOLDEN_KEY.contains(&format!(":{fingerprint:016x}:")),
        "fingerprint input is module path + normalized signature"
    );
}

const GOLDEN_KEY: &str =
    "acgs:golden:golden_profile:978713acac87a1e8:5514734bbf207ef81579318b2b87f405";

#[tokio::test]
async fn background_l2_writes_land_after_the_miss_returns() {
    let server = RedisServer::start();
    let writer = Cache::builder()
        .redis_url(server.url())
        .service("background-writes")
        .background_l2_writes(true)
        .build()
        .unwrap();
    let value = writer.scope(decide(11, "bob")).await;
    // The caller already has the value (and so has this instance's L1)...
    assert_eq!(writer.scope(decide(11, "bob")).await, value);
    // ...and the write lands in Redis on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while keys(&server, "acgs:background-writes:decide:*")
        .await
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "background write never landed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reader = cache(&server, "background-writes");
    assert_eq!(reader.scope(decide(11, "bob")).await, value);
    let stats = reader.stats().await;
    let f = stats.function("decide").unwrap();
    assert_eq!((f.l2_hits, f.misses), (1, 0), "{f:?}");
}

#[tokio::test]
async fn a_failed_background_write_is_counted() {
    let server = RedisServer::start();
    let writer = Cache::builder()
        .redis_url(server.url())
        .service("background-fail")
        .background_l2_writes(true)
        .build()
        .unwrap();
    writer.scope(decide(1, "ann")).await; // connected, log read
    server.pause(); // Redis hangs: the next write times out in the background
    let value = writer.scope(decide(2, "ann")).await;
    assert_eq!(value.policy_id, 2, "the caller is answered regardless");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let stats = writer.stats().await;
        let f = stats.function("decide").unwrap();
        // One for the read that timed out, one for the background write.
        if f.errors >= 2 {
            assert_eq!(
                f.errors_by_reason.get("timeout"),
                Some(&f.errors),
                "a hung Redis is a timeout: {f:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failed write was never counted: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.resume();
    drop(server);
}

#[tokio::test]
async fn connect_reads_the_log_before_the_first_call_or_fails_fast() {
    let server = RedisServer::start();
    let cache = cache(&server, "connect");
    cache.connect().await.unwrap();
    assert!(cache.stats().await.invalidations.listening);

    let unreachable = Cache::builder()
        .service("connect")
        .redis_url(support::closed_port_url())
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    assert!(unreachable.connect().await.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    let l1_only = Cache::builder().service("connect").build().unwrap();
    l1_only.connect().await.unwrap();
}

/// Connected clients of `server`, as it counts them.
async fn connected_clients(server: &RedisServer) -> u64 {
    let mut raw = server.raw().await;
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut raw)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_dropped_cache_closes_its_connections() {
    let server = RedisServer::start();
    let before = connected_clients(&server).await;
    let cache = cache(&server, "dropped");
    cache.scope(decide(1, "ann")).await; // lane, log tailer, fleet publisher
    assert!(connected_clients(&server).await > before);
    drop(cache);
    // The background tasks let go of the cache; its connections close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while connected_clients(&server).await > before {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped cache kept its connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cached(ttl = "policy_decision")]
async fn slow_rule(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    id
}

#[tokio::test]
async fn stats_report_latency_percentiles() {
    let cache = Cache::builder().service("latency").build().unwrap();
    let stats = cache.stats().await;
    assert!(stats.function("slow_rule").is_none());
    cache.scope(slow_rule(1)).await; // a 20 ms miss
    let stats = cache.stats().await;
    let f = stats.function("slow_rule").unwrap();
    let p50 = f.latency_p50_ns.expect("the miss was timed");
    assert!(p50 >= 20_000_000, "{f:?}");
    // Hits are sampled one in 64 and stand for 64 each: they soon dominate.
    for _ in 0..(3 * 64) {
        cache.scope(slow_rule(1)).await;
    }
    let stats = cache.stats().await;
    let f = stats.function("slow_rule").unwrap();
    assert!(f.latency_p50_ns.unwrap() < 1_000_000, "{f:?}");
    assert!(
        f.latency_p99_ns.unwrap() >= f.latency_p50_ns.unwrap(),
        "{f:?}"
    );
}

/// A 100 MB value planted under an entry's key is never read past the size
/// limit: the call misses (counted `too_large`), and the calls running
/// beside it neither time out nor open the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_planted_value_never_blocks_other_calls() {
    let server = RedisServer::start();
    let cache = l2_only(&server, "huge");
    cache.connect().await.unwrap();
    cache.scope(decide(1, "huge")).await;
    let key = keys(&server, "acgs:huge:decide:*").await.remove(0);
    let mut raw = server.raw().await;
    let _: () = raw.set(&key, vec![0xACu8; 100 << 20]).await.unwrap();
    drop(raw);

    let others = {
        let cache = cache.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                cache.scope(decide(1_000 + i % 20, "other")).await;
            }
        })
    };
    for _ in 0..3 {
        assert_eq!(cache.scope(decide(1, "huge")).await.policy_id, 1);
    }
    others.await.unwrap();
    let stats = cache.stats().await;
    let f = stats.function("decide").unwrap();
    assert!(
        f.rejected.get("too_large").is_some_and(|n| *n >= 1),
        "{f:?}"
    );
    assert_eq!(f.errors, 0, "no call timed out: {f:?}");
    assert_eq!(stats.l2_circuit_trips, 0);
}

/// Reads that arrive while a lane is busy go out in one pipeline (see
/// `tiers/reads.rs`): each caller must get its own key's value, hits and
/// misses mixed in one batch, and callers that give up mid-batch must not
/// disturb the others or the lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_l2_reads_each_get_their_own_entry() {
    let server = RedisServer::start();
    let writer = cache(&server, "batched");
    for id in 0..300u64 {
        writer.scope(decide(id, "batch")).await;
    }
    let reader = l2_only(&server, "batched");
    reader.connect().await.unwrap();
    for round in 0..3u64 {
        // Ids 300.. were never written: misses in the same batches as hits.
        let calls = (0..400u64).map(|id| {
            let reader = reader.clone();
            tokio::spawn(async move { (id, reader.scope(decide(id, "batch")).await) })
        });
        for call in calls.collect::<Vec<_>>() {
            let (id, got) = call.await.unwrap();
            assert_eq!(
                (got.policy_id, got.subject.as_str(), got.allow),
                (id, "batch", id.is_multiple_of(2)),
                "round {round}"
            );
        }
        // Callers that give up while their read waits in a batch.
        let abandoned = (0..200u64).map(|id| {
            let reader = reader.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_micros(50),
                    reader.scope(decide(1_000 + id, "gone")),
                )
                .await;
            })
        });
        for call in abandoned.collect::<Vec<_>>() {
            call.await.unwrap();
        }
    }
    let stats = reader.stats().await;
    let f = stats.function("decide").unwrap();
    assert_eq!(f.errors, 0, "{f:?}");
    // Round 1 missed ids 300..399 and stored them; later rounds hit them.
    assert!(f.l2_hits >= 300 * 3 + 100 * 2, "{f:?}");
    assert_eq!(stats.l2_circuit_trips, 0);
}
