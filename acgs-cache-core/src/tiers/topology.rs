//! Where L2 lives: one Redis server, the master a group of Sentinels names,
//! or a Redis Cluster — chosen by URL scheme or built in code, and shown
//! everywhere without its credentials.

use std::fmt;

use crate::error::Error;

/// How to reach L2: the topology, the nodes, credentials and TLS.
///
/// Built from a URL ([`RedisConfig::parse`], which
/// [`CacheBuilder::redis_url`](crate::cache::CacheBuilder::redis_url) calls) or in
/// code:
///
/// | topology | URL |
/// |---|---|
/// | one server | `redis://[user:password@]host:port[/db]`, `rediss://…` for TLS |
/// | Sentinel | `redis+sentinel://[user:password@]s1:26379,s2:26379/master-name[/db]` |
/// | Cluster | `redis+cluster://[user:password@]node1:6379,node2:6379` |
///
/// `rediss+sentinel://` and `rediss+cluster://` use TLS to every node.
/// Credentials are those of the data nodes (an ACL user, or only a password
/// for `requirepass`); Sentinels are asked without credentials.
///
/// ```
/// use acgs_cache_core::RedisConfig;
///
/// let sentinel = RedisConfig::parse("redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2:26379/governance")?;
/// assert_eq!(sentinel.to_string(), "redis+sentinel://***@10.0.0.1:26379,10.0.0.2:26379/governance");
///
/// let cluster = RedisConfig::cluster(["10.0.1.1:6379", "10.0.1.2:6379", "10.0.1.3:6379"])
///     .credentials("app", "s3cret");
/// assert!(!format!("{cluster:?}").contains("s3cret"));
/// # Ok::<(), acgs_cache_core::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) kind: Kind,
    /// `host:port` of each node (standalone: empty, the URL says it).
    pub(crate) hosts: Vec<String>,
    /// The standalone server's URL, as given.
    pub(crate) url: Option<String>,
    pub(crate) tls: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    /// PEM certificate(s) trusted for TLS instead of the system's roots.
    pub(crate) root_certificate: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Standalone,
    Sentinel { master: String },
    Cluster,
}

impl RedisConfig {
    /// One Redis server at `url` (`redis://…`, `rediss://…`, `unix://…`).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::standalone("redis://10.0.0.5:6379/2");
    /// assert_eq!(config.topology(), "standalone");
    /// # Ok(()) }
    /// ```
    pub fn standalone(url: impl Into<String>) -> Self {
        let url = url.into();
        RedisConfig {
            kind: Kind::Standalone,
            hosts: Vec::new(),
            tls: url.starts_with("rediss://"),
            url: Some(url),
            username: None,
            password: None,
            db: 0,
            root_certificate: None,
        }
    }

    /// The master named `master_name`, found through the Sentinels at
    /// `sentinels` (`host:port` each). After a failover the next connection
    /// asks them again, so the cache follows the promoted replica.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::sentinel("governance", ["10.0.0.1:26379", "10.0.0.2:26379"]);
    /// assert_eq!(config.topology(), "sentinel");
    /// # Ok(()) }
    /// ```
    pub fn sentinel(
        master_name: impl Into<String>,
        sentinels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        RedisConfig {
            kind: Kind::Sentinel {
                master: master_name.into(),
            },
            hosts: sentinels.into_iter().map(Into::into).collect(),
            ..RedisConfig::standalone(String::new())
        }
    }

    /// A Redis Cluster reached through any of `seed_nodes` (`host:port`
    /// each); the rest of the cluster is discovered from them, and `MOVED` /
    /// `ASK` redirections are followed.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::cluster(["10.0.1.1:6379", "10.0.1.2:6379", "10.0.1.3:6379"]);
    /// assert_eq!(config.topology(), "cluster");
    /// # Ok(()) }
    /// ```
    pub fn cluster(seed_nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        RedisConfig {
            kind: Kind::Cluster,
            hosts: seed_nodes.into_iter().map(Into::into).collect(),
            ..RedisConfig::standalone(String::new())
        }
    }

