//! Procedural macros of [async-mvc](https://docs.rs/async-mvc): [`macro@async_controller`] and
//! the route attributes [`macro@get`], [`macro@post`], [`macro@put`], [`macro@delete`],
//! [`macro@patch`] and [`macro@request_mapping`].
//!
//! Use them through `async_mvc` (`use async_mvc::prelude::*;`): the generated code refers to
//! `::async_mvc`, so this crate is no dependency to add on its own.
//!
//! # Diagnostics
//!
//! Every mistake the macros can see is reported at once, each spanned on the offending token,
//! and the user's impl block is still emitted (route attributes removed), so the rest of the
//! crate keeps compiling:
//!
//! - `#[async_controller]` on anything but an inherent, non-generic impl block;
//! - a path not starting with `/`, axum 0.7 `:id` / `*rest` segments, unbalanced `{` `}`,
//!   unnamed or repeated captures, a catch-all `{*rest}` not at the end;
//! - an unknown, repeated or missing argument, an unknown `method`, an invalid `produces`
//!   media type;
//! - two routes with the same method and path (or the same path up to capture names);
//! - a routed method whose receiver is not `&self`, that is generic or `unsafe`, or that takes
//!   an `impl Trait` or reference argument;
//! - a route attribute anywhere but on a method of an `#[async_controller]` impl;
//! - a return type that does not implement `IntoResponse` (reported by rustc at the return type).

use proc_macro::TokenStream;

mod ast;
mod attr;
mod errors;
mod expand;
mod path;
mod valid;

/// Makes the methods of an impl block with a route attribute the routes of a controller: the
/// counterpart of Spring MVC's `@Controller` (with a class-level `@RequestMapping` base path).
///
/// Put it on an inherent impl block of the controller type. `#[async_controller(path = "/api")]`
/// (or `#[async_controller("/api")]`) prefixes every route path with `/api`; a trailing `/` on it
/// is dropped, and a route path `""` then maps `/api` itself. Without a path the routes are
/// mounted as written.
///
/// # State
///
/// `#[async_controller(path = "/notes", state = AppState)]` declares the router's state type:
/// the controller's methods may then take `State<AppState>`, `State<Sub>` for any
/// `Sub: FromRef<AppState>`, and any other extractor of that state, and the controller mounts
/// on a `Router<AppState>` — before `.with_state(..)`, as axum's own routes do:
///
/// ```ignore
/// #[derive(Clone)]
/// struct AppState { db: Db }
///
/// #[async_controller(path = "/notes", state = AppState)]
/// impl Notes {
///     #[get("/{id}")]
///     async fn one(&self, State(state): State<AppState>, Path(id): Path<u64>) -> DeferredResult<String> { /* .. */ }
/// }
///
/// let app: Router = Router::new().controller(Notes).with_state(AppState { db });
/// ```
///
/// Without `state`, the controller's routes fit a router of any state, and the controller's
/// own fields are the place for what its methods share; a `State<..>` argument is then an error
/// that says to add `state = ..`. An argument that is no extractor for the state is reported
/// at that argument.
///
/// The macro emits the impl block unchanged except for the route attributes, which it removes
/// (methods without one stay ordinary methods), and implements `async_mvc::Controller`:
/// `Controller::routes` builds an axum `Router` with one `MethodRouter` per path, holding for
/// each route a handler that calls the method on the controller (shared behind an `Arc`) with
/// the method's arguments as axum extractors, awaits it if it is `async`, and turns the result
/// into a response (with the route's `produces` content type, if any). Mount the controller with
/// `RouterExt::controller`; the router merges, nests and takes layers like any other.
///
/// A routed method takes `&self`, is not generic, may be `async` or not, takes any axum
/// extractors (by value, in the order axum requires: the body extractor last) and returns any
/// `IntoResponse` type, such as a `DeferredResult`. `#[cfg(..)]` on a routed method applies to
/// its routes too. A method may carry several route attributes: each is a route to it.
///
/// ```ignore
/// use async_mvc::prelude::*;
/// use axum::{extract::{Path, Query}, http::StatusCode, Json, Router};
///
/// struct Orders { /* .. */ }
///
/// #[async_controller(path = "/api")]
/// impl Orders {
///     pub fn new() -> Self { Orders { /* .. */ } }
///
///     #[get("/orders/{id}")]
///     async fn one(&self, Path(id): Path<String>) -> DeferredResult<Json<Order>> { /* .. */ }
///
///     #[post("/orders", produces = "application/json")]
///     fn create(&self, Json(order): Json<NewOrder>) -> (StatusCode, String) { /* .. */ }
/// }
///
/// let app: Router = Router::new().controller(Orders::new());
/// ```
#[proc_macro_attribute]
pub fn async_controller(args: TokenStream, input: TokenStream) -> TokenStream {
    emit(expand::controller(args.into(), input.into()))
}

