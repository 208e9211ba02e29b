//! [`EmitterError`]: why a send to an emitter failed.

use crate::sse::SseEventError;

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
    /// `send` waited for room in the buffer for the emitter's send timeout
    /// ([`EmitterBuilder::send_timeout`](crate::EmitterBuilder::send_timeout)): the client
    /// accepts no bytes. Nothing was sent; the emitter stays open.
    #[error("the emitter's buffer stayed full for {} ms: the client is not reading", .0.as_millis())]
    SendTimedOut(std::time::Duration),
    /// The stream was given up because its client read too slowly (a broadcaster's slow
    /// subscriber); see [`AsyncError::SlowConsumer`](crate::AsyncError::SlowConsumer).
    #[error("the stream was given up: the client read too slowly")]
    SlowConsumer,
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
                | EmitterError::SlowConsumer
        )
    }
}
