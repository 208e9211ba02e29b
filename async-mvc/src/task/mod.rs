//! [`Callable`] and [`WebAsyncTask`]: work moved off the request path, Spring's `Callable` and
//! `WebAsyncTask` return values.
//!
//! The path of one request: the handler returns the task; its [`IntoResponse`] hands it to the
//! router's layer (`work.rs`, `layer.rs`); its lifecycle (`lifecycle.rs`) runs it on the
//! [`AsyncTaskExecutor`] (a blocking closure) or on the server's runtime (a future), under its
//! timeout, with the interceptors, on the manager's services; its value is rendered as if the
//! handler had returned it.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

mod lifecycle;

use crate::{error::AsyncError, executor::AsyncTaskExecutor, work::AsyncWork};

type BlockingWork<T> = Box<dyn FnOnce() -> T + Send>;
type CancellableWork<T> = Box<dyn FnOnce(CancellationToken) -> T + Send>;
/// A task's `on_error`: the value to send instead of the error, if any.
type ErrorFallback<T> = Box<dyn FnOnce(&AsyncError) -> Option<T> + Send>;
type AsyncWorkFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The work a task does.
enum Work<T> {
    /// Runs on an executor thread.
    Blocking(BlockingWork<T>),
    /// Runs on an executor thread; the token is cancelled when the request no longer wants it.
    /// Only such work gets a token.
    Cancellable(CancellableWork<T>),
    /// Runs on the server's runtime, inside the request's own future; dropped on timeout.
    Future(AsyncWorkFuture<T>),
}

/// Blocking or async work whose value becomes the response: Spring's `Callable` return value.
///
/// [`Callable::new`] runs a blocking closure on the manager's [`AsyncTaskExecutor`] (a bounded
/// pool of threads, not the server's runtime); [`Callable::from_future`] runs a future on the
/// server's runtime. Either is subject to the manager's default timeout. For a timeout, an
/// executor or callbacks of its own, use [`WebAsyncTask`].
///
/// ```
/// use async_mvc::Callable;
///
/// async fn report() -> Callable<String> {
///     Callable::new(|| {
///         // Blocking work: file I/O, a synchronous client, heavy computation.
///         format!("{} lines", std::fs::read_to_string("/etc/hostname").map_or(0, |s| s.lines().count()))
///     })
/// }
/// ```
pub struct Callable<T> {
    task: WebAsyncTask<T>,
}

impl<T> Callable<T> {
    /// Blocking work, run on the executor.
    pub fn new<F>(work: F) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        Callable {
            task: WebAsyncTask::new(work),
        }
    }

    /// Blocking work that is told when the request no longer wants its value (timeout, client
    /// gone): check [`CancellationToken::is_cancelled`] now and then. A thread cannot be
    /// interrupted (Spring's `cancel(true)`), so this is how long work stops early.
    pub fn cancellable<F>(work: F) -> Self
    where
        F: FnOnce(CancellationToken) -> T + Send + 'static,
    {
        Callable {
            task: WebAsyncTask::cancellable(work),
        }
    }

    /// Async work, run on the server's runtime; dropped if the timeout fires first.
    pub fn from_future<F>(work: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Callable {
            task: WebAsyncTask::from_future(work),
        }
    }
}

/// A [`Callable`] with a timeout, an executor and callbacks of its own: Spring's
/// `WebAsyncTask`.
///
/// Blocking work ([`new`](Self::new), [`cancellable`](Self::cancellable)) runs on the task's
/// executor, else the manager's [`AsyncTaskExecutor`]; async work
/// ([`from_future`](Self::from_future)) runs on the server's runtime.
///
/// When the executor is busy and its queue full, the task is rejected at once: `503` with
/// `Retry-After`, or what `on_error` returns. A panic in the work is `500` for that request
/// only. When the timeout fires, the request completes on time with the `on_timeout` value (or
/// `503`); async work is dropped, blocking work finds its token cancelled and its late value is
/// ignored.
///
/// ```
/// use std::time::Duration;
/// use async_mvc::WebAsyncTask;
/// use axum::http::StatusCode;
///
/// async fn invoice() -> WebAsyncTask<(StatusCode, String)> {
///     WebAsyncTask::cancellable(|cancelled| {
///         let mut lines = Vec::new();
///         for n in 0..1_000 {
///             if cancelled.is_cancelled() {
///                 break;
///             }
///             lines.push(format!("line {n}"));
///         }
///         (StatusCode::OK, lines.join("\n"))
///     })
///     .timeout(Duration::from_secs(5))
///     .on_timeout(|| (StatusCode::ACCEPTED, "still rendering, try again".to_owned()))
/// }
/// ```
#[must_use]
pub struct WebAsyncTask<T> {
    work: Work<T>,
    timeout: Option<Duration>,
    executor: Option<AsyncTaskExecutor>,
    on_timeout: Option<Box<dyn FnOnce() -> T + Send>>,
    on_error: Option<ErrorFallback<T>>,
    on_completion: Option<Box<dyn FnOnce() + Send>>,
    /// What it was returned as (a `Callable` and a `ReactiveFuture` are tasks too).
    pub(crate) kind: crate::telemetry::Kind,
}

