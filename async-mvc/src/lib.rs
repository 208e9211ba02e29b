//! Spring MVC's asynchronous request processing for [axum].
//!
//! A handler returns an async value at once; the request stays open until the value is ready,
//! while no thread waits for it. One [`AsyncManager`] per router (Spring's `WebAsyncManager`)
//! applies timeouts, runs lifecycle callbacks in Spring's order, notices clients that disconnect
//! and counts what is in flight.
//!
//! | Spring MVC | async-mvc |
//! |---|---|
//! | `@Controller` + `@RequestMapping` | [`#[async_controller]`](macro@async_controller) + [`#[get]`](macro@get), … |
//! | `DeferredResult<T>` | [`DeferredResult<T, E>`](DeferredResult) |
//! | `Callable<T>`, `WebAsyncTask<T>` | [`Callable<T>`](Callable), [`WebAsyncTask<T>`](WebAsyncTask) |
//! | `ThreadPoolTaskExecutor` | [`AsyncTaskExecutor`] (bounded: rejects with `503` + `Retry-After`) |
//! | `CallableProcessingInterceptor`, `DeferredResultProcessingInterceptor` | [`CallableProcessingInterceptor`], [`DeferredResultProcessingInterceptor`] |
//! | `ResponseBodyEmitter` | [`ResponseBodyEmitter`] (bounded, with backpressure) |
//! | `SseEmitter`, `SseEmitter.event()` | [`SseEmitter`], [`SseEvent::builder`] (+ heartbeat, [`LastEventId`]) |
//! | — (beyond Spring) | [`SseBroadcaster`]: fan-out with replay after `Last-Event-ID` |
//! | `StreamingResponseBody` | [`StreamingResponseBody`] (writes to a tokio `AsyncWrite`) |
//! | `Flux<T>`, `Mono<T>` return values | [`ReactiveStream`] (SSE, NDJSON, text or a JSON array, negotiated), [`ReactiveFuture`] |
//! | `Flux<ServerSentEvent<T>>` | [`ReactiveStream::events`] |
//! | `WebAsyncManager` | [`AsyncManager`] |
//! | `AsyncSupportConfigurer` | [`AsyncConfig`] |
//! | `AsyncRequestTimeoutException` | [`AsyncError::Timeout`] (`503`) |
//!
//! # Which type do I return?
//!
//! For someone who does not know Spring, one line each, with the axum-native alternative:
//!
//! - [`DeferredResult`]: someone else answers later — another request, a worker, a message —
//!   as in long polling; keep a clone and call [`set_result`](DeferredResult::set_result).
//!   (axum: a `oneshot` channel and a timeout, by hand.)
//! - [`Callable`]: blocking work (CPU, a blocking client) on the bounded
//!   [`AsyncTaskExecutor`], `503` + `Retry-After` when it is full. (axum:
//!   `tokio::task::spawn_blocking`, unbounded.)
//! - [`WebAsyncTask`]: the same with its own timeout, executor and callbacks.
//! - [`ReactiveFuture`]: one async value under the manager's timeout and counters. (axum: an
//!   `async fn` handler, with neither.)
//! - [`ReactiveStream`]: a stream of values written as SSE, NDJSON, text or a JSON array by
//!   the preset `Content-Type`, `produces` or `Accept`; [`ReactiveStream::events`] for ready-made
//!   SSE events. (axum: [`Sse`](axum::response::sse::Sse), or `Body::from_stream`.)
//! - [`SseEmitter`]: push SSE events from anywhere, with heartbeat and [`LastEventId`].
//!   (axum: `Sse` over a channel you manage.)
//! - [`SseBroadcaster`]: one event to many clients, encoded once, with replay after
//!   `Last-Event-ID`. (axum: a `broadcast` channel and `Sse`, no replay.)
//! - [`ResponseBodyEmitter`]: push raw chunks in any format, with backpressure. (axum:
//!   `Body::from_stream` over a channel.)
//! - [`StreamingResponseBody`]: write a large body to an `AsyncWrite`, e.g. a download.
//!   (axum: `Body::from_stream` over a `ReaderStream`.)
//!
//! Serve the router with [`serve`] — header read, keep-alive and send timeouts, a connection
//! limit that sheds, HTTP/1.1 and h2c — or `axum::serve(listener, app.into_make_service())`.
//! On many instances, [`cluster`] keys long polls and SSE topics over a message broker
//! (in memory, or Redis with `async-mvc-redis`).
//!
//! # Example
//!
//! ```
//! use std::{collections::HashMap, sync::Mutex, time::Duration};
//!
//! use async_mvc::prelude::*;
//! use axum::{extract::Path, http::StatusCode, Router};
//!
//! #[derive(Default)]
//! struct Quotes {
//!     waiting: Mutex<HashMap<String, Vec<DeferredResult<String>>>>,
//! }
//!
//! #[async_controller(path = "/quotes")]
//! impl Quotes {
//!     /// Long poll: answers when a quote for `symbol` is published, or `204` after 30 s.
//!     #[get("/{symbol}")]
//!     fn next(&self, Path(symbol): Path<String>) -> DeferredResult<String> {
//!         let result = DeferredResult::new();
//!         result.on_timeout({
//!             let result = result.clone();
//!             move || { result.set_error_result(StatusCode::NO_CONTENT.into_response()); }
//!         });
//!         self.waiting.lock().unwrap().entry(symbol).or_default().push(result.clone());
//!         result
//!     }
//!
//!     /// Publishes a quote to every waiting client.
//!     #[post("/{symbol}")]
//!     fn publish(&self, Path(symbol): Path<String>, price: String) -> StatusCode {
//!         for waiting in self.waiting.lock().unwrap().remove(&symbol).unwrap_or_default() {
//!             waiting.set_result(price.clone());
//!         }
//!         StatusCode::NO_CONTENT
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .controller(Quotes::default())
//!     .async_support(AsyncConfig::new().default_timeout(Duration::from_secs(30)));
//! # use axum::response::IntoResponse;
//! ```
//!
//! # Feature flags
//!
//! - `macros` (default): [`async_controller`](macro@async_controller) and the route attributes.
#![deny(missing_docs)]
// `Result<_, Response>` is axum's idiom for "fail with this response", used by interceptor hooks;
// they are off the hot path, so boxing the `Response` would buy nothing.
#![allow(clippy::result_large_err)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod config;
mod context;
mod controller;
mod deferred_result;
mod emitter;
mod error;
mod executor;
mod guard;
mod inherited;
mod interceptor;
mod layer;
mod limit;
mod manager;
mod observed;
mod serve;
mod sse;
mod task;
mod work;

