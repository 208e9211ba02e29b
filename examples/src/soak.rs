//! The soak test ("No leaks"): one process serves every kind of async request and drives many
//! of them over loopback, in rounds, checking after each round that nothing is left behind.
//!
//! [`SoakApp`] is a purpose-made router with one route per kind of async value:
//!
//! | route | async value |
//! |---|---|
//! | `GET /poll?delay_ms=D&timeout_ms=T` | a [`DeferredResult`] completed with `done` by a background task after `D` ms, or `timeout` after `T` ms |
//! | `GET /task/callable` | a [`Callable`]: ~1 ms of blocking work on the bounded [`AsyncTaskExecutor`], `done` |
//! | `GET /task/web` | a cancellable [`WebAsyncTask`] (~1 ms of blocking work in 4 steps, 2 s timeout), `done` |
//! | `GET /sse/emitter` | an [`SseEmitter`] fed [`SSE_EVENTS`] events by a background task, then completed |
//! | `GET /sse/broadcast` | publishes one event to a shared [`SseBroadcaster`], then subscribes (replay, then live events; the subscription times out after [`BROADCAST_SUBSCRIPTION`]) |
//! | `GET /ndjson` (`Accept: application/x-ndjson`) | a [`ReactiveStream`] of [`NDJSON_ITEMS`] JSON lines |
//!
//! [`run`] starts that app on `127.0.0.1:0` in the current tokio runtime and, for each round,
//! sends [`SoakConfig::requests`] mixed requests over at most [`SoakConfig::concurrency`] client
//! connections (hyper's HTTP/1.1 client, keep-alive, spread over the source addresses
//! 127.0.0.1–127.0.0.4). [`SoakConfig::disconnect_percent`] of the requests disconnect on
//! purpose: a long poll or a task is dropped a few milliseconds after it was sent (mid-wait), a
//! stream right after its first body frame (mid-stream). Then it waits (bounded) for the
//! manager's `in_flight` to return to 0 and the runtime's live tasks to return to the count
//! measured before the round, and reports both with the manager's counters and the process's
//! RSS ([`RoundReport`]).
//!
//! Every loop is bounded in count and in time: a request gives up after
//! [`SoakConfig::request_limit`], a round stops sending after [`SoakConfig::round_limit`], and
//! settling gives up after [`SoakConfig::settle_limit`].
//!
//! The `soak` binary runs the full soak (100,000 requests a round, 2 rounds); the test
//! `examples/tests/soak.rs` a short one ([`SoakConfig::quick`]).

use std::{
    fmt, io,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_mvc::{
    AsyncConfig, AsyncManager, AsyncMetrics, AsyncTaskExecutor, Callable, DeferredResult,
    ExecutorMetrics, ReactiveStream, RouterExt, SseBroadcaster, SseEmitter, SseEvent, WebAsyncTask,
};
use axum::{
    extract::{Query, State},
    routing::get,
    Router,
};
use bytes::Bytes;
use futures::StreamExt;
use http::{
    header::{ACCEPT, CONTENT_TYPE, HOST},
    Request, StatusCode,
};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::JoinHandle,
};

