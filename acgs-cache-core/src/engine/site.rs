//! The static descriptor `#[cached]` emits for each cached function.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::coherence::function::{FunctionRef, FunctionState};
use crate::coherence::lease::LeaseLimit;
use crate::coherence::state::scope_hash;
use crate::engine::instance::Cache;
use crate::format::codec::Codec;
use crate::format::identity::{Caller, Source};
use crate::format::policy::{MaxStaleness, TtlPolicy};
use crate::measure::stats::FunctionCounters;

/// Everything the runtime needs to know about one cached function, built in a
/// `static` by the attribute. Construction is `const` and additive (setters),
/// so new attribute options do not change the shape of existing expansions.
///
/// A descriptor says what is written in the source; the function *instance*
/// a call belongs to (the impl's type, generic arguments) is resolved at run
/// time (see `identity.rs`), and every instance has its own entries.
#[derive(Debug)]
pub struct CallSite {
    pub(crate) fn_name: &'static str,
    pub(crate) rename: Option<&'static str>,
    pub(crate) module: &'static str,
    pub(crate) fingerprint: u64,
    pub(crate) policy: &'static TtlPolicy,
    pub(crate) invalidate_on: &'static [&'static str],
    pub(crate) codec: Codec,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) instance: Option<fn() -> &'static Cache>,
    /// `max_staleness = …`, when the attribute sets it.
    pub(crate) max_staleness: Option<MaxStaleness>,
    pub(crate) lock: bool,
    /// Whether this site stores data (sessions, tokens) rather than caches
    /// it: a cache built with `disable_caching` still serves it.
    pub(crate) storage: bool,
    /// The state of the first instance that called through this descriptor,
    /// in the first cache that served it: lets the common case (one cache,
    /// a non-generic function) skip the registry on every call.
    pub(crate) first: OnceLock<Resolved>,
}

/// A descriptor's instance resolved in one cache.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) cache: u64,
    /// The instance probe (`type_name` of a closure) it was resolved for.
    pub(crate) probe: &'static str,
    pub(crate) state: Arc<FunctionState>,
}

/// Whether two probes name the same instance. Usually the same string at
/// the same address, but one `type_name` can be emitted once per codegen
/// unit that instantiates it: a call compiled into another unit passes an
/// equal string at another address. Compared by address only, such calls
/// missed the lock-free path and took the registry's lock and an `Arc`
/// clone on every call (15% of the samples of two threads calling one
/// cached function, measured with `perf`).
fn same_probe(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl CallSite {
    /// A descriptor for the function `fn_name` in `module`, with its
    /// signature as written (normalised) and its `version`: the three make
    /// its source fingerprint, computed at compile time.
    #[must_use]
    pub const fn new(
        fn_name: &'static str,
        module: &'static str,
        signature: &'static str,
        version: u32,
        policy: &'static TtlPolicy,
    ) -> Self {
        Self::with_fingerprint(
            fn_name,
            module,
            crate::format::key::fingerprint(module, signature, version),
            policy,
        )
    }

    /// A descriptor whose source fingerprint is already computed.
    #[must_use]
    pub(crate) const fn with_fingerprint(
        fn_name: &'static str,
        module: &'static str,
        fingerprint: u64,
        policy: &'static TtlPolicy,
    ) -> Self {
        CallSite {
            fn_name,
            rename: None,
            module,
            fingerprint,
            policy,
            invalidate_on: &[],
            codec: Codec::Postcard,
            negative_ttl: None,
            instance: None,
            max_staleness: None,
            lock: false,
            storage: false,
            first: OnceLock::new(),
        }
    }

    /// `name = "…"`: the name shown in keys and stats instead of the
    /// function's (its module path and type stay).
    #[must_use]
    pub const fn renamed(mut self, name: &'static str) -> Self {
        self.rename = Some(name);
        self
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

    /// How stale an entry may be served after its invalidation (see
    /// [`MaxStaleness`]); without it, the policy's, else the cache's.
    #[must_use]
    pub const fn max_staleness(mut self, max: MaxStaleness) -> Self {
        self.max_staleness = Some(max);
        self
    }

    /// Take a fleet-wide lock on misses (one instance computes).
    #[must_use]
    pub const fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// Marks a site that stores data (sessions, tokens) rather than caches it.
    #[must_use]
    pub(crate) const fn storage(mut self) -> Self {
        self.storage = true;
        self
    }

    /// The function's name as written (or as renamed).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self.rename {
            Some(name) => name,
            None => self.fn_name,
        }
    }

    /// The module the function is defined in.
    #[must_use]
    pub const fn module(&self) -> &'static str {
        self.module
    }

    /// The source fingerprint (module, signature, version).
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

    /// What the source says about the function's identity.
    pub(crate) fn source(&self) -> Source<'static> {
        Source {
            fn_name: self.fn_name,
            rename: self.rename,
            module: self.module,
            fingerprint: self.fingerprint,
        }
    }
}