#[doc(hidden)]
pub mod __private;
pub mod cluster;
pub mod telemetry;

pub use config::{AsyncConfig, DEFAULT_RETRY_AFTER, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT};
pub use controller::{Controller, RouterExt};
pub use deferred_result::{DeferredResult, DeferredResultFuture};
pub use emitter::{
    BodyWriter, EmitterBuilder, EmitterError, ReactiveFuture, ReactiveStream, ResponseBodyEmitter,
    SseBroadcaster, SseEmitter, SseEmitterBuilder, StreamingResponseBody, DEFAULT_BUFFER_BYTES,
    DEFAULT_CAPACITY, DEFAULT_EMITTER_SEND_TIMEOUT, DEFAULT_HEARTBEAT, DEFAULT_REPLAY,
    DEFAULT_SLOW_SUBSCRIBER_TIMEOUT,
};
pub use error::AsyncError;
pub use executor::{
    AsyncTaskExecutor, AsyncTaskExecutorBuilder, ExecutorConfigError, ExecutorMetrics, Rejected,
    TaskHandle, TaskPanicked,
};
pub use interceptor::{
    AsyncHandlerInterceptor, AsyncRequest, CallableProcessingInterceptor,
    DeferredResultProcessingInterceptor, HookResult,
};
pub use layer::{AsyncSupport, AsyncSupportLayer, ResponseFuture};
pub use limit::{AsyncLimit, AsyncLimitLayer, LimitFuture};
pub use manager::{AsyncManager, AsyncMetrics};
pub use serve::{
    default_max_connections, serve, ConnectionMetrics, ConnectionStats, Serve,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT, DEFAULT_MAX_KEEP_ALIVE_REQUESTS,
    DEFAULT_SEND_TIMEOUT, MIN_RESERVED_FILES,
};
pub use sse::{LastEventId, SseEvent, SseEventBuilder, SseEventError};
pub use task::{Callable, WebAsyncTask};
pub use tokio_util::sync::CancellationToken;

#[cfg(feature = "macros")]
pub use async_mvc_macros::{async_controller, delete, get, patch, post, put, request_mapping};

/// The items most applications need: `use async_mvc::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "macros")]
    pub use crate::{async_controller, delete, get, patch, post, put, request_mapping};
    pub use crate::{
        AsyncConfig, AsyncError, AsyncManager, Callable, Controller, DeferredResult, LastEventId,
        ReactiveStream, ResponseBodyEmitter, RouterExt, SseBroadcaster, SseEmitter, SseEvent,
        StreamingResponseBody, WebAsyncTask,
    };
}

/// The README's example compiles: it is run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
