//! `ReactiveStream` negotiation over real HTTP, as Spring's `ReactiveTypeHandler` decides it
//! (checklist J.136–J.142, W9): a preset `Content-Type` first, strings streamed as text, and
//! streams of `SseEvent`s written event by event.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{convert::Infallible, time::Duration};

use async_mvc::{prelude::*, AsyncMetrics};
use async_mvc_test::TestClient;
use async_mvc_tests::{eventually, within};
use axum::{
    http::{
        header::{ACCEPT, CONTENT_TYPE},
        HeaderValue, StatusCode,
    },
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use futures::{stream, StreamExt};
use serde::Serialize;

#[derive(Serialize)]
struct Value {
    value: &'static str,
}

fn values() -> impl futures::Stream<Item = Value> + Send + 'static {
    stream::iter([Value { value: "foo" }, Value { value: "bar" }])
}

fn app(manager: &AsyncManager) -> Router {
    Router::new()
        // A wrapper presets the media type (gh-35130).
        .route(
            "/preset/sse",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/event-stream")],
                    ReactiveStream::new(values()),
                )
            }),
        )
        // A response built around the stream presets it.
        .route(
            "/preset/ndjson",
            get(|| async {
                let mut response: Response = ReactiveStream::new(values()).into_response();
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                );
                response
            }),
        )
        .route(
            "/preset/text",
            get(|| async {
                (
                    StatusCode::ACCEPTED,
                    [(CONTENT_TYPE, "text/csv")],
                    ReactiveStream::new(stream::iter(["a,b\n", "1,2\n"])),
                )
            }),
        )
        .route(
            "/strings",
            get(|| async { ReactiveStream::new(stream::iter(["foo", "bar", "baz"])) }),
        )
        .route(
            "/owned-strings",
            get(|| async {
                ReactiveStream::new(
                    stream::iter(["The quick ", "brown fox ", "jumps"]).map(str::to_owned),
                )
            }),
        )
        .route("/values", get(|| async { ReactiveStream::new(values()) }))
        .route(
            "/events",
            get(|| async {
                ReactiveStream::events(stream::iter(["foo", "bar", "baz"]).enumerate().map(
                    |(n, data)| {
                        SseEvent::builder()
                            .id((n + 1).to_string())
                            .data(data)
                            .build()
                            .unwrap()
                    },
                ))
            }),
        )
        .route(
            "/full-events",
            get(|| async {
                ReactiveStream::try_events(stream::iter([Ok::<_, Infallible>(
                    SseEvent::builder()
                        .comment("blah")
                        .event("test")
                        .retry(Duration::from_millis(5000))
                        .id("1")
                        .data("foo")
                        .build()
                        .unwrap(),
                )]))
            }),
        )
        .route(
            "/failing-events",
            get(|| async {
                ReactiveStream::try_events(stream::iter([
                    Ok(SseEvent::data("first")),
                    Err("the source failed"),
                    Ok(SseEvent::data("never")),
                ]))
            }),
        )
        .async_support(manager.clone())
}

async fn start() -> (TestClient, AsyncManager) {
    let manager = AsyncManager::new(AsyncConfig::new());
    (TestClient::new(app(&manager)), manager)
}

/// Status, `Content-Type` and body of `GET path` with `accept` (none if `None`).
async fn fetch(server: &TestClient, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut request = server.get(path);
    if let Some(accept) = accept {
        request = request.header(ACCEPT.as_str(), accept);
    }
    let response = within("response", request.send()).await;
    let status = response.status().as_u16();
    let content_type = response
        .header(CONTENT_TYPE.as_str())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text())
}

async fn settled(manager: &AsyncManager) -> AsyncMetrics {
    eventually("every stream has ended", || {
        manager.metrics().in_flight == 0
    })
    .await;
    manager.metrics()
}

