//! [`SseProbe`] and [`ChunkProbe`]: a streamed response read as it arrives.

use bytes::{Bytes, BytesMut};
use futures::{stream::BoxStream, StreamExt};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::client::{Opened, TestRequest};

/// One Server-Sent Event as a browser's `EventSource` dispatches it (parsed by `sse-reference`,
/// the WHATWG algorithm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: `message` when the stream named none.
    pub event: String,
    /// The data lines, joined with LF.
    pub data: String,
    /// The last event ID when it was dispatched (empty if none was ever set).
    pub id: String,
}

impl SseEvent {
    /// The data as JSON.
    ///
    /// # Panics
    ///
    /// If it is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.data).unwrap_or_else(|error| {
            panic!(
                "the event's data is not the JSON expected ({error}): {}",
                self.data
            )
        })
    }
}

/// An SSE response read event by event ([`TestRequest::sse`]): heartbeats and comments are
/// skipped, as `EventSource` skips them; [`reconnect`](Self::reconnect) sends the request again
/// with the last event ID, as `EventSource` does.
///
/// ```
/// use async_mvc::{AsyncConfig, SseEmitter, SseEvent as Event};
/// use async_mvc_test::TestClient;
/// use axum::{routing::get, Router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let routes = Router::new().route(
///     "/ticks",
///     get(|| async {
///         let emitter = SseEmitter::new();
///         let sender = emitter.clone();
///         tokio::spawn(async move {
///             for n in 1..=3 {
///                 let event = Event::builder().id(n.to_string()).data(format!("tick {n}")).build().unwrap();
///                 sender.send_event(&event).await.unwrap();
///             }
///         });
///         emitter
///     }),
/// );
/// let client = TestClient::with_config(routes, AsyncConfig::new());
/// let mut events = client.get("/ticks").sse().await;
/// assert_eq!(events.status(), 200);
/// let first = events.next_event().await.unwrap();
/// assert_eq!((first.data.as_str(), first.id.as_str()), ("tick 1", "1"));
/// let rest = events.events_until(|event| event.id == "3").await;
/// assert_eq!(rest.len(), 2);
/// events.disconnect(); // an endless stream: read what the test needs, then leave
/// # }
/// ```
pub struct SseProbe {
    request: TestRequest,
    status: StatusCode,
    headers: HeaderMap,
    body: Option<BoxStream<'static, Result<Bytes, String>>>,
    buffer: Vec<u8>,
    /// Events already returned.
    returned: usize,
    last_event_id: String,
}