impl Cache {
    /// This cache's state of the instance of `site` that the cached
    /// function itself resolved to (`probe`: see `identity.rs`).
    #[inline]
    pub(crate) fn function(
        &self,
        site: &'static CallSite,
        probe: &'static str,
    ) -> FunctionRef<'static> {
        self.function_for(
            site,
            probe,
            Caller {
                name: site.fn_name,
                extra_generics: 0,
            },
        )
    }

    /// This cache's state of the function instance that `caller` (the
    /// function or one of its companions) resolved to, registered on first
    /// use. The first cache a site resolves in keeps the state in the site
    /// itself: found without a lock after that.
    #[inline]
    pub(crate) fn function_for(
        &self,
        site: &'static CallSite,
        probe: &'static str,
        caller: Caller<'_>,
    ) -> FunctionRef<'static> {
        if let Some(first) = site.first.get() {
            if first.cache == self.inner.id() && same_probe(first.probe, probe) {
                return FunctionRef::Borrowed(&first.state);
            }
        }
        self.function_registered(site, probe, caller)
    }

    /// [`Cache::function_for`] past the site's own slot: the registry, or a
    /// first registration. Out of line: building a `FunctionState` takes a
    /// stack frame of several kilobytes (its striped counters), whose probe
    /// cost a twentieth of every L1 hit when this was one function.
    #[cold]
    #[inline(never)]
    fn function_registered(
        &self,
        site: &'static CallSite,
        probe: &'static str,
        caller: Caller<'_>,
    ) -> FunctionRef<'static> {
        let address = (
            site as *const CallSite as usize,
            probe.as_ptr() as usize,
            probe.len(),
        );
        if let Some(state) = self.inner.function_at(address) {
            return FunctionRef::Shared(state);
        }
        let identity = crate::format::identity::resolve(site.source(), probe, caller);
        let inner = &self.inner;
        let policy = inner.effective_policy(site.policy);
        let max_staleness = site
            .max_staleness
            .or(policy.max_staleness())
            .unwrap_or(inner.config().max_staleness);
        let state = inner.register_function(address, identity.hash, identity.name, |name| {
            FunctionState {
                policy,
                counters: FunctionCounters::default(),
                patterns: site.invalidate_on,
                scope: scope_hash(&inner.function_scope(&name)),
                max_staleness,
                lease: LeaseLimit::of(max_staleness),
                invalidated_at: AtomicU64::new(0),
                has_entry_invalidations: AtomicBool::new(false),
                key_prefix: crate::format::key::redis_key_prefix(
                    &inner.config().prefix,
                    &inner.config().service,
                    &name,
                    identity.hash,
                ),
                identity: identity.hash,
                name,
            }
        });
        let _ = site.first.set(Resolved {
            cache: inner.id(),
            probe,
            state: Arc::clone(&state),
        });
        match site.first.get() {
            Some(first) if first.cache == inner.id() && same_probe(first.probe, probe) => {
                FunctionRef::Borrowed(&first.state)
            }
            _ => FunctionRef::Shared(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POLICY: TtlPolicy = TtlPolicy::new("unit_sites", Duration::from_secs(60));
    static SITE: CallSite = CallSite::new("find", module_path!(), "find(u64)->u64", 0, &POLICY);

    /// An equal probe at another address (another codegen unit's copy of
    /// the same `type_name`) takes the lock-free path to the same state; a
    /// different probe (another instance) does not.
    #[test]
    fn an_equal_probe_elsewhere_is_the_same_instance_without_the_registry() {
        let cache = Cache::builder().build().unwrap();
        let probe: &'static str = "app::Users::find::{{closure}}";
        let copy: &'static str = Box::leak(probe.to_owned().into_boxed_str());
        assert!(!std::ptr::eq(probe, copy));
        let first = cache.function(&SITE, probe);
        let again = cache.function(&SITE, copy);
        let (FunctionRef::Borrowed(first), FunctionRef::Borrowed(again)) = (first, again) else {
            panic!("an equal probe must be found in the site, without the registry's lock");
        };
        assert!(std::ptr::eq(first, again));
        let other = cache.function(&SITE, "app::Orders::find::{{closure}}");
        assert!(matches!(other, FunctionRef::Shared(_)));
        assert_ne!(other.identity, first.identity);
    }
}
