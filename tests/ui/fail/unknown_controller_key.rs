use async_mvc::prelude::*;

struct Orders;

#[async_controller(base = "/api")]
impl Orders {
    #[get("/orders")]
    fn list(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
