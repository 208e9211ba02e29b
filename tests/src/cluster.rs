//! One instance of a clustered test app over a [`MessageBroker`]: a keyed long poll
//! (`GET /wait/{key}`, `POST /complete/{key}`) on a `DeferredResultRegistry` and SSE by topic
//! (`GET /events/{topic}`, `POST /send/{topic}`) on a `ClusteredSseBroadcaster`; and readers of
//! SSE responses.

use std::{sync::Arc, time::Duration};

use async_mvc::{
    cluster::{ClusteredSseBroadcaster, DeferredResultRegistry, MessageBroker},
    AsyncConfig, AsyncManager, DeferredResult, LastEventId, RouterExt, SseEvent,
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use futures::StreamExt;

use crate::within;

/// An instance's handles.
#[derive(Clone, Debug)]
pub struct Instance {
    /// The long polls, keyed.
    pub registry: DeferredResultRegistry<String, String>,
    /// The event streams, by topic.
    pub hub: ClusteredSseBroadcaster,
    /// The instance's own manager.
    pub manager: AsyncManager,
}

impl Instance {
    /// An instance on `broker`: its registry retains values for 30 s if `retain`, its
    /// broadcaster keeps `history` events per topic.
    pub fn new(broker: &Arc<dyn MessageBroker>, retain: bool, history: usize) -> Instance {
        let mut registry = DeferredResultRegistry::new(Arc::clone(broker), "waits");
        if retain {
            registry = registry.retain(Duration::from_secs(30));
        }
        Instance {
            registry,
            hub: ClusteredSseBroadcaster::new(Arc::clone(broker), "notes").history(history),
            manager: AsyncManager::new(AsyncConfig::new()),
        }
    }

    /// The instance's routes.
    pub fn router(&self) -> Router {
        self.routes().async_support(self.manager.clone())
    }

    /// The instance's routes without async support, for a test kit that adds its own.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/wait/{key}", get(wait))
            .route("/complete/{key}", post(complete))
            .route("/events/{topic}", get(events))
            .route("/send/{topic}", post(send))
            .with_state(self.clone())
    }
}

async fn wait(State(app): State<Instance>, Path(key): Path<String>) -> DeferredResult<String> {
    app.registry
        .wait(key, Duration::from_secs(10), "timeout".to_owned())
}

async fn complete(
    State(app): State<Instance>,
    Path(key): Path<String>,
    value: String,
) -> StatusCode {
    match app.registry.complete(&key, &value).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn events(
    State(app): State<Instance>,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> impl IntoResponse {
    app.hub
        .subscribe(&topic, last.as_ref().map(LastEventId::as_str))
        .await
}

/// `POST /send/{topic}`: the event's id, or `503` if the broker refused it.
async fn send(
    State(app): State<Instance>,
    Path(topic): Path<String>,
    data: String,
) -> axum::response::Response {
    let Ok(event) = SseEvent::builder().event("note").data(data).build() else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    match app.hub.send(&topic, &event).await {
        Ok(id) => id.into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Reads events from an SSE response until `n` with an id have arrived: their `(id, data)`.
///
/// # Panics
///
/// If the stream ends or stalls for [`WAIT_LIMIT`](crate::WAIT_LIMIT) first.
pub async fn read_events(response: reqwest::Response, n: usize) -> Vec<(String, String)> {
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = within("SSE events", body.next())
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the stream ended after {} of {n} events (last {:?})",
                    events.len(),
                    events.last()
                )
            })
            .expect("a chunk");
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 2);
            let mut id = String::new();
            let mut data = String::new();
            for line in text.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = value.to_owned();
                }
            }
            if !id.is_empty() {
                events.push((id, data));
            }
        }
    }
    events
}

/// The offset of an id `{epoch}:{offset}`.
///
/// # Panics
///
/// If `id` is not one.
pub fn offset(id: &str) -> u64 {
    id.split_once(':')
        .and_then(|(_, offset)| offset.parse().ok())
        .expect("an id {epoch}:{offset}")
}
