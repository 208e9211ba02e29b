//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, with the cargo feature
//! `metrics`, named after the OpenTelemetry semantic conventions (dotted here; a Prometheus
//! exporter renders `http.server.request.duration` as `http_server_request_duration_seconds`).
//!
//! Without the feature nothing of this is compiled in but the names below. With it, and no
//! recorder installed, each measurement costs the facade's no-op. **Install the recorder
//! before building the router's [`AsyncManager`](crate::AsyncManager), the server and the
//! cluster features**: they take their handles when they are built.
//!
//! | name | kind | unit | labels |
//! |---|---|---|---|
//! | [`REQUEST_DURATION`] `http.server.request.duration` | histogram | s | `http.request.method`, `http.route`, `http.response.status_code`, `error.type`, `async_mvc.kind` |
//! | [`ACTIVE_REQUESTS`] `http.server.active_requests` | gauge (up-down) | requests | — |
//! | [`REQUEST_OUTCOME`] `async_mvc.request.outcome` | counter | requests | `outcome`: completed, timed_out, disconnected, rejected, error, slow_consumer |
//! | [`TIMEOUT_LATENESS`] `async_mvc.timeout.lateness` | histogram | s | — (a `DeferredResult`'s timeout) |
//! | [`EXECUTOR_ACTIVE`], [`EXECUTOR_QUEUED`], [`EXECUTOR_POOL_SIZE`] `executor.active`, `executor.queued`, `executor.pool.size` | gauges | tasks, threads | `name` |
//! | [`EXECUTOR_REJECTED`] `executor.rejected` | counter | tasks | `name` |
//! | [`OPEN_CONNECTIONS`] `http.server.open_connections` | gauge | connections | — |
//! | [`ACCEPTED_CONNECTIONS`] `http.server.connections.accepted` | counter | connections | — |
//! | [`HTTP2_CONNECTIONS`] `http.server.connections.http2` | counter | connections | — |
//! | [`SHED_CONNECTIONS`] `http.server.connections.shed` | counter | connections | `reason`: reading_head, idle, limit_reached |
//! | [`CONNECTION_TIMEOUTS`] `http.server.connections.timeouts` | counter | connections | `kind`: header_read, keep_alive, send |
//! | [`SSE_SUBSCRIBERS`] `async_mvc.sse.subscribers` | gauge | streams | — |
//! | [`SSE_EVENTS`], [`SSE_BYTES`] `async_mvc.sse.events`, `async_mvc.sse.bytes` | counters | events, bytes | — |
//! | [`SSE_REPLAYS`] `async_mvc.sse.replays` | counter | subscribers | `result`: full, reset |
//! | [`SSE_SLOW_CONSUMERS`] `async_mvc.sse.slow_consumers` | counter | streams | — |
//! | [`PUBSUB_LAG`] `async_mvc.cluster.pubsub.lag` | histogram | s | — (`async-mvc-redis`, its `metrics` feature) |
//! | [`BROKER_RECONNECTS`] `async_mvc.cluster.broker.reconnects` | counter | reconnects | — (`async-mvc-redis`, its `metrics` feature) |
//! | [`OUTBOX_DEPTH`] `async_mvc.cluster.outbox.depth` | gauge | operations | — (`async-mvc-redis`, its `metrics` feature) |
//! | [`REPLY_DURATION`] `async_mvc.cluster.reply.duration` | histogram | s | `queue`, `outcome`: reply, error, timed_out |
//! | [`NO_RESPONDERS`] `async_mvc.cluster.reply.no_responders` | counter | requests | `queue` |
//! | [`IGNORED_REPLIES`] `async_mvc.cluster.reply.ignored` | counter | replies | `queue` |
//! | [`JOB_CLAIMS`] `async_mvc.cluster.jobs.claimed` | counter | jobs | `queue` |
//! | [`JOB_REDELIVERIES`] `async_mvc.cluster.jobs.redelivered` | counter | jobs | `queue` |
//!
//! Every label's values are bounded: a route is its template (`/orders/{id}`), never the raw
//! path; no id, key or `Last-Event-ID` is ever a label; an unknown method is `_OTHER`.
//!
//! The duration ends at the **last body byte** of the response (or when the client left), not
//! when the handler returned: a long poll records its whole wait, an SSE stream its whole life.
//! Its buckets should reach minutes: [`DURATION_BUCKETS`] (the OpenTelemetry default stops at
//! 10 s, where a long poll starts).

