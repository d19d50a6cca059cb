//! Prometheus metrics of a service using `#[cached]`: `/metrics` on
//! 127.0.0.1 while a small workload of cached calls (and an invalidation
//! every few seconds) runs.
//!
//! ```text
//! cargo run --example prometheus                          # L1 only, http://127.0.0.1:9464/metrics
//! ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 cargo run --example prometheus
//! curl -s http://127.0.0.1:9464/metrics | grep '^acgs_cache_hits_total'
//! cargo run --example prometheus -- --port 0 --self-check
//! ```
//!
//! The cache publishes its counters through the `metrics` facade every
//! second (`CacheBuilder::metrics_interval`); this program installs
//! `metrics-exporter-prometheus`'s recorder and serves its rendering. Any
//! other exporter plugs in the same way.
//!
//! `--port 0` binds a free port and prints it. `--self-check` lets the
//! workload run for about two publication intervals, fetches its own
//! `/metrics` over TCP, checks that the text is Prometheus exposition format
//! (every sample line `name{labels} value`, a `# TYPE` line for every
//! `acgs_cache_` metric, `acgs_cache_hits_total` positive) and ends with
//! `prometheus: metrics=N series=N ok=true` (exit status 1 if not). Without
//! it the program runs until Ctrl-C and then prints the cache's stats line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use acgs_cache::{cached, Cache};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How often the cache publishes (the default, spelled out).
const METRICS_INTERVAL: Duration = Duration::from_secs(1);
/// Pause between two invalidations of every decision.
const INVALIDATE_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub policy_id: u64,
    pub subject: String,
    pub allow: bool,
}

/// A policy decision (the simulated policy store takes 2 ms).
#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
pub async fn evaluate_policy(policy_id: u64, subject: String) -> Decision {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Decision {
        allow: !policy_id.is_multiple_of(3),
        policy_id,
        subject,
    }
}

/// A tenant's quota, tagged so one tenant can be dropped on its own.
#[cached(ttl = "api_responses", tags = ["tenant.{tenant}"])]
pub async fn tenant_quota(tenant: String) -> u32 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    u32::try_from(tenant.len()).unwrap_or(u32::MAX) * 1_000
}

/// Calls the cached functions over a small key space (so most calls hit)
/// and invalidates every decision every few seconds.
async fn workload() {
    let subjects = ["alice", "bob", "carol", "dave"];
    let tenants = ["acme", "globex", "initech"];
    let mut invalidations = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        INVALIDATE_EVERY,
    );
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                n += 1;
                let subject = subjects[(n % 4) as usize].to_owned();
                evaluate_policy(n % 40, subject).await;
                tenant_quota(tenants[(n % 3) as usize].to_owned()).await;
            }
            _ = invalidations.tick() => {
                if let Err(e) = acgs_cache::invalidate("governance.rules.updated").await {
                    eprintln!("prometheus: invalidation only applied here: {e}");
                }
            }
        }
    }
}

struct Args {
    port: u16,
    self_check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 9464,
        self_check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--self-check" => args.self_check = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
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
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("prometheus: {message}\nusage: prometheus [--port N] [--self-check]");
            std::process::exit(2);
        }
    };

    // The recorder first: everything the cache publishes from now on reaches it.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });

    let cache = Cache::builder()
        .service("prometheus-example")
        .metrics_interval(METRICS_INTERVAL)
        .apply_env()?
        .build()?;
    if cache.has_l2() {
        println!("prometheus: L1 + L2 (redis)");
    } else {
        println!("prometheus: L1 only (in process); set ACGS_CACHE_REDIS_URL to add L2");
    }
    cache
        .clone()
        .install_default()
        .expect("first cache of the process");

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    println!("prometheus: serving http://{addr}/metrics");
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let prometheus = prometheus.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    prometheus.render(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::spawn(workload());

    if !args.self_check {
        tokio::signal::ctrl_c().await?;
        println!("{}", cache.stats().await);
        return Ok(());
    }

    // Two publications and a half: the second one follows the first invalidation.
    tokio::time::sleep(METRICS_INTERVAL * 5 / 2).await;
    println!("{}", cache.health().await);
    let outcome = match scrape(addr).await {
        Ok(body) => check_exposition(&body),
        Err(e) => Err(format!("GET /metrics failed: {e}")),
    };
    match outcome {
        Ok(found) => {
            println!(
                "prometheus: metrics={} series={} ok=true",
                found.metrics, found.series
            );
            Ok(())
        }
        Err(why) => {
            println!("prometheus: {why}");
            println!("prometheus: metrics=0 series=0 ok=false");
            std::process::exit(1);
        }
    }
}

