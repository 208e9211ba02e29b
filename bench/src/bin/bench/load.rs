//! The load generator: HTTP/1.1 clients over loopback sockets spread over 127.0.0.1–127.0.0.4.
//!
//! Every loop is bounded in count and in time.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use async_mvc_bench::clock;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header::HOST, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::Semaphore,
};

/// Source addresses for client sockets: ~28,000 ephemeral ports each.
const SOURCES: u8 = 4;
/// Most requests one closed-loop connection sends, whatever the duration.
const MAX_REQUESTS_PER_CONNECTION: u64 = 50_000_000;
/// Connects (and request writes) in flight at once while opening thousands of sockets.
const CONNECT_CONCURRENCY: usize = 256;
/// The longest any single response may take before it counts as an error.
pub(crate) const RESPONSE_DEADLINE: Duration = Duration::from_secs(150);

/// A new histogram of microseconds (or any `u64`), 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Connects to `127.0.0.1:port` from `127.0.0.{1 + i % 4}`.
///
/// The source port is chosen by `connect`, not `bind` (`IP_BIND_ADDRESS_NO_PORT`): `bind` with
/// port 0 searches for a port no socket on that address holds, TIME_WAIT ones from earlier
/// runs included, and with tens of thousands of them each call blocks a worker thread for
/// milliseconds — which showed up as seconds of W3 lateness, in either implementation.
pub(crate) async fn connect(i: usize, port: u16) -> io::Result<TcpStream> {
    connect_with(i, port, None).await
}

/// [`connect`], with a receive buffer of `recv_buffer` bytes if given (a client that does not
/// read then fills up fast).
pub(crate) async fn connect_with(
    i: usize,
    port: u16,
    recv_buffer: Option<u32>,
) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )
    .map_err(io::Error::from)?;
    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % SOURCES as usize) as u8);
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What a closed-loop run measured (requests counted after the warm-up only).
#[derive(Debug)]
pub(crate) struct LoopStats {
    pub(crate) ok: u64,
    pub(crate) unavailable: u64,
    pub(crate) errors: u64,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) seconds: f64,
}

/// `conns` keep-alive connections (hyper 1), each sending `GET path` back to back for
/// `warmup + measure`; latencies and counts of the `measure` part.
pub(crate) async fn closed_loop(
    port: u16,
    path: &'static str,
    conns: usize,
    warmup: Duration,
    measure: Duration,
) -> LoopStats {
    let start = Instant::now();
    let from = start + warmup;
    let until = from + measure;
    let tasks: Vec<_> = (0..conns)
        .map(|c| tokio::spawn(connection_loop(c, port, path, from, until)))
        .collect();
    let mut total = LoopStats {
        ok: 0,
        unavailable: 0,
        errors: 0,
        latency_us: histogram(),
        seconds: measure.as_secs_f64(),
    };
    for task in tasks {
        match tokio::time::timeout_at((until + RESPONSE_DEADLINE).into(), task).await {
            Ok(Ok(stats)) => {
                total.ok += stats.ok;
                total.unavailable += stats.unavailable;
                total.errors += stats.errors;
                let _ = total.latency_us.add(&stats.latency_us);
            }
            _ => total.errors += 1,
        }
    }
    total
}

