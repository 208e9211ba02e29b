//! [`SseEmitter`]: Server-Sent Events from any task.

use std::{fmt, time::Duration};

use bytes::Bytes;

use axum::response::{IntoResponse, Response};
use http::{
    header::{CACHE_CONTROL, CONTENT_TYPE},
    HeaderMap, HeaderName, HeaderValue,
};
use serde::Serialize;

use super::{
    error::EmitterError,
    response_body::{encode, EmitterBuilder, ResponseBodyEmitter},
};
use crate::{
    error::AsyncError,
    sse::{SseEvent, SseEventBuilder},
};

/// How often an idle SSE stream gets a heartbeat comment (`:\n\n`) unless configured: 15 s.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// Sends Server-Sent Events from any task or thread: Spring MVC's `SseEmitter`.
///
/// A [`ResponseBodyEmitter`] that writes each value as an SSE event, byte for byte as Spring
/// does (field order as built, `data:` lines split on CR, LF and CRLF) and valid per the WHATWG
/// HTML standard. The response has `Content-Type: text/event-stream`, `Cache-Control: no-cache`
/// and `X-Accel-Buffering: no` (so proxies neither buffer nor compress it).
///
/// After each idle interval ([`DEFAULT_HEARTBEAT`], 15 s) a comment line `:` is written: it
/// keeps proxies from closing the connection, and a write to a client that vanished without a
/// word fails, so `on_error` and `on_completion` run within one interval.
///
/// ```
/// use std::time::Duration;
/// use async_mvc::{LastEventId, SseEmitter, SseEvent};
///
/// async fn ticks(last: Option<LastEventId>) -> SseEmitter {
///     let emitter = SseEmitter::builder().no_timeout().build();
///     let sender = emitter.clone();
///     let first: u64 = last.and_then(|id| id.as_str().parse().ok()).map_or(0, |id: u64| id + 1);
///     tokio::spawn(async move {
///         for n in first.. {
///             let event = SseEvent::builder().id(n.to_string()).event("tick").data("tock").build();
///             match event {
///                 Ok(event) if sender.send_event(&event).await.is_ok() => {}
///                 _ => return,
///             }
///             tokio::time::sleep(Duration::from_secs(1)).await;
///         }
///     });
///     emitter
/// }
/// ```
#[derive(Clone)]
pub struct SseEmitter {
    emitter: ResponseBodyEmitter,
    heartbeat: Option<Duration>,
}

/// Settings for a new [`SseEmitter`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SseEmitterBuilder {
    emitter: EmitterBuilder,
    heartbeat: Option<Duration>,
}

impl SseEmitterBuilder {
    /// How many sends the buffer holds.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.emitter.buffer_capacity()
    }

    /// Completes the stream this long after it starts, instead of the manager's default
    /// (Spring's `new SseEmitter(timeoutMillis)`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.emitter = self.emitter.timeout(timeout);
        self
    }

    /// No timeout: open until completed or the client leaves (usual for SSE).
    pub fn no_timeout(mut self) -> Self {
        self.emitter = self.emitter.no_timeout();
        self
    }

    /// How many events are buffered before `send` waits (default
    /// [`DEFAULT_CAPACITY`](crate::DEFAULT_CAPACITY)).
    pub fn capacity(mut self, events: usize) -> Self {
        self.emitter = self.emitter.capacity(events);
        self
    }

    /// How many bytes are buffered before `send` waits (default
    /// [`DEFAULT_BUFFER_BYTES`](crate::DEFAULT_BUFFER_BYTES)); see
    /// [`EmitterBuilder::max_buffered_bytes`].
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.emitter = self.emitter.max_buffered_bytes(bytes);
        self
    }

    /// How long `send` waits for room (default
    /// [`DEFAULT_EMITTER_SEND_TIMEOUT`](crate::DEFAULT_EMITTER_SEND_TIMEOUT)); see
    /// [`EmitterBuilder::send_timeout`].
    pub fn send_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.emitter = self.emitter.send_timeout(timeout);
        self
    }

    /// The idle interval after which a heartbeat comment is written (default
    /// [`DEFAULT_HEARTBEAT`]).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// No heartbeat: a client that vanished silently is noticed only at the next send.
    pub fn no_heartbeat(mut self) -> Self {
        self.heartbeat = None;
        self
    }

    /// The emitter.
    pub fn build(self) -> SseEmitter {
        SseEmitter {
            emitter: self.emitter.build(),
            heartbeat: self.heartbeat,
        }
    }
}

impl Default for SseEmitterBuilder {
    fn default() -> Self {
        SseEmitterBuilder {
            emitter: EmitterBuilder::default(),
            heartbeat: Some(DEFAULT_HEARTBEAT),
        }
    }
}

impl SseEmitter {
    /// An SSE emitter with the manager's default timeout and a 15 s heartbeat.
    pub fn new() -> Self {
        SseEmitterBuilder::default().build()
    }

