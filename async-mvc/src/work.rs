//! The hand-off from a handler's return value to the async manager.
//!
//! `IntoResponse::into_response` cannot see the router's [`AsyncManager`], so an async return
//! value renders a *placeholder* response — `500` naming the fix — that carries an
//! [`AsyncWork`] extension. The [`AsyncSupport`](crate::AsyncSupport) middleware takes the
//! extension out and lets the manager drive it; without that middleware the placeholder is sent
//! and the work is dropped, which expires it. Never a hang.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use axum::response::{IntoResponse, Response};
use http::{header::CONTENT_TYPE, HeaderValue};

use crate::{AsyncError, AsyncManager, AsyncRequest};

/// The future that produces an async request's response.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// An async return value waiting for its manager.
pub(crate) trait StartAsync: Send {
    /// Begins async processing of `request` under `manager`; the future resolves to the final
    /// response.
    fn start(self: Box<Self>, manager: AsyncManager, request: AsyncRequest) -> ResponseFuture;
}

/// Response extension carrying async work from `into_response` to the middleware.
///
/// `http::Extensions` needs `Clone + Sync`, hence the shared slot: whoever takes it first runs
/// it; a clone finds it empty.
#[derive(Clone)]
pub(crate) struct AsyncWork(Arc<Mutex<Option<Box<dyn StartAsync>>>>);

impl AsyncWork {
    /// The placeholder response carrying `work`.
    pub(crate) fn response(work: Box<dyn StartAsync>) -> Response {
        let mut response = AsyncError::NotSupported.into_response();
        response
            .extensions_mut()
            .insert(AsyncWork(Arc::new(Mutex::new(Some(work)))));
        response
    }

    /// Removes the async work from `response`, if it carries any.
    pub(crate) fn take(response: &mut Response) -> Option<Box<dyn StartAsync>> {
        let work = response.extensions_mut().remove::<AsyncWork>()?;
        let mut slot = work.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.take()
    }

    /// Sets `Content-Type: content_type` on the response unless it already has one — now for
    /// a plain response, or once the async work has produced its response (`produces`).
    pub(crate) fn default_content_type(
        mut response: Response,
        content_type: HeaderValue,
    ) -> Response {
        match Self::take(&mut response) {
            Some(work) => AsyncWork::response(Box::new(WithContentType { work, content_type })),
            None => {
                set_default_content_type(&mut response, content_type);
                response
            }
        }
    }
}

impl fmt::Debug for AsyncWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncWork")
    }
}

fn set_default_content_type(response: &mut Response, content_type: HeaderValue) {
    response
        .headers_mut()
        .entry(CONTENT_TYPE)
        .or_insert(content_type);
}

/// Async work whose final response gets a default `Content-Type`.
struct WithContentType {
    work: Box<dyn StartAsync>,
    content_type: HeaderValue,
}

impl StartAsync for WithContentType {
    fn start(self: Box<Self>, manager: AsyncManager, request: AsyncRequest) -> ResponseFuture {
        let WithContentType { work, content_type } = *self;
        let response = work.start(manager, request);
        Box::pin(async move {
            let mut response = response.await;
            set_default_content_type(&mut response, content_type);
            response
        })
    }
}