async fn connection_loop(
    c: usize,
    port: u16,
    path: &'static str,
    from: Instant,
    until: Instant,
) -> LoopStats {
    let mut stats = LoopStats {
        ok: 0,
        unavailable: 0,
        errors: 0,
        latency_us: histogram(),
        seconds: 0.0,
    };
    let mut sent = 0u64;
    // Reconnects after an error, as long as time is left.
    while Instant::now() < until && sent < MAX_REQUESTS_PER_CONNECTION {
        let mut sender = match handshake(c, port).await {
            Ok(sender) => sender,
            Err(_) => {
                stats.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while sent < MAX_REQUESTS_PER_CONNECTION {
            let t0 = Instant::now();
            if t0 >= until {
                break;
            }
            sent += 1;
            let request = Request::get(path)
                .header(HOST, "127.0.0.1")
                .body(Empty::<Bytes>::new())
                .expect("a valid request");
            let outcome = async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                // The server's last request on this connection (its keep-alive limit): go on
                // on a new one, as a pooling client does.
                let last = response
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>((status, last))
            };
            let outcome = tokio::time::timeout(RESPONSE_DEADLINE, outcome).await;
            let measured = t0 >= from;
            let last = matches!(outcome, Ok(Ok((_, true))));
            let outcome = outcome.map(|result| result.map(|(status, _)| status));
            match outcome {
                Ok(Ok(status)) if measured => {
                    let _ = stats
                        .latency_us
                        .record(t0.elapsed().as_micros().max(1) as u64);
                    if status == StatusCode::OK {
                        stats.ok += 1;
                    } else if status == StatusCode::SERVICE_UNAVAILABLE {
                        stats.unavailable += 1;
                    } else {
                        stats.errors += 1;
                    }
                }
                Ok(Ok(_)) => {}
                _ => {
                    if measured {
                        stats.errors += 1;
                    }
                    break;
                }
            }
            if last {
                break;
            }
        }
    }
    stats
}

async fn handshake(
    c: usize,
    port: u16,
) -> Result<
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    let stream = connect(c, port).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One raw HTTP/1.1 exchange on its own socket.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// The `x-started-ns` header, if the response had one.
    pub(crate) started_ns: Option<u64>,
    /// `CLOCK_MONOTONIC` ns once the request was written.
    pub(crate) sent_ns: u64,
    /// `CLOCK_MONOTONIC` ns once the whole response was read.
    pub(crate) received_ns: u64,
}

/// Opens a socket from source `i % 4`, writes `METHOD path`, reads the response head and its
/// `Content-Length` body. The connect and write hold a permit of `gate`, if any.
pub(crate) async fn raw_request(
    i: usize,
    port: u16,
    method: &str,
    path: &str,
    gate: Option<&Semaphore>,
) -> io::Result<RawResponse> {
    let permit = match gate {
        Some(gate) => Some(gate.acquire().await.map_err(io::Error::other)?),
        None => None,
    };
    let mut stream = tokio::time::timeout(RESPONSE_DEADLINE, connect(i, port))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connection in time"))??;
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let sent_ns = clock::now_ns();
    drop(permit);

    let read = async {
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        // Bounded: a response larger than 64 KiB is an error here.
        while buf.len() < 64 * 1024 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed early"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(head_end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let body_start = head_end + 4;
                if buf.len() >= body_start + length {
                    let body = buf[body_start..body_start + length].to_vec();
                    let started = head
                        .lines()
                        .find_map(|line| line.strip_prefix("x-started-ns:"))
                        .and_then(|v| v.trim().parse().ok());
                    return Ok((status, body, started));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "response too large",
        ))
    };
    let (status, body, started_ns) = tokio::time::timeout(RESPONSE_DEADLINE, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))??;
    Ok(RawResponse {
        status,
        body,
        started_ns,
        sent_ns,
        received_ns: clock::now_ns(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Opens `n` sockets (at most [`CONNECT_CONCURRENCY`] connecting at once), each sending
/// `GET path(i)` and waiting for its response. Returns the task handles.
/// With `per_second`, request `i` starts no earlier than `i / per_second` after the first.
pub(crate) fn open_many(
    n: usize,
    port: u16,
    path: impl Fn(usize) -> String,
    per_second: Option<u64>,
) -> Vec<tokio::task::JoinHandle<io::Result<RawResponse>>> {
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let start = tokio::time::Instant::now();
    (0..n)
        .map(|i| {
            let gate = gate.clone();
            let path = path(i);
            let at = per_second
                .map(|rate| start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate.max(1)));
            tokio::spawn(async move {
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                raw_request(i, port, "GET", &path, Some(&gate)).await
            })
        })
        .collect()
}

/// Waits for every handle (each bounded by [`RESPONSE_DEADLINE`]).
pub(crate) async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<io::Result<RawResponse>>>,
) -> Vec<io::Result<RawResponse>> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap_or_else(|e| Err(io::Error::other(e))));
    }
    results
}

