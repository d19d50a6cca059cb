//! The one error type of the runtime.

use std::fmt;

/// Errors returned by the cache's own API (building, configuration, explicit
/// tier operations). A `#[cached]` call never returns these: tier failures
/// there are counted and the function runs.
///
/// ```
/// use acgs_cache_core::{Cache, Error, Unavailable};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let l1_only = Cache::builder().build().unwrap();
/// match l1_only.try_lease("nightly", std::time::Duration::from_secs(5)).await {
///     Err(Error::Unavailable(Unavailable::NotConfigured)) => {} // no Redis configured
///     other => panic!("{other:?}"),
/// }
/// let refused = Cache::builder().l1_max_bytes(0).build();
/// assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (builder or environment) is invalid.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// A value could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
    /// Redis answered with an error or could not be reached.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An L2 operation did not finish within the soft timeout.
    #[error("L2 operation exceeded its {0:?} soft timeout")]
    Timeout(std::time::Duration),
    /// A lock stayed taken for the whole wait.
    #[error("lock still held by another holder after waiting {0:?}")]
    LockTimeout(std::time::Duration),
    /// An event, tag or function name outside the grammar.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// An argument no request could satisfy (e.g. a rate-limit cost above the burst).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operating system's random source failed (session ids come from it).
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    /// Redis refused the configured credentials (wrong password, unknown or
    /// disabled ACL user). The message names the user, never the password.
    #[error("{0}")]
    Auth(String),
    /// L2 is not configured or is currently unavailable; the reason says
    /// which.
    #[error("L2 is unavailable: {0}")]
    Unavailable(Unavailable),
    /// An invalidation reached the master's log at `position`, but fewer
    /// replicas than asked acknowledged it in time: a failover now could
    /// lose it (every instance then still rejects entries stamped before
    /// the failover). It applies to this instance.
    #[error(
        "invalidation at {position} acknowledged by {acknowledged} of {wanted} replicas in time"
    )]
    Unconfirmed {
        /// Where it stands in the master's log.
        position: crate::log_position::LogPosition,
        /// Replicas that acknowledged it.
        acknowledged: u32,
        /// Replicas asked for.
        wanted: u32,
    },
}

/// Why L2 could not be used ([`Error::Unavailable`]).
///
/// ```
/// use acgs_cache_core::{Cache, Error, Unavailable};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let l1_only = Cache::builder().build()?;
/// let refused = l1_only.invalidation_log_length().await;
/// assert!(matches!(refused, Err(Error::Unavailable(Unavailable::NotConfigured))));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The cache has no L2 (no Redis URL configured), and the operation
    /// needs one (locks, the fleet view, the operator API).
    #[error("no L2 configured: configure a Redis URL")]
    NotConfigured,
    /// The circuit is open: Redis stopped answering, and a probe checks in
    /// the background when it answers again.
    #[error("circuit open")]
    CircuitOpen,
    /// No connection could be made yet; one is being made in the background.
    #[error("redis is not reachable; reconnecting in the background")]
    Unreachable,
    /// The invalidation log could not be read in time after connecting.
    #[error("the invalidation log could not be read in time")]
    LogNotRead,
    /// Redis answered something the cache cannot read (a stream id, the
    /// log's state).
    #[error("redis returned a reply the cache cannot read")]
    UnexpectedReply,
    /// The cache (or its background runtime) is shutting down.
    #[error("the cache is shutting down")]
    ShuttingDown,
}

/// Why bytes could not be turned into a value, or a value into bytes.
///
/// ```
/// use acgs_cache_core::{Cache, CacheMap, Error};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().max_value_bytes(64).build()?;
/// let notes: CacheMap<u64, String> = CacheMap::builder("notes").build(&cache)?;
/// let refused = notes.insert(&1, "x".repeat(1_000)).await;
/// assert!(matches!(refused, Err(Error::Codec(_))), "{refused:?}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The serializer failed.
    #[error("encode failed: {0}")]
    Encode(String),
    /// The bytes are not a value of the expected type.
    #[error("decode failed: {0}")]
    Decode(String),
    /// The encoded value exceeds the configured maximum.
    #[error("value of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
}

/// A pool's error as ours, keeping deadpool's types out of the public API:
/// the server's error as is, a closed pool as shutting down, anything else
/// (no runtime, a wait that timed out) as unreachable.
#[cfg(feature = "redis")]
pub(crate) fn from_pool(error: deadpool::managed::PoolError<redis::RedisError>) -> Error {
    use deadpool::managed::{HookError, PoolError};
    match error {
        PoolError::Backend(e) | PoolError::PostCreateHook(HookError::Backend(e)) => Error::Redis(e),
        PoolError::Closed => Error::Unavailable(Unavailable::ShuttingDown),
        _ => Error::Unavailable(Unavailable::Unreachable),
    }
}

/// Why Redis refused the credentials, if that is what `error` says (a
/// wrong password or an unknown user; Redis's reply names neither).
#[cfg(feature = "redis")]
pub(crate) fn credentials_refused(error: &Error) -> Option<String> {
    let Error::Redis(redis) = error else {
        return None;
    };
    let refused = redis.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(redis.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    refused.then(|| redis.to_string())
}

/// A Redis URL shown without its credentials: the user and password (with
/// or without a scheme) and credential query parameters are replaced, so
/// configuration can go into logs, `Debug` output and operator tools.
///
/// ```
/// use acgs_cache_core::RedactedUrl;
///
/// let shown = RedactedUrl("redis://app:s3cret@cache.internal:6379/0").to_string();
/// assert!(!shown.contains("s3cret"));
/// assert!(shown.contains("cache.internal:6379"));
/// ```
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        // [scheme://][user[:password]@]host…[?query] — hide everything
        // before the last '@' (user and password), with or without a scheme
        // (`user:pw@host:6379` is a common mistake), and the values of query
        // parameters that carry credentials (`unix:///sock?pass=…`).
        let (head, query) = match url.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (url, None),
        };
        let scheme_end = head.find("://").map_or(0, |at| at + 3);
        match head.rfind('@') {
            Some(at) if at >= scheme_end => {
                write!(f, "{}***@{}", &head[..scheme_end], &head[at + 1..])?;
            }
            _ => f.write_str(head)?,
        }
        if let Some(query) = query {
            f.write_str("?")?;
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                match pair.split_once('=') {
                    Some((name, _)) if is_secret_parameter(name) => write!(f, "{name}=***")?,
                    _ => f.write_str(pair)?,
                }
            }
        }
        Ok(())
    }
}

/// Query parameters of a Redis URL that carry credentials.
fn is_secret_parameter(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "pass" | "password" | "user" | "username" | "auth" | "token"
    )
}

#[cfg(test)]
mod tests {
    use super::RedactedUrl;

    #[test]
    fn credentials_are_hidden() {
        let shown = RedactedUrl("redis://app:s3cret@cache.internal:6379/0").to_string();
        assert_eq!(shown, "redis://***@cache.internal:6379/0");
        assert!(!shown.contains("s3cret"));
        assert_eq!(
            RedactedUrl("redis://127.0.0.1:6379").to_string(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            RedactedUrl("app:s3cret@cache.internal:6379").to_string(),
            "***@cache.internal:6379",
            "no scheme"
        );
        assert_eq!(
            RedactedUrl("redis+unix:///run/redis.sock?db=2&pass=s3cret&user=app").to_string(),
            "redis+unix:///run/redis.sock?db=2&pass=***&user=***"
        );
    }
}
