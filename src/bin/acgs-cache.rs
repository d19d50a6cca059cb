//! `acgs-cache`: the operator CLI (feature `cli`).
//!
//! ```text
//! cargo run --features cli --bin acgs-cache -- --help
//! ```
//!
//! Talks to the Redis the services share (`--redis-url` or
//! `ACGS_CACHE_REDIS_URL`), under their key prefix (`--prefix`, default
//! `acgs`). Every command prints a table, or JSON with `--json`; errors go to
//! stderr with exit status 1 (bad input) or 2 (Redis unreachable).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acgs_cache::{decode_header, Cache, Error, InstanceLease, RedactedUrl};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "acgs-cache",
    version,
    about = "Operate acgs-cache fleets: stats, invalidation, inspection"
)]
struct Cli {
    /// The Redis the services share, of any topology: `redis://…`,
    /// `redis+sentinel://…/master`, `redis+cluster://…`, `rediss://…`.
    #[arg(long, env = "ACGS_CACHE_REDIS_URL", hide_env_values = true)]
    redis_url: String,
    /// The services' key prefix.
    #[arg(long, default_value = "acgs")]
    prefix: String,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every instance's published stats, summed per service and function.
    Stats,
    /// Whether Redis answers (and how fast), and how many instances publish.
    Health,
    /// Publishes an invalidation event (e.g. `governance.rules.updated`) to every instance.
    Invalidate {
        /// The event name: a segment of letters, digits, `_`, `-`, then optionally `.` and any text.
        event: String,
    },
    /// Decodes the envelope header of one stored entry.
    Inspect {
        /// The entry's full Redis key (see `keys`).
        key: String,
    },
    /// Lists the stored entries of one function (a bounded SCAN, never KEYS).
    Keys {
        /// The function instance's name, as its stats row shows it (`evaluate_policy`, `orders::get`, `Service<Pg>::find`).
        function: String,
        /// The service that owns it.
        #[arg(long)]
        service: String,
        /// At most this many keys.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// A live view of the fleet: ops/s, hit ratio and latency per function,
    /// with the fleet's ops/s as a sparkline. `q` (or Esc) quits.
    Monitor {
        /// Refresh period in milliseconds.
        #[arg(long, default_value_t = 1_000)]
        interval_ms: u64,
    },
    /// Invalidates every entry of one function on every instance, then deletes its keys.
    Purge {
        /// The function instance's name, as its stats row shows it.
        function: String,
        /// The service that owns it.
        #[arg(long)]
        service: String,
    },
}

/// A failure, and the exit status it maps to.
enum Failure {
    Input(String),
    Redis(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidName(_) | Error::Config(_) => Failure::Input(e.to_string()),
            other => Failure::Redis(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acgs-cache: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("acgs-cache: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Redis(message)) => {
            eprintln!(
                "acgs-cache: redis at {}: {message}",
                RedactedUrl(&cli.redis_url)
            );
            ExitCode::from(2)
        }
    }
}

/// A cache handle for `service` that never publishes stats of its own.
fn cache(cli: &Cli, service: &str) -> Result<Cache, Failure> {
    Ok(Cache::builder()
        .prefix(&cli.prefix)
        .service(service)
        .redis_url(&cli.redis_url)
        .fleet_interval(Duration::ZERO)
        // Nor a heard position: the CLI is not an instance of the fleet.
        .fleet_acknowledgements(Duration::ZERO)
        .connect_timeout(Duration::from_secs(2))
        .l2_soft_timeout(Duration::from_secs(2))
        .build()?)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Input(e.to_string()))?;
    println!("{text}");
    Ok(())
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Stats => stats(cli).await,
        Command::Health => health(cli).await,
        Command::Invalidate { event } => {
            let position = cache(cli, "acgs-cli")?.invalidate(event).await?;
            if cli.json {
                print_json(&serde_json::json!({ "event": event, "position": position }))
            } else {
                println!(
                    "invalidated {event} at log position {}-{}",
                    position.ms, position.seq
                );
                Ok(())
            }
        }
        Command::Inspect { key } => inspect(cli, key).await,
        Command::Monitor { interval_ms } => {
            monitor::run(cli, Duration::from_millis((*interval_ms).max(100))).await
        }
        Command::Keys {
            function,
            service,
            limit,
        } => {
            let keys = cache(cli, "acgs-cli")?
                .stored_keys(service, function, *limit)
                .await?;
            if cli.json {
                print_json(&keys)
            } else {
                for key in &keys {
                    println!("{key}");
                }
                eprintln!("{} key(s) (limit {limit})", keys.len());
                Ok(())
            }
        }
        Command::Purge { function, service } => {
            let cache = cache(cli, service)?;
            // Listing first also checks the names.
            let mut keys = cache.stored_keys(service, function, 1_000).await?;
            // Then the log: every instance drops its copies, even of keys
            // the listings miss.
            let position = cache.invalidate_function(function).await?;
            let mut deleted = 0u64;
            while !keys.is_empty() {
                deleted += cache.delete_stored(&keys).await?;
                keys = cache.stored_keys(service, function, 1_000).await?;
            }
            if cli.json {
                print_json(&serde_json::json!({
                    "service": service, "function": function,
                    "invalidated_at": position, "deleted_keys": deleted,
                }))
            } else {
                println!("purged {service}/{function}: invalidated on every instance, {deleted} key(s) deleted");
                Ok(())
            }
        }
    }
}

