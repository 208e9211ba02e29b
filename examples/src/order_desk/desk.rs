//! [`OrderDesk`]: the assembled application.

use async_mvc::{AsyncManager, RouterExt};
use axum::{routing::get, Json, Router};

use super::{page, DemoConfig, Fulfilment, OrderStore, OrdersController};

/// The order desk's router together with handles tests and operators may want: the store, the
/// async manager (for its metrics) and [`drop_streams`](Self::drop_streams).
#[derive(Debug, Clone)]
pub struct OrderDesk {
    router: Router,
    store: OrderStore,
    manager: AsyncManager,
}

impl OrderDesk {
    /// Builds the application and starts its fulfilment worker.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the worker is a tokio task).
    pub fn new(config: DemoConfig) -> Self {
        let store = OrderStore::new();
        let fulfilment = Fulfilment::spawn(store.clone(), &config);
        let manager = AsyncManager::new(
            config
                .async_config
                .clone()
                .task_executor(config.task_executor.clone()),
        );
        let controller = OrdersController::new(store.clone(), fulfilment)
            .invoice_timeout(config.invoice_timeout)
            .invoice_hash_rounds(config.invoice_hash_rounds);
        let metrics = manager.clone();
        let router = Router::new()
            .route("/", get(page::index))
            .route(
                "/api/metrics",
                get(move || std::future::ready(Json(metrics.metrics()))),
            )
            .controller(controller)
            .async_support(manager.clone());
        OrderDesk {
            router,
            store,
            manager,
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
