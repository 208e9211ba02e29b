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

mod common;

use std::time::{Duration, Instant};

use async_mvc_examples::processes::DemoProcess;
use common::{check_invoice, events_until, ids_of, Cluster, SERIAL};
use reqwest::StatusCode;
use serde_json::{json, Value};

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
