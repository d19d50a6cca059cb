//! Real Redis topologies on free ports — standalone, Sentinel, Cluster, TLS —
//! made of `redis-server` / `redis-cli` / `openssl` processes and stopped on drop
//! (also while a panicking test unwinds).
//!
//! Nothing here ever uses port 6379 (a shared Redis may run there): every
//! `redis-cli` call names its port explicitly.

use std::fs::{self, OpenOptions};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long anything (a server, a replication link, a cluster) may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one `redis-cli` / `openssl` call may take before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(15);
/// The shared Redis on this machine: never ours to touch.
const SHARED_PORT: u16 = 6379;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);
/// Ports this process has handed out: never handed out twice, so tests running
/// in parallel threads cannot pick the same one.
static CLAIMED: Mutex<Vec<u16>> = Mutex::new(Vec::new());

fn claim(port: u16) -> bool {
    if port == SHARED_PORT || port == 0 {
        return false;
    }
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if claimed.contains(&port) {
        return false;
    }
    claimed.push(port);
    true
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free TCP port below 50000 (Cluster needs port + 10000 free as well).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        if port < 50_000 && claim(port) {
            return port;
        }
        // Ephemeral range above 50000: ask the kernel for a low port by trying a few.
        for candidate in (20_000 + (port % 20_000))..40_000 {
            if bindable(candidate) && claim(candidate) {
                return candidate;
            }
        }
    }
}

/// A free port for a Cluster node: below 50000, with its bus port (port + 10000)
/// free too. Both lie below the kernel's ephemeral range (32768 and up), so an
/// outgoing connection cannot take either between this check and the bind.
pub fn free_cluster_port() -> u16 {
    const LOW: u16 = 15_000;
    const SPAN: u16 = 7_500; // ports 15000..22500, bus ports 25000..32500
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for i in 0..SPAN {
        let port = LOW + ((seed as u64 + u64::from(i) * 7) % u64::from(SPAN)) as u16;
        if bindable(port) && bindable(port + 10_000) && claim(port) {
            return port;
        }
    }
    panic!("no free port pair (p, p + 10000) in {LOW}..{}", LOW + SPAN);
}

fn new_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "acgs-cache-test-{}-{}-{port}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}

