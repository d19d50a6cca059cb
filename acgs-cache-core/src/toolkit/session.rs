//! Sessions: created, read, kept alive and revoked across the fleet.
//!
//! A session lives in L2 (Redis) with a copy in each instance's L1 that read
//! it, under the `user_sessions` policy (30 min, sliding: [`SessionStore::touch`]
//! restarts it). Revocation goes through the cache's invalidation log, the
//! same one `#[cached]` functions obey: once [`SessionStore::revoke`] returns
//! `Ok`, this instance never returns the session again, and every other
//! instance stops within the propagation delay (its L1 copy included).
//! Without Redis the store works in process (L1 only).
//!
//! Built only on the public API: a [`CacheMap`] from session id to
//! [`Session`], each entry tagged with an event naming its user.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::cache::Cache;
use crate::error::Error;
use crate::format::codec::Codec;
use crate::format::policy::{builtin, MaxStaleness, TtlPolicy};
use crate::format::shape::Cacheable;
use crate::map::{CacheMap, CacheMapBuilder};

/// Random bytes in a session id: 256 bits from the operating system's CSPRNG.
const ID_BYTES: usize = 32;

/// One user's session.
///
/// Its id is a bearer credential: `Debug` shows only its first 8 characters.
///
/// ```
/// use acgs_cache_core::{Cache, SessionStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let sessions: SessionStore<Vec<String>> = SessionStore::builder("web").build(&cache)?;
/// let session = sessions.create("alice", vec!["admin".into()]).await?;
/// assert_eq!((session.user(), session.data().len()), ("alice", 1));
/// assert!(session.expires_at() > session.created_at());
/// assert_eq!(session.id().len(), 64); // 256 random bits, hex
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Session<T> {
    id: String,
    user: String,
    data: T,
    created_at_ms: u64,
    expires_at_ms: u64,
}

impl<T> Session<T> {
    /// The id (64 lowercase hex characters): what the client presents.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert_eq!(session.id().len(), 64);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The user the session belongs to.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert_eq!(session.user(), "alice");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The application's data.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert_eq!(session.data(), "prefs");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The application's data, by value.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert_eq!(session.into_data(), "prefs");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn into_data(self) -> T {
        self.data
    }

    /// When the session was created.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert!(session.created_at() <= std::time::SystemTime::now());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_at_ms)
    }

    /// When it ends unless touched again.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert!(session.expires_at() > session.created_at());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_at_ms)
    }
}

impl<T: fmt::Debug> fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            // Chars, not bytes: an id read from Redis may be anything.
            .field(
                "id",
                &format_args!("{}…", self.id.chars().take(8).collect::<String>()),
            )
            .field("user", &self.user)
            .field("data", &self.data)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A named store of sessions whose application data is `T`.
///
/// Cheap to clone. Build one per kind of session at startup:
///
/// ```
/// use acgs_cache_core::{Cache, SessionStore};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Profile { roles: Vec<String> }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?; // no Redis: in process
/// let sessions: SessionStore<Profile> = SessionStore::builder("web").build(&cache)?;
/// let session = sessions.create("alice", Profile { roles: vec!["admin".into()] }).await?;
/// assert_eq!(sessions.get(session.id()).await.unwrap().user(), "alice");
/// sessions.revoke(session.id()).await?;
/// assert!(sessions.get(session.id()).await.is_none());
/// # Ok(()) }
/// ```
///
/// **Revocation.** `revoke` and `revoke_user` are one `XADD` to the
/// invalidation log each. When Redis cannot be reached they return the error
/// and still apply to this instance. A session created on one instance while
/// another instance revokes all of the same user's sessions may be caught by
/// that revocation (it is then simply gone).
///
/// **Redis trouble.** Reads never fail: while this instance cannot hear the
/// log, `get` answers `None` for sessions it cannot vouch for, once its
/// lease has run out (the cache's [`MaxStaleness`], 1 s by default; see
/// [`SessionStoreBuilder::max_staleness`]): a revoked session is never
/// served more than that after `revoke` returned, on any instance.
/// Writes (`create`, `touch`) return the error.
pub struct SessionStore<T> {
    cache: Cache,
    /// Sessions by id.
    sessions: CacheMap<str, Session<T>>,
    name: String,
}