#[cfg(feature = "metrics")]
mod on;
#[cfg(feature = "metrics")]
pub use on::describe;
#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// `http.server.request.duration`: seconds from the request's arrival at the router's layer to
/// its response's last body byte, or to the client's disconnect (histogram).
pub const REQUEST_DURATION: &str = "http.server.request.duration";
/// `http.server.active_requests`: requests under the layer whose response has not ended
/// (up-down counter, as a gauge).
pub const ACTIVE_REQUESTS: &str = "http.server.active_requests";
/// `async_mvc.request.outcome`: how async requests ended, by `outcome` (counter; the
/// manager's [`AsyncMetrics`](crate::AsyncMetrics) counters, live).
pub const REQUEST_OUTCOME: &str = "async_mvc.request.outcome";
/// `async_mvc.timeout.lateness`: seconds between a timeout's due time and when it fired
/// (histogram).
pub const TIMEOUT_LATENESS: &str = "async_mvc.timeout.lateness";
/// `executor.active`: tasks running on an [`AsyncTaskExecutor`](crate::AsyncTaskExecutor),
/// by `name` (Micrometer's `executor.active`).
pub const EXECUTOR_ACTIVE: &str = "executor.active";
/// `executor.queued`: tasks waiting in an executor's queue, by `name`.
pub const EXECUTOR_QUEUED: &str = "executor.queued";
/// `executor.pool.size`: an executor's worker threads, by `name`.
pub const EXECUTOR_POOL_SIZE: &str = "executor.pool.size";
/// `executor.rejected`: tasks an executor refused (full), by `name` (counter).
pub const EXECUTOR_REJECTED: &str = "executor.rejected";
/// `http.server.open_connections`: connections [`serve`](crate::serve) holds open (gauge).
pub const OPEN_CONNECTIONS: &str = "http.server.open_connections";
/// `http.server.connections.accepted`: connections accepted (counter).
pub const ACCEPTED_CONNECTIONS: &str = "http.server.connections.accepted";
/// `http.server.connections.http2`: connections that spoke HTTP/2 (counter).
pub const HTTP2_CONNECTIONS: &str = "http.server.connections.http2";
/// `http.server.connections.shed`: connections closed to make room or refused at the limit,
/// by `reason` (counter).
pub const SHED_CONNECTIONS: &str = "http.server.connections.shed";
/// `http.server.connections.timeouts`: connections closed by a timeout, by `kind` (counter).
pub const CONNECTION_TIMEOUTS: &str = "http.server.connections.timeouts";
/// `async_mvc.sse.subscribers`: open SSE streams of [`SseEmitter`](crate::SseEmitter)s (gauge).
pub const SSE_SUBSCRIBERS: &str = "async_mvc.sse.subscribers";
/// `async_mvc.sse.events`: SSE events queued for clients, heartbeats excluded (counter).
pub const SSE_EVENTS: &str = "async_mvc.sse.events";
/// `async_mvc.sse.bytes`: bytes of those events (counter).
pub const SSE_BYTES: &str = "async_mvc.sse.bytes";
/// `async_mvc.sse.replays`: clustered subscribers that sent a `Last-Event-ID`, by `result`:
/// `full` (everything after it was replayed) or `reset` (counter).
pub const SSE_REPLAYS: &str = "async_mvc.sse.replays";
/// `async_mvc.sse.slow_consumers`: SSE streams given up because their client read too slowly
/// (counter).
pub const SSE_SLOW_CONSUMERS: &str = "async_mvc.sse.slow_consumers";
/// `async_mvc.cluster.pubsub.lag`: seconds from a message's publication (Redis's clock for an
/// append) to its arrival on this instance (histogram; the clocks must agree, to the ms).
pub const PUBSUB_LAG: &str = "async_mvc.cluster.pubsub.lag";
/// `async_mvc.cluster.broker.reconnects`: times a broker's subscription came back (counter).
pub const BROKER_RECONNECTS: &str = "async_mvc.cluster.broker.reconnects";
/// `async_mvc.cluster.outbox.depth`: operations waiting for an unreachable broker (gauge).
pub const OUTBOX_DEPTH: &str = "async_mvc.cluster.outbox.depth";
/// `async_mvc.cluster.reply.duration`: seconds from `send_and_receive` to its reply, error or
/// timeout, by `queue` and `outcome` (histogram).
pub const REPLY_DURATION: &str = "async_mvc.cluster.reply.duration";
/// `async_mvc.cluster.reply.no_responders`: requests refused because no worker listened, by
/// `queue` (counter).
pub const NO_RESPONDERS: &str = "async_mvc.cluster.reply.no_responders";
/// `async_mvc.cluster.reply.ignored`: replies for a request no longer waiting, by `queue`
/// (counter).
pub const IGNORED_REPLIES: &str = "async_mvc.cluster.reply.ignored";
/// `async_mvc.cluster.jobs.claimed`: jobs a listener took over from a dead consumer, by
/// `queue` (counter).
pub const JOB_CLAIMS: &str = "async_mvc.cluster.jobs.claimed";
/// `async_mvc.cluster.jobs.redelivered`: jobs answered from a retained reply instead of being
/// worked again, by `queue` (counter).
pub const JOB_REDELIVERIES: &str = "async_mvc.cluster.jobs.redelivered";

/// Buckets for [`REQUEST_DURATION`], in seconds: the OpenTelemetry defaults up to 10 s, then
/// what long polls and streams last — 30 s (the default timeout), 1, 2, 5 and 10 minutes, and
/// an hour. For a Prometheus exporter:
/// `PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)`.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 3600.0,
];

/// Buckets for [`TIMEOUT_LATENESS`] and [`PUBSUB_LAG`], in seconds: 100 µs to 10 s.
pub const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// What kind of return value a request's response came from: the `async_mvc.kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Kind {
    Deferred,
    Callable,
    Task,
    Reactive,
    Sse,
    Emitter,
    Streaming,
    Sync,
}

impl Kind {
    /// The label value.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Deferred => "deferred",
            Kind::Callable => "callable",
            Kind::Task => "task",
            Kind::Reactive => "reactive",
            Kind::Sse => "sse",
            Kind::Emitter => "emitter",
            Kind::Streaming => "streaming",
            Kind::Sync => "sync",
        }
    }
}