async fn stats(cli: &Cli) -> Result<(), Failure> {
    let fleet = cache(cli, "acgs-cli")?.fleet_stats().await?;
    if cli.json {
        return print_json(&fleet);
    }
    println!(
        "{:<24} {:<28} {:>5} {:>10} {:>6} {:>10} {:>10} {:>8} {:>7} {:>9} {:>9}",
        "service",
        "function",
        "inst",
        "calls",
        "hit%",
        "l1_hits",
        "l2_hits",
        "misses",
        "errors",
        "p50",
        "p99"
    );
    for f in &fleet.functions {
        let s = &f.stats;
        println!(
            "{:<24} {:<28} {:>5} {:>10} {:>6.1} {:>10} {:>10} {:>8} {:>7} {:>9} {:>9}",
            f.service,
            s.function,
            f.instances,
            s.calls,
            s.hit_ratio() * 100.0,
            s.l1_hits,
            s.l2_hits,
            s.misses,
            s.errors,
            latency(s.latency_p50_ns),
            latency(s.latency_p99_ns)
        );
    }
    println!();
    print_leases(&fleet.leases);
    eprintln!(
        "{} instance(s) publishing{}",
        fleet.members.len(),
        if fleet.unreadable > 0 {
            format!(", {} unreadable key(s)", fleet.unreadable)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Unix time in ms, as the instances stamp their publications.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one instance's lease looks like from here.
fn lease_state(lease: &InstanceLease, now_ms: u64) -> &'static str {
    if lease.is_stale_at(now_ms) {
        "STALE"
    } else if lease.shortest_lease_ms.is_none() {
        "opted out"
    } else {
        "ok"
    }
}

/// Each instance's heard position and lease: a STALE one is paused, cut off
/// from the invalidation log, or gone, and serves nothing from L1 under its
/// lease (its bounded functions) until it hears the log again.
fn print_leases(leases: &[InstanceLease]) {
    if leases.is_empty() {
        return;
    }
    let now = now_ms();
    println!(
        "{:<28} {:<24} {:<22} {:>10} {:>9} {:>9}  state",
        "instance", "service", "heard", "lease_age", "shortest", "longest"
    );
    let ms = |figure: Option<u64>| figure.map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms"));
    for lease in leases {
        println!(
            "{:<28} {:<24} {:<22} {:>10} {:>9} {:>9}  {}{}",
            lease.instance,
            lease.service,
            lease.heard_position.to_string(),
            ms(lease.lease_age_at(now)),
            ms(lease.shortest_lease_ms),
            ms(lease.longest_lease_ms),
            lease_state(lease, now),
            if lease.opted_out && lease.shortest_lease_ms.is_some() {
                " (some functions opted out)"
            } else {
                ""
            }
        );
    }
}

/// A latency for a table cell.
fn latency(nanos: Option<u64>) -> String {
    match nanos {
        None => "-".to_owned(),
        Some(n) if n < 1_000 => format!("{n}ns"),
        Some(n) if n < 1_000_000 => format!("{:.1}µs", n as f64 / 1e3),
        Some(n) => format!("{:.1}ms", n as f64 / 1e6),
    }
}

async fn health(cli: &Cli) -> Result<(), Failure> {
    let cache = cache(cli, "acgs-cli")?;
    // Fails fast (exit 2) when Redis does not answer its PING.
    cache.connect().await?;
    let fleet = cache.fleet_stats().await?;
    let log_length = cache.invalidation_log_length().await?;
    // What a service's own `health()` reports, seen from here.
    let report = cache.health().await;
    let rtt_us = report
        .l2
        .as_ref()
        .and_then(|l2| l2.ping_rtt_us)
        .unwrap_or(0);
    let now = now_ms();
    let stale: Vec<&str> = fleet
        .leases
        .iter()
        .filter(|lease| lease.is_stale_at(now))
        .map(|lease| lease.instance.as_str())
        .collect();
    if cli.json {
        print_json(&serde_json::json!({
            "redis": "ok",
            "ping_rtt_us": rtt_us,
            "invalidation_log_length": log_length,
            "instances": fleet.members.len(),
            "leases": fleet.leases,
            "stale_leases": stale,
            "report": report,
        }))
    } else {
        println!(
            "redis ok (PING {:.2} ms), invalidation log {log_length} event(s), {} instance(s) publishing, {} stale lease(s)",
            rtt_us as f64 / 1000.0,
            fleet.members.len(),
            stale.len()
        );
        print_leases(&fleet.leases);
        println!("{report}");
        Ok(())
    }
}

async fn inspect(cli: &Cli, key: &str) -> Result<(), Failure> {
    let Some(entry) = cache(cli, "acgs-cli")?.stored_entry(key).await? else {
        return Err(Failure::Input(format!("no key {key:?}")));
    };
    let bytes = entry.bytes;
    let ttl_ms = entry
        .ttl
        .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let (header, payload) = decode_header(&bytes).map_err(|reason| {
        Failure::Input(format!(
            "{key:?} is not an acgs-cache entry ({})",
            reason.as_str()
        ))
    })?;
    let now_ms = now_ms();
    let age_ms = now_ms.saturating_sub(header.created_at_ms);
    let fresh_ms = header.expires_at_ms.saturating_sub(now_ms);
    // The key's last segment is its digest in hex, the envelope holds the
    // digest's low 64 bits: bytes put under another key do not match.
    let bound = format!("{:016x}", header.key);
    let key_matches = key.rsplit(':').next().is_some_and(|d| d.ends_with(&bound));
    if cli.json {
        return print_json(&serde_json::json!({
            "key": key,
            "size_bytes": bytes.len(),
            "payload_bytes": payload.len(),
            "header": header,
            "age_ms": age_ms,
            "fresh_for_ms": fresh_ms,
            "redis_pttl_ms": ttl_ms,
            "key_matches": key_matches,
        }));
    }
    println!("key          {key}");
    println!(
        "size         {} bytes ({} payload)",
        bytes.len(),
        payload.len()
    );
    let codec = match header.codec {
        id if id == acgs_cache::Codec::Postcard.id() => "postcard",
        id if id == acgs_cache::Codec::Json.id() => "json",
        _ => "unknown",
    };
    println!("codec        {codec}");
    println!(
        "compressed   {}",
        header.flags & acgs_cache::FLAG_COMPRESSED != 0
    );
    println!("fingerprint  {:016x}", header.fingerprint);
    println!(
        "bound to     …{bound} ({})",
        if key_matches {
            "this key"
        } else {
            "ANOTHER key: a read counts it wrong_key"
        }
    );
    println!("age          {:.1} s", age_ms as f64 / 1000.0);
    println!(
        "fresh for    {:.1} s (then kept {} ms more for stale-if-error)",
        fresh_ms as f64 / 1000.0,
        ttl_ms.unwrap_or(0).saturating_sub(fresh_ms)
    );
    println!(
        "log position {}-{}",
        header.log_position.ms, header.log_position.seq
    );
    println!(
        "tags         {}",
        if header.tags.is_empty() {
            "-".to_owned()
        } else {
            header.tags.join(", ")
        }
    );
    Ok(())
}

/// The `monitor` command's terminal view.
mod monitor {
    use std::collections::{BTreeMap, VecDeque};
    use std::io::IsTerminal;
    use std::time::{Duration, Instant};

    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table};
    use ratatui::Frame;

    use super::{cache, latency, Cli, Failure};

    /// Samples of fleet ops/s kept for the sparkline.
    const HISTORY: usize = 120;

    /// One function's line in the view.
    struct Line {
        service: String,
        function: String,
        instances: usize,
        ops_per_s: f64,
        hit_ratio: f64,
        p50: Option<u64>,
        p99: Option<u64>,
        errors: u64,
    }

    /// A function's call rate, measured between two publications.
    struct Rate {
        calls: u64,
        at_ms: u64,
        per_s: f64,
    }

    impl Rate {
        /// The rate after a read of `calls` published at `at_ms`.
        fn update(&mut self, calls: u64, at_ms: u64) -> f64 {
            if at_ms > self.at_ms {
                let seconds = (at_ms - self.at_ms) as f64 / 1000.0;
                self.per_s = calls.saturating_sub(self.calls) as f64 / seconds;
                self.calls = calls;
                self.at_ms = at_ms;
            }
            self.per_s
        }
    }

    struct View {
        lines: Vec<Line>,
        history: VecDeque<u64>,
        members: usize,
        status: String,
    }

    pub(super) async fn run(cli: &Cli, interval: Duration) -> Result<(), Failure> {
        if !std::io::stdout().is_terminal() {
            return Err(Failure::Input(
                "monitor needs a terminal; use `stats --json` in scripts".into(),
            ));
        }
        let cache = cache(cli, "acgs-cli")?;
        // Fail before taking over the terminal when Redis does not answer.
        cache.fleet_stats().await?;
        let mut terminal = ratatui::init();
        let outcome = watch(&cache, &mut terminal, interval).await;
        ratatui::restore();
        outcome
    }

    async fn watch(
        cache: &acgs_cache::Cache,
        terminal: &mut ratatui::DefaultTerminal,
        interval: Duration,
    ) -> Result<(), Failure> {
        // Per function: the calls and publication time a rate was last
        // taken from, and that rate. Instances publish every few seconds, so
        // a rate spans two publications and holds until the next one.
        let mut rates: BTreeMap<(String, String), Rate> = BTreeMap::new();
        let mut view = View {
            lines: Vec::new(),
            history: VecDeque::with_capacity(HISTORY),
            members: 0,
            status: "reading the fleet…".into(),
        };
        let mut next_refresh = Instant::now();
        loop {
            if Instant::now() >= next_refresh {
                next_refresh = Instant::now() + interval;
                match cache.fleet_stats().await {
                    Ok(fleet) => {
                        let published_ms = fleet
                            .members
                            .iter()
                            .map(|m| m.published_at_ms)
                            .max()
                            .unwrap_or(0);
                        let mut total = 0.0;
                        view.lines = fleet
                            .functions
                            .iter()
                            .map(|f| {
                                let key = (f.service.clone(), f.stats.function.to_string());
                                let ops = rates
                                    .entry(key)
                                    .or_insert(Rate {
                                        calls: f.stats.calls,
                                        at_ms: published_ms,
                                        per_s: 0.0,
                                    })
                                    .update(f.stats.calls, published_ms);
                                total += ops;
                                Line {
                                    service: f.service.clone(),
                                    function: f.stats.function.to_string(),
                                    instances: f.instances,
                                    ops_per_s: ops,
                                    hit_ratio: f.stats.hit_ratio(),
                                    p50: f.stats.latency_p50_ns,
                                    p99: f.stats.latency_p99_ns,
                                    errors: f.stats.errors,
                                }
                            })
                            .collect();
                        if view.history.len() == HISTORY {
                            view.history.pop_front();
                        }
                        #[allow(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            reason = "a rate: finite, non-negative, far below 2^64 (`as` saturates anyway)"
                        )]
                        view.history.push_back(total.round() as u64);
                        view.members = fleet.members.len();
                        view.status =
                            format!("{} instance(s) · {total:.0} ops/s · q quits", view.members);
                    }
                    Err(e) => view.status = format!("redis: {e} · q quits"),
                }
                terminal
                    .draw(|frame| draw(frame, &view))
                    .map_err(|e| Failure::Input(format!("terminal: {e}")))?;
            }
            // Keys are read without blocking the runtime the cache's
            // connections run on.
            while event::poll(Duration::ZERO).map_err(|e| Failure::Input(e.to_string()))? {
                if let Event::Key(key) = event::read().map_err(|e| Failure::Input(e.to_string()))? {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if key.kind == KeyEventKind::Press
                        && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                    {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn draw(frame: &mut Frame, view: &View) {
        let [table_area, spark_area, status_area] = Layout::vertical([
            Constraint::Min(4),
            Constraint::Length(6),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let header = Row::new([
            "service", "function", "inst", "ops/s", "hit%", "p50", "p99", "errors",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows = view.lines.iter().map(|l| {
            Row::new([
                Cell::from(l.service.clone()),
                Cell::from(l.function.clone()),
                Cell::from(l.instances.to_string()),
                Cell::from(format!("{:.0}", l.ops_per_s)),
                Cell::from(format!("{:.1}", l.hit_ratio * 100.0)),
                Cell::from(latency(l.p50)),
                Cell::from(latency(l.p99)),
                Cell::from(l.errors.to_string()),
            ])
        });
        let widths = [
            Constraint::Percentage(22),
            Constraint::Percentage(26),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
        ];
        let table = Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" acgs-cache fleet "));
        frame.render_widget(table, table_area);
        let history: Vec<u64> = view.history.iter().copied().collect();
        let spark = Sparkline::default()
            .block(Block::bordered().title(" fleet ops/s "))
            .data(&history);
        frame.render_widget(spark, spark_area);
        frame.render_widget(Paragraph::new(view.status.as_str()), status_area);
    }
}
