//! The order desk: a request waits while another part of the application does the work.
//!
//! - `GET /` — a one-page UI that places an order and watches it change live (an `EventSource`
//!   on the order's stream; long polling where `EventSource` is missing), with a "Download
//!   receipt" link. `/#order=ID` follows an existing order.
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
//! - `GET /api/orders/{id}/stream` — Server-Sent Events of the order's changes
//!   (`Content-Type: text/event-stream`), one event per version, encoded as
//!   `id:<version>\nevent:status\ndata:<order JSON>\n\n` where the order JSON has the same
//!   fields as the other routes (`{"id":"1","item":"teapot","status":"packed","version":2}`).
//!   Each order has its own [`SseBroadcaster`](async_mvc::SseBroadcaster), created with the
//!   order, whose replay buffer keeps its last [`STREAM_REPLAY`] (1024) events — the creation
//!   (version 1) included. The stream first replays, then sends every later change live, with
//!   no gap and no duplicate:
//!   - with `Last-Event-ID: V` where `V` is a version in the buffer, every change after `V`
//!     (nothing if `V` is the current version);
//!   - without `Last-Event-ID`, or with any other value (`0`, not a number, a version the order
//!     never reached, one older than the buffer), every change the buffer holds — the order's
//!     full history for any order with at most 1024 changes — so a fresh page shows the
//!     current state.
//!
//!   The stream has no timeout and gets a `:` heartbeat comment after 15 s idle; it stays open
//!   after `shipped` (events may still be posted). `404` and the JSON error for an unknown
//!   order. Every change — `POST …/events` and the fulfilment worker alike — is published.
//!   [`OrderDesk::drop_streams`] ends the open streams without closing the broadcasters.
//! - `GET /api/orders/feed` — with `Accept: application/x-ndjson`, a live stream
//!   (`Content-Type: application/x-ndjson`) of one line per change of any order from the moment
//!   of the request on (new orders as `version: 1`), each the order JSON; a reader more than
//!   [`FEED_CAPACITY`] changes behind skips the ones it missed. It never ends by itself. Other
//!   streaming types the library negotiates from `Accept` (`application/jsonl`,
//!   `…+x-ndjson`, `text/event-stream` as data-only events) stream live as well. With
//!   `Accept: application/json`, any other `Accept`, or none: `200` and the current orders as
//!   a JSON array (`Content-Type: application/json`, `[]` when there are none), sorted by id as
//!   a number. `feed` is a static segment: it is never taken for an order id.
//! - `GET /api/orders/{id}/receipt` — `200`, `Content-Type: text/plain; charset=utf-8`,
//!   `Content-Disposition: attachment; filename="receipt-<id>.txt"`, and a plain-text receipt
//!   streamed by a [`StreamingResponseBody`](async_mvc::StreamingResponseBody)
//!   ([`render_receipt`]): the order's id, item, status and version, then each status change
//!   with its version (`  version 2  packed`). `404` and the JSON error for an unknown order.
//!
//! A background [`Fulfilment`] worker, fed through a channel as if through a message broker,
//! moves every new order to `packed` and then `shipped`, completing long polls and publishing
//! to the streams from its own task.
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
mod jobs;
mod long_poll;
mod order;
mod page;
mod receipt;
mod replica;
mod store;
mod worker;

pub use config::{DemoConfig, DEFAULT_INVOICE_HASH_ROUNDS, DEFAULT_INVOICE_TIMEOUT};
pub use controller::{NextQuery, OrdersController};
pub use desk::{app, OrderDesk};
pub use error::ApiError;
pub use invoice::{Invoice, InvoiceAnswer, InvoiceTask};
pub use jobs::{FulfilJob, InvoiceJob, Workers, FULFILMENT_QUEUE, INVOICE_QUEUE};
pub use long_poll::{OrderLongPoll, Polled};
pub use order::{NewOrder, Order, OrderEvent, MAX_ITEM_CHARS, MAX_STATUS_CHARS};
pub use page::INDEX_HTML;
pub use receipt::{render_receipt, Receipt};
pub use replica::{Replica, WRITE_TIMEOUT};
pub use store::{Change, OrderPoll, OrderStore, FEED_CAPACITY, STREAM_REPLAY};
pub use worker::{Fulfilment, QUEUE_PATIENCE};