/// Client sockets are spread over this many source addresses, 127.0.0.1 to 127.0.0.4 (each has
/// its own ~28,000 ephemeral ports).
pub const SOURCE_ADDRESSES: u8 = 4;
/// Events an [`SseEmitter`] request receives before its stream completes.
pub const SSE_EVENTS: u64 = 3;
/// Lines an NDJSON request receives before its stream ends.
pub const NDJSON_ITEMS: u64 = 4;
/// Events the broadcaster keeps for replay.
pub const BROADCAST_REPLAY: usize = 4;
/// How long a broadcaster subscription stays open: it ends by its timeout.
pub const BROADCAST_SUBSCRIPTION: Duration = Duration::from_millis(30);
/// A long poll's timeout; its delay is drawn from 1 to [`POLL_MAX_DELAY_MS`] ms, so about a
/// quarter of the long polls time out.
pub const POLL_TIMEOUT_MS: u64 = 15;
/// The longest delay before a long poll's background task completes it.
pub const POLL_MAX_DELAY_MS: u64 = 20;
/// The blocking work of one task.
pub const TASK_WORK: Duration = Duration::from_millis(1);
/// Requests a keep-alive client connection sends before it is closed and replaced.
pub const REQUESTS_PER_CONNECTION: u32 = 200;
/// The largest response body a client reads.
const MAX_BODY: usize = 64 * 1024;
/// Failure messages kept per round for the report.
const FAILURE_SAMPLES: usize = 8;
/// The most body frames read while waiting for a stream's first event.
const MAX_FRAMES_BEFORE_FIRST_EVENT: usize = 16;
/// How often settling checks the counters.
const SETTLE_POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// How much load a soak applies, and how long it may take.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Requests sent in each round.
    pub requests: u64,
    /// Rounds; each is followed by a settle check.
    pub rounds: u32,
    /// Client connections (= requests) in flight at once.
    pub concurrency: usize,
    /// Percentage of requests whose client disconnects mid-wait or mid-stream.
    pub disconnect_percent: u64,
    /// Seed of the request mix (the same seed gives the same requests).
    pub seed: u64,
    /// The longest one request may take before it counts as failed.
    pub request_limit: Duration,
    /// After this long a round sends no new request.
    pub round_limit: Duration,
    /// The longest wait after a round for `in_flight` and the live tasks to return to idle.
    pub settle_limit: Duration,
}

impl Default for SoakConfig {
    /// The full soak: 100,000 requests a round, 2 rounds, 256 in flight, 10% disconnects.
    fn default() -> Self {
        SoakConfig {
            requests: 100_000,
            rounds: 2,
            concurrency: 256,
            disconnect_percent: 10,
            seed: 0x5eed_50a4,
            request_limit: Duration::from_secs(10),
            round_limit: Duration::from_secs(600),
            settle_limit: Duration::from_secs(10),
        }
    }
}

impl SoakConfig {
    /// A short soak for the test suite: 1,000 requests a round, 2 rounds, 128 in flight.
    pub fn quick() -> Self {
        SoakConfig {
            requests: 1_000,
            rounds: 2,
            concurrency: 128,
            round_limit: Duration::from_secs(40),
            ..SoakConfig::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The soak's server: one route per kind of async value (see the [module docs](self)), behind
/// one [`AsyncManager`] whose counters the soak checks.
#[derive(Debug, Clone)]
pub struct SoakApp {
    manager: AsyncManager,
    executor: AsyncTaskExecutor,
    broadcaster: SseBroadcaster,
    published: Arc<AtomicU64>,
}

impl SoakApp {
    /// A new app: a bounded executor (4–8 threads `soak-task-…`, 128 queued tasks) and a
    /// broadcaster replaying [`BROADCAST_REPLAY`] events.
    ///
    /// # Panics
    ///
    /// Never in practice: the executor settings are valid constants.
    pub fn new() -> Self {
        let executor = AsyncTaskExecutor::builder()
            .core_pool_size(4)
            .max_pool_size(8)
            .queue_capacity(128)
            .keep_alive(Duration::from_secs(5))
            .thread_name_prefix("soak-task-")
            .build()
            .expect("valid executor settings");
        let manager = AsyncManager::new(
            AsyncConfig::new()
                .default_timeout(Duration::from_secs(10))
                .task_executor(executor.clone()),
        );
        let broadcaster = SseBroadcaster::with_replay(BROADCAST_REPLAY).subscriber_settings(
            SseEmitter::builder()
                .timeout(BROADCAST_SUBSCRIPTION)
                .no_heartbeat(),
        );
        SoakApp {
            manager,
            executor,
            broadcaster,
            published: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The manager behind every route.
    pub fn manager(&self) -> &AsyncManager {
        &self.manager
    }

    /// The bounded executor that runs the tasks.
    pub fn executor(&self) -> &AsyncTaskExecutor {
        &self.executor
    }

    /// The routes, with async support.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/poll", get(poll))
            .route("/task/callable", get(callable))
            .route("/task/web", get(web_task))
            .route("/sse/emitter", get(sse_emitter))
            .route("/sse/broadcast", get(sse_broadcast))
            .route("/ndjson", get(ndjson))
            .with_state(self.clone())
            .async_support(self.manager.clone())
    }
}

impl Default for SoakApp {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    delay_ms: u64,
    timeout_ms: u64,
}

/// A long poll completed by a background task after `delay_ms`, or `timeout` after `timeout_ms`.
async fn poll(Query(query): Query<PollQuery>) -> DeferredResult<String> {
    let delay = Duration::from_millis(query.delay_ms.min(1_000));
    let timeout = Duration::from_millis(query.timeout_ms.clamp(1, 10_000));
    let result = DeferredResult::with_timeout_result(timeout, "timeout".to_owned());
    let completer = result.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        // `false` once the timeout fired or the client left: nothing to do then.
        completer.set_result("done".to_owned());
    });
    result
}

async fn callable() -> Callable<&'static str> {
    Callable::new(|| {
        std::thread::sleep(TASK_WORK);
        "done"
    })
}

async fn web_task(State(app): State<SoakApp>) -> WebAsyncTask<&'static str> {
    WebAsyncTask::cancellable(|token| {
        for _ in 0..4 {
            if token.is_cancelled() {
                return "cancelled";
            }
            std::thread::sleep(TASK_WORK / 4);
        }
        "done"
    })
    .timeout(Duration::from_secs(2))
    .executor(app.executor.clone())
    .on_timeout(|| "timeout")
}