macro_rules! route_attribute {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Only valid on a method of an [`macro@async_controller`] impl block, which reads and
        /// removes it; anywhere else it expands to the item unchanged and the compile error
        /// "route attributes go on methods of an `#[async_controller]` impl".
        #[proc_macro_attribute]
        pub fn $name(_args: TokenStream, input: TokenStream) -> TokenStream {
            emit(expand::misplaced_route(stringify!($name), input.into()))
        }
    };
}

route_attribute! {
    /// Maps `GET` requests on a path to a controller method: Spring's `@GetMapping`.
    ///
    /// `#[get("/path")]` (or `#[get(path = "/path")]`), optionally with
    /// `produces = "type/subtype"`, the `Content-Type` of responses that set none. The path is
    /// relative to the controller's and uses axum 0.8 captures: `{id}`, `{*rest}`.
    ///
    /// ```ignore
    /// #[async_controller(path = "/orders")]
    /// impl Orders {
    ///     #[get("/{id}", produces = "application/json")]
    ///     async fn one(&self, Path(id): Path<u64>) -> DeferredResult<String> { /* .. */ }
    /// }
    /// ```
    get
}

route_attribute! {
    /// Maps `POST` requests on a path to a controller method: Spring's `@PostMapping`.
    ///
    /// Same arguments as [`macro@get`]: `#[post("/path")]`, optionally `produces = ".."`.
    ///
    /// ```ignore
    /// #[async_controller(path = "/orders")]
    /// impl Orders {
    ///     #[post("/")]
    ///     fn create(&self, Json(order): Json<NewOrder>) -> StatusCode { /* .. */ }
    /// }
    /// ```
    post
}

route_attribute! {
    /// Maps `PUT` requests on a path to a controller method: Spring's `@PutMapping`.
    ///
    /// Same arguments as [`macro@get`]: `#[put("/path")]`, optionally `produces = ".."`.
    ///
    /// ```ignore
    /// #[async_controller(path = "/orders")]
    /// impl Orders {
    ///     #[put("/{id}")]
    ///     fn replace(&self, Path(id): Path<u64>, Json(order): Json<NewOrder>) -> StatusCode { /* .. */ }
    /// }
    /// ```
    put
}

route_attribute! {
    /// Maps `DELETE` requests on a path to a controller method: Spring's `@DeleteMapping`.
    ///
    /// Same arguments as [`macro@get`]: `#[delete("/path")]`, optionally `produces = ".."`.
    ///
    /// ```ignore
    /// #[async_controller(path = "/orders")]
    /// impl Orders {
    ///     #[delete("/{id}")]
    ///     async fn remove(&self, Path(id): Path<u64>) -> StatusCode { /* .. */ }
    /// }
    /// ```
    delete
}

route_attribute! {
    /// Maps `PATCH` requests on a path to a controller method: Spring's `@PatchMapping`.
    ///
    /// Same arguments as [`macro@get`]: `#[patch("/path")]`, optionally `produces = ".."`.
    ///
    /// ```ignore
    /// #[async_controller(path = "/orders")]
    /// impl Orders {
    ///     #[patch("/{id}")]
    ///     fn update(&self, Path(id): Path<u64>, body: String) -> StatusCode { /* .. */ }
    /// }
    /// ```
    patch
}

route_attribute! {
    /// Maps requests on a path to a controller method, for one method or for all: Spring's
    /// `@RequestMapping`.
    ///
    /// `#[request_mapping(path = "/path", method = "GET", produces = "type/subtype")]`; the path
    /// may also come first as a plain string. `method` is one of `GET`, `POST`, `PUT`,
    /// `DELETE`, `PATCH`, `HEAD`, `OPTIONS`, `TRACE` (any case); without it, the route answers
    /// every method that no other route of the path maps (a `MethodRouter` fallback).
    ///
    /// ```ignore
    /// #[async_controller]
    /// impl Status {
    ///     #[request_mapping(path = "/health", method = "HEAD")]
    ///     fn head(&self) -> StatusCode { StatusCode::OK }
    ///
    ///     #[request_mapping(path = "/echo")]
    ///     async fn echo(&self, method: Method) -> String { method.to_string() }
    /// }
    /// ```
    request_mapping
}

/// Not public API: the marker `#[async_controller]` leaves on its methods that carry other
/// attributes, so that a route attribute it could not recognise (a renamed import) reports
/// that, rather than "not on a controller method". Expands to the item unchanged.
#[doc(hidden)]
#[proc_macro_attribute]
pub fn __async_mvc_controller_method(_args: TokenStream, input: TokenStream) -> TokenStream {
    input
}

/// Emits a macro's output: its code, then its errors as `compile_error!`s.
fn emit(output: expand::Output) -> TokenStream {
    let mut tokens = output.tokens;
    if let Some(error) = output.error {
        tokens.extend(error.to_compile_error());
    }
    tokens.into()
}
