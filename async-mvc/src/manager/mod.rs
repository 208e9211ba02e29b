//! [`AsyncManager`]: the services every async request of a router uses (Spring's
//! `WebAsyncManager`): admission, counters, shutdown, the interceptor chains, the error
//! mapping. Each kind of async value drives its own lifecycle on top of them
//! (`deferred_result/lifecycle.rs`, `task/lifecycle.rs`, `emitter/lifecycle.rs`); the manager
//! knows none of them.

mod shutdown;

use std::{
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use shutdown::ShutdownSignal;

use crate::guard::contain;
use crate::telemetry::{ManagerInstruments, Outcome};

use crate::{
    config::AsyncConfig,
    error::AsyncError,
    executor::AsyncTaskExecutor,
    interceptor::{
        AsyncRequest, CallableProcessingInterceptor, DeferredResultProcessingInterceptor,
    },
};

/// The engine behind every async request of a router: Spring MVC's `WebAsyncManager` together
/// with its `AsyncSupportConfigurer` settings.
///
/// It applies timeouts (each value's own, else [`AsyncConfig::default_timeout`]), runs tasks on
/// the [`AsyncTaskExecutor`], runs the lifecycle callbacks and interceptors in Spring's order,
/// notices clients that disconnect, and counts what is in flight ([`metrics`](Self::metrics)).
///
/// The handle is a cheap `Clone` of an `Arc`: install one with
/// [`RouterExt::async_support`](crate::RouterExt::async_support) and keep a clone to read its
/// metrics. Routers registered through [`RouterExt::controller`](crate::RouterExt::controller)
/// without `async_support` share one process-wide manager with the default config
/// ([`AsyncManager::shared_default`]).
///
/// Timers cost no task for deferred results and tasks: each pending request waits on one tokio
/// timer entry inside its own response future. A stream with a timeout has one small timer task,
/// because hyper stops polling the body of a client that does not read.
#[derive(Clone)]
pub struct AsyncManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: AsyncConfig,
    callable: Arc<[Arc<dyn CallableProcessingInterceptor>]>,
    deferred: Arc<[Arc<dyn DeferredResultProcessingInterceptor>]>,
    /// The configured executor, or the default one, created on first use.
    executor: OnceLock<AsyncTaskExecutor>,
    counters: Counters,
    /// The `metrics` handles (nothing without the feature).
    instruments: ManagerInstruments,
    /// Set when a graceful shutdown begins; read on every admission, where the token's
    /// `is_cancelled` would take its lock.
    shutting_down: AtomicBool,
    /// Cancelled when a graceful shutdown begins: pending results and streams end.
    shutdown: CancellationToken,
    /// Fired with `shutdown`: what pending results wait on (sharded; see `shutdown.rs`).
    pending_shutdown: ShutdownSignal,
    /// Cancelled when the shutdown grace period is over: running tasks time out.
    grace_over: CancellationToken,
    /// Fired with `grace_over`: what running tasks wait on (sharded, as `pending_shutdown`).
    tasks_grace_over: ShutdownSignal,
}

#[derive(Default)]
struct Counters {
    pending: AtomicU64,
    completed: AtomicU64,
    timed_out: AtomicU64,
    disconnected: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    slow_consumers: AtomicU64,
}

/// A snapshot of an [`AsyncManager`]'s counters.
///
/// `completed` counts async requests that ended with a response (a value, an error value, a
/// timeout or error response); `timed_out`, `rejected` and `errors` count some of those again by
/// cause; `disconnected` counts those the client abandoned before the response was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AsyncMetrics {
    /// Async requests in flight right now: waiting for their result, or streaming.
    pub in_flight: u64,
    /// Async requests that completed with a response, since the manager was created.
    pub completed: u64,
    /// Async requests whose timeout fired.
    pub timed_out: u64,
    /// Async requests whose client disconnected while they were pending.
    pub disconnected: u64,
    /// Async requests refused with `503`: the executor was full, more than
    /// [`AsyncConfig::max_concurrent`] were in flight, or the server was shutting down.
    pub rejected: u64,
    /// Tasks that panicked (answered `500` unless `on_error` supplied a value), and streaming
    /// responses aborted by an error.
    pub errors: u64,
    /// Streams given up because their client read too slowly: an [`SseBroadcaster`] subscriber
    /// whose buffer stayed full beyond its broadcaster's slow-subscriber timeout (ended at
    /// once, and no longer `in_flight`).
    ///
    /// [`SseBroadcaster`]: crate::SseBroadcaster
    pub slow_consumers: u64,
}

