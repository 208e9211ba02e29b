use async_mvc::prelude::*;
use axum::extract::Path;

struct Orders;

#[async_controller]
impl Orders {
    #[get("/orders/{id}")]
    fn one(&self, Path(id): Path<u64>) -> String {
        id.to_string()
    }

    #[delete("/orders/{order_id}")]
    fn remove(&self, Path(id): Path<u64>) -> String {
        id.to_string()
    }
}

fn main() {}
