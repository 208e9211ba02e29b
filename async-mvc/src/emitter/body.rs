//! [`StreamBody`]: the response body of every streaming response (emitters, SSE,
//! `StreamingResponseBody`, reactive streams), carrying the async lifecycle.
//!
//! Ends three ways: the source ends (completed), the source fails (the body errors, so hyper
//! aborts the response: the client sees a broken chunked stream, never a truncated body that
//! looks complete), or hyper drops the body first (the client went away). Before it aborts, the
//! body lets hyper write what it already holds (the head and earlier chunks), so what was sent
//! reaches the client. A timeout closes the source from a timer task of its own: hyper stops
//! polling the body while the client does not read, and the timeout must still release a
//! producer blocked on a full buffer. A heartbeat writes a comment after each idle interval,
//! which is also how a silent disconnect is noticed (the write fails).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::{
    task::JoinHandle,
    time::{Instant, Sleep},
};

use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::{
    error::AsyncError,
    manager::{AsyncManager, Count, Pending},
};

/// Where a streaming body's bytes come from.
pub(crate) trait Source: Send + 'static {
    /// The next chunk; `Some(Err(why))` aborts the response.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>>;

    /// What the timeout does, run on a timer task: stop producing (sends fail, a writer is
    /// cancelled; an emitter also runs its `on_timeout` callbacks) and wake the body, which then
    /// ends once it has written what is left, or aborts. Taken once, when the body is created.
    fn time_out_handle(&self) -> Box<dyn FnOnce() + Send>;

    /// The stream's accounting, for a source that may give the stream up before its body ends
    /// (an emitter whose client reads too slowly). Called once, when the body is created.
    fn attach(&mut self, _give_up: GiveUp) {}

    /// A graceful shutdown began: stop producing, so the body ends once it has written what is
    /// queued (an emitter refuses further sends; a writer may finish its download).
    fn shut_down(&mut self) {}

    /// The response is over: `None` when it completed, else why not (the client went away, or
    /// the stream was refused before it started).
    fn finish(&mut self, failure: Option<&AsyncError>);
}

/// Why a streaming body aborts: the client sees a broken stream (chunked encoding cut, or an
/// HTTP/2 reset), never a clean end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Aborted {
    /// The emitter was completed with `complete_with_error(..)`.
    #[error("streaming response aborted: the emitter completed with error: {0}")]
    CompletedWithError(String),
    /// The `StreamingResponseBody` writer returned an error (its message).
    #[error("streaming response aborted: the writer failed: {0}")]
    WriterFailed(String),
    /// The `StreamingResponseBody` writer panicked.
    #[error("streaming response aborted: the writer panicked")]
    WriterPanicked,
    /// The `StreamingResponseBody` writer did not finish within its timeout.
    #[error("streaming response aborted: the writer timed out")]
    WriterTimedOut,
    /// A reactive stream yielded an error, or an item that did not serialize (the message).
    #[error("streaming response aborted: the stream failed: {0}")]
    StreamFailed(String),
    /// The stream was given up: its client read too slowly.
    #[error("streaming response aborted: the client read too slowly")]
    SlowConsumer,
}

struct Heartbeat {
    every: Duration,
    bytes: Bytes,
    sleep: Pin<Box<Sleep>>,
}

