//! `async_mvc::serve`'s limits over real loopback connections: the header read timeout (a
//! half-sent head, a blank-line flood), the keep-alive timeout, the send timeout (an SSE
//! client that never reads), the keep-alive request limit, shedding at the connection limit,
//! and HTTP/2 with prior knowledge (a long poll, an SSE stream, a disconnect) behaving as
//! HTTP/1.1 does.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    future::IntoFuture,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_mvc::{prelude::*, AsyncManager, ConnectionStats, Serve, SseBroadcaster};
use async_mvc_tests::{eventually, within};
use axum::{routing::get, Router};
use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    task::JoinHandle,
};

const SHORT: Duration = Duration::from_millis(300);

struct Server {
    addr: SocketAddr,
    stats: ConnectionStats,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(router: Router, configure: impl FnOnce(Serve) -> Serve) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let serve = configure(async_mvc::serve(listener, router));
        let addr = serve.local_addr().unwrap();
        let stats = serve.connection_stats();
        let task = tokio::spawn(serve.into_future());
        Server { addr, stats, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn connect(&self) -> TcpStream {
        within("connect", TcpStream::connect(self.addr))
            .await
            .unwrap()
    }
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// Reads until the server closes the connection (EOF or reset); returns what was read.
async fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match within("the server closes the connection", socket.read(&mut buf)).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a `content-length` body.
async fn read_response(socket: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0_u8; 1024];
    loop {
        let n = within("a response", socket.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before a whole response: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_at_the_header_read_timeout() {
    let server = Server::start(hello(), |s| s.header_read_timeout(SHORT)).await;
    let mut socket = server.connect().await;
    let started = Instant::now();
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let read = read_until_closed(&mut socket).await;
    assert!(read.is_empty(), "no response to half a head: {read:?}");
    assert!(started.elapsed() >= SHORT, "closed before the timeout");
    eventually("counted", || {
        server.stats.snapshot().header_read_timeouts == 1
    })
    .await;
}

#[tokio::test]
async fn a_blank_line_flood_is_closed_at_the_header_read_timeout() {
    let server = Server::start(hello(), |s| s.header_read_timeout(SHORT)).await;
    let mut socket = server.connect().await;
    let started = Instant::now();
    let mut writes = 0;
    // A blank line every 20 ms: each is a byte of a request head that never completes.
    let closed = loop {
        if socket.write_all(b"\r\n").await.is_err() {
            break true;
        }
        writes += 1;
        let mut buf = [0_u8; 64];
        match tokio::time::timeout(Duration::from_millis(20), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => panic!("a response to blank lines: {:?}", &buf[..n]),
            Err(_) if started.elapsed() > Duration::from_secs(10) => break false,
            Err(_) => {}
        }
    };
    assert!(closed, "the flood was never closed");
    assert!(started.elapsed() >= SHORT, "closed before the timeout");
    assert!(writes > 5, "{writes} blank lines were sent");
    eventually("counted", || {
        server.stats.snapshot().header_read_timeouts == 1
    })
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_keep_alive_timeout() {
    let server = Server::start(hello(), |s| {
        s.keep_alive_timeout(SHORT)
            .header_read_timeout(Duration::from_secs(30))
    })
    .await;
    let mut socket = server.connect().await;
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut socket).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello"), "{response}");
    let idle = Instant::now();
    let read = read_until_closed(&mut socket).await;
    assert!(read.is_empty(), "{read:?}");
    assert!(idle.elapsed() >= SHORT, "closed before the timeout");
    let metrics = server.stats.snapshot();
    assert_eq!(
        (metrics.keep_alive_timeouts, metrics.header_read_timeouts),
        (1, 0)
    );
}

#[tokio::test]
async fn a_connection_busy_with_requests_is_not_idle() {
    // Requests closer together than the keep-alive timeout keep the connection open for
    // longer than the timeout in all.
    let server = Server::start(hello(), |s| s.keep_alive_timeout(SHORT)).await;
    let mut socket = server.connect().await;
    let started = Instant::now();
    while started.elapsed() < SHORT * 3 {
        socket
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut socket).await.ends_with("hello"));
        tokio::time::sleep(SHORT / 4).await;
    }
    assert_eq!(server.stats.snapshot().keep_alive_timeouts, 0);
}

#[tokio::test]
async fn the_last_keep_alive_request_is_answered_with_connection_close() {
    let server = Server::start(hello(), |s| s.max_keep_alive_requests(2)).await;
    let mut socket = server.connect().await;
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut socket).await;
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let rest = String::from_utf8(read_until_closed(&mut socket).await).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(
        rest.to_ascii_lowercase().contains("connection: close"),
        "{rest}"
    );
    assert!(rest.ends_with("hello"), "{rest}");
}

#[tokio::test]
async fn an_sse_client_that_never_reads_is_closed_at_the_send_timeout_and_nothing_stays_in_flight()
{
    let manager = AsyncManager::new(AsyncConfig::new());
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = Router::new()
        .route("/events", {
            let errors = errors.clone();
            get(move || {
                let errors = errors.clone();
                async move {
                    let emitter = SseEmitter::builder()
                        .no_timeout()
                        .send_timeout(None)
                        .build();
                    emitter.on_error(move |error| errors.lock().unwrap().push(error.to_string()));
                    let sender = emitter.clone();
                    tokio::spawn(async move {
                        let data = "x".repeat(16 * 1024);
                        while sender.send(&data).await.is_ok() {}
                    });
                    emitter
                }
            })
        })
        .async_support(manager.clone());
    let server = Server::start(app, |s| s.send_timeout(SHORT)).await;

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let mut stream = within("connect", socket.connect(server.addr))
        .await
        .unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    eventually("the stream is in flight", || {
        manager.metrics().in_flight == 1
    })
    .await;
    // Never read: the socket buffers fill, writes stop, the send timeout closes it.
    eventually("closed at the send timeout", || {
        server.stats.snapshot().send_timeouts == 1
    })
    .await;
    eventually("nothing in flight", || manager.metrics().in_flight == 0).await;
    assert_eq!(manager.metrics().disconnected, 1);
    assert_eq!(
        *errors.lock().unwrap(),
        ["the client disconnected before the async result was sent"]
    );
    drop(stream);
}

#[tokio::test]
async fn at_the_connection_limit_stalled_connections_are_shed_and_a_new_client_is_served() {
    const LIMIT: usize = 8;
    let server = Server::start(hello(), |s| {
        s.max_connections(LIMIT)
            .header_read_timeout(Duration::from_secs(60))
    })
    .await;
    // Fill the table: half-sent heads and idle keep-alives.
    let mut stalled = Vec::new();
    for n in 0..LIMIT {
        let mut socket = server.connect().await;
        if n % 2 == 0 {
            socket.write_all(b"GET / HTTP/1.1\r\nhost").await.unwrap();
        } else {
            socket
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            read_response(&mut socket).await;
        }
        stalled.push(socket);
    }
    eventually("the table is full", || {
        server.stats.snapshot().open == LIMIT as u64
    })
    .await;

    for _ in 0..3 {
        let response = within(
            "a new client is answered",
            reqwest::Client::new().get(server.url("/")).send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    let metrics = server.stats.snapshot();
    assert!(metrics.open <= LIMIT as u64, "{metrics:?}");
    // Those reading their head go first.
    assert!(metrics.shed_reading_head >= 1, "{metrics:?}");
    assert_eq!(metrics.accept_errors, 0);

    // A shed connection is closed.
    let mut closed = 0;
    for socket in &mut stalled {
        let mut buf = [0_u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no stalled connection was closed");
}

fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn http2_with_prior_knowledge_serves_a_long_poll_as_http1_does() {
    let waiting: Arc<Mutex<Vec<DeferredResult<String>>>> = Arc::default();
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/poll", {
            let waiting = waiting.clone();
            get(move || {
                let result = DeferredResult::with_timeout_result(
                    Duration::from_secs(5),
                    "timeout".to_owned(),
                );
                waiting.lock().unwrap().push(result.clone());
                std::future::ready(result)
            })
        })
        .async_support(manager.clone());
    let server = Server::start(app, |s| s).await;
    let client = h2_client();
    let polls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(client.get(server.url("/poll")).send()))
        .collect();
    eventually("three long polls wait", || {
        waiting.lock().unwrap().len() == 3
    })
    .await;
    for result in waiting.lock().unwrap().drain(..) {
        result.set_result("done".to_owned());
    }
    for poll in polls {
        let response = poll.await.unwrap().unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "done");
    }
    // One connection carried them all.
    let metrics = server.stats.snapshot();
    assert_eq!((metrics.accepted, metrics.http2), (1, 1));
    assert_eq!(manager.metrics().in_flight, 0);
}

#[tokio::test]
async fn http2_serves_an_sse_stream_and_notices_a_disconnect() {
    let hub = SseBroadcaster::with_replay(16);
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/events", {
            let hub = hub.clone();
            get(move || std::future::ready(hub.subscribe(None)))
        })
        .async_support(manager.clone());
    let server = Server::start(app, |s| s).await;
    let client = h2_client();
    let response = client.get(server.url("/events")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    eventually("subscribed", || hub.subscribers() == 1).await;
    for id in 1..=3 {
        let event = SseEvent::builder()
            .id(id.to_string())
            .data(format!("event {id}"))
            .build()
            .unwrap();
        assert_eq!(hub.publish(&event), 1);
    }
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    let expected = b"id:1\ndata:event 1\n\nid:2\ndata:event 2\n\nid:3\ndata:event 3\n\n";
    while received.len() < expected.len() {
        let chunk = within("events over HTTP/2", body.next())
            .await
            .unwrap()
            .unwrap();
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, expected);
    assert_eq!(manager.metrics().in_flight, 1);
    // The client resets the stream (the connection stays open): the emitter sees it go.
    drop(body);
    eventually("the disconnect is noticed", || {
        manager.metrics().in_flight == 0
    })
    .await;
    assert_eq!(manager.metrics().disconnected, 1);
    // The connection is still there for the next request.
    let again = client.get(server.url("/events")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(server.stats.snapshot().accepted, 1);
}