/// The `n`th event of an [`SseEmitter`] stream.
fn emitter_event(n: u64) -> SseEvent {
    SseEvent::builder()
        .id(n.to_string())
        .event("tick")
        .data(format!("tick {n}"))
        .build()
        .expect("a valid id and event name")
}

async fn sse_emitter() -> SseEmitter {
    let emitter = SseEmitter::builder()
        .timeout(Duration::from_secs(5))
        .no_heartbeat()
        .build();
    let sender = emitter.clone();
    tokio::spawn(async move {
        for n in 0..SSE_EVENTS {
            if sender.send_event(&emitter_event(n)).await.is_err() {
                return; // The client left, or the stream timed out.
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sender.complete();
    });
    emitter
}

async fn sse_broadcast(State(app): State<SoakApp>) -> SseEmitter {
    let n = app.published.fetch_add(1, Ordering::Relaxed);
    let event = SseEvent::builder()
        .id(n.to_string())
        .event("news")
        .data(format!("news {n}"))
        .build()
        .expect("a valid id and event name");
    app.broadcaster.publish(&event);
    // An id never published: the whole replay buffer first, then live events.
    app.broadcaster.subscribe(Some("none"))
}

async fn ndjson() -> ReactiveStream {
    ReactiveStream::new(futures::stream::iter(0..NDJSON_ITEMS).then(|n| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        serde_json::json!({ "n": n, "text": "line" })
    }))
}

// ---------------------------------------------------------------------------------------------
// The request mix
// ---------------------------------------------------------------------------------------------

/// A kind of request the soak sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /poll`: a long poll ([`DeferredResult`]).
    Poll,
    /// `GET /task/callable`: a [`Callable`].
    Callable,
    /// `GET /task/web`: a [`WebAsyncTask`].
    WebTask,
    /// `GET /sse/emitter`: an [`SseEmitter`].
    SseEmitter,
    /// `GET /sse/broadcast`: an [`SseBroadcaster`] subscription.
    SseBroadcast,
    /// `GET /ndjson`: a [`ReactiveStream`] as NDJSON.
    Ndjson,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::Poll,
        Kind::Callable,
        Kind::WebTask,
        Kind::SseEmitter,
        Kind::SseBroadcast,
        Kind::Ndjson,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Poll => "long poll",
            Kind::Callable => "callable",
            Kind::WebTask => "web task",
            Kind::SseEmitter => "sse emitter",
            Kind::SseBroadcast => "sse broadcast",
            Kind::Ndjson => "ndjson",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn is_stream(self) -> bool {
        matches!(self, Kind::SseEmitter | Kind::SseBroadcast | Kind::Ndjson)
    }

    /// The share of requests, in percent: 30 / 15 / 15 / 15 / 10 / 15.
    fn pick(roll: u64) -> Kind {
        match roll % 100 {
            0..=29 => Kind::Poll,
            30..=44 => Kind::Callable,
            45..=59 => Kind::WebTask,
            60..=74 => Kind::SseEmitter,
            75..=84 => Kind::SseBroadcast,
            _ => Kind::Ndjson,
        }
    }
}

