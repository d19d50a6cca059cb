//! The runtime side of `#[cached]` and `#[invalidates]`: what their
//! expansion calls (re-exported under `__private`, not a public API). It
//! resolves which cache a call uses (`current.rs`) and hands the call to the
//! engine, so the engine never calls back up into the public face.
//!
//! One compile error for a value that cannot be cached: the generated code
//! picks its path by autoref — [`Engine`] when the value is `Cacheable`,
//! else [`Report`] for the function itself, whose single bound has no
//! implementations, so it fails exactly once, with the message — and
//! [`Silent`] for the warming companion, which compiles without a word (the
//! function's error already says it all).

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use crate::engine::call::Start;
use crate::engine::instance::{Cache, CacheRef};
use crate::engine::site::CallSite;
use crate::engine::warm::WarmEntry;
use crate::error::CodecError;
use crate::error::Error;
use crate::format::codec::Codec;
use crate::format::key::KeyDigest;
use crate::format::policy::TtlPolicy;
use crate::format::shape::{Cacheable, Shape};
use crate::log_position::LogPosition;

/// The choice for the shape `S` of one call.
#[derive(Debug)]
pub struct Dispatch<S>(PhantomData<S>);

/// The choice for `shape`: call `(&&&dispatch(&shape)).path()`.
#[must_use]
pub fn dispatch<S>(_shape: &S) -> Dispatch<S> {
    Dispatch(PhantomData)
}

/// The value is cacheable: the engine.
#[derive(Debug, Clone, Copy)]
pub struct Engine;

/// The value is not cacheable: one error, and the body runs uncached so the
/// rest of the crate still type-checks.
#[derive(Debug, Clone, Copy)]
pub struct Report;

/// The value is not cacheable and the function reports it: nothing here.
#[derive(Debug, Clone, Copy)]
pub struct Silent;

/// Picked first (by autoref) when the value is cacheable.
pub trait ChooseEngine {
    /// The path of the function's calls.
    fn path(&self) -> Engine {
        Engine
    }
    /// The path of the warming companion.
    fn warm_path(&self) -> Engine {
        Engine
    }
}

impl<S> ChooseEngine for &&Dispatch<S>
where
    S: Shape,
    S::Value: Cacheable,
{
}

/// Picked otherwise, for the function's calls.
pub trait ChooseReport {
    /// The path of the function's calls.
    fn path(&self) -> Report {
        Report
    }
}

impl<S> ChooseReport for &Dispatch<S> {}

/// Picked otherwise, for the warming companion.
pub trait ChooseSilent {
    /// The path of the warming companion.
    fn warm_path(&self) -> Silent {
        Silent
    }
}

impl<S> ChooseSilent for &Dispatch<S> {}

/// What a cached value `T` must be, one requirement at a time, asked of
/// [`Check`]: asked for only where the value is not `Cacheable`. rustc
/// looks through each blanket impl and reports the trait `T` lacks
/// (`Decision: Clone`, with its derive suggestion; serde's own note for
/// `Serialize`), one error per unmet requirement, at the return type.
/// Traits of `Check` rather than of `T`, so that rustc does not suggest
/// borrowing the return type (`&T` is `Clone`).
pub trait CachedSerialize<T: ?Sized> {}
impl<T: serde::Serialize + ?Sized> CachedSerialize<T> for Check {}

/// See [`CachedSerialize`].
pub trait CachedDeserialize<T: ?Sized> {}
impl<T: serde::de::DeserializeOwned> CachedDeserialize<T> for Check {}

/// See [`CachedSerialize`].
pub trait CachedClone<T: ?Sized> {}
impl<T: Clone> CachedClone<T> for Check {}

/// See [`CachedSerialize`].
pub trait CachedShared<T: ?Sized> {}
impl<T: Send + Sync + 'static + ?Sized> CachedShared<T> for Check {}

/// What [`Report::checked`] asks the requirements of.
#[derive(Debug)]
pub struct Check;

type Key = Result<KeyDigest, CodecError>;

impl Engine {
    // A call starts synchronously (`start*`: the key, the L1 probe); only
    // what L1 did not answer makes a future (`Pending::run*`).
    /// Nothing to check.
    #[must_use]
    pub fn checked<S>(self, _shape: &S) -> Self {
        self
    }

