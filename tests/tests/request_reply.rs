//! Request/reply through the broker over real HTTP: `ReplyingTemplate::send_and_receive` on
//! the web side, `JobListener`s as workers, on an `InMemoryBroker` and on a real
//! `redis-server`. The reply completes the open request; no worker → `503` + `Retry-After` at
//! once; a handler error → `502`; a timeout → `503`; over the outstanding limit → `503`; a
//! worker that dies mid-job has its job claimed by another, whose reply wins, and the dead
//! one's late reply is ignored; a job redelivered after it was answered is answered from its
//! retained reply, not worked again.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_mvc::{
    cluster::{InMemoryBroker, JobListener, MessageBroker, ReplyError, ReplyingTemplate},
    AsyncConfig, AsyncManager, DeferredResult, RouterExt,
};
use async_mvc_redis::RedisBroker;
use async_mvc_tests::{client, eventually, redis::RedisServer, within, TestServer};
use axum::{
    extract::{Path, State},
    http::{header::RETRY_AFTER, StatusCode},
    routing::get,
    Router,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Serialize, Deserialize)]
struct Square {
    n: i64,
    /// How long the worker takes, in ms.
    ms: u64,
}

/// `GET /square/{n}/{ms}`: `n²` from a worker, within 2 s.
fn web(template: ReplyingTemplate) -> Router {
    async fn square(
        State(template): State<ReplyingTemplate>,
        Path((n, ms)): Path<(i64, u64)>,
    ) -> DeferredResult<String, ReplyError> {
        template
            .send_and_receive(&Square { n, ms }, Duration::from_secs(2))
            .await
    }
    Router::new()
        .route("/square/{n}/{ms}", get(square))
        .with_state(template)
        .async_support(AsyncManager::new(AsyncConfig::new()))
}

/// A worker: `n²` as text after `ms`; negative `n` fails.
fn worker(broker: &Arc<dyn MessageBroker>, queue: &str) -> async_mvc::cluster::JobListenerHandle {
    JobListener::new(Arc::clone(broker), queue, "squarers").run(|job: Square| async move {
        tokio::time::sleep(Duration::from_millis(job.ms)).await;
        if job.n < 0 {
            return Err(format!("{} has no square here", job.n));
        }
        Ok((job.n * job.n).to_string())
    })
}

async fn request_reply_contract(broker: Arc<dyn MessageBroker>) {
    let template = ReplyingTemplate::new(Arc::clone(&broker), "squares").max_outstanding(4);
    let server = TestServer::start(web(template.clone())).await;
    let http = client();

    // No worker yet: refused at once, not after the timeout.
    let refused = within("a refusal", http.get(server.url("/square/3/0")).send())
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[RETRY_AFTER], "1");
    assert!(refused.text().await.unwrap().contains("no worker"));

    let _worker = worker(&broker, "squares");
    eventually_async("the worker to be seen", || {
        let http = http.clone();
        let url = server.url("/square/3/0");
        async move {
            http.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await;
    let answered = http.get(server.url("/square/12/0")).send().await.unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(answered.text().await.unwrap(), "144");

    // The handler's error: 502 with its message.
    let failed = http.get(server.url("/square/-2/0")).send().await.unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    assert!(failed
        .text()
        .await
        .unwrap()
        .contains("-2 has no square here"));

    // Slower than the request's 2 s: the usual timeout path, 503.
    let late = http.get(server.url("/square/5/3000")).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Four outstanding fill the template; a fifth is refused at once.
    let slow: Vec<_> = (0..4)
        .map(|i| tokio::spawn(http.get(server.url(&format!("/square/{i}/800"))).send()))
        .collect();
    eventually("four outstanding", || template.metrics().outstanding == 4).await;
    let over = http.get(server.url("/square/9/0")).send().await.unwrap();
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(over.headers().contains_key(RETRY_AFTER));
    for (i, answer) in slow.into_iter().enumerate() {
        let answer = within("a slow square", answer).await.unwrap().unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.text().await.unwrap(), (i * i).to_string());
    }
    eventually("nothing outstanding", || {
        template.metrics().outstanding == 0
    })
    .await;
}

/// Polls an async condition until it holds (at most 10 s).
async fn eventually_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A worker stuck mid-job stops (its handle dropped: no heartbeat, no touch, no ack); a second
/// worker claims the job after its idle time and answers; the stuck one's reply, when it comes
/// at last, is ignored.
async fn a_dead_workers_job_is_claimed(broker: Arc<dyn MessageBroker>) {
    let template = ReplyingTemplate::new(Arc::clone(&broker), "claims");
    let server = TestServer::start(web(template.clone())).await;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (on_start, on_release) = (Arc::clone(&started), Arc::clone(&release));
    let stuck = JobListener::new(Arc::clone(&broker), "claims", "squarers")
        .claim_idle(Duration::from_millis(300))
        .run(move |job: Square| {
            let (on_start, on_release) = (Arc::clone(&on_start), Arc::clone(&on_release));
            async move {
                on_start.notify_one();
                on_release.notified().await;
                Ok::<_, String>(format!("late {}", job.n))
            }
        });
    eventually_async("the stuck worker to listen", || {
        let template = template.clone();
        async move { template.has_listeners().await.unwrap() }
    })
    .await;
    let request = tokio::spawn(client().get(server.url("/square/7/0")).send());
    within("the stuck worker to start", started.notified()).await;
    drop(stuck); // reads and heartbeats stop; the job stays pending, unacknowledged

    let worked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&worked);
    let rescuer = JobListener::new(Arc::clone(&broker), "claims", "squarers")
        .claim_idle(Duration::from_millis(300))
        .run(move |job: Square| {
            count.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, String>((job.n * job.n).to_string()) }
        });
    let answer = within("the claimed job's reply", request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "49");
    assert_eq!(worked.load(Ordering::Relaxed), 1);
    assert_eq!(rescuer.metrics().claimed, 1);

    release.notify_one(); // the stuck worker's late reply
    eventually("the late reply ignored", || {
        template.metrics().ignored_replies == 1
    })
    .await;
    assert_eq!(template.metrics().replies, 1);
}

