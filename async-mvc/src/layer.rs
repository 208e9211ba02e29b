//! [`AsyncSupportLayer`]: the tower middleware that hands async return values to the manager.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use tower::{Layer, Service};

#[cfg(feature = "metrics")]
use crate::telemetry::{Kind, Observation};
use crate::{
    context,
    guard::contain,
    interceptor::AsyncRequest,
    manager::AsyncManager,
    observed::ObservedBody,
    work::{AsyncWork, StartAsync, WorkFuture, WrapperParts},
};

/// A tower [`Layer`] that gives the routes it wraps async support: a `DeferredResult` (or any
/// async return value) they return is driven by its [`AsyncManager`] to the final response.
///
/// [`RouterExt::async_support`](crate::RouterExt::async_support) is the usual way to add it;
/// `router.layer(AsyncSupportLayer::new(config))` is the same thing. Following axum's
/// [`Router::layer`](axum::Router::layer), it applies to the routes added *before* it.
///
/// The innermost layer with a manager wins, so a nested router may have settings of its own.
/// A handler that panics gets its request a `500` (logged with `tracing`) instead of a dropped
/// connection; other requests are untouched.
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

    fn call(&mut self, request: Request) -> Self::Future {
        ResponseFuture::new(&mut self.inner, request, self.manager.clone())
    }
}

impl<F> ResponseFuture<F> {
    /// Calls `inner` with `request`; the response is driven by `manager`, or (`None`) by the
    /// enclosing layer's manager, else the shared default.
    pub(crate) fn new<S>(inner: &mut S, request: Request, manager: Option<AsyncManager>) -> Self
    where
        S: Service<Request, Future = F>,
    {
        #[cfg(feature = "metrics")]
        let observation = observe(&request, manager.as_ref());
        // The request head, for interceptors and logs, if the response turns out to be async.
        let head = AsyncRequest::new(request.method().clone(), request.uri().clone())
            .with_accept(request.headers().get(http::header::ACCEPT).cloned());
        ResponseFuture {
            state: State::Handler {
                future: Box::pin(inner.call(request)),
                manager,
                request: Some(head),
            },
            #[cfg(feature = "metrics")]
            observation,
        }
    }
}

/// Starts observing `request` — unless an enclosing layer does: a layer inside another is
/// called while the outer one polls its handler, with its manager lent — with `manager`'s
/// instruments (an inherited layer's: the default manager's).
#[cfg(feature = "metrics")]
fn observe(request: &Request, manager: Option<&AsyncManager>) -> Option<Observation> {
    if context::is_lent() {
        return None;
    }
    let route = request.extensions().get::<axum::extract::MatchedPath>();
    let observation = match manager {
        Some(manager) => manager.instruments().observe(request.method(), route),
        None => context::lent_or_default()
            .instruments()
            .observe(request.method(), route),
    };
    Some(observation)
}

/// The response future of [`AsyncSupport`]: the handler's, then the async work's.
///
/// The handler's future is boxed so that this one stays small (about 240 bytes): it lives as
/// long as the request is pending, long after the handler's future is done.
pub struct ResponseFuture<F> {
    state: State<F>,
    /// The request's metrics, until its response (then its body) takes them.
    #[cfg(feature = "metrics")]
    observation: Option<Observation>,
}

enum State<F> {
    Handler {
        future: Pin<Box<F>>,
        /// `None` for an inherited layer.
        manager: Option<AsyncManager>,
        request: Option<AsyncRequest>,
    },
    Async {
        future: WorkFuture,
        parts: Option<WrapperParts>,
        /// The request's span, kept by its response's body until the last byte.
        span: tracing::Span,
    },
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let state = &mut this.state;
        loop {
            match state {
                State::Handler {
                    future,
                    manager,
                    request,
                } => {
                    // An explicit layer lends its manager to the code inside it: inherited
                    // layers, a `DeferredResult` rendered at once.
                    let polled =
                        context::lend(manager, || contain("handler", || future.as_mut().poll(cx)));
                    let Ok(mut response) =
                        ready!(polled.unwrap_or_else(|| Poll::Ready(panicked())));
                    let (Some((work, parts)), Some(request)) =
                        (AsyncWork::take(&mut response), request.take())
                    else {
                        #[cfg(feature = "metrics")]
                        if let Some(mut observation) = this.observation.take() {
                            // A value rendered at once noted its kind; any other is sync.
                            let kind = context::take_rendered();
                            observation.set_kind(kind.unwrap_or(Kind::Sync));
                            return Poll::Ready(Ok(ObservedBody::wrap(
                                response,
                                Some(observation),
                                tracing::Span::none(),
                            )));
                        }
                        return Poll::Ready(Ok(response));
                    };
                    #[cfg(feature = "metrics")]
                    if let Some(observation) = &mut this.observation {
                        observation.set_kind(work.kind());
                    }
                    let manager = manager.take().unwrap_or_else(context::lent_or_default);
                    // A `Content-Type` a wrapper preset decides how the value is written
                    // (Spring: the response entity's preset type comes first, gh-35130).
                    let request = match parts.as_ref().and_then(WrapperParts::content_type) {
                        Some(preset) => request.with_content_type(Some(preset.clone())),
                        None => request,
                    };
                    // Checked first: with tracing's `log` feature (axum's default `tower-log`
                    // turns it on) the macro builds the span for `log` even without a subscriber.
                    let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
                        tracing::debug_span!(
                            "async_request",
                            "http.request.method" = %request.method(),
                            "url.path" = request.path(),
                            "async_mvc.kind" = work.kind().as_str(),
                            "http.response.status_code" = tracing::field::Empty,
                        )
                    } else {
                        tracing::Span::none()
                    };
                    let future = span.in_scope(|| {
                        tracing::debug!("async processing started");
                        work.start(manager, request)
                    });
                    // A span no subscriber wants costs nothing: skip the wrapper (and its box).
                    let future = if span.is_disabled() {
                        future
                    } else {
                        WorkFuture::waiting(tracing::Instrument::instrument(future, span.clone()))
                    };
                    // Frees the handler's finished future.
                    *state = State::Async {
                        future,
                        parts,
                        span,
                    };
                }
                State::Async {
                    future,
                    parts,
                    span,
                } => {
                    let polled = contain("async response", || Pin::new(&mut *future).poll(cx));
                    let response = match polled {
                        Some(Poll::Ready(response)) => response,
                        Some(Poll::Pending) => return Poll::Pending,
                        None => return Poll::Ready(panicked()),
                    };
                    let response = match parts.take() {
                        Some(parts) => parts.apply(response),
                        None => response,
                    };
                    #[cfg(feature = "metrics")]
                    let observation = this.observation.take();
                    #[cfg(not(feature = "metrics"))]
                    let observation = None;
                    let span = std::mem::replace(span, tracing::Span::none());
                    return Poll::Ready(Ok(ObservedBody::wrap(response, observation, span)));
                }
            }
        }
    }
}

