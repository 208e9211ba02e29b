//! Streaming responses: Spring MVC's `ResponseBodyEmitter`, `SseEmitter`,
//! `StreamingResponseBody` and reactive (multi-value) return values.
//!
//! One concept per file: `channel.rs` (the bounded queue between an emitter handle and its
//! body), `body.rs` (the response body and its lifecycle: timeout, heartbeat, disconnect),
//! `response_body.rs` ([`ResponseBodyEmitter`]), `sse.rs` ([`SseEmitter`]; the wire format is
//! the crate's `sse` module), `broadcast.rs` ([`SseBroadcaster`]), `streaming.rs`
//! ([`StreamingResponseBody`]) and `reactive.rs` ([`ReactiveStream`]).

mod body;
mod broadcast;
mod channel;
mod lifecycle;
mod reactive;
mod response_body;
mod sse;
mod streaming;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;

pub(crate) use body::Source;
pub use broadcast::{SseBroadcaster, DEFAULT_REPLAY};
pub use reactive::{ReactiveFuture, ReactiveStream};
pub use response_body::{EmitterBuilder, ResponseBodyEmitter, DEFAULT_CAPACITY};
pub use sse::{SseEmitter, SseEmitterBuilder, DEFAULT_HEARTBEAT};
pub use streaming::{BodyWriter, StreamingResponseBody};

use crate::{error::AsyncError, guard::contain, sse::SseEventError};
use channel::{Channel, Next};

/// Why a send to an emitter failed.
///
/// Spring MVC counterparts: the `IllegalStateException` "ResponseBodyEmitter has already
/// completed" (G.94), and the I/O error of a write to a client that is gone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitterError {
    /// The emitter was completed with `complete()`.
    #[error("ResponseBodyEmitter has already completed")]
    Completed,
    /// The emitter was completed with `complete_with_error(..)`.
    #[error("ResponseBodyEmitter has already completed with error: {0}")]
    CompletedWithError(String),
    /// The emitter's timeout fired.
    #[error("ResponseBodyEmitter has already completed: it timed out")]
    TimedOut,
    /// The client disconnected (or the emitter was never served).
    #[error("the client disconnected")]
    Disconnected,
    /// The buffer is full (`try_send` only): the client reads slower than the producer sends.
    #[error("the emitter's buffer is full")]
    Full,
    /// The value could not be serialized; nothing was sent.
    #[error("the value could not be serialized: {0}")]
    Json(#[source] serde_json::Error),
    /// No converter writes this value as this media type (Spring: "No suitable converter").
    #[error("no converter writes this value as `{media_type}`")]
    NoConverter {
        /// The media type asked for.
        media_type: String,
    },
    /// The SSE event is invalid (an id or event name with a line break); nothing was sent.
    #[error(transparent)]
    InvalidEvent(#[from] SseEventError),
}

impl EmitterError {
    /// Whether the emitter will never write again (completed, timed out or disconnected), as
    /// opposed to a send that failed on its own (full, not serializable).
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            EmitterError::Completed
                | EmitterError::CompletedWithError(_)
                | EmitterError::TimedOut
                | EmitterError::Disconnected
        )
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
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, String>>> {
        match self.0.poll_next(cx) {
            Next::Data(bytes) => Poll::Ready(Some(Ok(bytes))),
            Next::End => Poll::Ready(None),
            Next::Abort(message) => Poll::Ready(Some(Err(message))),
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
        self.0.close(channel::Closed::Completed);
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
