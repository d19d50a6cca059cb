//! The pools and connections of each topology behind one type, so that the
//! tier, the log tailer and the warmer do not care where L2 lives.
//!
//! Each topology has its deadpool pool. A standalone server and a
//! Sentinel-named master give `MultiplexedConnection`s (deadpool-redis's
//! managers); a Cluster gives a `ClusterConnection`, which routes each
//! command to its slot's master and follows `MOVED`/`ASK`. Both are shared
//! by concurrent requests.
//!
//! The Cluster's manager is our own: deadpool-redis's builds its client
//! with redis-rs's defaults (16 retries with backoff, no response timeout),
//! with which every request to the slots of a dead master took 500 ms to
//! fail (measured: 29 GETs in 14.5 s, while the other masters answered in
//! under a millisecond). One retry still follows a `MOVED` or an `ASK` and
//! fails such a request in about 2 ms.

use std::time::Duration;

use deadpool_redis::{sentinel, Runtime};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::error::{Error, Unavailable};
use crate::tiers::topology::{Kind, RedisConfig};

/// One pool of the configured topology.
pub(crate) enum Pools {
    Node(deadpool_redis::Pool),
    Sentinel(sentinel::Pool),
    Cluster(deadpool::managed::Pool<ClusterManager>),
}

/// A connection checked out of a pool and kept out of it: it is counted
/// in the pool's size until [`Checkout::detach`] takes it out for good.
pub(crate) enum Checkout {
    Node(deadpool_redis::Connection),
    Sentinel(sentinel::Connection),
    Cluster(deadpool::managed::Object<ClusterManager>),
}

impl Checkout {
    /// Takes the connection out of the pool, which stops counting it and
    /// makes a new one when asked: a lane's connection is never handed back,
    /// because it is dropped only when it broke or when the runtime that
    /// drives it ended.
    pub(crate) fn detach(self) {
        match self {
            Checkout::Node(conn) => drop(deadpool_redis::Connection::take(conn)),
            Checkout::Sentinel(conn) => drop(sentinel::Connection::take(conn)),
            Checkout::Cluster(conn) => drop(deadpool::managed::Object::take(conn)),
        }
    }
}

/// A handle on a connection of any topology, cheap to clone.
#[derive(Clone)]
pub(crate) enum RedisConnection {
    Node(MultiplexedConnection),
    /// redis-rs applies no response timeout to cluster requests made
    /// through deadpool's cluster manager: the handle carries its own.
    Cluster(ClusterConnection, Duration),
}

/// Settings every pool shares.
pub(crate) struct PoolSettings {
    pub(crate) size: usize,
    pub(crate) connect_timeout: Duration,
    /// The response timeout of connections outside the lane.
    pub(crate) response_timeout: Duration,
}

macro_rules! finish_pool {
    ($builder:expr, $settings:expr) => {
        $builder
            .max_size($settings.size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some($settings.connect_timeout))
            .create_timeout(Some($settings.connect_timeout))
            .recycle_timeout(Some($settings.connect_timeout))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the redis pool: {e}")))
    };
}

/// A checkout of `pool` without waiting for a slot (its create and recycle
/// timeouts still apply); `None` when every slot is checked out.
async fn take_now<M, W>(pool: &deadpool::managed::Pool<M, W>) -> Result<Option<W>, Error>
where
    M: deadpool::managed::Manager<Error = redis::RedisError>,
    W: From<deadpool::managed::Object<M>>,
{
    use deadpool::managed::{PoolError, TimeoutType, Timeouts};
    let timeouts = Timeouts {
        wait: Some(Duration::ZERO),
        ..pool.timeouts()
    };
    match pool.timeout_get(&timeouts).await {
        Ok(checkout) => Ok(Some(checkout)),
        Err(PoolError::Timeout(TimeoutType::Wait)) => Ok(None),
        Err(e) => Err(crate::error::from_pool(e)),
    }
}

