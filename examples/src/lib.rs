//! Demo servers for async-mvc.
//!
//! [`order_desk`]: an order desk whose clients long-poll for status changes that another task
//! (a fulfilment worker) produces — Spring MVC's `DeferredResult` story, on axum — and whose
//! invoices are rendered by blocking work on a bounded executor (`WebAsyncTask`). Run it with
//! `cargo run --release -p async-mvc-examples --bin demo`.
//!
//! [`soak`]: the soak test ("No leaks"): every kind of async request, many times over, with
//! clients that leave mid-wait and mid-stream; after each round nothing may be left in flight.
//! Run it with `cargo run --release -p async-mvc-examples --bin soak`.
//!
//! [`soak_cluster`]: the same idea across a real cluster (Redis, two web and two worker
//! processes) through one kill of each kind: `soak -- --cluster`.

//!
//! [`redis_server`] and [`processes`]: a real `redis-server` and demo processes by role, for
//! the cluster's fault tests and `soak --cluster`.

pub mod cli;
pub mod demo;
pub mod ops;
pub mod order_desk;
#[cfg(feature = "otel")]
pub mod otel;
pub mod processes;
pub mod redis_server;
pub mod soak;
pub mod soak_cluster;
pub mod sse_reader;
