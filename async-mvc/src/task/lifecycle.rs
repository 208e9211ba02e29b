//! The lifecycle of one returned [`Callable`](super::Callable) or
//! [`WebAsyncTask`](super::WebAsyncTask), driven by the task itself on the manager's services
//! (admission, counters, the executor, interceptor chains, shutdown, error mapping).
//!
//! before_concurrent_handling → started → submit to the executor (or run the future) →
//! pre_process, work, post_process on the task's thread → wait for it, the timeout or a
//! disconnect → response → after_completion, `on_completion`.

use std::{future::Future, sync::Arc, time::Duration};

use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::{ErrorFallback, WebAsyncTask, Work};
use crate::{
    error::AsyncError,
    executor::AsyncTaskExecutor,
    guard::{self, contain},
    interceptor::{
        callable_post, callable_pre, hook, hook_option, panic_response, AsyncRequest,
        CallableProcessingInterceptor,
    },
    manager::{AsyncManager, Count, Pending},
    work::{StartAsync, WorkFuture},
};

type Chain = Arc<[Arc<dyn CallableProcessingInterceptor>]>;

/// How the work ended, seen from the request.
enum Outcome {
    /// The work ran: its rendered value, or the error it failed with.
    Done(Result<Response, AsyncError>),
    /// The executor refused it.
    Rejected(AsyncError),
    /// The timeout fired first.
    TimedOut(Duration),
}

impl<T> StartAsync for WebAsyncTask<T>
where
    T: IntoResponse + Send + 'static,
{
    fn kind(&self) -> crate::telemetry::Kind {
        self.kind
    }

    fn start(self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        WorkFuture::waiting(run(manager, request, self))
    }
}

/// Drives one returned task to its response (Spring checklist B.22–B.31, C.40–C.44, C.49,
/// D.60, D.62, E.71–E.72).
async fn run<T>(manager: AsyncManager, request: AsyncRequest, task: WebAsyncTask<T>) -> Response
where
    T: IntoResponse + Send + 'static,
{
    let WebAsyncTask {
        work,
        timeout,
        executor,
        on_timeout,
        on_error,
        on_completion,
        kind: _,
    } = task;
    let chain = Arc::clone(manager.callable_interceptors());
    for interceptor in chain.iter() {
        if let Err(response) = hook("before_concurrent_handling", || {
            interceptor.before_concurrent_handling(&request)
        }) {
            if let Some(on_completion) = on_completion {
                contain("on_completion", on_completion);
            }
            return response;
        }
    }
    let pending = match manager.clone().admit() {
        Ok(pending) => pending,
        Err(refused) => {
            // Refused before it started (shutting down, too many in flight): `on_error`
            // learns why and may answer instead, as for a full executor.
            let fallback = on_error.and_then(|on_error| {
                match contain("on_error", || on_error(refused.error())) {
                    Some(value) => value.map(IntoResponse::into_response),
                    None => Some(panic_response()),
                }
            });
            if let Some(on_completion) = on_completion {
                contain("on_completion", on_completion);
            }
            return fallback.unwrap_or_else(|| refused.response());
        }
    };
    manager.concurrent_handling_started(&request);

    let request = Arc::new(request);
    // Only work that asked for a token gets one.
    let token = matches!(work, Work::Cancellable(_)).then(CancellationToken::new);
    let mut lifecycle = Lifecycle {
        _pending: pending,
        manager: manager.clone(),
        chain: Arc::clone(&chain),
        request: Arc::clone(&request),
        token: token.clone(),
        on_error,
        on_completion,
        finished: false,
    };
    let timeout = timeout.or(manager.config().get_default_timeout());
    // Spreads the tasks waiting for the end of a shutdown's grace period.
    let key = Arc::as_ptr(&request) as usize;
    let blocking = Blocking {
        manager: &manager,
        executor,
        timeout,
        key,
        chain: &chain,
        request: &request,
    };
    let outcome = match work {
        Work::Blocking(work) => blocking.run(work).await,
        Work::Cancellable(work) => {
            let token = token.clone().unwrap_or_default();
            blocking.run(move || work(token)).await
        }
        Work::Future(work) => match within(
            timeout,
            manager.grace_over(key),
            run_future(&chain, &request, work),
        )
        .await
        {
            Ok(result) => Outcome::Done(result),
            Err(after) => Outcome::TimedOut(after),
        },
    };
    let result = match outcome {
        Outcome::Done(Ok(response)) => Ok(response),
        Outcome::Done(Err(error)) => {
            manager.count(Count::Error);
            tracing::error!(path = request.path(), %error, "async task failed");
            lifecycle.fallback(&error).ok_or(error)
        }
        Outcome::Rejected(error) => {
            manager.count(Count::Rejected);
            tracing::warn!(path = request.path(), "async task rejected: executor busy");
            lifecycle
                .fallback(&error)
                .or_else(|| lifecycle.handle_error(&error))
                .ok_or(error)
        }
        Outcome::TimedOut(after) => {
            manager.count(Count::TimedOut);
            tracing::debug!(
                path = request.path(),
                timeout_ms = after.as_millis() as u64,
                "async task timed out"
            );
            if let Some(token) = &token {
                token.cancel();
            }
            // A panicking `on_timeout` is the result: `500`.
            on_timeout
                .map(|fallback| match contain("on_timeout", fallback) {
                    Some(value) => value.into_response(),
                    None => panic_response(),
                })
                .or_else(|| {
                    lifecycle.chain.iter().find_map(|interceptor| {
                        hook_option("handle_timeout", || interceptor.handle_timeout(&request))
                    })
                })
                .ok_or(AsyncError::Timeout { after })
        }
    };
    let response = result.unwrap_or_else(|error| manager.error_response(&error));
    lifecycle.finish();
    response
}

