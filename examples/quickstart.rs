//! Quickstart: a policy-decision service whose evaluations are cached.
//!
//! ```text
//! cargo run --example quickstart                       # L1 only, in process
//! ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --example quickstart                   # L1 + L2; run it twice:
//!                                                      # the second run hits L2
//! ```
//!
//! Each evaluation "queries the policy store" for 20 ms. The program serves
//! three rounds of the same requests: the first round computes (or, on a
//! second run with Redis, reads what the first run stored), the next rounds
//! are answered from L1.
// A program: `expect` (or `unwrap` where the value is known) stops it with
// the reason, which is what an example should do.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub policy_id: u64,
    pub subject: String,
    pub allow: bool,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("policy {0} does not exist")]
    UnknownPolicy(u64),
}

/// Evaluates `policy_id` for `subject`: cached for 5 minutes (the
/// `policy_decision` policy), dropped on any `governance.*` event.
#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
pub async fn evaluate_policy(policy_id: u64, subject: &str) -> Result<Decision, DbError> {
    query_policy_store(policy_id, subject).await
}

/// The uncached evaluation: a 20 ms round trip to the policy store.
async fn query_policy_store(policy_id: u64, subject: &str) -> Result<Decision, DbError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if policy_id == 0 {
        return Err(DbError::UnknownPolicy(policy_id));
    }
    let allow = !subject.starts_with("guest") || policy_id.is_multiple_of(2);
    Ok(Decision {
        policy_id,
        subject: subject.to_owned(),
        allow,
        reason: format!(
            "policy {policy_id} {} {subject}",
            if allow { "permits" } else { "denies" }
        ),
    })
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

    let cache = Cache::from_env()?;
    if cache.has_l2() {
        println!("quickstart: L1 (in process) + L2 (redis); run me again to see L2 hits");
    } else {
        println!("quickstart: L1 only (in process); set ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 to share entries through redis");
    }
    cache
        .clone()
        .install_default()
        .expect("first cache of the process");

    let requests = [
        (7, "alice"),
        (8, "guest-bob"),
        (9, "guest-carol"),
        (7, "dave"),
        (0, "mallory"),
    ];
    for round in 1..=3 {
        let started = Instant::now();
        for (policy_id, subject) in requests {
            match evaluate_policy(policy_id, subject).await {
                Ok(d) => println!("  round {round}: {:<32} allow={}", d.reason, d.allow),
                Err(e) => println!("  round {round}: error (not cached): {e}"),
            }
        }
        println!("round {round} took {:?}", started.elapsed());
    }
    println!("{}", cache.stats().await);
    Ok(())
}
