//! Entry reads batched per lane: the reads that arrive while the lane's
//! previous batch is on the wire go out together, as one pipeline.
//!
//! A multiplexed connection already pipelines, but its driver writes as soon
//! as it holds anything: under many concurrent callers it sends small
//! batches, each costing a `writev` here and a `read` plus a `write` in
//! Redis. With 64 callers, raw redis-rs `GET`s measured one system call per
//! read in all (client and server), ours two. A batcher that keeps a few
//! batches in flight and sends everything that queued meanwhile in one
//! pipeline spends those calls on many reads. A read on an idle lane (no
//! read or batch on the wire) is sent at once by its caller: a lone read
//! pays no hop through the batcher (that hop cost a sequential L2 hit a
//! fifth of its time, measured), and nothing ever waits for a batch to fill.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::tiers::connection::RedisConnection;

/// Reads in one pipeline at most.
const MAX_BATCH: usize = 256;
/// Batches on the wire at once, per lane.
const IN_FLIGHT: usize = 2;

/// `GETRANGE key 0 end`: the first `end + 1` bytes of an entry, the one
/// command every read path here sends. Sized up front: grown argument by
/// argument, building a batch's commands took a tenth of the client's time
/// under 64 callers (a `realloc` per argument, measured with `perf`).
pub(crate) fn head_read(key: &str, end: usize) -> redis::Cmd {
    const NAME: &str = "GETRANGE";
    // The name, the key, "0" and at most 20 digits.
    let mut read = redis::Cmd::with_capacity(4, NAME.len() + key.len() + 1 + 20);
    read.arg(NAME).arg(key).arg(0).arg(end);
    read
}

/// One read waiting for its batch: its command, built by the caller (the
/// batcher only moves it into the pipeline).
struct PendingRead {
    read: redis::Cmd,
    reply: oneshot::Sender<redis::RedisResult<Vec<u8>>>,
}

/// The sending side of a lane's batcher; the batcher task ends when the
/// lane (and with it this) is dropped.
pub(crate) struct ReadBatcher {
    queue: mpsc::UnboundedSender<PendingRead>,
    connection: RedisConnection,
    /// Reads sent directly plus batches on the wire.
    busy: Arc<AtomicUsize>,
}

/// Takes one unit of `busy` back when dropped (also when the read is
/// cancelled).
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ReadBatcher {
    /// Starts the batcher on the calling runtime, the one whose task drives
    /// `connection`.
    pub(crate) fn start(connection: RedisConnection) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let busy = Arc::new(AtomicUsize::new(0));
        tokio::spawn(send_batches(connection.clone(), pending, Arc::clone(&busy)));
        ReadBatcher {
            queue,
            connection,
            busy,
        }
    }

    /// `GETRANGE key 0 end`: sent at once when the lane is idle, else in the
    /// next batch; `None` when the batcher has ended (its runtime shut down).
    pub(crate) async fn read(&self, key: &str, end: usize) -> Option<redis::RedisResult<Vec<u8>>> {
        if self.busy.fetch_add(1, Ordering::AcqRel) == 0 {
            let _busy = Busy(&self.busy);
            let mut connection = self.connection.clone();
            return Some(head_read(key, end).query_async(&mut connection).await);
        }
        self.busy.fetch_sub(1, Ordering::AcqRel);
        let (reply, answer) = oneshot::channel();
        let pending = PendingRead {
            read: head_read(key, end),
            reply,
        };
        self.queue.send(pending).ok()?;
        answer.await.ok()
    }
}

/// Sends what queued as pipelines, at most [`IN_FLIGHT`] at once, until
/// every sender is gone and the queue is empty.
async fn send_batches(
    connection: RedisConnection,
    mut pending: mpsc::UnboundedReceiver<PendingRead>,
    busy: Arc<AtomicUsize>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            // Answers first: a finished batch makes room for the next.
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            batch = next_batch(&mut pending), if open && in_flight.len() < IN_FLIGHT => match batch {
                Some(batch) => {
                    busy.fetch_add(1, Ordering::AcqRel);
                    let busy = Arc::clone(&busy);
                    let batch = send(connection.clone(), batch);
                    in_flight.push(async move {
                        let _busy = Busy(&busy);
                        batch.await;
                    });
                }
                None => open = false,
            },
            else => return,
        }
    }
}

/// Everything queued (up to [`MAX_BATCH`]), waiting for the first; `None`
/// once the queue is closed and empty.
async fn next_batch(
    pending: &mut mpsc::UnboundedReceiver<PendingRead>,
) -> Option<Vec<PendingRead>> {
    // Sized for what has queued already (one when the queue is empty).
    let mut batch = Vec::with_capacity(pending.len().clamp(1, MAX_BATCH));
    (pending.recv_many(&mut batch, MAX_BATCH).await > 0).then_some(batch)
}

/// Sends one batch and hands each read its answer (a batch's error to all).
async fn send(mut connection: RedisConnection, batch: Vec<PendingRead>) {
    let mut pipe = redis::Pipeline::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for PendingRead { read, reply } in batch {
        pipe.add_command(read);
        replies.push(reply);
    }
    match pipe.query_async::<Vec<Vec<u8>>>(&mut connection).await {
        Ok(values) => {
            // A reply short of values (never from Redis) drops the rest's
            // senders: those reads fail rather than wait.
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(Ok(value));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
