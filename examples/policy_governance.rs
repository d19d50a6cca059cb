//! The policy-governance service of the origin platform: governance rules,
//! policy decisions and compliance checks, cached, and invalidated by
//! governance events.
//!
//! ```text
//! cargo run --example policy_governance                        # L1 only
//! ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 cargo run --example policy_governance
//! ```
//!
//! With Redis, run it in two terminals at once: a rule update made by one
//! (`governance.rules.updated`) reaches the other's decisions too.
// A program: `expect` (or `unwrap` where the value is known) stops it with
// the reason, which is what an example should do.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use acgs_cache::{cached, Cache};
use serde::{Deserialize, Serialize};

/// The rule store the service reads (a database in the real service).
static RULES: LazyLock<RwLock<BTreeMap<u64, Rule>>> = LazyLock::new(|| {
    RwLock::new(BTreeMap::from([
        (
            1,
            Rule {
                id: 1,
                min_clearance: 2,
                version: 1,
            },
        ),
        (
            2,
            Rule {
                id: 2,
                min_clearance: 4,
                version: 1,
            },
        ),
    ]))
});
static STORE_QUERIES: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: u64,
    pub min_clearance: u8,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub rule_version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    pub tenant: String,
    pub passed: bool,
    pub checked_rules: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    #[error("rule {0} does not exist")]
    UnknownRule(u64),
}

async fn query_store(latency_ms: u64) {
    STORE_QUERIES.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(latency_ms)).await;
}

/// The rule itself: changes rarely, cached for an hour.
#[cached(ttl = "governance_rules", invalidate_on = "governance.rules.*")]
pub async fn governance_rule(rule_id: u64) -> Result<Rule, GovernanceError> {
    query_store(15).await;
    RULES
        .read()
        .unwrap()
        .get(&rule_id)
        .cloned()
        .ok_or(GovernanceError::UnknownRule(rule_id))
}

/// A decision for one subject: cached 5 minutes, dropped on any governance event.
#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
pub async fn evaluate_policy(rule_id: u64, clearance: u8) -> Result<Decision, GovernanceError> {
    let rule = governance_rule(rule_id).await?;
    query_store(5).await; // audit lookup
    Ok(Decision {
        allow: clearance >= rule.min_clearance,
        rule_version: rule.version,
    })
}

/// A tenant's compliance check: tagged with the tenant, so one tenant's
/// change drops only its reports.
#[cached(ttl = "compliance_checks", invalidate_on = "governance.rules.*", tags = ["tenant.{tenant}"])]
pub async fn compliance_check(tenant: String, clearance: u8) -> ComplianceReport {
    query_store(25).await;
    let rules = RULES.read().unwrap().clone();
    let passed = rules.values().all(|r| clearance >= r.min_clearance);
    ComplianceReport {
        tenant,
        passed,
        checked_rules: rules.len(),
    }
}

async fn show_decisions(label: &str) {
    let mut line = String::new();
    for (rule, clearance) in [(1, 3), (2, 3), (2, 5)] {
        let d = evaluate_policy(rule, clearance).await.expect("known rules");
        line += &format!(
            " rule{rule}/clearance{clearance}={}(v{})",
            if d.allow { "allow" } else { "deny" },
            d.rule_version
        );
    }
    println!(
        "{label:<34}{line}   store queries so far: {}",
        STORE_QUERIES.load(Ordering::Relaxed)
    );
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
        .service("policy-governance")
        .apply_env()?
        .build()?;
    if cache.has_l2() {
        println!("policy_governance: L1 + L2 (redis); invalidations reach every instance");
    } else {
        println!("policy_governance: L1 only (in process); set ACGS_CACHE_REDIS_URL to share entries and invalidations");
    }
    cache
        .clone()
        .install_default()
        .expect("first cache of the process");

    show_decisions("first evaluation:").await;
    show_decisions("again (from the cache):").await;

    // A governance change: rule 2 now requires clearance 3.
    {
        let mut rules = RULES.write().unwrap();
        let rule = rules.get_mut(&2).unwrap();
        rule.min_clearance = 3;
        rule.version += 1;
    }
    let position = acgs_cache::invalidate("governance.rules.updated").await?;
    println!("rule 2 updated; invalidated governance.rules.updated at log position {position}");
    show_decisions("after the event (recomputed):").await;

    for tenant in ["acme", "globex"] {
        let report = compliance_check(tenant.into(), 3).await;
        println!(
            "compliance {tenant:<7} passed={} ({} rules)",
            report.passed, report.checked_rules
        );
    }
    acgs_cache::invalidate("tenant.acme").await?;
    let before = STORE_QUERIES.load(Ordering::Relaxed);
    compliance_check("acme".into(), 3).await;
    compliance_check("globex".into(), 3).await;
    println!(
        "tenant.acme invalidated: {} store query (acme recomputed, globex still cached)",
        STORE_QUERIES.load(Ordering::Relaxed) - before
    );

    // One decision, by its arguments, through the generated companion.
    invalidate_evaluate_policy(1, 3).await?;
    let before = STORE_QUERIES.load(Ordering::Relaxed);
    evaluate_policy(1, 3).await?;
    evaluate_policy(2, 3).await?;
    println!(
        "invalidate_evaluate_policy(1, 3): {} store query for the two decisions",
        STORE_QUERIES.load(Ordering::Relaxed) - before
    );

    let stats = cache.stats().await;
    for f in &stats.functions {
        println!(
            "  {:<18} calls={:<3} l1_hits={:<3} l2_hits={:<3} misses={:<3} invalidated={}",
            f.function,
            f.calls,
            f.l1_hits,
            f.l2_hits,
            f.misses,
            f.rejected.get("invalidated").copied().unwrap_or(0)
        );
    }
    println!("{stats}");
    Ok(())
}
