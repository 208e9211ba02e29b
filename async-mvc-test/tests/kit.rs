//! The kit's own tests: each capability in process, under paused (virtual) time where a timer
//! is involved, and the same calls over loopback HTTP. No test sleeps on the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use async_mvc::{
    AsyncConfig, AsyncManager, DeferredResult, LastEventId, ResponseBodyEmitter, SseBroadcaster,
    SseEmitter, SseEvent,
};
use async_mvc_test::{capture, TestClient};
use axum::{extract::State, http::StatusCode, routing::get, Router};

fn long_poll() -> Router {
    Router::new().route(
        "/poll",
        get(|| async {
            DeferredResult::<StatusCode>::with_timeout_result(
                Duration::from_secs(30),
                StatusCode::NOT_MODIFIED,
            )
        }),
    )
}

#[tokio::test(start_paused = true)]
async fn a_30_second_timeout_fires_in_virtual_time() {
    let client = TestClient::with_config(long_poll(), AsyncConfig::new());
    let wall = Instant::now();
    let virtual_start = tokio::time::Instant::now();
    let poll = client.get("/poll").start();
    assert!(poll.async_started().await);
    assert!(!poll.is_complete());
    let answer = poll.response().await;
    assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        tokio::time::Instant::now() - virtual_start,
        Duration::from_secs(30),
        "exactly the timeout, in virtual time"
    );
    assert!(wall.elapsed() < Duration::from_secs(5));
    let metrics = client.manager().unwrap().metrics();
    assert_eq!((metrics.timed_out, metrics.in_flight), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_value_set_later_completes_the_started_request() {
    let waiting: DeferredResult<String> = DeferredResult::new();
    let handle = waiting.clone();
    let client = TestClient::with_config(
        Router::new().route("/wait", get(move || std::future::ready(waiting.clone()))),
        AsyncConfig::new(),
    );
    let request = client.get("/wait").start();
    assert!(request.async_started().await);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!request.is_complete());
    assert!(handle.set_result("ten seconds later".to_owned()));
    assert_eq!(request.response().await.text(), "ten seconds later");
}

