use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[get("/orders", prodcues = "application/json")]
    fn list(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
