//! [`OrdersController`]: the JSON API under `/api`.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_mvc::{
    cluster::ReplyingTemplate, prelude::*, AsyncError, DeferredResult, LastEventId, ReactiveStream,
    SseEmitter,
};
use axum::{
    extract::{Path, Query},
    http::{
        header::{ACCEPT, LOCATION},
        HeaderMap, HeaderName, StatusCode,
    },
    Json,
};
use serde::Deserialize;

use super::{
    config::{DEFAULT_INVOICE_HASH_ROUNDS, DEFAULT_INVOICE_TIMEOUT},
    receipt::{self, Receipt},
    replica::WRITE_TIMEOUT,
    ApiError, Fulfilment, Invoice, InvoiceAnswer, InvoiceJob, InvoiceTask, NewOrder, Order,
    OrderEvent, OrderLongPoll, OrderStore, Replica,
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

/// Whether `Accept` names a type a [`ReactiveStream`] is streamed as (rather than collected):
/// `text/event-stream`, `application/x-ndjson`, `application/jsonl` or `…+x-ndjson`, with a
/// quality above 0, in the first `Accept` header. The library streams if any such type is
/// acceptable there, so the feed does too.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .into_iter()
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts
                .filter_map(|param| param.trim().strip_prefix("q="))
                .any(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0));
            let streams = matches!(
                essence.as_str(),
                "text/event-stream" | "application/x-ndjson" | "application/jsonl"
            ) || essence.ends_with("+x-ndjson");
            streams && !refused
        })
}

impl NextQuery {
    fn timeout(&self) -> Duration {
        let millis = self.timeout_ms.unwrap_or(DEFAULT_POLL_TIMEOUT_MS);
        Duration::from_millis(millis.min(MAX_POLL_TIMEOUT_MS))
    }
}