impl<T> WebAsyncTask<T> {
    fn with_work(work: Work<T>) -> Self {
        WebAsyncTask {
            work,
            timeout: None,
            executor: None,
            on_timeout: None,
            on_error: None,
            on_completion: None,
            kind: crate::telemetry::Kind::Task,
        }
    }

    /// Blocking work, run on the executor.
    pub fn new<F>(work: F) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        Self::with_work(Work::Blocking(Box::new(work)))
    }

    /// Blocking work that checks a [`CancellationToken`], cancelled on timeout or disconnect.
    pub fn cancellable<F>(work: F) -> Self
    where
        F: FnOnce(CancellationToken) -> T + Send + 'static,
    {
        Self::with_work(Work::Cancellable(Box::new(work)))
    }

    /// Async work, run on the server's runtime.
    pub fn from_future<F>(work: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Self::with_work(Work::Future(Box::pin(work)))
    }

    /// This task's timeout, overriding the manager's default (Spring's
    /// `new WebAsyncTask<>(timeoutMillis, callable)`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The executor for this task, instead of the manager's (Spring's
    /// `new WebAsyncTask<>(timeout, executor, callable)`). Only blocking work uses it.
    pub fn executor(mut self, executor: AsyncTaskExecutor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// When the timeout fires: the value to send instead (asked before any interceptor).
    pub fn on_timeout<F>(mut self, fallback: F) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        self.on_timeout = Some(Box::new(fallback));
        self
    }

    /// When the task fails — it panicked ([`AsyncError::TaskPanicked`]), the executor rejected
    /// it ([`AsyncError::Rejected`]), the manager refused it before it started
    /// ([`AsyncError::ShuttingDown`], [`AsyncError::Overloaded`]) or the client disconnected
    /// ([`AsyncError::ClientDisconnected`]): `Some` is the value to send instead of the error
    /// (ignored when the client is gone). Asked before any interceptor; a panic here answers
    /// `500`.
    pub fn on_error<F>(mut self, fallback: F) -> Self
    where
        F: FnOnce(&AsyncError) -> Option<T> + Send + 'static,
    {
        self.on_error = Some(Box::new(fallback));
        self
    }

    /// Once the request has completed, whatever the outcome.
    pub fn on_completion<F>(mut self, callback: F) -> Self
    where
        F: FnOnce() + Send + 'static,
    {
        self.on_completion = Some(Box::new(callback));
        self
    }
}

impl<T> From<Callable<T>> for WebAsyncTask<T> {
    fn from(callable: Callable<T>) -> Self {
        callable.task
    }
}

impl<T> fmt::Debug for Callable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callable").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for WebAsyncTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let work = match self.work {
            Work::Blocking(_) | Work::Cancellable(_) => "blocking",
            Work::Future(_) => "future",
        };
        f.debug_struct("WebAsyncTask")
            .field("work", &work)
            .field("timeout", &self.timeout)
            .field("executor", &self.executor.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> IntoResponse for Callable<T>
where
    T: IntoResponse + Send + 'static,
{
    fn into_response(mut self) -> Response {
        self.task.kind = crate::telemetry::Kind::Callable;
        self.task.into_response()
    }
}

impl<T> IntoResponse for WebAsyncTask<T>
where
    T: IntoResponse + Send + 'static,
{
    fn into_response(self) -> Response {
        AsyncWork::response(self)
    }
}
