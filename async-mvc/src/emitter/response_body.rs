//! [`ResponseBodyEmitter`]: many values written to one response, from any task.

use std::{fmt, sync::Arc, time::Duration};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use serde::Serialize;

use super::{
    channel::{Bounds, Channel, Closed, EmitterSource},
    error::EmitterError,
    lifecycle,
};
use crate::{
    error::AsyncError,
    interceptor::AsyncRequest,
    manager::AsyncManager,
    work::{AsyncWork, StartAsync, WorkFuture},
};

/// How many sends an emitter buffers before `send` waits (and `try_send` reports
/// [`EmitterError::Full`]), unless [`EmitterBuilder::capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 256;

/// How many bytes an emitter buffers before `send` waits (and `try_send` reports
/// [`EmitterError::Full`]), unless [`EmitterBuilder::max_buffered_bytes`] says otherwise:
/// 64 KiB. Together with the server's own bound (64 KiB per HTTP/1 connection in
/// [`serve`](crate::serve)), what a client that stops reading can cost.
pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;

/// How long `send` waits for room in a full buffer before it fails with
/// [`EmitterError::SendTimedOut`], unless [`EmitterBuilder::send_timeout`] says otherwise:
/// 30 s.
pub const DEFAULT_EMITTER_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// An emitter's timeout setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// The manager's default timeout.
    Default,
    /// Open until completed or the client leaves.
    Never,
    /// This long after the response starts.
    After(Duration),
}

impl Timeout {
    /// The timeout to apply under `manager`; `None` for none.
    pub(crate) fn resolve(self, manager: &AsyncManager) -> Option<Duration> {
        match self {
            Timeout::Default => manager.config().get_default_timeout(),
            Timeout::Never => None,
            Timeout::After(after) => Some(after),
        }
    }
}

/// Writes many values to one response, from any task or thread: Spring MVC's
/// `ResponseBodyEmitter`.
///
/// Return it from a handler and keep a clone (a cheap `Clone` of an `Arc`, `Send` and `Sync`)
/// to [`send`](Self::send) values as they come, then [`complete`](Self::complete). Each value
/// is written as it is sent, with no separator: a string as its text, any other value as JSON
/// (serde); [`send_with`](Self::send_with) picks the converter by media type and
/// [`send_bytes`](Self::send_bytes) writes raw bytes. The emitter sets no `Content-Type` of its
/// own (Spring G.105): wrap it, e.g. `([(CONTENT_TYPE, "application/x-ndjson")], emitter)`, to
/// set status and headers (G.107).
///
/// Sends made before the response is written are buffered in order and written together
/// (G.91–G.93). A send after completion fails with [`EmitterError::Completed`] (G.94).
///
/// # Backpressure and slow clients
///
/// Each emitter buffers at most [`DEFAULT_CAPACITY`] sends and [`DEFAULT_BUFFER_BYTES`] bytes
/// (both configurable): `send` waits for room, `try_send` fails with [`EmitterError::Full`]. A
/// client that stops reading therefore holds its producer at `send` — with bounded memory —
/// for at most the send timeout ([`DEFAULT_EMITTER_SEND_TIMEOUT`]; then
/// [`EmitterError::SendTimedOut`]), or until the emitter times out or the client disconnects. Producers that must not wait (a broadcaster) use
/// `try_send` and drop or disconnect slow clients.
///
/// # Lifecycle
///
/// The manager's default timeout applies unless [`EmitterBuilder::timeout`] or
/// [`EmitterBuilder::no_timeout`] says otherwise. Callbacks: several of each kind, run in
/// registration order (G.98), registered before or after the handler returns. On timeout the
/// emitter is completed first (so sends fail), then `on_timeout` runs, then `on_completion`.
/// When the client disconnects, `on_error(ClientDisconnected)` then `on_completion`; the next
/// send fails with [`EmitterError::Disconnected`].
///
/// ```
/// use async_mvc::ResponseBodyEmitter;
/// use axum::http::header::CONTENT_TYPE;
/// # use axum::response::IntoResponse;
///
/// async fn prices() -> impl IntoResponse {
///     let emitter = ResponseBodyEmitter::new();
///     let sender = emitter.clone();
///     tokio::spawn(async move {
///         for price in [171.2, 171.4] {
///             if sender.send(&serde_json::json!({ "price": price })).await.is_err() {
///                 return; // completed, timed out or the client left
///             }
///             let _ = sender.send("\n").await;
///         }
///         sender.complete();
///     });
///     ([(CONTENT_TYPE, "application/x-ndjson")], emitter)
/// }
/// ```
#[derive(Clone)]
pub struct ResponseBodyEmitter {
    channel: Arc<Channel>,
    timeout: Timeout,
}

