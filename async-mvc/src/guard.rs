//! Running user code — callbacks, interceptor hooks, tasks, handlers: a panic is contained to
//! it, its payload named and logged. A leaf: it imports nothing from the crate.

use std::{
    any::Any,
    future::Future,
    mem,
    panic::{catch_unwind, AssertUnwindSafe},
};

use futures::FutureExt;

/// The message of a panic whose payload is neither a `&str` nor a `String`.
pub(crate) const NON_STRING_PAYLOAD: &str = "non-string panic payload";

/// The text of a panic payload: the `&str` or `String` it carries, else
/// [`NON_STRING_PAYLOAD`].
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or(NON_STRING_PAYLOAD)
}

/// Runs `f`; if it panics, the panic is logged with `what` (the callback or hook) and its
/// message, and `Err(message)` returned.
pub(crate) fn catch<R>(what: &'static str, f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| contained(what, payload))
}

/// Runs `f`; `None` if it panicked (logged, as [`catch`]).
pub(crate) fn contain<R>(what: &'static str, f: impl FnOnce() -> R) -> Option<R> {
    catch(what, f).ok()
}

/// Awaits `future`; if polling it panics, the panic is logged and `Err(message)` returned.
pub(crate) async fn catch_future<F: Future>(
    what: &'static str,
    future: F,
) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| contained(what, payload))
}

/// Logs a caught panic and frees its payload; the message.
fn contained(what: &'static str, payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(payload.as_ref()).to_owned();
    tracing::error!(callback = what, panic = %message, "user code panicked");
    // A payload whose `Drop` panics again is leaked rather than allowed to unwind here.
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        mem::forget(again);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_str_and_string_payloads() {
        assert_eq!(
            catch("test", || panic!("static text")),
            Err::<(), _>("static text".into())
        );
        let n = 7;
        assert_eq!(
            catch("test", || panic!("formatted {n}")),
            Err::<(), _>("formatted 7".into())
        );
        assert_eq!(
            catch("test", || std::panic::panic_any(42_u8)),
            Err::<(), _>(NON_STRING_PAYLOAD.into())
        );
        assert_eq!(contain("test", || 1), Some(1));
        assert_eq!(contain::<()>("test", || panic!("x")), None);
    }

    #[test]
    fn contains_a_future_that_panics() {
        let caught = futures::executor::block_on(catch_future("test", async { panic!("async") }));
        assert_eq!(caught, Err::<(), _>("async".into()));
    }
}
