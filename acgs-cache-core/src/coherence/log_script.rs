//! The log's scripts and commands, as functions of the L2 tier they run
//! on (the protocol they implement is described in `log.rs`).

use std::collections::HashMap;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::streams::StreamReadReply;
use redis::{Script, Value};

use crate::coherence::log::{now_us, AppendSettings, LogEntry, LogKeys, Synced};
use crate::coherence::state::Record;
use crate::error::{Error, Unavailable};
use crate::format::key::KeyDigest;
use crate::log_position::{position_arg, LogPosition};
use crate::tiers::l2::{L2Tier, RedisConnection};

/// Makes sure the log's current generation is marked and belongs to the
/// server that answers; returns `{epoch, start}`.
const GENERATION_LUA: &str = r"
local function field(list, name)
  for i = 1, #list, 2 do if list[i] == name then return list[i + 1] end end
end
local function id_parts(id)
  local ms, seq = string.match(id or '0-0', '(%d+)-(%d+)')
  return tonumber(ms), tonumber(seq)
end
local function generation(stream, state, candidate, head_ms)
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or '-'
  local epoch, start
  local exists = redis.call('EXISTS', stream) == 1
  if exists then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local name = field(g, 'name')
      if string.sub(name, 1, 6) == 'epoch:' then
        epoch = name
        start = field(g, 'last-delivered-id')
      end
    end
  end
  if epoch and string.sub(epoch, -#replid - 1) == ':' .. replid then
    return epoch, start
  end
  local t = redis.call('TIME')
  local start_ms = math.max(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(head_ms)) + 1
  if exists then
    local last_ms = id_parts(field(redis.call('XINFO', 'STREAM', stream), 'last-generated-id'))
    start_ms = math.max(start_ms, last_ms + 1)
    if epoch then redis.call('XGROUP', 'DESTROY', stream, epoch) end
  end
  epoch = 'epoch:' .. candidate .. ':' .. replid
  start = string.format('%d-0', start_ms)
  redis.call('XGROUP', 'CREATE', stream, epoch, start, 'MKSTREAM')
  redis.call('XSETID', stream, start)
  redis.call('HSET', state, 'last', start)
  return epoch, start
end
";

/// Appends one record. `KEYS`: stream, state hash, then the keys to
/// tombstone (same node only). `ARGV`: epoch candidate, writer's head ms,
/// max length, tombstone ms, kind, name, identity, digest, sent µs.
///
/// Each record carries its generation (`g`) and the id of the record
/// before it (`p`, kept in the state hash's `last` field): a reader that
/// finds its own generation and an unbroken chain from its cursor knows it
/// missed nothing, without asking the server anything else.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GENERATION_LUA}{}",
        r"
local epoch, start = generation(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local previous = redis.call('HGET', KEYS[2], 'last') or ''
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
  'k', ARGV[5], 'n', ARGV[6], 'i', ARGV[7], 'd', ARGV[8], 't', ARGV[9], 'g', epoch, 'p', previous)
redis.call('HSET', KEYS[2], 'last', id)
if ARGV[5] ~= 'e' then redis.call('HSET', KEYS[2], ARGV[5] .. ':' .. ARGV[6], id) end
if #KEYS > 2 then
  local ms, seq = id_parts(id)
  local stone = '\173' .. string.format('%020d-%020d', ms, seq)
  for i = 3, #KEYS do redis.call('SET', KEYS[i], stone, 'PX', ARGV[4]) end
end
return {id, epoch, start}
"
    ))
});

/// The log's state: its generation, first and last ids, the highest id
/// trimmed or deleted (Redis 7) and, when `ARGV[3]` is `1`, every field of
/// the state hash. `KEYS`: stream, state hash. `ARGV`: epoch candidate,
/// reader's head ms, `1` for the state.
static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GENERATION_LUA}{}",
        r"
local epoch, start = generation(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local first = field(info, 'first-entry')
local state = {}
if ARGV[3] == '1' then state = redis.call('HGETALL', KEYS[2]) end
return {epoch, start, field(info, 'last-generated-id'), first and first[1] or '', state,
  field(info, 'max-deleted-entry-id') or ''}
"
    ))
});

