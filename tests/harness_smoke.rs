//! The test harness itself: every topology comes up, does what the tests rely
//! on, and leaves no process behind. Uses `redis-cli` only.

use acgs_cache_harness as support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::{redis_cli, ClusterSetup, RedisServer, SentinelSetup, TlsServer};

/// After the topology is dropped, none of its processes may be left.
fn assert_gone(pids: &[u32]) {
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "redis-server {pid} outlived its handle"
        );
    }
}

#[test]
fn standalone_extra_args_survive_restart() {
    let started = Instant::now();
    let mut server = RedisServer::start_with(&["--requirepass", "pw"]);
    println!(
        "standalone with --requirepass: up in {:?}",
        started.elapsed()
    );
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.cli(&["ping"]).trim(),
        "PONG",
        "cli() uses --requirepass"
    );
    let refused = redis_cli(server.port(), &["ping"]).unwrap_err();
    assert!(refused.contains("NOAUTH"), "{refused}");
    let first_pid = server.pid().expect("running");

    server.restart();
    let second_pid = server.pid().expect("running again");
    assert_ne!(first_pid, second_pid);
    let refused = redis_cli(server.port(), &["ping"]).unwrap_err();
    assert!(
        refused.contains("NOAUTH"),
        "restart kept --requirepass: {refused}"
    );
    assert_eq!(server.cli_as("default", "pw", &["ping"]).trim(), "PONG");

    server.stop();
    assert!(server.pid().is_none());
    drop(server);
    assert_gone(&[first_pid, second_pid]);
}

#[test]
fn acl_user_is_confined_to_its_keys() {
    let server = RedisServer::start();
    server.acl_setuser(&["app", "on", ">secret", "~acgs:*", "+@all"]);
    assert_eq!(
        server
            .cli_as("app", "secret", &["set", "acgs:x", "1"])
            .trim(),
        "OK"
    );
    let refused = server
        .try_cli_as("app", "secret", &["set", "other", "1"])
        .unwrap_err();
    assert!(refused.contains("NOPERM"), "{refused}");
    assert_eq!(server.cli(&["get", "acgs:x"]).trim(), "1");
    assert_eq!(server.cli(&["exists", "other"]).trim(), "0");
}

#[test]
fn sentinel_fails_over_after_the_master_dies() {
    let started = Instant::now();
    let mut setup = SentinelSetup::start();
    println!("sentinel setup: up in {:?}", started.elapsed());
    let sentinel_port = setup.sentinel_ports()[0];
    assert_eq!(
        setup.url(),
        format!("redis+sentinel://127.0.0.1:{sentinel_port}/mymaster")
    );
    let pids: Vec<u32> = setup
        .servers()
        .iter()
        .chain([setup.sentinel()])
        .filter_map(RedisServer::pid)
        .collect();
    assert_eq!(pids.len(), 3);

    let old = setup.master_port();
    redis_cli(old, &["set", "acgs:before", "1"]).unwrap();
    setup.wait_for_replicas(Duration::from_secs(15));
    let killed_at = Instant::now();
    assert_eq!(setup.kill_master(), old);
    let new = setup
        .wait_for_failover(old, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "no failover; sentinel log:\n{}",
                setup.sentinel().log_tail(30)
            )
        });
    println!(
        "sentinel failover: master {old} -> {new} in {:?}",
        killed_at.elapsed()
    );
    assert_ne!(new, old);
    assert_eq!(setup.master_port(), new);
    let role = redis_cli(new, &["role"]).unwrap();
    assert_eq!(role.lines().next(), Some("master"), "{role}");
    // The replica had the data; as the new master it accepts writes.
    assert_eq!(redis_cli(new, &["get", "acgs:before"]).unwrap().trim(), "1");
    assert_eq!(
        redis_cli(new, &["set", "acgs:after", "1"]).unwrap().trim(),
        "OK"
    );

    drop(setup);
    assert_gone(&pids);
}

