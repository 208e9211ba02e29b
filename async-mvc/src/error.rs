//! The public error type of the async request lifecycle.

use std::time::Duration;

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{
    header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER},
    HeaderValue, StatusCode,
};

/// The message of [`AsyncError::NotSupported`], also the body of the placeholder response an
/// async value renders to (a `&'static str`, so the placeholder costs no allocation).
pub(crate) const NOT_SUPPORTED: &str = "this handler returned an async value, but the router \
    has no async support: register the route through `Router::controller(..)`, or add \
    `.async_support(AsyncConfig::default())` (or `AsyncSupportLayer`) to the router";

/// What went wrong while an async request was being processed.
///
/// Spring MVC counterparts: `AsyncRequestTimeoutException` ([`AsyncError::Timeout`]),
/// `RejectedExecutionException` ([`AsyncError::Rejected`]), an exception thrown by a
/// `Callable` ([`AsyncError::TaskPanicked`]) and `AsyncRequestNotUsableException`
/// ([`AsyncError::ClientDisconnected`]).
///
/// Every variant implements [`IntoResponse`]. The manager renders the errors it produces through
/// [`AsyncConfig::error_response`](crate::AsyncConfig::error_response), the role of an
/// `@ExceptionHandler` for these exceptions; without one, through this `IntoResponse`.
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
    /// The task executor was busy and its queue full, so the task was refused at once. Rendered
    /// as `503 Service Unavailable` with `Retry-After` (in whole seconds, at least 1).
    #[error("the async task executor is busy; retry after {} ms", .retry_after.as_millis())]
    Rejected {
        /// How long the client should wait before retrying.
        retry_after: Duration,
    },
    /// More async requests are in flight than the limit allows
    /// ([`AsyncConfig::max_concurrent`](crate::AsyncConfig::max_concurrent) or an
    /// [`AsyncLimitLayer`](crate::AsyncLimitLayer)): refused at once, so requests already
    /// admitted are untouched. Rendered as `503 Service Unavailable` with `Retry-After`.
    #[error("too many async requests in flight (limit {limit}); retry after {} ms", .retry_after.as_millis())]
    Overloaded {
        /// The limit that was reached.
        limit: usize,
        /// How long the client should wait before retrying.
        retry_after: Duration,
    },
    /// The server is shutting down ([`AsyncManager::shutdown`](crate::AsyncManager::shutdown)):
    /// new async requests are refused, pending ones complete. Rendered as
    /// `503 Service Unavailable` with `Connection: close`.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The task panicked (Spring: the `Callable` threw). Rendered as `500 Internal Server
    /// Error`; the panic message is logged, never sent to the client.
    #[error("the async task panicked: {message}")]
    TaskPanicked {
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The client closed the connection before the result was sent (Spring's
    /// `AsyncRequestNotUsableException`). No response reaches the client; it is rendered as
    /// `499` only for logs and middleware.
    #[error("the client disconnected before the async result was sent")]
    ClientDisconnected,
    /// A stream was given up because its client read too slowly: its buffer stayed full for
    /// `after` (an [`SseBroadcaster`](crate::SseBroadcaster) subscriber). Passed to the
    /// emitter's `on_error`; the client sees its stream end abruptly (an `EventSource`
    /// reconnects with its last event id). Rendered as `503` only for logs and middleware.
    #[error("the client read too slowly: its stream was given up after {} ms with a full buffer", .after.as_millis())]
    SlowConsumer {
        /// How long the buffer had been full.
        after: Duration,
    },
    /// The handler returned an async value, but no async manager was installed on the route.
    /// Rendered as `500 Internal Server Error` with a body that names the fix.
    #[error("{}", NOT_SUPPORTED)]
    NotSupported,
}

impl AsyncError {
    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AsyncError::Timeout { .. }
            | AsyncError::Rejected { .. }
            | AsyncError::Overloaded { .. }
            | AsyncError::ShuttingDown
            | AsyncError::SlowConsumer { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AsyncError::ClientDisconnected => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
            }
            AsyncError::TaskPanicked { .. } | AsyncError::NotSupported => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl AsyncError {
    /// This error as a `text/plain` response with its message as the body.
    ///
    /// The message is written on the stack and copied once: `to_string` grew a `String` twice
    /// and `Bytes` then allocated again for the spare capacity — three allocations for every
    /// timed-out or rejected request (`per_request timeout-async-mvc`).
    fn message_response(&self) -> Response {
        use std::fmt::Write;
        let mut message = StackText::default();
        let body = match write!(message, "{self}") {
            Ok(()) => Bytes::copy_from_slice(message.as_bytes()),
            // Longer than the buffer (a long panic message, say): the general way.
            Err(_) => Bytes::from(self.to_string()),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// Text written into a fixed buffer on the stack; a write that does not fit fails.
struct StackText {
    buffer: [u8; 192],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buffer: [0; 192],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.buffer.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl IntoResponse for AsyncError {
    fn into_response(self) -> Response {
        match self {
            AsyncError::Rejected { retry_after } | AsyncError::Overloaded { retry_after, .. } => {
                // Whole seconds on the wire (RFC 9110), rounded up, at least 1.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut response = self.message_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                response
            }
            AsyncError::ShuttingDown => {
                let mut response = self.message_response();
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                response
            }
            AsyncError::TaskPanicked { .. } => {
                (self.status(), "the async task failed").into_response()
            }
            _ => self.message_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_carries_retry_after_in_whole_seconds() {
        for (hint, header) in [(1_000, "1"), (1_500, "2"), (0, "1"), (30_000, "30")] {
            let response = AsyncError::Rejected {
                retry_after: Duration::from_millis(hint),
            }
            .into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], header, "{hint} ms");
        }
    }

    #[tokio::test]
    async fn the_message_is_the_text_body() {
        let response = AsyncError::Timeout {
            after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .expect("body");
        assert_eq!(&body[..], b"async request timed out after 1500 ms");
        // Longer than the stack buffer: the same, written the general way.
        assert!(NOT_SUPPORTED.len() > 192);
        let response = AsyncError::NotSupported.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .expect("body");
        assert_eq!(body, NOT_SUPPORTED.as_bytes());
    }

    #[test]
    fn panic_message_stays_on_the_server() {
        let error = AsyncError::TaskPanicked {
            message: "secret detail".into(),
        };
        assert!(error.to_string().contains("secret detail"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
