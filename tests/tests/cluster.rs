//! Scale-out over a broker, three app instances in one process sharing one `InMemoryBroker`,
//! on the test kit (`TestClient` per instance, through its router; SSE read as parsed events): a long poll on B and C completed from A (`DeferredResultRegistry`), a
//! retained value for a waiter that comes just after, SSE sent on A reaching B and C
//! (`ClusteredSseBroadcaster`), a reconnect with `Last-Event-ID` on another instance with no
//! gap and no duplicate, and a trimmed id answered with the reset signal and the window.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_mvc::{
    cluster::{
        ClusteredSseBroadcaster, DeferredResultRegistry, InMemoryBroker, MessageBroker,
        LAST_EVENT_ID_STATUS,
    },
    prelude::*,
    AsyncManager,
};
use async_mvc_test::{SseProbe, TestClient};
use async_mvc_tests::{
    cluster::{offset, Instance},
    eventually,
    faulty::FaultyBroker,
    within,
};
use axum::{http::StatusCode, routing::get, Router};

struct Cluster {
    servers: Vec<TestClient>,
    instances: Vec<Instance>,
}

/// The next `n` events of `probe`: their `(id, data)`.
async fn read(probe: &mut SseProbe, n: usize) -> Vec<(String, String)> {
    let events = within("SSE events", probe.take(n)).await;
    assert_eq!(
        events.len(),
        n,
        "the stream ended after {} of {n} events",
        events.len()
    );
    events
        .into_iter()
        .map(|event| (event.id, event.data))
        .collect()
}

/// `n` instances on one broker; each with its own manager, registry and broadcaster.
async fn cluster(n: usize, retain: bool, history: usize) -> Cluster {
    let broker: Arc<dyn MessageBroker> = Arc::new(InMemoryBroker::new());
    let mut servers = Vec::new();
    let mut instances = Vec::new();
    for _ in 0..n {
        let instance = Instance::new(&broker, retain, history);
        servers.push(TestClient::new(instance.router()));
        instances.push(instance);
    }
    Cluster { servers, instances }
}

#[tokio::test]
async fn a_completion_on_one_instance_reaches_waiters_on_the_others() {
    let cluster = cluster(3, false, 16).await;
    let (a, b, c) = (
        &cluster.servers[0],
        &cluster.servers[1],
        &cluster.servers[2],
    );
    let waiting: Vec<_> = [b, b, c]
        .into_iter()
        .map(|server| server.get("/wait/order-7").start())
        .collect();
    let other = c.get("/wait/order-8").start();
    eventually("three waiters for order-7", || {
        cluster.instances[1].registry.waiting() == 2 && cluster.instances[2].registry.waiting() == 2
    })
    .await;

    let done = a.post("/complete/order-7").body("packed").send().await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    for waiter in waiting {
        let response = within("a waiter is completed", waiter.response()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text(), "packed");
    }
    // The other key's waiter still waits; completed waiters left the registries.
    assert_eq!(cluster.instances[1].registry.waiting(), 0);
    assert_eq!(cluster.instances[2].registry.waiting(), 1);
    assert_eq!(cluster.instances[1].registry.completed(), 2);
    b.post("/complete/order-8").body("shipped").send().await;
    let response = within("the other key", other.response()).await;
    assert_eq!(response.text(), "shipped");
    for instance in &cluster.instances {
        eventually("nothing in flight", || {
            instance.manager.metrics().in_flight == 0
        })
        .await;
    }
}

#[tokio::test]
async fn a_retained_value_serves_a_waiter_that_comes_just_after() {
    let cluster = cluster(2, true, 16).await;
    cluster.servers[0]
        .post("/complete/order-9")
        .body("delivered")
        .send()
        .await;
    // On the other instance, after the completion: answered at once with the value.
    let response = within(
        "the retained value",
        cluster.servers[1].get("/wait/order-9").send(),
    )
    .await;
    assert_eq!(response.text(), "delivered");
    assert_eq!(cluster.instances[1].registry.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_times_out_with_its_timeout_result_and_leaves_the_registry() {
    let broker = InMemoryBroker::new();
    let registry = DeferredResultRegistry::<String, String>::new(broker, "short");
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/wait", {
            let registry = registry.clone();
            get(move || {
                std::future::ready(registry.wait(
                    "k".to_owned(),
                    Duration::from_millis(200),
                    "timeout".to_owned(),
                ))
            })
        })
        .async_support(manager.clone());
    let server = TestClient::new(app);
    let response = server.get("/wait").send().await;
    assert_eq!(response.text(), "timeout");
    eventually("the waiter left", || registry.waiting() == 0).await;
}

