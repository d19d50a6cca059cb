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

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::engine::instance::Cache;
use crate::engine::site::CallSite;
use crate::engine::store::{self, SiteSpec};
use crate::error::Error;
use crate::format::codec::Codec;
use crate::format::key::KeyDigest;
use crate::format::policy::MaxStaleness;
use crate::format::policy::TtlPolicy;
use crate::format::shape::Cacheable;

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
    cache: Cache,
    site: &'static CallSite,
    name: String,
    expiry: Option<ExpiryOf<C>>,
}

impl<C> Clone for TokenCache<C> {
    fn clone(&self) -> Self {
        TokenCache {
            cache: self.cache.clone(),
            site: self.site,
            name: self.name.clone(),
            expiry: self.expiry.clone(),
        }
    }
}

impl<C> fmt::Debug for TokenCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("name", &self.name)
            .field("policy", self.site.policy())
            .field("caps_ttl_by_claims", &self.expiry.is_some())
            .finish_non_exhaustive()
    }
}

/// The digest an entry is keyed by: XXH3-128 (the cache's key digest) of the
/// token's SHA-256. Only the SHA-256 is a secret-safe stand-in for the token;
/// the cache's own digest is not cryptographic, so it never sees the token.
fn entry_digest(token: &str) -> KeyDigest {
    let sha: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    KeyDigest::of_array(&sha)
}

impl<C: Cacheable> TokenCache<C> {
    /// A builder for the token cache `name` (1–64 letters, digits, `_`, `-`).
    pub fn builder(name: impl Into<String>) -> TokenCacheBuilder<C> {
        TokenCacheBuilder {
            name: name.into(),
            policy: TOKEN_VERIFICATIONS,
            version: 0,
            max_staleness: None,
            expiry: None,
            _claims: PhantomData,
        }
    }

    /// The claims of `token`: cached ones if this or another instance
    /// verified it within the policy's TTL (and before the claims' expiry),
    /// else `verifier(token)`'s, cached when `Ok`.
    ///
    /// Concurrent first uses of one token may each run the verifier.
    ///
    /// # Errors
    ///
    /// The verifier's error, uncached: the next call verifies again. Cache
    /// trouble (Redis down, a value that does not encode) is never an error
    /// here: the verifier's answer is returned and the failure counted.
    pub async fn verify<E>(
        &self,
        token: &str,
        verifier: impl AsyncFnOnce(&str) -> Result<C, E>,
    ) -> Result<C, E> {
        let digest = entry_digest(token);
        let position = store::position_now(&self.cache).await;
        if let Some(claims) = store::lookup::<C>(&self.cache, self.site, digest).await {
            return Ok(claims);
        }
        let claims = verifier(token).await?;
        let Some(ttl) = self.ttl_for(&claims) else {
            return Ok(claims); // already expired: nothing to keep
        };
        let stored = Some(claims);
        // A failed write is counted in the store's `errors`; the claims are still good.
        let _ = self
            .cache
            .put(self.site, digest, &stored, ttl, Vec::new(), position)
            .await;
        let Some(claims) = stored else {
            unreachable!("stored was built as Some")
        };
        Ok(claims)
    }

    /// Drops the cached verification of `token` on every instance (see the
    /// type's docs): once this returns `Ok`, this instance runs the verifier
    /// for its next use, and other instances do within the propagation delay.
    ///
    /// # Errors
    ///
    /// The Redis error when the revocation could not be sent (it still
    /// applies to this instance).
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        store::revoke_entry(&self.cache, self.site, entry_digest(token)).await
    }

    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's TTL, capped by the claims' expiry; `None` when already expired.
    fn ttl_for(&self, claims: &C) -> Option<Duration> {
        let ttl = store::ttl(&self.cache, self.site);
        match self.expiry.as_ref().and_then(|expiry_of| expiry_of(claims)) {
            None => Some(ttl),
            Some(at) => at
                .duration_since(SystemTime::now())
                .ok()
                .filter(|left| !left.is_zero())
                .map(|left| left.min(ttl)),
        }
    }
}

/// Builds a [`TokenCache`].
#[must_use]
pub struct TokenCacheBuilder<C> {
    name: String,
    policy: TtlPolicy,
    version: u32,
    max_staleness: Option<MaxStaleness>,
    expiry: Option<ExpiryOf<C>>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for TokenCacheBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("version", &self.version)
            .field("max_staleness", &self.max_staleness)
            .field("caps_ttl_by_claims", &self.expiry.is_some())
            .finish()
    }
}

impl<C: Cacheable> TokenCacheBuilder<C> {
    /// How long a verification is kept (default [`TOKEN_VERIFICATIONS`], 5 min).
    pub fn policy(mut self, policy: TtlPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where the claims say the token expires: entries never outlive it
    /// (a verification returning claims already expired is not cached).
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
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// How long after `revoke` another instance may still accept the
    /// token from its copy, whatever happens to it (default: the cache's,
    /// 1 s; see [`MaxStaleness`]). Past its lease an instance runs the
    /// verifier instead.
    pub fn max_staleness(mut self, max: MaxStaleness) -> Self {
        self.max_staleness = Some(max);
        self
    }

    /// Builds the cache on `cache`. Entries are keyed
    /// `{prefix}:{service}:token-{name}:{fingerprint}:{digest}`, where the
    /// digest is taken over the token's SHA-256.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside 1–64 letters, digits, `_`, `-`.
    pub fn build(self, cache: &Cache) -> Result<TokenCache<C>, Error> {
        store::check_store_name("token cache", &self.name)?;
        let function = format!("token-{}", self.name);
        let site = SiteSpec {
            // Entries are recomputable: a changed claims type simply verifies again.
            signature: format!("{function} -> {}", std::any::type_name::<C>()),
            name: function,
            module: module_path!(),
            version: self.version,
            policy: self.policy,
            codec: Codec::Postcard,
            max_staleness: self.max_staleness,
        }
        .intern();
        Ok(TokenCache {
            cache: cache.clone(),
            site,
            name: self.name,
            expiry: self.expiry,
        })
    }
}