/// `GET /metrics` over a plain TCP connection; the body of a `200`.
async fn scrape(addr: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("no end of the response head")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {status:?}").into());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("chunked response (expected a content-length body)".into());
    }
    Ok(body.to_owned())
}

/// What a valid exposition contained.
struct Found {
    /// Metric names with a `# TYPE` line.
    metrics: usize,
    /// Sample lines.
    series: usize,
}

/// The buckets of the call-duration histogram.
const DURATIONS: &str = "acgs_cache_call_duration_seconds_bucket";

/// Checks `text` line by line against the Prometheus text format (0.0.4).
fn check_exposition(text: &str) -> Result<Found, String> {
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sampled: BTreeSet<&str> = BTreeSet::new();
    let mut series = 0;
    let mut hits = 0.0;
    let mut durations = 0.0;
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let bad = |why: &str| format!("line {number} {line:?}: {why}");
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if let ["TYPE", name, kind] = words[..] {
                if !valid_name(name) {
                    return Err(bad("bad metric name"));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(bad("unknown type"));
                }
                types.insert(name, kind);
            }
            continue;
        }
        let (name, value) = parse_sample(line).map_err(bad)?;
        series += 1;
        sampled.insert(name);
        if name == "acgs_cache_hits_total" {
            hits += value;
        }
        if name == DURATIONS && line.contains("le=\"+Inf\"") {
            durations += value;
        }
    }
    for name in sampled.iter().filter(|n| n.starts_with("acgs_cache_")) {
        // A histogram's samples are its name with a suffix.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                matches!(types.get(base), Some(&"histogram" | &"summary")).then_some(base)
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(format!("{name} has samples but no # TYPE line"));
        }
    }
    if types.get(DURATIONS) != Some(&"counter") || durations <= 0.0 {
        return Err(format!("{DURATIONS} has no +Inf bucket with calls counted"));
    }
    if types.get("acgs_cache_hits_total") != Some(&"counter") {
        return Err("acgs_cache_hits_total is not a counter".into());
    }
    if hits <= 0.0 {
        return Err("acgs_cache_hits_total is not positive".into());
    }
    Ok(Found {
        metrics: types.len(),
        series,
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{label="value",...} value [timestamp]` → (name, value).
fn parse_sample(line: &str) -> Result<(&str, f64), &'static str> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        rest = parse_labels(labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| "value is not a number")?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| "timestamp is not an integer")?;
    }
    if fields.next().is_some() {
        return Err("trailing fields");
    }
    Ok((name, value))
}

/// Consumes `label="value",...}` (escapes `\\`, `\"`, `\n` in values) and
/// returns what follows the closing brace.
fn parse_labels(mut s: &str) -> Result<&str, &'static str> {
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("label without =")?;
        if !valid_name(&s[..eq]) || s[..eq].contains(':') {
            return Err("bad label name");
        }
        let value = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut chars = value.char_indices();
        let close = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err("bad escape in label value"),
                },
                Some((i, '"')) => break i,
                Some(_) => {}
                None => return Err("unterminated label value"),
            }
        };
        s = &value[close + 1..];
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected , or } after a label");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_accepts_the_format_and_rejects_broken_lines() {
        let good = "# HELP acgs_cache_hits_total Hits.\n# TYPE acgs_cache_hits_total counter\n\
                    acgs_cache_hits_total{service=\"s\",tier=\"l1\"} 3\n\
                    acgs_cache_hits_total{service=\"a\\\"b\",tier=\"l2\"} 0 1700000000000\n\
                    # TYPE acgs_cache_call_duration_seconds_bucket counter\n\
                    acgs_cache_call_duration_seconds_bucket{le=\"0.000001\"} 2\n\
                    acgs_cache_call_duration_seconds_bucket{le=\"+Inf\"} 3\n";
        let found = check_exposition(good).unwrap();
        assert_eq!((found.metrics, found.series), (2, 4));
        for bad in [
            "acgs_cache_hits_total 3\n", // no TYPE
            "# TYPE acgs_cache_hits_total counter\nacgs_cache_hits_total{tier=l1} 3\n", // unquoted
            "# TYPE acgs_cache_hits_total counter\nacgs_cache_hits_total{tier=\"l1\" 3\n",
            "# TYPE acgs_cache_hits_total counter\nacgs_cache_hits_total three\n",
            "# TYPE acgs_cache_hits_total counter\nacgs_cache_hits_total 0\n", // not positive
        ] {
            assert!(check_exposition(bad).is_err(), "{bad:?}");
        }
    }
}