/// splitmix64: a fast, well-mixed hash of a counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What one request does, drawn from the seed, the round and its index.
#[derive(Debug, Clone)]
struct Plan {
    kind: Kind,
    disconnect: bool,
    /// For a long poll: when the background task completes it.
    delay_ms: u64,
    /// For a mid-wait disconnect: how long after sending the client leaves.
    drop_after: Duration,
}

impl Plan {
    fn new(config: &SoakConfig, round: u32, index: u64) -> Plan {
        let base = mix(config.seed ^ (u64::from(round) << 40) ^ index);
        Plan {
            kind: Kind::pick(base),
            disconnect: mix(base ^ 1) % 100 < config.disconnect_percent,
            delay_ms: 1 + mix(base ^ 2) % POLL_MAX_DELAY_MS,
            drop_after: Duration::from_millis(1 + mix(base ^ 3) % 8),
        }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let path = match self.kind {
            Kind::Poll => format!(
                "/poll?delay_ms={}&timeout_ms={POLL_TIMEOUT_MS}",
                self.delay_ms
            ),
            Kind::Callable => "/task/callable".to_owned(),
            Kind::WebTask => "/task/web".to_owned(),
            Kind::SseEmitter => "/sse/emitter".to_owned(),
            Kind::SseBroadcast => "/sse/broadcast".to_owned(),
            Kind::Ndjson => "/ndjson".to_owned(),
        };
        let accept = match self.kind {
            Kind::SseEmitter | Kind::SseBroadcast => "text/event-stream",
            Kind::Ndjson => "application/x-ndjson",
            _ => "*/*",
        };
        Request::get(path)
            .header(HOST, "127.0.0.1")
            .header(ACCEPT, accept)
            .body(Empty::new())
            .expect("a valid request")
    }
}

// ---------------------------------------------------------------------------------------------
// Client outcomes
// ---------------------------------------------------------------------------------------------

/// What the clients of one kind saw in a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Requests sent.
    pub sent: u64,
    /// Complete, expected responses.
    pub ok: u64,
    /// Long polls answered with their timeout result (`timeout`).
    pub timed_out: u64,
    /// `503`: the executor was full.
    pub rejected: u64,
    /// Requests whose client disconnected on purpose.
    pub disconnected: u64,
    /// Anything else: a transport error, an unexpected status or body, no answer in time.
    pub failed: u64,
}

impl KindStats {
    fn add(&mut self, other: &KindStats) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.timed_out += other.timed_out;
        self.rejected += other.rejected;
        self.disconnected += other.disconnected;
        self.failed += other.failed;
    }
}

/// How one request ended, as the client saw it.
enum Outcome {
    Ok,
    TimedOut,
    Rejected,
    Disconnected,
}

#[derive(Debug, Default)]
struct ClientStats {
    kinds: [KindStats; 6],
    failures: Vec<String>,
}

impl ClientStats {
    fn record(&mut self, kind: Kind, result: Result<Outcome, String>) {
        let stats = &mut self.kinds[kind.index()];
        match result {
            Ok(Outcome::Ok) => stats.ok += 1,
            Ok(Outcome::TimedOut) => stats.timed_out += 1,
            Ok(Outcome::Rejected) => stats.rejected += 1,
            Ok(Outcome::Disconnected) => stats.disconnected += 1,
            Err(message) => {
                stats.failed += 1;
                if self.failures.len() < FAILURE_SAMPLES {
                    self.failures.push(format!("{}: {message}", kind.name()));
                }
            }
        }
    }

