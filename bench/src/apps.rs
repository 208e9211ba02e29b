//! The servers under test: the same endpoints, hand-written on axum + tokio (the baseline) and
//! with async-mvc.
//!
//! | path | what it does |
//! |---|---|
//! | `GET /w1` | answers `hello, world` at once (baseline: a plain handler; async-mvc: an immediately set `DeferredResult`) |
//! | `GET /w2/{id}` | long poll, registered in a list, [`LONG_POLL_TIMEOUT`]; the body is the `CLOCK_MONOTONIC` ns at which the result was set |
//! | `GET /w2/count` | how many long polls are registered |
//! | `POST /w2/complete[?per_ms=N]` | one background task completes every registered long poll, at once or `N` per millisecond |
//! | `GET /w3` | never completed: `503` after [`W3_TIMEOUT`] with the same `text/plain` body from both (`async request timed out after 1000 ms`, async-mvc's timeout response), with the handler's start time in [`STARTED_HEADER`] |
//! | `GET /w4/events` | an SSE subscription (baseline: `Sse` over a `broadcast` receiver; async-mvc: `SseBroadcaster`) |
//! | `POST /w4/publish?n=N` | publishes `N` events from the handler |
//! | `GET /w8/events` | async-mvc only: an SSE subscription with the library's default buffer bounds (256 events, 64 KiB) and slow-subscriber timeout |
//! | `POST /w8/publish?rate=R&seconds=S` | async-mvc only: a background task publishes [`W8_EVENT_BYTES`]-byte events at `R`/s for `S` s |
//! | `GET /w8/stats` | async-mvc only: `in_flight subscribers slow_consumers` of the manager and the W8 broadcaster |
//! | `GET /w5` | 1 ms of blocking work (`std::thread::sleep`, as a servlet thread would block) on a pool of [`W5_THREADS`] threads |

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_mvc::{
    AsyncConfig, AsyncManager, AsyncTaskExecutor, Callable, DeferredResult, RouterExt,
    SseBroadcaster, SseEmitter, SseEvent,
};
use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::{
        sse::{Event, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Router,
};
use futures::{future, Stream, StreamExt};
use tokio::sync::{broadcast, oneshot};
use tokio_stream::wrappers::BroadcastStream;

use crate::clock;

/// The body of `GET /w1`.
pub const HELLO: &str = "hello, world";
/// The timeout of a `GET /w2/{id}` long poll: longer than any hold.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(120);
/// The timeout of `GET /w3`.
pub const W3_TIMEOUT: Duration = Duration::from_secs(1);
/// Threads for `GET /w5`'s blocking work (Tomcat's setting in the issue).
pub const W5_THREADS: usize = 50;
/// How long `GET /w5` blocks.
pub const W5_WORK: Duration = Duration::from_millis(1);
/// The data of one W8 event, in bytes (the encoded event is `data:` + this + `\n\n`).
pub const W8_EVENT_BYTES: usize = 100;
/// Events buffered per SSE subscriber, in both implementations (async-mvc's default).
pub const SSE_CAPACITY: usize = async_mvc::DEFAULT_CAPACITY;

/// Which implementation serves the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Hand-written axum: oneshot channels, `tokio::time::timeout`, `Sse` + `broadcast`,
    /// `spawn_blocking`.
    Baseline,
    /// async-mvc: `DeferredResult`, `Callable` on an `AsyncTaskExecutor`, `SseBroadcaster`.
    AsyncMvc,
}

impl Impl {
    /// Both, baseline first.
    pub const ALL: [Impl; 2] = [Impl::Baseline, Impl::AsyncMvc];

    /// The name used on command lines and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Baseline => "baseline",
            Impl::AsyncMvc => "async-mvc",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn parse(name: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|imp| imp.name() == name)
    }
}

/// The server's state, to drive it in process: complete long polls, publish events.
#[derive(Debug, Clone)]
pub enum Control {
    /// The baseline's state.
    Baseline(Arc<BaselineState>),
    /// async-mvc's state.
    AsyncMvc(Arc<MvcState>),
}

