//! Reactive return values: a [`ReactiveStream`] adapted to SSE, NDJSON, text or a JSON array by
//! the response's preset `Content-Type`, the route's `produces` or the request's `Accept`
//! (Spring checklist J.132–J.146), and a [`ReactiveFuture`] that behaves like a
//! `DeferredResult`.

use std::{
    any::{Any, TypeId},
    borrow::Cow,
    fmt,
    future::Future,
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{stream::BoxStream, Stream, StreamExt};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::{
    body::{Aborted, Source},
    lifecycle,
    sse::{sse_headers, DEFAULT_HEARTBEAT},
};
use crate::{
    interceptor::AsyncRequest,
    manager::AsyncManager,
    sse::SseEvent,
    task::WebAsyncTask,
    work::{AsyncWork, StartAsync, WorkFuture},
};

/// One stream item, converted once.
enum Element {
    /// A value serialized to JSON, and whether it is a JSON string.
    Json { json: Bytes, is_string: bool },
    /// A string item (`String`, `&'static str`, …): its UTF-8 bytes.
    Text(Bytes),
    /// A ready-made Server-Sent Event.
    Event(SseEvent),
}

/// What a stream's items are, known from their type before the first one arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Values,
    Text,
    Events,
}

type Elements = BoxStream<'static, Result<Element, Aborted>>;

/// A stream of values returned from a handler: Spring MVC's multi-value reactive return value
/// (a `Flux`), and axum's [`Sse`](axum::response::sse::Sse) when its items are [`SseEvent`]s.
///
/// # How it is written
///
/// The candidate media types are the first present of: the `Content-Type` a wrapper already
/// set on the response (`([(CONTENT_TYPE, "text/event-stream")], stream)`, a response built
/// around it), the route's `produces`, the request's `Accept` (by quality, `q=0` excluded).
/// The first candidate that selects a streaming format decides (Spring J.136–J.142):
///
/// | items | candidate | written as | `Content-Type` |
/// |---|---|---|---|
/// | [`SseEvent`]s ([`events`](Self::events), [`try_events`](Self::try_events)) | any | each event with its own id, event name, retry and comments | `text/event-stream` |
/// | any | `text/event-stream` | one data-only event per item; strings unquoted, other values as JSON (J.138) | `text/event-stream` |
/// | any | `application/x-ndjson`, `application/jsonl`, `application/…+x-ndjson` | one JSON line per item (J.140–J.141; strings quoted) | that type (`application/*+x-ndjson`: `application/x-ndjson`) |
/// | strings (`String`, `&'static str`, `Box<str>`, `Arc<str>`, `Cow<'static, str>`) | anything else: none, `*/*`, `text/plain`, `text/*`, `text/html`, `application/json`, … | the strings as they come, concatenated (J.142) | the first concrete candidate (a `text/…` one gets `;charset=UTF-8`), else `text/plain;charset=UTF-8` |
/// | other values | anything else | collected into one JSON array (`[]` when empty, J.135) | `application/json` |
///
/// Where this differs from Spring: a string stream under an NDJSON type is written as JSON
/// lines (`"foo"\n`), not as raw concatenated text, so that the body is the NDJSON its
/// `Content-Type` says.
///
/// Streamed forms have no timeout (J.59); SSE gets a heartbeat comment after
/// [`DEFAULT_HEARTBEAT`] idle. The collected form waits under the manager's default timeout,
/// like a `DeferredResult`.
///
/// # Errors
///
/// A failing item ([`try_new`](Self::try_new), [`try_events`](Self::try_events)) or one that
/// does not serialize aborts a streamed response (the client sees a broken stream, J.145) and
/// turns a collected one into `500`; its message is logged.
///
/// # Example
///
/// ```
/// use async_mvc::{ReactiveStream, SseEvent};
/// use futures::StreamExt;
///
/// // A JSON array for `Accept: application/json`, NDJSON or SSE when asked for.
/// async fn numbers() -> ReactiveStream {
///     ReactiveStream::new(futures::stream::iter(1..=3).map(|n| serde_json::json!({ "n": n })))
/// }
///
/// // axum's `Sse::new(stream)`, in one line: each event keeps its id and name.
/// async fn ticks() -> ReactiveStream {
///     ReactiveStream::events(futures::stream::iter(1..=3).map(|n| {
///         SseEvent::builder().id(n.to_string()).event("tick").data("tock").build().unwrap()
///     }))
/// }
/// ```
#[doc(alias = "Flux")]
#[doc(alias = "Sse")]
pub struct ReactiveStream {
    kind: Kind,
    elements: Elements,
}

