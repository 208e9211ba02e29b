use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Orders {
    #[get("/limit")]
    const LIMIT: usize = 10;
}

fn main() {}
