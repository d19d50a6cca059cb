//! A real HTTP service (axum) whose handlers call `#[cached]` functions: the
//! policy-governance API of the origin platform.
//!
//! ```text
//! cargo run --release --example http_service                     # L1 only, port 3000
//! ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --release --example http_service -- --port 3000  # L1 + L2
//! cargo run --release --example http_service -- --port 0 --self-test 2000
//! ```
//!
//! Routes:
//!
//! | route | handler |
//! |---|---|
//! | `GET /policies/{id}/decision?subject=alice` | `evaluate_policy` (`policy_decision`, `invalidate_on = "governance.*"`) |
//! | `GET /tenants/{tenant}/compliance` | `compliance_check` (`compliance_checks`, tagged `tenant.{tenant}`) |
//! | `POST /governance/events/{event}` | `cache.invalidate(event)` (e.g. `governance.rules.updated` or `tenant.acme`), then `cache.wait_for_fleet(position)`: it answers once every instance heard the event or is covered by its lease, and says which |
//! | `GET /stats` | the cache's `stats()` as JSON |
//!
//! Every computation sleeps a few milliseconds (the simulated database), so
//! cached answers are visibly faster. Bad input is a `400` with a JSON error,
//! an unknown policy a `404` (and is not cached).
//!
//! `--port 0` binds a free port and prints it. `--self-test N` starts the
//! server, sends N requests to it over TCP from 16 concurrent clients —
//! including an invalidation half-way, after which a decision must be
//! recomputed — and ends with
//! `http_service: requests=N errors=N p50_ms=… p99_ms=… hits=N misses=N invalidation_recomputed=…`
//! (exit status 1 if a response was not what was expected). Without it the
//! server runs until Ctrl-C and then prints the cache's stats line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, StatsSnapshot};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Policies 1..=MAX_POLICY_ID exist; any other id is a 404.
const MAX_POLICY_ID: u64 = 10_000;
/// Longest subject or tenant name accepted (they become part of keys and tags).
const MAX_NAME_LEN: usize = 64;
/// Concurrent client connections in `--self-test`.
const SELF_TEST_CLIENTS: usize = 16;

/// Counts computations, so a response shows whether it was computed anew:
/// `evaluation` is `{pid}-{n}`, unique per computation of this process.
static EVALUATIONS: AtomicU64 = AtomicU64::new(0);

fn next_evaluation() -> String {
    let n = EVALUATIONS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{}-{n}", std::process::id())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub policy_id: u64,
    pub subject: String,
    pub allow: bool,
    /// Which computation produced this value (`{pid}-{n}`).
    pub evaluation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    pub tenant: String,
    pub passed: bool,
    pub checked_policies: u32,
    pub evaluation: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {0} does not exist")]
    UnknownPolicy(u64),
}

/// A decision for one subject: the policy store answers in 3 ms. Cached 5
/// minutes; any `governance.*` event drops it on every instance. An unknown
/// policy is an `Err`, which is never cached.
#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
pub async fn evaluate_policy(policy_id: u64, subject: String) -> Result<Decision, PolicyError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    if !(1..=MAX_POLICY_ID).contains(&policy_id) {
        return Err(PolicyError::UnknownPolicy(policy_id));
    }
    // A stand-in for the rule: guests are allowed by even policies only.
    let allow = !subject.starts_with("guest") || policy_id.is_multiple_of(2);
    Ok(Decision {
        policy_id,
        subject,
        allow,
        evaluation: next_evaluation(),
    })
}

/// A tenant's compliance check: 5 ms of queries. Tagged with the tenant, so
/// `tenant.acme` drops exactly acme's report; rule changes drop all of them.
#[cached(ttl = "compliance_checks", invalidate_on = "governance.rules.*", tags = ["tenant.{tenant}"])]
pub async fn compliance_check(tenant: String) -> ComplianceReport {
    tokio::time::sleep(Duration::from_millis(5)).await;
    ComplianceReport {
        // A stand-in for the checks: one tenant of the self-test fails them.
        passed: tenant != "umbrella",
        tenant,
        checked_policies: 12,
        evaluation: next_evaluation(),
    }
}

/// An error answer: a status and a JSON body `{"error": "..."}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: &self.1 })).into_response()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// Subjects and tenants end up in cache keys and tags: accept short names of
/// letters, digits, `_`, `-` (subjects also `@` and `.`), nothing else.
fn check_name(what: &str, value: &str, extra: &[char]) -> Result<(), ApiError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c));
    if valid {
        Ok(())
    } else {
        Err(bad_request(format!(
            "{what} must be 1 to {MAX_NAME_LEN} letters, digits, `_` or `-`"
        )))
    }
}

#[derive(Debug, Deserialize)]
struct DecisionQuery {
    subject: Option<String>,
}

