//! [`AsyncLimitLayer`]: a per-route limit on requests in flight, counted until the response
//! body has ended.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{
    config::DEFAULT_RETRY_AFTER,
    error::AsyncError,
    interceptor::AsyncRequest,
    manager::AsyncManager,
    work::{AsyncWork, StartAsync, WorkFuture},
};

/// Limits the requests in flight on the routes it wraps: over the limit, a request is refused
/// at once with `503` and `Retry-After` ([`AsyncError::Overloaded`]); requests already admitted
/// are untouched.
///
/// A request counts until its response body has ended — for a `DeferredResult` until the value
/// is sent, for an SSE stream until it closes, wherever the layer sits relative to the async
/// support — unlike tower's `ConcurrencyLimit`, which waits
/// instead of refusing and stops counting when the response head is ready. The count is shared
/// by every route the layer (and its clones) wraps: give a route its own layer for a limit of
/// its own. For a limit over every async request of a router, see
/// [`AsyncConfig::max_concurrent`](crate::AsyncConfig::max_concurrent).
///
/// ```
/// use async_mvc::{AsyncLimitLayer, DeferredResult};
/// use axum::{routing::get, Router};
///
/// async fn poll() -> DeferredResult<String> { DeferredResult::new() }
///
/// let app: Router = Router::new().route("/poll", get(poll).route_layer(AsyncLimitLayer::new(10_000)));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AsyncLimitLayer {
    in_flight: Arc<AtomicUsize>,
    limit: usize,
    retry_after: Duration,
}

impl AsyncLimitLayer {
    /// At most `limit` requests in flight on the wrapped routes.
    pub fn new(limit: usize) -> Self {
        AsyncLimitLayer {
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }

    /// The `Retry-After` sent with a refusal (default 1 s).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// How many requests are in flight on the wrapped routes now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl<S> Layer<S> for AsyncLimitLayer {
    type Service = AsyncLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncLimit {
            inner,
            limit: self.clone(),
        }
    }
}

/// The [`Service`] made by [`AsyncLimitLayer`].
#[derive(Debug, Clone)]
pub struct AsyncLimit<S> {
    inner: S,
    limit: AsyncLimitLayer,
}

/// One admitted request; dropped when its response body ends.
struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Service<Request> for AsyncLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let limit = &self.limit;
        if limit.in_flight.fetch_add(1, Ordering::AcqRel) >= limit.limit {
            limit.in_flight.fetch_sub(1, Ordering::AcqRel);
            let refused = AsyncError::Overloaded {
                limit: limit.limit,
                retry_after: limit.retry_after,
            };
            return LimitFuture {
                state: State::Refused {
                    response: Some(refused.into_response()),
                },
            };
        }
        LimitFuture {
            state: State::Admitted {
                future: self.inner.call(request),
                permit: Some(Permit(Arc::clone(&limit.in_flight))),
            },
        }
    }
}

pin_project! {
    /// The response future of [`AsyncLimit`]: the decision is made in `call`, `poll` carries it
    /// out (as tower-http's `limit`), with no box.
    pub struct LimitFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        /// Over the limit: this `503` once.
        Refused { response: Option<Response> },
        /// Admitted: the inner future, and the permit its response will hold.
        Admitted {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
    }
}

impl<F> Future for LimitFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(polled_after_completion)))
            }
            StateProj::Admitted { future, permit } => {
                let Ok(response) = ready!(future.poll(cx));
                let permit = permit.take();
                if AsyncWork::is_async(&response) {
                    // Inside the async support layer: the permit goes with the async work, to
                    // the body of its final response.
                    return Poll::Ready(Ok(AsyncWork::wrap(response, |work| WithPermit {
                        work,
                        permit,
                    })));
                }
                Poll::Ready(Ok(with_permit(response, permit)))
            }
        }
    }
}

/// A future polled again after it completed: a bug of the caller (tower and hyper never do
/// it), which panics in debug builds and answers `500` in release (axum's habit).
fn polled_after_completion() -> Response {
    debug_assert!(false, "LimitFuture polled after it completed");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

impl<F> fmt::Debug for LimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimitFuture")
    }
}

fn with_permit(response: Response, permit: Option<Permit>) -> Response {
    response.map(|body| {
        Body::new(PermitBody {
            body,
            _permit: permit,
        })
    })
}

/// Async work whose final response holds the permit.
struct WithPermit {
    work: AsyncWork,
    permit: Option<Permit>,
}

impl StartAsync for WithPermit {
    fn kind(&self) -> crate::telemetry::Kind {
        self.work.kind()
    }

    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        let WithPermit { work, permit } = self;
        work.start(manager, request)
            .map(move |response| with_permit(response, permit))
    }
}

/// A response body that holds its request's permit until it ends.
struct PermitBody {
    body: Body,
    _permit: Option<Permit>,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
