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
mod order;
mod page;
mod store;
mod worker;

pub use config::DemoConfig;
pub use controller::{NextQuery, OrdersController};
pub use desk::{app, OrderDesk};
pub use error::ApiError;
pub use order::{NewOrder, Order, OrderEvent, MAX_ITEM_CHARS, MAX_STATUS_CHARS};
pub use page::INDEX_HTML;
pub use store::{OrderPoll, OrderStore};
pub use worker::Fulfilment;