/// Settings for a new [`ResponseBodyEmitter`] (or, through `SseEmitter::builder`, an SSE
/// emitter).
#[derive(Debug, Clone)]
#[must_use]
pub struct EmitterBuilder {
    timeout: Timeout,
    capacity: usize,
    max_bytes: usize,
    send_timeout: Option<Duration>,
}

impl EmitterBuilder {
    /// How many sends the buffer holds.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.capacity
    }

    /// Completes the emitter this long after the response starts, instead of the manager's
    /// default (Spring's `new ResponseBodyEmitter(timeoutMillis)`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Timeout::After(timeout);
        self
    }

    /// No timeout: open until completed or the client leaves.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = Timeout::Never;
        self
    }

    /// How many sends are buffered before `send` waits (at least 1; default
    /// [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, sends: usize) -> Self {
        self.capacity = sends;
        self
    }

    /// How many bytes are buffered before `send` waits (at least 1; default
    /// [`DEFAULT_BUFFER_BYTES`]). A single larger send is still accepted into an empty buffer.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long `send` waits for room before it fails with [`EmitterError::SendTimedOut`]
    /// (default [`DEFAULT_EMITTER_SEND_TIMEOUT`]); `None` waits as long as the emitter is open.
    pub fn send_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// The emitter.
    pub fn build(self) -> ResponseBodyEmitter {
        ResponseBodyEmitter {
            channel: Arc::new(Channel::new(Bounds {
                sends: self.capacity,
                bytes: self.max_bytes,
                send_timeout: self.send_timeout,
            })),
            timeout: self.timeout,
        }
    }
}

impl Default for EmitterBuilder {
    fn default() -> Self {
        EmitterBuilder {
            timeout: Timeout::Default,
            capacity: DEFAULT_CAPACITY,
            max_bytes: DEFAULT_BUFFER_BYTES,
            send_timeout: Some(DEFAULT_EMITTER_SEND_TIMEOUT),
        }
    }
}

impl ResponseBodyEmitter {
    /// An emitter with the manager's default timeout and [`DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        EmitterBuilder::default().build()
    }

    /// An emitter with its own timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        EmitterBuilder::default().timeout(timeout).build()
    }

    /// Settings for a new emitter.
    pub fn builder() -> EmitterBuilder {
        EmitterBuilder::default()
    }

    /// Writes `value`: a string as its text, anything else as JSON. Waits while the buffer is
    /// full.
    ///
    /// # Errors
    ///
    /// [`EmitterError::Completed`] (or `CompletedWithError`, `TimedOut`, `Disconnected`) once
    /// the emitter no longer writes; [`EmitterError::Json`] if serialization fails (nothing is
    /// written).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes sends nothing.
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), EmitterError> {
        self.channel.send(encode(value)?).await
    }

    /// Like [`send`](Self::send), but fails with [`EmitterError::Full`] instead of waiting.
    pub fn try_send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), EmitterError> {
        self.channel.try_send(encode(value)?)
    }

    /// Writes `value` with the converter for `media_type` (Spring's `send(Object, MediaType)`):
    /// `application/json` and `*/*+json` as JSON (a string is quoted), `text/*` as text (a
    /// string value only).
    ///
    /// # Errors
    ///
    /// [`EmitterError::NoConverter`] for another media type, or a non-string value as text;
    /// otherwise as [`send`](Self::send).
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        value: &T,
        media_type: &str,
    ) -> Result<(), EmitterError> {
        self.channel.send(encode_as(value, media_type)?).await
    }

    /// Writes raw bytes. Waits while the buffer is full.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_bytes(&self, bytes: impl Into<Bytes>) -> Result<(), EmitterError> {
        self.channel.send(bytes.into()).await
    }

    /// Like [`send_bytes`](Self::send_bytes), but fails with [`EmitterError::Full`] instead of
    /// waiting.
    pub fn try_send_bytes(&self, bytes: impl Into<Bytes>) -> Result<(), EmitterError> {
        self.channel.try_send(bytes.into())
    }

    /// Queues `bytes` whatever the bounds (a broadcaster's replay, itself bounded).
    pub(super) fn force_send_bytes(&self, bytes: Bytes) -> Result<(), EmitterError> {
        self.channel.force_send(bytes)
    }

    /// Gives the stream up: its client reads too slowly (see [`AsyncError::SlowConsumer`]).
    pub(super) fn give_up(&self, after: Duration) -> bool {
        self.channel.give_up(after)
    }

    /// Whether both handles are the same emitter.
    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.channel, &other.channel)
    }

    /// Completes the response once what was sent is written. Later calls do nothing.
    pub fn complete(&self) {
        self.channel.close(Closed::Completed);
    }

    /// Ends the response with an error once what was sent is written: the response is aborted,
    /// so the client sees a broken stream rather than a complete one (the status was already
    /// sent). Later sends fail with [`EmitterError::CompletedWithError`].
    pub fn complete_with_error(&self, error: impl fmt::Display) {
        self.channel
            .close(Closed::CompletedWithError(error.to_string()));
    }

    /// Whether the emitter was completed, timed out or disconnected: sends now fail.
    pub fn is_completed(&self) -> bool {
        self.channel.closed().is_some()
    }

    /// Runs `callback` when the timeout fires (after the emitter is marked complete).
    pub fn on_timeout<F: FnOnce() + Send + 'static>(&self, callback: F) {
        self.channel.on_timeout(Box::new(callback));
    }

    /// Runs `callback` when the response fails — the client disconnected
    /// ([`AsyncError::ClientDisconnected`]).
    pub fn on_error<F: FnOnce(&AsyncError) + Send + 'static>(&self, callback: F) {
        self.channel.on_error(Box::new(callback));
    }

    /// Runs `callback` once the response is over, whatever the outcome.
    pub fn on_completion<F: FnOnce() + Send + 'static>(&self, callback: F) {
        self.channel.on_completion(Box::new(callback));
    }

    /// The response for this emitter with `headers` and the SSE heartbeat, if any.
    pub(crate) fn into_stream_response(
        self,
        headers: HeaderMap,
        heartbeat: Option<(Duration, Bytes)>,
    ) -> Response {
        AsyncWork::response(EmitterStart {
            emitter: Some(self),
            headers,
            heartbeat,
        })
    }
}

