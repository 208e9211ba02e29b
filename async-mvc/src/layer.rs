//! [`AsyncSupportLayer`]: the tower middleware that hands async return values to the manager.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::{extract::Request, response::Response};
use tower::{Layer, Service};

use crate::{
    work::{AsyncWork, ResponseFuture as AsyncResponseFuture},
    AsyncManager,
};

/// A tower [`Layer`] that gives the routes it wraps async support: a `DeferredResult` (or any
/// async return value) they return is driven by its [`AsyncManager`] to the final response.
///
/// [`RouterExt::async_support`](crate::RouterExt::async_support) is the usual way to add it;
/// `router.layer(AsyncSupportLayer::new(config))` is the same thing. Following axum's
/// [`Router::layer`](axum::Router::layer), it applies to the routes added *before* it.
///
/// The innermost layer with a manager wins, so a nested router may have settings of its own.
/// Spring MVC counterpart: enabling async support on the `DispatcherServlet`.
#[derive(Debug, Clone)]
#[must_use]
pub struct AsyncSupportLayer {
    manager: Option<AsyncManager>,
}

impl AsyncSupportLayer {
    /// Async support driven by `manager` (an [`AsyncManager`] or an
    /// [`AsyncConfig`](crate::AsyncConfig)).
    pub fn new(manager: impl Into<AsyncManager>) -> Self {
        AsyncSupportLayer {
            manager: Some(manager.into()),
        }
    }

    /// Async support by the manager of an enclosing `AsyncSupportLayer`, else
    /// [`AsyncManager::shared_default`]. This is what controllers are registered with.
    pub(crate) fn inherited() -> Self {
        AsyncSupportLayer { manager: None }
    }
}

impl<S> Layer<S> for AsyncSupportLayer {
    type Service = AsyncSupport<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncSupport {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The [`Service`] made by [`AsyncSupportLayer`].
#[derive(Debug, Clone)]
pub struct AsyncSupport<S> {
    inner: S,
    manager: Option<AsyncManager>,
}

impl<S> Service<Request> for AsyncSupport<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let manager = match &self.manager {
            Some(manager) => {
                request.extensions_mut().insert(manager.clone());
                manager.clone()
            }
            None => request
                .extensions()
                .get::<AsyncManager>()
                .cloned()
                .unwrap_or_else(AsyncManager::shared_default),
        };
        ResponseFuture {
            state: State::Handler {
                future: self.inner.call(request),
                manager: Some(manager),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AsyncSupport`]: the handler's, then the async work's.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Handler { #[pin] future: F, manager: Option<AsyncManager> },
        Async { future: AsyncResponseFuture },
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Handler { future, manager } => {
                    let Ok(mut response) = ready!(future.poll(cx));
                    let Some(work) = AsyncWork::take(&mut response) else {
                        return Poll::Ready(Ok(response));
                    };
                    let manager = manager.take().unwrap_or_else(AsyncManager::shared_default);
                    let future = work.start(manager);
                    this.state.set(State::Async { future });
                }
                StateProj::Async { future } => return future.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
