use async_mvc::prelude::*;

struct Orders;

#[async_controller(path = "/api")]
impl Orders {
    #[get("/orders")]
    fn list(&self) -> &'static str {
        "[]"
    }

    #[request_mapping(path = "/orders", method = "get")]
    fn list_again(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
