//! Byte-exact Server-Sent Events over real HTTP: every case of the contract's Appendix W
//! (W1–W12, Spring's `SseEmitterTests` and friends), read as raw bytes off the connection.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_mvc::prelude::*;
use async_mvc_tests::{client, eventually, within, TestServer};
use axum::{http::header::CONTENT_TYPE, routing::get as route_get, Router};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How a test sends to its emitter.
type Script = Arc<dyn Fn(SseEmitter) + Send + Sync>;

/// Serves one SSE stream whose emitter `script` drives (from a task of its own, after the
/// handler returned), and returns the response body exactly as it came off the wire.
async fn body_of(script: impl Fn(SseEmitter) + Send + Sync + 'static) -> Vec<u8> {
    let manager = AsyncManager::new(AsyncConfig::new());
    let script: Script = Arc::new(script);
    let app = Router::new()
        .route(
            "/sse",
            route_get(move || {
                let script = script.clone();
                async move {
                    let emitter = SseEmitter::builder().no_heartbeat().build();
                    let sender = emitter.clone();
                    tokio::spawn(async move { script(sender) });
                    emitter
                }
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let response = within("response", client().get(server.url("/sse")).send())
        .await
        .unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    let body = within("body", response.bytes()).await.unwrap().to_vec();
    eventually("the stream is over", || manager.metrics().in_flight == 0).await;
    body
}

/// Sends `events` in order, then completes.
async fn wire(events: Vec<SseEvent>) -> String {
    let body = body_of(move |emitter| {
        let events = events.clone();
        tokio::spawn(async move {
            for event in &events {
                emitter.send_event(event).await.unwrap();
            }
            emitter.complete();
        });
    })
    .await;
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn w1_send_writes_one_data_field() {
    let body = body_of(|emitter| {
        tokio::spawn(async move {
            emitter.send("foo").await.unwrap();
            emitter.complete();
        });
    })
    .await;
    assert_eq!(body, b"data:foo\n\n");
    assert_eq!(
        wire(vec![SseEvent::builder().data("foo").build().unwrap()]).await,
        "data:foo\n\n"
    );
    assert_eq!(wire(vec![SseEvent::data("foo")]).await, "data:foo\n\n");
}

#[tokio::test]
async fn w2_each_data_call_adds_its_own_line() {
    let event = SseEvent::builder().data("foo").data("bar").build().unwrap();
    assert_eq!(wire(vec![event]).await, "data:foo\ndata:bar\n\n");
}

#[tokio::test]
async fn w3_line_breaks_in_data_split_into_data_lines() {
    for nl in ["\n", "\r", "\r\n"] {
        let text = format!("foo{nl}bar{nl}baz");
        let event = SseEvent::builder().data(&text).build().unwrap();
        assert_eq!(
            wire(vec![event]).await,
            "data:foo\ndata:bar\ndata:baz\n\n",
            "{nl:?}"
        );
        // The same through `SseEmitter::send`.
        let body = body_of(move |emitter| {
            let text = text.clone();
            tokio::spawn(async move {
                emitter.send(&text).await.unwrap();
                emitter.complete();
            });
        })
        .await;
        assert_eq!(body, b"data:foo\ndata:bar\ndata:baz\n\n", "{nl:?}");
    }
}

#[tokio::test]
async fn w4_fields_keep_the_order_they_were_set_in() {
    let event = SseEvent::builder()
        .comment("blah")
        .event("test")
        .retry(Duration::from_millis(5000))
        .id("1")
        .data("foo")
        .build()
        .unwrap();
    assert_eq!(
        wire(vec![event]).await,
        ":blah\nevent:test\nretry:5000\nid:1\ndata:foo\n\n"
    );
}

#[tokio::test]
async fn w5_data_lines_in_the_middle_stay_in_the_middle() {
    let event = SseEvent::builder()
        .comment("blah")
        .data("foo")
        .data("bar")
        .event("test")
        .retry(Duration::from_millis(5000))
        .id("1")
        .build()
        .unwrap();
    assert_eq!(
        wire(vec![event]).await,
        ":blah\ndata:foo\ndata:bar\nevent:test\nretry:5000\nid:1\n\n"
    );
}

#[tokio::test]
async fn w6_a_multi_line_comment_becomes_one_comment_line_per_line() {
    let event = SseEvent::builder()
        .comment("foo\nbar\nbaz")
        .data("payload")
        .build()
        .unwrap();
    assert_eq!(
        wire(vec![event]).await,
        ":foo\n:bar\n:baz\ndata:payload\n\n"
    );
}

#[derive(Serialize)]
struct Person {
    id: u32,
    name: &'static str,
}

#[tokio::test]
async fn w7_json_data_objects_are_written_compactly() {
    let event = SseEvent::builder()
        .comment("a test")
        .event("update")
        .id("1")
        .retry(Duration::from_millis(5000))
        .json_data(&Person { id: 1, name: "Joe" })
        .json_data(&Person {
            id: 2,
            name: "John",
        })
        .build()
        .unwrap();
    assert_eq!(
        wire(vec![event]).await,
        ":a test\nevent:update\nid:1\nretry:5000\ndata:{\"id\":1,\"name\":\"Joe\"}\ndata:{\"id\":2,\"name\":\"John\"}\n\n"
    );
    // `SseEmitter::send` of an object is one JSON data line too.
    let body = body_of(|emitter| {
        tokio::spawn(async move {
            emitter.send(&Person { id: 1, name: "Joe" }).await.unwrap();
            emitter.complete();
        });
    })
    .await;
    assert_eq!(body, b"data:{\"id\":1,\"name\":\"Joe\"}\n\n");
}

#[tokio::test]
async fn w8_a_stream_of_strings_as_sse() {
    let events = ["foo", "bar", "baz"].map(SseEvent::data).to_vec();
    assert_eq!(wire(events).await, "data:foo\n\ndata:bar\n\ndata:baz\n\n");

    let app = Router::new()
        .route(
            "/flux",
            route_get(|| async {
                ReactiveStream::new(futures::stream::iter(["foo", "bar", "baz"]))
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestServer::start(app).await;
    let response = within(
        "response",
        client()
            .get(server.url("/flux"))
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(
        within("body", response.text()).await.unwrap(),
        "data:foo\n\ndata:bar\n\ndata:baz\n\n"
    );
}

#[tokio::test]
async fn w9_events_with_ids() {
    let events = [("1", "foo"), ("2", "bar"), ("3", "baz")]
        .map(|(id, data)| SseEvent::builder().id(id).data(data).build().unwrap())
        .to_vec();
    assert_eq!(
        wire(events).await,
        "id:1\ndata:foo\n\nid:2\ndata:bar\n\nid:3\ndata:baz\n\n"
    );
}

#[tokio::test]
async fn w10_view_fragments_with_tabs_and_line_breaks() {
    let fragment = |name: &str, model: &str| {
        SseEvent::builder()
            .event(name)
            .data(format!("<p>\n\tHello {model}\n</p>"))
            .build()
            .unwrap()
    };
    assert_eq!(
        wire(vec![fragment("fragment1", "Foo"), fragment("fragment2", "Bar")]).await,
        "event:fragment1\ndata:<p>\ndata:\tHello Foo\ndata:</p>\n\nevent:fragment2\ndata:<p>\ndata:\tHello Bar\ndata:</p>\n\n"
    );
    // Spring writes this line as `data: and Bar`, which an SSE parser reads back as "and Bar"
    // (it strips one leading space). Our encoder is lossless: a value that starts with a space
    // gets one extra space after the colon, so the client gets " and Bar" back.
    assert_eq!(
        wire(vec![fragment("fragment1", "Foo\n and Bar")]).await,
        "event:fragment1\ndata:<p>\ndata:\tHello Foo\ndata:  and Bar\ndata:</p>\n\n"
    );
}

/// A raw `GET path` with `Connection: close`; nothing read yet.
async fn connect(server: &TestServer, path: &str) -> TcpStream {
    let mut socket = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        server.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

/// The data chunks of a raw chunked response, and whether it ended with the last chunk.
fn chunks_of(raw: Vec<u8>) -> (Vec<Vec<u8>>, bool) {
    let text = String::from_utf8(raw).unwrap();
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    let mut chunks = Vec::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (chunks, false);
        };
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return (chunks, after == "\r\n");
        }
        chunks.push(after.as_bytes()[..size].to_vec());
        rest = &after[size + 2..];
    }
}

/// The response's data chunks off a raw connection, and whether it ended cleanly.
async fn raw_chunks(server: &TestServer, path: &str) -> (Vec<Vec<u8>>, bool) {
    let mut socket = connect(server, path).await;
    let mut raw = Vec::new();
    within("EOF", socket.read_to_end(&mut raw)).await.unwrap();
    chunks_of(raw)
}

#[tokio::test]
async fn w11_an_empty_event_writes_nothing() {
    let empty = SseEvent::builder().build().unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.bytes().len(), 0);

    let app = Router::new()
        .route(
            "/empty",
            route_get(|| async {
                let emitter = SseEmitter::builder().no_heartbeat().build();
                let sender = emitter.clone();
                tokio::spawn(async move {
                    let empty = SseEvent::builder().build().unwrap();
                    sender.send_event(&empty).await.unwrap();
                    sender.try_send_event(&empty).unwrap();
                    sender.complete();
                });
                emitter
            }),
        )
        .route(
            "/between",
            route_get(|| async {
                let emitter = SseEmitter::builder().no_heartbeat().build();
                let empty = SseEvent::builder().build().unwrap();
                emitter.send("a").await.unwrap();
                emitter.send_event(&empty).await.unwrap();
                emitter.send("b").await.unwrap();
                emitter.complete();
                emitter
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestServer::start(app).await;
    assert_eq!(
        raw_chunks(&server, "/empty").await,
        (vec![], true),
        "no bytes, no chunk"
    );
    let (chunks, terminated) = raw_chunks(&server, "/between").await;
    assert_eq!(chunks.concat(), b"data:a\n\ndata:b\n\n");
    assert!(terminated);
}

#[tokio::test]
async fn w12_a_heartbeat_is_an_empty_comment() {
    assert_eq!(SseEvent::heartbeat().bytes().as_ref(), b":\n\n");
    assert_eq!(
        SseEvent::builder()
            .comment("")
            .build()
            .unwrap()
            .bytes()
            .as_ref(),
        b":\n\n"
    );
    assert_eq!(wire(vec![SseEvent::heartbeat()]).await, ":\n\n");

    // The idle heartbeat of an SseEmitter is the same three bytes, in a chunk of its own.
    let emitters = Arc::new(Mutex::new(Vec::<SseEmitter>::new()));
    let app = Router::new()
        .route("/idle", {
            let emitters = emitters.clone();
            route_get(move || {
                let emitter = SseEmitter::builder()
                    .heartbeat(Duration::from_millis(20))
                    .no_timeout()
                    .build();
                emitters.lock().unwrap().push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(AsyncConfig::new());
    let server = TestServer::start(app).await;
    let mut socket = connect(&server, "/idle").await;
    let mut raw = Vec::new();
    within("a heartbeat arrives", async {
        let mut buf = [0; 1024];
        while !raw.windows(8).any(|window| window == b"3\r\n:\n\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream closed early");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let emitter = emitters.lock().unwrap()[0].clone();
    emitter.complete();
    within("EOF", socket.read_to_end(&mut raw)).await.unwrap();
    let collected = chunks_of(raw);
    let (chunks, terminated) = collected;
    assert!(terminated);
    assert!(!chunks.is_empty(), "at least one heartbeat");
    assert!(
        chunks.iter().all(|chunk| chunk == b":\n\n"),
        "each heartbeat is exactly `:\\n\\n`, in a chunk of its own: {chunks:?}"
    );
}
