//! The order desk as a cluster: two instances sharing one broker — an `InMemoryBroker`, and a
//! real `redis-server` as `demo --redis` uses — over real HTTP. An order placed on A is found
//! on B; a long poll on B is completed by an event posted on A; A's event stream receives the
//! changes made on B; an `EventSource` reconnecting to B with `Last-Event-ID` gets exactly what
//! it missed; the fulfilment worker advances each order once (placed → packed → shipped),
//! whichever instance placed it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{sync::Arc, time::Duration};

use async_mvc::cluster::{InMemoryBroker, MessageBroker};
use async_mvc_examples::{
    order_desk::{DemoConfig, OrderDesk},
    sse_reader::EventReader,
};
use async_mvc_redis::RedisBroker;
use async_mvc_tests::{client, redis::RedisServer, within, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PACKED: Duration = Duration::from_millis(300);
const SHIPPED: Duration = Duration::from_millis(600);

async fn desk(broker: Arc<dyn MessageBroker>) -> TestServer {
    let config = DemoConfig::new()
        .packed_after(PACKED)
        .shipped_after(SHIPPED);
    TestServer::start(OrderDesk::clustered(config, broker).router()).await
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// `id:` and `data:` of the next `n` SSE events.
async fn events(response: reqwest::Response, n: usize) -> Vec<(u64, Value)> {
    let mut reader = EventReader::new(response);
    let deadline = tokio::time::Instant::now() + async_mvc_tests::WAIT_LIMIT;
    let mut events = Vec::new();
    while events.len() < n {
        let event = reader.next(deadline).await.expect("the next event");
        if let (Some(id), Ok(data)) = (
            event.id.and_then(|id| id.parse().ok()),
            serde_json::from_str(&event.data),
        ) {
            events.push((id, data));
        }
    }
    events
}

async fn two_instances_behave_as_one(a: &TestServer, b: &TestServer) {
    let http = client();
    // Placed on A, found on B at once.
    let placed = http
        .post(a.url("/api/orders"))
        .json(&json!({"item": "teapot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order = json(placed).await;
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["version"], 1);
    let on_b = json(
        http.get(b.url(&format!("/api/orders/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(on_b, order);

    // A's stream follows the order; B's long poll waits for version 2.
    let stream_on_a = http
        .get(a.url(&format!("/api/orders/{id}/stream")))
        .send()
        .await
        .unwrap();
    let poll_on_b = tokio::spawn(
        http.get(b.url(&format!("/api/orders/{id}/next?after=1&timeout_ms=5000")))
            .send(),
    );
    // The worker on A packs it, then ships it; an event posted on B comes after.
    let first = events(stream_on_a, 3).await;
    let polled = within("the long poll on B", poll_on_b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(polled.status(), StatusCode::OK);
    let polled = json(polled).await;
    assert_eq!(
        (polled["status"].as_str(), polled["version"].as_u64()),
        (Some("packed"), Some(2))
    );
    let statuses: Vec<(u64, &str)> = first
        .iter()
        .map(|(id, order)| (*id, order["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(1, "placed"), (2, "packed"), (3, "shipped")]);

    let posted = http
        .post(b.url(&format!("/api/orders/{id}/events")))
        .json(&json!({"status": "delivered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    assert_eq!(json(posted).await["version"], 4);

    // An EventSource that saw version 2 reconnects to B: exactly 3 and 4.
    let resumed = http
        .get(b.url(&format!("/api/orders/{id}/stream")))
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let missed = events(resumed, 2).await;
    let versions: Vec<u64> = missed.iter().map(|(id, _)| *id).collect();
    assert_eq!(versions, [3, 4]);

    // Advanced once: both instances agree on version 4, and nothing more happens.
    tokio::time::sleep(SHIPPED).await;
    for server in [a, b] {
        let order = json(
            http.get(server.url(&format!("/api/orders/{id}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (order["status"].as_str(), order["version"].as_u64()),
            (Some("delivered"), Some(4))
        );
    }
    // Placed on B: the next id, from the cluster.
    let second = json(
        http.post(b.url("/api/orders"))
            .json(&json!({"item": "cups"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(second["id"], order["id"]);
    let listed = json(http.get(a.url("/api/orders/feed")).send().await.unwrap()).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[tokio::test]
async fn two_instances_on_one_in_memory_broker_are_one_desk() {
    let broker: Arc<dyn MessageBroker> = Arc::new(InMemoryBroker::new());
    let (a, b) = (desk(Arc::clone(&broker)).await, desk(broker).await);
    two_instances_behave_as_one(&a, &b).await;
}

#[tokio::test]
async fn two_instances_on_one_redis_are_one_desk() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut servers = Vec::new();
    for _ in 0..2 {
        let broker = RedisBroker::builder(redis.url())
            .namespace("order-desk")
            .connect()
            .await
            .unwrap();
        let ready = broker.clone();
        within("subscribed", async {
            while !ready.metrics().subscribed {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        servers.push(desk(broker.into()).await);
    }
    two_instances_behave_as_one(&servers[0], &servers[1]).await;
}

/// The cluster's long polls wait in the registry, not in a store: a poll on B for version 3 is
/// not answered by version 2, is answered by version 3 made on A, and
/// leaves B's registry (B's store never held it).
#[tokio::test]
async fn a_long_poll_waits_in_the_registry_for_exactly_its_version() {
    use async_mvc_examples::order_desk::{OrderStore, Replica};

    let broker: Arc<dyn MessageBroker> = Arc::new(InMemoryBroker::new());
    let (store_a, store_b) = (OrderStore::new(), OrderStore::new());
    let a = Replica::start(Arc::clone(&broker), store_a.clone());
    let b = Replica::start(broker, store_b.clone());
    let soon = || tokio::time::Instant::now() + Duration::from_secs(5);
    let order = a.create("kettle".to_owned(), soon()).await.unwrap();

    let ahead = b.watch(&order.id, 2, soon()).await.unwrap().unwrap();
    assert!(!ahead.has_result());
    assert_eq!((b.waiting(), store_b.waiting()), (1, 0));

    let second = a
        .append(&order.id, "paid".to_owned(), soon())
        .await
        .unwrap();
    assert_eq!(second.map(|order| order.version), Some(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !ahead.has_result(),
        "version 2 does not answer a poll after 2"
    );

    let third = a
        .append(&order.id, "packed".to_owned(), soon())
        .await
        .unwrap()
        .unwrap();
    within("the poll on B", async {
        while !ahead.has_result() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(third.version, 3);
    assert_eq!(b.waiting(), 0);

    // A poll behind the order is answered at once, from B's replica.
    let behind = b.watch(&order.id, 1, soon()).await.unwrap().unwrap();
    assert!(behind.has_result());
    assert!(b.watch("nope", 0, soon()).await.unwrap().is_none());
}