/// Polls `ready` every 50 ms until it holds; panics with `what()` after `timeout`.
fn wait_until(timeout: Duration, what: impl Fn() -> String, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            panic!("{} (waited {timeout:?})", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a tool with a time limit; `Ok(stdout)` if it exits with status 0, else
/// `Err` with its status, stdout and stderr.
fn run_tool(
    program: &str,
    args: &[String],
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<String, String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() {
                Ok(stdout)
            } else {
                Err(format!(
                    "`{program} {}` failed ({}): {}{}",
                    args.join(" "),
                    output.status,
                    stdout.trim(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => {
            // The waiting thread still owns (and will reap) the child: the pid is ours.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            Err(format!(
                "`{program} {}` did not finish within {timeout:?}",
                args.join(" ")
            ))
        }
    }
}

/// `redis-cli -e -h 127.0.0.1 -p {port} {args…}` against any port (no auth, no TLS):
/// stdout, or `Err` on an error reply or a failed connection.
pub fn redis_cli(port: u16, args: &[&str]) -> Result<String, String> {
    assert_ne!(
        port, SHARED_PORT,
        "the harness never talks to the shared Redis"
    );
    let mut all = vec![
        "-e".to_string(),
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    run_tool("redis-cli", &all, None, TOOL_TIMEOUT)
}

/// The value of `name:` in an `INFO`-style reply.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix(name)?.strip_prefix(':'))
}

/// Why a spawn failed.
enum SpawnError {
    /// Someone else has the port: worth another try on another port.
    PortTaken(String),
    Failed(String),
}

/// One `redis-server` owned by a test.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// Arguments before the common ones (config file, `--sentinel`, the ports).
    leading: Vec<String>,
    /// The caller's extra arguments, after the common ones (so they win).
    extra: Vec<String>,
    /// What `redis-cli` needs to reach it (`--tls --cacert …`).
    cli_tls: Vec<String>,
    /// `--requirepass` from `extra`: `cli()` authenticates with it.
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh, empty server and waits until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra `redis-server` arguments
    /// (`["--requirepass", "x"]`, `["--replicaof", "127.0.0.1", "1234"]`, …),
    /// kept for [`restart`](Self::restart).
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        RedisServer::launch(free_port, |port, _dir| {
            (
                vec!["--port".into(), port.to_string()],
                extra.clone(),
                vec![],
            )
        })
    }

    /// Picks a port and a directory, lets `make` write what it needs there and
    /// return (leading args, extra args, redis-cli args), and starts the server;
    /// on a port conflict tries again elsewhere.
    fn launch(
        pick_port: fn() -> u16,
        make: impl Fn(u16, &Path) -> (Vec<String>, Vec<String>, Vec<String>),
    ) -> RedisServer {
        let mut conflicts = Vec::new();
        for _attempt in 0..4 {
            let port = pick_port();
            let dir = new_dir(port);
            let (leading, extra, cli_tls) = make(port, &dir);
            let password = extra
                .iter()
                .position(|a| a == "--requirepass")
                .and_then(|i| extra.get(i + 1).cloned());
            let mut server = RedisServer {
                port,
                dir,
                leading,
                extra,
                cli_tls,
                password,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(SpawnError::PortTaken(why)) => conflicts.push(why), // drop: dir removed
                Err(SpawnError::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("redis-server: every port tried was taken: {conflicts:#?}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), SpawnError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server's log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new("redis-server")
            .args(&self.leading)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let failure = |server: &mut RedisServer, why: String| {
            server.stop();
            let log = server.log_since(log_start);
            let message = format!(
                "redis-server on port {} {why}; its arguments: {:?} {:?}; its log:\n{log}",
                server.port, server.leading, server.extra
            );
            if log.contains("Address already in use") {
                SpawnError::PortTaken(message)
            } else {
                SpawnError::Failed(message)
            }
        };
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                return Err(failure(self, format!("exited at start ({status})")));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let why = format!("did not accept connections within {START_TIMEOUT:?}");
                return Err(failure(self, why));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The port accepts: make sure it is this process answering, not
        // someone who took the port first (ours then exits: bind failed).
        let identity = run_tool(
            "redis-cli",
            &self.cli_args(None, &["info", "server"]),
            None,
            Duration::from_secs(3),
        );
        if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
            let why = format!("exited at start ({status}) while the port accepted");
            return Err(failure(self, why));
        }
        if let Some(other) = identity
            .as_deref()
            .ok()
            .and_then(|info| info_field(info, "process_id"))
            .filter(|p| *p != pid.to_string())
        {
            let why = format!("is answered by another process (pid {other})");
            return Err(SpawnError::PortTaken(failure(self, why).into_message()));
        }
        Ok(())
    }

    /// The server's log written since byte `start`, at most its last 40 lines.
    fn log_since(&self, start: u64) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(log.get(start as usize..).unwrap_or(&[]));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The last `lines` lines of the server's log (stdout and stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://{user}:{password}@127.0.0.1:{port}`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (`--dir`: its log, config, nodes.conf, certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id while it runs (`None` once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Makes the server stop when this process ends, for a server held in a
    /// `static` (which is never dropped): a watcher process kills it and
    /// removes its directory once this process is gone.
    pub fn stop_with_this_process(&self) {
        let Some(pid) = self.pid() else { return };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// Kills the server (as a crash would: SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Unfreezes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status();
            assert!(status.is_ok_and(|s| s.success()), "kill {signal} failed");
        }
    }

    /// Starts the server again on the same port with the same arguments (empty:
    /// it keeps nothing on disk — except a Cluster node's nodes.conf).
    pub fn restart(&mut self) {
        self.stop();
        match self.spawn() {
            Ok(()) => {}
            Err(SpawnError::PortTaken(why) | SpawnError::Failed(why)) => panic!("restart: {why}"),
        }
    }

    fn cli_args(&self, auth: Option<(&str, &str)>, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "-e".to_string(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        all.extend(self.cli_tls.iter().cloned());
        let password = self.password.as_deref();
        if let Some((user, pass)) = auth.or(password.map(|p| ("default", p))) {
            all.extend([
                "--user".into(),
                user.into(),
                "--pass".into(),
                pass.into(),
                "--no-auth-warning".into(),
            ]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// Runs `redis-cli` against this server (with its TLS settings, and as the
    /// default user with its `--requirepass` if it has one): stdout, or `Err`
    /// on an error reply (`NOPERM …`, `WRONGTYPE …`) or a failed connection.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        run_tool("redis-cli", &self.cli_args(None, args), None, TOOL_TIMEOUT)
    }

    /// [`try_cli`](Self::try_cli) that panics on an error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`try_cli`](Self::try_cli) as an ACL user (`--user … --pass …`).
    pub fn try_cli_as(&self, user: &str, password: &str, args: &[&str]) -> Result<String, String> {
        run_tool(
            "redis-cli",
            &self.cli_args(Some((user, password)), args),
            None,
            TOOL_TIMEOUT,
        )
    }

    /// [`try_cli_as`](Self::try_cli_as) that panics on an error.
    pub fn cli_as(&self, user: &str, password: &str, args: &[&str]) -> String {
        self.try_cli_as(user, password, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The keys matching `pattern` (`redis-cli --scan`).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.cli(&["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// `ACL SETUSER {args…}`, e.g. `["app", "on", ">secret", "~acgs:*", "+@all"]`;
    /// panics with Redis's answer if it refuses.
    pub fn acl_setuser(&self, args: &[&str]) {
        let mut all = vec!["ACL", "SETUSER"];
        all.extend_from_slice(args);
        let reply = self.cli(&all);
        assert_eq!(reply.trim(), "OK", "ACL SETUSER {args:?}: {reply}");
    }
}

impl SpawnError {
    fn into_message(self) -> String {
        match self {
            SpawnError::PortTaken(m) | SpawnError::Failed(m) => m,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The Redis to use: `url` if given, else a server started for the caller
/// (kept alive by the returned handle).
pub fn given_or_started(url: Option<String>) -> (String, Option<RedisServer>) {
    match url {
        Some(url) => (url, None),
        None => {
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
    }
}

/// A port nothing listens on.
pub fn closed_port_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

/// One master, one replica and one Sentinel (quorum 1, `down-after-milliseconds
/// 1000`): a killed master is replaced by the replica in a few seconds.
pub struct SentinelSetup {
    /// The master as started, then the replica.
    servers: Vec<RedisServer>,
    sentinel: RedisServer,
}

const MASTER_NAME: &str = "mymaster";

impl SentinelSetup {
    /// Starts the three processes and waits until a failover could happen: the
    /// replica's link to the master is up and the Sentinel knows the replica.
    pub fn start() -> SentinelSetup {
        // Diskless sync would wait 5 s for more replicas before the first sync.
        let no_delay = ["--repl-diskless-sync-delay", "0"];
        let master = RedisServer::start_with(&no_delay);
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&[
            no_delay[0],
            no_delay[1],
            "--replicaof",
            "127.0.0.1",
            &master_port,
        ]);
        wait_until(
            START_TIMEOUT,
            || {
                format!(
                    "replica {} never reported master_link_status:up; its log:\n{}",
                    replica.port(),
                    replica.log_tail(20)
                )
            },
            || {
                replica
                    .try_cli(&["info", "replication"])
                    .is_ok_and(|info| info_field(&info, "master_link_status") == Some("up"))
            },
        );
        // After a diskless sync the master streams writes to the replica
        // only once the replica has acknowledged the sync (its next
        // `REPLCONF ACK`, up to a second later): until then a `WAIT`, as a
        // confirmed invalidation sends, counts no replica. Wait until a
        // write has reached the replica.
        master.cli(&["set", "harness:replication-check", "1"]);
        let written = master
            .try_cli(&["info", "replication"])
            .ok()
            .and_then(|info| info_field(&info, "master_repl_offset")?.parse::<u64>().ok())
            .unwrap_or(0);
        wait_until(
            START_TIMEOUT,
            || {
                format!(
                    "replica {} never received a write of master {}; its log:\n{}",
                    replica.port(),
                    master.port(),
                    replica.log_tail(20)
                )
            },
            || {
                replica.try_cli(&["info", "replication"]).is_ok_and(|info| {
                    info_field(&info, "slave_repl_offset")
                        .and_then(|o| o.parse::<u64>().ok())
                        .is_some_and(|offset| offset >= written)
                })
            },
        );
        master.cli(&["del", "harness:replication-check"]);
        let sentinel = RedisServer::launch(free_port, |port, dir| {
            let conf = dir.join("sentinel.conf");
            fs::write(
                &conf,
                format!(
                    "port {port}\n\
                     bind 127.0.0.1\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n"
                ),
            )
            .expect("write sentinel.conf");
            let leading = vec![conf.to_string_lossy().into_owned(), "--sentinel".into()];
            (leading, vec![], vec![])
        });
        let setup = SentinelSetup {
            servers: vec![master, replica],
            sentinel,
        };
        let replica_port = setup.servers[1].port();
        wait_until(
            START_TIMEOUT,
            || {
                format!(
                    "sentinel {} never saw replica {replica_port} as a healthy replica; its log:\n{}",
                    setup.sentinel.port(),
                    setup.sentinel.log_tail(20)
                )
            },
            || setup.sentinel_sees_healthy_replica(replica_port),
        );
        setup
    }

    /// Whether `SENTINEL REPLICAS` lists the replica with flags exactly `slave`
    /// (not `s_down`, not `disconnected`) and its master link `ok`.
    fn sentinel_sees_healthy_replica(&self, replica_port: u16) -> bool {
        let Ok(out) = self
            .sentinel
            .try_cli(&["sentinel", "replicas", MASTER_NAME])
        else {
            return false;
        };
        // A flat list of field, value, field, value…; each replica starts at "name".
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let mut replicas: Vec<Vec<(&str, &str)>> = Vec::new();
        for pair in lines.chunks(2) {
            if let [key, value] = pair {
                if *key == "name" {
                    replicas.push(Vec::new());
                }
                if let Some(replica) = replicas.last_mut() {
                    replica.push((key, value));
                }
            }
        }
        let port = replica_port.to_string();
        replicas.iter().any(|fields| {
            let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            field("port") == Some(port.as_str())
                && field("flags") == Some("slave")
                && field("master-link-status") == Some("ok")
        })
    }

    /// The monitored master's name: `mymaster`.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The Sentinel's port(s) (one here).
    pub fn sentinel_ports(&self) -> Vec<u16> {
        vec![self.sentinel.port()]
    }

    /// `redis+sentinel://127.0.0.1:{sentinel}/mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}",
            self.sentinel.port()
        )
    }

    /// The master's port as the Sentinel currently reports it.
    pub fn master_port(&self) -> u16 {
        self.try_master_port()
            .unwrap_or_else(|e| panic!("sentinel get-master-addr-by-name: {e}"))
    }

    fn try_master_port(&self) -> Result<u16, String> {
        let out = self
            .sentinel
            .try_cli(&["sentinel", "get-master-addr-by-name", MASTER_NAME])?;
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("unexpected answer {out:?}"))
    }

    /// `redis://127.0.0.1:{current master}`: to look at the data directly.
    pub fn master_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.master_port())
    }

    /// The server (master or replica) on `port`, if it is one of ours.
    pub fn server(&self, port: u16) -> Option<&RedisServer> {
        self.servers.iter().find(|s| s.port() == port)
    }

    /// The data servers: the master as started, then the replica.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The Sentinel process itself (its log, `cli`).
    pub fn sentinel(&self) -> &RedisServer {
        &self.sentinel
    }

    /// SIGKILLs the current master (as a crash would); returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        let master = self
            .servers
            .iter_mut()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("sentinel reports master {port}, not one of ours"));
        master.stop();
        port
    }

    /// Waits until every running replica has everything the current master
    /// wrote so far (replication is asynchronous: a write followed at once by
    /// [`kill_master`](Self::kill_master) may otherwise be lost). `WAIT` from
    /// `redis-cli` would not do: it only counts the calling connection's writes.
    pub fn wait_for_replicas(&self, timeout: Duration) {
        let master_port = self.master_port();
        let master = self.server(master_port).expect("the master is one of ours");
        let info = master.cli(&["info", "replication"]);
        let offset: u64 = info_field(&info, "master_repl_offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or_else(|| panic!("no master_repl_offset in {info}"));
        for replica in self
            .servers
            .iter()
            .filter(|s| s.port() != master_port && s.pid().is_some())
        {
            wait_until(
                timeout,
                || format!("replica {} never reached offset {offset}", replica.port()),
                || {
                    replica.try_cli(&["info", "replication"]).is_ok_and(|info| {
                        info_field(&info, "slave_repl_offset")
                            .and_then(|o| o.parse::<u64>().ok())
                            .is_some_and(|o| o >= offset)
                    })
                },
            );
        }
    }

    /// Polls the Sentinel until the master is no longer `old_port`; the new port,
    /// or `None` after `timeout`.
    pub fn wait_for_failover(&self, old_port: u16, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_master_port() {
                Ok(port) if port != old_port => return Some(port),
                _ if Instant::now() >= deadline => return None,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// A Redis Cluster of `masters` masters and no replicas, on ports below 50000
/// whose bus ports (+10000) are free. `cluster-require-full-coverage no`: when
/// one master dies, the others keep serving their slots.
pub struct ClusterSetup {
    nodes: Vec<RedisServer>,
}

impl ClusterSetup {
    /// Starts the nodes, joins them with `redis-cli --cluster create`, and waits
    /// until every node reports `cluster_state:ok` with all 16384 slots and
    /// every node known.
    pub fn start(masters: usize) -> ClusterSetup {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::launch(free_cluster_port, |port, _dir| {
                    let extra = [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-require-full-coverage",
                        "no",
                    ];
                    (
                        vec!["--port".into(), port.to_string()],
                        extra.iter().map(|a| a.to_string()).collect(),
                        vec![],
                    )
                })
            })
            .collect();
        let cluster = ClusterSetup { nodes };
        let mut create = vec!["--cluster".to_string(), "create".into()];
        create.extend(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        if let Err(e) = run_tool("redis-cli", &create, None, TOOL_TIMEOUT) {
            panic!("creating the cluster failed: {e}");
        }
        cluster.wait_until_ok(START_TIMEOUT);
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok`, 16384 slots ok
    /// and knows every node; panics after `timeout`.
    pub fn wait_until_ok(&self, timeout: Duration) {
        let total = self.nodes.len().to_string();
        let last = std::cell::RefCell::new(String::new());
        wait_until(
            timeout,
            || {
                let last = last.borrow();
                format!("the cluster on {:?} never became ok: {last}", self.ports())
            },
            || {
                self.nodes.iter().filter(|n| n.pid().is_some()).all(|node| {
                    let Ok(info) = node.try_cli(&["cluster", "info"]) else {
                        return false;
                    };
                    let ok = info_field(&info, "cluster_state") == Some("ok")
                        && info_field(&info, "cluster_slots_ok") == Some("16384")
                        && info_field(&info, "cluster_known_nodes") == Some(&total);
                    if !ok {
                        *last.borrow_mut() =
                            format!("node {}: {}", node.port(), info.replace("\r\n", " "));
                    }
                    ok
                })
            },
        );
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port()).collect()
    }

    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The node `index` (its `cli`, `pid`, `log_tail`, `pause`, …).
    pub fn node(&self, index: usize) -> &RedisServer {
        &self.nodes[index]
    }

    /// SIGKILLs master `index` (as a crash would).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Restarts node `index` on its port; it rejoins from its nodes.conf, empty.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
    }

    /// Waits until the other running nodes flag node `index` as `fail` (not just
    /// `fail?`): from then on they answer for their own slots only.
    pub fn wait_until_marked_failed(&self, index: usize, timeout: Duration) {
        let needle = format!("127.0.0.1:{}@", self.nodes[index].port());
        wait_until(
            timeout,
            || format!("node {index} was never flagged fail"),
            || {
                self.nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, n)| *i != index && n.pid().is_some())
                    .all(|(_, n)| {
                        n.try_cli(&["cluster", "nodes"]).is_ok_and(|nodes| {
                            nodes.lines().any(|line| {
                                let mut fields = line.split_whitespace().skip(1);
                                fields.next().is_some_and(|a| a.starts_with(&needle))
                                    && fields
                                        .next()
                                        .is_some_and(|flags| flags.split(',').any(|f| f == "fail"))
                            })
                        })
                    })
            },
        );
    }

    /// `DBSIZE` on node `index`.
    pub fn dbsize(&self, index: usize) -> u64 {
        let out = self.nodes[index].cli(&["dbsize"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("dbsize answered {out:?}"))
    }

    /// The keys on node `index` matching `pattern` (`redis-cli --scan`).
    pub fn keys_on(&self, index: usize, pattern: &str) -> Vec<String> {
        self.nodes[index].keys(pattern)
    }

    /// The index of the node serving `key`'s slot.
    pub fn node_of_key(&self, key: &str) -> usize {
        let running = self
            .nodes
            .iter()
            .find(|n| n.pid().is_some())
            .expect("a running node");
        let slot: u16 = running
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        for line in running.cli(&["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let mut ends = range.splitn(2, '-');
                let (Some(lo), hi) = (ends.next(), ends.next()) else {
                    return false;
                };
                let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.unwrap_or(lo).parse::<u16>()) else {
                    return false; // `[slot->-node]` migration markers
                };
                (lo..=hi).contains(&slot)
            });
            if serves {
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(i) = self.nodes.iter().position(|n| Some(n.port()) == port) {
                    return i;
                }
            }
        }
        panic!("no node serves slot {slot} (key {key:?})");
    }
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// A `redis-server` that speaks TLS only, with a certificate for `127.0.0.1` and
/// `localhost` signed by a fresh test CA (made with `openssl` in its directory).
/// Clients are not asked for certificates (`--tls-auth-clients no`).
pub struct TlsServer {
    server: RedisServer,
}

const CA_CONF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = acgs-cache test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

const SERVER_EXT: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
";

/// Writes ca.pem / ca.key (a CA) and server.pem / server.key (a leaf for
/// 127.0.0.1 and localhost signed by it) into `dir`.
fn make_certificates(dir: &Path) {
    fs::write(dir.join("ca.cnf"), CA_CONF).expect("write ca.cnf");
    fs::write(dir.join("server.ext"), SERVER_EXT).expect("write server.ext");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-config",
            "ca.cnf",
            "-extensions",
            "v3_ca",
        ],
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for step in steps {
        let args: Vec<String> = step.iter().map(|a| a.to_string()).collect();
        if let Err(e) = run_tool("openssl", &args, Some(dir), TOOL_TIMEOUT) {
            panic!("making the test certificates failed: {e}");
        }
    }
}

impl TlsServer {
    /// Makes the certificates, starts the server on a TLS port (no plain port),
    /// and waits until it accepts connections and answers `redis-cli --tls`.
    pub fn start() -> TlsServer {
        let server = RedisServer::launch(free_port, |port, dir| {
            make_certificates(dir);
            let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
            let leading = vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ];
            let extra = vec![
                "--tls-cert-file".into(),
                path("server.pem"),
                "--tls-key-file".into(),
                path("server.key"),
                "--tls-ca-cert-file".into(),
                path("ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            let cli = vec!["--tls".into(), "--cacert".into(), path("ca.pem")];
            (leading, extra, cli)
        });
        // The identity check in spawn() tolerated a failing INFO; here it must work.
        if let Err(e) = server.try_cli(&["ping"]) {
            panic!("TLS redis-server does not answer redis-cli --tls: {e}");
        }
        TlsServer { server }
    }

    /// `rediss://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.server.port())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The test CA's certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(self.ca_path()).expect("read ca.pem")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.server.dir().join("ca.pem")
    }

    /// The server itself (`cli` goes through TLS, `stop`, `restart`, …).
    pub fn server(&self) -> &RedisServer {
        &self.server
    }

    pub fn server_mut(&mut self) -> &mut RedisServer {
        &mut self.server
    }
}
