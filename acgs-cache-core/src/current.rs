//! Which cache a `#[cached]` call uses: the instance its attribute names
//! (`cache = PATH`), else the cache of the task's scope ([`Cache::scope`]),
//! else the default of the runtime it runs on
//! ([`Cache::set_runtime_default`]), else the process default
//! ([`Cache::global`]).
//!
//! A scope is task-local: it follows one future, not the tasks that future
//! spawns. A runtime default reaches every task of the runtime, which is
//! what a test needs when the code under test spawns (an axum server, a
//! worker): each `#[tokio::test]` runs on a runtime of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

use crate::engine::instance::{Cache, CacheRef};
use crate::engine::site::CallSite;
use crate::error::Error;

static DEFAULT: OnceLock<Cache> = OnceLock::new();
/// Whether the process default was built by a first cached call (from the
/// environment) rather than installed.
static DEFAULT_BY_FIRST_USE: AtomicBool = AtomicBool::new(false);

/// Why [`Cache::install_default`] refused a cache, with the cache given
/// back ([`AlreadyInstalled::into_cache`]). Its `Debug` is its message, so
/// `.expect(…)` says what happened and what to do.
///
/// ```
/// use acgs_cache_core::Cache;
///
/// Cache::builder().service("first").build().unwrap().install_default().unwrap();
/// let refused = Cache::builder().service("second").build().unwrap().install_default();
/// let refused = refused.unwrap_err();
/// println!("{refused:?}"); // the reason and the fix, not a dump
/// assert_eq!(refused.into_cache().service(), "second");
/// ```
pub struct AlreadyInstalled {
    cache: Cache,
    by_first_use: bool,
}

impl AlreadyInstalled {
    /// The cache that was not installed.
    ///
    /// ```
    /// use acgs_cache_core::Cache;
    /// Cache::builder().build().unwrap().install_default().unwrap();
    /// let refused = Cache::builder().service("second").build().unwrap().install_default().unwrap_err();
    /// let cache = refused.into_cache(); // not lost: use it with `scope` or `set_runtime_default`
    /// assert_eq!(cache.service(), "second");
    /// ```
    #[must_use]
    pub fn into_cache(self) -> Cache {
        self.cache
    }

    /// Whether the default in place was built by a cached call made before
    /// the install (from the environment), rather than installed.
    ///
    /// ```
    /// use acgs_cache_core::Cache;
    /// let _ = Cache::global(); // a first use builds the default from the environment
    /// let refused = Cache::builder().build().unwrap().install_default().unwrap_err();
    /// assert!(refused.by_first_use()); // install at startup, before any cached call
    /// ```
    #[must_use]
    pub fn by_first_use(&self) -> bool {
        self.by_first_use
    }
}

impl std::fmt::Display for AlreadyInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.by_first_use {
            f.write_str(
                "the process default was used before install_default() (by a cached call, or \
                 Cache::global()), and was built from the environment then; install the cache \
                 first (at the start of main, before any cached call), or give it to calls with \
                 Cache::scope or `#[cached(cache = STATIC)]`",
            )
        } else {
            f.write_str(
                "install_default() was called twice: the process default is installed once \
                 (at the start of main); use Cache::scope, Cache::set_runtime_default or \
                 `#[cached(cache = STATIC)]` for another cache",
            )
        }
    }
}

impl std::fmt::Debug for AlreadyInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for AlreadyInstalled {}

tokio::task_local! {
    static SCOPED: Cache;
}

/// The runtime defaults in force: (runtime, guard, cache), newest last.
static RUNTIME_DEFAULTS: RwLock<Vec<(tokio::runtime::Id, u64, Cache)>> = RwLock::new(Vec::new());
/// How many runtime defaults are in force: a process that sets none pays
/// one atomic load per call, not a lock.
static RUNTIME_DEFAULTS_SET: AtomicUsize = AtomicUsize::new(0);
static NEXT_GUARD: AtomicU64 = AtomicU64::new(1);

