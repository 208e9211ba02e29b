//! Reactive return values: a [`ReactiveStream`] adapted to SSE, NDJSON or a JSON array by the
//! route's `produces` or the request's `Accept` (Spring checklist J.132–J.146), and a
//! [`ReactiveFuture`] that behaves like a `DeferredResult`.

use std::{
    fmt,
    future::Future,
    task::{Context, Poll},
};

use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{stream::BoxStream, Stream, StreamExt};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::{
    sse::{sse_headers, DEFAULT_HEARTBEAT},
    Source, SseEvent,
};
use crate::{
    manager::StreamSpec,
    work::{AsyncWork, ResponseFuture, StartAsync},
    AsyncManager, AsyncRequest, WebAsyncTask,
};

/// One stream item, serialized once: its JSON, and whether it is a JSON string.
struct Item {
    json: Bytes,
    is_string: bool,
}

type Items = BoxStream<'static, Result<Item, String>>;

/// A stream of values returned from a handler: Spring MVC's multi-value reactive return value
/// (a `Flux`).
///
/// How it is written depends on the route's `produces`, else the request's `Accept` (the first
/// acceptable type that matches, by quality):
/// - `text/event-stream`: one SSE event per item, strings unquoted, other values as JSON
///   (J.138); with a heartbeat, and no timeout (J.59);
/// - `application/x-ndjson`, `application/jsonl` or a vendor `application/…+x-ndjson`: one JSON
///   line per item, with that `Content-Type` (J.140–J.141); no timeout;
/// - anything else: the items are collected into a JSON array (`[]` for an empty stream,
///   J.135), under the manager's default timeout, like a `DeferredResult`.
///
/// A failing item ([`try_new`](Self::try_new)) aborts a streamed response (the client sees a
/// broken stream, J.145) and turns a collected one into `500`.
///
/// ```
/// use async_mvc::ReactiveStream;
///
/// async fn numbers() -> ReactiveStream {
///     ReactiveStream::new(futures::stream::iter(1..=3).map(|n| serde_json::json!({ "n": n })))
/// }
/// # use futures::StreamExt;
/// ```
#[doc(alias = "Flux")]
pub struct ReactiveStream {
    items: Items,
}

impl ReactiveStream {
    /// A stream of values that serialize.
    pub fn new<S, T>(items: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
        T: Serialize,
    {
        ReactiveStream {
            items: items.map(|item| serialize(&item)).boxed(),
        }
    }

    /// A stream of results: an `Err` ends the response as an error, with its `Display` logged.
    pub fn try_new<S, T, E>(items: S) -> Self
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: fmt::Display,
    {
        ReactiveStream {
            items: items
                .map(|item| {
                    item.map_err(|error| error.to_string())
                        .and_then(|item| serialize(&item))
                })
                .boxed(),
        }
    }
}

fn serialize<T: Serialize>(item: &T) -> Result<Item, String> {
    let json =
        serde_json::to_vec(item).map_err(|error| format!("an item did not serialize: {error}"))?;
    Ok(Item {
        is_string: json.first() == Some(&b'"'),
        json: Bytes::from(json),
    })
}

/// How a [`ReactiveStream`] is written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Sse,
    JsonLines(HeaderValue),
    Collect,
}

/// J.136–J.141: the first acceptable candidate that streams decides; else collect.
fn negotiate(request: &AsyncRequest) -> Mode {
    let candidates = request.produces().or(request.accept());
    let Some(candidates) = candidates.and_then(|value| value.to_str().ok()) else {
        return Mode::Collect;
    };
    let mut ranges: Vec<(f32, &str)> = candidates
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
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, essence) in ranges {
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
    Mode::Collect
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
    fn start(self, manager: AsyncManager, request: AsyncRequest) -> ResponseFuture {
        let mode = negotiate(&request);
        let items = self.items;
        let (headers, heartbeat, frames): (
            HeaderMap,
            _,
            BoxStream<'static, Result<Bytes, String>>,
        ) = match mode {
            Mode::Collect => {
                let collect = WebAsyncTask::from_future(collect(items));
                return collect.start(manager, request);
            }
            Mode::Sse => (
                sse_headers(),
                Some((DEFAULT_HEARTBEAT, SseEvent::heartbeat().into_bytes())),
                items
                    .map(|item| {
                        item.map(|item| {
                            let event = if item.is_string {
                                // A JSON string: its text, unquoted (J.138).
                                let text: String =
                                    serde_json::from_slice(&item.json).unwrap_or_default();
                                SseEvent::data(text)
                            } else {
                                SseEvent::data(String::from_utf8_lossy(&item.json))
                            };
                            event.into_bytes()
                        })
                    })
                    .boxed(),
            ),
            Mode::JsonLines(content_type) => {
                let mut headers = HeaderMap::with_capacity(1);
                headers.insert(CONTENT_TYPE, content_type);
                let lines = items
                    .map(|item| {
                        item.map(|item| {
                            let mut line = BytesMut::with_capacity(item.json.len() + 1);
                            line.put_slice(&item.json);
                            line.put_u8(b'\n');
                            line.freeze()
                        })
                    })
                    .boxed();
                (headers, None, lines)
            }
        };
        let response = manager.stream_response(
            &request,
            StreamSpec {
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
        ResponseFuture::ready(response)
    }
}

/// J.135: every item, in order, as one JSON array.
async fn collect(mut items: Items) -> Response {
    let mut array = BytesMut::from(&b"["[..]);
    let mut first = true;
    while let Some(item) = items.next().await {
        match item {
            Ok(item) => {
                if !first {
                    array.put_u8(b',');
                }
                first = false;
                array.put_slice(&item.json);
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
    frames: BoxStream<'static, Result<Bytes, String>>,
    stopped: bool,
}

impl Source for StreamSource {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, String>>> {
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

    fn finish(&mut self, _failure: Option<&crate::AsyncError>) {
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
        WebAsyncTask::from_future(self.future).into_response()
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

    #[test]
    fn negotiation_follows_spring() {
        assert_eq!(negotiate(&request("text/event-stream")), Mode::Sse);
        assert_eq!(
            negotiate(&request("application/x-ndjson")),
            Mode::JsonLines(HeaderValue::from_static("application/x-ndjson"))
        );
        assert_eq!(
            negotiate(&request("application/jsonl")),
            Mode::JsonLines(HeaderValue::from_static("application/jsonl"))
        );
        assert_eq!(
            negotiate(&request("application/vnd.myapp.v1+x-ndjson")),
            Mode::JsonLines(HeaderValue::from_static(
                "application/vnd.myapp.v1+x-ndjson"
            ))
        );
        assert_eq!(
            negotiate(&request("application/*+x-ndjson")),
            Mode::JsonLines(HeaderValue::from_static("application/x-ndjson"))
        );
        assert_eq!(negotiate(&request("application/json")), Mode::Collect);
        assert_eq!(negotiate(&request("*/*")), Mode::Collect);
        assert_eq!(
            negotiate(&request("application/json;q=0.5, text/event-stream")),
            Mode::Sse
        );
        assert_eq!(
            negotiate(&request("text/event-stream;q=0, application/json")),
            Mode::Collect
        );
        let plain = AsyncRequest::new(Method::GET, Uri::from_static("/"));
        assert_eq!(negotiate(&plain), Mode::Collect);
    }

    #[test]
    fn produces_wins_over_accept() {
        let request = request("application/json")
            .with_produces(Some(HeaderValue::from_static("text/event-stream")));
        assert_eq!(negotiate(&request), Mode::Sse);
    }
}
