//! Our SSE streams read by an independent client, the `eventsource-stream` crate (a parser of
//! the WHATWG "event stream interpretation" algorithm) over reqwest: it gets back exactly the
//! events that were sent — ids, event names, retry, multi-line and non-ASCII data, leading
//! spaces — and a broadcaster's replay after `Last-Event-ID`.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::time::Duration;

use async_mvc::prelude::*;
use async_mvc_tests::{client, eventually, within, TestServer};
use axum::{http::header::CONTENT_TYPE, routing::get as route_get, Router};
use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde::Serialize;

/// Reads every event of the stream at `url` (with `last_event_id`, if any) until it ends.
async fn read_events(url: String, last_event_id: Option<&str>) -> Vec<Event> {
    let mut request = client().get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = within("response", request.send()).await.unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    let events = response.bytes_stream().eventsource();
    within(
        "the stream ends",
        events.map(|event| event.unwrap()).collect(),
    )
    .await
}

/// What a WHATWG client reports for one event.
fn expected(event: &str, data: &str, id: &str, retry: Option<Duration>) -> Event {
    Event {
        event: event.to_owned(),
        data: data.to_owned(),
        id: id.to_owned(),
        retry,
    }
}

#[derive(Serialize)]
struct Order {
    id: u32,
    item: &'static str,
    note: &'static str,
}

#[tokio::test]
async fn an_independent_parser_gets_back_exactly_the_events_sent() {
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route(
            "/events",
            route_get(|| async {
                let emitter = SseEmitter::builder().no_heartbeat().build();
                let sender = emitter.clone();
                tokio::spawn(async move {
                    let events = [
                        SseEvent::builder().id("1").data("plain").build(),
                        SseEvent::builder()
                            .id("2")
                            .event("multi")
                            .data("line one\nline two\r\nline three\rline four")
                            .build(),
                        SseEvent::builder()
                            .id("3")
                            .event("ünïcødé")
                            .data("Grüße, 世界 🎉 — ok")
                            .build(),
                        SseEvent::builder()
                            .id("4")
                            .data(" leading space")
                            .data("  two spaces")
                            .build(),
                        SseEvent::builder().id("5").data("").build(),
                        SseEvent::builder().id("6").data("trailing break\n").build(),
                        SseEvent::builder()
                            .id("7")
                            .data("key: value")
                            .comment("comments are skipped")
                            .retry(Duration::from_millis(2500))
                            .build(),
                        Ok(SseEvent::heartbeat()),
                        SseEvent::builder().comment("comment only").build(),
                        SseEvent::builder()
                            .id("8")
                            .json_data(&Order {
                                id: 8,
                                item: "tea",
                                note: "two\nlines",
                            })
                            .build(),
                        // No id: the client keeps the last one it saw.
                        SseEvent::builder().event("noid").data("x").build(),
                    ];
                    for event in events {
                        sender.send_event(&event.unwrap()).await.unwrap();
                    }
                    sender.send("sent\nas a value").await.unwrap();
                    sender
                        .send(&Order {
                            id: 9,
                            item: "café",
                            note: "",
                        })
                        .await
                        .unwrap();
                    sender.complete();
                });
                emitter
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let events = read_events(server.url("/events"), None).await;
    assert_eq!(
        events,
        [
            expected("message", "plain", "1", None),
            expected(
                "multi",
                "line one\nline two\nline three\nline four",
                "2",
                None
            ),
            expected("ünïcødé", "Grüße, 世界 🎉 — ok", "3", None),
            expected("message", " leading space\n  two spaces", "4", None),
            expected("message", "", "5", None),
            expected("message", "trailing break\n", "6", None),
            expected(
                "message",
                "key: value",
                "7",
                Some(Duration::from_millis(2500))
            ),
            expected(
                "message",
                "{\"id\":8,\"item\":\"tea\",\"note\":\"two\\nlines\"}",
                "8",
                None
            ),
            expected("noid", "x", "8", None),
            expected("message", "sent\nas a value", "8", None),
            expected(
                "message",
                "{\"id\":9,\"item\":\"café\",\"note\":\"\"}",
                "8",
                None
            ),
        ]
    );
    eventually("the stream is over", || manager.metrics().in_flight == 0).await;
}

fn numbered(id: u32) -> SseEvent {
    SseEvent::builder()
        .id(id.to_string())
        .event("update")
        .data(format!("update {id}\nsecond line"))
        .build()
        .unwrap()
}

fn numbered_expected(ids: impl IntoIterator<Item = u32>) -> Vec<Event> {
    ids.into_iter()
        .map(|id| {
            expected(
                "update",
                &format!("update {id}\nsecond line"),
                &id.to_string(),
                None,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_client_resuming_with_last_event_id_gets_the_replay_then_live_events() {
    let manager = AsyncManager::new(AsyncConfig::new());
    let hub = SseBroadcaster::with_replay(10);
    let app = Router::new()
        .route("/hub", {
            let hub = hub.clone();
            route_get(move |last: Option<LastEventId>| {
                std::future::ready(hub.subscribe(last.as_ref().map(LastEventId::as_str)))
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    for id in 1..=5 {
        hub.publish(&numbered(id));
    }

    let resumed = tokio::spawn(read_events(server.url("/hub"), Some("3")));
    let unknown = tokio::spawn(read_events(server.url("/hub"), Some("999")));
    eventually("two subscribers", || hub.subscribers() == 2).await;
    assert_eq!(hub.publish(&numbered(6)), 2);
    hub.complete_all(None);

    assert_eq!(
        within("resumed", resumed).await.unwrap(),
        numbered_expected([4, 5, 6]),
        "exactly 4, 5, then live 6: no gap, no duplicate"
    );
    assert_eq!(
        within("unknown", unknown).await.unwrap(),
        numbered_expected(1..=6),
        "an unknown id replays the whole buffer"
    );
    eventually("the streams are over", || manager.metrics().in_flight == 0).await;
}

#[tokio::test]
async fn a_reactive_stream_reads_as_one_event_per_item() {
    let app = Router::new()
        .route(
            "/flux",
            route_get(|| async {
                ReactiveStream::new(futures::stream::iter([
                    serde_json::json!("foo"),
                    serde_json::json!("multi\nline"),
                    serde_json::json!({"value": "bär"}),
                ]))
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestServer::start(app).await;
    assert_eq!(
        read_events(server.url("/flux"), None).await,
        [
            expected("message", "foo", "", None),
            expected("message", "multi\nline", "", None),
            expected("message", "{\"value\":\"bär\"}", "", None),
        ]
    );
}
