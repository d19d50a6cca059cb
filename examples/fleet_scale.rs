//! Fleet scale report: what one invalidation log costs when N instances
//! follow it while invalidations arrive at R per second.
//!
//! ```text
//! cargo run --release --example fleet_scale [-- --instances 10,100,500]
//!     [--rates 100,1000,10000] [--seconds 5] [--processes 2]
//!     [--redis-url URL] [--plot target/fleet_scale.svg] [--no-acks] [--shards K]
//! ```
//!
//! Starts its own `redis-server` unless given a URL. For every N × R it
//! starts `--processes` child processes holding N `Cache`s between them
//! (each with its own connections, its own tailer and lease), and a writer
//! (a `Cache` of its own) that invalidates R tags a second for `--seconds`.
//! Then every instance must have heard every invalidation. Per cell:
//! - propagation p50 and p99: from the writer's send to each instance's
//!   apply, over every (instance, invalidation) pair, read from the sum of
//!   the instances' propagation histograms (within 19%);
//! - lease renewals per second (the fleet's, and per instance);
//! - Redis CPU (`INFO` `used_cpu_user` + `used_cpu_sys`, as % of one core)
//!   and bytes per second in and out (`total_net_input_bytes`, …).
//!
//! `--shards K` splits the fleet over K logs (K prefixes, as one log per
//! service would): instance i follows log i mod K, and the invalidations go
//! round-robin to the K logs, so each instance hears R/K a second.
//! `--no-acks` turns the instances' heard-position publications off (what
//! [`Cache::wait_for_fleet`] reads), to show what they cost.
//!
//! Then the largest N × R whose p99 stayed under δ/2 (δ: the default
//! `max_staleness`, 1 s), and a picture (SVG, with plotters): p99 against N
//! for each R, δ/2 marked. The last line is
//! `fleet_scale: cells=N largest_n_x_r=F at_n=N at_r=N p99_ms=F half_delta_ms=F all_heard=B`.

use acgs_cache_harness as support;
use support::arg;

use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs_cache::{Cache, LatencyHistogram, LogPosition, DEFAULT_MAX_STALENESS};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

