// Every mistake of a controller is reported in one compilation, and the impl block is still
// emitted: `Orders::new` below resolves.
use async_mvc::prelude::*;

struct Orders;

#[async_controller(path = "/api")]
impl Orders {
    fn new() -> Self {
        Orders
    }

    #[get("orders")]
    fn list(&self) -> &'static str {
        "[]"
    }

    #[post("/orders")]
    fn create(&mut self) -> &'static str {
        "created"
    }

    #[put("/orders/{id}", produces = "json")]
    fn replace(&self) -> &'static str {
        "replaced"
    }
}

fn _still_compiles() -> Orders {
    Orders::new()
}

fn main() {}
