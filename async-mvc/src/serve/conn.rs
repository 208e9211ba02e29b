//! [`Conn`]: what the server knows of one connection — the phase it is in and since when —
//! shared by its task, its I/O, its requests and the connection table; the verdict of its
//! timeouts; and the signal with which the table asks its task to close it or to stop.
//!
//! The request path pays relaxed atomics only — no lock, no timer, no clock call: timestamps
//! come from a coarse [`Clock`] that the table's sweeper advances, and the sweeper, not a
//! timer per connection, applies the timeouts.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::task::AtomicWaker;
use tokio::time::Instant;

use super::settings::Settings;

/// Milliseconds since the server started, advanced by the sweeper every `resolution`: a
/// timestamp is one relaxed load.
#[derive(Debug)]
pub(super) struct Clock {
    start: Instant,
    now_ms: AtomicU64,
    resolution_ms: u64,
}

impl Clock {
    pub(super) fn new(resolution: Duration) -> Self {
        Clock {
            start: Instant::now(),
            now_ms: AtomicU64::new(0),
            resolution_ms: ms(resolution).max(1),
        }
    }

    /// Advances the clock to the real time.
    pub(super) fn tick(&self) -> u64 {
        let now = ms(self.start.elapsed());
        self.now_ms.store(now, Relaxed);
        now
    }

    /// A timestamp no earlier than the real time (the clock is behind by less than its
    /// resolution), so that a timeout measured from it never fires early.
    fn stamp(&self) -> u64 {
        self.now_ms.load(Relaxed) + self.resolution_ms
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
#[repr(u8)]
pub(super) enum CloseReason {
    /// The request head did not arrive in full within the header read timeout.
    HeaderReadTimeout = 1,
    /// No next request within the keep-alive timeout.
    KeepAliveTimeout = 2,
    /// The client accepted no byte of a response for the send timeout.
    SendTimeout = 3,
    /// Shed at the connection limit to make room for a new client.
    Shed = 4,
}

impl CloseReason {
    fn from_u8(value: u8) -> Option<CloseReason> {
        match value {
            1 => Some(CloseReason::HeaderReadTimeout),
            2 => Some(CloseReason::KeepAliveTimeout),
            3 => Some(CloseReason::SendTimeout),
            4 => Some(CloseReason::Shed),
            _ => None,
        }
    }
}

/// What the table asks of a connection's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// Close it now.
    Close(CloseReason),
    /// The server stops: finish the request in progress, then close.
    Stop,
}

/// One connection's shared state.
#[derive(Debug)]
pub(super) struct Conn {
    clock: Arc<Clock>,
    phase: AtomicU8,
    /// When the phase began (ms on the clock).
    since: AtomicU64,
    /// Requests in progress: at most one over HTTP/1.1, any number of streams over HTTP/2.
    busy: AtomicU32,
    /// Requests begun on this connection.
    requests: AtomicU64,
    /// 1 + when a write first returned `Pending` without a write succeeding since; 0 if none.
    write_blocked_since: AtomicU64,
    /// The [`CloseReason`] the table asked for, as `u8`; 0 for none.
    close: AtomicU8,
    /// The server stops.
    stopping: AtomicBool,
    /// The connection's task, woken when `close` or `stopping` is set.
    task: AtomicWaker,
}

impl Conn {
    pub(super) fn new(clock: Arc<Clock>, stopping: bool) -> Self {
        let since = clock.stamp();
        Conn {
            clock,
            phase: AtomicU8::new(Phase::ReadingHead as u8),
            since: AtomicU64::new(since),
            busy: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            close: AtomicU8::new(0),
            stopping: AtomicBool::new(stopping),
            task: AtomicWaker::new(),
        }
    }

    /// Bytes were read: on an idle connection, the next request head has begun.
    pub(super) fn read_some(&self) {
        if self.busy.load(Relaxed) == 0 && self.phase.load(Relaxed) == Phase::Idle as u8 {
            self.since.store(self.clock.stamp(), Relaxed);
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
            self.since.store(self.clock.stamp(), Relaxed);
            self.phase.store(Phase::Idle as u8, Relaxed);
        }
    }

