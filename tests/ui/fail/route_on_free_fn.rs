use async_mvc::prelude::*;

#[get("/orders")]
async fn list() -> &'static str {
    "[]"
}

fn main() {}