    fn merge(&mut self, other: ClientStats) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            mine.add(theirs);
        }
        for failure in other.failures {
            if self.failures.len() < FAILURE_SAMPLES {
                self.failures.push(failure);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Connects to `127.0.0.1:port` from `127.0.0.{1 + source % 4}`.
async fn connect(source: u64, port: u16) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let last = 1 + (source % u64::from(SOURCE_ADDRESSES)) as u8;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))?;
    let stream = socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One HTTP/1.1 client connection: its request handle and the task that drives it.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
    used: u32,
}

impl Connection {
    async fn open(source: u64, port: u16) -> Result<Connection, String> {
        let stream = connect(source, port)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake: {error}"))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            task,
            used: 0,
        })
    }

    /// Closes the connection cleanly: with its handle gone, the idle connection shuts down.
    async fn close(self) {
        let Connection { sender, task, .. } = self;
        drop(sender);
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Drops the connection at once, whatever it is doing: the socket is closed under it.
    async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Sends `plan`'s request on `sender` and reads the whole response.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    plan: &Plan,
) -> Result<(StatusCode, Option<String>, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|error| format!("not ready: {error}"))?;
    let response = sender
        .send_request(plan.request())
        .await
        .map_err(|error| format!("request: {error}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?
        .to_bytes();
    Ok((status, content_type, body))
}

/// Checks a complete response against what `plan`'s route answers.
fn check(
    plan: &Plan,
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, String> {
    let unexpected = || {
        format!(
            "unexpected {status} {content_type:?} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    };
    match plan.kind {
        Kind::Poll => match (status, body) {
            (StatusCode::OK, b"done") => Ok(Outcome::Ok),
            (StatusCode::OK, b"timeout") => Ok(Outcome::TimedOut),
            _ => Err(unexpected()),
        },
        Kind::Callable | Kind::WebTask => match (status, body) {
            (StatusCode::OK, b"done") => Ok(Outcome::Ok),
            (StatusCode::SERVICE_UNAVAILABLE, _) => Ok(Outcome::Rejected),
            _ => Err(unexpected()),
        },
        Kind::SseEmitter => {
            let expected: Vec<u8> = (0..SSE_EVENTS)
                .flat_map(|n| emitter_event(n).into_bytes())
                .collect();
            if status == StatusCode::OK
                && content_type == Some("text/event-stream")
                && body == expected.as_slice()
            {
                Ok(Outcome::Ok)
            } else {
                Err(unexpected())
            }
        }
        Kind::SseBroadcast => {
            // The replay holds at least the event this request published; live events follow.
            let events = body.windows(2).filter(|pair| pair == b"\n\n").count();
            if status == StatusCode::OK
                && content_type == Some("text/event-stream")
                && events >= 1
                && body.ends_with(b"\n\n")
                && body.starts_with(b"id:")
            {
                Ok(Outcome::Ok)
            } else {
                Err(unexpected())
            }
        }
        Kind::Ndjson => {
            let text = std::str::from_utf8(body).map_err(|_| unexpected())?;
            let lines: Vec<&str> = text.split_terminator('\n').collect();
            let well_formed = text.ends_with('\n')
                && lines.len() as u64 == NDJSON_ITEMS
                && lines.iter().enumerate().all(|(n, line)| {
                    serde_json::from_str::<serde_json::Value>(line).ok()
                        == Some(serde_json::json!({ "n": n, "text": "line" }))
                });
            if status == StatusCode::OK
                && content_type == Some("application/x-ndjson")
                && well_formed
            {
                Ok(Outcome::Ok)
            } else {
                Err(unexpected())
            }
        }
    }
}

/// A request whose client leaves on purpose, on a connection of its own: a long poll or a task
/// a few milliseconds after it was sent, a stream after its first body frame.
async fn disconnecting(
    source: u64,
    port: u16,
    plan: &Plan,
    limit: Duration,
) -> Result<Outcome, String> {
    let mut connection = Connection::open(source, port).await?;
    let sender = &mut connection.sender;
    let exchange = async {
        sender
            .ready()
            .await
            .map_err(|error| format!("not ready: {error}"))?;
        let response = sender.send_request(plan.request());
        if !plan.kind.is_stream() {
            // Mid-wait: whatever came back by then, the client leaves now.
            let _ = tokio::time::timeout(plan.drop_after, response).await;
            return Ok(Outcome::Disconnected);
        }
        let response = response
            .await
            .map_err(|error| format!("request: {error}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("unexpected {}", response.status()));
        }
        // Mid-stream: the first frame with data, then the client leaves.
        let mut body = response.into_body();
        for _ in 0..MAX_FRAMES_BEFORE_FIRST_EVENT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if frame.data_ref().is_some_and(|data| !data.is_empty()) {
                        return Ok(Outcome::Disconnected);
                    }
                }
                Some(Err(error)) => return Err(format!("body: {error}")),
                None => return Err("the stream ended before its first event".to_owned()),
            }
        }
        Err("no event in the first frames".to_owned())
    };
    let result = tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")));
    connection.abort().await;
    result
}

/// What a round's workers share.
struct RoundWork {
    config: SoakConfig,
    round: u32,
    port: u16,
    next: AtomicU64,
    deadline: Instant,
}

/// One client worker: takes request numbers until the round is done, one request at a time,
/// on a keep-alive connection (a new one after an error or every
/// [`REQUESTS_PER_CONNECTION`] requests); disconnecting requests get a connection of their own.
async fn worker(id: u64, work: Arc<RoundWork>) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut kept: Option<Connection> = None;
    let limit = work.config.request_limit;
    loop {
        let index = work.next.fetch_add(1, Ordering::Relaxed);
        if index >= work.config.requests || Instant::now() >= work.deadline {
            break;
        }
        let plan = Plan::new(&work.config, work.round, index);
        stats.kinds[plan.kind.index()].sent += 1;
        if plan.disconnect {
            let result = disconnecting(index, work.port, &plan, limit).await;
            stats.record(plan.kind, result);
            continue;
        }
        let reusable = match &kept {
            Some(connection) => {
                connection.used < REQUESTS_PER_CONNECTION && !connection.sender.is_closed()
            }
            None => false,
        };
        if !reusable {
            if let Some(old) = kept.take() {
                old.close().await;
            }
            match Connection::open(id, work.port).await {
                Ok(connection) => kept = Some(connection),
                Err(message) => {
                    stats.record(plan.kind, Err(message));
                    continue;
                }
            }
        }
        let Some(connection) = kept.as_mut() else {
            continue;
        };
        connection.used += 1;
        let result =
            match tokio::time::timeout(limit, exchange(&mut connection.sender, &plan)).await {
                Ok(Ok((status, content_type, body))) => {
                    check(&plan, status, content_type.as_deref(), &body)
                }
                Ok(Err(message)) => Err(message),
                Err(_) => Err(format!("no answer within {limit:?}")),
            };
        if result.is_err() {
            if let Some(broken) = kept.take() {
                broken.abort().await;
            }
        }
        stats.record(plan.kind, result);
    }
    if let Some(connection) = kept {
        connection.close().await;
    }
    stats
}

// ---------------------------------------------------------------------------------------------
// Rounds and reports
// ---------------------------------------------------------------------------------------------

/// The process's resident set size in KiB (`VmRSS` of `/proc/self/status`), where there is one.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises the soft limit of open files to the hard limit; returns the new soft limit (0 if it
/// could not be read or raised).
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// The live tasks of the current tokio runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What one round did and left behind.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// The round, from 1.
    pub round: u32,
    /// What the clients saw, per kind (in [`Kind::ALL`] order).
    pub kinds: [KindStats; 6],
    /// A few failure messages, if there were failures.
    pub failures: Vec<String>,
    /// How long sending the round's requests took.
    pub elapsed: Duration,
    /// The manager's counters once the round settled (or gave up): cumulative since start.
    pub metrics: AsyncMetrics,
    /// The manager's counters before the round.
    pub metrics_before: AsyncMetrics,
    /// The executor's counters once the round settled (cumulative).
    pub executor: ExecutorMetrics,
    /// Live tokio tasks before the round: the idle count.
    pub idle_tasks: usize,
    /// Live tokio tasks once the round settled (or gave up).
    pub tasks_after: usize,
    /// Whether `in_flight` returned to 0 and the live tasks to the idle count in time.
    pub settled: bool,
    /// How long settling took (or waited in vain).
    pub settle_wait: Duration,
    /// RSS before the round, in KiB.
    pub rss_before_kib: Option<u64>,
    /// RSS once the round settled, in KiB.
    pub rss_after_kib: Option<u64>,
}