#[tokio::test]
async fn an_event_sent_on_one_instance_reaches_subscribers_on_the_others_byte_exact() {
    let cluster = cluster(3, false, 16).await;
    let on_b = cluster.servers[1].get("/events/t1").stream().await;
    let on_c = cluster.servers[2].get("/events/t1").stream().await;
    assert_eq!(on_b.status(), StatusCode::OK);
    assert!(on_b.headers().get(LAST_EVENT_ID_STATUS).is_none());
    eventually("subscribed", || {
        cluster.instances[1].hub.subscribers("t1") == 1
            && cluster.instances[2].hub.subscribers("t1") == 1
    })
    .await;
    let id = cluster.servers[0]
        .post("/send/t1")
        .body("hello")
        .send()
        .await
        .text();
    assert_eq!(offset(&id), 1);
    let expected = format!("event:note\ndata:hello\nid:{id}\n\n");
    for mut body in [on_b, on_c] {
        let mut received = Vec::new();
        while received.len() < expected.len() {
            received.extend_from_slice(&within("the event", body.next_chunk()).await.unwrap());
        }
        assert_eq!(String::from_utf8(received).unwrap(), expected);
    }
}

#[tokio::test]
async fn a_client_reconnecting_to_another_instance_gets_exactly_what_it_missed() {
    let cluster = cluster(3, false, 100).await;
    let mut on_a = cluster.servers[0].get("/events/t2").sse().await;
    eventually("subscribed", || {
        cluster.instances[0].hub.subscribers("t2") == 1
    })
    .await;
    for n in 1..=5 {
        cluster.servers[1]
            .post("/send/t2")
            .body(format!("n{n}"))
            .send()
            .await;
    }
    let seen = read(&mut on_a, 2).await;
    assert_eq!(
        seen.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    // The client "loses" A after event 2 and reconnects to C with the id it saw last.
    let mut resumed = cluster.servers[2]
        .get("/events/t2")
        .header("last-event-id", &seen[1].0)
        .sse()
        .await;
    assert_eq!(resumed.headers()[LAST_EVENT_ID_STATUS], "recovered");
    // Sent while it replays and after: no gap, no duplicate.
    let sender = {
        let b = cluster.servers[1].clone();
        tokio::spawn(async move {
            for n in 6..=40 {
                b.post("/send/t2").body(format!("n{n}")).send().await;
            }
        })
    };
    let events = read(&mut resumed, 38).await;
    sender.await.unwrap();
    let offsets: Vec<u64> = events.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, (3..=40).collect::<Vec<_>>());
    let data: Vec<String> = events.into_iter().map(|(_, data)| data).collect();
    assert_eq!(data, (3..=40).map(|n| format!("n{n}")).collect::<Vec<_>>());
}

