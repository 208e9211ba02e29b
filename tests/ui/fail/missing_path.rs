use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[request_mapping(method = "GET")]
    fn list(&self) -> &'static str {
        "[]"
    }
}

fn main() {}
