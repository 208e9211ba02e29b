//! The demo binary's server limits, set by flags and variables, seen from outside: a half-sent
//! request head is closed at `--header-read-timeout-ms`, an idle keep-alive at
//! `KEEP_ALIVE_TIMEOUT_MS`, and at `--max-connections` stalled connections are shed so that a
//! new client is answered; `GET /api/metrics` counts it all under `connections`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TIMEOUT: Duration = Duration::from_millis(400);
const MAX_CONNECTIONS: usize = 16;
const WAIT: Duration = Duration::from_secs(10);

struct Demo {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let ms = TIMEOUT.as_millis().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--port", "0", "--header-read-timeout-ms", &ms])
        .args(["--max-connections", &MAX_CONNECTIONS.to_string()])
        .env("KEEP_ALIVE_TIMEOUT_MS", &ms)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the demo prints its address")
        .parse()
        .unwrap();
    Demo { child, addr }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap()
}

/// Reads until the server closes the connection; what was read.
async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, socket.read(&mut buf)).await {
            Err(_) => panic!("the server did not close the connection"),
            Ok(Ok(0) | Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut socket = connect(addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    String::from_utf8(until_closed(&mut socket).await).unwrap()
}

async fn connections(addr: SocketAddr) -> serde_json::Value {
    let response = get(addr, "/api/metrics").await;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["connections"].clone()
}

#[tokio::test]
async fn the_demo_closes_stalled_connections_at_its_timeouts_and_sheds_at_its_limit() {
    let demo = start_demo();

    // A half-sent head: closed at the header read timeout, unanswered.
    let mut half = connect(demo.addr).await;
    let started = Instant::now();
    half.write_all(b"GET / HTTP/1.1\r\nhost").await.unwrap();
    assert!(until_closed(&mut half).await.is_empty());
    assert!(started.elapsed() >= TIMEOUT);

    // An idle keep-alive: answered, then closed at the keep-alive timeout.
    let mut idle = connect(demo.addr).await;
    idle.write_all(b"GET /api/orders/1 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = String::from_utf8(until_closed(&mut idle).await).unwrap();
    assert!(answered.starts_with("HTTP/1.1 404"), "{answered}");

    let counted = connections(demo.addr).await;
    assert_eq!(counted["header_read_timeouts"], 1, "{counted}");
    assert_eq!(counted["keep_alive_timeouts"], 1, "{counted}");
    assert_eq!(counted["max_connections"], MAX_CONNECTIONS, "{counted}");

    // Fill the limit with connections that send nothing, then ask: the new client is served.
    let mut stalled = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        stalled.push(connect(demo.addr).await);
    }
    let page = get(demo.addr, "/").await;
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(200)]
    );
    let counted = connections(demo.addr).await;
    assert!(
        counted["shed_reading_head"].as_u64().unwrap() >= 1,
        "{counted}"
    );
    assert_eq!(counted["accept_errors"], 0, "{counted}");
    drop(stalled);
}
