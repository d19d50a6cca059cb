//! TTL policies: named, compile-time-checked lifetimes for cached values.
//!
//! A [`TtlPolicy`] is more than one number: it carries the L2 lifetime, a
//! shorter L1 lifetime that bounds how stale an instance's local copy may be,
//! jitter that spreads the expiry of entries written together, a
//! stale-if-error window and a refresh-ahead fraction. Durations can be
//! overridden at run time ([`PolicyOverride`]); names are fixed at compile
//! time.

use std::time::Duration;

use crate::error::Error;

/// Upper bound of the default L1 lifetime: an instance's local copy is never
/// older than this unless the policy says otherwise.
pub const DEFAULT_L1_CAP: Duration = Duration::from_secs(60);

/// A named caching policy.
///
/// Built with `const fn`s so that user policies are `const` items the
/// `#[cached(ttl = path::TO_POLICY)]` attribute can name:
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::TtlPolicy;
///
/// pub const RISK_SCORES: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120))
///     .with_l1_ttl(Duration::from_secs(10))
///     .with_jitter_percent(5);
/// assert_eq!(RISK_SCORES.l1_ttl(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    name: &'static str,
    ttl: Duration,
    l1_ttl: Option<Duration>,
    jitter_percent: u8,
    stale_if_error: Duration,
    refresh_ahead_percent: u8,
    lock: bool,
    stale_timeout: Option<Duration>,
    max_staleness: Option<MaxStaleness>,
}

impl TtlPolicy {
    /// A policy whose entries live `ttl` in L2. The L1 lifetime defaults to
    /// `min(ttl, 60 s)`; no jitter, no stale window, no refresh-ahead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!((RISK.name(), RISK.ttl()), ("risk_scores", Duration::from_secs(120)));
    /// ```
    #[must_use]
    pub const fn new(name: &'static str, ttl: Duration) -> Self {
        TtlPolicy {
            name,
            ttl,
            l1_ttl: None,
            jitter_percent: 0,
            stale_if_error: Duration::ZERO,
            refresh_ahead_percent: 0,
            lock: false,
            stale_timeout: None,
            max_staleness: None,
        }
    }

    /// Sets the L1 lifetime. It is clamped to the L2 lifetime when used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_l1_ttl(Duration::from_secs(10));
    /// assert_eq!(RISK.l1_ttl(), Duration::from_secs(10));
    /// ```
    #[must_use]
    pub const fn with_l1_ttl(mut self, l1_ttl: Duration) -> Self {
        self.l1_ttl = Some(l1_ttl);
        self
    }

    /// Spreads L2 expiry by up to `percent` of the TTL either way (capped at 50).
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_jitter_percent(10);
    /// assert_eq!(RISK.jitter_percent(), 10);
    /// ```
    #[must_use]
    pub const fn with_jitter_percent(mut self, percent: u8) -> Self {
        self.jitter_percent = if percent > 50 { 50 } else { percent };
        self
    }

    /// How long past its TTL a value may still answer when the function fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_stale_if_error(Duration::from_secs(600));
    /// assert_eq!(RISK.stale_if_error(), Duration::from_secs(600));
    /// ```
    #[must_use]
    pub const fn with_stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// With a stale value available, a computation running longer than
    /// `timeout` is dropped and the stale value served (needs a stale window).
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_stale_if_error(Duration::from_secs(600)).with_stale_timeout(Duration::from_millis(200));
    /// assert_eq!(RISK.stale_timeout(), Some(Duration::from_millis(200)));
    /// ```
    #[must_use]
    pub const fn with_stale_timeout(mut self, timeout: Duration) -> Self {
        self.stale_timeout = Some(timeout);
        self
    }

    /// The stale timeout, if any.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!(RISK.stale_timeout(), None);
    /// ```
    #[must_use]
    pub const fn stale_timeout(&self) -> Option<Duration> {
        self.stale_timeout
    }

    /// Fraction of the TTL (in percent, 1–99) after which a hit refreshes in the background.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_refresh_ahead_percent(80);
    /// assert_eq!(RISK.refresh_ahead_percent(), 80);
    /// ```
    #[must_use]
    pub const fn with_refresh_ahead_percent(mut self, percent: u8) -> Self {
        self.refresh_ahead_percent = if percent > 99 { 99 } else { percent };
        self
    }

