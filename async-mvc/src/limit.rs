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
use http_body::Frame;
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
            return LimitFuture(State::Refused(Some(refused.into_response())));
        }
        LimitFuture(State::Admitted {
            future: Box::pin(self.inner.call(request)),
            permit: Some(Permit(Arc::clone(&limit.in_flight))),
        })
    }
}

/// The response future of [`AsyncLimit`].
pub struct LimitFuture<F>(State<F>);

enum State<F> {
    Refused(Option<Response>),
    Admitted {
        future: Pin<Box<F>>,
        permit: Option<Permit>,
    },
}

impl<F> Future for LimitFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            State::Refused(response) => Poll::Ready(Ok(response.take().unwrap_or_default())),
            State::Admitted { future, permit } => {
                let Ok(response) = ready!(future.as_mut().poll(cx));
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
