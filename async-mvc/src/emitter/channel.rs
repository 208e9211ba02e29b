//! The queue between an emitter handle (any task, any thread) and its response body.
//!
//! Sends append encoded bytes; the body takes what is queued in one frame (up to
//! [`MAX_BATCH`]; a larger send goes out alone, uncopied), so sends made before the response
//! is written go out together, in order (Spring G.91–G.93). The queue is bounded in messages
//! and in bytes: `send` waits for room (at most its send timeout), `try_send` reports "full".
//! Once the emitter is completed, timed out, given up or its client gone, sends fail with an
//! error that says which.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::{
    body::{Aborted, GiveUp, Source},
    error::EmitterError,
};
use crate::{error::AsyncError, guard::contain};

type Callback = Box<dyn FnOnce() + Send>;
type ErrorCallback = Box<dyn FnOnce(&AsyncError) + Send>;

/// Why the emitter no longer accepts sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Closed {
    /// `complete()` was called.
    Completed,
    /// `complete_with_error(..)` was called; the message.
    CompletedWithError(String),
    /// The timeout fired.
    TimedOut,
    /// The client went away, or the emitter was never served.
    Disconnected,
    /// Given up: the client read too slowly.
    SlowConsumer,
}

/// The most bytes the body copies into one frame when several sends are queued: 16 KiB.
const MAX_BATCH: usize = 16 * 1024;

/// The bounds of an emitter's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Sends queued, at most.
    pub(crate) sends: usize,
    /// Bytes queued, at most (a single larger send is queued alone).
    pub(crate) bytes: usize,
    /// How long `send` waits for room.
    pub(crate) send_timeout: Option<Duration>,
}

impl Closed {
    fn error(&self) -> EmitterError {
        match self {
            Closed::Completed => EmitterError::Completed,
            Closed::CompletedWithError(message) => {
                EmitterError::CompletedWithError(message.clone())
            }
            Closed::TimedOut => EmitterError::TimedOut,
            Closed::Disconnected => EmitterError::Disconnected,
            Closed::SlowConsumer => EmitterError::SlowConsumer,
        }
    }
}

/// What the body sees when it polls.
pub(crate) enum Next {
    /// Bytes to write: everything that was queued.
    Data(Bytes),
    /// The emitter completed normally: end the body.
    End,
    /// The emitter completed with an error: abort the body.
    Abort(String),
    /// Nothing yet; the waker is registered.
    Pending,
}

pub(crate) struct Channel {
    state: Mutex<State>,
    /// Held while a batch of lifecycle callbacks runs (the timer task's `on_timeout`, the
    /// body's `on_error` and `on_completion`), so batches never interleave.
    callbacks: Mutex<()>,
    /// Senders waiting for room.
    space: Notify,
    bounds: Bounds,
}

struct State {
    queue: VecDeque<Bytes>,
    /// The bytes in `queue`.
    queued_bytes: usize,
    /// Set once the body exists: ends the stream's accounting if it is given up.
    give_up: Option<GiveUp>,
    /// Set once: from then on sends fail. The body still drains what was queued before a
    /// completion.
    closed: Option<Closed>,
    body_waker: Option<Waker>,
    on_timeout: Vec<Callback>,
    on_error: Vec<ErrorCallback>,
    on_completion: Vec<Callback>,
    /// Callbacks have run; later registrations are dropped.
    finished: bool,
}