    /// Starts a call (see [`crate::engine::call::start`]). `refresh`: the
    /// computation can run detached, so a hit past the refresh-ahead point
    /// is refreshed by [`Pending::run_refreshing`](crate::engine::call::Pending::run_refreshing).
    #[inline]
    pub fn start<S>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        shape: S,
        key: Key,
        refresh: bool,
    ) -> Start<S>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        use crate::engine::call::start;
        match site.instance {
            // Pinned (`cache = X`): nothing to resolve or lend.
            Some(instance) => start(
                CacheRef::Static(instance()),
                site,
                probe,
                shape,
                key,
                refresh,
            ),
            None => {
                Cache::with_unpinned_cache(|cache| start(cache, site, probe, shape, key, refresh))
            }
        }
    }

    /// Starts the `refresh_<fn>` companion (named `caller`): always
    /// pending, it reads nothing.
    pub fn start_recompute<S>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        shape: S,
        key: Key,
        caller: &'static str,
    ) -> Start<S>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        Err(crate::engine::call::start_recompute(
            Cache::for_site(site),
            site,
            probe,
            caller,
            shape,
            key,
        ))
    }

    /// [`crate::engine::warm::warm_entry`].
    #[allow(clippy::too_many_arguments)]
    pub fn warm_entry<S>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        caller: &'static str,
        shape: S,
        key: Key,
        out: S::Out,
        tags: Vec<String>,
    ) -> WarmEntry
    where
        S: Shape,
        S::Value: Cacheable,
    {
        crate::engine::warm::warm_entry(site, probe, caller, shape, key, out, tags)
    }
}

impl Report {
    /// The one error: the value is not cacheable. A plain function, so the
    /// bound is checked once (on an `async fn` it would also be checked for
    /// the future it returns).
    #[must_use]
    pub fn checked<S>(self, _shape: &S) -> Self
    where
        S: Shape,
        Check: CachedSerialize<S::Value>
            + CachedDeserialize<S::Value>
            + CachedClone<S::Value>
            + CachedShared<S::Value>,
    {
        self
    }

    /// Never a hit: the body runs, uncached, after the one error.
    pub fn start<S: Shape>(
        self,
        _site: &'static CallSite,
        _probe: &'static str,
        _shape: S,
        _key: Key,
        _refresh: bool,
    ) -> Result<S::Out, Uncached> {
        Err(Uncached)
    }

    /// As [`Report::start`].
    pub fn start_recompute<S: Shape>(
        self,
        _site: &'static CallSite,
        _probe: &'static str,
        _shape: S,
        _key: Key,
        _caller: &'static str,
    ) -> Result<S::Out, Uncached> {
        Err(Uncached)
    }
}

/// The rest of a call on the [`Report`] path: the body, uncached.
#[derive(Debug, Clone, Copy)]
pub struct Uncached;

impl Uncached {
    /// The body's value.
    pub async fn run<F, O>(self, compute: F) -> O
    where
        F: Future<Output = (Vec<String>, O)>,
    {
        compute.await.1
    }

    /// As [`Uncached::run`].
    pub async fn run_refreshing<F, O>(self, compute: F) -> O
    where
        F: Future<Output = (Vec<String>, O)>,
    {
        compute.await.1
    }
}

impl Silent {
    /// An entry that stores nothing (never built: the crate does not compile).
    #[allow(clippy::too_many_arguments)]
    pub fn warm_entry<S: Shape>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        caller: &'static str,
        _shape: S,
        key: Key,
        _out: S::Out,
        tags: Vec<String>,
    ) -> WarmEntry {
        WarmEntry::unstorable(site, probe, caller, key, tags)
    }
}

/// The instance probe: `type_name` of a closure made in a generated
/// item's body names the function instance it runs in (see `identity.rs`).
#[must_use]
pub fn instance<F>(_: &F) -> &'static str {
    std::any::type_name::<F>()
}

fn companion(name: &str) -> crate::format::identity::Caller<'_> {
    crate::format::identity::Caller {
        name,
        extra_generics: 0,
    }
}

