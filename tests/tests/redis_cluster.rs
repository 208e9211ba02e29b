//! The cluster features over a real `redis-server` (started by the test on a free port):
//! three instances, each with its own `RedisBroker`, over real HTTP. A completion on A reaches
//! B and C; SSE sent on A reaches B and C and a reconnect to C resumes exactly; Redis killed
//! for 5 s under steady publishing and restarted (append-only file on): no panic, resubscribed, every
//! event Redis accepted delivered once and in order; Redis paused: the outbox fills, then
//! `Unavailable`, then recovery. Skipped loudly without `redis-server`, except under `CI=true`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{sync::Arc, time::Duration};

use async_mvc::{
    cluster::{BrokerError, ClusteredSseBroadcaster, MessageBroker, LAST_EVENT_ID_STATUS},
    SseEvent,
};
use async_mvc_redis::RedisBroker;
use async_mvc_tests::{
    client,
    cluster::{offset, read_events, Instance},
    eventually,
    redis::RedisServer,
    within, TestServer,
};
use axum::http::StatusCode;

async fn broker(redis: &RedisServer, namespace: &str) -> RedisBroker {
    RedisBroker::builder(redis.url())
        .namespace(namespace)
        .connect()
        .await
        .unwrap()
}

async fn instances(
    redis: &RedisServer,
    namespace: &str,
    n: usize,
) -> (Vec<TestServer>, Vec<Instance>, Vec<RedisBroker>) {
    let mut servers = Vec::new();
    let mut instances = Vec::new();
    let mut brokers = Vec::new();
    for _ in 0..n {
        let redis_broker = broker(redis, namespace).await;
        let shared: Arc<dyn MessageBroker> = Arc::new(redis_broker.clone());
        let instance = Instance::new(&shared, true, 100);
        servers.push(TestServer::start(instance.router()).await);
        instances.push(instance);
        brokers.push(redis_broker);
    }
    // Every instance's pub/sub connection is up before the test publishes.
    for broker in &brokers {
        eventually("subscribed to redis", || broker.metrics().subscribed).await;
    }
    (servers, instances, brokers)
}

#[tokio::test]
async fn a_completion_on_a_reaches_waiters_on_b_and_c_through_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (servers, instances, _brokers) = instances(&redis, "registry", 3).await;
    let http = client();
    let on_b = tokio::spawn(http.get(servers[1].url("/wait/o1")).send());
    let on_c = tokio::spawn(http.get(servers[2].url("/wait/o1")).send());
    eventually("two waiters", || {
        instances[1].registry.waiting() == 1 && instances[2].registry.waiting() == 1
    })
    .await;
    let done = http
        .post(servers[0].url("/complete/o1"))
        .body("packed")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    for waiter in [on_b, on_c] {
        let response = within("completed", waiter).await.unwrap().unwrap();
        assert_eq!(response.text().await.unwrap(), "packed");
    }
    // Retained: a retry on another instance right after gets the value at once.
    let retry = http.get(servers[2].url("/wait/o1")).send().await.unwrap();
    assert_eq!(retry.text().await.unwrap(), "packed");
}