async fn decision(
    Path(id): Path<String>,
    Query(query): Query<DecisionQuery>,
) -> Result<Json<Decision>, ApiError> {
    // Parsed here rather than with `Path<u64>` so every error has the same JSON shape.
    let policy_id: u64 = id
        .parse()
        .map_err(|_| bad_request(format!("policy id {id:?} is not a number")))?;
    let subject = query
        .subject
        .ok_or_else(|| bad_request("missing ?subject="))?;
    check_name("subject", &subject, &['@', '.'])?;
    evaluate_policy(policy_id, subject)
        .await
        .map(Json)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))
}

async fn compliance(Path(tenant): Path<String>) -> Result<Json<ComplianceReport>, ApiError> {
    // No dots: the tag `tenant.{tenant}` must stay one segment below `tenant`.
    check_name("tenant", &tenant, &[])?;
    Ok(Json(compliance_check(tenant).await))
}

#[derive(Debug, Serialize)]
struct Invalidated {
    event: String,
    position: String,
    /// Instances that heard it before this answer (this one included).
    acknowledged: usize,
    /// Instances that did not, but whose lease ran out since: they serve
    /// nothing the event invalidated, whatever happened to them.
    covered_by_lease: usize,
    /// Instances with functions that opted out of the lease (`l1_ttl`) and
    /// did not hear it yet.
    outside_the_bound: usize,
    waited_ms: f64,
    /// What the answer promises, in words.
    guarantee: &'static str,
}

/// Publishes the event, then waits until every instance has heard it or is
/// covered by its lease (at most the longest lease, 1 s by default): when
/// this answers 200, no instance serves a decision the event invalidated.
async fn governance_event(
    State(cache): State<Cache>,
    Path(event): Path<String>,
) -> Result<Json<Invalidated>, ApiError> {
    let position = match cache.invalidate(&event).await {
        Ok(position) => position,
        Err(acgs_cache::Error::InvalidName(message)) => return Err(bad_request(message)),
        // Redis unreachable: this instance has applied it, the others were not told.
        Err(e) => {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("applied on this instance only: {e}"),
            ))
        }
    };
    let ack = cache.wait_for_fleet(position).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "in the log at {position}, but the fleet's acknowledgements could not be read: {e}"
            ),
        )
    })?;
    let guarantee = if ack.outside_the_bound.is_empty() {
        "no instance serves a value this event invalidated"
    } else {
        "instances outside the bound may serve l1_ttl functions' copies until they hear the log"
    };
    Ok(Json(Invalidated {
        event,
        position: position.to_string(),
        acknowledged: ack.acknowledged.len(),
        covered_by_lease: ack.covered_by_lease.len(),
        outside_the_bound: ack.outside_the_bound.len(),
        waited_ms: ack.waited.as_secs_f64() * 1e3,
        guarantee,
    }))
}

async fn stats(State(cache): State<Cache>) -> Json<StatsSnapshot> {
    Json(cache.stats().await)
}

fn app(cache: Cache) -> Router {
    Router::new()
        .route("/policies/{id}/decision", get(decision))
        .route("/tenants/{tenant}/compliance", get(compliance))
        .route("/governance/events/{event}", post(governance_event))
        .route("/stats", get(stats))
        .with_state(cache)
}

struct Args {
    port: u16,
    self_test: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 3000,
        self_test: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--self-test" => {
                let v = value("--self-test")?;
                let n: usize = v.parse().map_err(|_| format!("bad --self-test {v:?}"))?;
                if n < SELF_TEST_CHECKS {
                    return Err(format!(
                        "--self-test needs at least {SELF_TEST_CHECKS} requests"
                    ));
                }
                args.self_test = Some(n);
            }
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
            eprintln!(
                "http_service: {message}\nusage: http_service [--port N] [--self-test REQUESTS]"
            );
            std::process::exit(2);
        }
    };
    let cache = Cache::builder()
        .service("http-service")
        .apply_env()?
        .build()?;
    if cache.has_l2() {
        println!(
            "http_service: L1 + L2 (redis); entries and invalidations are shared by every instance"
        );
    } else {
        println!("http_service: L1 only (in process); set ACGS_CACHE_REDIS_URL to share entries and invalidations");
    }
    cache
        .clone()
        .install_default()
        .expect("first cache of the process");

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    println!("http_service: listening on http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = axum::serve(listener, app(cache.clone())).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move { serve.await });

    let Some(requests) = args.self_test else {
        tokio::signal::ctrl_c().await?;
        let _ = stop.send(());
        server.await??;
        println!("{}", cache.stats().await);
        return Ok(());
    };
    let report = self_test(addr, requests).await;
    let _ = stop.send(());
    server.await??;
    let totals = cache.stats().await.totals();
    println!(
        "http_service: requests={} errors={} p50_ms={:.2} p99_ms={:.2} hits={} misses={} invalidation_recomputed={}",
        report.requests,
        report.errors,
        report.p50_ms,
        report.p99_ms,
        totals.l1_hits + totals.l2_hits,
        totals.misses,
        report.recomputed
    );
    if report.errors > 0 || !report.recomputed {
        std::process::exit(1);
    }
    Ok(())
}

