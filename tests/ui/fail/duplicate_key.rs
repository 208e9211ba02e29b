use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[get("/orders", produces = "application/json", produces = "text/plain")]
    fn list(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
