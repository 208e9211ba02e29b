//! [`OrderDesk`]: the assembled application.

use std::sync::{Arc, OnceLock};

use async_mvc::{
    cluster::{MessageBroker, ReplyingTemplate},
    AsyncManager, ConnectionStats, RouterExt,
};
use axum::{routing::get, Json, Router};

use crate::ops::{self, Readiness};

use super::{
    page, DemoConfig, Fulfilment, OrderStore, OrdersController, Replica, Workers, FULFILMENT_QUEUE,
    INVOICE_QUEUE,
};

/// The order desk's router together with handles tests and operators may want: the store, the
/// async manager (for its metrics) and [`drop_streams`](Self::drop_streams).
#[derive(Debug, Clone)]
pub struct OrderDesk {
    router: Router,
    store: OrderStore,
    manager: AsyncManager,
    connections: Arc<OnceLock<ConnectionStats>>,
    /// The workers this process runs on a cluster (`--role all`); they stop with the last
    /// clone.
    workers: Option<Arc<Workers>>,
    /// What `GET /readyz` asks.
    ready: Readiness,
}

/// Which parts of a cluster instance run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    WebAndWorkers,
    Web,
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

    /// The order desk as one instance of a cluster on `broker`, running the HTTP side and the
    /// [`Workers`] (`--role all`): orders live in the broker's history and every instance
    /// applies it (see [`Replica`]); any number of instances on one broker share one desk.
    /// Each order is packed and shipped once, by whichever worker of the cluster takes its
    /// job; invoices are rendered by the cluster's workers (request/reply).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn clustered(config: DemoConfig, broker: Arc<dyn MessageBroker>) -> Self {
        Self::assemble(config, Some((broker, Part::WebAndWorkers)))
    }

    /// The HTTP side of a cluster instance only (`--role web`): fulfilment and invoices go to
    /// the workers of other processes (`--role worker`, [`Workers::standalone`]); with none
    /// running, an invoice is answered `503` with `Retry-After` at once.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn web(config: DemoConfig, broker: Arc<dyn MessageBroker>) -> Self {
        Self::assemble(config, Some((broker, Part::Web)))
    }

    fn assemble(config: DemoConfig, cluster: Option<(Arc<dyn MessageBroker>, Part)>) -> Self {
        // Before the manager takes its metric handles.
        ops::prometheus();
        let store = OrderStore::new();
        let mut workers = None;
        let mut clustered = None;
        let fulfilment = match cluster {
            None => Fulfilment::spawn(store.clone(), &config),
            Some((broker, part)) => {
                let replica = Replica::start(Arc::clone(&broker), store.clone());
                if part == Part::WebAndWorkers {
                    workers = Some(Arc::new(Workers::start(&broker, &replica, &config)));
                }
                let invoices = ReplyingTemplate::new(Arc::clone(&broker), INVOICE_QUEUE);
                clustered = Some((replica, invoices));
                Fulfilment::queued(ReplyingTemplate::new(broker, FULFILMENT_QUEUE))
            }
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
        // On a cluster `/api/metrics` adds `cluster`: the invoice requests, the long polls
        // waiting here and this process's workers.
        let mut cluster_metrics = None;
        if let Some((replica, invoices)) = clustered {
            cluster_metrics = Some((replica.clone(), invoices.clone(), workers.clone()));
            controller = controller.clustered(replica, invoices);
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
                    if let (Some((replica, invoices, workers)), Some(fields)) =
                        (&cluster_metrics, body.as_object_mut())
                    {
                        let workers = workers.as_ref().map(|workers| {
                            let (fulfilment, invoices) = workers.metrics();
                            serde_json::json!({ "fulfilment": fulfilment, "invoices": invoices })
                        });
                        fields.insert(
                            "cluster".to_owned(),
                            serde_json::json!({
                                "invoice_requests": invoices.metrics(),
                                "long_polls_waiting": replica.waiting(),
                                "workers": workers,
                            }),
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
            workers,
            ready: Readiness::always(),
        }
    }

    /// `GET /readyz` answers `503` with the reason while `ready` says so (default: always
    /// ready). On a cluster: [`Readiness::broker`].
    #[must_use]
    pub fn ready_when(mut self, ready: Readiness) -> Self {
        self.ready = ready;
        self
    }

    /// The workers this process runs on a cluster ([`clustered`](Self::clustered)).
    pub fn workers(&self) -> Option<&Workers> {
        self.workers.as_deref()
    }

    /// The routes, ready for `axum::serve`: the page, the API, and the operator's `/metrics`,
    /// `/healthz` and `/readyz` ([`ops`]).
    pub fn router(&self) -> Router {
        self.router.clone().merge(ops::routes(self.ready.clone()))
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
