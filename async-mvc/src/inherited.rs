//! The layer [`RouterExt::controller`](crate::RouterExt::controller) puts on controller routes,
//! so that they work with or without an [`AsyncSupportLayer`](crate::AsyncSupportLayer) around
//! them.
//!
//! Under an explicit layer (the usual `.async_support(..)`), it steps aside: the handler's future
//! is returned as is, and the explicit layer drives any async value, with its manager. Without
//! one, it is an `AsyncSupportLayer` of the process-wide [`AsyncManager::shared_default`].
//! Which of the two applies is decided per request, when the route is called: an explicit layer
//! lends its manager to the code its poll runs, and axum's routes call their service from their
//! first poll.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{extract::Request, response::Response};
use tower::{Layer, Service};

use crate::{context, layer::ResponseFuture};

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InheritedAsyncSupportLayer;

impl<S> Layer<S> for InheritedAsyncSupportLayer {
    type Service = InheritedAsyncSupport<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InheritedAsyncSupport { inner }
    }
}

/// The service of [`InheritedAsyncSupportLayer`].
#[derive(Debug, Clone)]
pub(crate) struct InheritedAsyncSupport<S> {
    inner: S,
}

impl<S> Service<Request> for InheritedAsyncSupport<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = InheritedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if context::is_lent() {
            return InheritedFuture::Enclosed {
                future: self.inner.call(request),
            };
        }
        InheritedFuture::Alone {
            future: ResponseFuture::new(&mut self.inner, request, None),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`InheritedAsyncSupport`].
    #[project = InheritedProj]
    pub(crate) enum InheritedFuture<F> {
        /// The enclosing layer drives the response: the handler's future, untouched.
        Enclosed { #[pin] future: F },
        /// No enclosing layer: async support of its own.
        Alone { future: ResponseFuture<F> },
    }
}

impl<F> Future for InheritedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InheritedProj::Enclosed { future } => future.poll(cx),
            InheritedProj::Alone { future } => Pin::new(future).poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{body::to_bytes, routing::get, Router};
    use http::StatusCode;
    use tower::ServiceExt;

    use super::InheritedAsyncSupportLayer;
    use crate::{
        config::AsyncConfig, controller::RouterExt, deferred_result::DeferredResult,
        manager::AsyncManager,
    };

    /// A route whose handler parks its `DeferredResult` in `parked`, under the inherited layer.
    fn parking_route(parked: &Arc<Mutex<Vec<DeferredResult<String>>>>) -> Router {
        let parked = Arc::clone(parked);
        Router::new()
            .route(
                "/",
                get(move || {
                    let result = DeferredResult::<String>::new();
                    parked.lock().expect("lock").push(result.clone());
                    std::future::ready(result)
                }),
            )
            .layer(InheritedAsyncSupportLayer)
    }

    async fn call_and_complete(
        app: Router,
        parked: &Arc<Mutex<Vec<DeferredResult<String>>>>,
    ) -> (StatusCode, String) {
        let request = axum::extract::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("request");
        let waiting = tokio::spawn(app.oneshot(request));
        let result = loop {
            if let Some(result) = parked.lock().expect("lock").pop() {
                break result;
            }
            tokio::task::yield_now().await;
        };
        assert!(result.set_result("done".to_owned()));
        let response = waiting.await.expect("join").expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 10).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn under_an_explicit_layer_the_explicit_manager_drives_the_work() {
        let parked = Arc::new(Mutex::new(Vec::new()));
        let manager = AsyncManager::new(AsyncConfig::new());
        let app = parking_route(&parked).async_support(manager.clone());
        let (status, body) = call_and_complete(app, &parked).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
        let metrics = manager.metrics();
        assert_eq!((metrics.completed, metrics.in_flight), (1, 0));
    }

    #[tokio::test]
    async fn alone_it_drives_the_work_itself() {
        let parked = Arc::new(Mutex::new(Vec::new()));
        let (status, body) = call_and_complete(parking_route(&parked), &parked).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    }
}