/// Requests the self-test's invalidation check sends (see `invalidation_check`).
const SELF_TEST_CHECKS: usize = 6;

struct SelfTestReport {
    requests: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    recomputed: bool,
}

/// Drives `requests` requests against the server at `addr`: a mixed load from
/// `SELF_TEST_CLIENTS` keep-alive connections and, once half of it is done,
/// the invalidation check on a connection of its own.
async fn self_test(addr: SocketAddr, requests: usize) -> SelfTestReport {
    let load = requests - SELF_TEST_CHECKS;
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..SELF_TEST_CLIENTS)
        .map(|_| {
            let (issued, errors) = (issued.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut client = None;
                while issued.fetch_add(1, Ordering::Relaxed) < load {
                    let path = random_path();
                    let started = Instant::now();
                    match HttpClient::send(&mut client, addr, "GET", &path).await {
                        Ok((200, _)) => {}
                        Ok((status, body)) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("GET {path}: {status} {body}");
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("GET {path}: {e}");
                        }
                    }
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();

    // Half-way through the load, invalidate while the clients keep going.
    while issued.load(Ordering::Relaxed) < load / 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (check_errors, recomputed, mut latencies) = invalidation_check(addr).await;

    for client in clients {
        latencies.extend(client.await.unwrap_or_default());
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    SelfTestReport {
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed) + check_errors,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        recomputed,
    }
}

/// A request of the load: mostly decisions over 100 policies × 4 subjects,
/// some compliance checks, a few stats reads.
fn random_path() -> String {
    const SUBJECTS: [&str; 4] = ["alice", "bob", "carol", "guest-7"];
    const TENANTS: [&str; 8] = [
        "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
    ];
    match fastrand::u8(..100) {
        0..80 => format!(
            "/policies/{}/decision?subject={}",
            fastrand::u64(1..=100),
            SUBJECTS[fastrand::usize(..SUBJECTS.len())]
        ),
        80..95 => format!(
            "/tenants/{}/compliance",
            TENANTS[fastrand::usize(..TENANTS.len())]
        ),
        _ => "/stats".to_owned(),
    }
}

/// Decision 7 for alice twice (the second is cached: same `evaluation`), a
/// `governance.rules.updated` event, the decision again (must be a new
/// `evaluation`), then two bad requests that must be 400s. Returns
/// (unexpected responses, whether the decision was recomputed, latencies).
async fn invalidation_check(addr: SocketAddr) -> (usize, bool, Vec<Duration>) {
    const DECISION: &str = "/policies/7/decision?subject=alice";
    let steps: [(&str, &str, u16); SELF_TEST_CHECKS] = [
        ("GET", DECISION, 200),
        ("GET", DECISION, 200),
        ("POST", "/governance/events/governance.rules.updated", 200),
        ("GET", DECISION, 200),
        ("GET", "/policies/seven/decision?subject=alice", 400),
        ("GET", "/policies/7/decision", 400),
    ];
    let mut client = None;
    let (mut errors, mut latencies, mut evaluations) = (0, Vec::new(), Vec::new());
    for (method, path, expected) in steps {
        let started = Instant::now();
        let answer = HttpClient::send(&mut client, addr, method, path).await;
        latencies.push(started.elapsed());
        match answer {
            Ok((status, body)) if status == expected => {
                println!("  self-test: {method} {path} -> {status} {body}");
                if path == DECISION {
                    evaluations.push(
                        serde_json::from_str::<Decision>(&body)
                            .map(|d| d.evaluation)
                            .unwrap_or_default(),
                    );
                }
            }
            Ok((status, body)) => {
                errors += 1;
                eprintln!("  self-test: {method} {path} -> {status} {body} (expected {expected})");
            }
            Err(e) => {
                errors += 1;
                eprintln!("  self-test: {method} {path} -> {e}");
            }
        }
    }
    // [before, cached, after the event]: cached equals before, after differs.
    let recomputed = matches!(evaluations.as_slice(),
        [before, cached, after] if !before.is_empty() && before == cached && after != before);
    (errors, recomputed, latencies)
}

/// A minimal HTTP/1.1 client over one keep-alive connection: enough for the
/// self-test (our server always sends `Content-Length`), no dependency.
struct HttpClient {
    stream: BufReader<TcpStream>,
}

impl HttpClient {
    /// Sends one request on `client`'s connection, connecting first if there
    /// is none; a failed exchange drops the connection.
    async fn send(
        client: &mut Option<HttpClient>,
        addr: SocketAddr,
        method: &str,
        path: &str,
    ) -> std::io::Result<(u16, String)> {
        if client.is_none() {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            *client = Some(HttpClient {
                stream: BufReader::new(stream),
            });
        }
        let answer = client
            .as_mut()
            .expect("connected above")
            .exchange(method, path)
            .await;
        if answer.is_err() {
            *client = None;
        }
        answer
    }

    async fn exchange(&mut self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;

        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("no status line"))?;
        let mut content_length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(invalid("connection closed in the headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = content_length.ok_or_else(|| invalid("no Content-Length"))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