    /// Parses a URL of any of the three topologies (see the table above).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unknown scheme, a Sentinel URL without a
    /// master name, no host, or a database that is not a number. The message
    /// never contains the credentials.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::parse("redis+sentinel://s1:26379,s2:26379/governance")?;
    /// assert_eq!(config.topology(), "sentinel");
    /// # Ok(()) }
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |why: &str| {
            Error::Config(format!(
                "redis URL {} is not usable: {why}",
                crate::error::RedactedUrl(url)
            ))
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid("expected scheme://…"));
        };
        let (tls, topology) = match scheme {
            "redis" | "rediss" | "unix" | "redis+unix" => return Ok(Self::standalone(url)),
            "redis+sentinel" => (false, "sentinel"),
            "rediss+sentinel" => (true, "sentinel"),
            "redis+cluster" => (false, "cluster"),
            "rediss+cluster" => (true, "cluster"),
            _ => return Err(invalid("unknown scheme (redis, rediss, redis+sentinel, redis+cluster, rediss+sentinel, rediss+cluster)")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let hosts: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if hosts.is_empty() {
            return Err(invalid("no host"));
        }
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let mut config = if topology == "sentinel" {
            let master = segments
                .next()
                .ok_or_else(|| invalid("a Sentinel URL names its master: …/master-name"))?;
            RedisConfig::sentinel(percent_decode(master), hosts)
        } else {
            RedisConfig::cluster(hosts)
        };
        if let Some(db) = segments.next() {
            config.db = db
                .parse()
                .map_err(|_| invalid("the database must be a number"))?;
        }
        if segments.next().is_some() {
            return Err(invalid("unexpected path segments"));
        }
        config.tls = tls;
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            config.username = Some(percent_decode(user)).filter(|u| !u.is_empty());
            config.password = password.map(percent_decode);
        }
        Ok(config)
    }

    /// Authenticates as ACL user `username` with `password` (replacing any
    /// credentials of the URL).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::standalone("redis://10.0.0.5:6379").credentials("policy-svc", "from-the-secret-store");
    /// let cache = Cache::builder().redis(config).build()?; // the password is never logged
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Authenticates with only a password (`requirepass`, the `default` user).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::standalone("redis://10.0.0.5:6379").password("from-the-secret-store");
    /// # let _ = config;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.username = None;
        self.password = Some(password.into());
        self
    }

    /// Uses TLS to every node (what the `rediss` schemes say; a standalone
    /// URL's scheme follows).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::standalone("redis://10.0.0.5:6380").tls(true);
    /// # let _ = config; // needs the `tls` feature to connect
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        if let Some(url) = &self.url {
            let (from, to) = if tls {
                ("redis://", "rediss://")
            } else {
                ("rediss://", "redis://")
            };
            if let Some(rest) = url.strip_prefix(from) {
                self.url = Some(format!("{to}{rest}"));
            }
        }
        self
    }

    /// Trusts the PEM certificate(s) in `pem` for TLS instead of the system's
    /// roots (a private CA). Applies to a standalone server; Sentinel and
    /// Cluster connections use the system's roots.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::standalone("rediss://10.0.0.5:6380").root_certificate(b"-----BEGIN CERTIFICATE-----...".to_vec());
    /// # let _ = config;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self.tls(true)
    }

    /// The topology's name: `standalone`, `sentinel` or `cluster`.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let config = RedisConfig::parse("redis+cluster://n1:6379,n2:6379")?;
    /// assert_eq!(config.topology(), "cluster");
    /// # Ok(()) }
    /// ```
    pub fn topology(&self) -> &'static str {
        match self.kind {
            Kind::Standalone => "standalone",
            Kind::Sentinel { .. } => "sentinel",
            Kind::Cluster => "cluster",
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn is_cluster(&self) -> bool {
        self.kind == Kind::Cluster
    }

    /// The ACL user, if any (for error messages: never the password): the
    /// one set in code, else the one a standalone URL names (`user:…@` or
    /// `?user=`).
    #[cfg(feature = "redis")]
    pub(crate) fn user_for_messages(&self) -> String {
        let from_url = || {
            let url = self.url.as_deref()?;
            let (head, query) = url.split_once('?').unwrap_or((url, ""));
            let in_query = query
                .split('&')
                .find_map(|pair| match pair.split_once('=') {
                    Some(("user" | "username", user)) => Some(percent_decode(user)),
                    _ => None,
                });
            let scheme_end = head.find("://").map_or(0, |at| at + 3);
            let in_userinfo = head
                .rfind('@')
                .filter(|at| *at >= scheme_end)
                .and_then(|at| {
                    let user = head[scheme_end..at].split(':').next().unwrap_or_default();
                    Some(percent_decode(user)).filter(|u| !u.is_empty())
                });
            in_userinfo.or(in_query)
        };
        match self.username.clone().or_else(from_url) {
            Some(user) => format!("user {user:?}"),
            None => "the default user".to_owned(),
        }
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL form, with `***` in place of any credentials.
impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = self.username.is_some() || self.password.is_some();
        match &self.kind {
            Kind::Standalone => {
                let url = self.url.as_deref().unwrap_or_default();
                fmt::Display::fmt(&crate::error::RedactedUrl(url), f)?;
                if credentials {
                    f.write_str(" (with credentials)")?;
                }
                Ok(())
            }
            kind => {
                let scheme = match (kind, self.tls) {
                    (Kind::Sentinel { .. }, false) => "redis+sentinel",
                    (Kind::Sentinel { .. }, true) => "rediss+sentinel",
                    (_, false) => "redis+cluster",
                    (_, true) => "rediss+cluster",
                };
                write!(f, "{scheme}://")?;
                if credentials {
                    f.write_str("***@")?;
                }
                f.write_str(&self.hosts.join(","))?;
                if let Kind::Sentinel { master } = kind {
                    write!(f, "/{master}")?;
                }
                if self.db != 0 {
                    write!(f, "/{}", self.db)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology())
            .field("url", &format_args!("{self}"))
            .field("tls", &self.tls)
            .field("custom_root_certificate", &self.root_certificate.is_some())
            .finish()
    }
}

impl std::str::FromStr for RedisConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        RedisConfig::parse(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let c = RedisConfig::parse("redis+sentinel://app:p%40ss@s1:26379,s2:26380/governance/2")
            .unwrap();
        assert_eq!(
            c.kind,
            Kind::Sentinel {
                master: "governance".into()
            }
        );
        assert_eq!(c.hosts, ["s1:26379", "s2:26380"]);
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.db, 2);
        assert!(!c.tls);
        let shown = format!("{c} {c:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("p%40ss") && !shown.contains("app"));
        assert!(RedisConfig::parse("redis+sentinel://s1:26379").is_err());
        assert!(RedisConfig::parse("redis+sentinel://s1:26379/m/x").is_err());
    }

    #[test]
    fn cluster_urls() {
        let c = RedisConfig::parse("rediss+cluster://:only-password@a:1,b:2,c:3").unwrap();
        assert_eq!(c.kind, Kind::Cluster);
        assert_eq!(c.hosts.len(), 3);
        assert_eq!(c.username, None);
        assert_eq!(c.password.as_deref(), Some("only-password"));
        assert!(c.tls);
        assert_eq!(c.to_string(), "rediss+cluster://***@a:1,b:2,c:3");
        assert!(RedisConfig::parse("redis+cluster://").is_err());
    }

    #[test]
    fn standalone_and_errors_hide_credentials() {
        let c = RedisConfig::parse("redis://app:hunter2@127.0.0.1:6379/0").unwrap();
        assert_eq!(c.topology(), "standalone");
        assert!(!format!("{c} {c:?}").contains("hunter2"));
        let tls = RedisConfig::standalone("redis://h:1").root_certificate(b"pem".to_vec());
        assert_eq!((tls.tls, tls.url.as_deref()), (true, Some("rediss://h:1")));
        assert_eq!(tls.tls(false).url.as_deref(), Some("redis://h:1"));
        let e = RedisConfig::parse("memcache://app:hunter2@h:1").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = RedisConfig::parse("redis+sentinel://app:hunter2@h:1").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = RedisConfig::parse("app:hunter2@h:6379").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let unix = RedisConfig::parse("redis+unix:///run/r.sock?user=app&pass=hunter2").unwrap();
        assert!(!format!("{unix} {unix:?}").contains("hunter2"));
    }

    #[test]
    #[cfg(feature = "redis")] // only connecting names the user
    fn messages_name_the_user_never_the_password() {
        let unix = RedisConfig::parse("redis+unix:///run/r.sock?user=app&pass=hunter2").unwrap();
        assert_eq!(unix.user_for_messages(), "user \"app\"");
        let named = RedisConfig::parse("redis://cache-svc:hunter2@h:1").unwrap();
        assert_eq!(named.user_for_messages(), "user \"cache-svc\"");
    }
}