impl Control {
    /// How many long polls are registered and not yet completed.
    pub fn pending(&self) -> usize {
        match self {
            Control::Baseline(state) => lock(&state.pending).len(),
            Control::AsyncMvc(state) => lock(&state.pending).len(),
        }
    }

    /// Completes every registered long poll, each with the clock reading at its own set time.
    /// Returns how many were completed.
    pub fn complete_all(&self) -> usize {
        match self {
            Control::Baseline(state) => {
                let pending = std::mem::take(&mut *lock(&state.pending));
                let n = pending.len();
                for sender in pending {
                    let _ = sender.send(clock::now_ns().to_string());
                }
                n
            }
            Control::AsyncMvc(state) => {
                let pending = std::mem::take(&mut *lock(&state.pending));
                let n = pending.len();
                for result in pending {
                    result.set_result(clock::now_ns().to_string());
                }
                n
            }
        }
    }

    /// Completes every registered long poll at `per_ms` per millisecond (a steady rate, not one
    /// burst), each with the clock reading at its own set time. Returns how many were completed.
    pub async fn complete_paced(&self, per_ms: usize) -> usize {
        let per_ms = per_ms.max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        match self {
            Control::Baseline(state) => {
                let mut pending = std::mem::take(&mut *lock(&state.pending)).into_iter();
                let n = pending.len();
                while pending.len() > 0 {
                    tick.tick().await;
                    for sender in pending.by_ref().take(per_ms) {
                        let _ = sender.send(clock::now_ns().to_string());
                    }
                }
                n
            }
            Control::AsyncMvc(state) => {
                let mut pending = std::mem::take(&mut *lock(&state.pending)).into_iter();
                let n = pending.len();
                while pending.len() > 0 {
                    tick.tick().await;
                    for result in pending.by_ref().take(per_ms) {
                        result.set_result(clock::now_ns().to_string());
                    }
                }
                n
            }
        }
    }

    /// Publishes one SSE event whose data is `text` to every subscriber. Returns how many
    /// subscribers it was queued for.
    pub fn publish(&self, text: &str) -> usize {
        match self {
            Control::Baseline(state) => state.events.send(Arc::from(text)).unwrap_or(0),
            Control::AsyncMvc(state) => state.hub.publish(&SseEvent::data(text)),
        }
    }

    /// How many SSE subscribers are connected.
    pub fn subscribers(&self) -> usize {
        match self {
            Control::Baseline(state) => state.events.receiver_count(),
            Control::AsyncMvc(state) => state.hub.subscribers(),
        }
    }
}