#[tokio::test]
async fn a_response_ready_at_once_did_not_start_async_processing() {
    let client = TestClient::with_config(
        Router::new().route("/plain", get(|| async { "plain" })),
        AsyncConfig::new(),
    );
    let request = client.get("/plain").start();
    assert!(!request.async_started().await);
    assert_eq!(request.response().await.text(), "plain");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_is_a_disconnect() {
    let client = TestClient::with_config(long_poll(), AsyncConfig::new());
    let request = client.get("/poll").start();
    assert!(request.async_started().await);
    request.disconnect();
    let manager = client.manager().unwrap().clone();
    for _ in 0..100 {
        if manager.metrics().disconnected == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let metrics = manager.metrics();
    assert_eq!((metrics.disconnected, metrics.in_flight), (1, 0));
}

/// A topic with replay: `GET /events` resumes after `Last-Event-ID`.
fn events(hub: SseBroadcaster) -> Router {
    Router::new()
        .route(
            "/events",
            get(
                |State(hub): State<SseBroadcaster>, last: Option<LastEventId>| async move {
                    hub.subscribe(last.as_ref().map(LastEventId::as_str))
                },
            ),
        )
        .with_state(hub)
}

fn numbered(n: u32) -> SseEvent {
    SseEvent::builder()
        .id(n.to_string())
        .event("tick")
        .data(format!("{{\"n\":{n}}}"))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_sse_reconnect_resumes_after_the_last_event_id() {
    let hub = SseBroadcaster::with_replay(100);
    let client = TestClient::with_config(events(hub.clone()), AsyncConfig::new());
    let mut probe = client.get("/events").sse().await;
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(probe.headers()["content-type"], "text/event-stream");
    for n in 1..=2 {
        hub.publish(&numbered(n));
    }
    let seen = probe.take(2).await;
    assert_eq!(seen[1].event, "tick");
    assert_eq!(seen[1].json::<serde_json::Value>()["n"], 2);
    // Missed while away: 3 and 4.
    let last = probe.last_event_id().to_owned();
    assert_eq!(last, "2");
    let probe = {
        let resumed = client.get("/events").last_event_id(&last);
        hub.publish(&numbered(3));
        hub.publish(&numbered(4));
        drop(probe);
        resumed
    };
    let mut probe = probe.sse().await;
    let missed = probe.events_until(|event| event.id == "4").await;
    let ids: Vec<&str> = missed.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids, ["3", "4"]);
    // And `reconnect` sends the last id itself.
    hub.publish(&numbered(5));
    assert_eq!(probe.next_event().await.unwrap().id, "5");
    let mut again = probe.reconnect().await;
    hub.publish(&numbered(6));
    assert_eq!(
        again.next_event().await.unwrap().id,
        "6",
        "nothing replayed twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_is_not_an_event_and_comes_in_virtual_time() {
    let client = TestClient::with_config(
        Router::new().route(
            "/quiet",
            get(|| async {
                SseEmitter::builder()
                    .heartbeat(Duration::from_secs(15))
                    .timeout(Duration::from_secs(60))
                    .build()
            }),
        ),
        AsyncConfig::new(),
    );
    let started = tokio::time::Instant::now();
    let mut chunks = client.get("/quiet").stream().await;
    assert_eq!(
        chunks.next_chunk().await.unwrap(),
        ":\n\n",
        "the first heartbeat"
    );
    assert_eq!(
        tokio::time::Instant::now() - started,
        Duration::from_secs(15)
    );
    let mut events = client.get("/quiet").sse().await;
    assert!(
        events.next_event().await.is_none(),
        "only heartbeats until the timeout ends it"
    );
    assert_eq!(
        tokio::time::Instant::now() - started,
        Duration::from_secs(75)
    );
}

#[tokio::test]
async fn an_emitter_is_captured_without_http() {
    let emitter = ResponseBodyEmitter::new();
    let sender = emitter.clone();
    tokio::spawn(async move {
        for n in 1..=3 {
            sender.send_bytes(format!("{{\"n\":{n}}}\n")).await.unwrap();
        }
        sender.complete();
    });
    let mut lines = capture(emitter).stream().await;
    assert_eq!(lines.status(), StatusCode::OK);
    for n in 1..=3 {
        let line: serde_json::Value = lines.next_json().await.unwrap();
        assert_eq!(line["n"], n);
    }
    assert!(lines.next_line().await.is_none());
}

#[tokio::test]
async fn the_same_calls_work_over_loopback_http() {
    let manager = AsyncManager::new(AsyncConfig::new());
    let hub = SseBroadcaster::with_replay(10);
    let routes = events(hub.clone())
        .route(
            "/poll",
            get(|| async {
                DeferredResult::<StatusCode>::with_timeout_result(
                    Duration::from_millis(50),
                    StatusCode::NOT_MODIFIED,
                )
            }),
        )
        .route(
            "/echo",
            axum::routing::post(|body: String| async move { body }),
        );
    let client = TestClient::with_config(routes, manager)
        .over_http()
        .await
        .unwrap();
    assert!(client.address().unwrap().ip().is_loopback());
    let echoed = client.post("/echo").body("over the wire").send().await;
    assert_eq!(
        (echoed.status(), echoed.text().as_str()),
        (StatusCode::OK, "over the wire")
    );
    let poll = client.get("/poll").start();
    assert!(poll.async_started().await);
    assert_eq!(poll.response().await.status(), StatusCode::NOT_MODIFIED);
    let mut probe = client.get("/events").sse().await;
    hub.publish(&numbered(1));
    assert_eq!(probe.next_event().await.unwrap().id, "1");
    let json = client
        .post("/echo")
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await;
    assert_eq!(json.json::<serde_json::Value>()["a"], 1);
}
