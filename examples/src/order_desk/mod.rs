//! The order desk: a request waits while another part of the application does the work.
//!
//! - `GET /` — a one-page UI that places an order and watches it change live.
//! - `POST /api/orders` with `{"item": "..."}` — `201` and the new order (`status: "placed"`,
//!   `version: 1`).
//! - `GET /api/orders/{id}` — `200` and the order, or `404`.
//! - `GET /api/orders/{id}/next?after=V&timeout_ms=T` — a long poll returning a
//!   [`DeferredResult`](async_mvc::DeferredResult): `200` and the order as soon as its version
//!   is greater than `V` (at once if it already is), or `304 Not Modified` after `T` ms. `after`
//!   defaults to `0` (answers at once), `timeout_ms` to 30 000 (at most 300 000).
//! - `POST /api/orders/{id}/events` with `{"status": "paid"}` — appends a status (version + 1),
//!   answers `200` and the order, and completes every waiting long poll of that order.
//! - `POST /api/orders/{id}/invoice` (no body) — a [`WebAsyncTask`](async_mvc::WebAsyncTask):
//!   renders the order's invoice as text and hashes it on the demo's bounded executor (threads
//!   `invoice-…`, see [`DemoConfig::invoice_executor`]), never on the server's runtime. Answers
//!   - `200` and `{"id": "<order id>", "version": <order version>, "status": "<order status>",
//!     "invoice": "<the rendered text>", "sha256": "<64 lowercase hex digits>"}`, where `sha256`
//!     is the SHA-256 of the UTF-8 bytes of `invoice`; `id`, `version` and `status` are those of
//!     the order when it was read, and `invoice` names the order, its item, its line items and
//!     totals. With the same settings, the same order version always renders the same
//!     text ([`Invoice`]);
//!   - `404` and ``{"error": "no order with id `ID`"}`` for an unknown order, checked before any
//!     work is submitted;
//!   - `503` with `Retry-After: <seconds>` (and the library's plain-text body) when the executor
//!     is busy and its queue full;
//!   - `503` and ``{"error": "the invoice of order `ID` was not ready within T ms"}`` when the
//!     timeout ([`DemoConfig::invoice_timeout`], default 5 s) fires first; the rendering loop is
//!     cancelled.
//!
//! A background [`Fulfilment`] worker, fed through a channel as if through a message broker,
//! moves every new order to `packed` and then `shipped`, completing long polls from its own
//! task.
//!
//! ```no_run
//! use async_mvc_examples::order_desk::{self, DemoConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, order_desk::app(DemoConfig::default())).await
//! # }
//! ```

mod config;
mod controller;
mod desk;
mod error;
mod invoice;
mod order;
mod page;
mod store;
mod worker;

pub use config::{DemoConfig, DEFAULT_INVOICE_HASH_ROUNDS, DEFAULT_INVOICE_TIMEOUT};
pub use controller::{NextQuery, OrdersController};
pub use desk::{app, OrderDesk};
pub use error::ApiError;
pub use invoice::{Invoice, InvoiceTask};
pub use order::{NewOrder, Order, OrderEvent, MAX_ITEM_CHARS, MAX_STATUS_CHARS};
pub use page::INDEX_HTML;
pub use store::{OrderPoll, OrderStore};
pub use worker::Fulfilment;
