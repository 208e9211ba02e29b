//! A test kit for async-mvc controllers: Spring's MockMvc `asyncDispatch` and WebTestClient for
//! axum, with what neither offers — SSE as parsed events, reconnects with `Last-Event-ID`, and
//! 30-second timeouts tested in milliseconds.
//!
//! - [`TestClient`]: requests through the router itself (tower's `oneshot`: the same manager
//!   and layers, no socket) or, with [`TestClient::serve`], the same API over real loopback
//!   HTTP. A [`TestResponse`] has the status, the headers and the exact body bytes.
//! - [`Pending`]: a request started in the background — whether async processing started
//!   (Spring's `asyncStarted()`), then its response once complete.
//! - Virtual time: in-process requests run under paused tokio time
//!   (`#[tokio::test(start_paused = true)]`): default and per-result timeouts, heartbeats and
//!   retention TTLs fire as soon as nothing else can run — exactly, and with no wall-clock wait.
//! - [`SseProbe`]: an SSE response read as WHATWG events (parsed by `sse-reference`, the
//!   project's independent parser): [`next_event`](SseProbe::next_event),
//!   [`events_until`](SseProbe::events_until), [`disconnect`](SseProbe::disconnect),
//!   [`reconnect`](SseProbe::reconnect) with the last event ID.
//! - [`ChunkProbe`]: any streamed body by chunk, or as NDJSON lines.
//! - [`capture`]: what an `SseEmitter` or `ResponseBodyEmitter` sends, without HTTP.
//! - [`TestCluster`]: `n` instances (each its own router and manager) on one in-memory broker,
//!   each through a [`FaultyBroker`] — messages lost or late, acknowledgements failing, one
//!   instance partitioned, the broker down and back ([`Faults`]); or on brokers of the test's
//!   choosing (a real Redis).
//!
//! # A 30-second timeout in milliseconds
//!
//! ```
//! use std::time::Duration;
//! use async_mvc::{AsyncConfig, DeferredResult};
//! use async_mvc_test::TestClient;
//! use axum::{http::StatusCode, routing::get, Router};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A long poll that answers 304 when nothing happened for 30 s.
//! let routes = Router::new().route(
//!     "/next",
//!     get(|| async {
//!         DeferredResult::<StatusCode>::with_timeout_result(
//!             Duration::from_secs(30),
//!             StatusCode::NOT_MODIFIED,
//!         )
//!     }),
//! );
//! let client = TestClient::with_config(routes, AsyncConfig::new());
//! let started = std::time::Instant::now();
//! let poll = client.get("/next").start();
//! assert!(poll.async_started().await);
//! let answer = poll.response().await;
//! assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
//! assert!(started.elapsed() < Duration::from_secs(1), "virtual time, not 30 s");
//! # }
//! ```
//!
//! # Compared with
//!
//! | | async-mvc-test | Spring MockMvc | Spring WebTestClient | `axum-test` |
//! |---|---|---|---|---|
//! | requests without a socket | yes (`oneshot`) | yes | with `bindToController` | yes |
//! | the same API over real HTTP | [`TestClient::serve`] | no | yes | yes |
//! | `asyncStarted()`, then the result | [`Pending`] | `asyncStarted`, `asyncDispatch` | no | no |
//! | timeouts without waiting | paused tokio time | no (real time) | virtual time for Reactor only | no |
//! | SSE as parsed events | [`SseProbe`] | no (spring-framework #33746 declined) | `ServerSentEvent` flux | no |
//! | an infinite stream | read what you need, then [`disconnect`](SseProbe::disconnect) | no (#32687) | with `take` | no |
//! | reconnect with `Last-Event-ID` | [`SseProbe::reconnect`] | no | by hand | no |
//! | an emitter without HTTP | [`capture`] | no | no | no |
//! | a cluster of instances, faults injected | [`TestCluster`], [`FaultyBroker`] | no | no | no |

mod client;
mod cluster;
mod faulty;
mod probe;
mod response;

pub use client::{capture, TestClient, TestRequest};
pub use cluster::TestCluster;
pub use faulty::{Faults, FaultyBroker};
pub use probe::{ChunkProbe, SseEvent, SseProbe};
pub use response::{Pending, TestResponse};
