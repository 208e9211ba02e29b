//! [`ConnectionStats`]: the server's connection counters, and a log throttle so that a flood
//! (of failed accepts, of shed connections) writes one line per interval, not one per event.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::conn::CloseReason;

/// A snapshot of a server's connection counters, from [`ConnectionStats::snapshot`]. Counters
/// count since the server started; `open` is the number of connections now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ConnectionMetrics {
    /// Connections now open (accepted, not closed yet).
    pub open: u64,
    /// The connection limit in force.
    pub max_connections: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections that spoke HTTP/2 (prior knowledge).
    pub http2: u64,
    /// Closed because a request head did not arrive within the header read timeout.
    pub header_read_timeouts: u64,
    /// Closed because no next request came within the keep-alive timeout.
    pub keep_alive_timeouts: u64,
    /// Closed because the client accepted no byte of a response within the send timeout.
    pub send_timeouts: u64,
    /// Shed at the connection limit while still reading their request head.
    pub shed_reading_head: u64,
    /// Shed at the connection limit while idle between requests.
    pub shed_idle: u64,
    /// Times the server stopped accepting for a moment because every connection at the limit
    /// had a request in progress (new clients wait in the listen backlog).
    pub limit_reached: u64,
    /// `accept` calls that failed for a reason other than the peer's (out of file descriptors,
    /// out of memory).
    pub accept_errors: u64,
}

/// A handle on a server's connection counters (from [`Serve::connection_stats`]); a cheap
/// `Clone` of an `Arc`, usable while and after the server runs.
///
/// [`Serve::connection_stats`]: super::Serve::connection_stats
#[derive(Clone, Default)]
pub struct ConnectionStats {
    counters: Arc<Counters>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) open: AtomicU64,
    pub(super) max_connections: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) http2: AtomicU64,
    pub(super) header_read_timeouts: AtomicU64,
    pub(super) keep_alive_timeouts: AtomicU64,
    pub(super) send_timeouts: AtomicU64,
    pub(super) shed_reading_head: AtomicU64,
    pub(super) shed_idle: AtomicU64,
    pub(super) limit_reached: AtomicU64,
    pub(super) accept_errors: AtomicU64,
}

impl ConnectionStats {
    /// The counters now.
    pub fn snapshot(&self) -> ConnectionMetrics {
        let c = &self.counters;
        ConnectionMetrics {
            open: c.open.load(Relaxed),
            max_connections: c.max_connections.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            http2: c.http2.load(Relaxed),
            header_read_timeouts: c.header_read_timeouts.load(Relaxed),
            keep_alive_timeouts: c.keep_alive_timeouts.load(Relaxed),
            send_timeouts: c.send_timeouts.load(Relaxed),
            shed_reading_head: c.shed_reading_head.load(Relaxed),
            shed_idle: c.shed_idle.load(Relaxed),
            limit_reached: c.limit_reached.load(Relaxed),
            accept_errors: c.accept_errors.load(Relaxed),
        }
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Counters {
    /// Counts a connection the server closed.
    pub(super) fn closed(&self, reason: CloseReason) {
        let (counter, kind) = match reason {
            CloseReason::HeaderReadTimeout => (&self.header_read_timeouts, "header_read"),
            CloseReason::KeepAliveTimeout => (&self.keep_alive_timeouts, "keep_alive"),
            CloseReason::SendTimeout => (&self.send_timeouts, "send"),
            // Counted by phase when chosen.
            CloseReason::Shed => return,
        };
        counter.fetch_add(1, Relaxed);
        crate::telemetry::connection_timeout(kind);
    }
}

impl fmt::Debug for ConnectionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// Lets one log line through per interval and counts the ones held back.
#[derive(Debug)]
pub(super) struct LogThrottle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub(super) fn new(every: Duration) -> Self {
        LogThrottle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Calls `log` with the number of events held back since the last line, if a line is due.
    pub(super) fn log(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let due = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let (last, held_back) = &mut *state;
            if last.is_some_and(|last| now.duration_since(last) < self.every) {
                *held_back += 1;
                None
            } else {
                *last = Some(now);
                Some(std::mem::take(held_back))
            }
        };
        if let Some(held_back) = due {
            log(held_back);
        }
    }
}