impl SseProbe {
    pub(crate) fn new(opened: Opened, request: TestRequest) -> Self {
        SseProbe {
            request,
            status: opened.status,
            headers: opened.headers,
            body: Some(opened.body),
            buffer: Vec::new(),
            returned: 0,
            last_event_id: String::new(),
        }
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The last event ID of the events returned so far: what a reconnect sends.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The next event; `None` once the stream has ended (or was disconnected).
    ///
    /// # Panics
    ///
    /// If the stream breaks off with an error (over HTTP: the server is gone).
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let parsed = sse_reference::parse(&self.buffer);
            if let Some(event) = parsed.events.get(self.returned) {
                self.returned += 1;
                self.last_event_id.clone_from(&event.last_event_id);
                return Some(SseEvent {
                    event: event.event_type.clone(),
                    data: event.data.clone(),
                    id: event.last_event_id.clone(),
                });
            }
            let chunk = self.body.as_mut()?.next().await;
            match chunk {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => panic!("the event stream broke off: {error}"),
                None => {
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// Events until one that `last` accepts (included), or the end of the stream.
    pub async fn events_until(&mut self, mut last: impl FnMut(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            let done = last(&event);
            events.push(event);
            if done {
                break;
            }
        }
        events
    }

    /// The next `n` events (fewer if the stream ends first).
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            match self.next_event().await {
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }

    /// Leaves, as a client that closes the stream: the server sees a disconnect. Returns the
    /// last event ID seen.
    pub fn disconnect(mut self) -> String {
        self.body = None;
        std::mem::take(&mut self.last_event_id)
    }

    /// Leaves, and sends the request again with `Last-Event-ID` set to the last event ID seen
    /// (if any), as `EventSource` reconnects.
    pub async fn reconnect(self) -> SseProbe {
        let request = self.request.clone();
        let last = self.disconnect();
        let request = if last.is_empty() {
            request
        } else {
            request.last_event_id(&last)
        };
        request.sse().await
    }
}

impl std::fmt::Debug for SseProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseProbe")
            .field("status", &self.status)
            .field("returned", &self.returned)
            .field("last_event_id", &self.last_event_id)
            .finish_non_exhaustive()
    }
}

/// Any streamed response read as it arrives ([`TestRequest::stream`]): chunk by chunk, or line
/// by line as NDJSON.
///
/// ```
/// use async_mvc::{AsyncConfig, ReactiveStream};
/// use async_mvc_test::TestClient;
/// use axum::{routing::get, Router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let routes = Router::new().route(
///     "/numbers",
///     get(|| async { ReactiveStream::new(futures::stream::iter([1, 2, 3])) }),
/// );
/// let client = TestClient::with_config(routes, AsyncConfig::new());
/// let mut lines = client.get("/numbers").header("accept", "application/x-ndjson").stream().await;
/// assert_eq!(lines.next_json::<u32>().await, Some(1));
/// assert_eq!(lines.next_json::<u32>().await, Some(2));
/// assert_eq!(lines.rest().await, "3\n");
/// # }
/// ```
pub struct ChunkProbe {
    status: StatusCode,
    headers: HeaderMap,
    body: Option<BoxStream<'static, Result<Bytes, String>>>,
    /// Bytes read but not yet returned as a line.
    pending: BytesMut,
}

impl ChunkProbe {
    pub(crate) fn new(opened: Opened) -> Self {
        ChunkProbe {
            status: opened.status,
            headers: opened.headers,
            body: Some(opened.body),
            pending: BytesMut::new(),
        }
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The next chunk as the server wrote it (what [`next_line`](Self::next_line) kept back
    /// first); `None` at the end.
    ///
    /// # Panics
    ///
    /// If the body breaks off with an error.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.pending.is_empty() {
            return Some(self.pending.split().freeze());
        }
        match self.body.as_mut()?.next().await {
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(error)) => panic!("the body broke off: {error}"),
            None => {
                self.body = None;
                None
            }
        }
    }

    /// The next chunk, or how the body broke off (an aborted stream: what a client sees as a
    /// truncated response); `None` at a clean end.
    pub async fn try_next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        if !self.pending.is_empty() {
            return Some(Ok(self.pending.split().freeze()));
        }
        let next = self.body.as_mut()?.next().await;
        if !matches!(next, Some(Ok(_))) {
            self.body = None;
        }
        next
    }

    /// The next line, without its LF (a last line without one counts at the end).
    pub async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line = self.pending.split_to(end + 1);
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let chunk = match self.body.as_mut() {
                Some(body) => body.next().await,
                None => None,
            };
            match chunk {
                Some(Ok(bytes)) => self.pending.extend_from_slice(&bytes),
                Some(Err(error)) => panic!("the body broke off: {error}"),
                None => {
                    self.body = None;
                    if self.pending.is_empty() {
                        return None;
                    }
                    let line = self.pending.split();
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
        }
    }

    /// The next line parsed as JSON (NDJSON).
    ///
    /// # Panics
    ///
    /// If the line is not JSON of that shape.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Option<T> {
        let line = self.next_line().await?;
        Some(
            serde_json::from_str(&line).unwrap_or_else(|error| {
                panic!("the line is not the JSON expected ({error}): {line}")
            }),
        )
    }

    /// Everything left, read to the end, as text.
    pub async fn rest(&mut self) -> String {
        let mut rest = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            rest.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Leaves: the server sees a disconnect.
    pub fn disconnect(self) {}
}

impl std::fmt::Debug for ChunkProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkProbe")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
