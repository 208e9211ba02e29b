//! `async_mvc::serve` and its graceful shutdown, over raw TCP on loopback: a connection
//! accepted as the signal arrives is still answered (`axum::serve` closes it unanswered), an
//! idle keep-alive connection gets a request already on its way answered, a silent one is
//! closed, and the async manager's shutdown comes first.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{future::IntoFuture, time::Duration};

use async_mvc::{prelude::*, AsyncManager};
use async_mvc_tests::within;
use axum::{routing::get, Router};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n";

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves `router`; shuts down gracefully once [`stop`](Self::stop) is called, after
    /// `manager`'s shutdown if one is given.
    async fn start(router: Router, manager: Option<AsyncManager>) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
        };
        let serve = async_mvc::serve(listener, router);
        let addr = serve.local_addr().unwrap();
        let server = match manager {
            Some(manager) => tokio::spawn(
                serve
                    .with_graceful_shutdown(manager.shutdown_on(signal))
                    .into_future(),
            ),
            None => tokio::spawn(serve.with_graceful_shutdown(signal).into_future()),
        };
        Running {
            addr,
            stop: Some(stop),
            server,
        }
    }

    async fn connect(&self) -> TcpStream {
        within("connect", TcpStream::connect(self.addr))
            .await
            .unwrap()
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn finished(self) {
        within("the server finishes", self.server)
            .await
            .unwrap()
            .unwrap();
    }
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// Reads one response head and its `content-length` body; `None` if the connection closes
/// first.
async fn read_response(socket: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().unwrap());
            if raw.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&raw[..end + 4 + length]).into_owned());
            }
        }
        let n = within("read", socket.read(&mut buf)).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

async fn closed(socket: &mut TcpStream) -> bool {
    let mut buf = [0_u8; 64];
    matches!(within("close", socket.read(&mut buf)).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn a_connection_that_sends_after_the_signal_is_still_answered() {
    let mut server = Running::start(hello(), None).await;
    let mut socket = server.connect().await;
    tokio::time::sleep(Duration::from_millis(50)).await; // accepted, nothing sent yet
    server.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(GET).await.unwrap();
    let response = read_response(&mut socket)
        .await
        .expect("an answer, not a close");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("connection: close\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");
    assert!(closed(&mut socket).await);
    server.finished().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_gets_a_request_on_its_way_answered() {
    let mut server = Running::start(hello(), None).await;
    let mut socket = server.connect().await;
    socket.write_all(GET).await.unwrap();
    let first = read_response(&mut socket).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");

    server.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(GET).await.unwrap();
    let second = read_response(&mut socket)
        .await
        .expect("an answer, not a close");
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
    assert!(second.contains("connection: close\r\n"), "{second}");
    assert!(closed(&mut socket).await);
    server.finished().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_the_server_finishes() {
    let mut server = Running::start(hello(), None).await;
    let mut idle = server.connect().await;
    idle.write_all(GET).await.unwrap();
    read_response(&mut idle).await.unwrap();
    let mut silent = server.connect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop();
    assert!(closed(&mut silent).await);
    assert!(closed(&mut idle).await);
    let addr = server.addr;
    server.finished().await;
    // The listener is closed: a new client is refused, not left hanging.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_managers_shutdown_answers_pending_requests_before_the_server_stops() {
    let manager = AsyncManager::new(AsyncConfig::new());
    let router = Router::new()
        .route(
            "/",
            get(|| async {
                DeferredResult::<String, axum::response::Response>::with_timeout_result(
                    Duration::from_secs(60),
                    "released".to_owned(),
                )
            }),
        )
        .async_support(manager.clone());
    let mut server = Running::start(router, Some(manager.clone())).await;
    let mut poll = server.connect().await;
    poll.write_all(GET).await.unwrap();
    within("the poll is pending", async {
        while manager.metrics().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server.stop();
    let response = read_response(&mut poll).await.expect("the timeout result");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nreleased"), "{response}");
    server.finished().await;
    assert_eq!(manager.metrics().in_flight, 0);
}
