//! Route attributes by path (`#[async_mvc::get]`) inside `#[async_controller]`, in a module that
//! also imports axum's `get` function for plain routes.

use async_mvc::prelude::*;
use axum::routing::get;
use axum::Router;

struct Paths;

#[async_controller(path = "/paths")]
impl Paths {
    #[async_mvc::get("/by-path")]
    fn by_path(&self) -> &'static str {
        "by path"
    }

    #[get("/bare")]
    fn bare(&self) -> &'static str {
        "bare"
    }

    #[async_mvc::post("/by-path")]
    #[inline]
    fn posted(&self) -> &'static str {
        "posted"
    }
}

fn main() {
    let _app: Router = Router::new()
        .route("/plain", get(|| async { "plain" }))
        .controller(Paths);
}
