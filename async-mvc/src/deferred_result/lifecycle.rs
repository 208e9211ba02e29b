//! The lifecycle of one returned [`DeferredResult`](super::DeferredResult), driven by the value
//! itself on the manager's services (admission, counters, interceptor chains, shutdown, error
//! mapping).
//!
//! before_concurrent_handling → started → pre_process → wait for the value, the timeout or a
//! disconnect → post_process → response → after_completion, `on_completion`.

use std::{
    future::{poll_fn, Future},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use axum::response::{IntoResponse, Response};

use super::{DeferredResult, Shared, TimeoutOutcome};
use crate::{
    context,
    error::AsyncError,
    guard::contain,
    interceptor::{
        deferred_post, hook, hook_option, panic_response, AsyncRequest,
        DeferredResultProcessingInterceptor,
    },
    manager::{AsyncManager, Count, Pending},
    work::{AsyncWork, StartAsync, WorkFuture},
};

// ===== the hand-off: from the handler's return to this lifecycle =====

impl<T, E> IntoResponse for DeferredResult<T, E>
where
    T: IntoResponse + Send + 'static,
    E: IntoResponse + Send + 'static,
{
    fn into_response(self) -> Response {
        // Set before the handler returned, under an async support layer: complete right here,
        // without the hand-off to the layer (which would give the same response).
        if let Some(Some(response)) =
            context::with_lent(|manager| complete_at_once(manager, &self.shared))
        {
            return response;
        }
        AsyncWork::response(DeferredStart {
            shared: Some(self.shared),
        })
    }
}

/// A returned `DeferredResult` on its way to the manager.
struct DeferredStart<T, E> {
    /// Taken when the manager starts processing.
    shared: Option<Arc<Shared<T, E>>>,
}

impl<T, E> StartAsync for DeferredStart<T, E>
where
    T: IntoResponse + Send + 'static,
    E: IntoResponse + Send + 'static,
{
    fn kind(&self) -> crate::telemetry::Kind {
        crate::telemetry::Kind::Deferred
    }

    fn start(mut self, manager: AsyncManager, request: AsyncRequest) -> WorkFuture {
        match self.shared.take() {
            Some(shared) => run(manager, request, shared),
            None => WorkFuture::ready(AsyncError::NotSupported.into_response()),
        }
    }
}

impl<T, E> Drop for DeferredStart<T, E> {
    /// Never started (no async support on the route): expire the result so that setters learn
    /// it, and run `on_error` and `on_completion`, as Spring does when async cannot start.
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            if let Some(on_error) = shared.expire() {
                contain("on_error", || on_error(&AsyncError::NotSupported));
            }
            if let Some(on_completion) = shared.complete() {
                contain("on_completion", on_completion);
            }
        }
    }
}

// ===== the lifecycle =====

/// Drives one returned `DeferredResult` to its response.
///
/// Order of events (Spring checklist A.8, A.10, C.45–C.49, D.63, E.73):
/// - value set → `post_process` (reverse) → rendered → `after_completion` (reverse) →
///   `on_completion`;
/// - timeout → `on_timeout` → its value, else the timeout result, else the interceptors'
///   `handle_timeout`, else the timeout response → `post_process` → … as above;
/// - client gone (this future dropped) → `on_error(ClientDisconnected)` → expired →
///   interceptors' `handle_error` → `after_completion` → `on_completion`.
fn run<T, E>(manager: AsyncManager, request: AsyncRequest, shared: Arc<Shared<T, E>>) -> WorkFuture
where
    T: IntoResponse + Send + 'static,
    E: IntoResponse + Send + 'static,
{
    // Everything up to the wait is synchronous: a result that is already decided costs no
    // async state at all.
    for interceptor in manager.deferred_interceptors() {
        if let Err(response) = hook("before_concurrent_handling", || {
            interceptor.before_concurrent_handling(&request)
        }) {
            // Async never starts: the result expires and completes with this response.
            shared.expire();
            if let Some(on_completion) = shared.complete() {
                contain("on_completion", on_completion);
            }
            return ready(response);
        }
    }
    let pending = match manager.admit() {
        Ok(pending) => pending,
        Err(refused) => {
            // Refused before it started: the result expires and learns why.
            if let Some(on_error) = shared.expire() {
                contain("on_error", || on_error(refused.error()));
            }
            if let Some(on_completion) = shared.complete() {
                contain("on_completion", on_completion);
            }
            return ready(refused.response());
        }
    };
    pending.manager().concurrent_handling_started(&request);

    // The head is kept for the interceptors and for debug logs; a pending request without
    // either saves its 192 bytes.
    let keep_head = !pending.manager().deferred_interceptors().is_empty()
        || tracing::level_enabled!(tracing::Level::DEBUG);
    let mut lifecycle = Lifecycle {
        pending,
        shared,
        request: keep_head.then(|| Box::new(request)),
        pre_processed: 0,
        finished: false,
    };
    if let Some(failed) = lifecycle.pre_process() {
        // The hook's response fills the slot; a later `set_result` is refused.
        lifecycle.shared.expire();
        return ready(lifecycle.finish(Ok(failed)));
    }
    if let Some(value) = lifecycle.shared.take_value() {
        // Set before the handler returned: complete at once, no timer.
        return ready(lifecycle.finish_with_value(value));
    }
    WorkFuture::waiting(async move {
        let timeout = lifecycle
            .shared
            .effective_timeout(lifecycle.manager().config().get_default_timeout());
        #[cfg(feature = "metrics")]
        let due = timeout.map(|after| tokio::time::Instant::now() + after);
        // A graceful shutdown resolves the result as its timeout would, at once.
        let waited = tokio::select! {
            biased;
            value = wait(&lifecycle.shared, timeout) => value,
            () = lifecycle.manager().shutdown_started(Arc::as_ptr(&lifecycle.shared) as usize) => {
                lifecycle.shared.take_value()
            }
        };
        match waited {
            Some(value) => lifecycle.finish_with_value(value),
            None => {
                #[cfg(feature = "metrics")]
                if let Some(due) = due {
                    lifecycle.manager().instruments().timeout_fired(due);
                }
                let after = timeout.unwrap_or_default();
                let result = resolve_timeout(&lifecycle, after);
                lifecycle.finish(result)
            }
        }
    })
}

