//! The order desk as a cluster: two instances sharing one broker — an `InMemoryBroker`, and a
//! real `redis-server` as `demo --redis` uses — over real HTTP. An order placed on A is found
//! on B; a long poll on B is completed by an event posted on A; A's event stream receives the
//! changes made on B; an `EventSource` reconnecting to B with `Last-Event-ID` gets exactly what
//! it missed; the fulfilment worker advances each order once (placed → packed → shipped),
//! whichever instance placed it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{sync::Arc, time::Duration};

use async_mvc::cluster::{InMemoryBroker, MessageBroker};
use async_mvc_examples::order_desk::{DemoConfig, OrderDesk};
use async_mvc_redis::RedisBroker;
use async_mvc_tests::{client, redis::RedisServer, within, TestServer};
use futures::StreamExt;
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
    let mut body = response.bytes_stream();
    let (mut buffer, mut events) = (Vec::new(), Vec::new());
    while events.len() < n {
        let chunk = within("events", body.next()).await.unwrap().unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let text = String::from_utf8(buffer[..end].to_vec()).unwrap();
            buffer.drain(..end + 2);
            let (mut id, mut data) = (None, None);
            for line in text.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.parse().ok();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = serde_json::from_str(value).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
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
