//! Paths used by the code `#[async_controller]` generates. Not public API.

pub use axum::routing::{MethodFilter, MethodRouter};
pub use axum::Router;
pub use http::HeaderValue;
pub use std::sync::Arc;

use axum::response::{IntoResponse, Response};

/// Renders a controller method's return value.
#[inline]
pub fn respond<R: IntoResponse>(value: R) -> Response {
    value.into_response()
}

/// Renders a controller method's return value, with `Content-Type: content_type` where the value
/// leaves it open (the route's `produces`). The macro passes a `const` built with
/// `HeaderValue::from_static`, so an invalid media type is a compile error.
#[inline]
pub fn respond_producing<R: IntoResponse>(value: R, content_type: HeaderValue) -> Response {
    crate::work::AsyncWork::default_content_type(value.into_response(), content_type)
}