impl Pools {
    /// The pool of `config`'s topology. Nothing connects yet.
    pub(crate) fn new(config: &RedisConfig, settings: &PoolSettings) -> Result<Pools, Error> {
        let unusable = |e: redis::RedisError| {
            Error::Config(format!("redis configuration {config} is not usable: {e}"))
        };
        #[cfg(feature = "tls")]
        if config.tls {
            crate::tiers::tls::install_crypto_provider();
        }
        match &config.kind {
            Kind::Standalone => {
                let info = standalone_info(config).map_err(unusable)?;
                let connection_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.response_timeout));
                let manager = deadpool_redis::Manager::new_with_config(info, connection_config)
                    .map_err(unusable)?;
                finish_pool!(deadpool_redis::Pool::builder(manager), settings).map(Pools::Node)
            }
            Kind::Sentinel { master } => {
                let sentinels = node_infos(config, false).map_err(unusable)?;
                let node = sentinel::SentinelNodeConnectionInfo {
                    tls_mode: config.tls.then_some(sentinel::TlsMode::Secure),
                    redis_connection_info: Some(deadpool_redis::RedisConnectionInfo {
                        db: config.db,
                        username: config.username.clone(),
                        password: config.password.clone(),
                        protocol: deadpool_redis::ProtocolVersion::RESP2,
                    }),
                };
                let manager = sentinel::Manager::new(
                    sentinels,
                    master.clone(),
                    Some(node),
                    sentinel::SentinelServerType::Master,
                )
                .map_err(unusable)?;
                finish_pool!(sentinel::Pool::builder(manager), settings).map(Pools::Sentinel)
            }
            Kind::Cluster => {
                let nodes = node_infos(config, true).map_err(unusable)?;
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .retries(1)
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.response_timeout)
                    .build()
                    .map_err(unusable)?;
                let manager = ClusterManager { client };
                finish_pool!(deadpool::managed::Pool::builder(manager), settings)
                    .map(Pools::Cluster)
            }
        }
    }

    /// Checks a connection out without waiting for one to be returned:
    /// an idle pooled connection, or a new one while the pool is below its
    /// size; `None` when every connection is checked out (lanes keep theirs
    /// for good, so waiting would mean waiting for a runtime to end). The
    /// handle's requests time out after `response_timeout`.
    pub(crate) async fn get_now(
        &self,
        response_timeout: Duration,
    ) -> Result<Option<(Checkout, RedisConnection)>, Error> {
        Ok(match self {
            Pools::Node(pool) => {
                let Some(checkout) = take_now(pool).await? else {
                    return Ok(None);
                };
                let mut handle = MultiplexedConnection::clone(&checkout);
                handle.set_response_timeout(response_timeout);
                Some((Checkout::Node(checkout), RedisConnection::Node(handle)))
            }
            Pools::Sentinel(pool) => {
                let Some(checkout) = take_now(pool).await? else {
                    return Ok(None);
                };
                let mut handle = MultiplexedConnection::clone(&checkout);
                handle.set_response_timeout(response_timeout);
                Some((Checkout::Sentinel(checkout), RedisConnection::Node(handle)))
            }
            Pools::Cluster(pool) => {
                let Some(checkout) = take_now(pool).await? else {
                    return Ok(None);
                };
                let handle = ClusterConnection::clone(&checkout);
                Some((
                    Checkout::Cluster(checkout),
                    RedisConnection::Cluster(handle, response_timeout),
                ))
            }
        })
    }

    /// A connection of its own, made by the pool's manager but never counted
    /// in the pool: the log tailer, bulk writers and confirmed invalidations
    /// hold theirs for long, and must not starve (or be starved by) the
    /// connections calls use. Its requests time out after `response_timeout`.
    pub(crate) async fn dedicated(
        &self,
        response_timeout: Duration,
    ) -> Result<RedisConnection, Error> {
        use deadpool::managed::Manager as _;
        Ok(match self {
            Pools::Node(pool) => {
                let mut conn = pool.manager().create().await?;
                conn.set_response_timeout(response_timeout);
                RedisConnection::Node(conn)
            }
            Pools::Sentinel(pool) => {
                let mut conn = pool.manager().create().await?;
                conn.set_response_timeout(response_timeout);
                RedisConnection::Node(conn)
            }
            Pools::Cluster(pool) => {
                RedisConnection::Cluster(pool.manager().create().await?, response_timeout)
            }
        })
    }

    /// The pool's figures.
    pub(crate) fn status(&self) -> deadpool_redis::Status {
        match self {
            Pools::Node(pool) => pool.status(),
            Pools::Sentinel(pool) => pool.status(),
            Pools::Cluster(pool) => pool.status(),
        }
    }
}

/// Makes the pool's cluster connections, from a client with our settings.
pub(crate) struct ClusterManager {
    client: redis::cluster::ClusterClient,
}

impl deadpool::managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<ClusterConnection, redis::RedisError> {
        self.client.get_async_connection().await
    }

    /// A cluster connection reconnects to its nodes and refreshes its slot
    /// map by itself; one dead master must not discard it.
    async fn recycle(
        &self,
        _: &mut ClusterConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<redis::RedisError> {
        Ok(())
    }
}

/// The standalone server's connection info, with the configured credentials
/// and root certificate applied.
fn standalone_info(config: &RedisConfig) -> redis::RedisResult<redis::ConnectionInfo> {
    let url = config.url.as_deref().unwrap_or_default();
    #[cfg(feature = "tls")]
    let info = match &config.root_certificate {
        Some(pem) => crate::tiers::tls::with_root_certificate(url, pem)?,
        None => url.into_connection_info()?,
    };
    #[cfg(not(feature = "tls"))]
    let info = url.into_connection_info()?;
    let mut redis = info.redis_settings().clone();
    if let Some(password) = &config.password {
        redis = redis.set_password(password);
        if let Some(username) = &config.username {
            redis = redis.set_username(username);
        }
    }
    Ok(info.set_redis_settings(redis))
}

