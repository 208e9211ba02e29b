//! The lifecycle of one streaming response (emitters, SSE, `StreamingResponseBody`, reactive
//! streams), on the manager's services: admitted, then counted as pending from the moment the
//! head is sent until the body ([`StreamBody`]) ends.

use std::time::Duration;

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{header::CONTENT_TYPE, HeaderMap, StatusCode};

use super::body::{OnShutdown, Source, StreamBody, StreamLifecycle};
use crate::{error::AsyncError, interceptor::AsyncRequest, manager::AsyncManager};

/// How a streaming response is served.
pub(super) struct StreamSpec {
    pub(super) source: Box<dyn Source>,
    pub(super) headers: HeaderMap,
    /// `None`: no timeout.
    pub(super) timeout: Option<Duration>,
    /// A comment written after each idle interval (SSE).
    pub(super) heartbeat: Option<(Duration, Bytes)>,
}

/// The response head at once, and a body that carries the lifecycle; or the refusal, if the
/// stream is not admitted (`204 No Content` for SSE during a shutdown, so that `EventSource`
/// stops reconnecting).
pub(super) fn stream_response(
    manager: &AsyncManager,
    request: &AsyncRequest,
    spec: StreamSpec,
) -> Response {
    let sse = spec
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    let pending = match manager.clone().admit() {
        Ok(pending) => pending,
        Err(refused) => {
            let mut source = spec.source;
            source.finish(Some(refused.error()));
            if sse && matches!(refused.error(), AsyncError::ShuttingDown) {
                return StatusCode::NO_CONTENT.into_response();
            }
            return refused.response();
        }
    };
    manager.concurrent_handling_started(request);
    let lifecycle = StreamLifecycle::new(pending, manager.clone(), request.path().to_owned(), sse);
    let on_shutdown = OnShutdown::new(
        manager.shutdown_token().clone().cancelled_owned(),
        manager
            .config()
            .get_shutdown_event()
            .cloned()
            .filter(|_| sse),
    );
    let body = StreamBody::new(
        spec.source,
        lifecycle,
        spec.timeout,
        spec.heartbeat,
        on_shutdown,
    );
    let mut response = Response::new(Body::new(body));
    *response.headers_mut() = spec.headers;
    response
}