impl AsyncManager {
    /// A manager with `config`.
    pub fn new(config: AsyncConfig) -> Self {
        let executor = OnceLock::new();
        if let Some(configured) = config.get_executor() {
            let _ = executor.set(configured.clone());
        }
        AsyncManager {
            inner: Arc::new(Inner {
                callable: config
                    .get_interceptors()
                    .callable()
                    .iter()
                    .cloned()
                    .collect(),
                deferred: config
                    .get_interceptors()
                    .deferred()
                    .iter()
                    .cloned()
                    .collect(),
                executor,
                config,
                counters: Counters::default(),
                instruments: ManagerInstruments::new(),
                shutting_down: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                pending_shutdown: ShutdownSignal::new(),
                grace_over: CancellationToken::new(),
                tasks_grace_over: ShutdownSignal::new(),
            }),
        }
    }

    /// The process-wide manager with [`AsyncConfig::default`], used by controller routes on a
    /// router that has no [`async_support`](crate::RouterExt::async_support).
    pub fn shared_default() -> AsyncManager {
        static SHARED: OnceLock<AsyncManager> = OnceLock::new();
        SHARED
            .get_or_init(|| AsyncManager::new(AsyncConfig::default()))
            .clone()
    }

    /// This manager's settings.
    pub fn config(&self) -> &AsyncConfig {
        &self.inner.config
    }

    /// The executor that runs blocking tasks: the configured one, else the default
    /// [`AsyncTaskExecutor`], created on the first call.
    pub fn task_executor(&self) -> &AsyncTaskExecutor {
        self.inner.executor.get_or_init(AsyncTaskExecutor::default)
    }

    /// The current counters.
    pub fn metrics(&self) -> AsyncMetrics {
        let counters = &self.inner.counters;
        AsyncMetrics {
            in_flight: counters.pending.load(Ordering::Relaxed),
            completed: counters.completed.load(Ordering::Relaxed),
            timed_out: counters.timed_out.load(Ordering::Relaxed),
            disconnected: counters.disconnected.load(Ordering::Relaxed),
            rejected: counters.rejected.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            slow_consumers: counters.slow_consumers.load(Ordering::Relaxed),
        }
    }

    /// Begins a graceful shutdown (Spring has none that drains async requests; neither does
    /// axum for open streams — axum #2673, hyper #2787):
    /// - new async requests are refused with `503` ([`AsyncError::ShuttingDown`]), and a new
    ///   SSE request gets `204 No Content`, which stops `EventSource` from reconnecting;
    /// - pending deferred results complete at once, as on timeout: their `on_timeout`, their
    ///   timeout result, or `503`;
    /// - open streams end cleanly after what they have queued (an SSE stream with the
    ///   [`AsyncConfig::shutdown_event`], if any);
    /// - running tasks may finish; after [`AsyncConfig::shutdown_grace`] they time out.
    ///
    /// Use [`shutdown_on`](Self::shutdown_on) to wire it to `axum::serve(..)
    /// .with_graceful_shutdown(..)`.
    pub fn shutdown(&self) {
        if self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(
            in_flight = self.metrics().in_flight,
            "async manager shutting down"
        );
        self.inner.pending_shutdown.fire();
        self.inner.shutdown.cancel();
        let manager = self.clone();
        let grace = self.config().get_shutdown_grace();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::select! {
                    () = manager.drained() => {}
                    () = tokio::time::sleep(grace) => {}
                }
                manager.end_grace();
            });
        } else {
            self.end_grace();
        }
    }

    /// The shutdown grace period is over: running tasks time out.
    fn end_grace(&self) {
        self.inner.tasks_grace_over.fire();
        self.inner.grace_over.cancel();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Resolves once no async request is in flight (checked every 10 ms).
    pub async fn drained(&self) {
        while self.inner.counters.pending.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Waits for `signal` (Ctrl-C, SIGTERM, …), then [`shutdown`](Self::shutdown)s and waits
    /// until every async request has ended or the grace period is over. Pass it to
    /// `axum::serve(..).with_graceful_shutdown(..)`: the server then stops accepting, and
    /// finishes once the last connection is done.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, manager: async_mvc::AsyncManager) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// axum::serve(listener, app.into_make_service())
    ///     .with_graceful_shutdown(manager.shutdown_on(async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///     }))
    ///     .await
    /// # }
    /// ```
    pub async fn shutdown_on<F: std::future::Future<Output = ()>>(self, signal: F) {
        signal.await;
        self.shutdown();
        tokio::select! {
            () = self.drained() => {}
            () = self.inner.grace_over.cancelled() => {}
        }
    }

    /// Cancelled when shutdown begins.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Resolves once a shutdown began: for a pending result to resolve as its timeout would.
    /// `key` (the result's address) spreads the many waiters over independent lists.
    pub(crate) fn shutdown_started(&self, key: usize) -> impl Future<Output = ()> + Send + '_ {
        self.inner.pending_shutdown.wait(key)
    }

    /// Resolves once the shutdown grace period is over: for a running task to time out.
    /// `key` (the task's address) spreads the waiters as for
    /// [`shutdown_started`](Self::shutdown_started).
    pub(crate) fn grace_over(&self, key: usize) -> impl Future<Output = ()> + Send + '_ {
        self.inner.tasks_grace_over.wait(key)
    }

    /// Renders an error the manager produced, through the configured mapping.
    pub(crate) fn error_response(&self, error: &AsyncError) -> Response {
        match self.config().responder(error) {
            Some(respond) => contain("AsyncConfig::error_response", || respond(error))
                .unwrap_or_else(|| error.clone().into_response()),
            None => error.clone().into_response(),
        }
    }

    /// Counts one async request as `what`.
    pub(crate) fn count(&self, what: Count) {
        let counters = &self.inner.counters;
        let (counter, outcome) = match what {
            Count::Completed => (&counters.completed, Outcome::Completed),
            Count::TimedOut => (&counters.timed_out, Outcome::TimedOut),
            Count::Disconnected => (&counters.disconnected, Outcome::Disconnected),
            Count::Rejected => (&counters.rejected, Outcome::Rejected),
            Count::Error => (&counters.errors, Outcome::Error),
            Count::SlowConsumer => (&counters.slow_consumers, Outcome::SlowConsumer),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.inner.instruments.outcome(outcome);
    }

    /// The manager's `metrics` handles (see [`telemetry`](crate::telemetry)).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn instruments(&self) -> &ManagerInstruments {
        &self.inner.instruments
    }

    /// The registered `CallableProcessingInterceptor`s, in order.
    pub(crate) fn callable_interceptors(&self) -> &Arc<[Arc<dyn CallableProcessingInterceptor>]> {
        &self.inner.callable
    }

    /// The registered `DeferredResultProcessingInterceptor`s, in order.
    pub(crate) fn deferred_interceptors(&self) -> &[Arc<dyn DeferredResultProcessingInterceptor>] {
        &self.inner.deferred
    }

    /// Tells every `AsyncHandlerInterceptor` that async processing of `request` started.
    pub(crate) fn concurrent_handling_started(&self, request: &AsyncRequest) {
        self.config()
            .get_interceptors()
            .concurrent_handling_started(request);
    }

    /// Whether a result that is already known may be rendered at once, without the request
    /// head and without admission: no interceptor wants the head, no admission limit applies
    /// and no shutdown is under way. The value type then completes on the spot; otherwise it
    /// takes its general path, which gives the same response.
    pub(crate) fn completes_at_once(&self) -> bool {
        let config = self.config();
        self.inner.deferred.is_empty()
            && !config.get_interceptors().has_handler_interceptors()
            && config.get_max_concurrent().is_none()
            && !self.is_shutting_down()
    }

    /// Admits one more async request, unless the manager is shutting down or
    /// [`AsyncConfig::max_concurrent`] are already in flight (counted as rejected).
    pub(crate) fn admit(self) -> Result<Pending, Refused> {
        Pending::admit(self)
    }
}

