//! The cache's own runtime: one thread, named `acgs-cache`, running a
//! current-thread tokio runtime for the whole process.
//!
//! A cache outlives the runtimes that call it: a `static` cache is used by
//! every `#[tokio::test]` of a test binary, each on a runtime of its own
//! that ends with the test. A task spawned on a caller's runtime (the log
//! tailer, the fleet and metrics publishers, the probe of an open circuit, a
//! lock release) would die with it, and with it the instance's knowledge of
//! the invalidation log. They run here instead, where nothing ends them but
//! the cache they serve being dropped.
//!
//! Calls themselves never hop here: a request sent from another thread
//! costs 1.1-2.4x the latency of one sent by the caller's own runtime
//! (measured), so each calling runtime has connections of its own (see
//! `l2.rs`).

use std::future::Future;
use std::sync::LazyLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

static RUNTIME: LazyLock<Handle> = LazyLock::new(start);

fn start() -> Handle {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let started = std::thread::Builder::new()
        .name("acgs-cache".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = sender.send(Ok(runtime.handle().clone()));
                    // Runs the spawned tasks for the life of the process.
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = sender.send(Err(e));
                }
            }
        });
    let handle = started
        .map_err(|e| e.to_string())
        .and_then(|_| match receiver.recv() {
            Ok(Ok(handle)) => Ok(handle),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        });
    // Without a thread or a runtime the process cannot run tokio at all.
    handle.unwrap_or_else(|e| panic!("acgs-cache could not start its background thread: {e}"))
}

/// Runs `task` on the cache's runtime, whatever runtime (if any) the caller is on.
pub(crate) fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.spawn(task)
}

/// The cache's own runtime.
#[cfg(feature = "redis")]
pub(crate) fn handle() -> Handle {
    RUNTIME.clone()
}

/// The id of the cache's own runtime.
#[cfg(feature = "redis")]
pub(crate) fn runtime_id() -> tokio::runtime::Id {
    RUNTIME.id()
}

/// Runs `work` on the cache's runtime and waits for it: what it creates
/// (a connection, whose driver task is spawned where it is made) lives as
/// long as the process, not as long as the caller's runtime.
///
/// # Errors
///
/// `Error::Unavailable` if the task was cancelled (never in practice: the
/// runtime runs for the life of the process).
#[cfg(feature = "redis")]
pub(crate) async fn run<F, T>(work: F) -> Result<T, crate::error::Error>
where
    F: Future<Output = Result<T, crate::error::Error>> + Send + 'static,
    T: Send + 'static,
{
    spawn(work)
        .await
        .unwrap_or(Err(crate::error::Error::Unavailable(
            crate::error::Unavailable::ShuttingDown,
        )))
}
