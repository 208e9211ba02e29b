//! [`OrderDesk`]: the assembled application.

use std::sync::{Arc, OnceLock};

use async_mvc::{cluster::MessageBroker, AsyncManager, ConnectionStats, RouterExt};
use axum::{routing::get, Json, Router};

use super::{page, DemoConfig, Fulfilment, OrderStore, OrdersController, Replica};

/// The order desk's router together with handles tests and operators may want: the store, the
/// async manager (for its metrics) and [`drop_streams`](Self::drop_streams).
#[derive(Debug, Clone)]
pub struct OrderDesk {
    router: Router,
    store: OrderStore,
    manager: AsyncManager,
    connections: Arc<OnceLock<ConnectionStats>>,
}

impl OrderDesk {
    /// Builds the application and starts its fulfilment worker.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the worker is a tokio task).
    pub fn new(config: DemoConfig) -> Self {
        Self::assemble(config, None)
    }

    /// The order desk as one instance of a cluster on `broker`: orders live in the broker's
    /// history and every instance applies it (see [`Replica`]); any number of instances on one
    /// broker share one desk. The fulfilment worker of the instance that placed an order
    /// advances it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn clustered(config: DemoConfig, broker: Arc<dyn MessageBroker>) -> Self {
        Self::assemble(config, Some(broker))
    }

    fn assemble(config: DemoConfig, broker: Option<Arc<dyn MessageBroker>>) -> Self {
        let store = OrderStore::new();
        let replica = broker.map(|broker| Replica::start(broker, store.clone()));
        let fulfilment = match &replica {
            None => Fulfilment::spawn(store.clone(), &config),
            Some(replica) => Fulfilment::spawn_clustered(replica.clone(), &config),
        };
        let manager = AsyncManager::new(
            config
                .async_config
                .clone()
                .task_executor(config.task_executor.clone()),
        );
        let mut controller = OrdersController::new(store.clone(), fulfilment)
            .invoice_timeout(config.invoice_timeout)
            .invoice_hash_rounds(config.invoice_hash_rounds);
        if let Some(replica) = replica {
            controller = controller.clustered(replica);
        }
        let metrics = manager.clone();
        let connections: Arc<OnceLock<ConnectionStats>> = Arc::default();
        let connection_metrics = Arc::clone(&connections);
        let router = Router::new()
            .route("/", get(page::index))
            .route(
                "/api/metrics",
                get(move || {
                    // The manager's counters, and the server's `connections` once attached.
                    let mut body = serde_json::to_value(metrics.metrics()).unwrap_or_default();
                    if let (Some(stats), Some(fields)) =
                        (connection_metrics.get(), body.as_object_mut())
                    {
                        fields.insert(
                            "connections".to_owned(),
                            serde_json::to_value(stats.snapshot()).unwrap_or_default(),
                        );
                    }
                    std::future::ready(Json(body))
                }),
            )
            .controller(controller)
            .async_support(manager.clone());
        OrderDesk {
            router,
            store,
            manager,
            connections,
        }
    }

    /// The routes, ready for `axum::serve`.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The orders and their waiting long polls.
    pub fn store(&self) -> &OrderStore {
        &self.store
    }

    /// Ends every open `GET /api/orders/{id}/stream` response, as a server dropping the
    /// connections would, without closing the orders' broadcasters: clients reconnect with
    /// `Last-Event-ID` and get what they missed from the replay buffers. Returns how many
    /// streams were open. See [`OrderStore::drop_streams`].
    pub fn drop_streams(&self) -> usize {
        self.store.drop_streams()
    }

    /// Adds the server's connection counters to `GET /api/metrics` (as `connections`). Only
    /// the first call counts.
    pub fn attach_connection_stats(&self, stats: ConnectionStats) {
        let _ = self.connections.set(stats);
    }

    /// The manager driving the long polls and the invoice tasks; read its
    /// [`metrics`](AsyncManager::metrics).
    pub fn manager(&self) -> &AsyncManager {
        &self.manager
    }
}

/// The order desk's router with `config`; see [`OrderDesk::new`].
///
/// # Panics
///
/// Outside a tokio runtime (the fulfilment worker is a tokio task).
pub fn app(config: DemoConfig) -> Router {
    OrderDesk::new(config).router()
}