/// The response to a `DeferredResult` whose value was set before its handler returned,
/// produced at once — what [`run`] would produce, where the manager says that is certain
/// without the request head ([`AsyncManager::completes_at_once`]). `None` otherwise, or
/// when no value is set; the caller then takes the general path.
fn complete_at_once<T, E>(manager: &AsyncManager, shared: &Shared<T, E>) -> Option<Response>
where
    T: IntoResponse,
    E: IntoResponse,
{
    if !manager.completes_at_once() {
        return None;
    }
    let value = shared.take_value()?;
    // `on_completion` runs after the response is rendered, even if rendering panics.
    let completion = Completion(shared);
    let response = render(value);
    // For the layer's metrics: the response came from a deferred result.
    #[cfg(feature = "metrics")]
    crate::context::note_rendered(crate::telemetry::Kind::Deferred);
    manager.count(Count::Completed);
    drop(completion);
    Some(response)
}

/// The chain of D.63: the result's own `on_timeout` and timeout result, then the
/// interceptors, then the built-in timeout error.
fn resolve_timeout<T, E>(
    lifecycle: &Lifecycle<T, E>,
    after: Duration,
) -> Result<Response, AsyncError>
where
    T: IntoResponse,
    E: IntoResponse,
{
    lifecycle.manager().count(Count::TimedOut);
    tracing::debug!(
        path = lifecycle.path(),
        timeout_ms = after.as_millis() as u64,
        "async request timed out"
    );
    let shared = &lifecycle.shared;
    // A panicking `on_timeout` is the result (`500`) unless a value was set, by the
    // callback itself before it panicked or by the fixed timeout result (Spring runs the
    // callback in `try` and sets the timeout result in `finally`).
    let on_timeout_panicked = shared
        .take_on_timeout()
        .is_some_and(|on_timeout| contain("on_timeout", on_timeout).is_none());
    match shared.resolve_timeout() {
        TimeoutOutcome::Value(value) => Ok(render(value)),
        TimeoutOutcome::Supplied(supplier) => Ok(match contain("timeout result", supplier) {
            Some(value) => value.into_response(),
            None => panic_response(),
        }),
        TimeoutOutcome::NoResult if on_timeout_panicked => Ok(panic_response()),
        TimeoutOutcome::NoResult => lifecycle
            .request
            .as_ref()
            .and_then(|request| {
                lifecycle.chain().iter().find_map(|interceptor| {
                    hook_option("handle_timeout", || interceptor.handle_timeout(request))
                })
            })
            .ok_or(AsyncError::Timeout { after }),
    }
}