/// Stores an entry unless a newer tombstone holds its key. `KEYS`: the
/// entry. `ARGV`: the computation's start (as `position_arg`), the bytes,
/// the TTL in ms. Returns 1 when stored.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GETRANGE', KEYS[1], 0, 41)
if string.byte(current, 1) == 173 and string.sub(current, 2) > ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// A random epoch candidate (used only if this call starts a generation).
fn epoch_candidate() -> String {
    let mut bytes = [0u8; 8];
    // A failing random source still gives distinct candidates per process.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = u64::from(std::process::id())
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(now_us())
            .to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn position(value: Option<&Value>) -> Option<LogPosition> {
    value.and_then(text).and_then(|t| LogPosition::parse(&t))
}

/// Appends `record` to the log (starting a generation if needed) and
/// tombstones `tombstones` (keys on the log's node) with its position.
/// With `confirm`, waits for replicas to acknowledge (`WAIT`, on a
/// connection of its own).
///
/// # Errors
///
/// The Redis error; [`Error::Unconfirmed`] when fewer replicas than
/// asked acknowledged in time (the record is in the master's log).
pub(crate) async fn append(
    l2: &Arc<L2Tier>,
    keys: &LogKeys,
    record: &Record,
    head: LogPosition,
    tombstones: &[String],
    settings: AppendSettings,
) -> Result<LogPosition, Error> {
    let (kind, name, identity, digest) = match record {
        Record::Name(name) => ("n", name.as_str(), String::new(), String::new()),
        Record::Function(scope) => ("f", scope.as_str(), String::new(), String::new()),
        Record::Entry {
            scope,
            identity,
            digest,
        } => (
            "e",
            scope.as_str(),
            format!("{identity:016x}"),
            digest.to_string(),
        ),
        Record::All => ("a", "", String::new(), String::new()),
    };
    let mut invocation = APPEND.key(&keys.stream);
    invocation.key(&keys.state);
    for key in tombstones {
        invocation.key(key);
    }
    invocation
        .arg(epoch_candidate())
        .arg(head.ms)
        .arg(settings.max_len)
        .arg(millis(settings.tombstone_for))
        .arg(kind)
        .arg(name)
        .arg(identity)
        .arg(digest)
        .arg(now_us());
    let reply: Vec<Value> = match settings.confirm {
        None => l2.run_script(&invocation).await?,
        Some((replicas, timeout)) => {
            let reply = confirmed(l2, &invocation, replicas, timeout).await?;
            reply
        }
    };
    position(reply.first()).ok_or(Error::Unavailable(Unavailable::UnexpectedReply))
}

/// Runs `invocation`, then `WAIT replicas timeout`, on the connection
/// reserved for confirmed invalidations (a `WAIT` holds its connection).
async fn confirmed(
    l2: &Arc<L2Tier>,
    invocation: &redis::ScriptInvocation<'_>,
    replicas: u32,
    timeout: Duration,
) -> Result<Vec<Value>, Error> {
    let mut conn = l2.confirm_connection().await?;
    let sent = async {
        let reply: Vec<Value> = invocation.invoke_async(&mut *conn).await?;
        let acknowledged: u32 = redis::cmd("WAIT")
            .arg(replicas)
            .arg(millis(timeout))
            .query_async(&mut *conn)
            .await?;
        Ok::<_, redis::RedisError>((reply, acknowledged))
    };
    let outcome = sent.await;
    drop(conn);
    let (reply, acknowledged) = match outcome {
        Ok(answered) => answered,
        Err(e) => {
            l2.drop_confirm_connection().await;
            let e = Error::from(e);
            l2.note_outcome::<()>(&Err(Error::Unavailable(Unavailable::Unreachable)));
            return Err(e);
        }
    };
    if acknowledged < replicas {
        let at = position(reply.first()).unwrap_or_default();
        return Err(Error::Unconfirmed {
            position: at,
            acknowledged,
            wanted: replicas,
        });
    }
    Ok(reply)
}

/// Reads the log's generation, ids and (with `state`) the state hash.
pub(crate) async fn sync(
    conn: &mut RedisConnection,
    keys: &LogKeys,
    head: LogPosition,
    state: bool,
) -> Result<Synced, Error> {
    let mut invocation = SYNC.key(&keys.stream);
    invocation
        .key(&keys.state)
        .arg(epoch_candidate())
        .arg(head.ms)
        .arg(if state { "1" } else { "0" });
    let reply: Vec<Value> = invocation.invoke_async(conn).await?;
    synced(&reply)
}

/// The log's state from the reply of [`SYNC`].
fn synced(reply: &[Value]) -> Result<Synced, Error> {
    let unparsable = || Error::Unavailable(Unavailable::UnexpectedReply);
    let epoch = reply.first().and_then(text).ok_or_else(unparsable)?;
    let start = position(reply.get(1)).ok_or_else(unparsable)?;
    let last = position(reply.get(2)).ok_or_else(unparsable)?;
    let first = position(reply.get(3));
    let state = match reply.get(4) {
        Some(Value::Array(fields)) => fields
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first()?)?, position(pair.get(1))?)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Synced {
        epoch,
        start,
        last,
        first,
        state,
        max_deleted: position(reply.get(5)),
    })
}