/// Where and how a task's blocking work runs.
struct Blocking<'a> {
    manager: &'a AsyncManager,
    /// The task's own executor, else the manager's.
    executor: Option<AsyncTaskExecutor>,
    timeout: Option<Duration>,
    key: usize,
    chain: &'a Chain,
    request: &'a Arc<AsyncRequest>,
}

impl Blocking<'_> {
    /// Submits `work` and waits for it, the timeout or the end of a shutdown's grace period.
    async fn run<T, W>(self, work: W) -> Outcome
    where
        T: IntoResponse,
        W: FnOnce() -> T + Send + 'static,
    {
        let executor = self
            .executor
            .unwrap_or_else(|| self.manager.task_executor().clone());
        let job = {
            let (chain, request) = (Arc::clone(self.chain), Arc::clone(self.request));
            move || run_blocking(&chain, &request, work)
        };
        match executor.try_submit(job) {
            Err(rejected) => Outcome::Rejected(AsyncError::Rejected {
                retry_after: rejected.retry_after,
            }),
            Ok(handle) => {
                match within(self.timeout, self.manager.grace_over(self.key), handle).await {
                    Ok(Ok(result)) => Outcome::Done(result),
                    // `run_blocking` catches panics itself; this is the executor's backstop.
                    Ok(Err(panicked)) => Outcome::Done(Err(AsyncError::TaskPanicked {
                        message: panicked.message,
                    })),
                    Err(after) => Outcome::TimedOut(after),
                }
            }
        }
    }
}

/// On the executor's thread: `pre_process`, the work, `post_process` (Spring's
/// `WebAsyncManager` callable wrapper).
fn run_blocking<T: IntoResponse>(
    chain: &[Arc<dyn CallableProcessingInterceptor>],
    request: &AsyncRequest,
    work: impl FnOnce() -> T,
) -> Result<Response, AsyncError> {
    let (pre_processed, failed) = callable_pre(chain, request);
    let result = match failed {
        Some(response) => Ok(response),
        None => guard::catch("async task", || work().into_response())
            .map_err(|message| AsyncError::TaskPanicked { message }),
    };
    callable_post(chain, pre_processed, request, result)
}

/// On the request's task: `pre_process`, the future, `post_process`.
async fn run_future<T: IntoResponse>(
    chain: &[Arc<dyn CallableProcessingInterceptor>],
    request: &AsyncRequest,
    work: std::pin::Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<Response, AsyncError> {
    let (pre_processed, failed) = callable_pre(chain, request);
    let result = match failed {
        Some(response) => Ok(response),
        None => guard::catch_future("async task", work.map(IntoResponse::into_response))
            .await
            .map_err(|message| AsyncError::TaskPanicked { message }),
    };
    callable_post(chain, pre_processed, request, result)
}

/// `future`'s output, or `Err(waited)` if the timeout elapsed first or a shutdown's grace
/// period ended.
async fn within<F: Future>(
    timeout: Option<Duration>,
    grace_over: impl Future<Output = ()>,
    future: F,
) -> Result<F::Output, Duration> {
    let started = tokio::time::Instant::now();
    let expired = async {
        match timeout {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        output = future => Ok(output),
        () = expired => Err(timeout.unwrap_or_default()),
        () = grace_over => Err(started.elapsed()),
    }
}

/// One task in flight. Dropped before [`finish`](Self::finish) means the response future was
/// dropped: the client went away.
struct Lifecycle<T> {
    _pending: Pending,
    manager: AsyncManager,
    chain: Chain,
    request: Arc<AsyncRequest>,
    /// For work that asked for one.
    token: Option<CancellationToken>,
    on_error: Option<ErrorFallback<T>>,
    on_completion: Option<Box<dyn FnOnce() + Send>>,
    finished: bool,
}

impl<T: IntoResponse> Lifecycle<T> {
    /// The task's own `on_error` value for `error`, rendered.
    fn fallback(&mut self, error: &AsyncError) -> Option<Response> {
        let on_error = self.on_error.take()?;
        match contain("on_error", || on_error(error)) {
            Some(value) => value.map(IntoResponse::into_response),
            // A panicking `on_error` is the result: `500`.
            None => Some(panic_response()),
        }
    }
}

impl<T> Lifecycle<T> {
    /// The interceptors' `handle_error` in order: the first response given.
    fn handle_error(&self, error: &AsyncError) -> Option<Response> {
        self.chain.iter().find_map(|interceptor| {
            hook_option("handle_error", || {
                interceptor.handle_error(&self.request, error)
            })
        })
    }

    fn finish(&mut self) {
        self.finished = true;
        self.manager.count(Count::Completed);
        tracing::debug!("async request completed");
        self.complete();
    }

    /// `after_completion` in reverse for every interceptor (C.49), then `on_completion`.
    fn complete(&mut self) {
        for interceptor in self.chain.iter().rev() {
            contain("after_completion", || {
                interceptor.after_completion(&self.request)
            });
        }
        if let Some(on_completion) = self.on_completion.take() {
            contain("on_completion", on_completion);
        }
    }
}

impl<T> Drop for Lifecycle<T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(token) = &self.token {
            token.cancel();
        }
        self.manager.count(Count::Disconnected);
        tracing::debug!(
            path = self.request.path(),
            "client disconnected from a running async task"
        );
        let error = AsyncError::ClientDisconnected;
        if let Some(on_error) = self.on_error.take() {
            // The value cannot reach anyone; only the notification matters.
            contain("on_error", || drop(on_error(&error)));
        }
        let _ = self.handle_error(&error);
        self.complete();
    }
}