impl RoundReport {
    /// Every kind's stats added up.
    pub fn total(&self) -> KindStats {
        let mut total = KindStats::default();
        for stats in &self.kinds {
            total.add(stats);
        }
        total
    }

    /// What this round leaked, if anything: requests still in flight, or tasks above idle.
    pub fn leaks(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        if self.metrics.in_flight != 0 {
            leaks.push(format!(
                "round {}: in_flight is {} after {:?}, not 0",
                self.round, self.metrics.in_flight, self.settle_wait
            ));
        }
        if self.tasks_after > self.idle_tasks {
            leaks.push(format!(
                "round {}: {} live tasks after {:?}, idle was {}",
                self.round, self.tasks_after, self.settle_wait, self.idle_tasks
            ));
        }
        leaks
    }
}

fn kib(value: Option<u64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |kib| format!("{kib} KiB"))
}

impl fmt::Display for RoundReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let rate = total.sent as f64 / self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "round {}: {} requests in {:.2} s ({rate:.0}/s)",
            self.round,
            total.sent,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {:<14} {:>7} {:>7} {:>9} {:>8} {:>12} {:>6}",
            "client", "sent", "ok", "timed out", "rejected", "disconnected", "failed"
        )?;
        for (kind, stats) in Kind::ALL.iter().zip(&self.kinds) {
            writeln!(
                f,
                "  {:<14} {:>7} {:>7} {:>9} {:>8} {:>12} {:>6}",
                kind.name(),
                stats.sent,
                stats.ok,
                stats.timed_out,
                stats.rejected,
                stats.disconnected,
                stats.failed
            )?;
        }
        writeln!(
            f,
            "  {:<14} {:>7} {:>7} {:>9} {:>8} {:>12} {:>6}",
            "total",
            total.sent,
            total.ok,
            total.timed_out,
            total.rejected,
            total.disconnected,
            total.failed
        )?;
        for failure in &self.failures {
            writeln!(f, "  failure: {failure}")?;
        }
        let (m, b) = (&self.metrics, &self.metrics_before);
        writeln!(
            f,
            "  manager (this round): completed {} timed_out {} disconnected {} rejected {} errors {}",
            m.completed - b.completed,
            m.timed_out - b.timed_out,
            m.disconnected - b.disconnected,
            m.rejected - b.rejected,
            m.errors - b.errors
        )?;
        writeln!(
            f,
            "  manager (total): in_flight {} completed {} timed_out {} disconnected {} rejected {} errors {}",
            m.in_flight, m.completed, m.timed_out, m.disconnected, m.rejected, m.errors
        )?;
        let e = &self.executor;
        writeln!(
            f,
            "  executor (total): active {} queued {} completed {} rejected {} cancelled {} largest_active {} largest_queued {}",
            e.active, e.queued, e.completed, e.rejected, e.cancelled, e.largest_active, e.largest_queued
        )?;
        writeln!(
            f,
            "  tasks: idle {} -> after {} ({}, waited {} ms)",
            self.idle_tasks,
            self.tasks_after,
            if self.settled {
                "settled"
            } else {
                "NOT SETTLED"
            },
            self.settle_wait.as_millis()
        )?;
        write!(
            f,
            "  rss: before {} -> after {}",
            kib(self.rss_before_kib),
            kib(self.rss_after_kib)
        )
    }
}

