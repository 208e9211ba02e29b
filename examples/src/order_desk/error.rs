//! [`ApiError`]: the order desk's error responses.

use axum::{
    http::StatusCode,
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
}

impl ApiError {
    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match self {
            ApiError::NotFound(id) => format!("no order with id `{id}`"),
            ApiError::Invalid(message) | ApiError::Unavailable(message) => message,
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}
