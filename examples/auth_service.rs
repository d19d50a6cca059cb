//! An auth service's caching: sessions, a token-verification cache and a
//! rate-limited login endpoint under a burst.
//!
//! ```text
//! cargo run --example auth_service                     # L1 only, in process
//! ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --example auth_service                 # shared through redis
//! ```
//!
//! It logs users in (each login checked by a `login` rate limiter keyed by
//! user), serves requests that present bearer tokens (the identity
//! provider's 30 ms verification cached by token digest), then logs one
//! session out, revokes all of a user's sessions and a token, and prints
//! what happened.
// A program: `expect` (or `unwrap` where the value is known) stops it with
// the reason, which is what an example should do.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acgs_cache::rate_limit::RateLimiter;
use acgs_cache::{Cache, SessionStore, TokenCache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    display_name: String,
    roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    scope: String,
    /// Seconds since the epoch.
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("token rejected by the identity provider")]
struct Rejected;

static IDP_CALLS: AtomicU32 = AtomicU32::new(0);

/// The identity provider's introspection: 30 ms per call.
async fn introspect(token: &str) -> Result<Claims, Rejected> {
    IDP_CALLS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (sub, scope) = token
        .strip_prefix("tok-")
        .and_then(|rest| rest.split_once('-'))
        .ok_or(Rejected)?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    Ok(Claims {
        sub: sub.to_owned(),
        scope: scope.to_owned(),
        exp,
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

    let cache = Cache::builder().service("auth").apply_env()?.build()?;
    if cache.has_l2() {
        println!(
            "auth_service: L1 (in process) + L2 (redis): sessions, tokens and limits are shared"
        );
    } else {
        println!("auth_service: L1 only (in process); set ACGS_CACHE_REDIS_URL=redis://127.0.0.1:6379 to share them through redis");
    }

    let sessions: SessionStore<Profile> = SessionStore::builder("web").build(&cache)?;
    let tokens: TokenCache<Claims> = TokenCache::builder("idp")
        .expires_at(|c: &Claims| Some(UNIX_EPOCH + Duration::from_secs(c.exp)))
        .build(&cache)?;
    // Five login attempts per user per minute, at most three at once; while
    // Redis cannot answer, logins are refused rather than unlimited.
    let logins = RateLimiter::builder("login")
        .rate(5, Duration::from_secs(60))
        .burst(3)
        .fail_closed()
        .build(&cache)?;
    // Each run uses fresh user names: a rerun against the same Redis would
    // otherwise find the previous run's spent login budget.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let user = |name: &str| format!("{name}-{run}");

    // 1. A burst of 10 login attempts by one user, then one each by two others.
    let (mut allowed, mut denied) = (0, 0);
    let mut created = Vec::new();
    let attempts = std::iter::repeat_n("alice", 10).chain(["bob", "carol"]);
    for name in attempts {
        let decision = logins.check(&user(name)).await?;
        if !decision.allowed {
            denied += 1;
            if denied == 1 {
                println!(
                    "  login {name}: denied ({:?}), retry after {:.1?}",
                    decision.decided_by,
                    decision.retry_after.unwrap_or_default()
                );
            }
            continue;
        }
        allowed += 1;
        let profile = Profile {
            display_name: name.to_owned(),
            roles: vec!["member".to_owned()],
        };
        let session = sessions.create(&user(name), profile).await?;
        println!(
            "  login {name}: allowed ({} left), session {}…",
            decision.remaining,
            &session.id()[..8]
        );
        created.push(session);
    }
    println!("login burst: {allowed} allowed, {denied} denied (burst 3 per user)");

    // 2. Requests carrying bearer tokens: 40 requests over 4 distinct tokens
    // (one forged). Only the first use of each valid token reaches the IdP.
    let bearer = [
        "tok-alice-read",
        "tok-bob-write",
        "tok-carol-read",
        "forged",
    ];
    let (mut served, mut rejected) = (0, 0);
    for i in 0..40 {
        match tokens.verify(bearer[i % bearer.len()], introspect).await {
            Ok(_) => served += 1,
            Err(Rejected) => rejected += 1,
        }
    }
    let verifications = IDP_CALLS.load(Ordering::Relaxed);
    println!(
        "tokens: 40 requests, {served} served, {rejected} rejected, {verifications} IdP calls (errors are never cached)"
    );

    // 3. Requests touching their sessions (sliding expiry).
    for session in &created {
        let touched = sessions.touch(session.id()).await?.is_some();
        assert!(touched, "a fresh session is there");
    }

    // 4. alice logs out of one session; carol is logged out everywhere; a
    // token is revoked.
    let mut revoked = 0;
    if let Some(first) = created.first() {
        sessions.revoke(first.id()).await?;
        revoked += 1;
    }
    sessions.revoke_user(&user("carol")).await?;
    revoked += created.iter().filter(|s| s.user() == user("carol")).count();
    tokens.revoke("tok-bob-write").await?;
    tokens.verify("tok-bob-write", introspect).await?;
    let mut live = 0;
    for session in &created {
        if let Some(s) = sessions.get(session.id()).await {
            live += 1;
            println!(
                "  session {}… of {} is live",
                &s.id()[..8],
                s.data().display_name
            );
        }
    }
    println!(
        "sessions: {} created, {revoked} revoked, {live} live; revoked token verified again: {} IdP calls in all",
        created.len(),
        IDP_CALLS.load(Ordering::Relaxed)
    );

    let l = logins.stats();
    println!(
        "summary: logins_allowed={} logins_denied={} sessions_created={} sessions_revoked={revoked} sessions_live={live} token_requests=41 idp_calls={}",
        l.allowed,
        l.denied + l.failed_closed,
        created.len(),
        IDP_CALLS.load(Ordering::Relaxed)
    );
    Ok(())
}