/// The router of `imp` and the handle to drive it.
///
/// # Panics
///
/// If async-mvc's executor cannot be built (it can: the settings are constants).
pub fn app(imp: Impl) -> (Router, Control) {
    match imp {
        Impl::Baseline => {
            let state = Arc::new(BaselineState::default());
            (baseline::router(state.clone()), Control::Baseline(state))
        }
        Impl::AsyncMvc => {
            let state = Arc::new(MvcState::default());
            (mvc::router(state.clone()), Control::AsyncMvc(state))
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `n` from a `n=N` query string (default 1).
fn count_param(query: Option<String>) -> usize {
    query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("n=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// `POST /w2/complete[?per_ms=N]`: one background task completes every registered long poll,
/// all at once or `N` per millisecond.
fn spawn_completion(control: Control, query: Option<String>) -> StatusCode {
    let per_ms = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("per_ms=")))
        .and_then(|n| n.parse().ok());
    tokio::spawn(async move {
        match per_ms {
            Some(per_ms) => control.complete_paced(per_ms).await,
            None => control.complete_all(),
        }
    });
    StatusCode::ACCEPTED
}

/// The header `GET /w3` answers with: the `CLOCK_MONOTONIC` ns at which its handler started, so
/// lateness excludes time spent in the accept queue.
pub const STARTED_HEADER: &str = "x-started-ns";

fn started_header() -> [(&'static str, String); 1] {
    [(STARTED_HEADER, clock::now_ns().to_string())]
}

fn blocking_work() -> &'static str {
    std::thread::sleep(W5_WORK);
    "done"
}

/// The baseline's state: oneshot senders of pending long polls, a broadcast channel for SSE.
#[derive(Debug)]
pub struct BaselineState {
    pending: Mutex<Vec<oneshot::Sender<String>>>,
    events: broadcast::Sender<Arc<str>>,
}

impl Default for BaselineState {
    fn default() -> Self {
        BaselineState {
            pending: Mutex::new(Vec::new()),
            events: broadcast::channel(SSE_CAPACITY).0,
        }
    }
}

mod baseline {
    use super::*;

    pub(super) fn router(state: Arc<BaselineState>) -> Router {
        Router::new()
            .route("/w1", get(w1))
            .route("/w2/count", get(count))
            .route("/w2/complete", post(complete))
            .route("/w2/{id}", get(long_poll))
            .route("/w3", get(w3))
            .route("/w4/events", get(events))
            .route("/w4/publish", post(publish))
            .route("/w5", get(w5))
            .with_state(state)
    }

    async fn w1() -> &'static str {
        HELLO
    }

    async fn long_poll(State(state): State<Arc<BaselineState>>, Path(_id): Path<u64>) -> Response {
        let (tx, rx) = oneshot::channel();
        lock(&state.pending).push(tx);
        match tokio::time::timeout(LONG_POLL_TIMEOUT, rx).await {
            Ok(Ok(body)) => body.into_response(),
            _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }

    async fn count(State(state): State<Arc<BaselineState>>) -> String {
        lock(&state.pending).len().to_string()
    }

    async fn complete(
        State(state): State<Arc<BaselineState>>,
        RawQuery(q): RawQuery,
    ) -> StatusCode {
        spawn_completion(Control::Baseline(state), q)
    }

    async fn w3() -> Response {
        let start = started_header();
        let (tx, rx) = oneshot::channel::<String>();
        let outcome = tokio::time::timeout(W3_TIMEOUT, rx).await;
        drop(tx);
        match outcome {
            Ok(Ok(body)) => (start, body).into_response(),
            // The bytes async-mvc answers a timeout with: the same contract, byte for byte (an
            // empty `503` cost the baseline ~4,600 instructions less per request, client and
            // server, in `per_request timeout-*`, which measured the body, not the lifecycle).
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                start,
                format!(
                    "async request timed out after {} ms",
                    W3_TIMEOUT.as_millis()
                ),
            )
                .into_response(),
        }
    }

    async fn events(
        State(state): State<Arc<BaselineState>>,
    ) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
        let stream = BroadcastStream::new(state.events.subscribe()).filter_map(|message| {
            future::ready(message.ok().map(|text| Ok(Event::default().data(&*text))))
        });
        Sse::new(stream)
    }

    async fn publish(State(state): State<Arc<BaselineState>>, RawQuery(q): RawQuery) -> String {
        let control = Control::Baseline(state);
        let n = count_param(q);
        (0..n)
            .map(|i| control.publish(&format!("event {i}")))
            .sum::<usize>()
            .to_string()
    }

    async fn w5() -> Response {
        match tokio::task::spawn_blocking(blocking_work).await {
            Ok(body) => body.into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// async-mvc's state: pending `DeferredResult`s, an `SseBroadcaster`.
#[derive(Debug)]
pub struct MvcState {
    pending: Mutex<Vec<DeferredResult<String>>>,
    hub: SseBroadcaster,
    /// W8's broadcaster: the library's defaults for subscribers.
    w8: SseBroadcaster,
    manager: AsyncManager,
}

impl Default for MvcState {
    fn default() -> Self {
        MvcState {
            pending: Mutex::new(Vec::new()),
            hub: SseBroadcaster::new().subscriber_settings(
                SseEmitter::builder()
                    .no_timeout()
                    .no_heartbeat()
                    .capacity(SSE_CAPACITY),
            ),
            w8: SseBroadcaster::new()
                .subscriber_settings(SseEmitter::builder().no_timeout().no_heartbeat()),
            manager: AsyncManager::new(
                AsyncConfig::new().task_executor(
                    AsyncTaskExecutor::builder()
                        .core_pool_size(W5_THREADS)
                        .max_pool_size(W5_THREADS)
                        .thread_name_prefix("w5-")
                        .build()
                        .expect("constant executor settings are valid"),
                ),
            ),
        }
    }
}

mod mvc {
    use super::*;

    pub(super) fn router(state: Arc<MvcState>) -> Router {
        let manager = state.manager.clone();
        Router::new()
            .route("/w1", get(w1))
            .route("/w2/count", get(count))
            .route("/w2/complete", post(complete))
            .route("/w2/{id}", get(long_poll))
            .route("/w3", get(w3))
            .route("/w4/events", get(events))
            .route("/w4/publish", post(publish))
            .route("/w5", get(w5))
            .route("/w8/events", get(w8_events))
            .route("/w8/publish", post(w8_publish))
            .route("/w8/stats", get(w8_stats))
            .with_state(state)
            .async_support(manager)
    }

    async fn w8_events(State(state): State<Arc<MvcState>>) -> SseEmitter {
        state.w8.subscribe(None)
    }

    /// Starts publishing at `rate` events/s for `seconds` s, in ticks of 1 ms.
    async fn w8_publish(State(state): State<Arc<MvcState>>, RawQuery(q): RawQuery) -> StatusCode {
        let param = |name: &str, default: u64| {
            q.as_deref()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(name)))
                .and_then(|v| v.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let (rate, seconds) = (param("rate", 8_000), param("seconds", 60));
        let data = "x".repeat(W8_EVENT_BYTES);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let end = started + Duration::from_secs(seconds);
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            let mut sent = 0_u64;
            while tokio::time::Instant::now() < end {
                ticks.tick().await;
                let due = rate * started.elapsed().as_millis() as u64 / 1000;
                while sent < due {
                    state.w8.publish(&SseEvent::data(data.as_str()));
                    sent += 1;
                }
            }
        });
        StatusCode::ACCEPTED
    }

    async fn w8_stats(State(state): State<Arc<MvcState>>) -> String {
        let metrics = state.manager.metrics();
        format!(
            "{} {} {}",
            metrics.in_flight,
            state.w8.subscribers(),
            metrics.slow_consumers
        )
    }

    async fn w1() -> DeferredResult<&'static str> {
        let result = DeferredResult::new();
        result.set_result(HELLO);
        result
    }

    async fn long_poll(
        State(state): State<Arc<MvcState>>,
        Path(_id): Path<u64>,
    ) -> DeferredResult<String> {
        let result = DeferredResult::with_timeout(LONG_POLL_TIMEOUT);
        lock(&state.pending).push(result.clone());
        result
    }

    async fn count(State(state): State<Arc<MvcState>>) -> String {
        lock(&state.pending).len().to_string()
    }

    async fn complete(State(state): State<Arc<MvcState>>, RawQuery(q): RawQuery) -> StatusCode {
        spawn_completion(Control::AsyncMvc(state), q)
    }

    async fn w3() -> impl IntoResponse {
        (
            started_header(),
            DeferredResult::<String>::with_timeout(W3_TIMEOUT),
        )
    }

    async fn events(State(state): State<Arc<MvcState>>) -> SseEmitter {
        state.hub.subscribe(None)
    }

    async fn publish(State(state): State<Arc<MvcState>>, RawQuery(q): RawQuery) -> String {
        let control = Control::AsyncMvc(state);
        let n = count_param(q);
        (0..n)
            .map(|i| control.publish(&format!("event {i}")))
            .sum::<usize>()
            .to_string()
    }

    async fn w5() -> Callable<&'static str> {
        Callable::new(blocking_work)
    }
}
