//! Processing interceptors: hooks into the async lifecycle (Spring's
//! `CallableProcessingInterceptor`, `DeferredResultProcessingInterceptor` and
//! `AsyncHandlerInterceptor`), and the chain rules that call them.
use std::{fmt, sync::Arc};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, Uri};

use crate::{error::AsyncError, guard::contain};

/// The request an async lifecycle hook is about: its method, URI, `Accept` header, the
/// route's `produces` media type and the `Content-Type` already set on the response.
#[derive(Debug, Clone)]
pub struct AsyncRequest {
    method: Method,
    uri: Uri,
    accept: Option<HeaderValue>,
    produces: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
}

impl AsyncRequest {
    /// A request head with `method` and `uri`.
    pub fn new(method: Method, uri: Uri) -> Self {
        AsyncRequest {
            method,
            uri,
            accept: None,
            produces: None,
            content_type: None,
        }
    }

    pub(crate) fn with_content_type(mut self, content_type: Option<HeaderValue>) -> Self {
        self.content_type = content_type;
        self
    }

    /// The `Content-Type` a wrapper already set on the response, as in
    /// `([(CONTENT_TYPE, "text/event-stream")], value)`: it decides how a
    /// [`ReactiveStream`](crate::ReactiveStream) is written, before `produces` and `Accept`.
    pub fn content_type(&self) -> Option<&HeaderValue> {
        self.content_type.as_ref()
    }

    pub(crate) fn with_accept(mut self, accept: Option<HeaderValue>) -> Self {
        self.accept = accept;
        self
    }

    pub(crate) fn with_produces(mut self, produces: Option<HeaderValue>) -> Self {
        self.produces = produces;
        self
    }

    /// The request's `Accept` header, if any.
    pub fn accept(&self) -> Option<&HeaderValue> {
        self.accept.as_ref()
    }

    /// The route's `produces` media type, if it declares one.
    pub fn produces(&self) -> Option<&HeaderValue> {
        self.produces.as_ref()
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request URI, as the client sent it (path and query).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request path.
    pub fn path(&self) -> &str {
        self.uri.path()
    }
}

/// What a hook that can fail returns: `Err(response)` makes `response` the result (Spring: the
/// hook threw).
pub type HookResult = Result<(), Response>;

/// Hooks into the processing of `Callable`s and `WebAsyncTask`s: Spring's
/// `CallableProcessingInterceptor`. Its docs hold the rules of every processing interceptor.
///
/// Register interceptors with
/// [`AsyncConfig::callable_interceptor`](crate::AsyncConfig::callable_interceptor) and
/// [`AsyncConfig::deferred_result_interceptor`](crate::AsyncConfig::deferred_result_interceptor),
/// in order. Every hook has a default that does nothing, so an interceptor implements only what
/// it needs. A hook "throws" in Spring's terms by returning `Err(response)`: that response
/// becomes the result. A panicking hook is contained, logged, and treated like a hook that
/// failed with `500`: a `handle_timeout` or `handle_error` that panics answers `500`, not the
/// timeout or rejection `503`. Hooks with no result to give
/// ([`after_completion`](Self::after_completion),
/// [`AsyncHandlerInterceptor::after_concurrent_handling_started`], and `handle_error` after a
/// client disconnect) only log it; the chain's other `after_completion` hooks still run.
///
/// # Order (Spring's checklist C.40–C.52, D.60–D.64, E.71–E.75)
///
/// The chain is `[the value's own callbacks, registered interceptors in order, the built-in
/// timeout response]`.
///
/// | hook | `Callable` / `WebAsyncTask` | `DeferredResult` |
/// |---|---|---|
/// | `before_concurrent_handling` | in order, before async starts; `Err` is sent at once and async never starts | same |
/// | `pre_process` | in order, on the task's thread, before the task; `Err` skips the task and is the result | in order, right after async starts; `Err` is the result at once |
/// | `post_process` | reverse order, only for interceptors whose `pre_process` succeeded, with the task's result; every one runs, the first `Err` replaces the result | reverse order when the result arrives; the first `Err` replaces it and skips the rest |
/// | `handle_timeout` | in order after the task's `on_timeout` (if it has none); the first `Some` is the result; none → timeout response | in order after the result's own `on_timeout` and timeout result; the first `Some` is the result; none → timeout response |
/// | `handle_error` | executor rejection or client disconnect: in order; the first `Some` is the response (ignored when the client is gone) | client disconnect: in order, after the result's own `on_error`; a notification (Spring: the error is the result) |
/// | `after_completion` | once, reverse order, every interceptor, also after timeout, error and disconnect | once, reverse order, those whose `pre_process` ran |
///
/// Where Rust differs: a late value of a blocking task that timed out still runs the `post_process`
/// hooks on its thread (as in Spring), possibly after `after_completion`; an async task that
/// timed out is dropped and gets no `post_process`.
///
/// # Example
///
/// An interceptor that answers a timed-out task with `202 Accepted` instead of `503`:
///
/// ```
/// use async_mvc::{AsyncConfig, AsyncRequest, CallableProcessingInterceptor};
/// use axum::{http::StatusCode, response::{IntoResponse, Response}};
///
/// struct StillWorking;
///
/// impl CallableProcessingInterceptor for StillWorking {
///     fn handle_timeout(&self, request: &AsyncRequest) -> Option<Response> {
///         let retry = format!("still working on {}; try again", request.path());
///         Some((StatusCode::ACCEPTED, retry).into_response())
///     }
/// }
///
/// let config = AsyncConfig::new().callable_interceptor(StillWorking);
/// ```
pub trait CallableProcessingInterceptor: Send + Sync + 'static {
    /// Before async processing starts, on the request's task.
    fn before_concurrent_handling(&self, request: &AsyncRequest) -> HookResult {
        let _ = request;
        Ok(())
    }

