//! Hostile clients over real HTTP on loopback: malformed requests get a clear `4xx` (or a clean
//! close), stalled and non-reading clients are contained, and everyone else is served as usual.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_mvc::{AsyncConfig, EmitterError, RouterExt, SseBroadcaster, SseEmitter, SseEvent};
use async_mvc_examples::order_desk::{DemoConfig, OrderDesk};
use async_mvc_tests::{client, eventually, within, TestServer, WAIT_LIMIT};
use axum::{
    routing::{get, post},
    Json, Router,
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

/// Worker delays long enough that the demo's worker never touches an order during a test.
const QUIET: Duration = Duration::from_secs(3600);

/// The demo, quiet, with one order (`1`, a teapot) placed.
async fn demo() -> TestServer {
    let desk = OrderDesk::new(DemoConfig::new().packed_after(QUIET).shipped_after(QUIET));
    let server = TestServer::start(desk.router()).await;
    let created = client()
        .post(server.url("/api/orders"))
        .json(&json!({ "item": "teapot" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    server
}

/// A well-behaved client's request, on a fresh connection: order `1` is still served.
async fn assert_demo_healthy(server: &TestServer) {
    let response = client()
        .get(server.url("/api/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["item"], "teapot");
}

/// Sends `request` on a fresh connection — written from its own task, since the server may
/// answer and close before reading all of it — and reads until the server closes (or resets)
/// the connection. Returns the bytes read.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Vec<u8> {
    let socket = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let writer = tokio::spawn(async move {
        // A write error means the server closed first: that is what some cases expect.
        let _ = write.write_all(&request).await;
        write
    });
    let mut raw = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match within("the server answers and closes", read.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    raw
}

/// The status code of a raw HTTP/1.1 response, if any response arrived.
fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(line.get(..3)?).ok()?.parse().ok()
}

/// `GET target` with `Connection: close` and `extra` header lines.
fn get_request(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n").into_bytes()
}

/// `POST target` with a JSON content type and `body`.
fn post_json(target: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Asserts that a raw exchange answered with a `4xx` — `what` names the case.
fn assert_4xx(what: &str, raw: &[u8]) -> u16 {
    let status = status_of(raw).unwrap_or_else(|| {
        panic!(
            "{what}: no response, got {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    });
    assert!((400..500).contains(&status), "{what}: {status}");
    status
}

#[tokio::test]
async fn malformed_paths_and_query_strings_are_4xx_never_5xx() {
    let server = demo().await;
    let long = |n: usize| format!("/api/orders/{}", "a".repeat(n));
    let cases: Vec<(&str, String, Option<u16>)> = vec![
        // An invalid percent escape is taken literally: no such order.
        ("invalid escape", "/api/orders/%ZZ".into(), Some(404)),
        ("truncated escape", "/api/orders/%".into(), Some(404)),
        // A percent escape that decodes to invalid UTF-8: the `Path` extractor refuses it.
        ("non-UTF-8 escape", "/api/orders/%FF%FE".into(), Some(400)),
        ("NUL escape", "/api/orders/%00".into(), Some(404)),
        ("dot segments", "/../../etc/passwd".into(), None),
        (
            "negative after",
            "/api/orders/1/next?after=-1".into(),
            Some(400),
        ),
        (
            "text after",
            "/api/orders/1/next?after=abc".into(),
            Some(400),
        ),
        (
            "float after",
            "/api/orders/1/next?after=1.5".into(),
            Some(400),
        ),
        (
            "repeated after",
            "/api/orders/1/next?after=1&after=2".into(),
            Some(400),
        ),
        (
            "timeout over u64",
            "/api/orders/1/next?timeout_ms=99999999999999999999".into(),
            Some(400),
        ),
        (
            "bad query escape",
            "/api/orders/1/next?after=%FF".into(),
            Some(400),
        ),
        (
            "unknown order long poll",
            "/api/orders/%ZZ/next?after=0".into(),
            Some(404),
        ),
        // 8 KiB: the router answers.
        ("long path", long(8 * 1024), Some(404)),
        // Over hyper's URI limit (64 KiB): `414 URI Too Long`.
        ("overlong path", long(70_000), Some(414)),
        // Over hyper's buffer for a request head (~400 KiB): `431`.
        ("huge path", long(512 * 1024), Some(431)),
        // A request target with a control character: hyper refuses to parse it.
        ("control character", "/api/orders/\u{1}".into(), Some(400)),
    ];
    for (what, target, expected) in cases {
        let raw = exchange(server.addr, get_request(&target, "")).await;
        let status = assert_4xx(what, &raw);
        if let Some(expected) = expected {
            assert_eq!(status, expected, "{what}");
        }
        assert_demo_healthy(&server).await;
    }
    // The same through a real client, which encodes what it must.
    let http = client();
    for query in [
        "after=-1",
        "after=1&after=2",
        "timeout_ms=99999999999999999999",
    ] {
        let response = http
            .get(server.url(&format!("/api/orders/1/next?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    // A request line that is not HTTP at all.
    let raw = exchange(server.addr, b"\x00\x01garbage\r\n\r\n".to_vec()).await;
    assert!(raw.is_empty() || status_of(&raw) == Some(400), "{raw:?}");
    assert_demo_healthy(&server).await;
}

#[tokio::test]
async fn invalid_json_bodies_are_4xx() {
    let server = demo().await;
    let deep = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "truncated",
            "/api/orders",
            b"{\"item\": \"tea".to_vec(),
            400,
        ),
        ("empty", "/api/orders", Vec::new(), 400),
        ("not JSON", "/api/orders", b"item=teapot".to_vec(), 400),
        (
            "trailing junk",
            "/api/orders",
            b"{\"item\": \"a\"} x".to_vec(),
            400,
        ),
        ("wrong type", "/api/orders", b"{\"item\": 5}".to_vec(), 422),
        ("null", "/api/orders", b"{\"item\": null}".to_vec(), 422),
        // (`["teapot"]` would be accepted: serde reads a struct from a sequence too.)
        ("empty array", "/api/orders", b"[]".to_vec(), 422),
        ("missing field", "/api/orders", b"{}".to_vec(), 422),
        // Refused at depth 2: a struct's field is not a sequence.
        ("10,000 deep", "/api/orders", deep(10_000), 422),
        (
            "deep object",
            "/api/orders",
            format!("{}{}", "{\"item\":".repeat(10_000), "}".repeat(10_000)).into_bytes(),
            422,
        ),
        (
            "non-UTF-8 bytes",
            "/api/orders",
            b"{\"item\": \"\xff\xfe\xfd\"}".to_vec(),
            400,
        ),
        (
            "lone surrogate",
            "/api/orders",
            b"{\"item\": \"\\ud800\"}".to_vec(),
            400,
        ),
        (
            "events: wrong type",
            "/api/orders/1/events",
            b"{\"status\": [1]}".to_vec(),
            422,
        ),
    ];
    for (what, target, body, expected) in cases {
        let raw = exchange(server.addr, post_json(target, &body)).await;
        assert_eq!(assert_4xx(what, &raw), expected, "{what}");
        assert_demo_healthy(&server).await;
    }

    // 10,000 deep where serde only skips (an unknown field): serde_json skips without
    // recursing, so the request is served — no stack overflow, nothing to refuse.
    let skipped = [&b"{\"x\": "[..], &deep(10_000), b", \"item\": \"deep\"}"].concat();
    let raw = exchange(server.addr, post_json("/api/orders", &skipped)).await;
    assert_eq!(status_of(&raw), Some(201));
    // Where serde does descend — into an untyped `Value` — its recursion limit (128) answers
    // `400`, and the stack survives.
    let values = TestServer::start(Router::new().route(
        "/value",
        post(|Json(value): Json<Value>| async move { value.to_string() }),
    ))
    .await;
    for depth in [129, 10_000, 100_000] {
        let raw = exchange(values.addr, post_json("/value", &deep(depth))).await;
        assert_eq!(assert_4xx("deep value", &raw), 400, "{depth}");
    }
    let raw = exchange(values.addr, post_json("/value", &deep(100))).await;
    assert_eq!(status_of(&raw), Some(200));

    // No `Content-Type: application/json`: `415`.
    let raw = exchange(
        server.addr,
        b"POST /api/orders HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
            .to_vec(),
    )
    .await;
    assert_eq!(assert_4xx("no content type", &raw), 415);

    // 10 MB against axum's default 2 MB body limit: `413`, read while the body is still being
    // written (the server answers before reading it all).
    let mut huge = b"{\"item\": \"".to_vec();
    huge.resize(10 * 1024 * 1024, b'a');
    huge.extend_from_slice(b"\"}");
    let raw = exchange(server.addr, post_json("/api/orders", &huge)).await;
    assert_eq!(assert_4xx("10 MB body", &raw), 413);

    // A body shorter than its `Content-Length`, then the client hangs up: nothing is created.
    {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        let mut request = post_json("/api/orders", b"{\"item\": \"ghost\"}");
        request.truncate(request.len() - 5);
        socket.write_all(&request).await.unwrap();
    }
    assert_demo_healthy(&server).await;
    let orders: Value = client()
        .get(server.url("/api/orders/feed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items: Vec<&Value> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["item"])
        .collect();
    assert_eq!(items, [&json!("teapot"), &json!("deep")], "{orders}");
}

#[tokio::test]
async fn a_huge_last_event_id_is_refused_and_the_stream_route_still_serves() {
    let server = demo().await;

    // 1 MB of `Last-Event-ID`: over hyper's buffer for a request head, `431`.
    let header = format!("last-event-id: {}\r\n", "7".repeat(1024 * 1024));
    let raw = exchange(server.addr, get_request("/api/orders/1/stream", &header)).await;
    assert_eq!(assert_4xx("1 MB Last-Event-ID", &raw), 431);

    // Not UTF-8: the `LastEventId` extractor answers `400`.
    let mut request = get_request("/api/orders/1/stream", "");
    request.truncate(request.len() - 2);
    request.extend_from_slice(b"last-event-id: \xff\xfe\r\n\r\n");
    let raw = exchange(server.addr, request).await;
    assert_eq!(assert_4xx("non-UTF-8 Last-Event-ID", &raw), 400);

    // 64 KiB, under the limit: an id the buffer doesn't hold replays the whole buffer.
    let http = client();
    let big_id = "9".repeat(64 * 1024);
    let response = http
        .get(server.url("/api/orders/1/stream"))
        .header("last-event-id", &big_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = response.bytes_stream().eventsource();
    let first = within("the replayed creation", events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, "1");
    drop(events);

    // And an ordinary subscriber gets the replay, then live events.
    let response = http
        .get(server.url("/api/orders/1/stream"))
        .send()
        .await
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let first = within("replay", events.next()).await.unwrap().unwrap();
    assert_eq!(first.id, "1");
    let posted = http
        .post(server.url("/api/orders/1/events"))
        .json(&json!({ "status": "paid" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let live = within("live event", events.next()).await.unwrap().unwrap();
    assert_eq!(live.id, "2");
    assert_demo_healthy(&server).await;
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let server = demo().await;

    // More headers than hyper parses (100).
    let many: String = (0..200).map(|n| format!("x-h{n}: {n}\r\n")).collect();
    let raw = exchange(server.addr, get_request("/api/orders/1", &many)).await;
    assert_eq!(assert_4xx("200 headers", &raw), 431);
    assert_demo_healthy(&server).await;

    // One huge header.
    let huge = format!("x-huge: {}\r\n", "h".repeat(512 * 1024));
    let raw = exchange(server.addr, get_request("/api/orders/1", &huge)).await;
    assert_eq!(assert_4xx("512 KiB header", &raw), 431);
    assert_demo_healthy(&server).await;

    // Many medium headers adding up past the limit.
    let medium: String = (0..90)
        .map(|n| format!("x-m{n}: {}\r\n", "m".repeat(8 * 1024)))
        .collect();
    let raw = exchange(server.addr, get_request("/api/orders/1", &medium)).await;
    assert_eq!(assert_4xx("90 × 8 KiB headers", &raw), 431);
    assert_demo_healthy(&server).await;

    // Just under the count limit, small: served.
    let fine: String = (0..90).map(|n| format!("x-f{n}: {n}\r\n")).collect();
    let raw = exchange(server.addr, get_request("/api/orders/1", &fine)).await;
    assert_eq!(status_of(&raw), Some(200));
}

/// Closing connections that never finish their request head is the server's job, not the
/// library's: `axum::serve` sets no hyper timer, so hyper's 30 s `header_read_timeout` default
/// does not even apply — a stalled connection stays open until its client leaves. Bound it in
/// front (a proxy) or with a custom hyper-util serve loop (`.timer(TokioTimer::new())` and
/// `.header_read_timeout(..)`). What the library must ensure, and this test shows, is that
/// stalled connections hold up nobody else and get no response of any kind.
#[tokio::test]
async fn half_requests_that_stall_hold_up_nobody() {
    let server = demo().await;
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut socket = within("connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        // No final CRLF: the head never ends.
        socket
            .write_all(b"GET /api/orders/1 HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(socket);
    }
    // One that stalls half-way through a body.
    let mut half_body = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    half_body
        .write_all(&post_json("/api/orders", b"{\"item\": \"half\"}")[..120])
        .await
        .unwrap();

    // Meanwhile everyone else is served: reads, writes, long polls and streams.
    let http = client();
    for _ in 0..20 {
        assert_demo_healthy(&server).await;
    }
    let posted = http
        .post(server.url("/api/orders/1/events"))
        .json(&json!({ "status": "paid" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let poll = http
        .get(server.url("/api/orders/1/next?after=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.json::<Value>().await.unwrap()["version"], 2);
    let concurrent: Vec<_> = (0..20)
        .map(|_| tokio::spawn(http.get(server.url("/api/orders/1")).send()))
        .collect();
    for request in concurrent {
        let response = within("concurrent", request).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    // The stalled sockets got nothing: no response, no close.
    let mut buf = [0; 256];
    for socket in stalled.iter().chain([&half_body]) {
        match socket.try_read(&mut buf) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a stalled client got {other:?}"),
        }
    }

    // Finishing the head late is fine: the request is served then.
    let mut late = stalled.pop().unwrap();
    late.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    within("late response", late.read_to_end(&mut raw))
        .await
        .unwrap();
    assert_eq!(status_of(&raw), Some(200));
}

/// A server whose accepted sockets have a small send buffer (inherited from the listener), so
/// a client that doesn't read backs the server up after a few KiB instead of megabytes.
struct SmallBufferServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SmallBufferServer {
    async fn start(router: Router) -> SmallBufferServer {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(128).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        SmallBufferServer { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for SmallBufferServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client that sends `GET path` and then never reads, with a small receive buffer.
async fn never_reading(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let mut stream = within("connect", socket.connect(addr)).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

fn ping_router() -> Router {
    Router::new().route("/ping", get(|| async { "pong" }))
}

async fn assert_pong(url: String) {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "pong");
}

/// Where the first `\n\n` starts in `bytes`.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'\n') {
        let at = from + at;
        if bytes.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[tokio::test]
async fn a_broadcast_subscriber_that_never_reads_is_dropped_and_the_others_get_everything() {
    const EVENTS: usize = 20_000;
    const BATCH: usize = 50; // × 1 KiB: under a subscriber's buffer (256 events, 64 KiB)
    let hub = SseBroadcaster::new();
    let app = ping_router()
        .route("/events", {
            let hub = hub.clone();
            get(move || std::future::ready(hub.subscribe(None)))
        })
        .async_support(AsyncConfig::new());
    // Ordinary socket buffers here: small ones would slow the reader down (delayed ACKs).
    let server = TestServer::start(app).await;

    let slow = never_reading(server.addr, "/events").await;
    eventually("the slow client subscribed", || hub.subscribers() == 1).await;

    // A reader that reads everything, checking ids are 0, 1, 2, … with no gap.
    let received = Arc::new(AtomicUsize::new(0));
    // No whole-request timeout: the stream outlives `client()`'s; each read is bounded.
    let streaming = reqwest::Client::builder()
        .read_timeout(WAIT_LIMIT)
        .build()
        .unwrap();
    let response = streaming.get(server.url("/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the reader subscribed", || hub.subscribers() == 2).await;
    let reader = tokio::spawn({
        let received = received.clone();
        async move {
            // A minimal parser for exactly these events (`id:N\ndata:x…\n\n`): a general one
            // is too slow for 20 MB in a debug build.
            let mut bytes = response.bytes_stream();
            let mut pending = Vec::new();
            while let Some(chunk) = bytes.next().await {
                pending.extend_from_slice(&chunk.unwrap());
                let mut start = 0;
                while let Some(end) = find_blank_line(&pending[start..]) {
                    let event = std::str::from_utf8(&pending[start..start + end]).unwrap();
                    let n = received.load(Ordering::SeqCst);
                    let (id, data) = event.split_once('\n').unwrap();
                    assert_eq!(id, format!("id:{n}"));
                    assert_eq!(data.strip_prefix("data:").unwrap().len(), 1024);
                    received.store(n + 1, Ordering::SeqCst);
                    start += end + 2;
                }
                pending.drain(..start);
            }
        }
    });

    let data = "x".repeat(1024);
    let mut slow_dropped_at = None;
    for batch in 0..EVENTS / BATCH {
        for n in batch * BATCH..(batch + 1) * BATCH {
            let event = SseEvent::builder()
                .id(n.to_string())
                .data(&data)
                .build()
                .unwrap();
            // Never blocks: it only queues, or drops a subscriber that is full.
            let delivered = hub.publish(&event);
            if slow_dropped_at.is_none() && delivered == 1 {
                slow_dropped_at = Some(n);
            }
            assert!(delivered >= 1, "the reader is never dropped (event {n})");
        }
        let published = (batch + 1) * BATCH;
        eventually("the reader keeps up", || {
            received.load(Ordering::SeqCst) == published
        })
        .await;
    }
    let dropped_at = slow_dropped_at.expect("the slow subscriber was dropped");
    // Dropped once its 64 KiB buffer, hyper's write buffer and the socket buffers (the
    // client's 4 KiB, the server's a few MiB at most) were full: well before the end.
    assert!(
        dropped_at < EVENTS / 2,
        "dropped only at event {dropped_at}"
    );
    assert_eq!(hub.subscribers(), 1);
    assert_eq!(received.load(Ordering::SeqCst), EVENTS);
    assert_pong(server.url("/ping")).await;

    hub.complete_all(None);
    within("the reader's stream ends", reader).await.unwrap();
    drop(slow);
}

#[tokio::test]
async fn an_sse_client_that_never_reads_holds_its_producer_only_until_the_timeout() {
    const CAPACITY: usize = 4;
    const ATTEMPTS: usize = 2_000; // × 16 KiB: far more than any buffers hold
    const BOUND: usize = 256; // × 16 KiB = 4 MiB
    let emitters: Arc<Mutex<Vec<SseEmitter>>> = Arc::default();
    let app = ping_router()
        .route("/events", {
            let emitters = emitters.clone();
            get(move || {
                let emitter = SseEmitter::builder()
                    .capacity(CAPACITY)
                    .timeout(Duration::from_secs(2))
                    .no_heartbeat()
                    .build();
                emitters.lock().unwrap().push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(AsyncConfig::new());
    let server = SmallBufferServer::start(app).await;

    let slow = never_reading(server.addr, "/events").await;
    eventually("the stream started", || emitters.lock().unwrap().len() == 1).await;
    let emitter = emitters.lock().unwrap()[0].clone();
    let event = SseEvent::builder()
        .data("y".repeat(16 * 1024))
        .build()
        .unwrap();

    // Fill: the queue, hyper's write buffer and the socket buffers, then `try_send` is `Full`.
    let mut accepted = 0;
    let full = loop {
        match emitter.try_send_event(&event) {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < ATTEMPTS, "the emitter never filled up");
        tokio::task::yield_now().await;
    };
    assert!(matches!(full, EmitterError::Full), "{full:?}");
    // Memory stays bounded: what was accepted is the queue (4 events), hyper's write buffer
    // (~400 KiB at most) and two small socket buffers — a few hundred KiB, not the 32 MiB a
    // producer without backpressure would have pushed.
    assert!((CAPACITY..BOUND).contains(&accepted), "{accepted} accepted");
    // Other clients are served while the producer is stuck.
    assert_pong(server.url("/ping")).await;

    // `send` waits for room; the emitter's timeout releases it.
    let released = within("the timeout releases the producer", async {
        loop {
            match emitter.send_event(&event).await {
                Ok(()) => {
                    accepted += 1;
                    assert!(
                        accepted < BOUND,
                        "memory is not bounded: {accepted} accepted"
                    );
                }
                Err(error) => break error,
            }
        }
    })
    .await;
    assert!(matches!(released, EmitterError::TimedOut), "{released:?}");
    assert!(emitter.is_completed());
    assert!(matches!(
        emitter.try_send_event(&event),
        Err(EmitterError::TimedOut)
    ));
    assert_pong(server.url("/ping")).await;
    drop(slow);
}

#[tokio::test]
async fn a_slow_subscriber_given_up_leaves_in_flight_at_once_and_counts_as_a_slow_consumer() {
    // No replay buffer: a subscriber that misses an event cannot be caught up, so the first
    // full buffer gives it up.
    let hub = SseBroadcaster::new();
    let manager = async_mvc::AsyncManager::new(AsyncConfig::new());
    let errors: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let app = ping_router()
        .route("/events", {
            let (hub, errors) = (hub.clone(), errors.clone());
            get(move || {
                let emitter = hub.subscribe(None);
                let errors = errors.clone();
                emitter.on_error(move |error| errors.lock().unwrap().push(error.to_string()));
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let slow = never_reading(server.addr, "/events").await;
    eventually("subscribed", || hub.subscribers() == 1).await;
    eventually("in flight", || manager.metrics().in_flight == 1).await;
    let data = "x".repeat(16 * 1024);
    let event = SseEvent::builder().data(&data).build().unwrap();
    let mut published = 0;
    while hub.publish(&event) == 1 {
        published += 1;
        assert!(published < 100_000, "never given up");
        if published % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Given up while its socket is still open (axum::serve has no send timeout): the stream
    // no longer counts, its callbacks ran, and it is counted.
    let metrics = manager.metrics();
    assert_eq!(
        (metrics.in_flight, metrics.slow_consumers),
        (0, 1),
        "{metrics:?}"
    );
    assert_eq!(errors.lock().unwrap().len(), 1);
    assert!(
        errors.lock().unwrap()[0].contains("read too slowly"),
        "{:?}",
        errors.lock().unwrap()
    );
    assert_eq!(hub.subscribers(), 0);
    assert_pong(server.url("/ping")).await;
    drop(slow);
}

#[tokio::test]
async fn a_direct_send_to_a_client_that_never_reads_fails_after_its_send_timeout() {
    let sent: Arc<std::sync::Mutex<Option<EmitterError>>> = Arc::default();
    let app = ping_router()
        .route("/events", {
            let sent = sent.clone();
            get(move || {
                let emitter = SseEmitter::builder()
                    .no_timeout()
                    .send_timeout(Some(Duration::from_millis(300)))
                    .build();
                let (sender, sent) = (emitter.clone(), sent.clone());
                tokio::spawn(async move {
                    let data = "x".repeat(16 * 1024);
                    loop {
                        if let Err(error) = sender.send(&data).await {
                            *sent.lock().unwrap() = Some(error);
                            return;
                        }
                    }
                });
                std::future::ready(emitter)
            })
        })
        .async_support(AsyncConfig::new());
    let server = TestServer::start(app).await;
    let slow = never_reading(server.addr, "/events").await;
    eventually("a send timed out", || sent.lock().unwrap().is_some()).await;
    let error = sent.lock().unwrap().take().unwrap();
    assert!(
        matches!(error, EmitterError::SendTimedOut(after) if after == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(!error.is_closed(), "the emitter stays open");
    drop(slow);
}
