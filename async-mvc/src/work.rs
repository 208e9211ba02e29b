//! The hand-off from a handler's return value to the async manager.
//!
//! `IntoResponse::into_response` cannot see the router's [`AsyncManager`], so an async return
//! value renders a *placeholder* response — `500` naming the fix — that carries an
//! [`AsyncWork`] extension. The [`AsyncSupport`](crate::AsyncSupport) middleware takes the
//! extension out and lets the manager drive it; without that middleware the placeholder is sent
//! and the work is dropped, which expires it. Never a hang.
//!
//! Status and headers that a wrapper put on the placeholder, as in
//! `(StatusCode::CREATED, [("x-id", "7")], deferred)`, are applied to the final response (the
//! placeholder has no headers of its own, and a status other than its `500` is the wrapper's).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{body::Body, response::Response};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue, StatusCode};

use crate::{AsyncError, AsyncManager, AsyncRequest};

/// The future that produces an async request's response.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// An async return value waiting for its manager.
pub(crate) trait StartAsync: Send {
    /// Begins async processing of `request` under `manager`; the future resolves to the final
    /// response.
    fn start(self: Box<Self>, manager: AsyncManager, request: AsyncRequest) -> ResponseFuture;
}

type Slot = Arc<Mutex<Option<Box<dyn StartAsync>>>>;

/// Response extension carrying async work from `into_response` to the middleware.
///
/// `http::Extensions` needs `Clone + Sync`, hence the shared slot: whoever takes it first runs
/// it; a clone finds it empty.
#[derive(Clone)]
pub(crate) struct AsyncWork(Slot);

/// What a wrapper set on the placeholder: applied to the final response.
#[derive(Debug, Default)]
pub(crate) struct WrapperParts {
    status: Option<StatusCode>,
    headers: HeaderMap,
}

impl WrapperParts {
    pub(crate) fn apply(self, mut response: Response) -> Response {
        if let Some(status) = self.status {
            *response.status_mut() = status;
        }
        // The wrapper's headers replace the value's; repeated ones (no name) are appended.
        let mut current = None;
        for (name, value) in self.headers {
            match name {
                Some(name) => {
                    response.headers_mut().insert(name.clone(), value);
                    current = Some(name);
                }
                None => {
                    if let Some(name) = &current {
                        response.headers_mut().append(name.clone(), value);
                    }
                }
            }
        }
        response
    }
}

impl AsyncWork {
    /// The placeholder response carrying `work`.
    pub(crate) fn response(work: Box<dyn StartAsync>) -> Response {
        let mut response = Response::new(Body::from(crate::error::NOT_SUPPORTED));
        *response.status_mut() = AsyncError::NotSupported.status();
        response
            .extensions_mut()
            .insert(AsyncWork(Arc::new(Mutex::new(Some(work)))));
        response
    }

    fn slot(response: &Response) -> Option<&Slot> {
        response.extensions().get::<AsyncWork>().map(|work| &work.0)
    }

    /// Removes the async work from `response`, with what a wrapper set on it.
    pub(crate) fn take(response: &mut Response) -> Option<(Box<dyn StartAsync>, WrapperParts)> {
        let work = response.extensions_mut().remove::<AsyncWork>()?;
        let work = work
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let status = response.status();
        let parts = WrapperParts {
            status: (status != AsyncError::NotSupported.status()).then_some(status),
            headers: std::mem::take(response.headers_mut()),
        };
        Some((work, parts))
    }

    /// Sets `Content-Type: content_type` on the response unless it already has one — now for
    /// a plain response, or once the async work has produced its response (`produces`). Async
    /// work also learns the route's `produces`, to choose how to stream.
    pub(crate) fn default_content_type(
        mut response: Response,
        content_type: HeaderValue,
    ) -> Response {
        if Self::slot(&response).is_none() {
            response
                .headers_mut()
                .entry(CONTENT_TYPE)
                .or_insert(content_type);
            return response;
        }
        Self::wrap(response, |work| {
            Box::new(WithContentType { work, content_type })
        })
    }

    /// If `response` carries async work, replaces it with `wrap(work)`; the response itself
    /// (status and headers a wrapper set) is kept.
    pub(crate) fn wrap(
        response: Response,
        wrap: impl FnOnce(Box<dyn StartAsync>) -> Box<dyn StartAsync>,
    ) -> Response {
        if let Some(slot) = Self::slot(&response) {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(work) = slot.take() {
                *slot = Some(wrap(work));
            }
        }
        response
    }

    /// Whether `response` carries async work not yet started.
    pub(crate) fn is_async(response: &Response) -> bool {
        Self::slot(response).is_some()
    }
}

impl fmt::Debug for AsyncWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncWork")
    }
}

/// Async work whose final response gets a default `Content-Type`: the route's `produces`.
struct WithContentType {
    work: Box<dyn StartAsync>,
    content_type: HeaderValue,
}

impl StartAsync for WithContentType {
    fn start(self: Box<Self>, manager: AsyncManager, request: AsyncRequest) -> ResponseFuture {
        let WithContentType { work, content_type } = *self;
        let request = request.with_produces(Some(content_type.clone()));
        let response = work.start(manager, request);
        Box::pin(async move {
            let mut response = response.await;
            response
                .headers_mut()
                .entry(CONTENT_TYPE)
                .or_insert(content_type);
            response
        })
    }
}
