//! [`TestCluster`]: several instances of one application in one process, on one broker.

use std::sync::Arc;

use async_mvc::{
    cluster::{InMemoryBroker, MessageBroker},
    AsyncConfig, AsyncManager,
};
use axum::Router;

use crate::{
    client::TestClient,
    faulty::{Faults, FaultyBroker},
};

/// `n` instances of an application — each its own router and [`AsyncManager`] — on one
/// [`InMemoryBroker`], each through its own [`FaultyBroker`]: a cluster in one test, with a
/// [`TestClient`] per instance and faults to inject per instance or for all. Controllers that
/// use `DeferredResultRegistry`, `ClusteredSseBroadcaster`, `ReplyingTemplate` and
/// `JobListener` are tested end to end in one process, under paused time if the test likes.
///
/// [`on_brokers`](Self::on_brokers) runs the same on brokers of the test's choosing (a real
/// Redis: `async_mvc_redis::RedisBroker`s), without the injected faults.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use async_mvc::cluster::{DeferredResultRegistry, MessageBroker};
/// use async_mvc_test::TestCluster;
/// use axum::{extract::{Path, State}, http::StatusCode, routing::{get, post}, Router};
///
/// type Waits = DeferredResultRegistry<String, String>;
///
/// fn app(broker: Arc<dyn MessageBroker>) -> Router {
///     let waits: Waits = DeferredResultRegistry::new(broker, "waits");
///     Router::new()
///         .route("/wait/{key}", get(|State(w): State<Waits>, Path(k): Path<String>| async move {
///             w.wait(k, Duration::from_secs(30), "timeout".to_owned())
///         }))
///         .route("/done/{key}", post(|State(w): State<Waits>, Path(k): Path<String>| async move {
///             match w.complete(&k, &"done".to_owned()).await {
///                 Ok(()) => StatusCode::NO_CONTENT,
///                 Err(_) => StatusCode::SERVICE_UNAVAILABLE,
///             }
///         }))
///         .with_state(waits)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let cluster = TestCluster::new(2, app);
/// // Waiting on instance 0, completed from instance 1.
/// let waiting = cluster.client(0).get("/wait/k").start();
/// assert!(waiting.async_started().await);
/// assert_eq!(cluster.client(1).post("/done/k").send().await.status(), 204);
/// assert_eq!(waiting.response().await.text(), "done");
///
/// // The broker down: a completion cannot be published; the waiter ends by its timeout.
/// let waiting = cluster.client(0).get("/wait/k2").start();
/// assert!(waiting.async_started().await);
/// cluster.broker_down();
/// assert_eq!(cluster.client(1).post("/done/k2").send().await.status(), 503);
/// assert_eq!(waiting.response().await.text(), "timeout"); // 30 s, in virtual time
/// cluster.broker_up();
/// # }
/// ```
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    client: TestClient,
    faults: Option<Faults>,
}

impl TestCluster {
    /// `n` instances on one in-memory broker: `app(broker)` builds each instance's routes on
    /// its own view of the broker (a [`FaultyBroker`]); the kit puts them under async support
    /// with an [`AsyncManager`] of the default configuration each.
    pub fn new(n: usize, mut app: impl FnMut(Arc<dyn MessageBroker>) -> Router) -> Self {
        let shared = InMemoryBroker::new();
        let nodes = (0..n)
            .map(|_| {
                let broker = FaultyBroker::new(shared.clone());
                let faults = broker.faults().clone();
                let routes = app(Arc::new(broker));
                Node {
                    client: TestClient::with_config(routes, AsyncManager::new(AsyncConfig::new())),
                    faults: Some(faults),
                }
            })
            .collect();
        TestCluster { nodes }
    }

    /// One instance per broker of `brokers` (e.g. `RedisBroker`s on one Redis); no injected
    /// faults ([`faults`](Self::faults) is `None`): break the real broker instead.
    pub fn on_brokers(
        brokers: Vec<Arc<dyn MessageBroker>>,
        mut app: impl FnMut(Arc<dyn MessageBroker>) -> Router,
    ) -> Self {
        let nodes = brokers
            .into_iter()
            .map(|broker| Node {
                client: TestClient::with_config(app(broker), AsyncManager::new(AsyncConfig::new())),
                faults: None,
            })
            .collect();
        TestCluster { nodes }
    }

    /// How many instances there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client of instance `i` (through its router, no socket; [`TestClient::over_http`]
    /// for real HTTP).
    ///
    /// # Panics
    ///
    /// If there is no instance `i`.
    pub fn client(&self, i: usize) -> &TestClient {
        &self.nodes[i].client
    }

    /// The faults of instance `i`'s view of the broker ([`new`](Self::new) clusters).
    ///
    /// # Panics
    ///
    /// If there is no instance `i`.
    pub fn faults(&self, i: usize) -> Option<&Faults> {
        self.nodes[i].faults.as_ref()
    }

    /// Cuts instance `i` off the broker (its operations fail, it hears nothing) until
    /// [`heal`](Self::heal).
    ///
    /// # Panics
    ///
    /// If there is no instance `i`, or the cluster has no injected faults.
    pub fn partition(&self, i: usize) {
        self.expect_faults(i).down();
    }

    /// Connects instance `i` to the broker again: its subscriptions get `Reconnected` and catch
    /// up.
    ///
    /// # Panics
    ///
    /// As [`partition`](Self::partition).
    pub fn heal(&self, i: usize) {
        self.expect_faults(i).up();
    }

    /// The broker down for every instance.
    ///
    /// # Panics
    ///
    /// If the cluster has no injected faults.
    pub fn broker_down(&self) {
        (0..self.len()).for_each(|i| self.partition(i));
    }

    /// The broker back for every instance.
    ///
    /// # Panics
    ///
    /// If the cluster has no injected faults.
    pub fn broker_up(&self) {
        (0..self.len()).for_each(|i| self.heal(i));
    }

    fn expect_faults(&self, i: usize) -> &Faults {
        self.faults(i).unwrap_or_else(|| {
            panic!("instance {i} runs on a broker of the test's own: no injected faults")
        })
    }
}
