//! Several OS processes sharing one Redis: concurrent reads, writes and
//! invalidations, and a process killed and restarted across invalidations.
//! The processes are the `coherence` example (built by `cargo test` with the
//! other examples), which checks every read against the truth.

use acgs_cache_harness as support;

use std::process::Command;

use support::{example, field, RedisServer};

#[test]
fn processes_never_serve_a_value_older_than_an_invalidation_they_heard() {
    let server = RedisServer::start();
    let output = Command::new(example("coherence"))
        .args([
            "--redis-url",
            &server.url(),
            "--instances",
            "3",
            "--seconds",
            "4",
            "--restart-one",
        ])
        .env_remove("ACGS_CACHE_REDIS_URL")
        .output()
        .expect("run the coherence example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("coherence: reads="))
        .unwrap_or_else(|| panic!("no summary line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    println!("{stdout}");
    assert_eq!(field(summary, "stale"), 0, "{stdout}\n{stderr}");
    assert_eq!(field(summary, "writer_stale"), 0, "{stdout}\n{stderr}");
    assert!(field(summary, "writer_reads") > 1_000, "{summary}");
    assert!(field(summary, "reads") > 1_000, "{summary}");
    assert!(field(summary, "invalidations") > 30, "{summary}");
    // Three workers reported, one of them restarted half-way.
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("worker:"))
            .count(),
        3,
        "{stdout}"
    );
    assert!(output.status.success());
}

/// The same run with the invalidation check turned off finds stale reads:
/// the check above can fail.
#[test]
fn without_the_check_the_same_run_finds_stale_reads() {
    let server = RedisServer::start();
    let output = Command::new(example("coherence"))
        .args([
            "--redis-url",
            &server.url(),
            "--instances",
            "2",
            "--seconds",
            "3",
            "--unchecked",
        ])
        .env_remove("ACGS_CACHE_REDIS_URL")
        .output()
        .expect("run the coherence example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("coherence: reads="))
        .unwrap_or_else(|| {
            panic!(
                "no summary line\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(
        field(summary, "stale") + field(summary, "writer_stale") > 0,
        "{summary}"
    );
}

/// A reader stopped for 2 s and a reader whose network drops everything
/// for 3 s (its connections left open) serve nothing more than their lease
/// (1 s) after its invalidation returned; with the lease switched off
/// (`--unprotected`), the same faults serve stale values past it.
#[test]
fn paused_and_partitioned_readers_keep_the_staleness_bound() {
    let run = |control: Option<&str>| {
        let server = RedisServer::start();
        let mut command = Command::new(example("coherence"));
        command
            .args([
                "--redis-url",
                &server.url(),
                "--instances",
                "1",
                "--seconds",
                "6",
                "--paused",
                "--partitioned",
            ])
            .env_remove("ACGS_CACHE_REDIS_URL");
        command.args(control);
        let output = command.output().expect("run the coherence example");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("coherence: reads="))
            .unwrap_or_else(|| panic!("no summary line\n{stdout}\n{stderr}"))
            .to_owned();
        println!("{stdout}");
        (summary, output.status.success())
    };
    let (protected, ok) = run(None);
    for name in [
        "stale",
        "stale_past_delta",
        "paused_stale_past_delta",
        "partitioned_stale_past_delta",
        "writer_stale",
    ] {
        assert_eq!(field(&protected, name), 0, "{name}: {protected}");
    }
    assert!(
        field(&protected, "max_stale_lag_ms") <= 1_000,
        "{protected}"
    );
    assert!(ok, "{protected}");
    let (unprotected, _) = run(Some("--unprotected"));
    assert!(
        field(&unprotected, "partitioned_stale_past_delta") > 0,
        "{unprotected}"
    );
}