/// The order desk's JSON API: place orders, read them, long-poll or stream their changes, post
/// status events, render invoices and download receipts.
#[derive(Debug, Clone)]
pub struct OrdersController {
    store: OrderStore,
    /// Set on a cluster: writes go through the broker, and the store is this instance's
    /// replica of it.
    replica: Option<Replica>,
    /// Set on a cluster: invoices are rendered by the workers of this queue.
    invoices: Option<ReplyingTemplate>,
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
            replica: None,
            invoices: None,
            fulfilment,
            invoice_timeout: DEFAULT_INVOICE_TIMEOUT,
            invoice_hash_rounds: DEFAULT_INVOICE_HASH_ROUNDS,
        }
    }

    /// On a cluster: places orders and appends statuses through `replica`, whose store this
    /// controller's is, and has invoices rendered by the workers of `invoices`' queue.
    #[must_use]
    pub fn clustered(mut self, replica: Replica, invoices: ReplyingTemplate) -> Self {
        self.replica = Some(replica);
        self.invoices = Some(invoices);
        self
    }

    /// Before a lookup: on a cluster, catches up with it (by `deadline`) if this instance does
    /// not know order `id` yet; `503` if it does not and cannot read the broker.
    async fn ensure(&self, id: &str, deadline: tokio::time::Instant) -> Result<(), ApiError> {
        match &self.replica {
            Some(replica) => replica
                .knows(id, deadline)
                .await
                .map(|_| ())
                .map_err(broker_unavailable),
            None => Ok(()),
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
    pub async fn create(
        &self,
        Json(new_order): Json<NewOrder>,
    ) -> Result<Created<Order>, ApiError> {
        let item = new_order.validated()?;
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let order = match &self.replica {
            None => self.store.create(item),
            Some(replica) => replica
                .create(item, deadline)
                .await
                .map_err(broker_unavailable)?,
        };
        tracing::info!(id = %order.id, item = %order.item, "order placed");
        self.fulfilment.submit(&order.id);
        let location = format!("/api/orders/{}", order.id);
        Ok((StatusCode::CREATED, [(LOCATION, location)], Json(order)))
    }

    /// `GET /api/orders/feed`: with an `Accept` that streams (`application/x-ndjson`, and any
    /// other type the library streams a [`ReactiveStream`] as), every change of any order from
    /// now on, live; otherwise the current orders as a JSON array, sorted by id as a number.
    /// A static segment: axum matches it before `/orders/{id}`.
    #[get("/orders/feed")]
    pub fn feed(&self, headers: HeaderMap) -> ReactiveStream {
        if wants_stream(&headers) {
            ReactiveStream::new(self.store.changes())
        } else {
            ReactiveStream::new(futures::stream::iter(self.store.all()))
        }
    }

    /// `GET /api/orders/{id}`: the order, or `404`.
    #[get("/orders/{id}")]
    pub async fn show(&self, Path(id): Path<String>) -> Result<Json<Order>, ApiError> {
        self.ensure(&id, tokio::time::Instant::now() + WRITE_TIMEOUT)
            .await?;
        self.store.get(&id).map(Json).ok_or(ApiError::NotFound(id))
    }

    /// `GET /api/orders/{id}/next?after=V&timeout_ms=T`: a long poll. The order once its
    /// version is greater than `V`, or `304 Not Modified` after `T` ms; `404` for an unknown
    /// order, `400` when `V` or `T` is not a number. On a cluster the poll waits in the
    /// cluster's registry, completed by whichever instance makes the change; `T` counts from
    /// the request's arrival, time spent waiting for the broker included, and a lagging
    /// instance never answers a version of `V` or less.
    #[get("/orders/{id}/next")]
    pub async fn next(
        &self,
        Path(id): Path<String>,
        Query(query): Query<NextQuery>,
    ) -> Result<OrderLongPoll, ApiError> {
        let after = query.after.unwrap_or(0);
        let deadline = tokio::time::Instant::now() + query.timeout();
        let poll = match &self.replica {
            None => self
                .store
                .watch(&id, after, query.timeout())
                .map(OrderLongPoll::Local),
            Some(replica) => replica
                .watch(&id, after, deadline)
                .await
                .map_err(broker_unavailable)?
                .map(OrderLongPoll::Cluster),
        };
        poll.ok_or(ApiError::NotFound(id))
    }

    /// `GET /api/orders/{id}/stream`: the order's changes as Server-Sent Events (`id:` the
    /// version, `event: status`, data the order JSON). Replays the changes after `Last-Event-ID`
    /// — all of them without one — then streams new ones; `404` for an unknown order. On a
    /// cluster an id this instance has not applied yet (the client saw it on another) is lag,
    /// not the future: the instance reads the broker's history first, and replays only what
    /// follows it (`503` with `Retry-After` if the broker cannot be read).
    #[get("/orders/{id}/stream")]
    pub async fn stream(
        &self,
        Path(id): Path<String>,
        last_event_id: Option<LastEventId>,
    ) -> Result<SseEmitter, ApiError> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        self.ensure(&id, deadline).await?;
        let last = last_event_id.as_ref().map(LastEventId::as_str);
        let seen = last.and_then(|last| last.trim().parse::<u64>().ok());
        if let (Some(replica), Some(version)) = (&self.replica, seen) {
            replica
                .caught_up_to(&id, version, deadline)
                .await
                .map_err(broker_unavailable)?;
        }
        self.store
            .subscribe(&id, last)
            .ok_or(ApiError::NotFound(id))
    }

    /// `GET /api/orders/{id}/receipt`: the order's plain-text receipt as a download, written by
    /// a [`StreamingResponseBody`](async_mvc::StreamingResponseBody); `404` for an unknown
    /// order.
    #[get("/orders/{id}/receipt")]
    pub async fn receipt(&self, Path(id): Path<String>) -> Result<Receipt, ApiError> {
        self.ensure(&id, tokio::time::Instant::now() + WRITE_TIMEOUT)
            .await?;
        let (order, history) = self.store.history(&id).ok_or(ApiError::NotFound(id))?;
        Ok(receipt::download(order, history))
    }

    /// `POST /api/orders/{id}/events`: appends a status, completing every waiting long poll of
    /// the order. `200` with the updated order; `404` for an unknown order, `422` for a blank or
    /// over-long status.
    #[post("/orders/{id}/events")]
    pub async fn post_event(
        &self,
        Path(id): Path<String>,
        Json(event): Json<OrderEvent>,
    ) -> Result<Json<Order>, ApiError> {
        let status = event.validated()?;
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let order = match &self.replica {
            None => self.store.append(&id, status),
            Some(replica) => replica
                .append(&id, status, deadline)
                .await
                .map_err(broker_unavailable)?,
        };
        order.map(Json).ok_or(ApiError::NotFound(id))
    }

    /// `POST /api/orders/{id}/invoice`: renders the order's invoice and its SHA-256 on the
    /// executor, as a [`WebAsyncTask`] with the configured timeout. `200` with the [`Invoice`];
    /// `404` for an unknown order (checked before any work is submitted); `503` with
    /// `Retry-After` when the executor is busy, `503` when the timeout fires (the rendering
    /// loop is cancelled). On a cluster a worker renders it (request/reply through the
    /// broker): the same answers, and `503` with `Retry-After` at once when no worker runs;
    /// the timeout counts from the request's arrival, time spent waiting for the broker
    /// included.
    #[post("/orders/{id}/invoice")]
    pub async fn invoice(&self, Path(id): Path<String>) -> Result<InvoiceAnswer, ApiError> {
        let timeout = self.invoice_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        self.ensure(&id, deadline).await?;
        let order = self.store.get(&id).ok_or(ApiError::NotFound(id))?;
        if let Some(invoices) = &self.invoices {
            let job = InvoiceJob {
                id: order.id.clone(),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply: DeferredResult<Invoice, ApiError> =
                invoices.send_and_receive(&job, left).await;
            let (late, id) = (reply.clone(), order.id);
            reply.on_timeout(move || {
                late.set_error_result(ApiError::Unavailable(format!(
                    "the invoice of order `{id}` was not ready within {} ms",
                    timeout.as_millis()
                )));
            });
            return Ok(InvoiceAnswer::Cluster(reply));
        }
        let rounds = self.invoice_hash_rounds;
        let (timed_out_id, failed_id, completed_id) =
            (order.id.clone(), order.id.clone(), order.id.clone());
        // Set by `on_error` when the task was refused (the pool full, the server shutting
        // down): `on_completion` then logs nothing, the rejection is logged already.
        let rejected = Arc::new(AtomicBool::new(false));
        let refused = Arc::clone(&rejected);
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
        .on_error(move |error| {
            match error {
                AsyncError::Rejected { .. }
                | AsyncError::Overloaded { .. }
                | AsyncError::ShuttingDown => {
                    refused.store(true, Ordering::Relaxed);
                    tracing::warn!(id = %failed_id, reason = %error, "invoice request rejected");
                }
                other => tracing::warn!(id = %failed_id, error = %other, "invoice request failed"),
            }
            // The library's answer stands: `503` + `Retry-After`, `500`, or nothing for a
            // client that is gone.
            None
        })
        .on_completion(move || {
            if rejected.load(Ordering::Relaxed) {
                return;
            }
            tracing::info!(
                id = %completed_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "invoice request completed"
            );
        });
        Ok(InvoiceAnswer::Local(task))
    }
}

/// The broker refused a write: `503`, as a full executor is.
fn broker_unavailable(error: async_mvc::cluster::BrokerError) -> ApiError {
    ApiError::Unavailable(error.to_string())
}
