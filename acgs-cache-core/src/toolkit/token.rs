//! A cache of bearer-token verifications.
//!
//! Verifying a token (a signature check, an introspection call to an
//! identity provider) on every request is wasted work when the answer cannot
//! change for minutes. [`TokenCache::verify`] runs your verifier once per
//! token and keeps its `Ok` claims for the policy's TTL — never past the
//! claims' own expiry when you say where it is. Errors are never cached.
//!
//! Tokens are secrets: the cache keys an entry by the token's SHA-256, never
//! the token itself, and the token appears in no key, log line, `Debug`
//! output or error of this crate.
//!
//! Built only on the public API: a [`CacheMap`] from SHA-256 to claims,
//! read with [`CacheMap::get_or_try_compute_with_ttl`] — so concurrent
//! verifications of one token share one verifier call, as concurrent calls
//! of a `#[cached]` function share one computation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::error::Error;
use crate::format::policy::{MaxStaleness, TtlPolicy};
use crate::format::shape::Cacheable;
use crate::map::{CacheMap, CacheMapBuilder};

/// The default policy of token verifications: 5 minutes (override it at run
/// time like any policy, e.g. `ACGS_CACHE_TTL_TOKEN_VERIFICATIONS=2m`).
pub const TOKEN_VERIFICATIONS: TtlPolicy =
    TtlPolicy::new("token_verifications", Duration::from_secs(5 * 60));

type ExpiryOf<C> = Arc<dyn Fn(&C) -> Option<SystemTime> + Send + Sync>;

/// Caches the claims your verifier returns for a token.
///
/// Cheap to clone. Build one per kind of token at startup:
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use acgs_cache_core::{Cache, TokenCache};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Claims { sub: String, exp: u64 }
///
/// async fn check_signature(token: &str) -> Result<Claims, String> {
///     // a JWT library, or a call to the identity provider
///     if token.starts_with("valid.") { Ok(Claims { sub: "alice".into(), exp: u64::MAX / 2 }) }
///     else { Err("bad signature".into()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let tokens: TokenCache<Claims> = TokenCache::builder("api")
///     .expires_at(|c: &Claims| Some(UNIX_EPOCH + Duration::from_secs(c.exp)))
///     .build(&cache)?;
/// let claims = tokens.verify("valid.abc", check_signature).await.unwrap();
/// assert_eq!(claims.sub, "alice");
/// assert!(tokens.verify("forged", check_signature).await.is_err());
/// # Ok(()) }
/// ```
///
/// **Revocation.** [`TokenCache::revoke`] drops the cached verification on
/// every instance (one event in the invalidation log), so the token's next
/// use goes to the verifier again — which must then know the token is
/// revoked (an introspection endpoint, a deny list): the cache only stops
/// vouching for it.
pub struct TokenCache<C> {
    /// Claims by the token's SHA-256.
    verified: CacheMap<[u8; 32], C>,
    name: String,
    expiry: Option<ExpiryOf<C>>,
}

impl<C> Clone for TokenCache<C> {
    fn clone(&self) -> Self {
        TokenCache {
            verified: self.verified.clone(),
            name: self.name.clone(),
            expiry: self.expiry.clone(),
        }
    }
}

impl<C> fmt::Debug for TokenCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("name", &self.name)
            .field("entries", &self.verified)
            .field("caps_ttl_by_claims", &self.expiry.is_some())
            .finish_non_exhaustive()
    }
}

/// What an entry is keyed by: the token's SHA-256. Only it is a
/// secret-safe stand-in for the token; the cache's own key digest is not
/// cryptographic, so it never sees the token.
fn entry_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl<C: Cacheable> TokenCache<C> {
    /// A builder for the token cache `name` (1–64 letters, digits, `_`, `-`).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").build(&cache)?;
    /// assert_eq!(tokens.name(), "idp");
    /// # Ok(()) }
    /// ```
    pub fn builder(name: impl Into<String>) -> TokenCacheBuilder<C> {
        let name = name.into();
        TokenCacheBuilder {
            map: CacheMap::builder(format!("token-{name}")).ttl(TOKEN_VERIFICATIONS),
            name,
            expiry: None,
        }
    }

    /// The claims of `token`: cached ones if this or another instance
    /// verified it within the policy's TTL (and before the claims' expiry),
    /// else `verifier(token)`'s, cached when `Ok`.
    ///
    /// Concurrent verifications of one token in this process share one
    /// verifier call (with the policy's `lock`, one in the fleet).
    ///
    /// # Errors
    ///
    /// The verifier's error, uncached: the next call verifies again. Cache
    /// trouble (Redis down, a value that does not encode) is never an error
    /// here: the verifier's answer is returned and the failure counted.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, TokenCache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").build(&cache)?;
    /// // The verifier: a JWT check or an introspection call, returning the claims.
    /// let verifier = async |token: &str| -> Result<String, &'static str> {
    ///     token.strip_prefix("valid-").map(str::to_owned).ok_or("invalid token")
    /// };
    /// assert_eq!(tokens.verify("valid-alice", verifier).await.as_deref(), Ok("alice"));
    /// assert_eq!(tokens.verify("forged", verifier).await, Err("invalid token")); // not cached
    /// # Ok(()) }
    /// ```
    pub async fn verify<E>(
        &self,
        token: &str,
        verifier: impl AsyncFnOnce(&str) -> Result<C, E>,
    ) -> Result<C, E> {
        self.verified
            .get_or_try_compute_with_ttl(
                &entry_key(token),
                |claims| self.ttl_for(claims),
                verifier(token),
            )
            .await
    }

    /// Drops the cached verification of `token` on every instance (see the
    /// type's docs): once this returns `Ok`, this instance runs the verifier
    /// for its next use, and other instances do within the propagation delay.
    ///
    /// # Errors
    ///
    /// The Redis error when the revocation could not be sent (it still
    /// applies to this instance).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, TokenCache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").build(&cache)?;
    /// let verifier = async |token: &str| Ok::<_, ()>(token.to_owned());
    /// tokens.verify("valid-alice", verifier).await.unwrap();
    /// tokens.revoke("valid-alice").await?; // the next use runs the verifier again
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        self.verified.remove(&entry_key(token)).await.map(drop)
    }

    /// The cache's name.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").build(&cache)?;
    /// assert_eq!(tokens.name(), "idp");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long `claims` are kept: `None` for the policy's TTL, the time
    /// left before the claims' expiry when that is shorter, zero (not
    /// stored) when they have expired already.
    fn ttl_for(&self, claims: &C) -> Option<Duration> {
        let at = self
            .expiry
            .as_ref()
            .and_then(|expiry_of| expiry_of(claims))?;
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        (left < self.verified.default_ttl()).then_some(left)
    }
}

