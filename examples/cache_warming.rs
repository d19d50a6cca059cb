//! Cache warming before a service takes traffic: governance rules primed in
//! bulk from a database export, then compliance reports computed with
//! bounded concurrency, each with progress and the rate achieved; then the
//! first requests find everything cached.
//!
//! ```text
//! cargo run --release --example cache_warming                   # L1 only
//! ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example cache_warming
//! ```
//!
//! With Redis the entries go to L2 (pipelined `SET`s), where every instance
//! of the service finds them; without it they go to this process's L1.
//! Last line: `cache_warming: rules=N reports=N written=N rules_per_s=N
//! reports_per_s=N hits_after=N misses_after=N`.
// A program: `expect` (or `unwrap` where the value is known) stops it with
// the reason, which is what an example should do.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, WarmReport};
use serde::{Deserialize, Serialize};

const RULES: u64 = 50_000;
const TENANTS: u32 = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: u64,
    pub min_clearance: u8,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    pub tenant: u32,
    pub passed: bool,
    pub checked_rules: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("rule {0} does not exist")]
pub struct UnknownRule(u64);

/// The database the service reads: single-row queries cost a round trip,
/// a bulk export streams every row at once.
struct Database {
    queries: AtomicU64,
}

impl Database {
    fn row(id: u64) -> Rule {
        Rule {
            id,
            min_clearance: (id % 5) as u8,
            text: format!("rule {id}: subjects below clearance {} are denied", id % 5),
        }
    }

    async fn rule(&self, id: u64) -> Result<Rule, UnknownRule> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
        if id < RULES {
            Ok(Self::row(id))
        } else {
            Err(UnknownRule(id))
        }
    }

    /// Every rule, as a nightly export would give them.
    fn export(&self) -> impl Iterator<Item = Rule> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        (0..RULES).map(Self::row)
    }

    /// A tenant's compliance check: slow (it reads many rules).
    async fn compliance(&self, tenant: u32) -> ComplianceReport {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
        ComplianceReport {
            tenant,
            passed: !tenant.is_multiple_of(7),
            checked_rules: 40 + tenant % 10,
        }
    }
}

static DB: Database = Database {
    queries: AtomicU64::new(0),
};

#[cached(ttl = "governance_rules", invalidate_on = "governance.rules.*")]
pub async fn governance_rule(id: u64) -> Result<Rule, UnknownRule> {
    DB.rule(id).await
}

#[cached(ttl = "compliance_checks", tags = ["tenant.{tenant}"])]
pub async fn compliance_report(tenant: u32) -> ComplianceReport {
    DB.compliance(tenant).await
}

/// Prints a progress line about every tenth of `total`.
fn progress(what: &'static str, total: u64) -> impl Fn(&WarmReport) + Send + Sync {
    let next = AtomicU64::new(0);
    move |p: &WarmReport| {
        if p.entries >= next.load(Ordering::Relaxed) || p.entries == total {
            next.store(p.entries + total / 10, Ordering::Relaxed);
            println!(
                "  {what}: {:>6}/{total} written, {:.0}/s",
                p.written,
                p.per_second()
            );
        }
    }
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
    let cache = Cache::builder()
        .service("cache-warming")
        .apply_env()?
        .build()?;
    if cache.has_l2() {
        println!("cache_warming: L1 + L2 (redis); entries are written to Redis, where every instance finds them");
    } else {
        println!(
            "cache_warming: L1 only (in process); set ACGS_CACHE_REDIS_URL to warm the shared tier"
        );
    }
    cache
        .clone()
        .install_default()
        .expect("first cache of the process");

    // 1. Precomputed: the warmer is created before the export is read, so
    // a rule change published meanwhile would reject what it writes.
    println!("warming {RULES} governance rules from the nightly export:");
    let warmer = cache
        .warmer()
        .await
        .batch_size(1_000)
        .on_progress(progress("rules", RULES));
    let rules = warmer
        .load(
            DB.export()
                .map(|rule| warm_entry_governance_rule(rule.id, rule)),
        )
        .await?;
    println!("  done: {rules}");

    // 2. Computed: every tenant's compliance report, 64 at a time.
    println!("computing {TENANTS} compliance reports, 64 at a time:");
    let reports = cache
        .warmer()
        .await
        .concurrency(64)
        .batch_size(50)
        .on_progress(progress("reports", u64::from(TENANTS)))
        .compute(0..TENANTS, |tenant| async move {
            let report = DB.compliance(tenant).await;
            Some(warm_entry_compliance_report(tenant, report))
        })
        .await?;
    println!("  done: {reports}");

    // 3. The first requests: all answered from the cache.
    let queries_before = DB.queries.load(Ordering::Relaxed);
    let start = Instant::now();
    for id in (0..RULES).step_by(97) {
        assert_eq!(governance_rule(id).await?, Database::row(id));
    }
    for tenant in (0..TENANTS).step_by(7) {
        compliance_report(tenant).await;
    }
    let stats = cache.stats().await;
    let (rule, report) = (
        stats.function("governance_rule").expect("called"),
        stats.function("compliance_report").expect("called"),
    );
    let hits = rule.l1_hits + rule.l2_hits + report.l1_hits + report.l2_hits;
    let misses = rule.misses + report.misses;
    println!(
        "first requests: {} calls in {:.1?}, {} database queries",
        hits + misses,
        start.elapsed(),
        DB.queries.load(Ordering::Relaxed) - queries_before
    );
    println!(
        "cache_warming: rules={} reports={} written={} rules_per_s={:.0} reports_per_s={:.0} hits_after={hits} misses_after={misses}",
        rules.entries,
        reports.entries,
        rules.written + reports.written,
        rules.per_second(),
        reports.per_second(),
    );
    Ok(())
}
