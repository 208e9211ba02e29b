use async_mvc::prelude::*;

struct Orders;

#[async_controller(path = "api")]
impl Orders {
    #[get("/orders")]
    fn list(&self) -> &'static str {
        "orders"
    }
}

fn main() {}