/// The converter of `send`: a string as text, anything else as JSON.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, EmitterError> {
    let json = serde_json::to_vec(value).map_err(EmitterError::Json)?;
    if json.first() == Some(&b'"') {
        let text: String = serde_json::from_slice(&json).map_err(EmitterError::Json)?;
        return Ok(Bytes::from(text));
    }
    Ok(Bytes::from(json))
}

fn encode_as<T: Serialize + ?Sized>(value: &T, media_type: &str) -> Result<Bytes, EmitterError> {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(EmitterError::Json);
    }
    if essence.starts_with("text/") {
        let json = serde_json::to_vec(value).map_err(EmitterError::Json)?;
        if json.first() == Some(&b'"') {
            return encode(value);
        }
    }
    Err(EmitterError::NoConverter {
        media_type: media_type.to_owned(),
    })
}

impl Default for ResponseBodyEmitter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ResponseBodyEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBodyEmitter")
            .field("timeout", &self.timeout)
            .field("closed", &self.channel.closed())
            .finish()
    }
}

impl IntoResponse for ResponseBodyEmitter {
    fn into_response(self) -> Response {
        self.into_stream_response(HeaderMap::new(), None)
    }
}

/// A returned emitter on its way to the manager.
struct EmitterStart {
    emitter: Option<ResponseBodyEmitter>,
    headers: HeaderMap,
    heartbeat: Option<(Duration, Bytes)>,
}

impl StartAsync for EmitterStart {
    fn kind(&self) -> crate::telemetry::Kind {
        let sse = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        if sse {
            crate::telemetry::Kind::Sse
        } else {
            crate::telemetry::Kind::Emitter
        }
    }

    fn start(mut self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        let Some(emitter) = self.emitter.take() else {
            return WorkFuture::ready(AsyncError::NotSupported.into_response());
        };
        let timeout = emitter.timeout.resolve(&manager);
        let response = lifecycle::stream_response(
            &manager,
            &request,
            lifecycle::StreamSpec {
                source: Box::new(EmitterSource::new(emitter.channel)),
                headers: std::mem::take(&mut self.headers),
                timeout,
                heartbeat: self.heartbeat.take(),
            },
        );
        WorkFuture::ready(response)
    }
}

impl Drop for EmitterStart {
    /// Never served (no async support on the route): sends fail from now on.
    fn drop(&mut self) {
        if let Some(emitter) = self.emitter.take() {
            emitter.channel.close(Closed::Disconnected);
            let mut source = EmitterSource::new(emitter.channel);
            super::body::Source::finish(&mut source, Some(&AsyncError::NotSupported));
        }
    }
}
