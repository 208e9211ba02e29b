//! End-to-end tests of the streaming return values over real HTTP: `ResponseBodyEmitter`,
//! `SseEmitter`, `SseBroadcaster`, `StreamingResponseBody` and `ReactiveStream` — exact bytes,
//! chunked framing, backpressure, timeouts, disconnects and the manager's counters.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    future::Future,
    io,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_mvc::{prelude::*, AsyncMetrics, EmitterError, SseEventError};
use async_mvc_tests::{client, eventually, within, TestServer};
use axum::{
    body::Bytes,
    http::{
        header::{CONTENT_DISPOSITION, CONTENT_TYPE},
        HeaderMap, HeaderValue, StatusCode,
    },
    routing::get as route_get,
    Router,
};
use futures::{stream, StreamExt};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

// ---------------------------------------------------------------------------------------------
// Helpers: shared handles, a callback log, and a raw HTTP/1.1 client that sees the framing.
// ---------------------------------------------------------------------------------------------

/// Values a handler hands to the test (emitters, task handles).
#[derive(Clone)]
struct Handles<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Handles<T> {
    fn new() -> Self {
        Handles(Arc::new(Mutex::new(Vec::new())))
    }
    fn push(&self, value: T) {
        self.0.lock().unwrap().push(value);
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// The `index`th value, once a handler has pushed it.
    async fn get(&self, index: usize) -> T {
        eventually("the handler hands over its value", || self.len() > index).await;
        self.0.lock().unwrap()[index].clone()
    }
}

/// What lifecycle callbacks ran, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// Registers `on_timeout`, `on_error` and `on_completion` callbacks that log themselves.
    fn watch(&self, emitter: &ResponseBodyEmitter) {
        let log = self.clone();
        emitter.on_timeout(move || log.push("timeout"));
        let log = self.clone();
        emitter.on_error(move |error| {
            let what = match error {
                AsyncError::ClientDisconnected => "error:ClientDisconnected".to_owned(),
                other => format!("error:{other}"),
            };
            log.push(what);
        });
        let log = self.clone();
        emitter.on_completion(move || log.push("completion"));
    }
    fn watch_sse(&self, emitter: &SseEmitter) {
        let log = self.clone();
        emitter.on_timeout(move || log.push("timeout"));
        let log = self.clone();
        emitter.on_error(move |error| {
            let what = match error {
                AsyncError::ClientDisconnected => "error:ClientDisconnected".to_owned(),
                other => format!("error:{other}"),
            };
            log.push(what);
        });
        let log = self.clone();
        emitter.on_completion(move || log.push("completion"));
    }
}

/// How a producer task ended, once it has.
#[derive(Clone, Default)]
struct Outcome(Arc<Mutex<Option<Result<(), EmitterError>>>>);

