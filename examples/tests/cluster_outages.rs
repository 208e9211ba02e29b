//! The order desk as real processes through what makes a cluster lag or stall — each bounded
//! in time:
//! - a web instance whose pub/sub connection was just cut (`CLIENT KILL TYPE pubsub`), so that
//!   it lags behind the broker: an SSE client that saw a version on another instance resumes
//!   there with exactly what follows it, and a long poll there never answers a version it was
//!   told the client has (50 tries);
//! - Redis paused (SIGSTOP): every request that waits on it answers by its own deadline — an
//!   invoice by its 5 s timeout, a long poll by its `timeout_ms`, a write by the 5 s write
//!   timeout — never a timeout's worth after the outbox gave up;
//! - Redis restarted with a data set that takes over half a second to load (it answers
//!   `LOADING` meanwhile): every operation waits for it and succeeds, and no process logs
//!   "answered unexpectedly".
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{check_invoice, events_until, ids_of, Cluster, SERIAL};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How much later than its deadline an answer may come: scheduling slack.
const SLACK: Duration = Duration::from_millis(250);

#[tokio::test]
async fn a_resume_on_a_lagging_web_instance_replays_only_what_follows_the_id() {
    let _one = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(false, 2, 0, &[]) else {
        return;
    };
    let order = cluster.place(0, "teapot").await;
    let id = order["id"].as_str().unwrap().to_owned();
    let post = |status: String| {
        cluster
            .http
            .post(cluster.web(0).url(&format!("/api/orders/{id}/events")))
            .json(&json!({ "status": status }))
            .send()
    };
    let mut lagged = 0;
    for attempt in 0..50 {
        // Both instances lose pub/sub; A's own write brings A back up to date at once, B
        // catches up when its connection is back (50 ms or more later).
        cluster.redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        let seen: Value = post(format!("seen {attempt}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let version = seen["version"].as_u64().unwrap();
        let b_version = cluster.order(1, &id).await["version"].as_u64().unwrap();
        // The client saw `version` on A and comes to B.
        let resumed = cluster
            .http
            .get(cluster.web(1).url(&format!("/api/orders/{id}/stream")))
            .header("last-event-id", version.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resumed.status(), StatusCode::OK);
        let poll = tokio::spawn(
            cluster
                .http
                .get(cluster.web(1).url(&format!(
                    "/api/orders/{id}/next?after={version}&timeout_ms=10000"
                )))
                .send(),
        );
        lagged += usize::from(b_version < version);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next: Value = post(format!("next {attempt}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(next["version"].as_u64(), Some(version + 1));
        let events = events_until(resumed, version + 1, Duration::from_secs(10)).await;
        let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [version + 1], "try {attempt}: no duplicate, no gap");
        assert_eq!(events[0].1["status"], format!("next {attempt}"));
        let polled = poll.await.unwrap().unwrap();
        assert_eq!(polled.status(), StatusCode::OK, "try {attempt}");
        let polled: Value = polled.json().await.unwrap();
        assert_eq!(
            polled["version"].as_u64(),
            Some(version + 1),
            "try {attempt}"
        );
    }
    eprintln!("B was behind A in {lagged} of 50 tries (its GET, just before the resume)");
}

#[tokio::test]
async fn with_redis_paused_every_request_answers_by_its_deadline() {
    let _one = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(false, 1, 1, &[]) else {
        return;
    };
    let order = cluster.place(0, "lamp").await;
    let id = order["id"].as_str().unwrap().to_owned();
    cluster.wait_for_workers(&id).await;
    cluster.redis.pause();
    let web = cluster.web(0);
    let http = &cluster.http;
    let timed = |request: reqwest::RequestBuilder, deadline: Duration, what: &'static str| async move {
        let started = Instant::now();
        let answer = request.send().await.expect("answered, not hung");
        let (status, elapsed) = (answer.status(), started.elapsed());
        let body = answer.text().await.unwrap_or_default();
        eprintln!("{what}: {status} after {} ms", elapsed.as_millis());
        assert!(
            elapsed <= deadline + SLACK,
            "{what} answered {status} after {elapsed:?}, its deadline is {deadline:?}: {body}"
        );
        (status, body)
    };
    let (invoice, poll, unknown, placed, event) = tokio::join!(
        timed(
            http.post(web.url(&format!("/api/orders/{id}/invoice"))),
            Duration::from_secs(5),
            "invoice"
        ),
        timed(
            http.get(web.url(&format!("/api/orders/{id}/next?after=9&timeout_ms=2000"))),
            Duration::from_secs(2),
            "long poll"
        ),
        timed(
            http.get(web.url("/api/orders/4242/next?timeout_ms=1500")),
            Duration::from_millis(1_500),
            "long poll of an order this instance does not know"
        ),
        timed(
            http.post(web.url("/api/orders"))
                .json(&json!({ "item": "fan" })),
            Duration::from_secs(5),
            "order creation"
        ),
        timed(
            http.post(web.url(&format!("/api/orders/{id}/events")))
                .json(&json!({ "status": "paid" })),
            Duration::from_secs(5),
            "status event"
        ),
    );
    assert_eq!(invoice.0, StatusCode::SERVICE_UNAVAILABLE, "{}", invoice.1);
    assert!(
        invoice.1.contains("not ready within 5000 ms"),
        "{}",
        invoice.1
    );
    assert_eq!(poll.0, StatusCode::NOT_MODIFIED);
    for (status, body) in [unknown, placed, event] {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    cluster.redis.resume();
    cluster.wait_for_workers(&id).await;
    assert!(cluster.all_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_still_loading_after_a_restart_is_waited_for_not_an_error() {
    let _one = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start_logging(true, 1, 1) else {
        return;
    };
    let probe = cluster.place(0, "probe").await;
    let id = probe["id"].as_str().unwrap().to_owned();
    cluster.wait_for_workers(&id).await;
    let stream = cluster
        .http
        .get(cluster.web(0).url(&format!("/api/orders/{id}/stream")))
        .send()
        .await
        .unwrap();
    let watching = tokio::spawn(events_until(stream, 3, Duration::from_secs(40)));
    // 1.5 million keys: the append-only file takes about a second to load.
    cluster.redis.fill(1_500_000);
    cluster.redis.restart();
    let (http, web) = (cluster.http.clone(), cluster.web(0).url(""));
    let placing = tokio::spawn({
        let (http, web) = (http.clone(), web.clone());
        async move {
            let mut placed = Vec::new();
            for item in ["cup", "saucer", "spoon"] {
                let answer = http
                    .post(format!("{web}/api/orders"))
                    .json(&json!({ "item": item }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), StatusCode::CREATED, "placing {item}");
                placed.push(answer.json::<Value>().await.unwrap());
            }
            placed
        }
    });
    let invoicing = tokio::spawn(http.post(format!("{web}/api/orders/{id}/invoice")).send());
    let reading = tokio::spawn(http.get(format!("{web}/api/orders/{id}")).send());
    // The requests are in flight while Redis loads (this thread blocks; the runtime's workers
    // serve them).
    let load = cluster.redis.wait_loaded();
    eprintln!(
        "redis answered LOADING for {} ms after the restart",
        load.as_millis()
    );
    assert!(
        load > Duration::from_millis(500),
        "the load took {load:?}: too short a test"
    );
    assert_eq!(
        check_invoice(invoicing.await.unwrap().unwrap(), &id).await,
        StatusCode::OK
    );
    assert_eq!(reading.await.unwrap().unwrap().status(), StatusCode::OK);
    let placed = placing.await.unwrap();
    let mut orders = vec![probe];
    orders.extend(placed);
    cluster
        .all_shipped_once(&ids_of(&orders), Duration::from_secs(30))
        .await;
    let versions: Vec<u64> = watching.await.unwrap().iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, [1, 2, 3], "each event once, in order");
    let logs = cluster.logs();
    assert!(
        !logs.contains("answered unexpectedly"),
        "a process took LOADING for an error:\n{logs}"
    );
    assert!(cluster.all_running(), "no process exited");
}

#[tokio::test]
async fn every_process_says_it_is_not_ready_while_redis_is_down() {
    let _one = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(true, 1, 0, &[]) else {
        return;
    };
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_demo"));
    let worker = async_mvc_examples::processes::DemoProcess::start(
        binary,
        "worker",
        &cluster.redis.url(),
        &["--metrics-port", "0"],
    )
    .expect("a worker with a metrics port");
    let order = cluster.place(0, "clock").await;
    cluster
        .wait_for_workers(order["id"].as_str().unwrap())
        .await;
    let http = cluster.http.clone();
    let probe = |url: String| {
        let http = http.clone();
        async move {
            let answer = http.get(url).send().await.unwrap();
            let status = answer.status();
            (status, answer.json::<Value>().await.unwrap_or_default())
        }
    };
    for url in [cluster.web(0).url("/readyz"), worker.url("/readyz")] {
        assert_eq!(probe(url).await.0, StatusCode::OK);
    }
    let web_metrics = http
        .get(cluster.web(0).url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag_count = web_metrics
        .lines()
        .find_map(|line| line.strip_prefix("async_mvc_cluster_pubsub_lag_seconds_count "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(
        lag_count.is_some_and(|count| count >= 1.0),
        "the web instance timed the changes it heard: {lag_count:?}"
    );
    let scraped = http.get(worker.url("/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    assert!(
        text.contains("executor_pool_size") || text.contains("async_mvc_cluster"),
        "{text}"
    );

    cluster.redis.kill();
    for url in [cluster.web(0).url("/readyz"), worker.url("/readyz")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = probe(url.clone()).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(body["status"], "unavailable", "{body}");
                assert!(body["reason"].as_str().unwrap().contains("redis"), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} stayed ready without redis"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for url in [cluster.web(0).url("/healthz"), worker.url("/healthz")] {
        assert_eq!(probe(url).await.0, StatusCode::OK, "live all along");
    }
    cluster.redis.restart();
    for url in [cluster.web(0).url("/readyz"), worker.url("/readyz")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe(url.clone()).await.0 != StatusCode::OK {
            assert!(Instant::now() < deadline, "{url} not ready again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let text = http
        .get(worker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(
            |line| line.starts_with("async_mvc_cluster_broker_reconnects_total ")
                && !line.ends_with(" 0")
        ),
        "the worker counted its reconnect:\n{text}"
    );
    assert!(cluster.all_running());
}
