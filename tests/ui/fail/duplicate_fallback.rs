use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[request_mapping(path = "/orders")]
    fn any(&self) -> &'static str {
        "any"
    }

    #[request_mapping("/orders")]
    fn any_again(&self) -> &'static str {
        "any"
    }
}

fn main() {}