/// Stores an entry unless a tombstone newer than `started` (the
/// computation's start) holds its key: `Ok(false)` then. When the
/// computation's own read found the key empty (`seen_empty`), a plain
/// `SET … NX` goes first: a key that was empty holds no tombstone, and one
/// written since (or another writer's entry) refuses the `NX`; only then
/// does the tombstone-checking script decide. The outcome is the script's,
/// for a plain command's cost on the common path (a fresh miss).
pub(crate) async fn put_entry(
    l2: &Arc<L2Tier>,
    key: &str,
    started: LogPosition,
    bytes: &[u8],
    ttl: Duration,
    seen_empty: bool,
) -> Result<bool, Error> {
    if seen_empty {
        let mut set = set_px(key, bytes, ttl);
        let stored: Option<String> = l2.query(set.arg("NX")).await?;
        if stored.is_some() {
            return Ok(true);
        }
    }
    let mut invocation = PUT.key(key);
    invocation
        .arg(position_arg(started))
        .arg(bytes)
        .arg(millis(ttl));
    let stored: i64 = l2.run_script(&invocation).await?;
    Ok(stored == 1)
}

/// `SET key bytes PX ttl`.
fn set_px(key: &str, bytes: &[u8], ttl: Duration) -> redis::Cmd {
    let mut set = redis::cmd("SET");
    set.arg(key).arg(bytes).arg("PX").arg(millis(ttl));
    set
}

/// Writes a tombstone for an entry invalidated at `position`.
pub(crate) async fn tombstone(
    l2: &Arc<L2Tier>,
    key: &str,
    stone: &[u8],
    hold: Duration,
) -> Result<(), Error> {
    l2.query(&set_px(key, stone, hold)).await
}

/// Reads up to `count` records after `after` (waiting up to `block_ms`
/// for the first when given).
pub(crate) async fn read_log(
    conn: &mut RedisConnection,
    keys: &LogKeys,
    after: LogPosition,
    count: usize,
    block_ms: Option<u64>,
) -> Result<Vec<LogEntry>, Error> {
    let reply: Option<StreamReadReply> = read_command(keys, after, count, block_ms)
        .query_async(conn)
        .await?;
    Ok(entries(reply))
}

/// The log's last id, for waiting until this instance has heard it.
pub(crate) async fn log_end(l2: &Arc<L2Tier>, keys: &LogKeys) -> Result<LogPosition, Error> {
    let info: Vec<Value> = l2
        .query(redis::cmd("XINFO").arg("STREAM").arg(&keys.stream))
        .await
        .or_else(|e| match &e {
            Error::Redis(r) if r.to_string().contains("no such key") => Ok(Vec::new()),
            _ => Err(e),
        })?;
    let last = info
        .chunks(2)
        .find(|pair| pair.first().and_then(text).as_deref() == Some("last-generated-id"))
        .and_then(|pair| position(pair.get(1)));
    Ok(last.unwrap_or_default())
}

/// `XREAD` of up to `count` records after `after`, blocking up to `block_ms`.
fn read_command(
    keys: &LogKeys,
    after: LogPosition,
    count: usize,
    block_ms: Option<u64>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(&keys.stream).arg(after.to_string());
    cmd
}

/// The records of an `XREAD` reply.
fn entries(reply: Option<StreamReadReply>) -> Vec<LogEntry> {
    let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
    ids.map(|entry| LogEntry {
        position: LogPosition::parse(&entry.id),
        record: parse_record(&entry.map),
        generation: entry.map.get("g").and_then(text),
        previous: entry
            .map
            .get("p")
            .and_then(text)
            .and_then(|p| LogPosition::parse(&p)),
        id: entry.id,
    })
    .collect()
}

/// A record as read from the stream, or why it could not be read.
fn parse_record(map: &HashMap<String, Value>) -> Option<(Record, Option<u64>)> {
    let field = |name: &str| map.get(name).and_then(text);
    let name = field("n")?;
    let record = match field("k")?.as_str() {
        "n" => Record::Name(name),
        "f" => Record::Function(name),
        "e" => Record::Entry {
            scope: name,
            identity: u64::from_str_radix(&field("i")?, 16).ok()?,
            digest: KeyDigest(u128::from_str_radix(&field("d")?, 16).ok()?),
        },
        "a" => Record::All,
        _ => return None,
    };
    Some((record, field("t").and_then(|t| t.parse().ok())))
}