/// Every round of a soak.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The rounds, in order.
    pub rounds: Vec<RoundReport>,
}

impl SoakReport {
    /// Everything any round leaked; empty when the soak is clean.
    pub fn leaks(&self) -> Vec<String> {
        self.rounds.iter().flat_map(RoundReport::leaks).collect()
    }

    /// Client-side failures over all rounds.
    pub fn failures(&self) -> u64 {
        self.rounds.iter().map(|round| round.total().failed).sum()
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "summary:")?;
        let delta = |from: Option<u64>, to: Option<u64>| match (from, to) {
            (Some(from), Some(to)) if from > 0 => {
                let delta = to as i64 - from as i64;
                format!(
                    "{delta:+} KiB ({:+.1}%)",
                    delta as f64 * 100.0 / from as f64
                )
            }
            _ => "n/a".to_owned(),
        };
        let first = self.rounds.first().and_then(|round| round.rss_after_kib);
        let mut previous = None;
        for round in &self.rounds {
            write!(
                f,
                "  round {}: in_flight {}, tasks {} (idle {}), rss {}",
                round.round,
                round.metrics.in_flight,
                round.tasks_after,
                round.idle_tasks,
                kib(round.rss_after_kib)
            )?;
            if round.round > 1 {
                write!(
                    f,
                    ", delta vs round 1: {}, vs previous round: {}",
                    delta(first, round.rss_after_kib),
                    delta(previous, round.rss_after_kib)
                )?;
            }
            previous = round.rss_after_kib;
            writeln!(f)?;
        }
        let leaks = self.leaks();
        if leaks.is_empty() {
            write!(f, "no leaks")
        } else {
            write!(f, "LEAKS: {}", leaks.join("; "))
        }
    }
}

