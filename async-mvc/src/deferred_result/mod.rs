//! [`DeferredResult`]: a result that another task or thread supplies later.
//!
//! The path of one request:
//! 1. the handler returns a `DeferredResult`; its [`IntoResponse`](axum::response::IntoResponse) completes at once when the
//!    value is already set and the lent manager allows it (`context.rs`), else hands it to the
//!    router's layer through a response extension (`work.rs`, `layer.rs`);
//! 2. its lifecycle (`lifecycle.rs`) waits for [`set_result`](DeferredResult::set_result), the
//!    timeout or a client disconnect, and runs the callbacks in Spring's order, on the
//!    manager's services (admission, counters, interceptors, shutdown);
//! 3. the value is rendered exactly as if the handler had returned it.

use std::{
    fmt,
    future::{Future, IntoFuture},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use axum::response::Response;

mod lifecycle;

use crate::error::AsyncError;

/// A result that is produced later, from any task or thread: Spring MVC's `DeferredResult`.
///
/// A handler returns it at once; the request stays open until some other task calls
/// [`set_result`](Self::set_result) or [`set_error_result`](Self::set_error_result), the
/// timeout fires, or the client goes away. The value is then rendered exactly as if the handler
/// had returned it: `T` and `E` are any [`IntoResponse`](axum::response::IntoResponse) types (`String`, `Json<_>`,
/// `(StatusCode, …)`, `Response`). `E` is the Rust form of Spring's "error result goes through
/// the regular exception handling".
///
/// The handle is a cheap `Clone` (an `Arc`), `Send` and `Sync`: keep one clone in a map or a
/// queue and return another. It can be completed from a tokio task or from a plain
/// [`std::thread`] with no runtime.
///
/// # Example
///
/// ```
/// use async_mvc::DeferredResult;
///
/// async fn quotes() -> DeferredResult<String> {
///     let result = DeferredResult::new();
///     let handle = result.clone();
///     std::thread::spawn(move || {
///         handle.set_result("IBM 171.20".to_owned());
///     });
///     result
/// }
/// ```
///
/// # Timeouts
///
/// [`new`](Self::new) uses the manager's default timeout
/// ([`AsyncConfig::default_timeout`](crate::AsyncConfig::default_timeout), 30 s unless
/// configured). When the timeout fires, in this order: the `on_timeout` callback runs; if it set
/// no result, the timeout result ([`with_timeout_result`](Self::with_timeout_result) or
/// [`with_timeout_result_fn`](Self::with_timeout_result_fn)) is used; with neither, the manager's
/// timeout response (`503 Service Unavailable` by default). Then `on_completion` runs.
///
/// # Testing without a server
///
/// Spring tests drive a `DeferredResult` directly (`getResult`, `hasResult`,
/// `setResultHandler`); here [`result`](Self::result) peeks at the value and `.await` (the
/// [`IntoFuture`] impl) waits for it, with no router, manager or runtime needed:
///
/// ```
/// use async_mvc::DeferredResult;
///
/// let result = DeferredResult::<String, String>::new();
/// assert_eq!(result.result(), None);
///
/// // The code under test completes it, here from another thread.
/// let handle = result.clone();
/// std::thread::spawn(move || handle.set_result("IBM 171.20".to_owned()));
///
/// // Any executor will do: the future needs no tokio runtime.
/// let value = futures::executor::block_on(async { result.clone().await });
/// assert_eq!(value, Some(Ok("IBM 171.20".to_owned())));
/// // One-shot: the value was taken, and a second value is refused.
/// assert!(result.has_result());
/// assert!(!result.set_result("late".to_owned()));
/// ```
///
/// # Callbacks
///
/// As in Spring, there is one callback of each kind: registering a second `on_timeout`,
/// `on_error` or `on_completion` **replaces** the first. Callbacks may be registered from any
/// thread, before or after the handler returns; one registered after the request completed never
/// runs. They run without any lock held, so they may call [`set_result`](Self::set_result).
pub struct DeferredResult<T, E = Response> {
    shared: Arc<Shared<T, E>>,
}

type Callback = Box<dyn FnOnce() + Send>;
type ErrorCallback = Box<dyn FnOnce(&AsyncError) + Send>;

struct Shared<T, E> {
    /// `None`: the manager's default timeout applies.
    timeout: Option<Duration>,
    state: Mutex<State<T, E>>,
}

enum TimeoutResult<T> {
    Value(T),
    Supplier(Box<dyn FnOnce() -> T + Send>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No value yet; `set_result` will succeed.
    Waiting,
    /// A value (or error value) was set.
    Set,
    /// Completed without a value: timed out with no result, client gone, or never processed.
    Expired,
}

struct State<T, E> {
    phase: Phase,
    value: Option<Result<T, E>>,
    waker: Option<Waker>,
    timeout_result: Option<TimeoutResult<T>>,
    on_timeout: Option<Callback>,
    on_error: Option<ErrorCallback>,
    on_completion: Option<Callback>,
    /// The request has completed; callbacks registered from now on never run.
    completed: bool,
}

impl<T, E> DeferredResult<T, E> {
    /// A pending result that uses the manager's default timeout.
    pub fn new() -> Self {
        Self::build(None, None)
    }

    /// A pending result with its own timeout, overriding the manager's default (Spring's
    /// `new DeferredResult<>(timeoutMillis)`). With no timeout result, a timeout renders the
    /// manager's timeout response (`503` by default).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::build(Some(timeout), None)
    }

    /// A pending result with its own timeout and the value rendered when it fires (Spring's
    /// `new DeferredResult<>(timeoutMillis, timeoutResult)`), e.g. `304 Not Modified` for a long
    /// poll.
    pub fn with_timeout_result(timeout: Duration, timeout_result: T) -> Self {
        Self::build(Some(timeout), Some(TimeoutResult::Value(timeout_result)))
    }

    /// Like [`with_timeout_result`](Self::with_timeout_result), but the timeout result is
    /// computed only when the timeout fires (Spring's `DeferredResult(Long, Supplier)`).
    pub fn with_timeout_result_fn<F>(timeout: Duration, timeout_result: F) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        Self::build(
            Some(timeout),
            Some(TimeoutResult::Supplier(Box::new(timeout_result))),
        )
    }

    fn build(timeout: Option<Duration>, timeout_result: Option<TimeoutResult<T>>) -> Self {
        DeferredResult {
            shared: Arc::new(Shared {
                timeout,
                state: Mutex::new(State {
                    phase: Phase::Waiting,
                    value: None,
                    waker: None,
                    timeout_result,
                    on_timeout: None,
                    on_error: None,
                    on_completion: None,
                    completed: false,
                }),
            }),
        }
    }

    /// The timeout this result carries; `None` means the manager's default applies.
    pub fn timeout(&self) -> Option<Duration> {
        self.shared.timeout
    }

    /// Whether `self` and `other` are handles to the same result, e.g. to find a completed long
    /// poll in a list of waiters.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Sets the value and completes the request. Returns `true` only for the value that wins:
    /// `false` if a value was already set, or the result expired (timeout, client disconnect).
    pub fn set_result(&self, value: T) -> bool {
        self.shared.set(Ok(value))
    }

    /// Sets an error value and completes the request; it is rendered through `E`'s
    /// [`IntoResponse`](axum::response::IntoResponse), as Spring renders `setErrorResult` through its exception handlers.
    /// Returns `true` only for the value that wins, like [`set_result`](Self::set_result).
    pub fn set_error_result(&self, error: E) -> bool {
        self.shared.set(Err(error))
    }

    /// Whether a value or error value has been set (Spring's `hasResult`).
    pub fn has_result(&self) -> bool {
        self.shared.lock().phase == Phase::Set
    }

    /// The value or error value, if one is set and not yet taken: Spring's `getResult`, for
    /// tests. It is cloned; the result stays as it is. `None` before `set_result`, after the
    /// result expired, and once the manager serving it (or an `.await`) took the value.
    pub fn result(&self) -> Option<Result<T, E>>
    where
        T: Clone,
        E: Clone,
    {
        self.shared.lock().value.clone()
    }

    /// Whether a value was set or the result expired, so that `set_result` would return
    /// `false` (Spring's `isSetOrExpired`).
    pub fn is_set_or_expired(&self) -> bool {
        self.shared.lock().phase != Phase::Waiting
    }

    /// Runs `callback` when the timeout fires, before the timeout result is used. It may call
    /// [`set_result`](Self::set_result) on a clone of this handle to supply the response.
    /// Replaces an earlier `on_timeout`.
    pub fn on_timeout<F>(&self, callback: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let mut state = self.shared.lock();
        if !state.completed {
            state.on_timeout = Some(Box::new(callback));
        }
    }

    /// Runs `callback` when processing fails before a value was sent — today, when the client
    /// disconnects ([`AsyncError::ClientDisconnected`]). The result is expired afterwards.
    /// Replaces an earlier `on_error`.
    pub fn on_error<F>(&self, callback: F)
    where
        F: FnOnce(&AsyncError) + Send + 'static,
    {
        let mut state = self.shared.lock();
        if !state.completed {
            state.on_error = Some(Box::new(callback));
        }
    }

    /// Runs `callback` once the request has completed, whatever the outcome: value, timeout,
    /// error or disconnect. Replaces an earlier `on_completion`.
    pub fn on_completion<F>(&self, callback: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let mut state = self.shared.lock();
        if !state.completed {
            state.on_completion = Some(Box::new(callback));
        }
    }
}