impl<T> Clone for SessionStore<T> {
    fn clone(&self) -> Self {
        SessionStore {
            cache: self.cache.clone(),
            sessions: self.sessions.clone(),
            name: self.name.clone(),
        }
    }
}

impl<T> fmt::Debug for SessionStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.name)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl<T: Cacheable> SessionStore<T> {
    /// A builder for the store `name` (1–64 letters, digits, `_`, `-`).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// assert_eq!(sessions.name(), "web");
    /// # Ok(()) }
    /// ```
    pub fn builder(name: impl Into<String>) -> SessionStoreBuilder<T> {
        let name = name.into();
        SessionStoreBuilder {
            map: CacheMap::builder(format!("session-{name}"))
                .ttl(builtin::USER_SESSIONS)
                .codec(Codec::Json),
            name,
        }
    }

    /// Creates a session for `user` holding `data`, with a fresh id.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty user; [`Error::Random`] if the
    /// operating system's random source fails; [`Error::Codec`] if `data`
    /// does not serialize or is too large; the Redis error if it could not be
    /// stored (nothing is kept then).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert_eq!(session.user(), "alice");
    /// # Ok(()) }
    /// ```
    pub async fn create(&self, user: &str, data: T) -> Result<Session<T>, Error> {
        if user.is_empty() {
            return Err(Error::InvalidInput("a session needs a user".into()));
        }
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let ttl = self.sessions.default_ttl();
        let now_ms = now_ms();
        let session = Session {
            id,
            user: user.to_owned(),
            data,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + millis(ttl),
        };
        let user_tag = self.user_tag(user);
        let stored = self
            .sessions
            .insert_with(&session.id, session.clone(), ttl, &[&user_tag])
            .await?;
        if stored {
            Ok(session)
        } else {
            Err(Error::InvalidInput(
                "the session was revoked as it was created".into(),
            ))
        }
    }

    /// The session `id`, if it exists and was not revoked. A malformed id is
    /// a miss (counted in the store's `misses`).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// assert_eq!(sessions.get(session.id()).await.map(|s| s.into_data()), Some("prefs".to_owned()));
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, id: &str) -> Option<Session<T>> {
        if !well_formed(id) {
            return None;
        }
        self.sessions.get(id).await
    }

    /// Restarts the session's lifetime (sliding expiry) and returns it, or
    /// `None` if it does not exist (expired, revoked, malformed id).
    ///
    /// # Errors
    ///
    /// The Redis error if the renewed session could not be stored (it then
    /// keeps its previous expiry).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// let renewed = sessions.touch(session.id()).await?.expect("still there");
    /// assert!(renewed.expires_at() >= session.expires_at());
    /// assert!(sessions.touch("not-a-session-id").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn touch(&self, id: &str) -> Result<Option<Session<T>>, Error> {
        if !well_formed(id) {
            return Ok(None);
        }
        let ttl = self.sessions.default_ttl();
        // A revocation that lands between the read and the write refuses
        // the write (`None`), whether it names the session or its user.
        self.sessions
            .update(
                id,
                |mut session| {
                    session.expires_at_ms = now_ms() + millis(ttl);
                    (session, ttl)
                },
                |session| vec![self.user_tag(&session.user)],
            )
            .await
    }

    /// Revokes the session `id` on every instance (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `id` is not a session id; the Redis error
    /// when the revocation could not be sent (it still applies here).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let session = sessions.create("alice", "prefs".into()).await?;
    /// sessions.revoke(session.id()).await?; // on every instance
    /// assert!(sessions.get(session.id()).await.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, id: &str) -> Result<(), Error> {
        if !well_formed(id) {
            return Err(Error::InvalidInput("not a session id".into()));
        }
        self.sessions.remove(id).await.map(drop)
    }

    /// Revokes every session of `user` on every instance, those created
    /// before this call (one event, whatever their number).
    ///
    /// # Errors
    ///
    /// The Redis error when the revocation could not be sent (it still
    /// applies here).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// let (laptop, phone) = (sessions.create("alice", "a".into()).await?, sessions.create("alice", "b".into()).await?);
    /// sessions.revoke_user("alice").await?; // one event: every session of alice, on every instance
    /// assert!(sessions.get(laptop.id()).await.is_none() && sessions.get(phone.id()).await.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn revoke_user(&self, user: &str) -> Result<(), Error> {
        self.cache.invalidate(&self.user_tag(user)).await.map(drop)
    }

    /// The store's name.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// assert_eq!(sessions.name(), "web");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event that revokes every session of `user`: a digest of the user,
    /// since user names are free text and events follow the name grammar.
    fn user_tag(&self, user: &str) -> String {
        format!(
            "session.{}.user-{:032x}",
            self.name,
            xxh3_128(user.as_bytes())
        )
    }
}

