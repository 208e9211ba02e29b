//! Paths used by the code `#[async_controller]` generates. Not public API.

pub use axum::routing::{MethodFilter, MethodRouter};
pub use axum::Router;
pub use http::HeaderValue;
pub use std::sync::Arc;

#[cfg(feature = "macros")]
pub use async_mvc_macros::__async_mvc_controller_method;

use axum::{
    extract::{FromRequest, FromRequestParts},
    response::{IntoResponse, Response},
};

/// Compiles only if `T` extracts from the request head with state `S`: a controller method's
/// argument before the last. The macro spans the call on the argument's type, so a type that
/// is no extractor is reported there.
#[inline]
pub fn parts_extractor<T: FromRequestParts<S>, S>() {}

/// Compiles only if `T` extracts from the whole request with state `S` (a body extractor, or a
/// head one): a controller method's last argument.
#[inline]
pub fn extractor<T: FromRequest<S, M>, S, M>() {}

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
