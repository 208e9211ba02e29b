//! The order desk as real processes — `demo --role web` ×2, `demo --role worker` ×2, one real
//! `redis-server` — with faults injected, each bounded in time:
//! - a worker SIGKILLed mid-job: its invoice and fulfilment jobs are claimed by the other
//!   worker; every invoice request gets its reply or its timeout `503`, none hangs; every order
//!   is packed and shipped exactly once;
//! - a web instance SIGKILLed: an `EventSource` reconnecting to the other with `Last-Event-ID`
//!   misses nothing, a long poll retried there gets the value;
//! - Redis SIGKILLed for 5 s and restarted (append-only file on): no process exits, no accepted
//!   job is lost, no event is duplicated to a client;
//! - Redis paused (SIGSTOP) for 5 s: the outbox fills, then `503` at once; after it resumes,
//!   everything works again, and memory stayed bounded;
//! - no worker at all: the invoice route answers `503` with `Retry-After` at once.
//!
//! The scenarios run one at a time (each starts five processes).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use std::{
    path::Path,
    time::{Duration, Instant},
};

use async_mvc_examples::{
    processes::DemoProcess, redis_server::RedisServer, sse_reader::EventReader,
};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The longest any request of these tests may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(20);

/// Dropped in field order: the processes before Redis.
struct Cluster {
    webs: Vec<DemoProcess>,
    workers: Vec<DemoProcess>,
    redis: RedisServer,
    http: Client,
}

impl Cluster {
    /// Redis (persistent if asked), `webs` web processes and `workers` worker processes, with
    /// `extra` arguments for the web ones. `None` without `redis-server` (outside CI).
    fn start(persistent: bool, webs: usize, workers: usize, extra: &[&str]) -> Option<Cluster> {
        let redis = if persistent {
            RedisServer::start_persistent()?
        } else {
            RedisServer::start()?
        };
        let binary = Path::new(env!("CARGO_BIN_EXE_demo"));
        let url = redis.url();
        let webs = (0..webs)
            .map(|_| DemoProcess::start(binary, "web", &url, extra).expect("a web process"))
            .collect();
        let workers = (0..workers)
            .map(|_| DemoProcess::start(binary, "worker", &url, &[]).expect("a worker process"))
            .collect();
        let http = Client::builder().timeout(REQUEST_LIMIT).build().unwrap();
        Some(Cluster {
            redis,
            webs,
            workers,
            http,
        })
    }

    fn web(&self, i: usize) -> &DemoProcess {
        &self.webs[i % self.webs.len()]
    }

