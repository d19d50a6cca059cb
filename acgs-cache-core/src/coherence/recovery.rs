//! Invalidations that survive an outage (FusionCache's auto-recovery).
//!
//! When `invalidate` cannot reach Redis it returns the error and applies the
//! invalidation to this instance; the record is also kept here and sent,
//! in order, once the instance hears the log again (the tailer replays the
//! queue after every catch-up). The queue is deduplicated (an invalidation
//! sent twice would change nothing) and bounded: past
//! [`MAX_QUEUED`] records it is replaced by one record that invalidates
//! everything before it, on every instance — more recomputation, never a
//! lost invalidation.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::coherence::state::Record;
use crate::measure::counter::Counter;

/// The most invalidations kept while Redis cannot be reached.
pub(crate) const MAX_QUEUED: usize = 10_000;

/// One record waiting to be sent, with the L2 key its tombstone covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) record: Record,
    pub(crate) entry_key: Option<String>,
}

/// The queue and its counters.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    queue: Mutex<VecDeque<Pending>>,
    /// Records sent after Redis answered again.
    pub(crate) replayed: Counter,
    /// Records folded into an everything-before-it record by an overflow.
    pub(crate) dropped: Counter,
}

impl Recovery {
    /// Keeps `record` to send later (once: a duplicate is not kept twice).
    pub(crate) fn push(&self, record: Record, entry_key: Option<String>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let pending = Pending { record, entry_key };
        if queue.contains(&pending) {
            return;
        }
        if queue.len() >= MAX_QUEUED {
            for _ in 0..queue.len() {
                self.dropped.inc();
            }
            queue.clear();
            queue.push_back(Pending {
                record: Record::All,
                entry_key: None,
            });
        }
        queue.push_back(pending);
    }

    /// Records waiting to be sent.
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn front(&self) -> Option<Pending> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .cloned()
    }

    pub(crate) fn pop(&self, sent: &Pending) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.front() == Some(sent) {
            queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_deduplicated_and_bounded() {
        let recovery = Recovery::default();
        recovery.push(Record::Name("a.b".into()), None);
        recovery.push(Record::Name("a.b".into()), None);
        assert_eq!(recovery.len(), 1);
        for i in 0..MAX_QUEUED + 5 {
            recovery.push(Record::Name(format!("n.{i}")), None);
        }
        assert!(recovery.len() <= MAX_QUEUED);
        assert!(recovery.dropped.get() > 0);
        assert_eq!(
            recovery.front().map(|p| p.record),
            Some(Record::All),
            "an overflow leaves one record that covers what was dropped"
        );
    }
}