/// Waits for the value; `None` when `timeout` elapsed first.
async fn wait<T, E>(shared: &Shared<T, E>, timeout: Option<Duration>) -> Option<Result<T, E>> {
    if let Some(value) = shared.take_value() {
        // Set before the handler returned: complete at once, no timer.
        return Some(value);
    }
    let mut sleep = pin!(timeout.map(tokio::time::sleep));
    poll_fn(|cx| {
        if let Poll::Ready(value) = shared.poll_value(cx) {
            return Poll::Ready(Some(value));
        }
        match sleep.as_mut().as_pin_mut() {
            Some(sleep) => sleep.poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    })
    .await
}

/// A response that is already known, as the work's future.
fn ready(response: Response) -> WorkFuture {
    WorkFuture::ready(response)
}

fn render<T: IntoResponse, E: IntoResponse>(value: Result<T, E>) -> Response {
    match value {
        Ok(value) => value.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Runs a completed result's `on_completion` when dropped.
struct Completion<'a, T, E>(&'a Shared<T, E>);

impl<T, E> Drop for Completion<'_, T, E> {
    fn drop(&mut self) {
        if let Some(on_completion) = self.0.complete() {
            contain("on_completion", on_completion);
        }
    }
}

/// One deferred result in flight. Dropped before [`finish`](Self::finish) means the response
/// future was dropped: the client went away.
struct Lifecycle<T, E> {
    /// Counts the request in flight, and holds the manager.
    pending: Pending,
    shared: Arc<Shared<T, E>>,
    /// `None` when no interceptor needs it (nor a debug log); boxed, as it is rarely needed.
    request: Option<Box<AsyncRequest>>,
    /// How many interceptors' `pre_process` succeeded: those get `post_process` and
    /// `after_completion`.
    pre_processed: usize,
    finished: bool,
}

impl<T, E> Lifecycle<T, E> {
    fn manager(&self) -> &AsyncManager {
        self.pending.manager()
    }

    /// The manager's `DeferredResultProcessingInterceptor`s.
    fn chain(&self) -> &[Arc<dyn DeferredResultProcessingInterceptor>] {
        self.manager().deferred_interceptors()
    }

    /// The request path, for logs.
    fn path(&self) -> &str {
        self.request.as_deref().map_or("", AsyncRequest::path)
    }

    /// `post_process` (reverse) for those that got `pre_process`.
    fn post_process(&self, result: Result<Response, AsyncError>) -> Result<Response, AsyncError> {
        match &self.request {
            Some(request) => deferred_post(self.chain(), self.pre_processed, request, result),
            None => result,
        }
    }

    /// `pre_process` in order; the first failure's response.
    fn pre_process(&mut self) -> Option<Response> {
        let Some(request) = &self.request else {
            return None;
        };
        for interceptor in self.pending.manager().deferred_interceptors() {
            if let Err(response) = hook("pre_process", || interceptor.pre_process(request)) {
                return Some(response);
            }
            self.pre_processed += 1;
        }
        None
    }

    /// The value arrived: `post_process`, then the response.
    fn finish_with_value(self, value: Result<T, E>) -> Response
    where
        T: IntoResponse,
        E: IntoResponse,
    {
        let result = self.post_process(Ok(render(value)));
        self.finish_rendered(result)
    }

    /// A result that did not come from the value (a failed hook, a timeout): `post_process`
    /// unless a hook failed, then the response.
    fn finish(self, result: Result<Response, AsyncError>) -> Response {
        let result = if self.pre_processed < self.chain().len() {
            result
        } else {
            self.post_process(result)
        };
        self.finish_rendered(result)
    }

    /// Renders the result, counts the request as completed and runs the completion hooks.
    fn finish_rendered(mut self, result: Result<Response, AsyncError>) -> Response {
        let response = result.unwrap_or_else(|error| self.manager().error_response(&error));
        self.finished = true;
        self.manager().count(Count::Completed);
        tracing::debug!("async request completed");
        self.complete();
        response
    }

    /// `after_completion` in reverse for those that got `pre_process`, then `on_completion`.
    fn complete(&mut self) {
        if let Some(request) = &self.request {
            for interceptor in self.chain()[..self.pre_processed].iter().rev() {
                contain("after_completion", || interceptor.after_completion(request));
            }
        }
        if let Some(on_completion) = self.shared.complete() {
            contain("on_completion", on_completion);
        }
    }
}

impl<T, E> Drop for Lifecycle<T, E> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.manager().count(Count::Disconnected);
        tracing::debug!(
            path = self.path(),
            "client disconnected from a pending async request"
        );
        let error = AsyncError::ClientDisconnected;
        if let Some(on_error) = self.shared.expire() {
            contain("on_error", || on_error(&error));
        }
        if let Some(request) = &self.request {
            for interceptor in self.chain().iter() {
                contain("handle_error", || interceptor.handle_error(request, &error));
            }
        }
        self.complete();
    }
}