fn list(name: &str, default: &str) -> Vec<u64> {
    arg(name, default.to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The caches of one child process (and the writer): every instance
/// publishes what it heard, as in production; no fleet stats.
fn fleet_cache(url: &str, prefix: &str, service: &str) -> Result<Cache, acgs_cache::Error> {
    let mut builder = Cache::builder();
    // `--no-acks`: what the heard-position publications cost, by their absence.
    if std::env::args().any(|a| a == "--no-acks") {
        builder = builder.fleet_acknowledgements(Duration::ZERO);
    }
    builder
        .redis_url(url)
        .prefix(prefix)
        .service(service)
        .fleet_interval(Duration::ZERO)
        .metrics_interval(None)
        .pool_size(1)
        .connect_timeout(Duration::from_secs(10))
        .build()
}

/// Shard `shard`'s prefix: one log per shard, as one log per service would be.
fn shard_prefix(prefix: &str, shard: usize) -> String {
    format!("{prefix}-s{shard}")
}

/// The lease renewals of `caches`, summed.
async fn renewals(caches: &[Cache]) -> u64 {
    let mut sum = 0;
    for cache in caches {
        sum += cache.stats().await.invalidations.lease_renewals;
    }
    sum
}

/// A child: holds `--count` instances, then answers the parent's lines.
/// `go` starts the measured run; `stop POSITION` waits (10 s at most) until
/// every instance heard the log up to POSITION and prints one `result` line.
async fn child() -> Result<(), Box<dyn std::error::Error>> {
    let url: String = arg("--redis-url", String::new());
    let prefix: String = arg("--prefix", String::new());
    let count: usize = arg("--count", 1);
    let first: usize = arg("--first", 0);
    let shards: usize = arg("--shards", 1);
    // Instance `first + i` follows shard `(first + i) % shards`.
    let shard_of = |i: usize| (first + i) % shards;
    let caches = (0..count)
        .map(|i| fleet_cache(&url, &shard_prefix(&prefix, shard_of(i)), "fleet"))
        .collect::<Result<Vec<_>, _>>()?;
    // Connected: each has read the log once and holds its lease.
    for connected in futures_util::future::join_all(caches.iter().map(Cache::connect)).await {
        connected?;
    }
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut renewals_at_go = 0;
    while let Some(line) = lines.next_line().await? {
        if line == "go" {
            renewals_at_go = renewals(&caches).await;
            continue;
        }
        let Some(positions) = line.strip_prefix("stop ").map(|list| {
            list.split(',')
                .filter_map(LogPosition::parse)
                .collect::<Vec<_>>()
        }) else {
            continue;
        };
        // Where each instance must have got to: its shard's last invalidation.
        let target = |i: usize| positions.get(shard_of(i)).copied().unwrap_or_default();
        let behind = |caches: &[Cache]| {
            caches
                .iter()
                .enumerate()
                .any(|(i, c)| c.log_position() < target(i))
        };
        let renewals = renewals(&caches).await - renewals_at_go;
        let deadline = Instant::now() + Duration::from_secs(10);
        while behind(&caches) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut histogram = LatencyHistogram::default();
        let mut received = 0;
        for cache in &caches {
            let stats = cache.stats().await;
            histogram.add(&stats.invalidations.propagation_histogram);
            received += stats.invalidations.received;
        }
        let buckets: Vec<String> = histogram
            .buckets
            .iter()
            .map(|(bound, seen)| format!("{bound}:{seen}"))
            .collect();
        println!(
            "result received={received} renewals={renewals} heard_all={} histogram={}",
            !behind(&caches),
            buckets.join(",")
        );
        return Ok(());
    }
    Ok(())
}

/// What a child printed at the end.
#[derive(Default)]
struct ChildResult {
    received: u64,
    renewals: u64,
    heard_all: bool,
    histogram: LatencyHistogram,
}

fn parse_result(line: &str) -> Option<ChildResult> {
    let field = |name: &str| {
        line.split(' ')
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
    };
    let mut histogram = LatencyHistogram::default();
    for bucket in field("histogram")?.split(',').filter(|b| !b.is_empty()) {
        let (bound, seen) = bucket.split_once(':')?;
        histogram
            .buckets
            .push((bound.parse().ok()?, seen.parse().ok()?));
    }
    histogram.count = histogram.buckets.last().map_or(0, |(_, seen)| *seen);
    Some(ChildResult {
        received: field("received")?.parse().ok()?,
        renewals: field("renewals")?.parse().ok()?,
        heard_all: field("heard_all")? == "true",
        histogram,
    })
}

/// Redis's CPU seconds (user + sys) and bytes in and out so far.
async fn redis_counters(conn: &mut redis::aio::MultiplexedConnection) -> (f64, u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(conn)
        .await
        .unwrap_or_default();
    let value = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("used_cpu_user") + value("used_cpu_sys"),
        value("total_net_input_bytes") as u64,
        value("total_net_output_bytes") as u64,
    )
}

/// One N × R measurement.
struct Cell {
    instances: u64,
    rate: u64,
    sent: u64,
    achieved_rate: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    renewals_per_s: f64,
    redis_cpu_percent: f64,
    bytes_in_per_s: f64,
    bytes_out_per_s: f64,
    heard_all: bool,
    received: u64,
}

struct Children {
    processes: Vec<(
        Child,
        ChildStdin,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    )>,
}

impl Children {
    /// Starts `processes` children holding `instances` caches between them
    /// and waits until every one is connected.
    async fn start(
        url: &str,
        prefix: &str,
        instances: u64,
        processes: u64,
        shards: usize,
    ) -> Result<Children, Box<dyn std::error::Error>> {
        let processes = processes.clamp(1, instances.max(1));
        let mut started = Vec::new();
        let mut first = 0;
        for p in 0..processes {
            let count = instances / processes + u64::from(p < instances % processes);
            let mut child = Command::new(std::env::current_exe()?)
                .args(["--child", "--redis-url", url, "--prefix", prefix])
                .args(["--count", &count.to_string()])
                .args(["--first", &first.to_string()])
                .args(["--shards", &shards.to_string()])
                .args(std::env::args().filter(|a| a == "--no-acks"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
            started.push((child, stdin, stdout));
            first += count;
        }
        for (_, _, lines) in &mut started {
            let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
            if !matches!(ready, Ok(Ok(Some(ref line))) if line == "ready") {
                return Err(format!("a child did not connect: {ready:?}").into());
            }
        }
        Ok(Children { processes: started })
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        for (_, stdin, _) in &mut self.processes {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await?;
        }
        Ok(())
    }

    async fn results(mut self) -> Result<Vec<ChildResult>, Box<dyn std::error::Error>> {
        let mut results = Vec::new();
        for (child, _, lines) in &mut self.processes {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await??
                .ok_or("a child printed no result")?;
            results.push(parse_result(&line).ok_or_else(|| format!("unreadable: {line}"))?);
            child.wait().await?;
        }
        Ok(results)
    }
}

/// Invalidates `rate` tags a second for `run`, round-robin over the shards'
/// writers, at most `IN_FLIGHT` at once; returns how many were sent and the
/// last position of each shard's log.
async fn write(writers: &[Cache], rate: u64, run: Duration) -> (u64, Vec<LogPosition>) {
    const IN_FLIGHT: usize = 256;
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(2));
    let mut sent = 0u64;
    while started.elapsed() < run {
        ticks.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let shard = usize::try_from(sent).unwrap_or(0) % writers.len();
            let writer = writers[shard].clone();
            let event = format!("fleet.key.{}", sent % 1_000);
            tasks.spawn(async move {
                let position = writer.invalidate(&event).await;
                drop(permit);
                (shard, position)
            });
            sent += 1;
        }
    }
    let mut last = vec![LogPosition::default(); writers.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((shard, Ok(position))) = done {
            last[shard] = last[shard].max(position);
        }
    }
    (sent, last)
}

async fn measure(
    url: &str,
    conn: &mut redis::aio::MultiplexedConnection,
    instances: u64,
    rate: u64,
    run: Duration,
    processes: u64,
    shards: usize,
) -> Result<Cell, Box<dyn std::error::Error>> {
    let prefix = format!("fleet-{}-{instances}-{rate}", std::process::id());
    let writers = (0..shards)
        .map(|shard| fleet_cache(url, &shard_prefix(&prefix, shard), "fleet-writer"))
        .collect::<Result<Vec<_>, _>>()?;
    for writer in &writers {
        writer.connect().await?;
    }
    let mut children = Children::start(url, &prefix, instances, processes, shards).await?;
    // Let the connects' own traffic settle before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu_before, in_before, out_before) = redis_counters(conn).await;
    let started = Instant::now();
    children.send("go").await?;
    let (sent, last) = write(&writers, rate, run).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, in_after, out_after) = redis_counters(conn).await;
    let last: Vec<String> = last.iter().map(ToString::to_string).collect();
    children.send(&format!("stop {}", last.join(","))).await?;
    let results = children.results().await?;
    let mut histogram = LatencyHistogram::default();
    for result in &results {
        histogram.add(&result.histogram);
    }
    let received: u64 = results.iter().map(|r| r.received).sum();
    Ok(Cell {
        instances,
        rate,
        sent,
        achieved_rate: sent as f64 / elapsed,
        p50: histogram.quantile(0.5),
        p99: histogram.quantile(0.99),
        renewals_per_s: results.iter().map(|r| r.renewals).sum::<u64>() as f64 / elapsed,
        redis_cpu_percent: (cpu_after - cpu_before) / elapsed * 100.0,
        bytes_in_per_s: in_after.saturating_sub(in_before) as f64 / elapsed,
        bytes_out_per_s: out_after.saturating_sub(out_before) as f64 / elapsed,
        // Each instance hears its own shard's share.
        heard_all: results.iter().all(|r| r.heard_all)
            && received >= sent * instances / shards as u64,
        received,
    })
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

/// p99 against N, one line per R, δ/2 marked; log scales.
fn plot(
    cells: &[Cell],
    path: &str,
    half_delta: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_n = cells.iter().map(|c| c.instances).max().unwrap_or(10) as f64;
    let min_n = cells.iter().map(|c| c.instances).min().unwrap_or(1) as f64;
    let p99_ms = |c: &Cell| c.p99.map(|d| d.as_secs_f64() * 1e3);
    let top = cells
        .iter()
        .filter_map(p99_ms)
        .fold(half_delta.as_secs_f64() * 1e3 * 2.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "acgs-cache: invalidation propagation p99 vs fleet size",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (min_n * 0.8..max_n * 1.25).log_scale(),
            (0.1f64..top * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("instances following one log (N)")
        .y_desc("propagation p99 (ms)")
        .draw()?;
    let mut rates: Vec<u64> = cells.iter().map(|c| c.rate).collect();
    rates.sort_unstable();
    rates.dedup();
    for (i, rate) in rates.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| c.rate == *rate)
            .filter_map(|c| Some((c.instances as f64, p99_ms(c)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(format!("R = {rate} invalidations/s"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    let half = half_delta.as_secs_f64() * 1e3;
    chart
        .draw_series(LineSeries::new(
            [(min_n * 0.8, half), (max_n * 1.25, half)],
            RED.stroke_width(1),
        ))?
        .label(format!("δ/2 = {half:.0} ms"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--child") {
        return child().await;
    }
    let instances = list("--instances", "10,100,500");
    let rates = list("--rates", "100,1000,10000");
    let run = Duration::from_secs_f64(arg("--seconds", 5.0));
    let processes: u64 = arg("--processes", 2);
    let shards: usize = arg("--shards", 1usize).max(1);
    let plot_path: String = arg("--plot", "target/fleet_scale.svg".to_owned());
    let (url, _own_server) =
        support::given_or_started(std::env::args().skip_while(|a| a != "--redis-url").nth(1));
    let half_delta = DEFAULT_MAX_STALENESS / 2;
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    println!(
        "fleet_scale: N instances in {processes} process(es) follow {} on {url}; R invalidations/s for {:.1} s each; δ = {} ms",
        if shards == 1 {
            "one log".to_owned()
        } else {
            format!("{shards} logs (N/{shards} instances and R/{shards} invalidations/s each)")
        },
        run.as_secs_f64(),
        DEFAULT_MAX_STALENESS.as_millis()
    );
    println!(
        "{:>5} {:>6} {:>9} {:>8} {:>8} {:>11} {:>13} {:>10} {:>11} {:>11} {:>9}",
        "N",
        "R",
        "R_sent/s",
        "p50_ms",
        "p99_ms",
        "renewals/s",
        "per_instance",
        "redis_cpu%",
        "in_KiB/s",
        "out_KiB/s",
        "heard_all"
    );
    let mut cells = Vec::new();
    for &n in &instances {
        for &r in &rates {
            let cell = measure(&url, &mut conn, n, r, run, processes, shards).await?;
            println!(
                "{:>5} {:>6} {:>9.0} {:>8} {:>8} {:>11.1} {:>13.2} {:>10.1} {:>11.1} {:>11.1} {:>9}",
                cell.instances,
                cell.rate,
                cell.achieved_rate,
                ms(cell.p50),
                ms(cell.p99),
                cell.renewals_per_s,
                cell.renewals_per_s / n as f64,
                cell.redis_cpu_percent,
                cell.bytes_in_per_s / 1024.0,
                cell.bytes_out_per_s / 1024.0,
                if cell.heard_all {
                    "yes".to_owned()
                } else {
                    format!("no ({}/{})", cell.received, cell.sent * n / shards as u64)
                }
            );
            std::io::stdout().flush()?;
            cells.push(cell);
        }
    }
    let within = |c: &&Cell| c.heard_all && c.p99.is_some_and(|p| p < half_delta);
    let largest = cells.iter().filter(within).max_by(|a, b| {
        (a.instances as f64 * a.achieved_rate).total_cmp(&(b.instances as f64 * b.achieved_rate))
    });
    if let Some(parent) = std::path::Path::new(&plot_path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    plot(&cells, &plot_path, half_delta)?;
    println!("plot: {plot_path}");
    match largest {
        Some(c) => println!(
            "fleet_scale: cells={} largest_n_x_r={:.0} at_n={} at_r={} p99_ms={} half_delta_ms={} all_heard={}",
            cells.len(),
            c.instances as f64 * c.achieved_rate,
            c.instances,
            c.rate,
            ms(c.p99),
            half_delta.as_millis(),
            cells.iter().all(|c| c.heard_all)
        ),
        None => println!(
            "fleet_scale: cells={} largest_n_x_r=0 at_n=0 at_r=0 p99_ms=- half_delta_ms={} all_heard={}",
            cells.len(),
            half_delta.as_millis(),
            cells.iter().all(|c| c.heard_all)
        ),
    }
    Ok(())
}