    /// On the task's thread (or task), before the work runs.
    fn pre_process(&self, request: &AsyncRequest) -> HookResult {
        let _ = request;
        Ok(())
    }

    /// After the work ran, on its thread, with its result: the rendered value, or the error
    /// ([`AsyncError::TaskPanicked`]).
    fn post_process(
        &self,
        request: &AsyncRequest,
        result: Result<&Response, &AsyncError>,
    ) -> HookResult {
        let _ = (request, result);
        Ok(())
    }

    /// The task's timeout fired; `Some` supplies the response. A panic here answers `500`.
    fn handle_timeout(&self, request: &AsyncRequest) -> Option<Response> {
        let _ = request;
        None
    }

    /// The executor rejected the task ([`AsyncError::Rejected`]) or the client disconnected
    /// ([`AsyncError::ClientDisconnected`]); `Some` supplies the response. A panic here answers
    /// `500` (after a disconnect, nobody receives it).
    fn handle_error(&self, request: &AsyncRequest, error: &AsyncError) -> Option<Response> {
        let _ = (request, error);
        None
    }

    /// Once, when the request is complete, whatever the outcome.
    fn after_completion(&self, request: &AsyncRequest) {
        let _ = request;
    }
}

/// Hooks into the processing of `DeferredResult`s: Spring's
/// `DeferredResultProcessingInterceptor`. The order of the hooks is in the table on
/// [`CallableProcessingInterceptor`].
pub trait DeferredResultProcessingInterceptor: Send + Sync + 'static {
    /// Before async processing starts, on the request's task.
    fn before_concurrent_handling(&self, request: &AsyncRequest) -> HookResult {
        let _ = request;
        Ok(())
    }

    /// Right after async processing started; the value may already be set.
    fn pre_process(&self, request: &AsyncRequest) -> HookResult {
        let _ = request;
        Ok(())
    }

    /// When the result arrives, before it is sent: the rendered value, or the error
    /// ([`AsyncError::Timeout`] when nothing supplied a timeout result).
    fn post_process(
        &self,
        request: &AsyncRequest,
        result: Result<&Response, &AsyncError>,
    ) -> HookResult {
        let _ = (request, result);
        Ok(())
    }

    /// The timeout fired and the result's own `on_timeout` and timeout result supplied nothing;
    /// `Some` supplies the response. A panic here answers `500` (then `post_process` sees it).
    fn handle_timeout(&self, request: &AsyncRequest) -> Option<Response> {
        let _ = request;
        None
    }

    /// The client disconnected while the result was pending. A notification: the result is
    /// expired whatever the hook does; a panic is logged.
    fn handle_error(&self, request: &AsyncRequest, error: &AsyncError) {
        let _ = (request, error);
    }

    /// Once, when the request is complete, whatever the outcome.
    fn after_completion(&self, request: &AsyncRequest) {
        let _ = request;
    }
}

/// A request-level hook: Spring's `AsyncHandlerInterceptor`.
pub trait AsyncHandlerInterceptor: Send + Sync + 'static {
    /// The handler returned an async value and async processing started: the request stays
    /// open while the handler's task is done (Spring: called instead of `postHandle` and
    /// `afterCompletion` on the dispatch that started async processing).
    fn after_concurrent_handling_started(&self, request: &AsyncRequest);
}

