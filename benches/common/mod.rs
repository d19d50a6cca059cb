//! What the benchmarks (and `examples/perf_report.rs`) share: the value every
//! one caches, so their figures compare alike, and the way concurrent load
//! is driven.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A policy decision, about 60 bytes encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub policy_id: u64,
    pub subject: String,
    pub allow: bool,
    pub reason: String,
}

pub fn decision(policy_id: u64, subject: &str) -> Decision {
    Decision {
        policy_id,
        subject: subject.to_owned(),
        allow: true,
        reason: format!("policy {policy_id} permits {subject}"),
    }
}

/// Runs `n` operations spread over `tasks` tasks on `rt` (each task gets its
/// own run of operation numbers, distinct across tasks); returns the elapsed
/// time.
#[allow(dead_code)] // not every bench drives concurrent load
pub fn spread<F, Fut>(rt: &tokio::runtime::Runtime, n: u64, tasks: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future + Send,
{
    let op = Arc::new(op);
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let op = op.clone();
                let share = n / tasks + u64::from(t < n % tasks);
                tokio::spawn(async move {
                    for i in 0..share {
                        std::hint::black_box(op(t * share + i).await);
                        if i % 64 == 63 {
                            tokio::task::yield_now().await; // L1 hits never yield on their own
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("bench task");
        }
        start.elapsed()
    })
}

/// A runtime for the measurements: current-thread for one thread (no
/// scheduler hand-offs in the figure), multi-thread otherwise.
#[allow(dead_code)] // not every bench builds its own
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build().expect("runtime")
}
