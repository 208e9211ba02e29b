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
    task::{Context, Poll},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue, StatusCode};

use crate::{error::AsyncError, interceptor::AsyncRequest, manager::AsyncManager, telemetry::Kind};

/// The future that produces an async request's response: already known (no allocation), or
/// waiting.
pub(crate) enum WorkFuture {
    Ready(Option<Response>),
    Waiting(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl WorkFuture {
    /// A response that is already known.
    pub(crate) fn ready(response: Response) -> Self {
        WorkFuture::Ready(Some(response))
    }

    /// A response that `future` produces.
    pub(crate) fn waiting(future: impl Future<Output = Response> + Send + 'static) -> Self {
        WorkFuture::Waiting(Box::pin(future))
    }

    /// The response, passed through `f` once it is known.
    pub(crate) fn map(self, f: impl FnOnce(Response) -> Response + Send + 'static) -> Self {
        match self {
            WorkFuture::Ready(response) => WorkFuture::Ready(response.map(f)),
            WorkFuture::Waiting(future) => WorkFuture::waiting(async move { f(future.await) }),
        }
    }
}

impl Future for WorkFuture {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.get_mut() {
            // Taken only once: the layer does not poll a finished future. If something did, it
            // is a bug: a panic in debug builds, `500` in release (axum's habit).
            WorkFuture::Ready(response) => Poll::Ready(response.take().unwrap_or_else(|| {
                debug_assert!(false, "WorkFuture polled after it completed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            })),
            WorkFuture::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// An async return value waiting for its manager.
pub(crate) trait StartAsync: Send + 'static {
    /// Begins async processing of `request` under `manager`; the future resolves to the final
    /// response.
    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture;

    /// What kind of value it is, for metrics and traces.
    fn kind(&self) -> Kind;
}

/// The shared slot behind [`AsyncWork`], type-erased; one allocation holds it and the work.
trait Slot: Send + Sync {
    /// Starts the work, unless a clone of the extension already took it.
    fn start(&self, manager: AsyncManager, request: AsyncRequest) -> Option<WorkFuture>;

    /// Whether the work was taken.
    fn is_taken(&self) -> bool;

    /// The work's kind (`None` once taken).
    fn kind(&self) -> Option<Kind>;
}

impl<W: StartAsync> Slot for Mutex<Option<W>> {
    fn start(&self, manager: AsyncManager, request: AsyncRequest) -> Option<WorkFuture> {
        let work = self.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        Some(work.start(manager, request))
    }

    fn is_taken(&self) -> bool {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn kind(&self) -> Option<Kind> {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(StartAsync::kind)
    }
}

/// Response extension carrying async work from `into_response` to the middleware.
///
/// `http::Extensions` needs `Clone + Sync`, hence the shared slot: whoever starts it first runs
/// it; a clone finds it taken.
#[derive(Clone)]
pub(crate) struct AsyncWork(Arc<dyn Slot>);

impl StartAsync for AsyncWork {
    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        self.0
            .start(manager, request)
            .unwrap_or_else(|| WorkFuture::ready(AsyncError::NotSupported.into_response()))
    }

    fn kind(&self) -> Kind {
        self.0.kind().unwrap_or(Kind::Sync)
    }
}

/// What a wrapper set on the placeholder: applied to the final response.
#[derive(Debug, Default)]
pub(crate) struct WrapperParts {
    status: Option<StatusCode>,
    headers: HeaderMap,
}

impl WrapperParts {
    /// The `Content-Type` the wrapper set, if any.
    pub(crate) fn content_type(&self) -> Option<&HeaderValue> {
        self.headers.get(CONTENT_TYPE)
    }

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
    fn new(work: impl StartAsync) -> Self {
        AsyncWork(Arc::new(Mutex::new(Some(work))))
    }

    /// The placeholder response carrying `work`.
    pub(crate) fn response(work: impl StartAsync) -> Response {
        let mut response = Response::new(Body::from(crate::error::NOT_SUPPORTED));
        *response.status_mut() = AsyncError::NotSupported.status();
        response.extensions_mut().insert(AsyncWork::new(work));
        response
    }

    /// Removes the async work from `response`, with what a wrapper set on it (`None`: nothing).
    pub(crate) fn take(response: &mut Response) -> Option<(AsyncWork, Option<WrapperParts>)> {
        // A clone of the extension that already started the work is not checked for here (it
        // would cost a second lock on every async request): starting it again answers
        // `AsyncError::NotSupported`, the placeholder's own status and text.
        let work = response.extensions_mut().remove::<AsyncWork>()?;
        let status = response.status();
        let status = (status != AsyncError::NotSupported.status()).then_some(status);
        if status.is_none() && response.headers().is_empty() {
            return Some((work, None));
        }
        let parts = WrapperParts {
            status,
            headers: std::mem::take(response.headers_mut()),
        };
        Some((work, Some(parts)))
    }

    /// Sets `Content-Type: content_type` on the response unless it already has one — now for
    /// a plain response, or once the async work has produced its response (`produces`). Async
    /// work also learns the route's `produces`, to choose how to stream.
    pub(crate) fn default_content_type(
        mut response: Response,
        content_type: HeaderValue,
    ) -> Response {
        if !Self::is_async(&response) {
            response
                .headers_mut()
                .entry(CONTENT_TYPE)
                .or_insert(content_type);
            return response;
        }
        Self::wrap(response, |work| WithContentType { work, content_type })
    }

    /// If `response` carries async work, replaces it with `wrap(work)`; the response itself
    /// (status and headers a wrapper set) is kept.
    pub(crate) fn wrap<W: StartAsync>(
        mut response: Response,
        wrap: impl FnOnce(AsyncWork) -> W,
    ) -> Response {
        if let Some(work) = response.extensions_mut().remove::<AsyncWork>() {
            if !work.0.is_taken() {
                response.extensions_mut().insert(AsyncWork::new(wrap(work)));
            }
        }
        response
    }

    /// Whether `response` carries async work not yet started.
    pub(crate) fn is_async(response: &Response) -> bool {
        response
            .extensions()
            .get::<AsyncWork>()
            .is_some_and(|work| !work.0.is_taken())
    }
}

impl fmt::Debug for AsyncWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncWork")
    }
}

/// Async work whose final response gets a default `Content-Type`: the route's `produces`.
struct WithContentType {
    work: AsyncWork,
    content_type: HeaderValue,
}

impl StartAsync for WithContentType {
    fn kind(&self) -> Kind {
        self.work.kind()
    }

    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        let WithContentType { work, content_type } = self;
        let request = request.with_produces(Some(content_type.clone()));
        work.start(manager, request).map(move |mut response| {
            response
                .headers_mut()
                .entry(CONTENT_TYPE)
                .or_insert(content_type);
            response
        })
    }
}