#[test]
fn cluster_covers_every_slot_and_spreads_keys() {
    let started = Instant::now();
    let mut cluster = ClusterSetup::start(3);
    println!("cluster of 3: up in {:?}", started.elapsed());
    let ports = cluster.ports();
    assert_eq!(ports.len(), 3);
    assert!(ports.iter().all(|p| *p < 50_000 && *p != 6379));
    assert_eq!(
        cluster.url(),
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1], ports[2]
        )
    );
    let info = cluster.node(0).cli(&["cluster", "info"]);
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    let pids: Vec<u32> = (0..3).filter_map(|i| cluster.node(i).pid()).collect();

    for n in 0..30 {
        let key = format!("acgs:k{{{n}}}");
        let reply = redis_cli(ports[0], &["-c", "set", &key, "v"]).unwrap();
        assert_eq!(reply.trim(), "OK");
        let owner = cluster.node_of_key(&key);
        assert!(cluster.keys_on(owner, &key).contains(&key));
    }
    let sizes: Vec<u64> = (0..3).map(|i| cluster.dbsize(i)).collect();
    println!("keys per node: {sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), 30);
    assert!(sizes.iter().all(|s| *s > 0), "{sizes:?}");
    let on_node0 = cluster.keys_on(0, "acgs:*");
    assert_eq!(on_node0.len() as u64, sizes[0]);

    // One master dies: the others keep serving their own slots.
    let killed_at = Instant::now();
    cluster.kill(1);
    cluster.wait_until_marked_failed(1, Duration::from_secs(15));
    println!("node 1 flagged fail in {:?}", killed_at.elapsed());
    let key = &on_node0[0];
    assert_eq!(redis_cli(ports[0], &["get", key]).unwrap().trim(), "v");

    drop(cluster);
    assert_gone(&pids);
}

#[test]
fn tls_server_answers_redis_cli_with_the_test_ca() {
    let started = Instant::now();
    let server = TlsServer::start();
    println!(
        "TLS server (with certificates): up in {:?}",
        started.elapsed()
    );
    let port = server.port();
    assert_eq!(server.url(), format!("rediss://127.0.0.1:{port}"));
    assert!(server.ca_pem().starts_with(b"-----BEGIN CERTIFICATE-----"));

    let ping = |extra: &[&str]| {
        let mut args: Vec<String> = ["-e", "-h", "127.0.0.1", "-p", &port.to_string()]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push("ping".into());
        std::process::Command::new("redis-cli")
            .args(&args)
            .output()
            .unwrap()
    };
    let ca = server.ca_path();
    let tls = ping(&["--tls", "--cacert", ca.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&tls.stdout).trim(), "PONG");
    // Through the name in the certificate, too.
    let by_name = std::process::Command::new("redis-cli")
        .args(["-e", "-h", "localhost", "-p", &port.to_string(), "--tls"])
        .args(["--cacert", ca.to_str().unwrap(), "ping"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&by_name.stdout).trim(), "PONG");
    // Plain text does not get an answer.
    assert!(!ping(&[]).status.success());

    // A proper leaf for 127.0.0.1 and localhost, signed by the CA.
    let dir = server.server().dir();
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(&ca)
        .arg(dir.join("server.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let text = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,basicConstraints",
            "-in",
        ])
        .arg(dir.join("server.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(text.contains("DNS:localhost"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");

    let pid = server.server().pid().unwrap();
    drop(server);
    assert_gone(&[pid]);
}

#[test]
fn a_panicking_test_leaves_no_process_behind() {
    let pids = std::sync::Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(|| {
        let setup = SentinelSetup::start();
        let server = RedisServer::start();
        let started = setup.servers().iter().chain([setup.sentinel(), &server]);
        pids.lock()
            .unwrap()
            .extend(started.filter_map(RedisServer::pid));
        panic!("the test fails while its servers run");
    });
    assert!(outcome.is_err());
    let pids = pids.into_inner().unwrap();
    assert_eq!(pids.len(), 4);
    assert_gone(&pids);
}
