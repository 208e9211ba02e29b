//! [`AsyncConfig`]: the settings of an [`AsyncManager`](crate::AsyncManager).

use std::{fmt, sync::Arc, time::Duration};

use axum::response::Response;
use bytes::Bytes;

use crate::{
    error::AsyncError,
    executor::AsyncTaskExecutor,
    interceptor::{
        AsyncHandlerInterceptor, CallableProcessingInterceptor,
        DeferredResultProcessingInterceptor, Interceptors,
    },
    sse::SseEvent,
};

/// The default timeout of an async request: 30 seconds (Spring leaves it to the servlet
/// container, whose usual default is 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A configured mapping from an [`AsyncError`] to its response.
pub(crate) type ErrorResponder = dyn Fn(&AsyncError) -> Response + Send + Sync;

/// Settings shared by every async request of a router: Spring MVC's `AsyncSupportConfigurer`.
///
/// Build it with consuming setters and hand it to
/// [`RouterExt::async_support`](crate::RouterExt::async_support):
///
/// ```
/// use std::time::Duration;
/// use async_mvc::{AsyncConfig, AsyncError, AsyncTaskExecutor};
/// use axum::{http::StatusCode, response::IntoResponse};
///
/// let executor = AsyncTaskExecutor::builder()
///     .core_pool_size(4)
///     .max_pool_size(16)
///     .queue_capacity(100)
///     .build()
///     .expect("a valid pool");
/// let config = AsyncConfig::new()
///     .default_timeout(Duration::from_secs(10))
///     .task_executor(executor)
///     .error_response(|error| match error {
///         AsyncError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "try again").into_response(),
///         other => other.clone().into_response(),
///     });
/// ```
#[derive(Clone)]
#[must_use]
pub struct AsyncConfig {
    default_timeout: Option<Duration>,
    error_response: Option<Arc<ErrorResponder>>,
    timeout_response: Option<Arc<ErrorResponder>>,
    executor: Option<AsyncTaskExecutor>,
    interceptors: Interceptors,
    max_concurrent: Option<usize>,
    retry_after: Duration,
    shutdown_grace: Duration,
    shutdown_event: Option<Bytes>,
}

