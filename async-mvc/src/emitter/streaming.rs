//! [`StreamingResponseBody`]: the handler writes raw bytes to an `AsyncWrite`.

use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{future::BoxFuture, FutureExt, Stream};
use http::HeaderMap;
use tokio::{
    io::{AsyncWrite, DuplexStream},
    task::JoinHandle,
};
use tokio_util::io::ReaderStream;

use super::{
    body::{Aborted, Source},
    lifecycle,
    response_body::Timeout,
};
use crate::{
    error::AsyncError,
    interceptor::AsyncRequest,
    manager::AsyncManager,
    work::{AsyncWork, StartAsync, WorkFuture},
};

/// How many bytes the writer may be ahead of the client before its writes wait: 64 KiB.
const PIPE_BYTES: usize = 64 * 1024;

type Writer = Box<dyn FnOnce(BodyWriter) -> BoxFuture<'static, io::Result<()>> + Send>;

/// A response body the handler writes itself, e.g. a download: Spring MVC's
/// `StreamingResponseBody`.
///
/// The writer gets a [`BodyWriter`] (a tokio [`AsyncWrite`]) and runs as its own task on the
/// server's runtime, once the response has started. Writes wait while the client is more than
/// 64 KiB behind. If the writer returns an error (or panics, or the timeout fires), the
/// response is aborted: the client sees a broken chunked stream, never a truncated body that
/// looks complete. If the client goes away, writes fail with `BrokenPipe`.
///
/// Status and headers come from a wrapper, e.g. `([(CONTENT_DISPOSITION, "attachment")],
/// body)`. The manager's default timeout applies unless [`timeout`](Self::timeout) or
/// [`no_timeout`](Self::no_timeout) says otherwise.
///
/// ```
/// use async_mvc::StreamingResponseBody;
/// use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
/// use axum::response::IntoResponse;
/// use tokio::io::AsyncWriteExt;
///
/// async fn export() -> impl IntoResponse {
///     let body = StreamingResponseBody::new(|mut out| async move {
///         for n in 0..1_000 {
///             out.write_all(format!("{n},{}\n", n * n).as_bytes()).await?;
///         }
///         Ok(())
///     });
///     ([(CONTENT_TYPE, "text/csv"), (CONTENT_DISPOSITION, "attachment; filename=\"squares.csv\"")], body)
/// }
/// ```
#[must_use]
pub struct StreamingResponseBody {
    writer: Writer,
    timeout: Timeout,
}

impl StreamingResponseBody {
    /// A body written by `writer`.
    pub fn new<F, Fut>(writer: F) -> Self
    where
        F: FnOnce(BodyWriter) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        StreamingResponseBody {
            writer: Box::new(move |out| writer(out).boxed()),
            timeout: Timeout::Default,
        }
    }

    /// Aborts the response if the writer is not done this long after it started.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Timeout::After(timeout);
        self
    }

    /// No timeout.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = Timeout::Never;
        self
    }
}

/// Where a [`StreamingResponseBody`] writes: the response body, as a tokio [`AsyncWrite`].
pub struct BodyWriter {
    pipe: DuplexStream,
}

impl AsyncWrite for BodyWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyWriter")
    }
}

impl fmt::Debug for StreamingResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponseBody")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl IntoResponse for StreamingResponseBody {
    fn into_response(self) -> Response {
        AsyncWork::response(self)
    }
}

impl StartAsync for StreamingResponseBody {
    fn kind(&self) -> crate::telemetry::Kind {
        crate::telemetry::Kind::Streaming
    }

    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        let (pipe, reader) = tokio::io::duplex(PIPE_BYTES);
        let task = tokio::spawn((self.writer)(BodyWriter { pipe }));
        let timeout = self.timeout.resolve(&manager);
        let response = lifecycle::stream_response(
            &manager,
            &request,
            lifecycle::StreamSpec {
                source: Box::new(WriterSource {
                    reader: ReaderStream::new(reader),
                    task: Some(task),
                    timed_out: Arc::new(AtomicBool::new(false)),
                }),
                headers: HeaderMap::new(),
                timeout,
                heartbeat: None,
            },
        );
        WorkFuture::ready(response)
    }
}

/// The pipe's read side, then the writer's outcome.
struct WriterSource {
    reader: ReaderStream<DuplexStream>,
    task: Option<JoinHandle<io::Result<()>>>,
    /// Set by the timer task, which also cancels the writer.
    timed_out: Arc<AtomicBool>,
}

impl Source for WriterSource {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>> {
        if self.timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Aborted::WriterTimedOut)));
        }
        match Pin::new(&mut self.reader).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => return Poll::Ready(Some(Ok(bytes))),
            Poll::Ready(Some(Err(error))) => {
                return Poll::Ready(Some(Err(Aborted::WriterFailed(error.to_string()))))
            }
            Poll::Ready(None) => {}
            Poll::Pending => return Poll::Pending,
        }
        // The writer dropped its end: it finished, failed or panicked.
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(None);
        };
        let outcome = match Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(()))) => None,
            Poll::Ready(Ok(Err(error))) => Some(Err(Aborted::WriterFailed(error.to_string()))),
            Poll::Ready(Err(_)) => Some(Err(Aborted::WriterPanicked)),
        };
        self.task = None;
        Poll::Ready(outcome)
    }

    fn time_out_handle(&self) -> Box<dyn FnOnce() + Send> {
        let timed_out = Arc::clone(&self.timed_out);
        let writer = self.task.as_ref().map(JoinHandle::abort_handle);
        Box::new(move || {
            timed_out.store(true, Ordering::Release);
            // The cancelled writer drops its end of the pipe, which wakes the body.
            if let Some(writer) = writer {
                writer.abort();
            }
        })
    }

    fn finish(&mut self, failure: Option<&AsyncError>) {
        let Some(task) = self.task.take() else {
            return;
        };
        let disconnected = matches!(failure, Some(AsyncError::ClientDisconnected));
        // A client that went away: the pipe's read end is dropped with this source, so the
        // writer's next write fails with `BrokenPipe` and it ends on its own, as documented.
        if !disconnected {
            task.abort();
        }
    }
}
