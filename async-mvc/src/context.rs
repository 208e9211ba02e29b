//! The manager an explicit [`AsyncSupportLayer`](crate::layer::AsyncSupportLayer) lends, on this
//! thread, to the code its handler's future runs: the one piece of thread-local state of the
//! crate (as tokio keeps its own in `runtime/context.rs`). The layer writes it; the inherited
//! layer of controller routes and `DeferredResult::into_response` read it, all downward.

use std::cell::Cell;

use crate::manager::AsyncManager;

thread_local! {
    /// The manager of the innermost explicit layer whose handler future is being polled on this
    /// thread. Each lend moves the manager in and back out, so it costs no clone.
    static LENT: Cell<Option<AsyncManager>> = const { Cell::new(None) };
}

/// Lends `manager` (if any) to what `f` runs on this thread, and takes it back afterwards —
/// also when `f` unwinds.
#[inline]
pub(crate) fn lend<R>(manager: &mut Option<AsyncManager>, f: impl FnOnce() -> R) -> R {
    let Some(lent) = manager.take() else {
        return f();
    };
    let outer = LENT.replace(Some(lent));
    let _restore = Restore { manager, outer };
    f()
}

/// Puts a lent manager back where it came from, and the outer one back in the slot.
struct Restore<'a> {
    manager: &'a mut Option<AsyncManager>,
    outer: Option<AsyncManager>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        *self.manager = LENT.replace(self.outer.take());
    }
}

/// Runs `f` with the manager lent on this thread; `None` outside a lend (or inside `f` itself).
pub(crate) fn with_lent<R>(f: impl FnOnce(&AsyncManager) -> R) -> Option<R> {
    LENT.with(|lent| {
        let manager = lent.take()?;
        let result = f(&manager);
        lent.set(Some(manager));
        Some(result)
    })
}

#[cfg(feature = "metrics")]
thread_local! {
    /// The kind of a value a handler rendered at once under a lend (a `DeferredResult` already
    /// set), for the observing layer's metrics: noted by the value, taken by the layer that
    /// polled the handler.
    static RENDERED: Cell<Option<crate::telemetry::Kind>> = const { Cell::new(None) };
}

/// Notes that a value of `kind` was rendered at once.
#[cfg(feature = "metrics")]
pub(crate) fn note_rendered(kind: crate::telemetry::Kind) {
    RENDERED.set(Some(kind));
}

/// The kind noted since the last call, if any.
#[cfg(feature = "metrics")]
pub(crate) fn take_rendered() -> Option<crate::telemetry::Kind> {
    RENDERED.take()
}

/// Whether an explicit layer encloses the code running now.
pub(crate) fn is_lent() -> bool {
    with_lent(|_| ()).is_some()
}

/// The lent manager, else the process-wide default: what an inherited layer drives work with.
pub(crate) fn lent_or_default() -> AsyncManager {
    with_lent(AsyncManager::clone).unwrap_or_else(AsyncManager::shared_default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AsyncConfig;

    #[test]
    fn a_lend_is_visible_inside_and_returned_after_even_on_panic() {
        let mut manager = Some(AsyncManager::new(AsyncConfig::new()));
        assert!(!is_lent());
        let inside = lend(&mut manager, is_lent);
        assert!(inside);
        assert!(manager.is_some() && !is_lent());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lend(&mut manager, || panic!("inside a lend"))
        }));
        assert!(unwound.is_err());
        assert!(manager.is_some(), "taken back while unwinding");
        assert!(!is_lent());
        let mut none = None;
        assert!(!lend(&mut none, is_lent));
    }
}