    /// Misses take a Redis lock so one instance of the fleet computes while
    /// the others wait for its value (as `#[cached(lock = true)]`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_lock(true);
    /// assert!(RISK.lock());
    /// ```
    #[must_use]
    pub const fn with_lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// The lease of this policy's functions (see [`MaxStaleness`]); without
    /// it, the cache's ([`CacheBuilder::max_staleness`](crate::CacheBuilder::max_staleness)).
    /// A `Lease` under [`MIN_MAX_STALENESS`] is raised to it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::{MaxStaleness, TtlPolicy};
    ///
    /// pub const REVOCATIONS: TtlPolicy = TtlPolicy::new("revocations", Duration::from_secs(300))
    ///     .with_max_staleness(MaxStaleness::Lease(Duration::from_millis(250)));
    /// assert_eq!(REVOCATIONS.max_staleness(), Some(MaxStaleness::Lease(Duration::from_millis(250))));
    /// ```
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120)).with_max_staleness(acgs_cache_core::MaxStaleness::L1Ttl);
    /// assert_eq!(RISK.max_staleness(), Some(acgs_cache_core::MaxStaleness::L1Ttl));
    /// ```
    #[must_use]
    pub const fn with_max_staleness(mut self, max: MaxStaleness) -> Self {
        self.max_staleness = Some(match max {
            MaxStaleness::Lease(d) if d.as_nanos() < MIN_MAX_STALENESS.as_nanos() => {
                MaxStaleness::Lease(MIN_MAX_STALENESS)
            }
            other => other,
        });
        self
    }

    /// The policy's own [`MaxStaleness`], if it sets one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!(RISK.max_staleness(), None); // the cache's then
    /// ```
    #[must_use]
    pub const fn max_staleness(&self) -> Option<MaxStaleness> {
        self.max_staleness
    }

    /// Whether misses take the fleet-wide lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert!(!RISK.lock());
    /// ```
    #[must_use]
    pub const fn lock(&self) -> bool {
        self.lock
    }

    /// The policy's name; run-time overrides address it by this name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!(RISK.name(), "risk_scores"); // what ACGS_CACHE_TTL_RISK_SCORES overrides
    /// ```
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The L2 lifetime (logical expiry of an entry).
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!(RISK.ttl(), Duration::from_secs(120));
    /// ```
    #[must_use]
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The L1 lifetime: the explicit one, or `min(ttl, 60 s)`, never above `ttl`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!(RISK.l1_ttl(), Duration::from_secs(60)); // min(ttl, 60 s) unless set
    /// ```
    #[must_use]
    pub const fn l1_ttl(&self) -> Duration {
        let wanted = match self.l1_ttl {
            Some(l1) => l1,
            None => DEFAULT_L1_CAP,
        };
        if wanted.as_nanos() < self.ttl.as_nanos() {
            wanted
        } else {
            self.ttl
        }
    }

    /// The jitter, in percent of the TTL.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// println!("{}", RISK.jitter_percent());
    /// ```
    #[must_use]
    pub const fn jitter_percent(&self) -> u8 {
        self.jitter_percent
    }

    /// The stale-if-error window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// assert_eq!(RISK.stale_if_error(), Duration::ZERO);
    /// ```
    #[must_use]
    pub const fn stale_if_error(&self) -> Duration {
        self.stale_if_error
    }

    /// The refresh-ahead fraction in percent (0 = off).
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::TtlPolicy;
    /// const RISK: TtlPolicy = TtlPolicy::new("risk_scores", Duration::from_secs(120));
    /// println!("{}", RISK.refresh_ahead_percent());
    /// ```
    #[must_use]
    pub const fn refresh_ahead_percent(&self) -> u8 {
        self.refresh_ahead_percent
    }

    /// The L2 lifetime for one entry, with this policy's jitter applied.
    /// `spread` is any well-mixed number (the key digest), so entries written
    /// together expire at different times while one entry's TTL is repeatable.
    pub(crate) fn jittered_ttl(&self, spread: u64) -> Duration {
        if self.jitter_percent == 0 {
            return self.ttl;
        }
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let span = ttl_ms / 100 * u64::from(self.jitter_percent);
        if span == 0 {
            return self.ttl;
        }
        let offset = spread % (2 * span + 1);
        Duration::from_millis((ttl_ms - span + offset).max(1))
    }

    /// Applies a run-time override.
    #[must_use]
    pub(crate) fn overridden(mut self, with: &PolicyOverride) -> Self {
        if let Some(ttl) = with.ttl {
            self.ttl = ttl;
        }
        if let Some(l1) = with.l1_ttl {
            self.l1_ttl = Some(l1);
        }
        if let Some(window) = with.stale_if_error {
            self.stale_if_error = window;
        }
        if let Some(max) = with.max_staleness {
            self.max_staleness = Some(max);
        }
        self
    }
}

/// The built-in policies of the origin platform.
pub mod builtin {
    use super::TtlPolicy;
    use std::time::Duration;

    const MINUTE: u64 = 60;