    async fn place(&self, on: usize, item: &str) -> Value {
        let placed = self
            .http
            .post(self.web(on).url("/api/orders"))
            .json(&json!({ "item": item }))
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status(), StatusCode::CREATED);
        placed.json().await.unwrap()
    }

    async fn order(&self, on: usize, id: &str) -> Value {
        let order = self
            .http
            .get(self.web(on).url(&format!("/api/orders/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(order.status(), StatusCode::OK);
        order.json().await.unwrap()
    }

    /// Waits (at most 10 s) until an invoice is answered `200`: a worker listens.
    async fn wait_for_workers(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self
                .http
                .post(self.web(0).url(&format!("/api/orders/{id}/invoice")))
                .send()
                .await
                .unwrap();
            if answer.status() == StatusCode::OK {
                return;
            }
            assert!(Instant::now() < deadline, "no worker answered in 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `limit`) until every order of `ids` is `shipped` at version 3 on every
    /// web process: packed and shipped exactly once.
    async fn all_shipped_once(&self, ids: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        for id in ids {
            loop {
                let order = self.order(0, id).await;
                let version = order["version"].as_u64().unwrap();
                assert!(version <= 3, "order {id} advanced more than once: {order}");
                if order["status"] == "shipped" {
                    assert_eq!(version, 3, "{order}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "order {id} was not shipped: {order}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // And nothing more happens to them, on either web process.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for id in ids {
            for on in 0..self.webs.len() {
                let order = self.order(on, id).await;
                assert_eq!(
                    (order["status"].as_str(), order["version"].as_u64()),
                    (Some("shipped"), Some(3)),
                    "{order}"
                );
            }
        }
    }

    fn all_running(&mut self) -> bool {
        self.webs
            .iter_mut()
            .chain(self.workers.iter_mut())
            .all(DemoProcess::is_running)
    }
}

/// An invoice answer: `200` with a well-formed invoice of order `id`, or `503`.
async fn check_invoice(answer: reqwest::Response, id: &str) -> StatusCode {
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    match status {
        StatusCode::OK => {
            assert_eq!(body["id"], id, "{body}");
            let text = body["invoice"].as_str().unwrap();
            assert_eq!(
                body["sha256"].as_str().unwrap(),
                format!("{:x}", Sha256::digest(text.as_bytes()))
            );
            assert!(body["version"].as_u64().is_some() && body["status"].is_string());
        }
        StatusCode::SERVICE_UNAVAILABLE => assert!(body["error"].is_string(), "{body}"),
        other => panic!("an invoice answered {other}: {body}"),
    }
    status
}

/// The `(id, data)` of SSE events read from `response` until one has id `until` (or the
/// stream ends, or `limit` passes).
async fn events_until(
    response: reqwest::Response,
    until: u64,
    limit: Duration,
) -> Vec<(u64, Value)> {
    let mut reader = EventReader::new(response);
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = Vec::new();
    while events.last().map(|(id, _)| *id) != Some(until) {
        let Some(event) = reader.next(deadline).await else {
            break;
        };
        if let (Some(id), Ok(data)) = (
            event.id.and_then(|id| id.parse().ok()),
            serde_json::from_str(&event.data),
        ) {
            events.push((id, data));
        }
    }
    events
}

fn ids_of(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|order| order["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn with_no_worker_an_invoice_is_refused_at_once() {
    let _one = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(false, 1, 0, &[]) else {
        return;
    };
    let order = cluster.place(0, "teapot").await;
    let id = order["id"].as_str().unwrap();
    let started = Instant::now();
    let refused = cluster
        .http
        .post(cluster.web(0).url(&format!("/api/orders/{id}/invoice")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("no worker"),
        "{body}"
    );
    eprintln!("refused in {} ms", started.elapsed().as_millis());
    // Unknown orders are still 404 first.
    let unknown = cluster
        .http
        .post(cluster.web(0).url("/api/orders/999/invoice"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_worker_killed_mid_job_has_its_jobs_claimed() {
    let _one = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(false, 2, 2, &[]) else {
        return;
    };
    let first = cluster.place(0, "probe").await;
    cluster
        .wait_for_workers(first["id"].as_str().unwrap())
        .await;
    let mut orders = vec![first];
    for i in 0..5 {
        orders.push(cluster.place(i, &format!("cup {i}")).await);
    }
    let ids = ids_of(&orders);
    // Eight invoices in flight over both web processes, then one worker dies.
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let id = ids[i % ids.len()].clone();
            let request = cluster
                .http
                .post(cluster.web(i).url(&format!("/api/orders/{id}/invoice")))
                .send();
            tokio::spawn(async move { (id, request.await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.workers[0].kill();

    let (mut answered, mut timed_out) = (0, 0);
    for request in requests {
        let (id, answer) = request.await.unwrap();
        let answer = answer.expect("every invoice request is answered, none hangs");
        match check_invoice(answer, &id).await {
            StatusCode::OK => answered += 1,
            _ => timed_out += 1,
        }
    }
    eprintln!("invoices: {answered} answered, {timed_out} timed out (503)");
    assert_eq!(answered + timed_out, 8);
    // The dead worker's fulfilment jobs too: every order shipped, and only once.
    cluster
        .all_shipped_once(&ids, Duration::from_secs(30))
        .await;
    assert!(cluster.webs.iter_mut().all(DemoProcess::is_running));
    assert!(cluster.workers[1].is_running());
}

#[tokio::test]
async fn a_web_instance_killed_loses_only_its_connections() {
    let _one = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(false, 2, 1, &[]) else {
        return;
    };
    let order = cluster.place(0, "kettle").await;
    let id = order["id"].as_str().unwrap().to_owned();
    let stream = cluster
        .http
        .get(cluster.web(0).url(&format!("/api/orders/{id}/stream")))
        .send()
        .await
        .unwrap();
    let poll = tokio::spawn(
        cluster
            .http
            .get(
                cluster
                    .web(0)
                    .url(&format!("/api/orders/{id}/next?after=1&timeout_ms=15000")),
            )
            .send(),
    );
    let seen = events_until(stream, 1, Duration::from_secs(10)).await;
    assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1]);
    cluster.webs[0].kill(); // before the order is packed (2 s after it was placed)
    assert!(
        poll.await.unwrap().is_err(),
        "the killed instance's poll is cut"
    );

    // The long poll, retried on B, gets the next version; the stream resumes on B.
    let retried = cluster
        .http
        .get(
            cluster
                .web(1)
                .url(&format!("/api/orders/{id}/next?after=1&timeout_ms=15000")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let next: Value = retried.json().await.unwrap();
    assert_eq!(next["version"], 2, "{next}");
    let resumed = cluster
        .http
        .get(cluster.web(1).url(&format!("/api/orders/{id}/stream")))
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    let missed = events_until(resumed, 3, Duration::from_secs(15)).await;
    let statuses: Vec<(u64, &str)> = missed
        .iter()
        .map(|(id, order)| (*id, order["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(2, "packed"), (3, "shipped")]);
    assert!(cluster.webs[1].is_running() && cluster.workers[0].is_running());
}

#[tokio::test]
async fn redis_killed_for_5_s_loses_no_accepted_job() {
    let _one = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(true, 2, 2, &[]) else {
        return;
    };
    let probe = cluster.place(0, "probe").await;
    cluster
        .wait_for_workers(probe["id"].as_str().unwrap())
        .await;
    let mut orders = vec![probe];
    for i in 0..4 {
        orders.push(cluster.place(i, &format!("plate {i}")).await);
    }
    let watched = orders[1]["id"].as_str().unwrap().to_owned();
    let stream = cluster
        .http
        .get(cluster.web(1).url(&format!("/api/orders/{watched}/stream")))
        .send()
        .await
        .unwrap();
    let watching = tokio::spawn(events_until(stream, 3, Duration::from_secs(45)));

    cluster.redis.kill();
    // Orders placed during the outage wait in the outbox: placed once Redis is back (201), or
    // refused after the outbox wait (503); never lost after a 201.
    let during: Vec<_> = (0..3)
        .map(|i| {
            let request = cluster
                .http
                .post(cluster.web(i).url("/api/orders"))
                .json(&json!({ "item": format!("bowl {i}") }))
                .send();
            tokio::spawn(request)
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.redis.restart();
    let back = Instant::now();

    let mut refused = 0;
    for request in during {
        let answer = request.await.unwrap().expect("answered, not hung");
        match answer.status() {
            StatusCode::CREATED => orders.push(answer.json().await.unwrap()),
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("placing an order during the outage answered {other}"),
        }
    }
    eprintln!(
        "during the outage: {} placed, {refused} refused",
        orders.len() - 5
    );
    cluster
        .all_shipped_once(&ids_of(&orders), Duration::from_secs(40))
        .await;
    eprintln!(
        "all shipped {} ms after redis came back",
        back.elapsed().as_millis()
    );
    let events = watching.await.unwrap();
    let versions: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(versions, [1, 2, 3], "each event once, in order");
    assert!(cluster.all_running(), "no process exited");
}

#[tokio::test]
async fn redis_paused_for_5_s_fills_the_outbox_then_recovers() {
    let _one = SERIAL.lock().await;
    // A small outbox, so that a few requests fill it.
    let Some(mut cluster) = Cluster::start(false, 1, 1, &["--redis-outbox", "4"]) else {
        return;
    };
    let probe = cluster.place(0, "probe").await;
    let id = probe["id"].as_str().unwrap().to_owned();
    cluster.wait_for_workers(&id).await;
    let rss_before = cluster.webs[0].rss().unwrap();

    cluster.redis.pause();
    let started = Instant::now();
    let during: Vec<_> = (0..20)
        .map(|i| {
            let request = cluster
                .http
                .post(cluster.web(0).url(&format!("/api/orders/{id}/events")))
                .json(&json!({ "status": format!("note {i}") }))
                .send();
            tokio::spawn(async move {
                let answer = request.await;
                (answer, started.elapsed())
            })
        })
        .collect();
    let mut quick_refusals = 0;
    let mut statuses = Vec::new();
    for request in during {
        let (answer, after) = request.await.unwrap();
        let answer = answer.expect("answered, not hung");
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE && after < Duration::from_secs(2) {
            quick_refusals += 1;
        }
        statuses.push(answer.status());
    }
    eprintln!("during the pause: {statuses:?}; {quick_refusals} refused at once");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE || *s == StatusCode::OK));
    assert!(
        quick_refusals >= 10,
        "the outbox of 4 filled: the rest refused at once"
    );
    let pause_left = Duration::from_secs(5).saturating_sub(started.elapsed());
    tokio::time::sleep(pause_left).await;
    cluster.redis.resume();

    // Recovered: writes and invoices work again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = cluster
            .http
            .post(cluster.web(0).url(&format!("/api/orders/{id}/events")))
            .json(&json!({ "status": "after the pause" }))
            .send()
            .await
            .unwrap();
        if answer.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_for_workers(&id).await;
    let rss_after = cluster.webs[0].rss().unwrap();
    eprintln!(
        "web RSS {} KiB before, {} KiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "memory stayed bounded"
    );
    assert!(cluster.all_running());
}