    /// A write could not proceed: the client is not reading.
    pub(super) fn write_blocked(&self) {
        if self.write_blocked_since.load(Relaxed) == 0 {
            self.write_blocked_since
                .store(self.clock.stamp() + 1, Relaxed);
        }
    }

    /// A write succeeded.
    pub(super) fn wrote(&self) {
        if self.write_blocked_since.load(Relaxed) != 0 {
            self.write_blocked_since.store(0, Relaxed);
        }
    }

    /// The phase, and since when (ms), if no request is in progress and no close was asked.
    pub(super) fn sheddable(&self) -> Option<(Phase, u64)> {
        if self.busy.load(Relaxed) != 0 || self.close.load(Relaxed) != 0 {
            return None;
        }
        let phase = if self.phase.load(Relaxed) == Phase::Idle as u8 {
            Phase::Idle
        } else {
            Phase::ReadingHead
        };
        Some((phase, self.since.load(Relaxed)))
    }

    /// Asks the task to close the connection; `false` if a close was asked already.
    pub(super) fn request_close(&self, reason: CloseReason) -> bool {
        if self
            .close
            .compare_exchange(0, reason as u8, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        self.task.wake();
        true
    }

    /// Tells the task that the server stops.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Relaxed);
        self.task.wake();
    }

    /// Whether the server stops: responses from now on say `Connection: close`.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    pub(super) fn is_shed(&self) -> bool {
        self.close.load(Relaxed) == CloseReason::Shed as u8
    }

    /// Close with a reset (`SO_LINGER` 0), freeing the socket's buffers at once: a shed
    /// connection, or one whose client stopped reading.
    pub(super) fn reset_on_close(&self) -> bool {
        matches!(
            CloseReason::from_u8(self.close.load(Relaxed)),
            Some(CloseReason::Shed | CloseReason::SendTimeout)
        )
    }

    /// The close asked for, if any; else whether the server stops (once `stop_seen` is false).
    /// Registers the task's waker when nothing is to be done yet, unless `registered` is a
    /// waker that wakes the same task (a task's waker rarely changes: this saves a swap per
    /// poll).
    pub(super) fn poll_signal(
        &self,
        cx: &mut Context<'_>,
        stop_seen: bool,
        registered: &mut Option<Waker>,
    ) -> Poll<Signal> {
        let check = || {
            if let Some(reason) = CloseReason::from_u8(self.close.load(Relaxed)) {
                return Some(Signal::Close(reason));
            }
            (!stop_seen && self.stopping.load(Relaxed)).then_some(Signal::Stop)
        };
        if let Some(signal) = check() {
            return Poll::Ready(signal);
        }
        if registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.task.register(cx.waker());
        *registered = Some(cx.waker().clone());
        // Checked again after registering: a signal set in between is not missed.
        check().map_or(Poll::Pending, Poll::Ready)
    }

    /// The sweeper's look at the connection, at `now` (ms on the clock).
    pub(super) fn verdict(&self, settings: &Settings, now: u64) -> Option<CloseReason> {
        let blocked = self.write_blocked_since.load(Relaxed);
        if blocked != 0 && now >= (blocked - 1).saturating_add(ms(settings.send_timeout)) {
            return Some(CloseReason::SendTimeout);
        }
        if self.busy.load(Relaxed) != 0 {
            return None;
        }
        let since = self.since.load(Relaxed);
        let (timeout, reason) = if self.phase.load(Relaxed) == Phase::Idle as u8 {
            (settings.keep_alive_timeout, CloseReason::KeepAliveTimeout)
        } else {
            (settings.header_read_timeout, CloseReason::HeaderReadTimeout)
        };
        (now >= since.saturating_add(ms(timeout))).then_some(reason)
    }
}
