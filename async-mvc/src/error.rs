//! The public error type of the async request lifecycle.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// What went wrong while an async request was being processed.
///
/// Spring MVC counterpart: `AsyncRequestTimeoutException` ([`AsyncError::Timeout`]) and
/// `AsyncRequestNotUsableException` ([`AsyncError::ClientDisconnected`]).
///
/// Every variant implements [`IntoResponse`], so a handler or a
/// [`DeferredResult`](crate::DeferredResult) may use it as its error type. The response a
/// timeout produces can be replaced with
/// [`AsyncConfig::timeout_response`](crate::AsyncConfig::timeout_response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncError {
    /// The async request was not completed within its timeout and nothing supplied a timeout
    /// result. Rendered as `503 Service Unavailable` (Spring's `AsyncRequestTimeoutException`).
    #[error("async request timed out after {} ms", .after.as_millis())]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The client closed the connection before the result was sent (Spring's
    /// `AsyncRequestNotUsableException`). No response reaches the client; it is rendered as
    /// `499` only for logs and middleware.
    #[error("the client disconnected before the async result was sent")]
    ClientDisconnected,
    /// The handler returned an async value, but no async manager was installed on the route.
    /// Rendered as `500 Internal Server Error` with a body that names the fix.
    #[error(
        "this handler returned an async value, but the router has no async support: register \
         the route through `Router::controller(..)`, or add \
         `.async_support(AsyncConfig::default())` (or `AsyncSupportLayer`) to the router"
    )]
    NotSupported,
}

impl AsyncError {
    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AsyncError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AsyncError::ClientDisconnected => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
            }
            AsyncError::NotSupported => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AsyncError {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}