/// How long a client refused for overload is told to wait: 1 s.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long [`AsyncManager::shutdown_on`](crate::AsyncManager::shutdown_on) lets running tasks
/// finish before it times them out: 10 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl AsyncConfig {
    /// The default settings: a [`DEFAULT_TIMEOUT`] of 30 s, errors rendered by
    /// [`AsyncError`]'s `IntoResponse` (`503` for a timeout), the default
    /// [`AsyncTaskExecutor`] (created on first use), no interceptors.
    pub fn new() -> Self {
        AsyncConfig {
            default_timeout: Some(DEFAULT_TIMEOUT),
            error_response: None,
            timeout_response: None,
            executor: None,
            interceptors: Interceptors::default(),
            max_concurrent: None,
            retry_after: DEFAULT_RETRY_AFTER,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            shutdown_event: None,
        }
    }

    /// The event every open SSE stream gets last when a graceful shutdown ends it, e.g. one
    /// that tells the page to stop listening. Default: none, the stream just ends.
    pub fn shutdown_event(mut self, event: SseEvent) -> Self {
        self.shutdown_event = (!event.is_empty()).then(|| event.into_bytes());
        self
    }

    /// The most async requests in flight at once — pending deferred results, running tasks and
    /// open streams, each counted until its response has ended (not when the handler
    /// returns). Over the limit, a new async request is refused at once with `503` and
    /// `Retry-After` ([`AsyncError::Overloaded`]); those already admitted are untouched. This is
    /// the answer to Spring's open question of what happens when deferred results pile up.
    /// Default: no limit. For one route, see [`AsyncLimitLayer`](crate::AsyncLimitLayer).
    pub fn max_concurrent(mut self, requests: usize) -> Self {
        self.max_concurrent = Some(requests);
        self
    }

    /// The `Retry-After` a client refused for overload or shutdown is sent (whole seconds on
    /// the wire; default [`DEFAULT_RETRY_AFTER`]).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// How long a graceful shutdown lets running tasks finish before timing them out (default
    /// [`DEFAULT_SHUTDOWN_GRACE`]). Deferred results and streams end at once.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long an async request may stay pending when its own value sets no timeout
    /// (Spring's `setDefaultTimeout`, there in ms). `None` means no timeout at all.
    ///
    /// The window opens when the handler returns and closes when the result is rendered.
    pub fn default_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.default_timeout = timeout.into();
        self
    }

    /// How the manager renders the [`AsyncError`]s it produces — timeouts with no result,
    /// executor rejections, panicked tasks — in place of their own `IntoResponse`: the role of
    /// an `@ExceptionHandler` for `AsyncRequestTimeoutException` and friends.
    ///
    /// A panic in `respond` is contained: the error's own response is sent instead.
    pub fn error_response<F>(mut self, respond: F) -> Self
    where
        F: Fn(&AsyncError) -> Response + Send + Sync + 'static,
    {
        self.error_response = Some(Arc::new(respond));
        self
    }

    /// The response sent when a timeout fires and nothing supplied a value (default
    /// `503 Service Unavailable`). Takes precedence over
    /// [`error_response`](Self::error_response) for [`AsyncError::Timeout`].
    pub fn timeout_response<F>(mut self, respond: F) -> Self
    where
        F: Fn(&AsyncError) -> Response + Send + Sync + 'static,
    {
        self.timeout_response = Some(Arc::new(respond));
        self
    }

    /// The executor that runs blocking `Callable`s and `WebAsyncTask`s (Spring's
    /// `setTaskExecutor`). Without one, [`AsyncTaskExecutor::default`] is created on first use.
    pub fn task_executor(mut self, executor: AsyncTaskExecutor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Adds a [`CallableProcessingInterceptor`]; they run in registration order (Spring's
    /// `registerCallableInterceptors`).
    pub fn callable_interceptor(mut self, interceptor: impl CallableProcessingInterceptor) -> Self {
        self.interceptors.push_callable(Arc::new(interceptor));
        self
    }

    /// Adds a [`DeferredResultProcessingInterceptor`]; they run in registration order (Spring's
    /// `registerDeferredResultInterceptors`).
    pub fn deferred_result_interceptor(
        mut self,
        interceptor: impl DeferredResultProcessingInterceptor,
    ) -> Self {
        self.interceptors.push_deferred(Arc::new(interceptor));
        self
    }

    /// Adds an [`AsyncHandlerInterceptor`], told whenever async processing starts.
    pub fn handler_interceptor(mut self, interceptor: impl AsyncHandlerInterceptor) -> Self {
        self.interceptors.push_handler(Arc::new(interceptor));
        self
    }

    /// The configured default timeout; `None` means async requests wait forever by default.
    pub fn get_default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    /// The configured executor, if any.
    pub(crate) fn get_executor(&self) -> Option<&AsyncTaskExecutor> {
        self.executor.as_ref()
    }

    /// The registered interceptors.
    pub(crate) fn get_interceptors(&self) -> &Interceptors {
        &self.interceptors
    }

    /// The admission limit, if any.
    pub(crate) fn get_max_concurrent(&self) -> Option<usize> {
        self.max_concurrent
    }

    /// How long a refused client is told to wait.
    pub(crate) fn get_retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How long running tasks may finish once a shutdown begins.
    pub(crate) fn get_shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// The encoded event an SSE stream ends with at shutdown, if any.
    pub(crate) fn get_shutdown_event(&self) -> Option<&Bytes> {
        self.shutdown_event.as_ref()
    }

    /// The mapping that renders `error`: the timeout response for a timeout, else the error
    /// response; `None` for the error's own `IntoResponse`.
    pub(crate) fn responder(&self, error: &AsyncError) -> Option<&ErrorResponder> {
        match error {
            AsyncError::Timeout { .. } => self.timeout_response.as_deref(),
            _ => None,
        }
        .or(self.error_response.as_deref())
    }
}

impl Default for AsyncConfig {
    fn default() -> Self {
        AsyncConfig::new()
    }
}

impl fmt::Debug for AsyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncConfig")
            .field("default_timeout", &self.default_timeout)
            .field("executor", &self.executor)
            .field("interceptors", &self.interceptors)
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}