/// What [`AsyncManager::count`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// Ended with a response: a value, an error value, a timeout or error response.
    Completed,
    /// Its timeout fired.
    TimedOut,
    /// The client left while it was pending.
    Disconnected,
    /// Refused with `503`.
    Rejected,
    /// A task panicked, or a stream was aborted by an error.
    Error,
    /// A stream was given up because its client read too slowly.
    SlowConsumer,
}

/// Counts one async request as pending from admission until drop; holds its manager.
pub(crate) struct Pending(AsyncManager);

/// An async request [`AsyncManager::admit`] refused: why, and the manager back.
pub(crate) struct Refused {
    manager: AsyncManager,
    error: AsyncError,
}

impl Refused {
    /// Why it was refused: [`AsyncError::ShuttingDown`] or [`AsyncError::Overloaded`].
    pub(crate) fn error(&self) -> &AsyncError {
        &self.error
    }

    /// The refusal as a response, through the configured mapping.
    pub(crate) fn response(&self) -> Response {
        self.manager.error_response(&self.error)
    }
}

impl Pending {
    fn admit(manager: AsyncManager) -> Result<Pending, Refused> {
        if manager.is_shutting_down() {
            manager.count(Count::Rejected);
            let error = AsyncError::ShuttingDown;
            return Err(Refused { manager, error });
        }
        let counters = &manager.inner.counters;
        let in_flight = counters.pending.fetch_add(1, Ordering::AcqRel);
        let pending = Pending(manager);
        match pending.0.config().get_max_concurrent() {
            Some(limit) if in_flight >= limit as u64 => {
                let manager = pending.0.clone();
                drop(pending);
                manager.count(Count::Rejected);
                tracing::warn!(limit, "async request refused: too many in flight");
                let error = AsyncError::Overloaded {
                    limit,
                    retry_after: manager.config().get_retry_after(),
                };
                Err(Refused { manager, error })
            }
            _ => Ok(pending),
        }
    }

    /// The manager that admitted this request.
    pub(crate) fn manager(&self) -> &AsyncManager {
        &self.0
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0
            .inner
            .counters
            .pending
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for AsyncManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncManager")
            .field("config", &self.inner.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl From<AsyncConfig> for AsyncManager {
    fn from(config: AsyncConfig) -> Self {
        AsyncManager::new(config)
    }
}
