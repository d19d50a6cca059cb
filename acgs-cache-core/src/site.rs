//! The static descriptor `#[cached]` emits for each cached function.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::cache::{Cache, FunctionState};
use crate::codec::Codec;
use crate::coherence::Consistency;
use crate::policy::TtlPolicy;

/// Everything the runtime needs to know about one cached function, built in a
/// `static` by the attribute. Construction is `const` and additive (setters),
/// so new attribute options do not change the shape of existing expansions.
#[derive(Debug)]
pub struct CallSite {
    pub(crate) name: &'static str,
    pub(crate) module: &'static str,
    pub(crate) fingerprint: u64,
    pub(crate) policy: &'static TtlPolicy,
    pub(crate) invalidate_on: &'static [&'static str],
    pub(crate) codec: Codec,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) instance: Option<fn() -> &'static Cache>,
    pub(crate) consistency: Consistency,
    pub(crate) lock: bool,
    /// The function's state in the first cache that served it: lets the
    /// common one-cache process skip the registry lookup on every call.
    pub(crate) first: OnceLock<(u64, Arc<FunctionState>)>,
}

impl CallSite {
    /// A descriptor for the function `name` in `module`.
    #[must_use]
    pub const fn new(
        name: &'static str,
        module: &'static str,
        fingerprint: u64,
        policy: &'static TtlPolicy,
    ) -> Self {
        CallSite {
            name,
            module,
            fingerprint,
            policy,
            invalidate_on: &[],
            codec: Codec::Postcard,
            negative_ttl: None,
            instance: None,
            consistency: Consistency::Bounded,
            lock: false,
            first: OnceLock::new(),
        }
    }

    /// Event patterns that invalidate this function's entries.
    #[must_use]
    pub const fn invalidate_on(mut self, patterns: &'static [&'static str]) -> Self {
        self.invalidate_on = patterns;
        self
    }

    /// The payload codec.
    #[must_use]
    pub const fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Cache `None` results for `ttl` (negative caching).
    #[must_use]
    pub const fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Use this cache instance instead of the process default.
    #[must_use]
    pub const fn instance(mut self, cache: fn() -> &'static Cache) -> Self {
        self.instance = Some(cache);
        self
    }

    /// What to serve from L1 while the instance cannot hear invalidations.
    #[must_use]
    pub const fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Take a fleet-wide lock on misses (one instance computes).
    #[must_use]
    pub const fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// The function's name (used in keys and stats).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The module the function is defined in.
    #[must_use]
    pub const fn module(&self) -> &'static str {
        self.module
    }

    /// The schema fingerprint.
    #[must_use]
    pub const fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The compiled policy (before run-time overrides).
    #[must_use]
    pub const fn policy(&self) -> &'static TtlPolicy {
        self.policy
    }

    /// The `invalidate_on` patterns, checked at compile time.
    #[must_use]
    pub const fn invalidation_patterns(&self) -> &'static [&'static str] {
        self.invalidate_on
    }
}