    /// `policy_decision`: 5 min.
    pub const POLICY_DECISION: TtlPolicy =
        TtlPolicy::new("policy_decision", Duration::from_secs(5 * MINUTE));
    /// `governance_rules`: 1 h.
    pub const GOVERNANCE_RULES: TtlPolicy =
        TtlPolicy::new("governance_rules", Duration::from_secs(60 * MINUTE));
    /// `static_configuration`: 24 h.
    pub const STATIC_CONFIGURATION: TtlPolicy = TtlPolicy::new(
        "static_configuration",
        Duration::from_secs(24 * 60 * MINUTE),
    );
    /// `user_sessions`: 30 min.
    pub const USER_SESSIONS: TtlPolicy =
        TtlPolicy::new("user_sessions", Duration::from_secs(30 * MINUTE));
    /// `api_responses`: 10 min.
    pub const API_RESPONSES: TtlPolicy =
        TtlPolicy::new("api_responses", Duration::from_secs(10 * MINUTE));
    /// `compliance_checks`: 15 min.
    pub const COMPLIANCE_CHECKS: TtlPolicy =
        TtlPolicy::new("compliance_checks", Duration::from_secs(15 * MINUTE));

    /// All built-in policies, in the order of `grammar::BUILTIN_POLICY_NAMES`.
    pub const ALL: [TtlPolicy; 6] = [
        POLICY_DECISION,
        GOVERNANCE_RULES,
        STATIC_CONFIGURATION,
        USER_SESSIONS,
        API_RESPONSES,
        COMPLIANCE_CHECKS,
    ];
}

/// A run-time change to a named policy's durations (from the environment or
/// the builder). Fields left `None` keep the compiled value.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::{Cache, PolicyOverride};
///
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder()
///     .policy_override("policy_decision", PolicyOverride {
///         ttl: Some(Duration::from_secs(600)),
///         ..Default::default()
///     })
///     .build()?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyOverride {
    /// New L2 lifetime.
    pub ttl: Option<Duration>,
    /// New L1 lifetime.
    pub l1_ttl: Option<Duration>,
    /// New stale-if-error window.
    pub stale_if_error: Option<Duration>,
    /// New lease (see [`MaxStaleness`]).
    pub max_staleness: Option<MaxStaleness>,
}

/// Parses a duration such as `90s`, `5m`, `1h30m` or `250ms`.
///
/// # Errors
///
/// [`Error::Config`] when the text is not a duration or is zero.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("0s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err(Error::Config(format!(
            "duration {text:?} is zero; a cached value needs a positive lifetime"
        ))),
        Ok(d) => Ok(d),
        Err(e) => Err(Error::Config(format!(
            "{text:?} is not a duration ({e}); write e.g. \"90s\", \"5m\" or \"1h30m\""
        ))),
    }
}

/// The default [`MaxStaleness`]: an L1 entry is served only while its
/// instance has heard the whole invalidation log within the last second.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(1);

/// The shortest lease accepted: below it, the clock's resolution (4 ms on
/// Linux) and the renewal's round trip would leave no lease at all.
pub const MIN_MAX_STALENESS: Duration = Duration::from_millis(20);

/// How long after an invalidation is acknowledged an instance may still
/// serve what it invalidated, whatever happens to that instance: the lease
/// on the invalidation log.
///
/// An instance knows when it last heard the whole log: the send time of its
/// last log read that returned (a blocking read that returns empty proves
/// that nothing was appended before the server ran it). With
/// `MaxStaleness::Lease(δ)` it serves an L1 (or L2) entry only while that
/// is at most δ ago, and renews it with a read every δ/4 while the log is
/// quiet. So once `invalidate` returns `Ok`, no instance serves what it
/// invalidated more than δ later — paused, partitioned with its TCP
/// connections left open, cut off from a Redis that stopped answering, or
/// across a failover. Past its lease an instance answers as when the log is
/// unheard: a short wait for the log, then the function.
///
/// Set per cache ([`CacheBuilder::max_staleness`](crate::CacheBuilder::max_staleness),
/// default [`DEFAULT_MAX_STALENESS`]), per policy
/// ([`TtlPolicy::with_max_staleness`]) or per function
/// (`#[cached(max_staleness = "250ms")]`), the most specific winning.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::MaxStaleness;
///
/// assert_eq!(MaxStaleness::parse("250ms")?, MaxStaleness::Lease(Duration::from_millis(250)));
/// assert_eq!(MaxStaleness::parse("l1_ttl")?, MaxStaleness::L1Ttl);
/// assert!(MaxStaleness::parse("5ms").is_err()); // below MIN_MAX_STALENESS
/// # Ok::<(), acgs_cache_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MaxStaleness {
    /// Serve entries only while the log was heard within this long (at
    /// least [`MIN_MAX_STALENESS`]).
    Lease(Duration),
    /// The opt-out (`max_staleness = "l1_ttl"`): serve L1 entries for their
    /// L1 TTL (60 s by default) even while the instance cannot hear the log,
    /// with no extra load while Redis is away. An instance that is paused
    /// or cut off without noticing keeps serving invalidated values that
    /// long: not for revocations, decisions or anything a change must reach
    /// at once.
    L1Ttl,
}

