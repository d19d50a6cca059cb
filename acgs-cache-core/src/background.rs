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

/// The cache's runtime, or why its thread could not be started.
static RUNTIME: LazyLock<Result<Handle, String>> = LazyLock::new(start);

fn start() -> Result<Handle, String> {
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
    if let Err(e) = &handle {
        // Out of threads or memory: tasks then run on the caller's runtime
        // (and end with it), or not at all outside one.
        tracing::error!(target: "acgs_cache", error = %e, "could not start the cache's background thread; background tasks run on the calling runtime");
    }
    handle
}

/// The cache's runtime, else the caller's (see [`start`]), else none.
fn runtime() -> Option<Handle> {
    match &*RUNTIME {
        Ok(handle) => Some(handle.clone()),
        Err(_) => Handle::try_current().ok(),
    }
}

/// Runs `task` on the cache's runtime, whatever runtime (if any) the caller
/// is on; `None` (the task dropped) only when the cache's thread could not
/// start and the caller is on no runtime.
pub(crate) fn spawn<F>(task: F) -> Option<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().map(|runtime| runtime.spawn(task))
}

/// The cache's own runtime (see [`spawn`] for `None`).
#[cfg(feature = "redis")]
pub(crate) fn handle() -> Option<Handle> {
    runtime()
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
    let shutting_down = || {
        Err(crate::error::Error::Unavailable(
            crate::error::Unavailable::ShuttingDown,
        ))
    };
    match spawn(work) {
        Some(task) => task.await.unwrap_or_else(|_| shutting_down()),
        None => shutting_down(),
    }
}