/// The `'static` cache a `cache = PATH` attribute names.
#[must_use]
pub fn static_cache<C: crate::cache::AsStaticCache>(cache: &'static C) -> &'static Cache {
    cache.as_static_cache()
}

/// Invalidates one entry of the function instance (the `invalidate_<fn>` companions).
///
/// # Errors
///
/// As [`Cache::invalidate`]; a key that does not serialize is [`Error::Codec`].
pub async fn invalidate_entry(
    site: &'static CallSite,
    probe: &'static str,
    caller: &'static str,
    key: Result<KeyDigest, crate::error::CodecError>,
) -> Result<LogPosition, Error> {
    let cache = Cache::resolve(site.instance);
    let function = cache.function_for(site, probe, companion(caller));
    crate::engine::publish::invalidate_entry(&cache.inner, &function, key?).await
}

/// Invalidates every entry of the function instance (the `invalidate_all_<fn>` companions).
///
/// # Errors
///
/// As [`Cache::invalidate`].
pub async fn invalidate_function(
    site: &'static CallSite,
    probe: &'static str,
    caller: &'static str,
) -> Result<LogPosition, Error> {
    let cache = Cache::resolve(site.instance);
    let function = cache.function_for(site, probe, companion(caller));
    cache.invalidate_function(&function.name).await
}

/// Encodes `value` in an envelope as a miss stores it, compressing
/// payloads above `compress_above` bytes (for the envelope benchmark).
///
/// # Errors
///
/// The codec's error.
pub fn encode_envelope<T: serde::Serialize>(
    value: &T,
    codec: Codec,
    compress_above: usize,
) -> Result<Vec<u8>, crate::error::CodecError> {
    let header = crate::format::envelope::EnvelopeHeader {
        codec: codec.id(),
        flags: 0,
        fingerprint: 0,
        created_at_ms: 0,
        expires_at_ms: u64::MAX,
        log_position: LogPosition::default(),
        key: 0,
        tags: Vec::new(),
        checksum: 0,
    };
    let limits = crate::format::envelope::EncodeLimits {
        compress_above,
        max_value_bytes: usize::MAX,
    };
    crate::format::envelope::encode(value, codec, header, limits).map(|sealed| sealed.bytes)
}

/// Decodes what [`encode_envelope`] made (every check a read makes).
#[must_use]
pub fn decode_envelope<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    crate::format::envelope::decode(bytes, 0, 0, usize::MAX)
        .ok()
        .map(|(_, v)| v)
}

/// A policy for a literal duration (`ttl = "90s"`).
#[must_use]
pub const fn literal_policy(name: &'static str, secs: u64, nanos: u32) -> TtlPolicy {
    TtlPolicy::new(name, Duration::new(secs, nanos))
}

/// A write function's result, for `#[invalidates]` to tell whether it
/// succeeded: `Ok` for a `Result` under any alias, anything else always.
#[doc(hidden)]
#[derive(Debug)]
pub struct Written<'a, T>(pub &'a T);

/// `Written(&result).succeeded()` on a `Result`: whether it is `Ok`
/// (picked before [`WrittenAny`] by method resolution, being implemented on
/// the less-referenced type).
#[doc(hidden)]
pub trait WrittenResult {
    /// Whether the write succeeded.
    fn succeeded(&self) -> bool;
}

impl<T, E> WrittenResult for Written<'_, Result<T, E>> {
    fn succeeded(&self) -> bool {
        self.0.is_ok()
    }
}

/// `Written(&value).succeeded()` on anything but a `Result`: always.
#[doc(hidden)]
pub trait WrittenAny {
    /// Whether the write succeeded.
    fn succeeded(&self) -> bool;
}

impl<T> WrittenAny for &Written<'_, T> {
    fn succeeded(&self) -> bool {
        true
    }
}

/// Publishes the events of a write that succeeded (`#[invalidates]`),
/// through `cache` or the cache `#[cached]` functions use here. A failure
/// is logged, never returned: the write itself happened, and an
/// invalidation Redis did not take is retried in the background (see
/// `recovery.rs`).
#[doc(hidden)]
pub async fn publish_after(cache: Option<&'static Cache>, events: &[String]) {
    let cache = match cache {
        Some(cache) => CacheRef::Static(cache),
        None => Cache::resolve(None),
    };
    for event in events {
        if let Err(e) = cache.invalidate(event).await {
            tracing::warn!(target: "acgs_cache", event = %event, error = %e, "a write succeeded but its invalidation was not acknowledged");
        }
    }
}
