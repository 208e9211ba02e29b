//! Graceful shutdown at scale, against the real demo binary: 10,000 pending long polls and
//! 1,000 open SSE streams, then SIGTERM. Every client must get its response (the long poll's
//! timeout result, `304`) or a clean end of stream within the grace period + 1 s, and the
//! server process must exit. The server runs in its own process, so the 11,000 client sockets
//! and the 11,000 server sockets each stay under this machine's 20,000 open files per process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

const LONG_POLLS: usize = 10_000;
const STREAMS: usize = 1_000;
/// async-mvc's default shutdown grace period.
const GRACE: Duration = async_mvc::DEFAULT_SHUTDOWN_GRACE;

/// A connection from 127.0.0.{1..4}, spreading the ephemeral ports.
async fn connect(server: SocketAddr, n: usize) -> TcpStream {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % 4) as u8));
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(server).await.unwrap()
}

async fn get(server: SocketAddr, path: &str) -> String {
    let mut stream = connect(server, 0).await;
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn in_flight(metrics: &str) -> u64 {
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    json["in_flight"].as_u64().unwrap_or(0)
}

/// Starts the demo binary on a free port; its address.
fn start_demo() -> (Child, SocketAddr) {
    start_demo_logging("warn", Stdio::null())
}

/// Starts the demo binary with `RUST_LOG=rust_log`, its log going to `stderr`.
fn start_demo_logging(rust_log: &str, stderr: Stdio) -> (Child, SocketAddr) {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--port", "0"])
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start the demo");
    let line = BufReader::new(demo.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the demo prints its address");
    (demo, address.parse().unwrap())
}

/// Places order `1`.
async fn create_order(server: SocketAddr) {
    let mut order = connect(server, 0).await;
    let body = r#"{"item":"teapot"}"#;
    let request = format!(
        "POST /api/orders HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    order.write_all(request.as_bytes()).await.unwrap();
    let mut created = String::new();
    order.read_to_string(&mut created).await.unwrap();
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
}

fn sigterm(demo: &Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_10000_long_polls_and_ends_1000_streams_within_the_grace_period() {
    let (mut demo, server) = start_demo();
    create_order(server).await;
    // The fulfilment worker completes every waiting poll of the order at each step: wait until
    // it has shipped the order (its last step), so that only the shutdown answers the polls.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(server, "/api/orders/1")
        .await
        .contains(r#""status":"shipped""#)
    {
        assert!(Instant::now() < deadline, "the order was never shipped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Open every connection and send its request.
    let mut clients = Vec::with_capacity(LONG_POLLS + STREAMS);
    for n in 0..LONG_POLLS + STREAMS {
        let path = if n < LONG_POLLS {
            "/api/orders/1/next?after=1000&timeout_ms=600000"
        } else {
            "/api/orders/1/stream"
        };
        let mut stream = connect(server, n).await;
        let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        clients.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = get(server, "/api/metrics").await;
        if in_flight(&metrics) as usize == LONG_POLLS + STREAMS {
            break;
        }
        assert!(Instant::now() < deadline, "not all pending: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM, then every client reads to the end of its connection.
    let signalled = Instant::now();
    sigterm(&demo);
    let limit = GRACE + Duration::from_secs(1);
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut stream)| {
            tokio::spawn(async move {
                let mut received = Vec::new();
                let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
                (
                    n,
                    read.is_ok(),
                    String::from_utf8_lossy(&received).into_owned(),
                )
            })
        })
        .collect();
    let (mut answered_polls, mut ended_streams) = (0, 0);
    for reader in readers {
        let (n, in_time, received) = reader.await.unwrap();
        assert!(
            in_time,
            "client {n} got nothing within {limit:?}: {received:?}"
        );
        if n < LONG_POLLS {
            assert!(
                received.starts_with("HTTP/1.1 304"),
                "long poll {n}: {received:?}"
            );
            answered_polls += 1;
        } else {
            assert!(
                received.starts_with("HTTP/1.1 200"),
                "stream {n}: {received:?}"
            );
            assert!(
                received.contains("content-type: text/event-stream"),
                "stream {n}"
            );
            // A clean end of a chunked body: the terminating chunk.
            assert!(
                received.ends_with("\r\n0\r\n\r\n"),
                "stream {n}: {received:?}"
            );
            ended_streams += 1;
        }
    }
    assert_eq!((answered_polls, ended_streams), (LONG_POLLS, STREAMS));
    assert!(
        signalled.elapsed() <= limit,
        "took {:?}",
        signalled.elapsed()
    );

    // The server task returns and the process exits.
    let exit_deadline = Instant::now() + limit;
    loop {
        if let Some(status) = demo.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < exit_deadline, "the demo did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Invoice requests sent in a loop over new connections while SIGTERM arrives: every request
/// on a connection the server accepted gets an answer — its invoice or a `503` — never a
/// closed connection without a response; once the listener is closed, connecting is refused.
/// The log says "invoice request completed" once per invoice or timeout, and "invoice
/// request rejected" once per request refused (pool full, shutting down), never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_requests_racing_sigterm_are_each_answered_and_logged_for_what_they_were() {
    const CLIENTS: usize = 8;
    /// Per client: enough to keep sending through the whole shutdown, and a bound.
    const MAX_REQUESTS: usize = 20_000;
    let (mut demo, server) = start_demo_logging("warn,async_mvc_examples=info", Stdio::piped());
    let stderr = BufReader::new(demo.stderr.take().unwrap());
    let log = std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    create_order(server).await;
    let request =
        "POST /api/orders/1/invoice HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(async move {
                let (mut answered, mut unanswered) = (Vec::new(), 0_usize);
                for _ in 0..MAX_REQUESTS {
                    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % 4) as u8));
                    let socket = TcpSocket::new_v4().unwrap();
                    socket.bind(SocketAddr::new(source, 0)).unwrap();
                    let Ok(mut stream) = socket.connect(server).await else {
                        break; // refused: the listener is closed
                    };
                    let mut response = Vec::new();
                    let exchange = async {
                        stream.write_all(request.as_bytes()).await?;
                        stream.read_to_end(&mut response).await
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(30), exchange).await;
                    if response.len() < 12 {
                        unanswered += 1;
                    } else {
                        answered.push(String::from_utf8_lossy(&response).into_owned());
                    }
                }
                (answered, unanswered)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&demo);
    let (mut statuses, mut unanswered) = (Vec::new(), 0);
    for client in clients {
        let (answered, lost) = client.await.unwrap();
        statuses.extend(answered);
        unanswered += lost;
    }
    assert_eq!(unanswered, 0, "requests closed without a response");
    let (mut invoiced, mut timed_out, mut refused) = (0, 0, 0);
    for response in &statuses {
        if response.starts_with("HTTP/1.1 200") {
            invoiced += 1;
        } else if response.starts_with("HTTP/1.1 503") && response.contains("was not ready within")
        {
            timed_out += 1;
        } else if response.starts_with("HTTP/1.1 503") {
            refused += 1;
        } else {
            panic!("neither an invoice nor a 503: {response}");
        }
    }
    assert!(refused > 0, "the shutdown refused nothing");
    let exit_deadline = Instant::now() + GRACE + Duration::from_secs(5);
    while demo.try_wait().unwrap().is_none() {
        assert!(Instant::now() < exit_deadline, "the demo did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = log.join().unwrap();
    let count = |message: &str| log.iter().filter(|line| line.contains(message)).count();
    assert_eq!(count("invoice request completed"), invoiced + timed_out);
    assert_eq!(count("invoice request rejected"), refused);
}