/// Opens `n` connections (at most [`CONNECT_CONCURRENCY`] connecting at once), each sending
/// `head` and then nothing; returns the connections, and how many could not be opened.
async fn open_idle(
    n: usize,
    port: u16,
    head: String,
    recv_buffer: Option<u32>,
) -> (Vec<TcpStream>, usize) {
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let head: Arc<str> = Arc::from(head);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (gate, head) = (gate.clone(), head.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.map_err(io::Error::other)?;
                let open = async {
                    let mut stream = connect_with(i, port, recv_buffer).await?;
                    stream.write_all(head.as_bytes()).await?;
                    Ok::<_, io::Error>(stream)
                };
                tokio::time::timeout(Duration::from_secs(10), open)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))?
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(n);
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(stream)) => streams.push(stream),
            _ => failed += 1,
        }
    }
    (streams, failed)
}

/// W7's attackers: `n` connections that send half a request head and stall.
pub(crate) async fn open_stalled(n: usize, port: u16) -> (Vec<TcpStream>, usize) {
    open_idle(
        n,
        port,
        "GET /w1 HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_owned(),
        None,
    )
    .await
}

/// W8's slow readers: `n` connections subscribed to `path` that never read, with 4 KiB
/// receive buffers.
pub(crate) async fn open_non_reading(n: usize, port: u16, path: &str) -> Vec<TcpStream> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    open_idle(n, port, head, Some(4 * 1024)).await.0
}

/// How many of `streams` the server has not closed (a read would block, not return EOF).
pub(crate) fn count_open(streams: &[TcpStream]) -> usize {
    let mut buf = [0_u8; 64];
    streams
        .iter()
        .filter(|stream| matches!(stream.try_read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock))
        .count()
}

/// `n` requests one after another, each on a new connection (from 127.0.0.4, apart from the
/// attackers' spread), each given `timeout`: the latency (µs, connect to whole response) of
/// those answered `200`, and how many were not.
pub(crate) async fn fresh_connection_requests(
    port: u16,
    path: &str,
    n: usize,
    timeout: Duration,
) -> (Histogram<u64>, u64) {
    let mut latency = histogram();
    let mut errors = 0;
    for _ in 0..n {
        let started = Instant::now();
        let exchange = async {
            let mut stream = connect(3, port).await?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, io::Error>(response)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) if response.starts_with(b"HTTP/1.1 200") => {
                let _ = latency.record((started.elapsed().as_micros() as u64).max(1));
            }
            _ => errors += 1,
        }
    }
    (latency, errors)
}

/// What one SSE reader saw: latencies (µs, receive − the ns in each event's data), how many
/// events, and when (ns) the last arrived.
pub(crate) struct ReaderStats {
    latency: Histogram<u64>,
    events: u64,
    last_ns: u64,
}

/// Opens `n` SSE subscriptions to `path`, spread over `ports`, each read by a task until it has
/// `events` events (or is aborted); returns the tasks, and how many could not connect.
pub(crate) async fn sse_readers(
    n: usize,
    ports: &[u16],
    path: &str,
    events: usize,
) -> (Vec<tokio::task::JoinHandle<ReaderStats>>, usize) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut readers = Vec::with_capacity(n);
    let mut refused = 0;
    for i in 0..n {
        let port = ports[i % ports.len()];
        let stream = tokio::time::timeout(Duration::from_secs(10), async {
            let mut stream = connect(i, port).await?;
            stream.write_all(head.as_bytes()).await?;
            Ok::<_, io::Error>(stream)
        })
        .await;
        let Ok(Ok(mut stream)) = stream else {
            refused += 1;
            continue;
        };
        readers.push(tokio::spawn(async move {
            let mut stats = ReaderStats::new();
            let mut buffer = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            while stats.events < events as u64 {
                let Ok(read) = stream.read(&mut chunk).await else {
                    break;
                };
                if read == 0 {
                    break;
                }
                stats.feed(&mut buffer, &chunk[..read]);
            }
            stats
        }));
    }
    (readers, refused)
}

