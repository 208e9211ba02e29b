//! [`AsyncConfig`]: the settings of an [`AsyncManager`](crate::AsyncManager).

use std::{fmt, sync::Arc, time::Duration};

use axum::response::{IntoResponse, Response};

use crate::AsyncError;

/// The default timeout of an async request: 30 seconds (Spring leaves it to the servlet
/// container, whose usual default is 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

type TimeoutResponder = dyn Fn(&AsyncError) -> Response + Send + Sync;

/// Settings shared by every async request of a router: Spring MVC's `AsyncSupportConfigurer`.
///
/// Build it with consuming setters and hand it to
/// [`RouterExt::async_support`](crate::RouterExt::async_support):
///
/// ```
/// use std::time::Duration;
/// use async_mvc::AsyncConfig;
/// use axum::http::StatusCode;
///
/// let config = AsyncConfig::new()
///     .default_timeout(Duration::from_secs(10))
///     .timeout_response(|_| (StatusCode::GATEWAY_TIMEOUT, "try again").into_response());
/// # use axum::response::IntoResponse;
/// ```
#[derive(Clone)]
#[must_use]
pub struct AsyncConfig {
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) timeout_response: Arc<TimeoutResponder>,
}

impl AsyncConfig {
    /// The default settings: a [`DEFAULT_TIMEOUT`] of 30 s, and `503 Service Unavailable` when
    /// a timeout produces no result.
    pub fn new() -> Self {
        AsyncConfig {
            default_timeout: Some(DEFAULT_TIMEOUT),
            timeout_response: Arc::new(|error: &AsyncError| error.clone().into_response()),
        }
    }

    /// How long an async request may stay pending when its own value sets no timeout
    /// (Spring's `setDefaultTimeout`, there in ms). `None` means no timeout at all.
    ///
    /// The window opens when the handler returns and closes when the result is rendered.
    pub fn default_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.default_timeout = timeout.into();
        self
    }

    /// The response sent when a timeout fires and neither a timeout result nor an `on_timeout`
    /// callback supplied a value. The default is `503 Service Unavailable` (Spring's
    /// `AsyncRequestTimeoutException`); this is the role of an `@ExceptionHandler` for it.
    ///
    /// The function gets the [`AsyncError::Timeout`] that fired.
    pub fn timeout_response<F>(mut self, respond: F) -> Self
    where
        F: Fn(&AsyncError) -> Response + Send + Sync + 'static,
    {
        self.timeout_response = Arc::new(respond);
        self
    }

    /// The configured default timeout; `None` means async requests wait forever by default.
    pub fn get_default_timeout(&self) -> Option<Duration> {
        self.default_timeout
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
            .finish_non_exhaustive()
    }
}
