//! [`Controller`] and the [`RouterExt`] extension that mounts controllers on an axum router.

use std::sync::Arc;

use axum::Router;

use crate::{
    inherited::InheritedAsyncSupportLayer, layer::AsyncSupportLayer, manager::AsyncManager,
};

/// A struct whose methods serve routes for a router with state `S`: what `#[async_controller]`
/// implements for an `impl` block (Spring MVC's `@Controller` with `@RequestMapping` methods).
///
/// The controller itself is shared behind an `Arc`, and its methods take `&self`.
/// `#[async_controller]` implements `Controller<S>` for every state `S`, or, with
/// `#[async_controller(state = AppState)]`, for `AppState` only: then its methods may take
/// `State<AppState>` (and any extractor of that state), and the controller mounts on a
/// `Router<AppState>`. Implementing it by hand is possible, but the macro is the intended way.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a controller for a `Router<{S}>`",
    label = "this router's state is `{S}`",
    note = "`#[async_controller(state = AppState)]` makes a controller for a `Router<AppState>` \
            only: mount it before `.with_state(..)`, on the router of that state"
)]
pub trait Controller<S>: Send + Sync + Sized + 'static {
    /// Every route of this controller, as a router to merge.
    fn routes(self: Arc<Self>) -> Router<S>;
}

/// Extension methods on [`axum::Router`] for async-mvc.
pub trait RouterExt<S>: Sized {
    /// Mounts every route of `controller`, with async support.
    ///
    /// The routes use the manager of a surrounding [`async_support`](Self::async_support)
    /// (added before or after this call), else the process-wide
    /// [`AsyncManager::shared_default`]. Works with `.nest()`, `.merge()` and `.layer()` like
    /// any routes.
    ///
    /// # Panics
    ///
    /// Like [`Router::route`], when a route conflicts with one already on the router — a
    /// programming error found at startup, never triggered by a client.
    fn controller<C: Controller<S>>(self, controller: C) -> Self;

    /// Gives every route added so far async support by `manager` (an [`AsyncManager`] or an
    /// [`AsyncConfig`](crate::AsyncConfig)): the Rust form of Spring's
    /// `WebMvcConfigurer::configureAsyncSupport`. Keep a clone of the manager to read its
    /// [`metrics`](AsyncManager::metrics).
    fn async_support(self, manager: impl Into<AsyncManager>) -> Self;
}

impl<S> RouterExt<S> for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn controller<C: Controller<S>>(self, controller: C) -> Self {
        let routes = Arc::new(controller)
            .routes()
            .layer(InheritedAsyncSupportLayer);
        self.merge(routes)
    }

    fn async_support(self, manager: impl Into<AsyncManager>) -> Self {
        self.layer(AsyncSupportLayer::new(manager))
    }
}
