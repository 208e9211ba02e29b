use async_mvc::prelude::*;

struct Orders;

impl Orders {
    #[post("/orders")]
    fn create(&self) -> &'static str {
        "created"
    }
}

fn main() {}
