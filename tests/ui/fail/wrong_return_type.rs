use async_mvc::prelude::*;

struct Orders;

struct Order {
    id: u64,
}

#[async_controller]
impl Orders {
    #[get("/orders/latest")]
    async fn latest(&self) -> Order {
        Order { id: 1 }
    }
}

fn main() {}