impl Channel {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Channel {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                give_up: None,
                closed: None,
                body_waker: None,
                on_timeout: Vec::new(),
                on_error: Vec::new(),
                on_completion: Vec::new(),
                finished: false,
            }),
            callbacks: Mutex::new(()),
            space: Notify::new(),
            bounds: Bounds {
                sends: bounds.sends.max(1),
                bytes: bounds.bytes.max(1),
                send_timeout: bounds.send_timeout,
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serializes batches of lifecycle callbacks (see the field).
    pub(crate) fn callback_batch(&self) -> MutexGuard<'_, ()> {
        self.callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `bytes` unless the emitter is closed or the queue is full.
    pub(crate) fn try_send(&self, bytes: Bytes) -> Result<(), EmitterError> {
        let waker = {
            let mut state = self.lock();
            if let Some(closed) = &state.closed {
                return Err(closed.error());
            }
            let full = state.queue.len() >= self.bounds.sends
                || (!state.queue.is_empty()
                    && state.queued_bytes + bytes.len() > self.bounds.bytes);
            if full {
                return Err(EmitterError::Full);
            }
            state.queued_bytes += bytes.len();
            state.queue.push_back(bytes);
            state.body_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `bytes` whatever the bounds, unless the emitter is closed.
    pub(crate) fn force_send(&self, bytes: Bytes) -> Result<(), EmitterError> {
        let waker = {
            let mut state = self.lock();
            if let Some(closed) = &state.closed {
                return Err(closed.error());
            }
            state.queued_bytes += bytes.len();
            state.queue.push_back(bytes);
            state.body_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `bytes`, waiting while the queue is full — at most the send timeout.
    ///
    /// Cancel safety: if the future is dropped, nothing was queued.
    pub(crate) async fn send(&self, bytes: Bytes) -> Result<(), EmitterError> {
        let mut deadline = None;
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain in between is not missed.
            notified.as_mut().enable();
            match self.try_send(bytes.clone()) {
                Err(EmitterError::Full) => {}
                other => return other,
            }
            let Some(timeout) = self.bounds.send_timeout else {
                notified.await;
                continue;
            };
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(EmitterError::SendTimedOut(timeout));
            }
        }
    }

    /// Gives the stream up because its client reads too slowly: sends fail from now on, the
    /// queue is dropped, the stream stops counting as in flight (counted as a slow consumer),
    /// `on_error(SlowConsumer)` and `on_completion` run now, and the body aborts when hyper
    /// next polls it (or the server's send timeout closes the connection). `false` if the
    /// emitter was closed already.
    pub(crate) fn give_up(&self, after: Duration) -> bool {
        let _batch = self.callback_batch();
        if !self.close(Closed::SlowConsumer) {
            return false;
        }
        let give_up = {
            let mut state = self.lock();
            state.queue.clear();
            state.queued_bytes = 0;
            state.give_up.take()
        };
        if let Some(give_up) = give_up {
            give_up.slow_consumer(after);
        }
        let error = AsyncError::SlowConsumer { after };
        for on_error in std::mem::take(&mut self.lock().on_error) {
            contain("on_error", || on_error(&error));
        }
        for on_completion in self.finish() {
            contain("on_completion", on_completion);
        }
        true
    }

    fn attach(&self, give_up: GiveUp) {
        self.lock().give_up = Some(give_up);
    }

    /// Closes the emitter for sends; `false` if it already was.
    pub(crate) fn close(&self, why: Closed) -> bool {
        let waker = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return false;
            }
            state.closed = Some(why);
            state.body_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        // Senders waiting for room learn that it is over.
        self.space.notify_waiters();
        true
    }

    /// Why the emitter is closed, if it is.
    pub(crate) fn closed(&self) -> Option<Closed> {
        self.lock().closed.clone()
    }

    /// The body's side: what is queued as one frame (up to [`MAX_BATCH`] copied together),
    /// else the end, else pending.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Next {
        let next = {
            let mut state = self.lock();
            let Some(first) = state.queue.pop_front() else {
                return match &state.closed {
                    Some(Closed::CompletedWithError(message)) => Next::Abort(message.clone()),
                    Some(Closed::SlowConsumer) => Next::Abort(String::new()),
                    Some(_) => Next::End,
                    None => {
                        match &state.body_waker {
                            Some(waker) if waker.will_wake(cx.waker()) => {}
                            _ => state.body_waker = Some(cx.waker().clone()),
                        }
                        Next::Pending
                    }
                };
            };
            let mut size = first.len();
            let batch = state
                .queue
                .iter()
                .take_while(|chunk| {
                    size += chunk.len();
                    size <= MAX_BATCH
                })
                .count();
            let frame = if batch == 0 {
                first
            } else {
                let mut frame = BytesMut::with_capacity(MAX_BATCH.min(size));
                frame.extend_from_slice(&first);
                for chunk in state.queue.drain(..batch) {
                    frame.extend_from_slice(&chunk);
                }
                frame.freeze()
            };
            state.queued_bytes = state.queued_bytes.saturating_sub(frame.len());
            Next::Data(frame)
        };
        self.space.notify_waiters();
        next
    }

    pub(crate) fn on_timeout(&self, callback: Callback) {
        let mut state = self.lock();
        if !state.finished {
            state.on_timeout.push(callback);
        }
    }

    pub(crate) fn on_error(&self, callback: ErrorCallback) {
        let mut state = self.lock();
        if !state.finished {
            state.on_error.push(callback);
        }
    }

    pub(crate) fn on_completion(&self, callback: Callback) {
        let mut state = self.lock();
        if !state.finished {
            state.on_completion.push(callback);
        }
    }

    /// The timeout fired: closes the emitter (G.99: before the callbacks run, so a send from
    /// one fails) and returns the `on_timeout` callbacks.
    pub(crate) fn time_out(&self) -> Vec<Callback> {
        self.close(Closed::TimedOut);
        std::mem::take(&mut self.lock().on_timeout)
    }

    /// The client is gone: closes the emitter and returns the `on_error` callbacks.
    pub(crate) fn disconnect(&self) -> Vec<ErrorCallback> {
        self.close(Closed::Disconnected);
        let mut state = self.lock();
        state.queue.clear();
        state.queued_bytes = 0;
        std::mem::take(&mut state.on_error)
    }

    /// The response is over: returns the `on_completion` callbacks and drops all others (they
    /// may hold clones of the emitter).
    pub(crate) fn finish(&self) -> Vec<Callback> {
        self.close(Closed::Completed);
        let mut state = self.lock();
        state.finished = true;
        state.on_timeout.clear();
        state.on_error.clear();
        state.queue.clear();
        state.queued_bytes = 0;
        std::mem::take(&mut state.on_completion)
    }
}