/// A streaming response body driven by a [`Source`].
pub(crate) struct StreamBody {
    source: Box<dyn Source>,
    /// The timer task that fires the timeout; aborted once the body has ended.
    timeout: Option<JoinHandle<()>>,
    heartbeat: Option<Heartbeat>,
    /// Hyper may hold bytes it has not written yet (the head, data frames): set until the body
    /// has returned `Pending` once since, which lets hyper flush.
    unflushed: bool,
    /// An abort waiting for hyper to flush first.
    aborting: Option<Aborted>,
    /// Resolves when a graceful shutdown begins.
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Written last when the stream ends because of a shutdown (an SSE stream's final event).
    final_frame: Option<Bytes>,
    /// `Some` until the body has ended one way or another.
    lifecycle: Option<StreamLifecycle>,
}

/// What a streaming body does when a graceful shutdown begins.
pub(crate) struct OnShutdown {
    signal: WaitForCancellationFutureOwned,
    /// Written after what is queued, before the stream ends.
    final_frame: Option<Bytes>,
}

impl OnShutdown {
    /// End when `signal` resolves, with `final_frame` (if any) after what is queued.
    pub(super) fn new(signal: WaitForCancellationFutureOwned, final_frame: Option<Bytes>) -> Self {
        OnShutdown {
            signal,
            final_frame,
        }
    }
}

impl StreamBody {
    pub(crate) fn new(
        mut source: Box<dyn Source>,
        lifecycle: StreamLifecycle,
        timeout: Option<Duration>,
        heartbeat: Option<(Duration, Bytes)>,
        on_shutdown: OnShutdown,
    ) -> Self {
        source.attach(lifecycle.give_up_handle());
        let timeout = timeout.map(|after| {
            let expire = source.time_out_handle();
            let count = lifecycle.timeout_counter();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                count();
                expire();
            })
        });
        StreamBody {
            source,
            timeout,
            unflushed: true,
            aborting: None,
            heartbeat: heartbeat.map(|(every, bytes)| Heartbeat {
                every,
                bytes,
                sleep: Box::pin(tokio::time::sleep(every)),
            }),
            shutdown: Some(Box::pin(on_shutdown.signal)),
            final_frame: on_shutdown.final_frame,
            lifecycle: Some(lifecycle),
        }
    }

    fn end(&mut self, failed: bool) {
        if let Some(lifecycle) = self.lifecycle.take() {
            self.stop_timer();
            lifecycle.completed(failed);
            self.source.finish(None);
        }
    }

    fn stop_timer(&mut self) {
        if let Some(timer) = self.timeout.take() {
            timer.abort();
        }
    }

    fn abort(&mut self, why: Aborted) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        self.end(true);
        Poll::Ready(Some(Err(why)))
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        if this.lifecycle.is_none() {
            return Poll::Ready(None);
        }
        if let Some(message) = this.aborting.take() {
            return this.abort(message);
        }
        match this.source.poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(heartbeat) = &mut this.heartbeat {
                    let next = Instant::now() + heartbeat.every;
                    heartbeat.sleep.as_mut().reset(next);
                }
                this.unflushed = true;
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            Poll::Ready(Some(Err(message))) => {
                if this.unflushed {
                    // An error aborts the connection with whatever hyper still buffers: let it
                    // write what was sent first (it flushes when the body is pending).
                    this.unflushed = false;
                    this.aborting = Some(message);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return this.abort(message);
            }
            Poll::Ready(None) => {
                if this.shutdown.is_none() {
                    // Ended by a shutdown: the final event, if any, goes last.
                    if let Some(frame) = this.final_frame.take() {
                        return Poll::Ready(Some(Ok(Frame::data(frame))));
                    }
                }
                this.end(false);
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(shutdown) = &mut this.shutdown {
            if shutdown.as_mut().poll(cx).is_ready() {
                this.shutdown = None;
                this.heartbeat = None;
                this.source.shut_down();
                // Drain what is queued, then end.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if let Some(heartbeat) = &mut this.heartbeat {
            if heartbeat.sleep.as_mut().poll(cx).is_ready() {
                let next = Instant::now() + heartbeat.every;
                heartbeat.sleep.as_mut().reset(next);
                this.unflushed = true;
                return Poll::Ready(Some(Ok(Frame::data(heartbeat.bytes.clone()))));
            }
        }
        this.unflushed = false;
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.lifecycle.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        if let Some(lifecycle) = self.lifecycle.take() {
            self.stop_timer();
            lifecycle.disconnected();
            self.source.finish(Some(&AsyncError::ClientDisconnected));
        }
    }
}

impl fmt::Debug for StreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamBody")
            .field("open", &self.lifecycle.is_some())
            .finish_non_exhaustive()
    }
}

/// Counts one open stream and how it ended. The stream counts as in flight until the body
/// ends — or until its source gives it up first ([`GiveUp`], a slow consumer), whichever comes
/// first; the other then counts nothing.
pub(super) struct StreamLifecycle {
    shared: Arc<StreamShared>,
    /// Counts the stream among the open SSE streams until it ends (`None`: not SSE).
    _sse: Option<crate::telemetry::SseStream>,
}

struct StreamShared {
    /// Taken by whoever ends the stream first.
    pending: Mutex<Option<Pending>>,
    manager: AsyncManager,
    path: String,
    /// An SSE stream.
    sse: bool,
}

impl StreamShared {
    fn take(&self) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl StreamLifecycle {
    pub(super) fn new(pending: Pending, manager: AsyncManager, path: String, sse: bool) -> Self {
        StreamLifecycle {
            shared: Arc::new(StreamShared {
                pending: Mutex::new(Some(pending)),
                manager,
                path,
                sse,
            }),
            _sse: sse.then(crate::telemetry::SseStream::open),
        }
    }

    /// A handle with which the source ends the stream's accounting early.
    pub(super) fn give_up_handle(&self) -> GiveUp {
        GiveUp {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Counts the timeout when called: for the body's timer task, which runs apart from it.
    pub(super) fn timeout_counter(&self) -> impl FnOnce() + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            shared.manager.count(Count::TimedOut);
            tracing::debug!(path = %shared.path, "streaming response timed out");
        }
    }

    pub(super) fn completed(self, failed: bool) {
        let Some(_pending) = self.shared.take() else {
            return;
        };
        let manager = &self.shared.manager;
        manager.count(Count::Completed);
        if failed {
            manager.count(Count::Error);
            tracing::warn!(path = %self.shared.path, "streaming response aborted by an error");
        }
    }

    pub(super) fn disconnected(self) {
        let Some(_pending) = self.shared.take() else {
            return;
        };
        self.shared.manager.count(Count::Disconnected);
        tracing::debug!(path = %self.shared.path, "client disconnected from a streaming response");
    }
}

/// Ends a stream's accounting from its source, before the body ends: the stream no longer
/// counts as in flight, and counts as a slow consumer.
pub(crate) struct GiveUp {
    shared: Arc<StreamShared>,
}

impl GiveUp {
    /// `false` if the stream had ended already.
    pub(crate) fn slow_consumer(&self, after: Duration) -> bool {
        let Some(_pending) = self.shared.take() else {
            return false;
        };
        self.shared.manager.count(Count::SlowConsumer);
        if self.shared.sse {
            crate::telemetry::sse_slow_consumer();
        }
        tracing::debug!(
            path = %self.shared.path,
            after_ms = after.as_millis() as u64,
            "streaming response given up: the client read too slowly"
        );
        true
    }
}

impl fmt::Debug for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiveUp")
            .field("path", &self.shared.path)
            .finish()
    }
}