/// Builds a [`TokenCache`]: the map builder's settings with the
/// verifications' defaults (see [`CacheMapBuilder`]), and the claims'
/// expiry.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use acgs_cache_core::{Cache, TokenCache};
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Claims { sub: String, exp: u64 }
/// let cache = Cache::builder().build()?;
/// let tokens: TokenCache<Claims> = TokenCache::builder("idp")
///     .expires_at(|c: &Claims| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(c.exp)))
///     .build(&cache)?;
/// assert_eq!(tokens.name(), "idp");
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct TokenCacheBuilder<C> {
    name: String,
    map: CacheMapBuilder<[u8; 32], C>,
    expiry: Option<ExpiryOf<C>>,
}

impl<C> fmt::Debug for TokenCacheBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("name", &self.name)
            .field("map", &self.map)
            .field("caps_ttl_by_claims", &self.expiry.is_some())
            .finish()
    }
}

impl<C: Cacheable> TokenCacheBuilder<C> {
    /// How long a verification is kept (default [`TOKEN_VERIFICATIONS`], 5 min).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").ttl(policies::API_RESPONSES).build(&cache)?;
    /// # let _ = tokens;
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, policy: TtlPolicy) -> Self {
        self.map = self.map.ttl(policy);
        self
    }

    /// Where the claims say the token expires: entries never outlive it
    /// (a verification returning claims already expired is not cached).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").expires_at(|_claims: &String| Some(std::time::SystemTime::now() + std::time::Duration::from_secs(60))).build(&cache)?;
    /// # let _ = tokens;
    /// # Ok(()) }
    /// ```
    pub fn expires_at(
        mut self,
        expiry_of: impl Fn(&C) -> Option<SystemTime> + Send + Sync + 'static,
    ) -> Self {
        self.expiry = Some(Arc::new(expiry_of));
        self
    }

    /// The layout version of the claims type (default 0). Its type name is
    /// part of the schema fingerprint already; bump this when the type keeps
    /// its name but changes layout.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").version(2).build(&cache)?;
    /// # let _ = tokens;
    /// # Ok(()) }
    /// ```
    pub fn version(mut self, version: u32) -> Self {
        self.map = self.map.version(version);
        self
    }

    /// How long after `revoke` another instance may still accept the
    /// token from its copy, whatever happens to it (default: the cache's,
    /// 1 s; see [`MaxStaleness`]). Past its lease an instance runs the
    /// verifier instead.
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").max_staleness(acgs_cache_core::MaxStaleness::Lease(std::time::Duration::from_millis(250))).build(&cache)?;
    /// # let _ = tokens;
    /// # Ok(()) }
    /// ```
    pub fn max_staleness(mut self, max: MaxStaleness) -> Self {
        self.map = self.map.max_staleness(max);
        self
    }

    /// Builds the cache on `cache`: the map `token-{name}`, whose entries
    /// are keyed `{prefix}:{service}:map-token-{name}:{identity}:{digest}`,
    /// the digest taken over the token's SHA-256.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside 1–64 letters, digits, `_`, `-`
    /// (less the 6 of `token-`).
    ///
    /// ```
    /// use acgs_cache_core::{policies, Cache, TokenCache};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let tokens: TokenCache<String> = TokenCache::builder("idp").build(&cache)?;
    /// # let _ = tokens;
    /// # Ok(()) }
    /// ```
    pub fn build(self, cache: &Cache) -> Result<TokenCache<C>, Error> {
        Ok(TokenCache {
            verified: self.map.build(cache)?,
            name: self.name,
            expiry: self.expiry,
        })
    }
}