/// An emitter's channel as the source of its response body.
pub(crate) struct EmitterSource(Arc<Channel>);

impl EmitterSource {
    pub(crate) fn new(channel: Arc<Channel>) -> Self {
        EmitterSource(channel)
    }
}

impl Source for EmitterSource {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>> {
        match self.0.poll_next(cx) {
            Next::Data(bytes) => Poll::Ready(Some(Ok(bytes))),
            Next::End => Poll::Ready(None),
            Next::Abort(message) => Poll::Ready(Some(Err(
                if self.0.closed() == Some(Closed::SlowConsumer) {
                    Aborted::SlowConsumer
                } else {
                    Aborted::CompletedWithError(message)
                },
            ))),
            Next::Pending => Poll::Pending,
        }
    }

    fn time_out_handle(&self) -> Box<dyn FnOnce() + Send> {
        let channel = Arc::clone(&self.0);
        Box::new(move || {
            // The timer task may race the body's end: one batch of callbacks at a time, so
            // `on_timeout` never runs after `on_completion` (which drops it) or beside it.
            let _batch = channel.callback_batch();
            for on_timeout in channel.time_out() {
                contain("on_timeout", on_timeout);
            }
        })
    }

    fn attach(&mut self, give_up: GiveUp) {
        self.0.attach(give_up);
    }

    fn shut_down(&mut self) {
        self.0.close(Closed::Completed);
    }

    fn finish(&mut self, failure: Option<&AsyncError>) {
        let _batch = self.0.callback_batch();
        if let Some(error) = failure {
            for on_error in self.0.disconnect() {
                contain("on_error", || on_error(error));
            }
        }
        for on_completion in self.0.finish() {
            contain("on_completion", on_completion);
        }
    }
}
