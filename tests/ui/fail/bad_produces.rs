use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[get("/orders", produces = "json")]
    fn list(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
