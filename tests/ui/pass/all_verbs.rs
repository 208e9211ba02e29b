//! Every route attribute, with a base path, extractors, async and plain methods, `produces`,
//! `request_mapping` with and without a method, and a helper method.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_mvc::prelude::*;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Order {
    id: u64,
    item: String,
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
}

struct Orders {
    next_id: AtomicU64,
}

#[async_controller(path = "/api/")]
impl Orders {
    /// Not a route: an ordinary associated function.
    pub fn new() -> Self {
        Orders {
            next_id: AtomicU64::new(1),
        }
    }

    /// Not a route: an ordinary method, called by the routes.
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    #[get("")]
    fn index(&self) -> &'static str {
        "orders"
    }

    #[get("/orders")]
    async fn list(&self, Query(page): Query<Page>, headers: HeaderMap) -> Json<Vec<Order>> {
        let _ = headers.get("accept");
        let limit = page.limit.unwrap_or(10);
        Json(
            (0..limit as u64)
                .map(|id| Order {
                    id,
                    item: String::new(),
                })
                .collect(),
        )
    }

    #[get("/orders/{id}")]
    async fn one(&self, Path(id): Path<u64>) -> DeferredResult<Json<Order>> {
        let result = DeferredResult::new();
        result.set_result(Json(Order {
            id,
            item: "book".to_owned(),
        }));
        result
    }

    #[post("/orders", produces = "application/json")]
    fn create(&self, Json(body): Json<NewOrder>) -> (StatusCode, Json<Order>) {
        let order = Order {
            id: self.next_id(),
            item: body.item,
        };
        (StatusCode::CREATED, Json(order))
    }

    #[put(path = "/orders/{id}")]
    async fn replace(&self, Path(id): Path<u64>, Json(body): Json<NewOrder>) -> Json<Order> {
        Json(Order {
            id,
            item: body.item,
        })
    }

    #[patch("/orders/{id}", produces = "text/plain; charset=utf-8")]
    fn rename(&self, Path(id): Path<u64>, body: String) -> String {
        format!("{id}: {body}")
    }

    #[delete("/orders/{id}")]
    async fn remove(&self, Path(_id): Path<u64>) -> StatusCode {
        StatusCode::NO_CONTENT
    }

    #[request_mapping(path = "/orders/{id}", method = "head")]
    fn exists(&self, Path(_id): Path<u64>) {}

    #[request_mapping(path = "/echo")]
    async fn echo(&self, method: Method, Query(params): Query<HashMap<String, String>>) -> String {
        format!("{method} {}", params.len())
    }

    #[request_mapping("/echo", method = "OPTIONS")]
    fn echo_options(&self) -> impl IntoResponse {
        StatusCode::NO_CONTENT
    }

    #[async_mvc::get("/many/a")]
    #[get("/many/b")]
    fn many(&self) -> Result<String, StatusCode> {
        Ok("many".to_owned())
    }
}

fn main() {
    let _app: Router = Router::new().controller(Orders::new());
}