impl ReactiveStream {
    /// A stream of values that serialize. Strings (`String`, `&'static str`, `Box<str>`,
    /// `Arc<str>`, `Cow<'static, str>`) are streamed as text where no streaming type is asked
    /// for; see the table above.
    pub fn new<S, T>(items: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
        T: Serialize + 'static,
    {
        ReactiveStream {
            kind: kind_of::<T>(),
            elements: items.map(|item| element(&item)).boxed(),
        }
    }

    /// A stream of results: an `Err` ends the response as an error, with its `Display` logged.
    pub fn try_new<S, T, E>(items: S) -> Self
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Serialize + 'static,
        E: fmt::Display,
    {
        ReactiveStream {
            kind: kind_of::<T>(),
            elements: items
                .map(|item| {
                    item.map_err(|error| Aborted::StreamFailed(error.to_string()))
                        .and_then(|item| element(&item))
                })
                .boxed(),
        }
    }

    /// A stream of Server-Sent Events, always written as `text/event-stream`, each event with
    /// its own id, event name, retry and comments: Spring's `Flux<ServerSentEvent<T>>`, axum's
    /// `Sse::new(stream)`. A heartbeat comment follows [`DEFAULT_HEARTBEAT`] of silence; there
    /// is no timeout.
    pub fn events<S>(events: S) -> Self
    where
        S: Stream<Item = SseEvent> + Send + 'static,
    {
        ReactiveStream {
            kind: Kind::Events,
            elements: events.map(|event| Ok(Element::Event(event))).boxed(),
        }
    }

    /// A stream of event results, as axum's `Sse<impl Stream<Item = Result<Event, E>>>`: an
    /// `Err` aborts the stream (the client sees it broken), with its `Display` logged.
    pub fn try_events<S, E>(events: S) -> Self
    where
        S: Stream<Item = Result<SseEvent, E>> + Send + 'static,
        E: fmt::Display,
    {
        ReactiveStream {
            kind: Kind::Events,
            elements: events
                .map(|event| {
                    event
                        .map(Element::Event)
                        .map_err(|error| Aborted::StreamFailed(error.to_string()))
                })
                .boxed(),
        }
    }
}

/// The string types streamed as text (Spring: a `CharSequence` element type).
fn kind_of<T: 'static>() -> Kind {
    let id = TypeId::of::<T>();
    let text = [
        TypeId::of::<String>(),
        TypeId::of::<&'static str>(),
        TypeId::of::<Box<str>>(),
        TypeId::of::<Arc<str>>(),
        TypeId::of::<Cow<'static, str>>(),
    ];
    if text.contains(&id) {
        Kind::Text
    } else {
        Kind::Values
    }
}

/// The text of a string item, for the types [`kind_of`] calls text.
fn as_text<T: 'static>(item: &T) -> Option<&str> {
    let item = item as &dyn Any;
    if let Some(text) = item.downcast_ref::<String>() {
        return Some(text);
    }
    if let Some(text) = item.downcast_ref::<&'static str>() {
        return Some(text);
    }
    if let Some(text) = item.downcast_ref::<Box<str>>() {
        return Some(text);
    }
    if let Some(text) = item.downcast_ref::<Arc<str>>() {
        return Some(text);
    }
    item.downcast_ref::<Cow<'static, str>>().map(|text| &**text)
}

fn element<T: Serialize + 'static>(item: &T) -> Result<Element, Aborted> {
    if let Some(text) = as_text(item) {
        return Ok(Element::Text(Bytes::copy_from_slice(text.as_bytes())));
    }
    let json = serde_json::to_vec(item)
        .map_err(|error| Aborted::StreamFailed(format!("an item did not serialize: {error}")))?;
    Ok(Element::Json {
        is_string: json.first() == Some(&b'"'),
        json: Bytes::from(json),
    })
}

