//! [`Conn`]: what the server knows of one connection — the phase it is in and since when —
//! shared by its task, its I/O, its requests and the connection table, and the verdict of its
//! timeouts.
//!
//! Phases are updated with relaxed atomics on the request path (three stores per request, no
//! lock, no timer): the connection's task reads them when its one timer fires, and the table
//! when it looks for a connection to shed.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::settings::Settings;

/// Milliseconds since the server started: timestamps that fit in an atomic.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    start: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn instant(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }
}

/// Where a connection is when no request is in progress on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Accepted, or bytes of the next request have arrived: the head is being read.
    ReadingHead = 0,
    /// A keep-alive connection waiting for its next request.
    Idle = 1,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// The request head did not arrive in full within the header read timeout.
    HeaderReadTimeout,
    /// No next request within the keep-alive timeout.
    KeepAliveTimeout,
    /// The client accepted no byte of a response for the send timeout.
    SendTimeout,
    /// Shed at the connection limit to make room for a new client.
    Shed,
}

/// What the connection's timer decides when it fires.
pub(super) enum Verdict {
    Close(CloseReason),
    /// Look again at this time.
    CheckAt(Instant),
}

/// The shortest interval between two looks of a connection's timer.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// One connection's shared state.
#[derive(Debug)]
pub(super) struct Conn {
    clock: Clock,
    phase: AtomicU8,
    /// When the phase began (ms on the clock).
    since: AtomicU64,
    /// Requests in progress: at most one over HTTP/1.1, any number of streams over HTTP/2.
    busy: AtomicU32,
    /// Requests begun on this connection.
    requests: AtomicU64,
    /// 1 + when a write first returned `Pending` without a write succeeding since; 0 if none.
    write_blocked_since: AtomicU64,
    /// Chosen to be shed by the table; its task closes it.
    shed: AtomicBool,
    shed_notice: Notify,
    /// Close with a reset (`SO_LINGER` 0), freeing the socket's buffers at once.
    reset_on_close: AtomicBool,
}

impl Conn {
    pub(super) fn new(clock: Clock) -> Self {
        Conn {
            clock,
            phase: AtomicU8::new(Phase::ReadingHead as u8),
            since: AtomicU64::new(clock.now_ms()),
            busy: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            shed: AtomicBool::new(false),
            shed_notice: Notify::new(),
            reset_on_close: AtomicBool::new(false),
        }
    }

    /// Bytes were read: on an idle connection, the next request head has begun.
    pub(super) fn read_some(&self) {
        if self.busy.load(Relaxed) == 0 && self.phase.load(Relaxed) == Phase::Idle as u8 {
            self.since.store(self.clock.now_ms(), Relaxed);
            self.phase.store(Phase::ReadingHead as u8, Relaxed);
        }
    }

    /// A request head was read; returns how many requests this connection has begun.
    pub(super) fn request_started(&self) -> u64 {
        self.busy.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed) + 1
    }

    /// A response was written in full, or abandoned.
    pub(super) fn request_ended(&self) {
        if self.busy.fetch_sub(1, Relaxed) == 1 {
            self.since.store(self.clock.now_ms(), Relaxed);
            self.phase.store(Phase::Idle as u8, Relaxed);
        }
    }

    /// A write could not proceed: the client is not reading.
    pub(super) fn write_blocked(&self) {
        if self.write_blocked_since.load(Relaxed) == 0 {
            self.write_blocked_since
                .store(self.clock.now_ms() + 1, Relaxed);
        }
    }

    /// A write succeeded.
    pub(super) fn wrote(&self) {
        if self.write_blocked_since.load(Relaxed) != 0 {
            self.write_blocked_since.store(0, Relaxed);
        }
    }

    /// The phase, and since when (ms), if no request is in progress and it is not shed yet.
    pub(super) fn sheddable(&self) -> Option<(Phase, u64)> {
        if self.busy.load(Relaxed) != 0 || self.shed.load(Relaxed) {
            return None;
        }
        let phase = if self.phase.load(Relaxed) == Phase::Idle as u8 {
            Phase::Idle
        } else {
            Phase::ReadingHead
        };
        Some((phase, self.since.load(Relaxed)))
    }

    /// Marks the connection to be shed and wakes its task; `false` if it already was.
    pub(super) fn shed(&self) -> bool {
        if self.shed.swap(true, Relaxed) {
            return false;
        }
        self.reset_on_close.store(true, Relaxed);
        self.shed_notice.notify_one();
        true
    }

    pub(super) fn is_shed(&self) -> bool {
        self.shed.load(Relaxed)
    }

    /// Resolves once the connection is chosen to be shed.
    pub(super) async fn shed_requested(&self) {
        while !self.is_shed() {
            self.shed_notice.notified().await;
        }
    }

    pub(super) fn reset_on_close(&self) -> bool {
        self.reset_on_close.load(Relaxed)
    }

    /// The timer's look at the connection, at `now`.
    pub(super) fn verdict(&self, settings: &Settings) -> Verdict {
        let now = self.clock.now_ms();
        let ms = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let interval = settings
            .header_read_timeout
            .min(settings.keep_alive_timeout)
            .min(settings.send_timeout)
            .max(MIN_CHECK_INTERVAL);
        let mut next = now.saturating_add(ms(interval));

        let blocked = self.write_blocked_since.load(Relaxed);
        if blocked != 0 {
            let due = (blocked - 1).saturating_add(ms(settings.send_timeout));
            if now >= due {
                self.reset_on_close.store(true, Relaxed);
                return Verdict::Close(CloseReason::SendTimeout);
            }
            next = next.min(due);
        }
        if self.busy.load(Relaxed) == 0 {
            let since = self.since.load(Relaxed);
            let (timeout, reason) = if self.phase.load(Relaxed) == Phase::Idle as u8 {
                (settings.keep_alive_timeout, CloseReason::KeepAliveTimeout)
            } else {
                (settings.header_read_timeout, CloseReason::HeaderReadTimeout)
            };
            let due = since.saturating_add(ms(timeout));
            if now >= due {
                return Verdict::Close(reason);
            }
            next = next.min(due);
        }
        Verdict::CheckAt(self.clock.instant(next))
    }
}
