//! [`ObservedBody`]: a response body that knows when the response ended — its last byte, or
//! the client leaving — for the request's duration metric and its span.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::telemetry::Observation;

pin_project! {
    /// The response body of an observed request: records the request when its last frame has
    /// been taken, or — dropped before that — as a disconnect.
    pub(crate) struct ObservedBody {
        #[pin]
        inner: Body,
        observation: Option<Observation>,
        // Never entered: it lives as long as the response, so that the request's span closes
        // at its last byte.
        span: tracing::Span,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let ended = http_body::Body::is_end_stream(&*this.inner);
            finish(this.observation, this.span, (!ended).then_some("disconnected"));
        }
    }
}

impl ObservedBody {
    /// `response` with its body observed, unless there is nothing to observe it for.
    pub(crate) fn wrap(
        response: Response,
        observation: Option<Observation>,
        span: tracing::Span,
    ) -> Response {
        if observation.is_none() && span.is_disabled() {
            return response;
        }
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        let mut observation = observation;
        if let Some(observation) = &mut observation {
            observation.set_status(status);
        }
        response.map(|inner| {
            Body::new(ObservedBody {
                inner,
                observation,
                span,
            })
        })
    }
}

/// Records the request once: ended normally (`error` `None`), or not.
fn finish(
    observation: &mut Option<Observation>,
    span: &mut tracing::Span,
    error: Option<&'static str>,
) {
    if let Some(mut observation) = observation.take() {
        observation.finish(error);
    }
    if !span.is_disabled() {
        match error {
            None => tracing::debug!(parent: &*span, "response ended"),
            Some(error) => tracing::debug!(parent: &*span, error, "response ended early"),
        }
        *span = tracing::Span::none();
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => finish(this.observation, this.span, None),
            Poll::Ready(Some(Err(_))) => finish(this.observation, this.span, Some("body")),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