impl MaxStaleness {
    /// Parses `"250ms"`, `"1s"` (a lease) or `"l1_ttl"` (the opt-out).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for anything else, or a lease under
    /// [`MIN_MAX_STALENESS`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::MaxStaleness;
    /// assert_eq!(MaxStaleness::parse("250ms").unwrap(), MaxStaleness::Lease(Duration::from_millis(250)));
    /// assert_eq!(MaxStaleness::parse("l1_ttl").unwrap(), MaxStaleness::L1Ttl);
    /// assert!(MaxStaleness::parse("soon").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.trim() == "l1_ttl" {
            return Ok(MaxStaleness::L1Ttl);
        }
        let lease = parse_duration(text).map_err(|e| {
            Error::Config(format!(
                "max staleness: {e}, or \"l1_ttl\" to serve L1 entries for their L1 TTL while the log is unheard"
            ))
        })?;
        MaxStaleness::lease(lease)
    }

    /// A lease of `max`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `max` is under [`MIN_MAX_STALENESS`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::MaxStaleness;
    /// assert!(MaxStaleness::lease(Duration::from_millis(250)).is_ok());
    /// assert!(MaxStaleness::lease(Duration::from_micros(1)).is_err()); // under the minimum
    /// ```
    pub fn lease(max: Duration) -> Result<Self, Error> {
        if max < MIN_MAX_STALENESS {
            return Err(Error::Config(format!(
                "max staleness {max:?} is under {MIN_MAX_STALENESS:?}: the clock's resolution and a renewal's round trip would leave no lease"
            )));
        }
        Ok(MaxStaleness::Lease(max))
    }

    /// The lease, or `None` for the opt-out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::MaxStaleness;
    /// assert_eq!(MaxStaleness::Lease(Duration::from_secs(1)).as_lease(), Some(Duration::from_secs(1)));
    /// assert_eq!(MaxStaleness::L1Ttl.as_lease(), None);
    /// ```
    #[must_use]
    pub const fn as_lease(&self) -> Option<Duration> {
        match self {
            MaxStaleness::Lease(max) => Some(*max),
            MaxStaleness::L1Ttl => None,
        }
    }
}

impl Default for MaxStaleness {
    fn default() -> Self {
        MaxStaleness::Lease(DEFAULT_MAX_STALENESS)
    }
}

impl std::fmt::Display for MaxStaleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxStaleness::Lease(max) => write!(f, "{}", humantime::format_duration(*max)),
            MaxStaleness::L1Ttl => f.write_str("l1_ttl"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acgs_cache_grammar::BUILTIN_POLICY_NAMES;

    #[test]
    fn builtin_table_matches_the_names_the_attribute_accepts() {
        let names: Vec<_> = builtin::ALL.iter().map(TtlPolicy::name).collect();
        assert_eq!(names, BUILTIN_POLICY_NAMES);
        assert_eq!(builtin::POLICY_DECISION.ttl(), Duration::from_secs(300));
        assert_eq!(
            builtin::STATIC_CONFIGURATION.ttl(),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn l1_ttl_defaults_short_and_never_exceeds_ttl() {
        assert_eq!(builtin::GOVERNANCE_RULES.l1_ttl(), DEFAULT_L1_CAP);
        let short = TtlPolicy::new("s", Duration::from_secs(5));
        assert_eq!(short.l1_ttl(), Duration::from_secs(5));
        let inverted = short.with_l1_ttl(Duration::from_secs(50));
        assert_eq!(inverted.l1_ttl(), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_its_band_and_is_repeatable() {
        let p = TtlPolicy::new("j", Duration::from_secs(100)).with_jitter_percent(10);
        for spread in [0u64, 1, 7, 19_999, u64::MAX] {
            let t = p.jittered_ttl(spread);
            assert!(
                t >= Duration::from_secs(90) && t <= Duration::from_secs(110),
                "{t:?}"
            );
            assert_eq!(t, p.jittered_ttl(spread));
        }
    }

    #[test]
    fn durations_parse_like_the_attribute() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let p = builtin::POLICY_DECISION.overridden(&PolicyOverride {
            ttl: Some(Duration::from_secs(10)),
            ..PolicyOverride::default()
        });
        assert_eq!(p.ttl(), Duration::from_secs(10));
        assert_eq!(p.l1_ttl(), Duration::from_secs(10));
        assert_eq!(p.name(), "policy_decision");
    }
}
