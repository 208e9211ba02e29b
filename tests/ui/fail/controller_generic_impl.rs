use async_mvc::prelude::*;

struct Orders<T>(T);

#[async_controller]
impl<T: Send + Sync + 'static> Orders<T> {
    #[get("/orders")]
    fn list(&self) -> &'static str {
        "orders"
    }
}

fn main() {}
