//! Per-worker counters, for a live summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Counters of one worker's trigger, updated as batches run. Records are
/// counted per delivery: a record retried three times is received three
/// times. A schedule counts each tick run as one record.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    received: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    given_up: AtomicU64,
    invocations: AtomicU64,
    busy_ns: AtomicU64,
    skipped: AtomicU64,
    /// The next due time of a schedule, in ms since the Unix epoch; 0 when
    /// there is none.
    next_due_ms: AtomicU64,
}

/// A copy of a worker's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// Records (messages or change records) handed to the worker.
    pub received: u64,
    /// Records the worker processed successfully.
    pub succeeded: u64,
    /// Records the worker failed (reported, or its invocation failed).
    pub failed: u64,
    /// Records in the invocation running now.
    pub in_flight: u64,
    /// Change records a stream follower gave up on after its retries (sent
    /// to the `on_failure` queue when there is one).
    pub given_up: u64,
    /// Invocations run (each a batch).
    pub invocations: u64,
    /// Time spent in invocations, summed over concurrent ones.
    pub busy: Duration,
    /// Schedule ticks skipped because the worker's previous run was still
    /// going when they were due (no overlapping runs).
    pub skipped: u64,
    /// When a schedule's next tick is due, in milliseconds since the Unix
    /// epoch (`None` for other triggers, or a schedule with no due time
    /// left).
    pub next_due_ms: Option<u64>,
}

impl CounterSnapshot {
    /// [`CounterSnapshot::next_due_ms`] as RFC 3339 (UTC, seconds).
    pub fn next_due(&self) -> Option<String> {
        let ms = i64::try_from(self.next_due_ms?).ok()?;
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)?;
        Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

impl WorkerCounters {
    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            received: self.received.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
            invocations: self.invocations.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            skipped: self.skipped.load(Ordering::Relaxed),
            next_due_ms: match self.next_due_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(ms),
            },
        }
    }

    /// Counts `n` records handed to the worker; they are in flight until the
    /// returned guard drops.
    pub(crate) fn start(&self, n: usize) -> InFlight<'_> {
        let n = as_u64(n);
        self.received.fetch_add(n, Ordering::Relaxed);
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        InFlight {
            counters: self,
            n,
            since: Instant::now(),
        }
    }

    pub(crate) fn finished(&self, succeeded: usize, failed: usize) {
        self.succeeded
            .fetch_add(as_u64(succeeded), Ordering::Relaxed);
        self.failed.fetch_add(as_u64(failed), Ordering::Relaxed);
    }

    pub(crate) fn gave_up(&self, n: usize) {
        self.given_up.fetch_add(as_u64(n), Ordering::Relaxed);
    }

    pub(crate) fn skipped(&self, n: usize) {
        self.skipped.fetch_add(as_u64(n), Ordering::Relaxed);
    }

    pub(crate) fn set_next_due_ms(&self, ms: Option<u64>) {
        // A due time at the epoch itself cannot happen: 0 means none.
        self.next_due_ms.store(ms.unwrap_or(0), Ordering::Relaxed);
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Records of one invocation, in flight until dropped.
pub(crate) struct InFlight<'a> {
    counters: &'a WorkerCounters,
    n: u64,
    since: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(self.n, Ordering::Relaxed);
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
}