/// Whether `id` is what [`SessionStore::create`] makes: anything else is a
/// miss without a lookup.
fn well_formed(id: &str) -> bool {
    id.len() == 2 * ID_BYTES && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Unix time in ms, as sessions record it.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Builds a [`SessionStore`]: the map builder's settings with the
/// sessions' defaults (see [`CacheMapBuilder`]).
///
/// ```
/// use acgs_cache_core::{policies, Cache, SessionStore};
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let sessions: SessionStore<String> = SessionStore::builder("web")
///     .ttl(policies::USER_SESSIONS)
///     .version(1)
///     .build(&cache)?;
/// assert_eq!(sessions.name(), "web");
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct SessionStoreBuilder<T> {
    name: String,
    map: CacheMapBuilder<str, Session<T>>,
}

impl<T> fmt::Debug for SessionStoreBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStoreBuilder")
            .field("name", &self.name)
            .field("map", &self.map)
            .finish()
    }
}

impl<T: Cacheable> SessionStoreBuilder<T> {
    /// The sessions' lifetime (default [`builtin::USER_SESSIONS`], 30 min;
    /// run-time overrides of the policy's name apply).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").ttl(policies::USER_SESSIONS).build(&cache)?;
    /// # let _ = sessions;
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, policy: TtlPolicy) -> Self {
        self.map = self.map.ttl(policy);
        self
    }

    /// The layout version of `T`: bump it when `T` changes incompatibly, so
    /// sessions written by the old layout are misses rather than misread
    /// (default 0). With the default JSON codec, added fields carrying
    /// `#[serde(default)]` need no bump.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").version(1).build(&cache)?;
    /// # let _ = sessions;
    /// # Ok(()) }
    /// ```
    pub fn version(mut self, version: u32) -> Self {
        self.map = self.map.version(version);
        self
    }

    /// The payload codec (default [`Codec::Json`]: sessions outlive deploys,
    /// and JSON tolerates added optional fields where postcard would misread).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").codec(Codec::Postcard).build(&cache)?;
    /// # let _ = sessions;
    /// # Ok(()) }
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.map = self.map.codec(codec);
        self
    }

    /// How long after a revocation another instance may still serve the
    /// session, whatever happens to it (default: the cache's, 1 s; see
    /// [`MaxStaleness`]).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").max_staleness(acgs_cache_core::MaxStaleness::Lease(std::time::Duration::from_millis(250))).build(&cache)?;
    /// # let _ = sessions;
    /// # Ok(()) }
    /// ```
    pub fn max_staleness(mut self, max: MaxStaleness) -> Self {
        self.map = self.map.max_staleness(max);
        self
    }

    /// Builds the store on `cache`: the map `session-{name}`, whose entries
    /// are keyed
    /// `{prefix}:{service}:map-session-{name}:{identity}:{digest of the id}`;
    /// instances of one service share them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside 1–64 letters, digits, `_`, `-`
    /// (less the 8 of `session-`).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, Codec, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let sessions: SessionStore<String> = SessionStore::builder("web").build(&cache)?;
    /// # let _ = sessions;
    /// # Ok(()) }
    /// ```
    pub fn build(self, cache: &Cache) -> Result<SessionStore<T>, Error> {
        Ok(SessionStore {
            cache: cache.clone(),
            sessions: self.map.build(cache)?,
            name: self.name,
        })
    }
}
