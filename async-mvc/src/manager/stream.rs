//! The lifecycle of one streaming response (emitters, SSE, `StreamingResponseBody`, reactive
//! streams): counted as pending from the moment the head is sent until the body ends.

use std::time::Duration;

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{header::CONTENT_TYPE, HeaderMap, StatusCode};

use super::{AsyncManager, Pending, Refused};
use crate::{
    emitter::{OnShutdown, Source, StreamBody},
    interceptor::concurrent_handling_started,
    AsyncError, AsyncRequest,
};

/// How a streaming response is served.
pub(crate) struct StreamSpec {
    pub(crate) source: Box<dyn Source>,
    pub(crate) headers: HeaderMap,
    /// `None`: no timeout.
    pub(crate) timeout: Option<Duration>,
    /// A comment written after each idle interval (SSE).
    pub(crate) heartbeat: Option<(Duration, Bytes)>,
}

impl AsyncManager {
    /// The response head at once, and a body that carries the lifecycle; or the refusal, if
    /// the stream is not admitted (`204 No Content` for SSE during a shutdown, so that
    /// `EventSource` stops reconnecting).
    pub(crate) fn stream_response(&self, request: &AsyncRequest, spec: StreamSpec) -> Response {
        let sse = spec
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        let pending = match Pending::admit(self.clone()) {
            Ok(pending) => pending,
            Err(Refused { error: refused, .. }) => {
                let mut source = spec.source;
                source.finish(Some(&refused));
                if sse && matches!(refused, AsyncError::ShuttingDown) {
                    return StatusCode::NO_CONTENT.into_response();
                }
                return self.error_response(&refused);
            }
        };
        concurrent_handling_started(&self.config().interceptors, request);
        let lifecycle = StreamLifecycle {
            _pending: pending,
            manager: self.clone(),
            path: request.path().to_owned(),
        };
        let on_shutdown = OnShutdown {
            signal: self.shutdown_token().clone().cancelled_owned(),
            final_frame: self.config().shutdown_event.clone().filter(|_| sse),
        };
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
}

/// Counts one open stream and how it ended.
pub(crate) struct StreamLifecycle {
    _pending: Pending,
    manager: AsyncManager,
    path: String,
}

impl StreamLifecycle {
    /// Counts the timeout when called: for the body's timer task, which runs apart from it.
    pub(crate) fn timeout_counter(&self) -> impl FnOnce() + Send + 'static {
        let (manager, path) = (self.manager.clone(), self.path.clone());
        move || {
            manager.count(|c| &c.timed_out);
            tracing::debug!(path = %path, "streaming response timed out");
        }
    }

    pub(crate) fn completed(self, failed: bool) {
        self.manager.count(|c| &c.completed);
        if failed {
            self.manager.count(|c| &c.errors);
            tracing::warn!(path = %self.path, "streaming response aborted by an error");
        }
    }

    pub(crate) fn disconnected(self) {
        self.manager.count(|c| &c.disconnected);
        tracing::debug!(path = %self.path, "client disconnected from a streaming response");
    }
}
