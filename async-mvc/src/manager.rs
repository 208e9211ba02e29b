//! [`AsyncManager`]: drives every async request of a router (Spring's `WebAsyncManager`).

use std::{
    fmt,
    future::{poll_fn, Future},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    task::Poll,
};

use axum::response::{IntoResponse, Response};

use crate::{
    deferred_result::{Shared, TimeoutOutcome},
    AsyncConfig, AsyncError,
};

/// The engine behind every async request of a router: Spring MVC's `WebAsyncManager` together
/// with its `AsyncSupportConfigurer` settings.
///
/// It applies timeouts (each result's own, else [`AsyncConfig::default_timeout`]), runs the
/// lifecycle callbacks in Spring's order, notices clients that disconnect, and counts what is
/// in flight ([`metrics`](Self::metrics)).
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
    pending: AtomicU64,
    completed: AtomicU64,
    timed_out: AtomicU64,
    disconnected: AtomicU64,
}

/// A snapshot of an [`AsyncManager`]'s counters.
///
/// `completed` counts async requests that ended with a response (a value, an error value or a
/// timeout response); `timed_out` counts those whose timeout fired (they are also in
/// `completed`); `disconnected` counts those the client abandoned before the response was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AsyncMetrics {
    /// Async requests waiting for their result right now.
    pub pending: u64,
    /// Async requests that completed with a response, since the manager was created.
    pub completed: u64,
    /// Async requests whose timeout fired, since the manager was created.
    pub timed_out: u64,
    /// Async requests whose client disconnected while they were pending.
    pub disconnected: u64,
}

impl AsyncManager {
    /// A manager with `config`.
    pub fn new(config: AsyncConfig) -> Self {
        AsyncManager {
            inner: Arc::new(Inner {
                config,
                pending: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                disconnected: AtomicU64::new(0),
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

    /// The current counters.
    pub fn metrics(&self) -> AsyncMetrics {
        let inner = &self.inner;
        AsyncMetrics {
            pending: inner.pending.load(Ordering::Relaxed),
            completed: inner.completed.load(Ordering::Relaxed),
            timed_out: inner.timed_out.load(Ordering::Relaxed),
            disconnected: inner.disconnected.load(Ordering::Relaxed),
        }
    }

    /// Drives one returned `DeferredResult` to its response.
    ///
    /// Order of events (Spring checklist A.8, A.10, D.63):
    /// - value set → rendered → `on_completion`;
    /// - timeout → `on_timeout` → its value, else the timeout result, else the timeout
    ///   response → `on_completion`;
    /// - client gone (this future dropped) → `on_error(ClientDisconnected)` → expired →
    ///   `on_completion`.
    pub(crate) async fn run_deferred<T, E>(self, shared: Arc<Shared<T, E>>) -> Response
    where
        T: IntoResponse + Send + 'static,
        E: IntoResponse + Send + 'static,
    {
        let timeout = shared.effective_timeout(self.config().default_timeout);
        let mut guard = PendingGuard::start(self.clone(), Arc::clone(&shared));

        let outcome = match shared.take_value() {
            // Set before the handler returned: complete at once, no timer.
            Some(value) => Some(value),
            None => {
                let mut sleep = pin!(timeout.map(tokio::time::sleep));
                poll_fn(|cx| {
                    if let Poll::Ready(value) = shared.poll_value(cx) {
                        return Poll::Ready(Some(value));
                    }
                    match sleep.as_mut().as_pin_mut() {
                        Some(sleep) => sleep.poll(cx).map(|()| None),
                        None => Poll::Pending,
                    }
                })
                .await
            }
        };

        let response = match outcome {
            Some(value) => render(value),
            None => self.resolve_timeout(&shared, timeout.unwrap_or_default()),
        };
        guard.finish();
        response
    }

    fn resolve_timeout<T, E>(&self, shared: &Shared<T, E>, after: std::time::Duration) -> Response
    where
        T: IntoResponse,
        E: IntoResponse,
    {
        self.inner.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            timeout_ms = after.as_millis() as u64,
            "async request timed out"
        );
        if let Some(on_timeout) = shared.take_on_timeout() {
            guarded("on_timeout", on_timeout);
        }
        match shared.resolve_timeout() {
            TimeoutOutcome::Value(value) => render(value),
            TimeoutOutcome::Supplied(supplier) => match catch_unwind(AssertUnwindSafe(supplier)) {
                Ok(value) => value.into_response(),
                Err(_) => {
                    tracing::error!("the timeout result supplier panicked");
                    self.timeout_response(after)
                }
            },
            TimeoutOutcome::NoResult => self.timeout_response(after),
        }
    }

    fn timeout_response(&self, after: std::time::Duration) -> Response {
        let error = AsyncError::Timeout { after };
        let respond = &self.config().timeout_response;
        catch_unwind(AssertUnwindSafe(|| respond(&error))).unwrap_or_else(|_| {
            tracing::error!("AsyncConfig::timeout_response panicked");
            error.clone().into_response()
        })
    }
}

fn render<T: IntoResponse, E: IntoResponse>(value: Result<T, E>) -> Response {
    match value {
        Ok(value) => value.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Runs a user callback; a panic is logged and contained to it.
pub(crate) fn guarded(name: &'static str, callback: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(callback)).is_err() {
        tracing::error!(callback = name, "an async lifecycle callback panicked");
    }
}

/// Counts a request as pending while it lives. Dropped before [`finish`](Self::finish) means
/// the response future was dropped: the client went away.
struct PendingGuard<T, E> {
    manager: AsyncManager,
    shared: Arc<Shared<T, E>>,
    finished: bool,
}

impl<T, E> PendingGuard<T, E> {
    fn start(manager: AsyncManager, shared: Arc<Shared<T, E>>) -> Self {
        manager.inner.pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard {
            manager,
            shared,
            finished: false,
        }
    }

    /// The response was produced: count it and run `on_completion`.
    fn finish(&mut self) {
        self.finished = true;
        self.manager.inner.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(on_completion) = self.shared.complete() {
            guarded("on_completion", on_completion);
        }
    }
}

impl<T, E> Drop for PendingGuard<T, E> {
    fn drop(&mut self) {
        let inner = &self.manager.inner;
        if !self.finished {
            inner.disconnected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("client disconnected from a pending async request");
            if let Some(on_error) = self.shared.expire() {
                guarded("on_error", || on_error(&AsyncError::ClientDisconnected));
            }
            if let Some(on_completion) = self.shared.complete() {
                guarded("on_completion", on_completion);
            }
        }
        inner.pending.fetch_sub(1, Ordering::Relaxed);
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
