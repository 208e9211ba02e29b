//! [`ApiError`]: the order desk's error responses.

use std::time::Duration;

use async_mvc::cluster::ReplyError;
use axum::{
    http::{header::RETRY_AFTER, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

/// An error the API answers with, rendered as `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No order has this id: `404 Not Found`.
    NotFound(String),
    /// The body was well-formed but its values are not acceptable: `422 Unprocessable Entity`.
    Invalid(String),
    /// The work behind the request did not finish in time: `503 Service Unavailable`.
    Unavailable(String),
    /// Nobody can take the work now (no worker listening, too many requests waiting, the
    /// broker down): `503 Service Unavailable` with `Retry-After` (whole seconds).
    Busy {
        /// What is missing.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The worker that took the work failed: `502 Bad Gateway`.
    Upstream(String),
}

impl From<ReplyError> for ApiError {
    fn from(error: ReplyError) -> Self {
        let message = error.to_string();
        match error {
            ReplyError::NoResponders { retry_after, .. }
            | ReplyError::Overloaded { retry_after, .. } => ApiError::Busy {
                message,
                retry_after,
            },
            ReplyError::Broker(_) => ApiError::Busy {
                message,
                retry_after: Duration::from_secs(1),
            },
            _ => ApiError::Upstream(message),
        }
    }
}

impl ApiError {
    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut retry = None;
        let message = match self {
            ApiError::NotFound(id) => format!("no order with id `{id}`"),
            ApiError::Invalid(message)
            | ApiError::Unavailable(message)
            | ApiError::Upstream(message) => message,
            ApiError::Busy {
                message,
                retry_after,
            } => {
                retry = Some(retry_after);
                message
            }
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if let Some(after) = retry {
            let seconds = (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