impl Cache {
    /// Makes this cache the process default used by `#[cached]` functions.
    ///
    /// ```
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// cache.clone().install_default().expect("at the start of main");
    /// let again = cache.install_default().unwrap_err();
    /// assert!(again.to_string().contains("called twice"));
    /// # Ok::<(), acgs_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AlreadyInstalled`] (which gives the cache back) if a default was
    /// already installed, or built by a cached call made before: its
    /// message says which, and what to do.
    pub fn install_default(self) -> Result<(), AlreadyInstalled> {
        DEFAULT.set(self).map_err(|cache| AlreadyInstalled {
            cache,
            by_first_use: DEFAULT_BY_FIRST_USE.load(Ordering::Acquire),
        })
    }

    /// The process default: the installed one, or one built from the
    /// environment on first use (L1-only if nothing is configured; an invalid
    /// environment is reported with `tracing::error!` and falls back to L1-only).
    ///
    /// ```
    /// // What `#[cached]` functions use when nothing else is installed or scoped.
    /// let cache = acgs_cache_core::Cache::global();
    /// println!("{}", cache.service());
    /// ```
    pub fn global() -> &'static Cache {
        DEFAULT.get_or_init(|| {
            DEFAULT_BY_FIRST_USE.store(true, Ordering::Release);
            Cache::from_env().unwrap_or_else(|e| {
                tracing::error!(target: "acgs_cache", error = %e, "invalid cache environment; using an L1-only cache");
                #[allow(clippy::expect_used, reason = "the builder's defaults are valid (a unit test builds them)")]
                Cache::builder().build().expect("the embedded defaults are valid")
            })
        })
    }

    /// Runs `future` with this cache as the one `#[cached]` functions use
    /// (unless their attribute names an instance). The scope follows
    /// `future` only: tasks it spawns use the runtime's default (see
    /// [`Cache::set_runtime_default`]) or the process default. Meant for
    /// multi-tenant services that keep one cache per tenant, and for tests
    /// that spawn nothing.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, CacheMap};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let tenant_a = Cache::builder().service("tenant-a").build()?;
    /// // Everything `#[cached]` awaits inside uses tenant_a's cache.
    /// let answer = tenant_a.scope(async { 42 }).await;
    /// assert_eq!(answer, 42);
    /// # Ok(()) }
    /// ```
    pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
        SCOPED.scope(self.clone(), future).await
    }

    /// Makes this cache the one `#[cached]` functions use on the current
    /// tokio runtime, in every task it runs (spawned ones included), until
    /// the guard is dropped. A test's own cache, reaching the server the test
    /// starts:
    ///
    /// ```
    /// use acgs_cache_core::Cache;
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), acgs_cache_core::Error> {
    ///     let cache = Cache::builder().service("test").build()?;
    ///     let _default = cache.set_runtime_default()?;
    ///     let seen = tokio::spawn(async { Cache::current().service().to_owned() })
    ///         .await
    ///         .unwrap();
    ///     assert_eq!(seen, "test");
    ///     Ok(())
    /// }
    /// ```
    ///
    /// A [`Cache::scope`] inside the runtime still wins over it, and an
    /// attribute's `cache = PATH` over both. Guards nest: the newest one in
    /// force is used.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when called outside a tokio runtime.
    pub fn set_runtime_default(&self) -> Result<RuntimeDefaultGuard, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| {
                Error::Config(
                    "set_runtime_default needs a tokio runtime: call it inside the runtime (e.g. in a #[tokio::test])".to_owned(),
                )
            })?
            .id();
        let guard = NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
        RUNTIME_DEFAULTS
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((runtime, guard, self.clone()));
        RUNTIME_DEFAULTS_SET.fetch_add(1, Ordering::Release);
        Ok(RuntimeDefaultGuard { guard })
    }

    /// The cache a `#[cached]` function without `cache = PATH` uses when
    /// called here: the scope's, else the runtime's default, else the process
    /// default.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let tenant = acgs_cache_core::Cache::builder().service("tenant-a").build()?;
    /// // Inside a scope, the scoped cache; elsewhere the runtime's or the process default.
    /// let seen = tenant.scope(async { acgs_cache_core::Cache::current().service().to_owned() }).await;
    /// assert_eq!(seen, "tenant-a");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn current() -> Cache {
        Cache::clone(&Cache::resolve(None))
    }

    /// The cache a `#[cached]` call uses (see the module's comment).
    pub(crate) fn for_site(site: &'static CallSite) -> CacheRef<'static> {
        Cache::resolve(site.instance)
    }

    /// Runs `start` with the cache a `#[cached]` call of a function without
    /// `cache = X` uses, lending a scoped cache instead of cloning it: a hit,
    /// answered in `start`, then pays no reference count (a call past L1
    /// clones it, see [`CacheRef::into_owned`]). Cloned on every call, a
    /// scoped cache made an L1 hit 1.01–1.12× a pinned one's (one and two
    /// tasks); lent, 0.96–1.06×. Not inlined: inlined, its second copy of
    /// the call's start measured slower (1.07–1.18×). Pinned functions do
    /// not come here (see `Engine::start`): routing them through it cost
    /// their L1 hit about 4% (`--profile l1`, four alternating pairs).
    pub(crate) fn with_unpinned_cache<R>(start: impl FnOnce(CacheRef<'_>) -> R) -> R {
        if SCOPED.try_with(|_| ()).is_ok() {
            // Set: checked just above, on this task.
            return SCOPED.with(|scoped| start(CacheRef::Borrowed(scoped)));
        }
        start(unscoped())
    }

    /// The cache for a pinned instance, else the scoped one, else the
    /// runtime's default, else the process default.
    pub(crate) fn resolve(instance: Option<fn() -> &'static Cache>) -> CacheRef<'static> {
        if let Some(instance) = instance {
            return CacheRef::Static(instance());
        }
        if let Ok(scoped) = SCOPED.try_with(Cache::clone) {
            return CacheRef::Owned(scoped);
        }
        unscoped()
    }
}

/// The runtime's default, else the process default (no scope is set).
fn unscoped() -> CacheRef<'static> {
    match runtime_default() {
        Some(cache) => CacheRef::Owned(cache),
        None => CacheRef::Static(Cache::global()),
    }
}

fn runtime_default() -> Option<Cache> {
    if RUNTIME_DEFAULTS_SET.load(Ordering::Acquire) == 0 {
        return None;
    }
    let runtime = tokio::runtime::Handle::try_current().ok()?.id();
    RUNTIME_DEFAULTS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .rev()
        .find(|(id, _, _)| *id == runtime)
        .map(|(_, _, cache)| cache.clone())
}

/// Keeps a cache the default of a runtime (see
/// [`Cache::set_runtime_default`]); dropping it ends that.
///
/// ```
/// use acgs_cache_core::Cache;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = Cache::builder().service("test").build().unwrap();
/// let guard = cache.set_runtime_default().unwrap(); // this runtime's tasks use it
/// drop(guard); // and now they do not
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the runtime default ends when the guard is dropped"]
pub struct RuntimeDefaultGuard {
    guard: u64,
}

impl Drop for RuntimeDefaultGuard {
    fn drop(&mut self) {
        let removed = {
            let mut defaults = RUNTIME_DEFAULTS.write().unwrap_or_else(|p| p.into_inner());
            let at = defaults
                .iter()
                .position(|(_, guard, _)| *guard == self.guard);
            at.map(|at| defaults.remove(at))
        };
        if removed.is_some() {
            RUNTIME_DEFAULTS_SET.fetch_sub(1, Ordering::Release);
        }
    }
}