/// A handler (or the rendering of its value) panicked (logged): `500` for this request only.
fn panicked() -> Result<Response, Infallible> {
    Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{body::to_bytes, routing::get, Router};
    use http::StatusCode;
    use tower::ServiceExt;

    use crate::{
        config::AsyncConfig, controller::RouterExt, deferred_result::DeferredResult,
        manager::AsyncManager,
    };

    async fn call(app: Router, path: &str) -> (StatusCode, String) {
        let request = axum::extract::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn never() -> DeferredResult<String> {
        DeferredResult::new()
    }

    #[tokio::test(start_paused = true)]
    async fn the_innermost_manager_applies() {
        let inner = AsyncManager::new(AsyncConfig::new().default_timeout(Duration::from_secs(1)));
        let outer = AsyncManager::new(AsyncConfig::new().default_timeout(Duration::from_secs(9)));
        let app = Router::new()
            .nest(
                "/inner",
                Router::new()
                    .route("/", get(|| async { never() }))
                    .async_support(inner.clone()),
            )
            .async_support(outer.clone());
        let (status, body) = call(app, "/inner").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "async request timed out after 1000 ms");
        assert_eq!(
            (inner.metrics().timed_out, outer.metrics().timed_out),
            (1, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_default_timeout_waits_for_the_value() {
        let result = DeferredResult::<String>::new();
        let handle = result.clone();
        let app = Router::new()
            .route("/", get(move || std::future::ready(result.clone())))
            .async_support(AsyncConfig::new().default_timeout(None));
        let waiting = tokio::spawn(call(app, "/"));
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        assert!(!waiting.is_finished());
        assert!(handle.set_result("a day later".to_owned()));
        let (status, body) = waiting.await.expect("join");
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a day later"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_racing_the_timer_wins_over_the_timeout_result() {
        let result = DeferredResult::<String>::with_timeout_result(
            Duration::from_millis(10),
            "fallback".to_owned(),
        );
        let handle = result.clone();
        result.on_timeout(move || {
            handle.set_result("set during on_timeout".to_owned());
        });
        let app = Router::new()
            .route("/", get(move || std::future::ready(result.clone())))
            .async_support(AsyncConfig::new());
        let (status, body) = call(app, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "set during on_timeout")
        );
    }

    /// A value set before the handler returned completes inside the handler's poll (no
    /// hand-off): the same response, callbacks and counters as the general path.
    #[tokio::test]
    async fn a_value_set_before_return_completes_at_once_like_the_general_path() {
        use std::sync::{Arc, Mutex};
        let completions = Arc::new(Mutex::new(Vec::new()));
        let manager = AsyncManager::new(AsyncConfig::new());
        let app = {
            let completions = Arc::clone(&completions);
            Router::new()
                .route(
                    "/",
                    get(move || {
                        let result = DeferredResult::<String>::new();
                        let completions = Arc::clone(&completions);
                        result.on_completion(move || {
                            completions.lock().expect("lock").push("on_completion");
                        });
                        assert!(result.set_result("early".to_owned()));
                        std::future::ready((StatusCode::CREATED, [("x-id", "7")], result))
                    }),
                )
                .async_support(manager.clone())
        };
        let request = axum::extract::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-id"], "7");
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        assert_eq!(&body[..], b"early");
        assert_eq!(*completions.lock().expect("lock"), ["on_completion"]);
        let metrics = manager.metrics();
        assert_eq!((metrics.completed, metrics.in_flight), (1, 0));
    }

    /// Without the fast path's preconditions (here: an admission limit of 0), a value set
    /// early goes through admission like any other.
    #[tokio::test]
    async fn a_value_set_early_is_still_admitted() {
        let manager = AsyncManager::new(AsyncConfig::new().max_concurrent(0));
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    let result = DeferredResult::<String>::new();
                    result.set_result("early".to_owned());
                    result
                }),
            )
            .async_support(manager.clone());
        let (status, _) = call(app, "/").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(manager.metrics().rejected, 1);
    }

    #[tokio::test]
    async fn a_panicking_callback_is_contained() {
        let result = DeferredResult::<String>::new();
        result.on_completion(|| panic!("callback bug"));
        result.set_result("delivered".to_owned());
        let app = Router::new()
            .route("/", get(move || std::future::ready(result.clone())))
            .async_support(AsyncConfig::new());
        let (status, body) = call(app, "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "delivered"));
    }
}