impl Element {
    /// This item as one SSE event: strings unquoted, values as JSON (J.138).
    fn into_sse(self) -> Bytes {
        match self {
            Element::Event(event) => event.into_bytes(),
            Element::Text(text) => SseEvent::data(String::from_utf8_lossy(&text)).into_bytes(),
            Element::Json { json, is_string } => {
                if is_string {
                    // A JSON string: its text, unquoted.
                    let text: String = serde_json::from_slice(&json).unwrap_or_default();
                    SseEvent::data(text).into_bytes()
                } else {
                    SseEvent::data(String::from_utf8_lossy(&json)).into_bytes()
                }
            }
        }
    }

    /// This item's JSON.
    fn into_json(self) -> Bytes {
        match self {
            Element::Json { json, .. } => json,
            Element::Text(text) => {
                let text = String::from_utf8_lossy(&text);
                serde_json::to_vec(&text).map_or_else(|_| Bytes::from_static(b"\"\""), Bytes::from)
            }
            // Not reached: events are always written as SSE.
            Element::Event(event) => event.into_bytes(),
        }
    }

    /// This item as raw text.
    fn into_text(self) -> Bytes {
        match self {
            Element::Text(text) => text,
            other => other.into_json(),
        }
    }
}

/// How a [`ReactiveStream`] is written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Sse,
    JsonLines(HeaderValue),
    Text(HeaderValue),
    Collect,
}

/// J.136–J.142: events are SSE; otherwise the first acceptable candidate that streams decides;
/// else strings are text and values are collected.
fn negotiate(request: &AsyncRequest, kind: Kind) -> Mode {
    if kind == Kind::Events {
        return Mode::Sse;
    }
    let candidates = request
        .content_type()
        .or(request.produces())
        .or(request.accept())
        .and_then(|value| value.to_str().ok());
    let mut ranges: Vec<(f32, &str)> = candidates
        .unwrap_or_default()
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim();
            let quality = parts
                .filter_map(|param| param.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!essence.is_empty() && quality > 0.0).then_some((quality, essence))
        })
        .collect();
    // Stable: equal qualities keep the client's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for &(_, essence) in &ranges {
        let lower = essence.to_ascii_lowercase();
        if lower == "text/event-stream" {
            return Mode::Sse;
        }
        if lower == "application/x-ndjson" || lower == "application/jsonl" {
            return Mode::JsonLines(
                HeaderValue::from_str(&lower)
                    .unwrap_or(HeaderValue::from_static("application/x-ndjson")),
            );
        }
        if lower.ends_with("+x-ndjson") {
            if lower.contains('*') {
                return Mode::JsonLines(HeaderValue::from_static("application/x-ndjson"));
            }
            if let Ok(value) = HeaderValue::from_str(essence) {
                return Mode::JsonLines(value);
            }
        }
    }
    if kind == Kind::Text {
        return Mode::Text(text_content_type(request.content_type(), &ranges));
    }
    Mode::Collect
}

/// The `Content-Type` of a text stream: a preset one as it is; else the first concrete
/// candidate (with `;charset=UTF-8` for a `text/…` type that names no charset); else
/// `text/plain;charset=UTF-8`.
fn text_content_type(preset: Option<&HeaderValue>, ranges: &[(f32, &str)]) -> HeaderValue {
    if let Some(preset) = preset {
        return preset.clone();
    }
    let concrete = ranges.iter().map(|&(_, essence)| essence).find(|essence| {
        essence.split_once('/').is_some_and(|(kind, sub)| {
            kind != "*" && sub != "*" && !kind.is_empty() && !sub.is_empty()
        })
    });
    let fallback = HeaderValue::from_static("text/plain;charset=UTF-8");
    match concrete {
        Some(essence) if essence.len() >= 5 && essence[..5].eq_ignore_ascii_case("text/") => {
            HeaderValue::from_str(&format!("{essence};charset=UTF-8")).unwrap_or(fallback)
        }
        Some(essence) => HeaderValue::from_str(essence).unwrap_or(fallback),
        None => fallback,
    }
}

impl fmt::Debug for ReactiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactiveStream").finish_non_exhaustive()
    }
}

impl IntoResponse for ReactiveStream {
    fn into_response(self) -> Response {
        AsyncWork::response(self)
    }
}

