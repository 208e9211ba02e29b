//! [`ConnService`]: the router as one connection's hyper service — it marks each request's
//! start and end on the connection's [`Conn`] (the end is when hyper drops the response body:
//! written in full, or abandoned), and asks an HTTP/1 client to close (`Connection: close`)
//! after the connection's last keep-alive request or once the server stops.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{ready, Context, Poll},
};

use axum::{
    body::Body, extract::Request, response::Response, routing::future::RouteFuture, Router,
};
use bytes::Bytes;
use http::{header::CONNECTION, HeaderValue, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::{conn::Conn, stats::ConnectionStats};

/// What every connection's service shares.
#[derive(Debug)]
pub(super) struct ServiceShared {
    pub(super) max_keep_alive_requests: u64,
    pub(super) stats: ConnectionStats,
}

#[derive(Clone)]
pub(super) struct ConnService {
    pub(super) router: Router,
    pub(super) conn: Arc<Conn>,
    pub(super) shared: Arc<ServiceShared>,
}

impl tower::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ConnFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request<Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let number = self.conn.request_started();
        let http1 = request.version() < Version::HTTP_2;
        let last = http1 && number >= self.shared.max_keep_alive_requests;
        if number == 1 && !http1 {
            let counters = self.shared.stats.counters();
            counters.http2.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::connection_http2();
        }
        ConnFuture {
            inner: self.router.call(request),
            request: Some(InProgress(Arc::clone(&self.conn))),
            http1,
            last,
        }
    }
}

/// One request in progress on a connection; dropping it marks its end.
struct InProgress(Arc<Conn>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ConnService`].
    pub(super) struct ConnFuture {
        #[pin]
        inner: RouteFuture<Infallible>,
        request: Option<InProgress>,
        http1: bool,
        last: bool,
    }
}

impl Future for ConnFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        let request = this.request.take();
        let stopping = request
            .as_ref()
            .is_some_and(|request| request.0.is_stopping());
        if *this.http1 && (*this.last || stopping) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            inner: body,
            _request: request,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that marks its request's end when hyper drops it.
    pub(super) struct TrackedBody {
        #[pin]
        inner: Body,
        _request: Option<InProgress>,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
