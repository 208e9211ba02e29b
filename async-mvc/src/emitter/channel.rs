//! The queue between an emitter handle (any task, any thread) and its response body.
//!
//! Sends append encoded bytes; the body takes everything queued in one frame, so sends made
//! before the response is written go out together, in order (Spring G.91–G.93). The queue is
//! bounded in messages: `send` waits for room, `try_send` reports "full". Once the emitter is
//! completed, timed out or its client gone, sends fail with an error that says which.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::{
    body::{Aborted, Source},
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
    capacity: usize,
}

struct State {
    queue: VecDeque<Bytes>,
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
    pub(crate) fn new(capacity: usize) -> Self {
        Channel {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: None,
                body_waker: None,
                on_timeout: Vec::new(),
                on_error: Vec::new(),
                on_completion: Vec::new(),
                finished: false,
            }),
            callbacks: Mutex::new(()),
            space: Notify::new(),
            capacity: capacity.max(1),
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
            if state.queue.len() >= self.capacity {
                return Err(EmitterError::Full);
            }
            state.queue.push_back(bytes);
            state.body_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `bytes`, waiting while the queue is full.
    ///
    /// Cancel safety: if the future is dropped, nothing was queued.
    pub(crate) async fn send(&self, bytes: Bytes) -> Result<(), EmitterError> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain in between is not missed.
            notified.as_mut().enable();
            match self.try_send(bytes.clone()) {
                Err(EmitterError::Full) => notified.await,
                other => return other,
            }
        }
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

    /// The body's side: everything queued as one frame, else the end, else pending.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Next {
        let next = {
            let mut state = self.lock();
            match state.queue.len() {
                0 => match &state.closed {
                    Some(Closed::CompletedWithError(message)) => Next::Abort(message.clone()),
                    Some(_) => Next::End,
                    None => {
                        match &state.body_waker {
                            Some(waker) if waker.will_wake(cx.waker()) => {}
                            _ => state.body_waker = Some(cx.waker().clone()),
                        }
                        return Next::Pending;
                    }
                },
                1 => Next::Data(state.queue.pop_front().unwrap_or_default()),
                _ => {
                    let size = state.queue.iter().map(Bytes::len).sum();
                    let mut frame = BytesMut::with_capacity(size);
                    for chunk in state.queue.drain(..) {
                        frame.extend_from_slice(&chunk);
                    }
                    Next::Data(frame.freeze())
                }
            }
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
            Next::Abort(message) => Poll::Ready(Some(Err(Aborted::CompletedWithError(message)))),
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