impl StartAsync for ReactiveStream {
    fn kind(&self) -> crate::telemetry::Kind {
        crate::telemetry::Kind::Reactive
    }

    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        let ReactiveStream { kind, elements } = self;
        let (headers, heartbeat, frames): (
            HeaderMap,
            _,
            BoxStream<'static, Result<Bytes, Aborted>>,
        ) = match negotiate(&request, kind) {
            Mode::Collect => {
                let collect = WebAsyncTask::from_future(collect(elements));
                return collect.start(manager, request);
            }
            Mode::Sse => (
                sse_headers(),
                Some((DEFAULT_HEARTBEAT, SseEvent::heartbeat().into_bytes())),
                elements
                    .map(|element| element.map(Element::into_sse))
                    // An empty event writes nothing (W11).
                    .filter(|frame| {
                        std::future::ready(frame.as_ref().map_or(true, |f| !f.is_empty()))
                    })
                    .boxed(),
            ),
            Mode::JsonLines(content_type) => {
                let lines = elements
                    .map(|element| {
                        element.map(|element| {
                            let json = element.into_json();
                            let mut line = BytesMut::with_capacity(json.len() + 1);
                            line.put_slice(&json);
                            line.put_u8(b'\n');
                            line.freeze()
                        })
                    })
                    .boxed();
                (content_type_header(content_type), None, lines)
            }
            Mode::Text(content_type) => {
                let text = elements
                    .map(|element| element.map(Element::into_text))
                    .filter(|frame| {
                        std::future::ready(frame.as_ref().map_or(true, |f| !f.is_empty()))
                    })
                    .boxed();
                (content_type_header(content_type), None, text)
            }
        };
        let response = lifecycle::stream_response(
            &manager,
            &request,
            lifecycle::StreamSpec {
                source: Box::new(StreamSource {
                    frames,
                    stopped: false,
                }),
                headers,
                // Streaming reactive responses have no timeout (J.59).
                timeout: None,
                heartbeat,
            },
        );
        WorkFuture::ready(response)
    }
}

fn content_type_header(content_type: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(CONTENT_TYPE, content_type);
    headers
}

/// J.135: every item, in order, as one JSON array.
async fn collect(mut elements: Elements) -> Response {
    let mut array = BytesMut::from(&b"["[..]);
    let mut first = true;
    while let Some(element) = elements.next().await {
        match element {
            Ok(element) => {
                if !first {
                    array.put_u8(b',');
                }
                first = false;
                array.put_slice(&element.into_json());
            }
            Err(message) => {
                tracing::error!(%message, "a collected reactive stream failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "the stream failed").into_response();
            }
        }
    }
    array.put_u8(b']');
    ([(CONTENT_TYPE, "application/json")], array.freeze()).into_response()
}

/// A stream of ready-made frames as a body source.
struct StreamSource {
    frames: BoxStream<'static, Result<Bytes, Aborted>>,
    stopped: bool,
}

impl Source for StreamSource {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>> {
        if self.stopped {
            return Poll::Ready(None);
        }
        self.frames.as_mut().poll_next(cx)
    }

    fn time_out_handle(&self) -> Box<dyn FnOnce() + Send> {
        // Streamed reactive responses have no timeout (J.59).
        Box::new(|| {})
    }

    fn shut_down(&mut self) {
        self.stopped = true;
    }

    fn finish(&mut self, _failure: Option<&crate::error::AsyncError>) {
        // Dropping the stream cancels its producer.
        self.stopped = true;
        self.frames = futures::stream::empty().boxed();
    }
}

/// A future returned from a handler: Spring MVC's single-value reactive return value (a
/// `Mono`, a `CompletableFuture`). It behaves like a `DeferredResult` completed by the future:
/// the manager's default timeout applies, and the value is rendered as if the handler had
/// returned it. It runs on the server's runtime, as [`Callable::from_future`](crate::Callable::from_future).
#[doc(alias = "Mono")]
#[doc(alias = "CompletableFuture")]
pub struct ReactiveFuture<F> {
    future: F,
}

impl<F> ReactiveFuture<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        ReactiveFuture { future }
    }
}

impl<F> fmt::Debug for ReactiveFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactiveFuture").finish_non_exhaustive()
    }
}

