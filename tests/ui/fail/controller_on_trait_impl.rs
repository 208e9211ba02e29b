use async_mvc::prelude::*;

struct Orders;

#[async_controller]
impl Default for Orders {
    fn default() -> Self {
        Orders
    }
}

fn main() {}