/// `config`'s hosts as nodes (`with_credentials`: the data nodes'
/// credentials and database; Sentinels get none).
fn node_infos(
    config: &RedisConfig,
    with_credentials: bool,
) -> redis::RedisResult<Vec<redis::ConnectionInfo>> {
    let scheme = if config.tls { "rediss" } else { "redis" };
    config
        .hosts
        .iter()
        .map(|host| {
            let info = format!("{scheme}://{host}").into_connection_info()?;
            Ok(if with_credentials {
                info.set_redis_settings(redis_settings(config))
            } else {
                info
            })
        })
        .collect()
}

fn redis_settings(config: &RedisConfig) -> redis::RedisConnectionInfo {
    let mut redis = redis::RedisConnectionInfo::default().set_db(config.db);
    if let Some(password) = &config.password {
        redis = redis.set_password(password);
    }
    if let Some(username) = &config.username {
        redis = redis.set_username(username);
    }
    redis
}

impl RedisConnection {
    /// Whether commands are routed over a cluster's nodes: pipelines and
    /// multi-key commands then must stay within one slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(..))
    }

    /// Runs single-key `commands`, answers in order: one pipeline on one
    /// server; on a cluster, where a pipeline must stay within one slot,
    /// concurrent commands, which the cluster connection pipelines per node.
    pub(crate) async fn run_all<T: redis::FromRedisValue>(
        &mut self,
        commands: impl IntoIterator<Item = Cmd>,
    ) -> redis::RedisResult<Vec<T>> {
        if self.is_cluster() {
            let requests = commands.into_iter().map(|cmd| {
                let mut conn = self.clone();
                async move { cmd.query_async(&mut conn).await }
            });
            futures_util::future::try_join_all(requests).await
        } else {
            let commands = commands.into_iter();
            let mut pipe = redis::Pipeline::with_capacity(commands.size_hint().0);
            for cmd in commands {
                pipe.add_command(cmd);
            }
            pipe.query_async(self).await
        }
    }

    /// The cluster's masters (`host`, `port`), from `CLUSTER SLOTS`; empty
    /// for other topologies.
    pub(crate) async fn masters(&mut self) -> Result<Vec<(String, u16)>, Error> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        // Asked of a random node, which may be a dead one: try a few.
        let mut slots: Result<Vec<Value>, _> = Err(Error::Unavailable(Unavailable::Unreachable));
        for _ in 0..3 {
            slots = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(self)
                .await
                .map_err(Error::from);
            if slots.is_ok() {
                break;
            }
        }
        let slots = slots?;
        let mut masters = Vec::new();
        for range in slots {
            // [start, end, [host, port, id, …], replicas…]
            let Value::Array(fields) = range else {
                continue;
            };
            let Some(Value::Array(master)) = fields.get(2) else {
                continue;
            };
            let host = match master.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = master.get(1) else {
                continue;
            };
            let Ok(port) = u16::try_from(*port) else {
                continue;
            };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
        Ok(masters)
    }

    /// `PING`s the server, or each master of a cluster: how many answered,
    /// of how many. An error only when none did.
    pub(crate) async fn ping_nodes(&mut self) -> Result<(u32, u32), Error> {
        let masters = self.masters().await?;
        if masters.is_empty() {
            self.query_on::<String>(None, &redis::cmd("PING")).await?;
            return Ok((1, 1));
        }
        let mut answered = 0;
        let mut last_error = None;
        for master in &masters {
            match self
                .query_on::<String>(Some(master), &redis::cmd("PING"))
                .await
            {
                Ok(_) => answered += 1,
                Err(e) => last_error = Some(e),
            }
        }
        let total = u32::try_from(masters.len()).unwrap_or(u32::MAX);
        match last_error {
            Some(e) if answered == 0 => Err(e),
            _ => Ok((answered, total)),
        }
    }

    /// Runs `cmd` on the node at `host:port` (a cluster's `SCAN`, whose
    /// cursor belongs to one node); on other topologies, on the server.
    pub(crate) async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        match (self, node) {
            (RedisConnection::Cluster(c, timeout), Some((host, port))) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let value = tokio::time::timeout(*timeout, c.route_command(cmd.clone(), routing))
                    .await
                    .map_err(|_| Error::Timeout(*timeout))??;
                Ok(redis::from_redis_value(value).map_err(redis::RedisError::from)?)
            }
            (conn, _) => Ok(cmd.query_async(conn).await?),
        }
    }
}

fn timed_out(timeout: Duration) -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {timeout:?}"),
    )
    .into()
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Node(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c, timeout) => {
                let timeout = *timeout;
                let request = c.req_packed_command(cmd);
                Box::pin(async move {
                    tokio::time::timeout(timeout, request)
                        .await
                        .unwrap_or_else(|_| Err(timed_out(timeout)))
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Node(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c, timeout) => {
                let timeout = *timeout;
                let request = c.req_packed_commands(pipeline, offset, count);
                Box::pin(async move {
                    tokio::time::timeout(timeout, request)
                        .await
                        .unwrap_or_else(|_| Err(timed_out(timeout)))
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Node(c) => c.get_db(),
            RedisConnection::Cluster(c, _) => c.get_db(),
        }
    }
}