#[tokio::test]
async fn a_preset_content_type_chooses_the_format_whatever_the_accept_header() {
    let (server, manager) = start().await;
    for accept in [None, Some("application/json"), Some("*/*")] {
        assert_eq!(
            fetch(&server, "/preset/sse", accept).await,
            (
                200,
                "text/event-stream".to_owned(),
                "data:{\"value\":\"foo\"}\n\ndata:{\"value\":\"bar\"}\n\n".to_owned()
            ),
            "{accept:?}"
        );
        assert_eq!(
            fetch(&server, "/preset/ndjson", accept).await,
            (
                200,
                "application/x-ndjson".to_owned(),
                "{\"value\":\"foo\"}\n{\"value\":\"bar\"}\n".to_owned()
            ),
            "{accept:?}"
        );
    }
    // A preset text type: the strings as they come, under that type and the wrapper's status.
    assert_eq!(
        fetch(&server, "/preset/text", Some("application/json")).await,
        (202, "text/csv".to_owned(), "a,b\n1,2\n".to_owned())
    );
    assert_eq!(settled(&manager).await.completed, 7);
}

#[tokio::test]
async fn strings_stream_as_text_where_no_streaming_type_is_asked_for() {
    let (server, manager) = start().await;
    let plain = "text/plain;charset=UTF-8";
    for accept in [None, Some("*/*"), Some("text/plain"), Some("text/*")] {
        assert_eq!(
            fetch(&server, "/strings", accept).await,
            (200, plain.to_owned(), "foobarbaz".to_owned()),
            "{accept:?}"
        );
    }
    assert_eq!(
        fetch(&server, "/owned-strings", None).await,
        (
            200,
            plain.to_owned(),
            "The quick brown fox jumps".to_owned()
        )
    );
    // A `text/...` type the client names is the response's.
    assert_eq!(
        fetch(&server, "/strings", Some("text/html, */*;q=0.8")).await,
        (
            200,
            "text/html;charset=UTF-8".to_owned(),
            "foobarbaz".to_owned()
        )
    );
    // Streaming types keep their format; values keep the JSON array.
    assert_eq!(
        fetch(&server, "/strings", Some("text/event-stream"))
            .await
            .2,
        "data:foo\n\ndata:bar\n\ndata:baz\n\n"
    );
    assert_eq!(
        fetch(&server, "/strings", Some("application/x-ndjson"))
            .await
            .2,
        "\"foo\"\n\"bar\"\n\"baz\"\n"
    );
    assert_eq!(
        fetch(&server, "/values", Some("text/plain")).await,
        (
            200,
            "application/json".to_owned(),
            "[{\"value\":\"foo\"},{\"value\":\"bar\"}]".to_owned()
        )
    );
    assert_eq!(settled(&manager).await.in_flight, 0);
}

#[tokio::test]
async fn a_stream_of_events_writes_each_event_as_built() {
    let (server, manager) = start().await;
    for accept in [None, Some("application/json"), Some("text/event-stream")] {
        assert_eq!(
            fetch(&server, "/events", accept).await,
            (
                200,
                "text/event-stream".to_owned(),
                "id:1\ndata:foo\n\nid:2\ndata:bar\n\nid:3\ndata:baz\n\n".to_owned() // W9
            ),
            "{accept:?}"
        );
    }
    assert_eq!(
        fetch(&server, "/full-events", None).await.2,
        ":blah\nevent:test\nretry:5000\nid:1\ndata:foo\n\n" // W4
    );
    assert_eq!(settled(&manager).await.completed, 4);
}

#[tokio::test]
async fn a_failing_event_stream_is_broken_after_what_was_sent() {
    let (server, manager) = start().await;
    let mut body = within("response", server.get("/failing-events").stream()).await;
    assert_eq!(body.status(), StatusCode::OK);
    assert_eq!(body.headers()[CONTENT_TYPE], "text/event-stream");
    let mut received = Vec::new();
    let mut broken = false;
    while let Some(chunk) = within("chunk", body.try_next_chunk()).await {
        match chunk {
            Ok(chunk) => received.extend_from_slice(&chunk),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    assert_eq!(received, b"data:first\n\n");
    assert!(broken, "the stream must end as an error, not cleanly");
    assert_eq!(settled(&manager).await.errors, 1);
}