impl<T, E> Shared<T, E> {
    fn lock(&self) -> MutexGuard<'_, State<T, E>> {
        // No user code runs under this lock, so poisoning can only come from a panicking
        // destructor of `T`/`E`; the state itself stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, value: Result<T, E>) -> bool {
        let waker = {
            let mut state = self.lock();
            if state.phase != Phase::Waiting {
                return false;
            }
            state.phase = Phase::Set;
            state.value = Some(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// The timeout to apply: this result's own, else the manager's default.
    fn effective_timeout(&self, default: Option<Duration>) -> Option<Duration> {
        self.timeout.or(default)
    }

    /// Ready with the value once one is set; otherwise registers the waker.
    fn poll_value(&self, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut state = self.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(value);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes a value that is already set, without waiting.
    fn take_value(&self) -> Option<Result<T, E>> {
        self.lock().value.take()
    }

    fn take_on_timeout(&self) -> Option<Callback> {
        self.lock().on_timeout.take()
    }

    /// After `on_timeout` ran: the value it (or a racing setter) set, else the timeout result.
    /// Either way the result is set or expired afterwards.
    fn resolve_timeout(&self) -> TimeoutOutcome<T, E> {
        let supplier = {
            let mut state = self.lock();
            if let Some(value) = state.value.take() {
                return TimeoutOutcome::Value(value);
            }
            match state.timeout_result.take() {
                Some(TimeoutResult::Value(value)) => {
                    state.phase = Phase::Set;
                    return TimeoutOutcome::Value(Ok(value));
                }
                Some(TimeoutResult::Supplier(supplier)) => {
                    // Set now so no late `set_result` wins while the supplier runs.
                    state.phase = Phase::Set;
                    supplier
                }
                None => {
                    state.phase = Phase::Expired;
                    return TimeoutOutcome::NoResult;
                }
            }
        };
        TimeoutOutcome::Supplied(supplier)
    }

    /// The client is gone (or processing never started): expires the result and returns the
    /// `on_error` callback to run. Wakes a task awaiting the result: it gets `None`.
    fn expire(&self) -> Option<ErrorCallback> {
        let (on_error, waker) = {
            let mut state = self.lock();
            if state.phase == Phase::Waiting {
                state.phase = Phase::Expired;
            }
            state.value = None;
            (state.on_error.take(), state.waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        on_error
    }

    /// Marks the request completed and returns `on_completion`. Drops every other callback,
    /// which breaks the reference cycle of a callback that captured a clone of its own handle.
    fn complete(&self) -> Option<Callback> {
        let mut state = self.lock();
        state.completed = true;
        state.on_timeout = None;
        state.on_error = None;
        state.timeout_result = None;
        state.waker = None;
        state.on_completion.take()
    }
}

/// What a fired timeout resolved to.
enum TimeoutOutcome<T, E> {
    /// A value set by `on_timeout`, a racing setter, or the fixed timeout result.
    Value(Result<T, E>),
    /// The lazily computed timeout result; call it outside any lock.
    Supplied(Box<dyn FnOnce() -> T + Send>),
    /// Nothing: render the manager's timeout response.
    NoResult,
}

/// `.await` on a `DeferredResult`: the value or error value once one is set (`Some`), or
/// `None` once the result expired without one (timeout with no timeout result, client gone,
/// never served) or another taker got the value first. Meant for tests and for code that
/// consumes a result itself; a result that is also being served by a manager goes to
/// whichever takes it first.
impl<T, E> IntoFuture for DeferredResult<T, E> {
    type Output = Option<Result<T, E>>;
    type IntoFuture = DeferredResultFuture<T, E>;

    fn into_future(self) -> Self::IntoFuture {
        DeferredResultFuture {
            shared: self.shared,
        }
    }
}

/// The future of `.await` on a [`DeferredResult`]; see its [`IntoFuture`] impl.
#[must_use = "futures do nothing unless polled"]
pub struct DeferredResultFuture<T, E = Response> {
    shared: Arc<Shared<T, E>>,
}

impl<T, E> Future for DeferredResultFuture<T, E> {
    type Output = Option<Result<T, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Some(value));
        }
        if state.phase != Phase::Waiting {
            // Expired, or set and already taken by someone else.
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T, E> fmt::Debug for DeferredResultFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredResultFuture")
            .field("phase", &self.shared.lock().phase)
            .finish()
    }
}

impl<T, E> Clone for DeferredResult<T, E> {
    fn clone(&self) -> Self {
        DeferredResult {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T, E> Default for DeferredResult<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> fmt::Debug for DeferredResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("DeferredResult")
            .field("timeout", &self.shared.timeout)
            .field("phase", &state.phase)
            .field("completed", &state.completed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_result_is_neither_set_nor_expired() {
        let result = DeferredResult::<String>::new();
        assert!(!result.has_result());
        assert!(!result.is_set_or_expired());
        assert_eq!(result.timeout(), None);
    }

    #[test]
    fn first_value_wins_across_clones() {
        let result = DeferredResult::<u32, String>::with_timeout(Duration::from_millis(5));
        let clone = result.clone();
        assert!(clone.ptr_eq(&result));
        assert!(!clone.ptr_eq(&DeferredResult::new()));
        assert!(clone.set_result(1));
        assert!(!result.set_result(2));
        assert!(!result.set_error_result("late".into()));
        assert!(result.has_result() && result.is_set_or_expired());
        assert!(matches!(result.shared.take_value(), Some(Ok(1))));
        assert_eq!(result.timeout(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn expired_result_refuses_values_and_hands_out_on_error_once() {
        let result = DeferredResult::<u32>::new();
        result.on_error(|_| {});
        assert!(result.shared.expire().is_some());
        assert!(result.shared.expire().is_none());
        assert!(result.is_set_or_expired());
        assert!(!result.has_result());
        assert!(!result.set_result(3));
    }

    #[test]
    fn timeout_prefers_a_set_value_then_the_timeout_result() {
        let result = DeferredResult::<u32>::with_timeout_result(Duration::ZERO, 7);
        assert!(result.set_result(1));
        assert!(matches!(
            result.shared.resolve_timeout(),
            TimeoutOutcome::Value(Ok(1))
        ));

        let result = DeferredResult::<u32>::with_timeout_result(Duration::ZERO, 7);
        assert!(matches!(
            result.shared.resolve_timeout(),
            TimeoutOutcome::Value(Ok(7))
        ));
        assert!(!result.set_result(8), "the timeout result won");

        let result = DeferredResult::<u32>::with_timeout(Duration::ZERO);
        assert!(matches!(
            result.shared.resolve_timeout(),
            TimeoutOutcome::NoResult
        ));
        assert!(result.is_set_or_expired() && !result.has_result());
    }

    #[test]
    fn callbacks_registered_after_completion_are_dropped() {
        let result = DeferredResult::<u32>::new();
        result.on_completion(|| {});
        assert!(result.shared.complete().is_some());
        result.on_completion(|| unreachable!("registered after completion"));
        assert!(result.shared.complete().is_none());
    }

    #[test]
    fn completion_breaks_a_callback_cycle() {
        let result = DeferredResult::<u32>::new();
        let own = result.clone();
        result.on_timeout(move || {
            own.set_result(1);
        });
        assert_eq!(Arc::strong_count(&result.shared), 2);
        let _ = result.shared.complete();
        assert_eq!(Arc::strong_count(&result.shared), 1);
    }

    #[test]
    fn awaiting_yields_the_value_once_or_none_when_expired() {
        let result = DeferredResult::<u32, String>::new();
        assert_eq!(result.result(), None);
        assert!(result.set_error_result("bad".into()));
        assert_eq!(result.result(), Some(Err("bad".into())));
        assert_eq!(
            futures::executor::block_on(result.clone().into_future()),
            Some(Err("bad".into()))
        );
        assert_eq!(result.result(), None, "taken");
        assert_eq!(
            futures::executor::block_on(result.clone().into_future()),
            None
        );

        let expired = DeferredResult::<u32>::new();
        let waiting = std::thread::spawn({
            let expired = expired.clone();
            move || futures::executor::block_on(expired.into_future()).is_none()
        });
        std::thread::sleep(Duration::from_millis(20));
        let _ = expired.shared.expire();
        assert!(waiting.join().unwrap_or(false), "woken with None");
    }

    #[test]
    fn handle_is_send_sync_and_debug() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<DeferredResult<String, Response>>();
        let debug = format!("{:?}", DeferredResult::<u8>::new());
        assert!(debug.contains("Waiting"), "{debug}");
    }
}
