use async_mvc::prelude::*;

#[async_controller(path = "/orders")]
struct Orders;

fn main() {}