impl Outcome {
    fn spawn(&self, producer: impl Future<Output = Result<(), EmitterError>> + Send + 'static) {
        let outcome = self.clone();
        tokio::spawn(async move {
            let result = producer.await;
            *outcome.0.lock().unwrap() = Some(result);
        });
    }
    fn is_finished(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
    async fn wait(&self) -> Result<(), EmitterError> {
        eventually("the producer ends", || self.is_finished()).await;
        self.0.lock().unwrap().take().unwrap()
    }
}

fn manager() -> AsyncManager {
    AsyncManager::new(AsyncConfig::new())
}

/// Waits until no stream is pending, then returns the counters.
async fn settled(manager: &AsyncManager) -> AsyncMetrics {
    eventually("every stream has ended", || {
        manager.metrics().in_flight == 0
    })
    .await;
    manager.metrics()
}

/// `(completed, timed_out, disconnected, errors)`.
fn counts(metrics: AsyncMetrics) -> (u64, u64, u64, u64) {
    (
        metrics.completed,
        metrics.timed_out,
        metrics.disconnected,
        metrics.errors,
    )
}

/// Sends `GET path` over a raw TCP connection, with `Connection: close`, and returns the socket
/// without reading anything.
async fn raw_get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut socket = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        server.addr
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

/// Reads until the peer closes the connection (a reset counts as closed).
async fn read_to_eof(socket: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    within("the server closes the connection", async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    raw
}

/// Reads into `raw` until it contains `needle`.
async fn read_until(socket: &mut TcpStream, raw: &mut Vec<u8>, needle: &[u8]) {
    within("the expected bytes arrive", async {
        let mut buf = vec![0; 64 * 1024];
        while find(raw, needle).is_none() {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed before {needle:?} arrived");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A response read off the wire.
#[derive(Debug)]
struct Wire {
    head: String,
    /// The data chunks, in order.
    chunks: Vec<Vec<u8>>,
    /// Whether the terminating `0\r\n\r\n` chunk arrived.
    terminated: bool,
}

impl Wire {
    fn parse(raw: &[u8]) -> Wire {
        let end = find(raw, b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ntransfer-encoding: chunked"),
            "a chunked response: {head}"
        );
        let mut rest = &raw[end + 4..];
        let mut chunks = Vec::new();
        let mut terminated = false;
        while let Some(eol) = find(rest, b"\r\n") {
            let size = std::str::from_utf8(&rest[..eol]).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                terminated = rest == b"\r\n";
                break;
            }
            if rest.len() < size + 2 {
                break; // cut off mid-chunk
            }
            chunks.push(rest[..size].to_vec());
            assert_eq!(&rest[size..size + 2], b"\r\n", "chunk framing");
            rest = &rest[size + 2..];
        }
        Wire {
            head,
            chunks,
            terminated,
        }
    }

    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

#[derive(Serialize)]
struct Person {
    id: u32,
    name: &'static str,
}

const PEOPLE: [Person; 3] = [
    Person { id: 1, name: "Joe" },
    Person {
        id: 2,
        name: "John",
    },
    Person {
        id: 3,
        name: "Jason",
    },
];

// ---------------------------------------------------------------------------------------------
// ResponseBodyEmitter
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn emitter_values_sent_from_another_task_arrive_in_order_with_exact_bytes() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/people",
            route_get(|| async {
                let emitter = ResponseBodyEmitter::new();
                let sender = emitter.clone();
                tokio::spawn(async move {
                    for (i, person) in PEOPLE.iter().enumerate() {
                        if i > 0 {
                            sender.send("\n").await.unwrap();
                        }
                        tokio::task::yield_now().await;
                        sender.send(person).await.unwrap();
                    }
                    sender.complete();
                });
                emitter
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let response = within("response", client().get(server.url("/people")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(CONTENT_TYPE),
        None,
        "a plain emitter sets no Content-Type of its own (G.105)"
    );
    let body = within("body", response.text()).await.unwrap();
    // W14
    assert_eq!(
        body,
        "{\"id\":1,\"name\":\"Joe\"}\n{\"id\":2,\"name\":\"John\"}\n{\"id\":3,\"name\":\"Jason\"}"
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn emitter_writes_strings_as_text_other_values_as_json_and_send_with_picks_the_converter() {
    let manager = manager();
    let outcomes = Handles::<String>::new();
    let app = Router::new()
        .route("/mixed", {
            let outcomes = outcomes.clone();
            route_get(move || {
                let outcomes = outcomes.clone();
                async move {
                    let emitter = ResponseBodyEmitter::new();
                    let sender = emitter.clone();
                    tokio::spawn(async move {
                        let report = |what: &str, result: Result<(), EmitterError>| {
                            outcomes.push(format!("{what}: {result:?}"));
                        };
                        report("text", sender.send("text|").await);
                        report("number", sender.send(&42).await);
                        report(
                            "object",
                            sender.send(&serde_json::json!({"a": [1, "x"]})).await,
                        );
                        report("char", sender.send(&'c').await);
                        report("|", sender.send("|").await);
                        report(
                            "json string",
                            sender.send_with("quoted", "application/json").await,
                        );
                        report(
                            "problem+json",
                            sender
                                .send_with(
                                    &serde_json::json!({"b": true}),
                                    "application/problem+json",
                                )
                                .await,
                        );
                        report(
                            "text/plain",
                            sender.send_with("|plain", "text/plain;charset=UTF-8").await,
                        );
                        match sender.send_with(&7, "text/plain").await {
                            Err(EmitterError::NoConverter { media_type }) => {
                                outcomes
                                    .push(format!("number as text: no converter for {media_type}"));
                            }
                            other => outcomes.push(format!("number as text: {other:?}")),
                        }
                        match sender.send_with("x", "application/xml").await {
                            Err(EmitterError::NoConverter { media_type }) => {
                                outcomes.push(format!("xml: no converter for {media_type}"));
                            }
                            other => outcomes.push(format!("xml: {other:?}")),
                        }
                        report("bytes", sender.send_bytes(&b"|\xffraw"[..]).await);
                        sender.complete();
                    });
                    emitter
                }
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let response = within("response", client().get(server.url("/mixed")).send())
        .await
        .unwrap();
    let body = within("body", response.bytes()).await.unwrap();
    assert_eq!(
        body.as_ref(),
        &b"text|42{\"a\":[1,\"x\"]}c|\"quoted\"{\"b\":true}|plain|\xffraw"[..]
    );
    assert_eq!(
        outcomes.0.lock().unwrap().clone(),
        [
            "text: Ok(())",
            "number: Ok(())",
            "object: Ok(())",
            "char: Ok(())",
            "|: Ok(())",
            "json string: Ok(())",
            "problem+json: Ok(())",
            "text/plain: Ok(())",
            "number as text: no converter for text/plain",
            "xml: no converter for application/xml",
            "bytes: Ok(())",
        ]
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn early_sends_are_buffered_in_order_and_written_as_one_chunk() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/early",
            route_get(|| async {
                let emitter = ResponseBodyEmitter::new();
                // Before the handler returns: buffered, identical values kept apart (G.91, G.92).
                emitter.send("a").await.unwrap();
                emitter.send("b").await.unwrap();
                emitter.send("a").await.unwrap();
                emitter.try_send(&1).unwrap();
                emitter.send_bytes("\n").await.unwrap();
                // A completion before the response starts is deferred after the batch.
                emitter.complete();
                emitter
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/early", &[]).await;
    let wire = Wire::parse(&read_to_eof(&mut socket).await);
    assert_eq!(wire.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(wire.chunks, [b"aba1\n".to_vec()], "one batch, in order");
    assert!(wire.terminated, "complete() ends the body cleanly");
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn send_after_complete_fails_with_completed() {
    // Before the emitter is served (G.94).
    let emitter = ResponseBodyEmitter::new();
    emitter.complete();
    assert!(emitter.is_completed());
    let error = emitter.send("late").await.unwrap_err();
    assert!(matches!(error, EmitterError::Completed), "{error:?}");
    assert_eq!(
        error.to_string(),
        "ResponseBodyEmitter has already completed"
    );
    assert!(error.is_closed());

    let failed = ResponseBodyEmitter::new();
    failed.complete_with_error("boom");
    failed.complete(); // ignored: already completed
    let error = failed.try_send("late").unwrap_err();
    assert!(
        matches!(&error, EmitterError::CompletedWithError(message) if message == "boom"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "ResponseBodyEmitter has already completed with error: boom"
    );

    // And after it was served over HTTP.
    let manager = manager();
    let emitters = Handles::<ResponseBodyEmitter>::new();
    let app = Router::new()
        .route("/once", {
            let emitters = emitters.clone();
            route_get(move || {
                let emitter = ResponseBodyEmitter::new();
                emitters.push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let response = tokio::spawn(client().get(server.url("/once")).send());
    let emitter = emitters.get(0).await;
    emitter.send("only").await.unwrap();
    emitter.complete();
    let response = within("response", response).await.unwrap().unwrap();
    assert_eq!(within("body", response.text()).await.unwrap(), "only");
    let error = emitter.send("late").await.unwrap_err();
    assert!(matches!(error, EmitterError::Completed), "{error:?}");
    assert_eq!(
        error.to_string(),
        "ResponseBodyEmitter has already completed"
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn wrapper_status_and_headers_apply_to_an_emitter() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/accepted",
            route_get(|| async {
                let emitter = ResponseBodyEmitter::new();
                let sender = emitter.clone();
                tokio::spawn(async move {
                    sender.send(&PEOPLE[0]).await.unwrap();
                    sender.send("\n").await.unwrap();
                    sender.complete();
                });
                let mut headers = HeaderMap::new();
                headers.insert("foo", HeaderValue::from_static("bar"));
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                );
                (StatusCode::ACCEPTED, headers, emitter)
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let response = within("response", client().get(server.url("/accepted")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["foo"], "bar");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/x-ndjson");
    assert_eq!(
        within("body", response.text()).await.unwrap(),
        "{\"id\":1,\"name\":\"Joe\"}\n"
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn try_send_is_full_at_capacity_until_the_body_takes_the_queue() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/full",
            route_get(|| async {
                let emitter = ResponseBodyEmitter::builder().capacity(2).build();
                // Nothing reads yet: the response has not started.
                emitter.try_send("a").unwrap();
                emitter.try_send("b").unwrap();
                let full = emitter.try_send("c").unwrap_err();
                assert!(matches!(full, EmitterError::Full), "{full:?}");
                assert!(!full.is_closed());
                assert_eq!(full.to_string(), "the emitter's buffer is full");
                let sender = emitter.clone();
                tokio::spawn(async move {
                    // Waits for room, then goes after what was queued.
                    sender.send("c").await.unwrap();
                    sender.complete();
                });
                emitter
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let response = within("response", client().get(server.url("/full")).send())
        .await
        .unwrap();
    assert_eq!(within("body", response.text()).await.unwrap(), "abc");
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

const CHUNK: usize = 64 * 1024;
/// 32 MiB: more than hyper's buffer and both loopback socket buffers can hold.
const CHUNKS: usize = 512;

fn chunk(index: usize) -> Bytes {
    Bytes::from(vec![(index % 251) as u8; CHUNK])
}

#[tokio::test]
async fn send_waits_while_the_client_does_not_read_and_resumes_when_it_reads() {
    let manager = manager();
    let outcome = Outcome::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let full = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route("/firehose", {
            let (outcome, sent, full) = (outcome.clone(), sent.clone(), full.clone());
            route_get(move || {
                let emitter = ResponseBodyEmitter::builder()
                    .capacity(2)
                    .no_timeout()
                    .build();
                let sender = emitter.clone();
                let (outcome, sent, full) = (outcome.clone(), sent.clone(), full.clone());
                outcome.spawn(async move {
                    for index in 0..CHUNKS {
                        match sender.try_send_bytes(chunk(index)) {
                            Ok(()) => {}
                            Err(EmitterError::Full) => {
                                full.store(true, Ordering::SeqCst);
                                sender.send_bytes(chunk(index)).await?;
                            }
                            Err(other) => return Err(other),
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    sender.complete();
                    Ok(())
                });
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    // The client sends its request and then reads nothing.
    let mut socket = raw_get(&server, "/firehose", &[]).await;
    eventually("try_send reports a full buffer", || {
        full.load(Ordering::SeqCst)
    })
    .await;
    eventually("hyper took some chunks", || {
        sent.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert!(
        !outcome.is_finished(),
        "32 MiB cannot all be sent to a client that does not read"
    );
    assert!(sent.load(Ordering::SeqCst) < CHUNKS);
    assert_eq!(manager.metrics().in_flight, 1);

    // Now it reads: the producer resumes and the body is exactly what was sent, in order.
    let wire = Wire::parse(&read_to_eof(&mut socket).await);
    assert!(wire.terminated);
    let body = wire.body();
    assert_eq!(body.len(), CHUNK * CHUNKS);
    for (index, piece) in body.chunks(CHUNK).enumerate() {
        assert!(
            piece.iter().all(|&byte| byte == (index % 251) as u8),
            "chunk {index} is out of place"
        );
    }
    assert!(matches!(outcome.wait().await, Ok(())));
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn emitter_timeout_runs_on_timeout_then_on_completion_and_later_sends_fail() {
    let manager = manager();
    let log = Log::default();
    let emitters = Handles::<ResponseBodyEmitter>::new();
    let app = Router::new()
        .route("/slow", {
            let (log, emitters) = (log.clone(), emitters.clone());
            route_get(move || {
                let emitter = ResponseBodyEmitter::with_timeout(Duration::from_millis(100));
                log.watch(&emitter);
                // G.99: the emitter is complete before `on_timeout` runs.
                let (inside, log2) = (emitter.clone(), log.clone());
                emitter.on_timeout(move || {
                    let result = inside.try_send("from on_timeout");
                    log2.push(format!("send in on_timeout: {result:?}"));
                });
                emitter.try_send("before the timeout").unwrap();
                emitters.push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/slow", &[]).await;
    let wire = Wire::parse(&read_to_eof(&mut socket).await);
    assert_eq!(wire.body(), b"before the timeout");
    assert!(wire.terminated, "a timed-out emitter ends its body cleanly");
    eventually("the callbacks ran", || log.len() == 3).await;
    assert_eq!(
        log.entries(),
        ["timeout", "send in on_timeout: Err(TimedOut)", "completion"]
    );
    let emitter = emitters.get(0).await;
    let error = emitter.send("after").await.unwrap_err();
    assert!(matches!(error, EmitterError::TimedOut), "{error:?}");
    assert!(emitter.is_completed());
    assert_eq!(counts(settled(&manager).await), (1, 1, 0, 0));
}

#[tokio::test]
async fn emitter_timeout_fires_while_the_client_does_not_read() {
    let manager = manager();
    let log = Log::default();
    let outcome = Outcome::default();
    let app = Router::new()
        .route("/stalled", {
            let (log, outcome) = (log.clone(), outcome.clone());
            route_get(move || {
                let emitter = ResponseBodyEmitter::builder()
                    .capacity(2)
                    .timeout(Duration::from_millis(300))
                    .build();
                log.watch(&emitter);
                let sender = emitter.clone();
                outcome.spawn(async move {
                    for index in 0..CHUNKS {
                        sender.send_bytes(chunk(index)).await?;
                    }
                    Ok(())
                });
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    // A client that never reads holds hyper off the body; the timeout must fire all the same,
    // so the producer blocked in `send` learns of it.
    let socket = raw_get(&server, "/stalled", &[]).await;
    let error = outcome.wait().await.unwrap_err();
    assert!(matches!(error, EmitterError::TimedOut), "{error:?}");
    eventually("on_timeout ran", || log.len() >= 1).await;
    assert_eq!(log.entries()[0], "timeout");
    drop(socket);
    eventually("the callbacks ran", || log.len() >= 2).await;
    assert_eq!(log.entries().last().map(String::as_str), Some("completion"));
    let metrics = settled(&manager).await;
    assert_eq!(metrics.timed_out, 1);
}

#[tokio::test]
async fn client_disconnect_runs_on_error_then_on_completion_and_sends_fail() {
    let manager = manager();
    let log = Log::default();
    let emitters = Handles::<ResponseBodyEmitter>::new();
    let app = Router::new()
        .route("/events", {
            let (log, emitters) = (log.clone(), emitters.clone());
            route_get(move || {
                let emitter = ResponseBodyEmitter::builder().no_timeout().build();
                log.watch(&emitter);
                emitters.push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/events", &[]).await;
    let emitter = emitters.get(0).await;
    let mut raw = Vec::new();
    emitter.send("event one\n").await.unwrap();
    read_until(&mut socket, &mut raw, b"event one\n").await;
    emitter.send("event two\n").await.unwrap();
    read_until(&mut socket, &mut raw, b"event two\n").await;
    drop(socket);

    // The server notices at once (hyper reads EOF), or at the latest when a write fails.
    let error = within("a send fails", async {
        for attempt in 0..10_000 {
            if let Err(error) = emitter.send(&attempt).await {
                return error;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("sends to a closed connection kept succeeding")
    })
    .await;
    assert!(matches!(error, EmitterError::Disconnected), "{error:?}");
    assert_eq!(error.to_string(), "the client disconnected");
    eventually("the callbacks ran", || log.len() == 2).await;
    assert_eq!(log.entries(), ["error:ClientDisconnected", "completion"]);
    assert_eq!(counts(settled(&manager).await), (0, 0, 1, 0));
    assert!(matches!(
        emitter.send("later").await,
        Err(EmitterError::Disconnected)
    ));
}

#[tokio::test]
async fn complete_with_error_aborts_the_chunked_response() {
    let manager = manager();
    let log = Log::default();
    let emitters = Handles::<ResponseBodyEmitter>::new();
    let app = Router::new()
        .route("/broken", {
            let (log, emitters) = (log.clone(), emitters.clone());
            route_get(move || {
                let emitter = ResponseBodyEmitter::new();
                log.watch(&emitter);
                emitters.push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/broken", &[]).await;
    let emitter = emitters.get(0).await;
    let mut raw = Vec::new();
    emitter.send("partial").await.unwrap();
    read_until(&mut socket, &mut raw, b"partial").await;
    emitter.send(" and the rest").await.unwrap();
    emitter.complete_with_error("the database went away");
    raw.extend(read_to_eof(&mut socket).await);

    let wire = Wire::parse(&raw);
    assert_eq!(wire.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(
        wire.body(),
        b"partial and the rest",
        "what was sent is written"
    );
    assert!(
        !wire.terminated,
        "no terminating chunk: the client must see a broken stream, got {raw:?}"
    );
    let error = emitter.send("more").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "ResponseBodyEmitter has already completed with error: the database went away"
    );
    eventually("on_completion ran", || log.len() == 1).await;
    assert_eq!(log.entries(), ["completion"]);
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 1));
}

// ---------------------------------------------------------------------------------------------
// SseEmitter
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sse_emitter_sends_exactly_its_three_headers() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/sse",
            route_get(|| async {
                let emitter = SseEmitter::new();
                emitter.send("hello").await.unwrap();
                emitter.send(&serde_json::json!({"id": 1})).await.unwrap();
                emitter.complete();
                emitter
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let response = within("response", client().get(server.url("/sse")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-type",
            "date",
            "transfer-encoding",
            "x-accel-buffering"
        ]
    );
    assert_eq!(
        within("body", response.text()).await.unwrap(),
        "data:hello\n\ndata:{\"id\":1}\n\n"
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn sse_heartbeat_is_written_when_idle_and_events_follow() {
    let manager = manager();
    let emitters = Handles::<SseEmitter>::new();
    let app = Router::new()
        .route("/idle", {
            let emitters = emitters.clone();
            route_get(move || {
                let emitter = SseEmitter::builder()
                    .heartbeat(Duration::from_millis(50))
                    .no_timeout()
                    .build();
                emitters.push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/idle", &[]).await;
    let mut raw = Vec::new();
    read_until(&mut socket, &mut raw, b"3\r\n:\n\n\r\n").await;
    let emitter = emitters.get(0).await;
    emitter.send("after the heartbeat").await.unwrap();
    emitter.complete();
    raw.extend(read_to_eof(&mut socket).await);
    let wire = Wire::parse(&raw);
    assert!(wire.terminated);
    let (last, heartbeats) = wire.chunks.split_last().unwrap();
    assert_eq!(last, b"data:after the heartbeat\n\n");
    assert!(!heartbeats.is_empty());
    assert!(
        heartbeats.iter().all(|chunk| chunk == b":\n\n"),
        "only heartbeats before the event: {heartbeats:?}"
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn sse_heartbeat_notices_a_client_that_left_without_a_word() {
    let manager = manager();
    let log = Log::default();
    let emitters = Handles::<SseEmitter>::new();
    let app = Router::new()
        .route("/quiet", {
            let (log, emitters) = (log.clone(), emitters.clone());
            route_get(move || {
                let emitter = SseEmitter::builder()
                    .heartbeat(Duration::from_millis(50))
                    .no_timeout()
                    .build();
                log.watch_sse(&emitter);
                emitters.push(emitter.clone());
                std::future::ready(emitter)
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/quiet", &[]).await;
    let mut raw = Vec::new();
    read_until(&mut socket, &mut raw, b"\r\n\r\n").await;
    drop(socket);
    // No sends: only the heartbeat (or hyper's EOF check) can notice.
    eventually("on_error and on_completion ran", || log.len() == 2).await;
    assert_eq!(log.entries(), ["error:ClientDisconnected", "completion"]);
    let emitter = emitters.get(0).await;
    assert!(matches!(
        emitter.send("anyone?").await,
        Err(EmitterError::Disconnected)
    ));
    assert_eq!(counts(settled(&manager).await), (0, 0, 1, 0));
}

#[tokio::test]
async fn last_event_id_extractor_reads_the_header() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/resume",
            route_get(|last: Option<LastEventId>| async move {
                let emitter = SseEmitter::new();
                let text = match last {
                    Some(last) => format!("after {}", last.as_str()),
                    None => "from the start".to_owned(),
                };
                emitter.send(&text).await.unwrap();
                emitter.complete();
                emitter
            }),
        )
        .route(
            "/required",
            route_get(|last: LastEventId| async move { last.into_inner() }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let http = client();

    let fresh = http.get(server.url("/resume")).send().await.unwrap();
    assert_eq!(fresh.text().await.unwrap(), "data:from the start\n\n");
    let resumed = http
        .get(server.url("/resume"))
        .header("Last-Event-ID", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.text().await.unwrap(), "data:after 42\n\n");
    let unicode = http
        .get(server.url("/required"))
        .header("last-event-id", "évé-7".as_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(unicode.status(), StatusCode::OK);
    assert_eq!(unicode.text().await.unwrap(), "évé-7");
    let missing = http.get(server.url("/required")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(counts(settled(&manager).await), (2, 0, 0, 0));
}

#[tokio::test]
async fn invalid_events_are_rejected_before_anything_is_sent() {
    let error = SseEvent::builder()
        .id("1\n2")
        .data("x")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, SseEventError::InvalidId { .. }),
        "{error:?}"
    );
    let error = SseEvent::builder()
        .event("a\rb")
        .data("x")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, SseEventError::InvalidEventName { .. }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// SseBroadcaster
// ---------------------------------------------------------------------------------------------

fn event(id: u32) -> SseEvent {
    SseEvent::builder()
        .id(id.to_string())
        .event("tick")
        .data(format!("n={id}"))
        .build()
        .unwrap()
}

fn wire_events(ids: impl IntoIterator<Item = u32>) -> String {
    ids.into_iter()
        .map(|id| format!("id:{id}\nevent:tick\ndata:n={id}\n\n"))
        .collect()
}

fn hub_app(hub: &SseBroadcaster, manager: &AsyncManager) -> Router {
    let hub = hub.clone();
    Router::new()
        .route(
            "/hub",
            route_get(move |last: Option<LastEventId>| {
                let emitter = hub.subscribe(last.as_ref().map(LastEventId::as_str));
                std::future::ready(emitter)
            }),
        )
        .async_support(manager.clone())
}

#[tokio::test]
async fn broadcaster_sends_every_event_to_every_subscriber() {
    let manager = manager();
    let hub = SseBroadcaster::new();
    let server = TestServer::start(hub_app(&hub, &manager)).await;
    let http = client();

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let request = http.get(server.url("/hub")).send();
            tokio::spawn(async move { request.await.unwrap().text().await.unwrap() })
        })
        .collect();
    eventually("three subscribers", || hub.subscribers() == 3).await;
    for id in 1..=5 {
        assert_eq!(hub.publish(&event(id)), 3);
    }
    hub.complete_all(Some(&event(6)));
    for reader in readers {
        let body = within("a subscriber's stream ends", reader).await.unwrap();
        assert_eq!(body, wire_events(1..=6));
    }
    assert_eq!(hub.subscribers(), 0);
    // After complete_all, new subscribers get a completed stream.
    let late = http.get(server.url("/hub")).send().await.unwrap();
    assert_eq!(late.text().await.unwrap(), "");
    assert_eq!(hub.publish(&event(7)), 0);
    assert_eq!(counts(settled(&manager).await), (4, 0, 0, 0));
}

#[tokio::test]
async fn broadcaster_keeps_a_larger_subscriber_capacity_and_completes_a_full_subscriber() {
    // Subscribers that are never served: nothing drains their buffers.
    let roomy = SseBroadcaster::new()
        .subscriber_settings(SseEmitter::builder().no_timeout().capacity(1000));
    let subscriber = roomy.subscribe(None);
    for id in 1..=1000 {
        assert_eq!(
            roomy.publish(&event(id)),
            1,
            "event {id} fits in a capacity of 1000"
        );
    }
    assert_eq!(
        roomy.publish(&event(1001)),
        0,
        "the 1001st does not: too slow"
    );
    assert!(subscriber.is_completed());
    assert_eq!(roomy.subscribers(), 0);

    // A smaller capacity is raised to hold the default plus the replay buffer.
    let small = SseBroadcaster::with_replay(4)
        .subscriber_settings(SseEmitter::builder().no_timeout().capacity(1));
    let subscriber = small.subscribe(None);
    for id in 1..=(async_mvc::DEFAULT_CAPACITY as u32 + 4) {
        assert_eq!(small.publish(&event(id)), 1, "event {id}");
    }
    assert!(!subscriber.is_completed());
}

#[tokio::test]
async fn broadcaster_drops_a_subscriber_that_disconnects() {
    let manager = manager();
    let hub = SseBroadcaster::new();
    let server = TestServer::start(hub_app(&hub, &manager)).await;

    let staying = tokio::spawn(client().get(server.url("/hub")).send());
    eventually("one subscriber", || hub.subscribers() == 1).await;
    let mut leaving = raw_get(&server, "/hub", &[]).await;
    eventually("two subscribers", || hub.subscribers() == 2).await;
    let mut raw = Vec::new();
    assert_eq!(hub.publish(&event(1)), 2);
    read_until(&mut leaving, &mut raw, b"data:n=1\n\n").await;
    drop(leaving);

    let mut id = 1;
    eventually("the subscriber that left is removed", || {
        id += 1;
        hub.publish(&event(id));
        hub.subscribers() == 1
    })
    .await;
    assert_eq!(manager.metrics().disconnected, 1);
    hub.complete_all(None);
    let staying = within("response", staying).await.unwrap().unwrap();
    assert_eq!(
        within("body", staying.text()).await.unwrap(),
        wire_events(1..=id)
    );
    assert_eq!(counts(settled(&manager).await), (1, 0, 1, 0));
}

#[tokio::test]
async fn broadcaster_replays_after_last_event_id_then_goes_live() {
    let manager = manager();
    let hub = SseBroadcaster::with_replay(10);
    let server = TestServer::start(hub_app(&hub, &manager)).await;
    for id in 1..=5 {
        assert_eq!(hub.publish(&event(id)), 0);
    }

    let resumed = tokio::spawn(
        client()
            .get(server.url("/hub"))
            .header("Last-Event-ID", "3")
            .send(),
    );
    let unknown = tokio::spawn(
        client()
            .get(server.url("/hub"))
            .header("Last-Event-ID", "no-such-id")
            .send(),
    );
    let fresh = tokio::spawn(client().get(server.url("/hub")).send());
    eventually("three subscribers", || hub.subscribers() == 3).await;
    assert_eq!(hub.publish(&event(6)), 3);
    hub.complete_all(None);

    let body = |response: reqwest::Response| async move { response.text().await.unwrap() };
    let resumed = within("resumed", resumed).await.unwrap().unwrap();
    assert_eq!(
        body(resumed).await,
        wire_events([4, 5, 6]),
        "no gap, no duplicate"
    );
    let unknown = within("unknown", unknown).await.unwrap().unwrap();
    assert_eq!(body(unknown).await, wire_events(1..=6), "the whole buffer");
    let fresh = within("fresh", fresh).await.unwrap().unwrap();
    assert_eq!(
        body(fresh).await,
        wire_events([6]),
        "no replay without an id"
    );
    assert_eq!(counts(settled(&manager).await), (3, 0, 0, 0));
}

#[tokio::test]
async fn broadcaster_replay_has_no_gap_and_no_duplicate_while_publishing_goes_on() {
    let manager = manager();
    let hub = SseBroadcaster::with_replay(1000);
    let server = TestServer::start(hub_app(&hub, &manager)).await;
    for id in 1..=5 {
        hub.publish(&event(id));
    }
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for id in 6..=400 {
                hub.publish(&event(id));
                tokio::task::yield_now().await;
            }
        })
    };
    let resumed = within(
        "response",
        client()
            .get(server.url("/hub"))
            .header("Last-Event-ID", "3")
            .send(),
    )
    .await
    .unwrap();
    within("publisher", publisher).await.unwrap();
    hub.complete_all(None);
    assert_eq!(
        within("body", resumed.text()).await.unwrap(),
        wire_events(4..=400)
    );
    settled(&manager).await;
}

// ---------------------------------------------------------------------------------------------
// StreamingResponseBody
// ---------------------------------------------------------------------------------------------

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

#[tokio::test]
async fn streaming_download_has_its_headers_and_exact_bytes() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/download",
            route_get(|| async {
                let body = StreamingResponseBody::new(|mut out| async move {
                    let data = pattern(1 << 20);
                    // Uneven pieces, with a pause in the middle.
                    let (head, tail) = data.split_at(1000);
                    out.write_all(head).await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    for piece in tail.chunks(4093) {
                        out.write_all(piece).await?;
                    }
                    out.flush().await
                });
                (
                    [
                        (CONTENT_TYPE, "application/octet-stream"),
                        (CONTENT_DISPOSITION, "attachment; filename=\"data.bin\""),
                    ],
                    body,
                )
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let response = within("response", client().get(server.url("/download")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_DISPOSITION],
        "attachment; filename=\"data.bin\""
    );
    assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
    let body = within("body", response.bytes()).await.unwrap();
    assert!(body.as_ref() == pattern(1 << 20).as_slice(), "exact bytes");
    assert_eq!(counts(settled(&manager).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn streaming_writer_error_aborts_the_chunked_response() {
    let manager = manager();
    let app = Router::new()
        .route(
            "/fails",
            route_get(|| async {
                StreamingResponseBody::new(|mut out| async move {
                    out.write_all(b"first part").await?;
                    out.flush().await?;
                    Err(io::Error::other("the disk went away"))
                })
            }),
        )
        .route(
            "/panics",
            route_get(|| async {
                StreamingResponseBody::new(|mut out| async move {
                    out.write_all(b"first part").await?;
                    if out.flush().await.is_ok() {
                        panic!("writer bug");
                    }
                    Ok(())
                })
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    for path in ["/fails", "/panics"] {
        let mut socket = raw_get(&server, path, &[]).await;
        let wire = Wire::parse(&read_to_eof(&mut socket).await);
        assert_eq!(wire.status_line(), "HTTP/1.1 200 OK");
        assert_eq!(wire.body(), b"first part", "{path}");
        assert!(!wire.terminated, "{path}: the stream must be broken");
    }
    assert_eq!(counts(settled(&manager).await), (2, 0, 0, 2));
}

/// Sets its flag when dropped: shows a task has stopped, however it stopped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn streaming_client_disconnect_fails_the_writes_and_stops_the_writer() {
    let manager = manager();
    let write_error = Arc::new(Mutex::new(None::<io::ErrorKind>));
    let stopped = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route("/endless", {
            let (write_error, stopped) = (write_error.clone(), stopped.clone());
            route_get(move || {
                let (write_error, stopped) = (write_error.clone(), stopped.clone());
                std::future::ready(
                    StreamingResponseBody::new(move |mut out| async move {
                        let _stopped = DropFlag(stopped);
                        for _ in 0..100_000 {
                            if let Err(error) = out.write_all(&[b'x'; 1024]).await {
                                *write_error.lock().unwrap() = Some(error.kind());
                                return Err(error);
                            }
                        }
                        Ok(())
                    })
                    .no_timeout(),
                )
            })
        })
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let mut socket = raw_get(&server, "/endless", &[]).await;
    let mut raw = Vec::new();
    read_until(&mut socket, &mut raw, b"xxxxxxxx").await;
    drop(socket);
    eventually("the writer stopped", || stopped.load(Ordering::SeqCst)).await;
    assert_eq!(
        *write_error.lock().unwrap(),
        Some(io::ErrorKind::BrokenPipe),
        "the writer's write fails once the client is gone"
    );
    assert_eq!(counts(settled(&manager).await), (0, 0, 1, 0));
}

// ---------------------------------------------------------------------------------------------
// ReactiveStream
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Value {
    value: &'static str,
}

fn reactive_app(manager: &AsyncManager) -> Router {
    Router::new()
        .route(
            "/strings",
            route_get(|| async { ReactiveStream::new(stream::iter(["foo", "bar", "baz"])) }),
        )
        .route(
            "/values",
            route_get(|| async {
                ReactiveStream::new(stream::iter([
                    Value { value: "foo" },
                    Value { value: "bar" },
                ]))
            }),
        )
        .route(
            "/empty",
            route_get(|| async { ReactiveStream::new(stream::empty::<Value>()) }),
        )
        .route(
            "/failing",
            route_get(|| async {
                ReactiveStream::try_new(stream::iter([
                    Ok(Value { value: "foo" }),
                    Err("the source failed"),
                    Ok(Value { value: "never" }),
                ]))
            }),
        )
        .async_support(manager.clone())
}

async fn get_with_accept(server: &TestServer, path: &str, accept: &str) -> reqwest::Response {
    within(
        "response",
        client()
            .get(server.url(path))
            .header("accept", accept)
            .send(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn reactive_stream_as_sse_for_an_event_stream_accept() {
    let manager = manager();
    let server = TestServer::start(reactive_app(&manager)).await;

    let strings = get_with_accept(&server, "/strings", "text/event-stream").await;
    assert_eq!(strings.status(), StatusCode::OK);
    assert_eq!(strings.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(
        strings.text().await.unwrap(),
        "data:foo\n\ndata:bar\n\ndata:baz\n\n" // W8
    );
    let values = get_with_accept(
        &server,
        "/values",
        "application/json;q=0.5, text/event-stream",
    )
    .await;
    assert_eq!(values.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(
        values.text().await.unwrap(),
        "data:{\"value\":\"foo\"}\n\ndata:{\"value\":\"bar\"}\n\n"
    );
    assert_eq!(counts(settled(&manager).await), (2, 0, 0, 0));
}

#[tokio::test]
async fn reactive_stream_as_json_lines_for_ndjson_jsonl_and_vendor_types() {
    let manager = manager();
    let server = TestServer::start(reactive_app(&manager)).await;

    for accept in [
        "application/x-ndjson",
        "application/jsonl",
        "application/vnd.x.v1+x-ndjson",
    ] {
        let response = get_with_accept(&server, "/values", accept).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], accept);
        assert_eq!(
            response.text().await.unwrap(),
            "{\"value\":\"foo\"}\n{\"value\":\"bar\"}\n", // W13
            "{accept}"
        );
    }
    assert_eq!(counts(settled(&manager).await), (3, 0, 0, 0));
}

#[tokio::test]
async fn reactive_stream_is_collected_into_a_json_array_otherwise() {
    let manager = manager();
    let server = TestServer::start(reactive_app(&manager)).await;

    let values = get_with_accept(&server, "/values", "application/json").await;
    assert_eq!(values.status(), StatusCode::OK);
    assert_eq!(values.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(
        values.text().await.unwrap(),
        "[{\"value\":\"foo\"},{\"value\":\"bar\"}]"
    );
    let empty = get_with_accept(&server, "/empty", "application/json").await;
    assert_eq!(empty.text().await.unwrap(), "[]");
    let no_accept = within("response", client().get(server.url("/values")).send())
        .await
        .unwrap();
    assert_eq!(
        no_accept.text().await.unwrap(),
        "[{\"value\":\"foo\"},{\"value\":\"bar\"}]"
    );
    let failing = get_with_accept(&server, "/failing", "application/json").await;
    assert_eq!(failing.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(settled(&manager).await.in_flight, 0);
}

#[tokio::test]
async fn reactive_stream_error_aborts_a_streamed_response() {
    let manager = manager();
    let server = TestServer::start(reactive_app(&manager)).await;

    for (accept, first) in [
        ("text/event-stream", &b"data:{\"value\":\"foo\"}\n\n"[..]),
        ("application/x-ndjson", &b"{\"value\":\"foo\"}\n"[..]),
    ] {
        let mut socket = raw_get(&server, "/failing", &[("accept", accept)]).await;
        let wire = Wire::parse(&read_to_eof(&mut socket).await);
        assert_eq!(wire.status_line(), "HTTP/1.1 200 OK");
        assert_eq!(wire.body(), first, "{accept}");
        assert!(!wire.terminated, "{accept}: the stream must be broken");
    }
    assert_eq!(counts(settled(&manager).await), (2, 0, 0, 2));
}

#[derive(Default)]
struct Ticker;

#[async_controller(path = "/ticker")]
impl Ticker {
    #[get("/sse", produces = "text/event-stream")]
    fn ticks(&self) -> ReactiveStream {
        ReactiveStream::new(stream::iter(["event0", "event1", "event2"]))
    }

    #[get("/json")]
    fn plain(&self) -> ReactiveStream {
        ReactiveStream::new(stream::iter(0..3).map(|n| serde_json::json!({ "n": n })))
    }
}

#[tokio::test]
async fn produces_event_stream_selects_sse_whatever_the_accept_header() {
    let manager = manager();
    let app = Router::new()
        .controller(Ticker)
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    for accept in ["application/json", "*/*", "application/x-ndjson"] {
        let response = get_with_accept(&server, "/ticker/sse", accept).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(
            response.text().await.unwrap(),
            "data:event0\n\ndata:event1\n\ndata:event2\n\n",
            "{accept}"
        );
    }
    let plain = get_with_accept(&server, "/ticker/json", "application/json").await;
    assert_eq!(
        plain.text().await.unwrap(),
        "[{\"n\":0},{\"n\":1},{\"n\":2}]"
    );
    assert_eq!(settled(&manager).await.in_flight, 0);
}

#[tokio::test]
async fn an_emitter_on_a_route_without_async_support_fails_its_sends() {
    let emitters = Handles::<ResponseBodyEmitter>::new();
    let app = Router::new().route("/unsupported", {
        let emitters = emitters.clone();
        route_get(move || {
            let emitter = ResponseBodyEmitter::new();
            emitters.push(emitter.clone());
            std::future::ready(emitter)
        })
    });
    let server = TestServer::start(app).await;
    let response = within("response", client().get(server.url("/unsupported")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let emitter = emitters.get(0).await;
    assert!(emitter.send("x").await.unwrap_err().is_closed());
}

#[tokio::test]
async fn sse_is_never_compressed_by_the_standard_compression_layer() {
    // tower-http's default predicate skips `text/event-stream`: our exact content type keeps SSE
    // uncompressed (a compressor would buffer events), while other responses are compressed.
    let app = Router::new()
        .route(
            "/events",
            route_get(|| async {
                let emitter = SseEmitter::builder().no_heartbeat().build();
                let _ = emitter.try_send(&"x".repeat(4096));
                emitter.complete();
                emitter
            }),
        )
        .route("/text", route_get(|| async { "y".repeat(4096) }))
        .async_support(AsyncConfig::new())
        .layer(tower_http::compression::CompressionLayer::new());
    let server = TestServer::start(app).await;
    let http = client();

    let events = http
        .get(server.url("/events"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    assert!(events.headers().get("content-encoding").is_none());
    assert_eq!(
        events.text().await.unwrap(),
        format!("data:{}\n\n", "x".repeat(4096))
    );

    let text = http
        .get(server.url("/text"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text.headers()["content-encoding"],
        "gzip",
        "the layer compresses others"
    );
}

#[tokio::test]
async fn a_lagging_broadcast_subscriber_is_caught_up_in_order_from_the_replay_buffer() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    // A 64-byte buffer (a few events; the replay buffer holds 100): events that do not fit
    // are sent later, in order, once the client has read.
    let hub = SseBroadcaster::with_replay(100).subscriber_settings(
        SseEmitter::builder()
            .no_timeout()
            .no_heartbeat()
            .max_buffered_bytes(64),
    );
    let app = Router::new()
        .route("/hub", {
            let hub = hub.clone();
            axum::routing::get(move || std::future::ready(hub.subscribe(None)))
        })
        .async_support(manager());
    let response = app
        .oneshot(
            axum::http::Request::get("/hub")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut received = Vec::new();
    let mut next = 1;
    let mut lagged = 0;
    // Publish twice what the buffer holds between reads (the lag grows, within the replay
    // buffer); each read drains what is queued.
    for _ in 0..10 {
        for _ in 0..6 {
            if hub.publish(&event(next)) == 0 {
                lagged += 1;
            }
            next += 1;
        }
        let frame = within("a frame", body.frame()).await.unwrap().unwrap();
        received.extend_from_slice(frame.data_ref().unwrap());
    }
    // Everything published so far arrives, in order, as the client keeps reading.
    while received.len() < wire_events(1..=(next - 1)).len() {
        hub.publish(&event(next));
        next += 1;
        let frame = within("a frame", body.frame()).await.unwrap().unwrap();
        received.extend_from_slice(frame.data_ref().unwrap());
    }
    let expected = wire_events(1..=(next - 1));
    assert_eq!(
        String::from_utf8_lossy(&received[..expected.len()]),
        expected
    );
    assert_eq!(hub.subscribers(), 1, "caught up, not given up");
    assert!(
        lagged > 10,
        "the subscriber lagged ({lagged} events did not fit at once)"
    );
}