impl<F> IntoResponse for ReactiveFuture<F>
where
    F: Future + Send + 'static,
    F::Output: IntoResponse + Send + 'static,
{
    fn into_response(self) -> Response {
        let mut task = WebAsyncTask::from_future(self.future);
        task.kind = crate::telemetry::Kind::Reactive;
        task.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Uri};

    fn request(accept: &'static str) -> AsyncRequest {
        AsyncRequest::new(Method::GET, Uri::from_static("/"))
            .with_accept(Some(HeaderValue::from_static(accept)))
    }

    fn values(request: &AsyncRequest) -> Mode {
        negotiate(request, Kind::Values)
    }

    #[test]
    fn negotiation_follows_spring() {
        assert_eq!(values(&request("text/event-stream")), Mode::Sse);
        assert_eq!(
            values(&request("application/x-ndjson")),
            Mode::JsonLines(HeaderValue::from_static("application/x-ndjson"))
        );
        assert_eq!(
            values(&request("application/jsonl")),
            Mode::JsonLines(HeaderValue::from_static("application/jsonl"))
        );
        assert_eq!(
            values(&request("application/vnd.myapp.v1+x-ndjson")),
            Mode::JsonLines(HeaderValue::from_static(
                "application/vnd.myapp.v1+x-ndjson"
            ))
        );
        assert_eq!(
            values(&request("application/*+x-ndjson")),
            Mode::JsonLines(HeaderValue::from_static("application/x-ndjson"))
        );
        assert_eq!(values(&request("application/json")), Mode::Collect);
        assert_eq!(values(&request("*/*")), Mode::Collect);
        assert_eq!(
            values(&request("application/json;q=0.5, text/event-stream")),
            Mode::Sse
        );
        assert_eq!(
            values(&request("text/event-stream;q=0, application/json")),
            Mode::Collect
        );
        let plain = AsyncRequest::new(Method::GET, Uri::from_static("/"));
        assert_eq!(values(&plain), Mode::Collect);
    }

    #[test]
    fn produces_wins_over_accept_and_a_preset_content_type_over_both() {
        let request = request("application/json")
            .with_produces(Some(HeaderValue::from_static("text/event-stream")));
        assert_eq!(values(&request), Mode::Sse);
        let preset =
            request.with_content_type(Some(HeaderValue::from_static("application/x-ndjson")));
        assert_eq!(
            values(&preset),
            Mode::JsonLines(HeaderValue::from_static("application/x-ndjson"))
        );
    }

    #[test]
    fn strings_are_text_unless_a_streaming_type_is_asked_for() {
        let text = |accept| match negotiate(&request(accept), Kind::Text) {
            Mode::Text(content_type) => content_type.to_str().unwrap_or_default().to_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(text("*/*"), "text/plain;charset=UTF-8");
        assert_eq!(text("text/*"), "text/plain;charset=UTF-8");
        assert_eq!(text("text/plain"), "text/plain;charset=UTF-8");
        assert_eq!(text("text/html, */*;q=0.8"), "text/html;charset=UTF-8");
        assert_eq!(text("application/json"), "application/json");
        assert_eq!(text("text/event-stream"), "Sse");
        assert!(text("application/x-ndjson").starts_with("JsonLines"));
        let none = AsyncRequest::new(Method::GET, Uri::from_static("/"));
        assert_eq!(
            negotiate(&none, Kind::Text),
            Mode::Text(HeaderValue::from_static("text/plain;charset=UTF-8"))
        );
    }

    #[test]
    fn events_are_always_sse() {
        assert_eq!(
            negotiate(&request("application/json"), Kind::Events),
            Mode::Sse
        );
    }

    #[test]
    fn string_types_are_recognised() {
        assert_eq!(kind_of::<String>(), Kind::Text);
        assert_eq!(kind_of::<&'static str>(), Kind::Text);
        assert_eq!(kind_of::<Arc<str>>(), Kind::Text);
        assert_eq!(kind_of::<Cow<'static, str>>(), Kind::Text);
        assert_eq!(kind_of::<serde_json::Value>(), Kind::Values);
        assert_eq!(kind_of::<u32>(), Kind::Values);
        assert!(
            matches!(element(&Cow::<'static, str>::Borrowed("hi")), Ok(Element::Text(t)) if &t[..] == b"hi")
        );
    }
}