/// A worker that replies but never acknowledges (it "dies" between its reply and its `XACK`):
/// the job stays pending and another worker claims it — and answers it from the retained
/// reply instead of working it again. Worked once, answered once; the replayed reply is
/// ignored by the requester, who had its answer.
#[tokio::test]
async fn a_redelivered_job_is_answered_from_its_retained_reply_not_worked_again() {
    let shared = InMemoryBroker::new();
    let broker: Arc<dyn MessageBroker> = Arc::new(shared.clone());
    let template = ReplyingTemplate::new(Arc::clone(&broker), "replays");
    let server = TestServer::start(web(template.clone())).await;
    let worked = Arc::new(AtomicUsize::new(0));
    let counting = |worked: &Arc<AtomicUsize>| {
        let worked = Arc::clone(worked);
        move |job: Square| {
            worked.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, String>((job.n * job.n).to_string()) }
        }
    };
    let forgetful: Arc<dyn MessageBroker> =
        Arc::new(async_mvc_tests::faulty::FaultyBroker::failing_acks(shared));
    let first = JobListener::new(forgetful, "replays", "squarers")
        .claim_idle(Duration::from_millis(200))
        .run(counting(&worked));
    eventually_async("the worker to listen", || {
        let template = template.clone();
        async move { template.has_listeners().await.unwrap() }
    })
    .await;
    let answer = client()
        .get(server.url("/square/6/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "36");
    drop(first); // gone, its job unacknowledged

    let second = JobListener::new(Arc::clone(&broker), "replays", "squarers")
        .claim_idle(Duration::from_millis(200))
        .run(counting(&worked));
    eventually("the job claimed and answered from retention", || {
        second.metrics().replayed == 1
    })
    .await;
    assert_eq!(worked.load(Ordering::Relaxed), 1, "worked once");
    assert_eq!(second.metrics().processed, 0);
    eventually("the replayed reply ignored", || {
        template.metrics().ignored_replies == 1
    })
    .await;
    assert_eq!(template.metrics().replies, 1);
}

#[tokio::test]
async fn request_reply_on_an_in_memory_broker() {
    request_reply_contract(Arc::new(InMemoryBroker::new())).await;
}

#[tokio::test]
async fn a_dead_workers_job_is_claimed_in_memory() {
    a_dead_workers_job_is_claimed(Arc::new(InMemoryBroker::new())).await;
}

async fn redis_broker(redis: &RedisServer) -> Arc<dyn MessageBroker> {
    Arc::new(
        RedisBroker::builder(redis.url())
            .namespace("rr")
            .connect()
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn request_reply_on_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    request_reply_contract(redis_broker(&redis).await).await;
}

#[tokio::test]
async fn a_dead_workers_job_is_claimed_on_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    a_dead_workers_job_is_claimed(redis_broker(&redis).await).await;
}
