use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[post("/orders")]
    fn create(&self, body: &str) -> String {
        body.to_owned()
    }
}

fn main() {}
