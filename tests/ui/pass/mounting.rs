//! Controllers mount with `.controller()` and combine with `.nest()`, `.merge()`, `.layer()`,
//! `.async_support()` and router state.

use std::time::Duration;

use async_mvc::prelude::*;
use axum::extract::State;
use axum::routing::get;
use axum::Router;

struct Health;

#[async_controller]
impl Health {
    #[async_mvc::get("/health")]
    fn health(&self) -> &'static str {
        "ok"
    }
}

#[derive(Default)]
struct Quotes;

#[async_controller("/quotes")]
impl Quotes {
    #[async_mvc::get("/{symbol}")]
    async fn quote(&self, axum::extract::Path(symbol): axum::extract::Path<String>) -> String {
        symbol
    }
}

#[derive(Clone)]
struct AppState {
    name: &'static str,
}

async fn name(State(state): State<AppState>) -> &'static str {
    state.name
}

fn main() {
    let api: Router = Router::new()
        .controller(Quotes)
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| next.run(req),
        ));
    let _app: Router = Router::new()
        .controller(Health)
        .nest("/v1", api)
        .merge(Router::new().route("/about", get(|| async { "about" })))
        .async_support(AsyncConfig::new().default_timeout(Duration::from_secs(5)));

    // A controller on a router with state.
    let _stateful: Router = Router::new()
        .route("/name", get(name))
        .controller(Quotes::default())
        .with_state(AppState { name: "demo" });
}