    /// An SSE emitter with its own timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        SseEmitterBuilder::default().timeout(timeout).build()
    }

    /// Settings for a new SSE emitter.
    pub fn builder() -> SseEmitterBuilder {
        SseEmitterBuilder::default()
    }

    /// A builder for one event (Spring's `SseEmitter.event()`).
    pub fn event() -> SseEventBuilder {
        SseEvent::builder()
    }

    /// Sends `value` as a data-only event (W1): a string as its text, split into `data:` lines,
    /// anything else as JSON.
    ///
    /// # Errors
    ///
    /// As [`ResponseBodyEmitter::send`].
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), EmitterError> {
        self.send_event(&data_event(value)?).await
    }

    /// Like [`send`](Self::send), but fails with [`EmitterError::Full`] instead of waiting.
    pub fn try_send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), EmitterError> {
        self.try_send_event(&data_event(value)?)
    }

    /// Sends one built event. An event with no fields writes nothing (W11).
    ///
    /// # Errors
    ///
    /// As [`ResponseBodyEmitter::send_bytes`].
    pub async fn send_event(&self, event: &SseEvent) -> Result<(), EmitterError> {
        if event.is_empty() {
            return Ok(());
        }
        counted(
            self.emitter.send_bytes(event.bytes().clone()).await,
            event.bytes().len(),
        )
    }

    /// Like [`send_event`](Self::send_event), but fails with [`EmitterError::Full`] instead of
    /// waiting.
    pub fn try_send_event(&self, event: &SseEvent) -> Result<(), EmitterError> {
        if event.is_empty() {
            return Ok(());
        }
        counted(
            self.emitter.try_send_bytes(event.bytes().clone()),
            event.bytes().len(),
        )
    }

    /// Queues `event` whatever the buffer's bounds (a broadcaster's replay).
    pub(super) fn force_send_event(&self, event: &SseEvent) -> Result<(), EmitterError> {
        if event.is_empty() {
            return Ok(());
        }
        counted(
            self.emitter.force_send_bytes(event.bytes().clone()),
            event.bytes().len(),
        )
    }

    /// Whether both handles are the same emitter.
    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        self.emitter.ptr_eq(&other.emitter)
    }

    /// Queues an encoded frame whatever the buffer's bounds (a replay from history).
    pub(crate) fn force_send_frame(&self, frame: Bytes) -> Result<(), EmitterError> {
        let len = frame.len();
        counted(self.emitter.force_send_bytes(frame), len)
    }

    /// Queues an encoded frame, or reports [`EmitterError::Full`].
    pub(crate) fn try_send_frame(&self, frame: Bytes) -> Result<(), EmitterError> {
        let len = frame.len();
        counted(self.emitter.try_send_bytes(frame), len)
    }

    /// Gives the stream up: its client reads too slowly.
    pub(crate) fn give_up(&self, after: Duration) -> bool {
        self.emitter.give_up(after)
    }

    /// Completes the stream once what was sent is written.
    pub fn complete(&self) {
        self.emitter.complete();
    }

    /// Aborts the stream once what was sent is written (see
    /// [`ResponseBodyEmitter::complete_with_error`]).
    pub fn complete_with_error(&self, error: impl fmt::Display) {
        self.emitter.complete_with_error(error);
    }

    /// Whether sends now fail (completed, timed out or disconnected).
    pub fn is_completed(&self) -> bool {
        self.emitter.is_completed()
    }

    /// Runs `callback` when the timeout fires.
    pub fn on_timeout<F: FnOnce() + Send + 'static>(&self, callback: F) {
        self.emitter.on_timeout(callback);
    }

    /// Runs `callback` when the client disconnects.
    pub fn on_error<F: FnOnce(&AsyncError) + Send + 'static>(&self, callback: F) {
        self.emitter.on_error(callback);
    }

    /// Runs `callback` once the stream is over, whatever the outcome.
    pub fn on_completion<F: FnOnce() + Send + 'static>(&self, callback: F) {
        self.emitter.on_completion(callback);
    }
}

/// A data-only event for `value`.
pub(crate) fn data_event<T: Serialize + ?Sized>(value: &T) -> Result<SseEvent, EmitterError> {
    let encoded = encode(value)?;
    // `encode` gives a `String`'s text or serde_json's output: UTF-8 either way.
    let text = String::from_utf8_lossy(&encoded);
    Ok(SseEvent::data(text))
}

/// The headers of every SSE response.
pub(crate) fn sse_headers() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    headers
}

impl Default for SseEmitter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SseEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEmitter")
            .field("emitter", &self.emitter)
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

impl IntoResponse for SseEmitter {
    fn into_response(self) -> Response {
        let heartbeat = self
            .heartbeat
            .map(|every| (every, SseEvent::heartbeat().into_bytes()));
        self.emitter.into_stream_response(sse_headers(), heartbeat)
    }
}

/// `sent`, with an event of `bytes` bytes counted if it was queued.
#[inline]
fn counted(sent: Result<(), EmitterError>, bytes: usize) -> Result<(), EmitterError> {
    if sent.is_ok() {
        crate::telemetry::sse_event(bytes);
    }
    sent
}
