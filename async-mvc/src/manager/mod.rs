//! [`AsyncManager`]: drives every async request of a router (Spring's `WebAsyncManager`).
//!
//! One file per kind of async value: `deferred.rs` for [`DeferredResult`](crate::DeferredResult),
//! `task.rs` for [`Callable`](crate::Callable) and [`WebAsyncTask`](crate::WebAsyncTask).

mod deferred;
mod task;

use std::{
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use axum::response::{IntoResponse, Response};

use crate::{
    AsyncConfig, AsyncError, AsyncTaskExecutor, CallableProcessingInterceptor,
    DeferredResultProcessingInterceptor,
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
/// Timers cost no task: each pending request waits on one tokio timer entry inside its own
/// response future.
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
}

#[derive(Default)]
struct Counters {
    pending: AtomicU64,
    completed: AtomicU64,
    timed_out: AtomicU64,
    disconnected: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

/// A snapshot of an [`AsyncManager`]'s counters.
///
/// `completed` counts async requests that ended with a response (a value, an error value, a
/// timeout or error response); `timed_out`, `rejected` and `errors` count some of those again by
/// cause; `disconnected` counts those the client abandoned before the response was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AsyncMetrics {
    /// Async requests waiting for their result right now.
    pub pending: u64,
    /// Async requests that completed with a response, since the manager was created.
    pub completed: u64,
    /// Async requests whose timeout fired.
    pub timed_out: u64,
    /// Async requests whose client disconnected while they were pending.
    pub disconnected: u64,
    /// Tasks the executor refused because it was busy and its queue full (answered `503`).
    pub rejected: u64,
    /// Tasks that panicked (answered `500` unless `on_error` supplied a value).
    pub errors: u64,
}

impl AsyncManager {
    /// A manager with `config`.
    pub fn new(config: AsyncConfig) -> Self {
        let executor = OnceLock::new();
        if let Some(configured) = &config.executor {
            let _ = executor.set(configured.clone());
        }
        AsyncManager {
            inner: Arc::new(Inner {
                callable: config.interceptors.callable.iter().cloned().collect(),
                deferred: config.interceptors.deferred.iter().cloned().collect(),
                executor,
                config,
                counters: Counters::default(),
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
            pending: counters.pending.load(Ordering::Relaxed),
            completed: counters.completed.load(Ordering::Relaxed),
            timed_out: counters.timed_out.load(Ordering::Relaxed),
            disconnected: counters.disconnected.load(Ordering::Relaxed),
            rejected: counters.rejected.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
        }
    }

    /// Renders an error the manager produced, through the configured mapping.
    fn error_response(&self, error: &AsyncError) -> Response {
        let config = self.config();
        let respond = match error {
            AsyncError::Timeout { .. } => config.timeout_response.as_ref(),
            _ => None,
        }
        .or(config.error_response.as_ref());
        match respond {
            Some(respond) => {
                catch_unwind(AssertUnwindSafe(|| respond(error))).unwrap_or_else(|_| {
                    tracing::error!(%error, "AsyncConfig's error response mapping panicked");
                    error.clone().into_response()
                })
            }
            None => error.clone().into_response(),
        }
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.inner.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one async request as pending from creation until drop.
struct Pending(AsyncManager);

impl Pending {
    fn start(manager: &AsyncManager) -> Pending {
        manager.count(|c| &c.pending);
        Pending(manager.clone())
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

/// Runs a user callback; a panic is logged and contained to it.
pub(crate) fn guarded(name: &'static str, callback: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(callback)).is_err() {
        tracing::error!(callback = name, "an async lifecycle callback panicked");
    }
}

/// Runs a user callback that returns a value; a panic is logged and gives `None`.
fn guarded_value<R>(name: &'static str, callback: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(callback))
        .map_err(|_| tracing::error!(callback = name, "an async lifecycle callback panicked"))
        .ok()
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
