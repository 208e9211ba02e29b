//! W6's server: async-mvc's cluster features on a broker (one process with an
//! `InMemoryBroker`, or one of several on a Redis).
//!
//! | path | what it does |
//! |---|---|
//! | `GET /w6/wait/{key}` | `DeferredResultRegistry::wait(key, 120 s)`: the body is the `CLOCK_MONOTONIC` ns at which `complete` was called |
//! | `GET /w6/count` | how many waiters wait on this instance |
//! | `POST /w6/complete?n=N&per_ms=R` | a background task completes keys `0..N`, `R` per millisecond |
//! | `GET /w6/events` | `ClusteredSseBroadcaster::subscribe("w6", None)` |
//! | `GET /w6/subscribers` | how many subscribe on this instance |
//! | `POST /w6/publish?n=N&every_ms=T` | a background task sends `N` events, one every `T` ms; each event's data is the ns at which it was sent |
//! | `GET /w6/rr/{n}` | W6c: `ReplyingTemplate::send_and_receive(n, 5 s)` to the queue `w6`, answered by a `JobListener` (in this process with `--worker`, or another): `n` |
//! | `GET /w6/task/{n}` | W6c's baseline: a `WebAsyncTask` on this process's executor: `n` |

use std::{sync::Arc, time::Duration};

use async_mvc::{
    cluster::{
        ClusteredSseBroadcaster, DeferredResultRegistry, JobListener, JobListenerHandle,
        MessageBroker, ReplyError, ReplyingTemplate,
    },
    AsyncConfig, DeferredResult, RouterExt, SseEmitter, SseEvent, WebAsyncTask,
};
use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
    Router,
};

use crate::clock;

/// W6's long polls wait this long at most: longer than any hold.
const WAIT: Duration = Duration::from_secs(120);

/// W6c's request/reply timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// W6c's worker: jobs at once (more than the 512 concurrent requests of its largest run).
const WORKER_CONCURRENCY: usize = 1_024;

#[derive(Clone)]
struct W6 {
    registry: DeferredResultRegistry<u64, String>,
    hub: ClusteredSseBroadcaster,
    replies: ReplyingTemplate,
    /// W6c's worker, when this process runs one; it stops with the router.
    _worker: Option<Arc<JobListenerHandle>>,
}

/// The W6 router on `broker`; with `worker`, this process also answers W6c's jobs.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn router(broker: Arc<dyn MessageBroker>, worker: bool) -> Router {
    let worker = worker.then(|| {
        Arc::new(
            JobListener::new(Arc::clone(&broker), "w6", "w6")
                .concurrency(WORKER_CONCURRENCY)
                .run(|n: u64| async move { Ok::<_, String>(n.to_string()) }),
        )
    });
    let state = W6 {
        registry: DeferredResultRegistry::new(Arc::clone(&broker), "w6"),
        replies: ReplyingTemplate::new(Arc::clone(&broker), "w6"),
        hub: ClusteredSseBroadcaster::new(broker, "w6")
            .subscriber_settings(SseEmitter::builder().no_timeout().no_heartbeat()),
        _worker: worker,
    };
    Router::new()
        .route("/w6/wait/{key}", get(wait))
        .route("/w6/count", get(count))
        .route("/w6/complete", post(complete))
        .route("/w6/events", get(events))
        .route("/w6/subscribers", get(subscribers))
        .route("/w6/publish", post(publish))
        .route("/w6/rr/{n}", get(request_reply))
        .route("/w6/task/{n}", get(task))
        .with_state(state)
        .async_support(AsyncConfig::new())
}

fn param(query: Option<&str>, name: &str, default: u64) -> u64 {
    query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(name)))
        .and_then(|v| v.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn wait(State(w6): State<W6>, Path(key): Path<u64>) -> DeferredResult<String> {
    w6.registry.wait(key, WAIT, String::new())
}

async fn request_reply(
    State(w6): State<W6>,
    Path(n): Path<u64>,
) -> DeferredResult<String, ReplyError> {
    w6.replies.send_and_receive(&n, REPLY_TIMEOUT).await
}

async fn task(Path(n): Path<u64>) -> WebAsyncTask<String> {
    WebAsyncTask::new(move || n.to_string()).timeout(REPLY_TIMEOUT)
}

async fn count(State(w6): State<W6>) -> String {
    w6.registry.waiting().to_string()
}

/// Runs `n` steps, `per_ms` per millisecond, in a background task.
fn paced<F, Fut>(n: u64, per_ms: u64, step: F)
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        let mut done = 0;
        while done < n {
            ticks.tick().await;
            let due = (per_ms.max(1) * (started.elapsed().as_millis() as u64 + 1)).min(n);
            while done < due {
                step(done).await;
                done += 1;
            }
        }
    });
}

async fn complete(State(w6): State<W6>, RawQuery(q): RawQuery) -> StatusCode {
    let (n, per_ms) = (
        param(q.as_deref(), "n", 0),
        param(q.as_deref(), "per_ms", 10),
    );
    paced(n, per_ms, move |key| {
        let registry = w6.registry.clone();
        async move {
            let _ = registry.complete(&key, &clock::now_ns().to_string()).await;
        }
    });
    StatusCode::ACCEPTED
}

async fn events(State(w6): State<W6>) -> impl IntoResponse {
    w6.hub.subscribe("w6", None).await
}

async fn subscribers(State(w6): State<W6>) -> String {
    w6.hub.subscribers("w6").to_string()
}

async fn publish(State(w6): State<W6>, RawQuery(q): RawQuery) -> StatusCode {
    let (n, every_ms) = (
        param(q.as_deref(), "n", 0),
        param(q.as_deref(), "every_ms", 10),
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(every_ms.max(1)));
        for _ in 0..n {
            ticks.tick().await;
            if let Ok(event) = SseEvent::builder()
                .data(clock::now_ns().to_string())
                .build()
            {
                let _ = w6.hub.send("w6", &event).await;
            }
        }
    });
    StatusCode::ACCEPTED
}
