//! The kit's test cluster: clustered SSE resumed on another instance after a partition, and
//! request/reply between a web instance and a worker instance through the broker's outage —
//! under paused time, in one process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::{sync::Arc, time::Duration};

use async_mvc::{
    cluster::{
        ClusteredSseBroadcaster, JobListener, JobListenerHandle, MessageBroker, ReplyError,
        ReplyingTemplate,
    },
    DeferredResult, LastEventId, SseEvent,
};
use async_mvc_test::TestCluster;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
    Router,
};

fn notes(broker: Arc<dyn MessageBroker>) -> Router {
    let hub = ClusteredSseBroadcaster::new(broker, "notes");
    Router::new()
        .route(
            "/events/{topic}",
            get(
                |State(hub): State<ClusteredSseBroadcaster>,
                 Path(topic): Path<String>,
                 last: Option<LastEventId>| async move {
                    hub.subscribe(&topic, last.as_ref().map(LastEventId::as_str))
                        .await
                },
            ),
        )
        .route(
            "/send/{topic}",
            post(
                |State(hub): State<ClusteredSseBroadcaster>,
                 Path(topic): Path<String>,
                 data: String| async move {
                    let event = SseEvent::builder().data(data).build().unwrap();
                    match hub.send(&topic, &event).await {
                        Ok(id) => id.into_response(),
                        Err(error) => {
                            (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
                        }
                    }
                },
            ),
        )
        .with_state(hub)
}

#[tokio::test(start_paused = true)]
async fn a_stream_resumes_on_another_instance_after_a_partition() {
    let cluster = TestCluster::new(3, notes);
    let mut on_a = cluster.client(0).get("/events/t").sse().await;
    for n in 1..=2 {
        assert_eq!(
            cluster
                .client(1)
                .post("/send/t")
                .body(format!("n{n}"))
                .send()
                .await
                .status(),
            200
        );
    }
    let seen = on_a.take(2).await;
    assert_eq!(seen[1].data, "n2");
    // A is cut off; the client moves to C with the id it saw last.
    cluster.partition(0);
    assert_eq!(
        cluster
            .client(0)
            .post("/send/t")
            .body("lost")
            .send()
            .await
            .status(),
        503
    );
    for n in 3..=4 {
        cluster
            .client(1)
            .post("/send/t")
            .body(format!("n{n}"))
            .send()
            .await;
    }
    let last = on_a.disconnect();
    let mut on_c = cluster
        .client(2)
        .get("/events/t")
        .last_event_id(&last)
        .sse()
        .await;
    assert_eq!(on_c.headers()["last-event-id-status"], "recovered");
    let missed = on_c.take(2).await;
    let data: Vec<&str> = missed.iter().map(|event| event.data.as_str()).collect();
    assert_eq!(data, ["n3", "n4"]);
    // A's listener has read (and lost) what was published while it was cut off.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        cluster.faults(0).unwrap().dropped() >= 2,
        "A heard nothing while cut off"
    );
    cluster.heal(0);
}

/// Every instance runs a worker of the `squares` queue and serves `GET /square/{n}`.
fn squares(broker: Arc<dyn MessageBroker>, workers: &mut Vec<JobListenerHandle>) -> Router {
    workers.push(
        JobListener::new(Arc::clone(&broker), "squares", "workers")
            .run(|n: u64| async move { Ok::<_, String>((n * n).to_string()) }),
    );
    let template = ReplyingTemplate::new(broker, "squares");
    Router::new()
        .route(
            "/square/{n}",
            get(
                |State(template): State<ReplyingTemplate>, Path(n): Path<u64>| async move {
                    let reply: DeferredResult<String, ReplyError> =
                        template.send_and_receive(&n, Duration::from_secs(5)).await;
                    reply
                },
            ),
        )
        .with_state(template)
}

#[tokio::test(start_paused = true)]
async fn request_reply_across_instances_and_through_an_outage() {
    let mut workers = Vec::new();
    let cluster = TestCluster::new(2, |broker| squares(broker, &mut workers));
    // The workers mark the queue alive within their first heartbeat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = cluster.client(0).get("/square/12").send().await;
    assert_eq!(
        (answer.status(), answer.text().as_str()),
        (StatusCode::OK, "144")
    );
    // The broker down: refused with 503 at once, not hung.
    cluster.broker_down();
    let refused = cluster.client(1).get("/square/3").send().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.header("retry-after").is_some());
    // Back: the workers' next heartbeat marks the queue alive again.
    cluster.broker_up();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = cluster.client(1).get("/square/3").send().await;
    assert_eq!(answer.text(), "9");
    for worker in workers {
        worker.shutdown().await;
    }
}