// Real time: under paused time the runtime would advance past B's delay while the test waits.
#[tokio::test]
async fn a_resume_on_a_lagging_instance_sends_only_what_follows_the_id() {
    let shared = InMemoryBroker::new();
    let a: Arc<dyn MessageBroker> = Arc::new(shared.clone());
    // B hears every event 400 ms after it was sent: a client that saw an event on A
    // reconnects to B before B has it.
    let b: Arc<dyn MessageBroker> =
        Arc::new(FaultyBroker::delayed(shared, Duration::from_millis(400)));
    let (on_a, on_b) = (Instance::new(&a, false, 100), Instance::new(&b, false, 100));
    let (server_a, server_b) = (
        TestClient::new(on_a.router()),
        TestClient::new(on_b.router()),
    );
    // Someone on B already follows the topic live: B delivers each event when it hears it.
    let mut watcher = server_b.get("/events/t6").sse().await;
    eventually("subscribed on B", || on_b.hub.subscribers("t6") == 1).await;
    let mut follower = server_a.get("/events/t6").sse().await;
    eventually("subscribed on A", || on_a.hub.subscribers("t6") == 1).await;
    for n in 1..=3 {
        server_a.post("/send/t6").body(format!("n{n}")).send().await;
    }
    let seen = read(&mut follower, 3).await;
    // B has delivered none of them yet; the client resumes there after event 3.
    let mut resumed = server_b
        .get("/events/t6")
        .header("last-event-id", &seen[2].0)
        .sse()
        .await;
    assert_eq!(resumed.headers()[LAST_EVENT_ID_STATUS], "recovered");
    for n in 4..=5 {
        server_a.post("/send/t6").body(format!("n{n}")).send().await;
    }
    // Exactly 4 and 5, though B hears 1, 2 and 3 after the resume.
    let events = read(&mut resumed, 2).await;
    let data: Vec<&str> = events.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(data, ["n4", "n5"]);
    let watched = read(&mut watcher, 5).await;
    let offsets: Vec<u64> = watched.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_live_subscriber_gets_no_history_from_before_it_came() {
    let broker: Arc<dyn MessageBroker> = Arc::new(InMemoryBroker::new());
    let instance = Instance::new(&broker, false, 100);
    for n in 1..=3 {
        let event = SseEvent::builder().data(format!("old{n}")).build().unwrap();
        instance.hub.send("t7", &event).await.unwrap();
    }
    // A second instance, with no subscriber of t7 so far.
    let other = Instance::new(&broker, false, 100);
    let server = TestClient::new(other.router());
    let mut live = server.get("/events/t7").sse().await;
    eventually("subscribed", || other.hub.subscribers("t7") == 1).await;
    // Past a position check (2 s), which looks at the topic's history.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let event = SseEvent::builder().data("new").build().unwrap();
    instance.hub.send("t7", &event).await.unwrap();
    let events = read(&mut live, 1).await;
    assert_eq!(events[0].1, "new");
    assert_eq!(offset(&events[0].0), 4);
}

#[tokio::test]
async fn a_trimmed_or_foreign_id_replays_the_window_and_says_reset() {
    let broker: Arc<dyn MessageBroker> = Arc::new(InMemoryBroker::new());
    let resets: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let hub = ClusteredSseBroadcaster::new(Arc::clone(&broker), "notes")
        .history(3)
        .on_replay_reset({
            let resets = resets.clone();
            move |topic, id| {
                resets
                    .lock()
                    .unwrap()
                    .push((topic.to_owned(), id.to_owned()))
            }
        });
    let mut instance = Instance::new(&broker, false, 3);
    instance.hub = hub.clone();
    let server = TestClient::new(instance.router());
    let mut ids = Vec::new();
    for n in 1..=6 {
        let event = SseEvent::builder().data(format!("n{n}")).build().unwrap();
        ids.push(hub.send("t3", &event).await.unwrap());
    }
    for stale in [ids[0].clone(), "0:2".to_owned(), "garbage".to_owned()] {
        let mut response = server
            .get("/events/t3")
            .header("last-event-id", &stale)
            .sse()
            .await;
        assert_eq!(response.headers()[LAST_EVENT_ID_STATUS], "reset", "{stale}");
        let events = read(&mut response, 3).await;
        let data: Vec<&str> = events.iter().map(|(_, data)| data.as_str()).collect();
        assert_eq!(data, ["n4", "n5", "n6"], "{stale}");
    }
    assert_eq!(
        *resets.lock().unwrap(),
        [
            ("t3".to_owned(), ids[0].clone()),
            ("t3".to_owned(), "0:2".to_owned()),
            ("t3".to_owned(), "garbage".to_owned())
        ]
    );
    assert_eq!(hub.metrics().replay_resets, 3);
    // A current id resumes: nothing to replay, live from there.
    let response = server
        .get("/events/t3")
        .header("last-event-id", &ids[5])
        .sse()
        .await;
    assert_eq!(response.headers()[LAST_EVENT_ID_STATUS], "recovered");
}

#[tokio::test]
async fn events_lost_on_the_way_are_read_from_history_in_order() {
    let shared = InMemoryBroker::new();
    let sender = ClusteredSseBroadcaster::new(shared.clone(), "notes");
    // The receiving instance's subscription loses every third message.
    let lossy: Arc<dyn MessageBroker> = Arc::new(FaultyBroker::lossy(shared, |n| n % 3 != 2));
    let receiver = ClusteredSseBroadcaster::new(lossy, "notes");
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/events", {
            let receiver = receiver.clone();
            get(move || {
                let receiver = receiver.clone();
                async move { receiver.subscribe("t4", None).await }
            })
        })
        .async_support(manager);
    let server = TestClient::new(app);
    let mut response = server.get("/events").sse().await;
    eventually("subscribed", || receiver.subscribers("t4") == 1).await;
    for n in 1..=30 {
        let event = SseEvent::builder().data(format!("n{n}")).build().unwrap();
        sender.send("t4", &event).await.unwrap();
    }
    let events = read(&mut response, 30).await;
    let offsets: Vec<u64> = events.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, (1..=30).collect::<Vec<_>>());
    assert!(
        receiver.metrics().gaps_backfilled >= 1,
        "{:?}",
        receiver.metrics()
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_event_before_a_quiet_spell_is_found_by_the_position_check() {
    let shared = InMemoryBroker::new();
    let sender = ClusteredSseBroadcaster::new(shared.clone(), "notes");
    // Nothing arrives on the subscription at all.
    let deaf: Arc<dyn MessageBroker> = Arc::new(FaultyBroker::lossy(shared, |_| false));
    let receiver = ClusteredSseBroadcaster::new(deaf, "notes");
    let app = Router::new()
        .route("/events", {
            let receiver = receiver.clone();
            get(move || {
                let receiver = receiver.clone();
                async move { receiver.subscribe("t5", None).await }
            })
        })
        .async_support(AsyncManager::new(AsyncConfig::new()));
    let server = TestClient::new(app);
    let mut response = server.get("/events").sse().await;
    eventually("subscribed", || receiver.subscribers("t5") == 1).await;
    for n in 1..=3 {
        let event = SseEvent::builder().data(format!("n{n}")).build().unwrap();
        sender.send("t5", &event).await.unwrap();
    }
    // Nothing arrives live; within a position check (2 s) the history is read.
    let events = read(&mut response, 3).await;
    let offsets: Vec<u64> = events.iter().map(|(id, _)| offset(id)).collect();
    assert_eq!(offsets, [1, 2, 3]);
    assert!(receiver.metrics().gaps_backfilled >= 1);
}
