use std::sync::Arc;

use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[get("/orders")]
    fn list(self: Arc<Self>) -> &'static str {
        "[]"
    }
}

fn main() {}
