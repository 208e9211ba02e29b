//! `#[cfg]` on a routed method applies to its route; a method-less `request_mapping` is the
//! fallback of its path next to mapped methods; `self: &Self` is `&self`; a method may carry
//! several route attributes.

use async_mvc::prelude::*;
use axum::http::{Method, StatusCode};
use axum::Router;

struct Files;

#[async_controller(path = "/files")]
impl Files {
    #[get("")]
    #[get("/")]
    fn read_root(&self) -> &'static str {
        "root"
    }

    #[get("/{*path}")]
    fn read(&self, axum::extract::Path(path): axum::extract::Path<String>) -> String {
        path
    }

    #[request_mapping(path = "/{*path}")]
    fn other(self: &Self, method: Method) -> (StatusCode, String) {
        (StatusCode::METHOD_NOT_ALLOWED, method.to_string())
    }

    #[cfg(debug_assertions)]
    #[post("/{*path}")]
    fn write(&self) -> &'static str {
        "debug build"
    }

    // The same route under another `#[cfg]` is an alternative, not a duplicate.
    #[cfg(not(debug_assertions))]
    #[post("/{*path}")]
    fn write(&self) -> &'static str {
        "release build"
    }

    #[cfg(any())]
    #[put("/{*path}")]
    fn never_compiled(&self) -> ThisTypeDoesNotExist {
        unreachable!()
    }
}

fn main() {
    let _app: Router = Router::new().controller(Files);
}
