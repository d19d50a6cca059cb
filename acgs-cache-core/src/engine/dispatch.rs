//! One compile error for a value that cannot be cached.
//!
//! A `#[cached]` function whose value is not `Serialize + DeserializeOwned +
//! Clone + Send + Sync + 'static` used to get an error for every bound of
//! every generated call that stores it (six for a non-`Serialize` value).
//! The generated code now picks its path by autoref: [`Engine`] when the
//! value is `Cacheable`, else [`Report`] for the function itself — whose
//! single bound has no implementations, so it fails exactly once, with the
//! message — and [`Silent`] for the warming companion, which compiles
//! without a word (the function's error already says it all).

use std::future::Future;
use std::marker::PhantomData;

use crate::engine::call::Start;
use crate::engine::site::CallSite;
use crate::engine::warm::WarmEntry;
use crate::error::CodecError;
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape};

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

    /// Starts a call (see [`crate::engine::call::start`]).
    #[inline]
    pub fn start<S>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        shape: S,
        key: Key,
    ) -> Start<S>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        crate::engine::call::start(site, probe, shape, key, false)
    }

    /// Starts a call whose computation can run detached: a hit past the
    /// refresh-ahead point is refreshed by [`Pending::run_refreshing`].
    #[inline]
    pub fn start_refreshing<S>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        shape: S,
        key: Key,
    ) -> Start<S>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        crate::engine::call::start(site, probe, shape, key, true)
    }

    /// Starts the `refresh_<fn>` companion (named `caller`): always
    /// pending, it reads nothing.
    pub fn start_recompute<S>(
        self,
        site: &'static CallSite,
        probe: &'static str,
        caller: &'static str,
        shape: S,
        key: Key,
    ) -> Start<S>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        Err(crate::engine::call::start_recompute(
            site, probe, caller, shape, key,
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
    ) -> Result<S::Out, Uncached> {
        Err(Uncached)
    }

    /// As [`Report::start`].
    pub fn start_refreshing<S: Shape>(
        self,
        _site: &'static CallSite,
        _probe: &'static str,
        _shape: S,
        _key: Key,
    ) -> Result<S::Out, Uncached> {
        Err(Uncached)
    }

    /// As [`Report::start`].
    pub fn start_recompute<S: Shape>(
        self,
        _site: &'static CallSite,
        _probe: &'static str,
        _caller: &'static str,
        _shape: S,
        _key: Key,
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
