//! [`OrdersController`]: the JSON API under `/api`.

use std::time::{Duration, Instant};

use async_mvc::prelude::*;
use axum::{
    extract::{Path, Query},
    http::{header::LOCATION, HeaderName, StatusCode},
    Json,
};
use serde::Deserialize;

use super::{
    config::{DEFAULT_INVOICE_HASH_ROUNDS, DEFAULT_INVOICE_TIMEOUT},
    ApiError, Fulfilment, Invoice, InvoiceTask, NewOrder, Order, OrderEvent, OrderPoll, OrderStore,
};

/// The long poll's timeout when the client names none: 30 s.
const DEFAULT_POLL_TIMEOUT_MS: u64 = 30_000;

/// The longest long poll a client may ask for: 5 minutes.
const MAX_POLL_TIMEOUT_MS: u64 = 300_000;

/// A `201 Created` response: the new resource and its `Location`.
type Created<T> = (StatusCode, [(HeaderName, String); 1], Json<T>);

/// The query of `GET /api/orders/{id}/next`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct NextQuery {
    /// The version the client has; it waits for a greater one. Absent: `0`, so the current
    /// order is returned at once.
    pub after: Option<u64>,
    /// How long to wait before answering `304 Not Modified`, in ms. Absent: 30 000; at most
    /// 300 000.
    pub timeout_ms: Option<u64>,
}

impl NextQuery {
    fn timeout(&self) -> Duration {
        let millis = self.timeout_ms.unwrap_or(DEFAULT_POLL_TIMEOUT_MS);
        Duration::from_millis(millis.min(MAX_POLL_TIMEOUT_MS))
    }
}

/// The order desk's JSON API: place orders, read them, long-poll for their next version, post
/// status events and render invoices.
#[derive(Debug, Clone)]
pub struct OrdersController {
    store: OrderStore,
    fulfilment: Fulfilment,
    invoice_timeout: Duration,
    invoice_hash_rounds: u32,
}

impl OrdersController {
    /// A controller over `store` that hands new orders to `fulfilment`. Invoices use the
    /// defaults of [`DemoConfig`](super::DemoConfig) until set otherwise.
    pub fn new(store: OrderStore, fulfilment: Fulfilment) -> Self {
        OrdersController {
            store,
            fulfilment,
            invoice_timeout: DEFAULT_INVOICE_TIMEOUT,
            invoice_hash_rounds: DEFAULT_INVOICE_HASH_ROUNDS,
        }
    }

    /// How long rendering an invoice may take before the request answers `503`.
    #[must_use]
    pub fn invoice_timeout(mut self, timeout: Duration) -> Self {
        self.invoice_timeout = timeout;
        self
    }

    /// How many extra SHA-256 rounds an invoice's seal takes; see [`Invoice::render`].
    #[must_use]
    pub fn invoice_hash_rounds(mut self, rounds: u32) -> Self {
        self.invoice_hash_rounds = rounds;
        self
    }
}

#[async_controller(path = "/api")]
impl OrdersController {
    /// `POST /api/orders`: places an order and hands it to the fulfilment worker. `201` with
    /// the order and its `Location`; `422` for a blank or over-long item.
    #[post("/orders")]
    pub fn create(&self, Json(new_order): Json<NewOrder>) -> Result<Created<Order>, ApiError> {
        let order = self.store.create(new_order.validated()?);
        tracing::info!(id = %order.id, item = %order.item, "order placed");
        self.fulfilment.submit(&order.id);
        let location = format!("/api/orders/{}", order.id);
        Ok((StatusCode::CREATED, [(LOCATION, location)], Json(order)))
    }

    /// `GET /api/orders/{id}`: the order, or `404`.
    #[get("/orders/{id}")]
    pub fn show(&self, Path(id): Path<String>) -> Result<Json<Order>, ApiError> {
        self.store.get(&id).map(Json).ok_or(ApiError::NotFound(id))
    }

    /// `GET /api/orders/{id}/next?after=V&timeout_ms=T`: a long poll. The order once its
    /// version is greater than `V`, or `304 Not Modified` after `T` ms; `404` for an unknown
    /// order, `400` when `V` or `T` is not a number.
    #[get("/orders/{id}/next")]
    pub fn next(
        &self,
        Path(id): Path<String>,
        Query(query): Query<NextQuery>,
    ) -> Result<OrderPoll, ApiError> {
        let after = query.after.unwrap_or(0);
        self.store
            .watch(&id, after, query.timeout())
            .ok_or(ApiError::NotFound(id))
    }

    /// `POST /api/orders/{id}/events`: appends a status, completing every waiting long poll of
    /// the order. `200` with the updated order; `404` for an unknown order, `422` for a blank or
    /// over-long status.
    #[post("/orders/{id}/events")]
    pub fn post_event(
        &self,
        Path(id): Path<String>,
        Json(event): Json<OrderEvent>,
    ) -> Result<Json<Order>, ApiError> {
        let status = event.validated()?;
        self.store
            .append(&id, status)
            .map(Json)
            .ok_or(ApiError::NotFound(id))
    }

    /// `POST /api/orders/{id}/invoice`: renders the order's invoice and its SHA-256 on the
    /// executor, as a [`WebAsyncTask`] with the configured timeout. `200` with the [`Invoice`];
    /// `404` for an unknown order (checked before any work is submitted); `503` with
    /// `Retry-After` when the executor is busy, `503` when the timeout fires (the rendering
    /// loop is cancelled).
    #[post("/orders/{id}/invoice")]
    pub fn invoice(&self, Path(id): Path<String>) -> Result<InvoiceTask, ApiError> {
        let order = self.store.get(&id).ok_or(ApiError::NotFound(id))?;
        let rounds = self.invoice_hash_rounds;
        let timeout = self.invoice_timeout;
        let (timed_out_id, completed_id) = (order.id.clone(), order.id.clone());
        let started = Instant::now();
        let task = InvoiceTask::cancellable(move |cancelled| {
            Invoice::render(&order, rounds, || cancelled.is_cancelled())
                .map(Json)
                // Only after a timeout or a disconnect: nobody receives this value.
                .ok_or_else(|| ApiError::Unavailable("invoice rendering cancelled".to_owned()))
        })
        .timeout(timeout)
        .on_timeout(move || {
            Err(ApiError::Unavailable(format!(
                "the invoice of order `{timed_out_id}` was not ready within {} ms",
                timeout.as_millis()
            )))
        })
        .on_completion(move || {
            tracing::info!(
                id = %completed_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "invoice request completed"
            );
        });
        Ok(task)
    }
}