/// Waits until `in_flight` is 0 and at most `idle` tasks are alive, or `limit` has passed.
async fn settle(manager: &AsyncManager, idle: usize, limit: Duration) -> (bool, Duration) {
    let start = Instant::now();
    loop {
        if manager.metrics().in_flight == 0 && alive_tasks() <= idle {
            return (true, start.elapsed());
        }
        if start.elapsed() >= limit {
            return (false, start.elapsed());
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Runs the soak in the current tokio runtime (multi-threaded, to be realistic): serves a
/// [`SoakApp`] on `127.0.0.1:0`, then runs `config.rounds` rounds, calling `on_round` after
/// each. Raise the open-file limit first ([`raise_fd_limit`]).
///
/// # Errors
///
/// When the server cannot listen on `127.0.0.1:0`.
pub async fn run(
    config: &SoakConfig,
    mut on_round: impl FnMut(&RoundReport),
) -> io::Result<SoakReport> {
    let app = SoakApp::new();
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let port = listener.local_addr()?.port();
    let router = app.router();
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "soak server failed");
        }
    });

    let mut rounds = Vec::new();
    for round in 1..=config.rounds {
        let idle_tasks = alive_tasks();
        let rss_before_kib = rss_kib();
        let metrics_before = app.manager().metrics();
        let started = Instant::now();
        let work = Arc::new(RoundWork {
            config: config.clone(),
            round,
            port,
            next: AtomicU64::new(0),
            deadline: started + config.round_limit,
        });
        let workers: Vec<_> = (0..config.concurrency as u64)
            .map(|id| tokio::spawn(worker(id, work.clone())))
            .collect();
        // A worker stops taking requests at the deadline and gives each up after its limit.
        let give_up = work.deadline + 2 * config.request_limit + Duration::from_secs(5);
        let mut clients = ClientStats::default();
        for worker in workers {
            let abort = worker.abort_handle();
            match tokio::time::timeout_at(give_up.into(), worker).await {
                Ok(Ok(stats)) => clients.merge(stats),
                Ok(Err(error)) => clients.failures.push(format!("a worker failed: {error}")),
                Err(_) => {
                    abort.abort();
                    clients.failures.push("a worker hung".to_owned());
                }
            }
        }
        let elapsed = started.elapsed();
        let (settled, settle_wait) = settle(app.manager(), idle_tasks, config.settle_limit).await;
        let report = RoundReport {
            round,
            kinds: clients.kinds,
            failures: clients.failures,
            elapsed,
            metrics: app.manager().metrics(),
            metrics_before,
            executor: app.executor().metrics(),
            idle_tasks,
            tasks_after: alive_tasks(),
            settled,
            settle_wait,
            rss_before_kib,
            rss_after_kib: rss_kib(),
        };
        on_round(&report);
        rounds.push(report);
    }
    server.abort();
    let _ = server.await;
    Ok(SoakReport { rounds })
}
