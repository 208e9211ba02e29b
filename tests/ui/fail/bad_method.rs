use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[request_mapping(path = "/orders", method = "FETCH")]
    fn list(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