/// [`sse_readers`] over HTTP/2 (prior knowledge): `per_connection` subscriptions share each
/// connection, as many browser tabs' `EventSource`s do behind an HTTP/2 edge.
pub(crate) async fn sse_readers_h2(
    n: usize,
    ports: &[u16],
    path: &str,
    events: usize,
    per_connection: usize,
) -> (Vec<tokio::task::JoinHandle<ReaderStats>>, usize) {
    let mut readers = Vec::with_capacity(n);
    let mut refused = 0;
    let connections = n.div_ceil(per_connection.max(1));
    for c in 0..connections {
        let port = ports[c % ports.len()];
        let streams = per_connection.min(n - c * per_connection);
        let handshake = tokio::time::timeout(Duration::from_secs(10), async {
            let stream = connect(c, port).await?;
            hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .map_err(io::Error::other)
        })
        .await;
        let Ok(Ok((sender, connection))) = handshake else {
            refused += streams;
            continue;
        };
        tokio::spawn(connection);
        for _ in 0..streams {
            let mut sender = sender.clone();
            let request = Request::get(format!("http://127.0.0.1:{port}{path}"))
                .body(Empty::<Bytes>::new())
                .expect("a valid request");
            let response = tokio::time::timeout(Duration::from_secs(10), async {
                sender.ready().await?;
                sender.send_request(request).await
            })
            .await;
            let Ok(Ok(response)) = response else {
                refused += 1;
                continue;
            };
            let mut body = response.into_body();
            readers.push(tokio::spawn(async move {
                let mut stats = ReaderStats::new();
                let mut buffer = Vec::with_capacity(4096);
                while stats.events < events as u64 {
                    let Some(Ok(frame)) = body.frame().await else {
                        break;
                    };
                    if let Ok(data) = frame.into_data() {
                        stats.feed(&mut buffer, &data);
                    }
                }
                stats
            }));
        }
    }
    (readers, refused)
}

impl ReaderStats {
    fn new() -> ReaderStats {
        ReaderStats {
            latency: histogram(),
            events: 0,
            last_ns: 0,
        }
    }

    /// Appends `read` to `buffer` and counts every whole `data:` line in it (its number is the
    /// ns at which the event was sent).
    fn feed(&mut self, buffer: &mut Vec<u8>, read: &[u8]) {
        buffer.extend_from_slice(read);
        let now = clock::now_ns();
        let mut consumed = 0;
        while let Some(at) = find(&buffer[consumed..], b"\n") {
            let line = &buffer[consumed..consumed + at];
            if let Some(data) = line.strip_prefix(b"data:") {
                if let Some(sent) = std::str::from_utf8(data)
                    .ok()
                    .and_then(|d| d.trim().parse::<u64>().ok())
                {
                    let _ = self
                        .latency
                        .record((now.saturating_sub(sent) / 1000).max(1));
                    self.events += 1;
                    self.last_ns = now;
                }
            }
            consumed += at + 1;
        }
        buffer.drain(..consumed);
    }
}

/// Waits (at most `limit`) for the readers: every latency, every event counted, the last
/// arrival (ns).
pub(crate) async fn join_sse_readers(
    readers: Vec<tokio::task::JoinHandle<ReaderStats>>,
    limit: Duration,
) -> (Histogram<u64>, u64, u64) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut latency = histogram();
    let (mut delivered, mut last_ns) = (0, 0);
    for reader in readers {
        let abort = reader.abort_handle();
        match tokio::time::timeout_at(deadline, reader).await {
            Ok(Ok(stats)) => {
                let _ = latency.add(&stats.latency);
                delivered += stats.events;
                last_ns = last_ns.max(stats.last_ns);
            }
            _ => abort.abort(),
        }
    }
    (latency, delivered, last_ns)
}