#[tokio::test]
async fn sse_sent_on_a_reaches_b_and_c_and_a_reconnect_to_c_resumes_exactly() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (servers, instances, _brokers) = instances(&redis, "sse", 3).await;
    let http = client();
    let on_b = http.get(servers[1].url("/events/t")).send().await.unwrap();
    let on_c = http.get(servers[2].url("/events/t")).send().await.unwrap();
    eventually("subscribed", || {
        instances[1].hub.subscribers("t") == 1 && instances[2].hub.subscribers("t") == 1
    })
    .await;
    for n in 1..=5 {
        let response = http
            .post(servers[0].url("/send/t"))
            .body(format!("n{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let seen_b = read_events(on_b, 5).await;
    let seen_c = read_events(on_c, 2).await;
    assert_eq!(
        seen_b.iter().map(|(id, _)| offset(id)).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // C's client saw 2 events, lost C, and reconnects to B with the last id it saw.
    let resumed = http
        .get(servers[1].url("/events/t"))
        .header("last-event-id", &seen_c[1].0)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.headers()[LAST_EVENT_ID_STATUS], "recovered");
    http.post(servers[0].url("/send/t"))
        .body("n6")
        .send()
        .await
        .unwrap();
    let events = read_events(resumed, 4).await;
    let data: Vec<&str> = events.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(data, ["n3", "n4", "n5", "n6"]);
}

#[tokio::test]
async fn redis_killed_under_publishing_and_restarted_loses_nothing_it_accepted() {
    let Some(mut redis) = RedisServer::start_persistent() else {
        return;
    };
    let publisher = broker(&redis, "outage").await;
    let receiver_broker = broker(&redis, "outage").await;
    eventually("subscribed", || receiver_broker.metrics().subscribed).await;
    let sender = ClusteredSseBroadcaster::new(publisher.clone(), "notes").history(10_000);
    let receiver = ClusteredSseBroadcaster::new(receiver_broker.clone(), "notes").history(10_000);
    let manager = async_mvc::AsyncManager::new(async_mvc::AsyncConfig::new());
    let app = axum::Router::new()
        .route("/events", {
            let receiver = receiver.clone();
            axum::routing::get(move || {
                let receiver = receiver.clone();
                async move { receiver.subscribe("steady", None).await }
            })
        })
        .layer(async_mvc::AsyncSupportLayer::new(manager));
    let server = TestServer::start(app).await;
    // No whole-request timeout: the stream outlives `client()`'s; each read is bounded.
    let streaming = reqwest::Client::builder()
        .read_timeout(async_mvc_tests::WAIT_LIMIT)
        .build()
        .unwrap();
    let response = streaming.get(server.url("/events")).send().await.unwrap();
    eventually("subscribed", || receiver.subscribers("steady") == 1).await;

    // Steady publishing, every 20 ms, for 9 s (from before the kill to well after the
    // restart; bounded in time, not count, so a loaded machine does not stretch it); each send
    // that Redis accepted is counted.
    let publishing = tokio::spawn(async move {
        let mut accepted = Vec::new();
        let mut refused = 0;
        let started = std::time::Instant::now();
        for n in 0..400 {
            if started.elapsed() > Duration::from_secs(9) {
                break;
            }
            let event = SseEvent::builder().data(format!("n{n}")).build().unwrap();
            match sender.send("steady", &event).await {
                Ok(id) => accepted.push(offset(&id)),
                Err(BrokerError::Unavailable(_)) => refused += 1,
                Err(other) => panic!("{other}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (accepted, refused)
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.restart();
    let back = std::time::Instant::now();
    within("resubscribed after the restart", async {
        while receiver_broker.metrics().reconnects == 0 || !receiver_broker.metrics().subscribed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let resubscribed = back.elapsed();
    eprintln!(
        "resubscribed {} ms after redis came back",
        resubscribed.as_millis()
    );
    // The bound is 1 s; a loaded machine gets some slack.
    assert!(resubscribed < Duration::from_secs(2), "{resubscribed:?}");
    let (accepted, refused) = within("publishing ends", publishing).await.unwrap();
    eprintln!("{} sends accepted, {refused} refused", accepted.len());
    assert!(!accepted.is_empty());
    // Offsets are contiguous across the restart (the append-only file kept the history).
    let expected: Vec<u64> = (1..=accepted.len() as u64).collect();
    assert_eq!(accepted, expected, "{refused} refused");
    // The subscriber got every accepted event once, in order.
    let events = read_events(response, accepted.len()).await;
    let offsets: Vec<u64> = events.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, expected);
}

#[tokio::test]
async fn redis_paused_fills_the_outbox_then_refuses_then_recovers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let broker = RedisBroker::builder(redis.url())
        .namespace("paused")
        .outbox(2)
        .outbox_wait(Duration::from_secs(8))
        .connect()
        .await
        .unwrap();
    let hub = ClusteredSseBroadcaster::new(broker.clone(), "notes");
    let event = SseEvent::builder().data("x").build().unwrap();
    hub.send("p", &event).await.unwrap();
    redis.pause();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (hub, event) = (hub.clone(), event.clone());
            tokio::spawn(async move { hub.send("p", &event).await })
        })
        .collect();
    eventually("the outbox is full", || broker.metrics().outbox_len == 2).await;
    let refused = hub.send("p", &event).await;
    assert!(
        matches!(refused, Err(BrokerError::Unavailable(_))),
        "{refused:?}"
    );
    redis.resume();
    for send in waiting {
        let id = within("recovered", send).await.unwrap().unwrap();
        assert!(offset(&id) >= 2, "{id}");
    }
    assert_eq!(broker.metrics().outbox_len, 0);
    hub.send("p", &event).await.unwrap();
}

#[tokio::test]
async fn a_trimmed_id_on_redis_replays_the_retained_window_and_says_reset() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let redis_broker = broker(&redis, "trim").await;
    let shared: Arc<dyn MessageBroker> = Arc::new(redis_broker.clone());
    // `MAXLEN ~ 3`: Redis trims whole stream nodes (100 entries each), so after 250 events the
    // first ones are gone and some more than 3 remain.
    let mut instance = Instance::new(&shared, false, 3);
    instance.hub = ClusteredSseBroadcaster::new(Arc::clone(&shared), "notes").history(3);
    let server = TestServer::start(instance.router()).await;
    let mut ids = Vec::new();
    for n in 1..=250u32 {
        let event = SseEvent::builder().data(format!("n{n}")).build().unwrap();
        ids.push(instance.hub.send("trim", &event).await.unwrap());
    }
    let response = client()
        .get(server.url("/events/trim"))
        .header("last-event-id", &ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[LAST_EVENT_ID_STATUS], "reset");
    // The replay is the newest `history` (3) events, then live.
    let window = read_events(response, 3).await;
    let offsets: Vec<u64> = window.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, [248, 249, 250]);
    // An id Redis still holds resumes — with every event after it, even more than `history`:
    // the last node (201..=250) is retained whole.
    let resumed = client()
        .get(server.url("/events/trim"))
        .header("last-event-id", &ids[209])
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.headers()[LAST_EVENT_ID_STATUS], "recovered");
    let rest = read_events(resumed, 40).await;
    let offsets: Vec<u64> = rest.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, (211..=250).collect::<Vec<_>>());
}

/// The test kit's cluster on a real Redis: `TestCluster::on_brokers`, one `RedisBroker` per
/// instance, a long poll on one completed from another and an SSE resume on a third.
#[tokio::test]
async fn the_test_kits_cluster_runs_on_a_real_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut brokers: Vec<Arc<dyn MessageBroker>> = Vec::new();
    let mut redis_brokers = Vec::new();
    for _ in 0..3 {
        let redis_broker = broker(&redis, "kit").await;
        brokers.push(Arc::new(redis_broker.clone()));
        redis_brokers.push(redis_broker);
    }
    let cluster = async_mvc_test::TestCluster::on_brokers(brokers, |broker| {
        Instance::new(&broker, false, 100).routes()
    });
    for broker in &redis_brokers {
        eventually("subscribed to redis", || broker.metrics().subscribed).await;
    }
    assert!(
        cluster.faults(0).is_none(),
        "a real broker: break it instead"
    );
    let waiting = cluster.client(0).get("/wait/k").start();
    assert!(waiting.async_started().await);
    let done = cluster
        .client(1)
        .post("/complete/k")
        .body("packed")
        .send()
        .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        within("the waiter", waiting.response()).await.text(),
        "packed"
    );

    let mut on_a = cluster.client(0).get("/events/kt").sse().await;
    for n in 1..=3 {
        cluster
            .client(1)
            .post("/send/kt")
            .body(format!("n{n}"))
            .send()
            .await;
    }
    let seen = within("events on A", on_a.take(2)).await;
    let last = on_a.disconnect();
    assert_eq!(last, seen[1].id);
    let mut on_c = cluster
        .client(2)
        .get("/events/kt")
        .last_event_id(&last)
        .sse()
        .await;
    assert_eq!(on_c.headers()[LAST_EVENT_ID_STATUS], "recovered");
    let rest = within("the resume on C", on_c.take(1)).await;
    assert_eq!(rest[0].data, "n3");
}