/// The interceptors registered on an [`AsyncConfig`](crate::AsyncConfig).
#[derive(Clone, Default)]
pub(crate) struct Interceptors {
    callable: Vec<Arc<dyn CallableProcessingInterceptor>>,
    deferred: Vec<Arc<dyn DeferredResultProcessingInterceptor>>,
    handler: Vec<Arc<dyn AsyncHandlerInterceptor>>,
}

impl Interceptors {
    pub(crate) fn push_callable(&mut self, interceptor: Arc<dyn CallableProcessingInterceptor>) {
        self.callable.push(interceptor);
    }

    pub(crate) fn push_deferred(
        &mut self,
        interceptor: Arc<dyn DeferredResultProcessingInterceptor>,
    ) {
        self.deferred.push(interceptor);
    }

    pub(crate) fn push_handler(&mut self, interceptor: Arc<dyn AsyncHandlerInterceptor>) {
        self.handler.push(interceptor);
    }

    /// The callable interceptors, in registration order.
    pub(crate) fn callable(&self) -> &[Arc<dyn CallableProcessingInterceptor>] {
        &self.callable
    }

    /// The deferred-result interceptors, in registration order.
    pub(crate) fn deferred(&self) -> &[Arc<dyn DeferredResultProcessingInterceptor>] {
        &self.deferred
    }

    /// Tells every [`AsyncHandlerInterceptor`] that async processing started.
    pub(crate) fn concurrent_handling_started(&self, request: &AsyncRequest) {
        for interceptor in &self.handler {
            contain("after_concurrent_handling_started", || {
                interceptor.after_concurrent_handling_started(request)
            });
        }
    }

    /// Whether any `AsyncHandlerInterceptor` is registered.
    pub(crate) fn has_handler_interceptors(&self) -> bool {
        !self.handler.is_empty()
    }
}

impl fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interceptors")
            .field("callable", &self.callable.len())
            .field("deferred", &self.deferred.len())
            .field("handler", &self.handler.len())
            .finish()
    }
}

/// Runs a hook; a panic is logged and becomes `Err(500)` (Spring: the hook threw, and the
/// exception is the result).
pub(crate) fn hook<R>(
    name: &'static str,
    run: impl FnOnce() -> Result<R, Response>,
) -> Result<R, Response> {
    contain(name, run).unwrap_or_else(|| Err(panic_response()))
}

/// Runs a hook that may supply the response (`handle_timeout`, `handle_error`); a panic is
/// logged and supplies `500`, so it is the result rather than a fall-through to the next hook
/// or the built-in timeout or rejection response.
pub(crate) fn hook_option(
    name: &'static str,
    run: impl FnOnce() -> Option<Response>,
) -> Option<Response> {
    contain(name, run).unwrap_or_else(|| Some(panic_response()))
}

/// The response a panicking hook or result-supplying callback gives: `500`.
pub(crate) fn panic_response() -> Response {
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Callable `pre_process` hooks in order; returns how many succeeded and the first failure.
pub(crate) fn callable_pre(
    chain: &[Arc<dyn CallableProcessingInterceptor>],
    request: &AsyncRequest,
) -> (usize, Option<Response>) {
    for (done, interceptor) in chain.iter().enumerate() {
        if let Err(response) = hook("pre_process", || interceptor.pre_process(request)) {
            return (done, Some(response));
        }
    }
    (chain.len(), None)
}

/// Callable `post_process` hooks in reverse over the first `done`: every one runs, the first
/// failure replaces the result.
pub(crate) fn callable_post(
    chain: &[Arc<dyn CallableProcessingInterceptor>],
    done: usize,
    request: &AsyncRequest,
    mut result: Result<Response, AsyncError>,
) -> Result<Response, AsyncError> {
    let mut replaced = None;
    for interceptor in chain[..done.min(chain.len())].iter().rev() {
        let view = result.as_ref();
        if let Err(response) = hook("post_process", || interceptor.post_process(request, view)) {
            replaced.get_or_insert(response);
        }
    }
    if let Some(response) = replaced {
        result = Ok(response);
    }
    result
}

/// Deferred `post_process` hooks in reverse over the first `done`: the first failure replaces
/// the result and skips the rest.
pub(crate) fn deferred_post(
    chain: &[Arc<dyn DeferredResultProcessingInterceptor>],
    done: usize,
    request: &AsyncRequest,
    result: Result<Response, AsyncError>,
) -> Result<Response, AsyncError> {
    for interceptor in chain[..done.min(chain.len())].iter().rev() {
        let view = result.as_ref();
        if let Err(response) = hook("post_process", || interceptor.post_process(request, view)) {
            return Ok(response);
        }
    }
    result
}
