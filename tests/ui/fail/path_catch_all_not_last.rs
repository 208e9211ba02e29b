use async_mvc::prelude::*;

struct Files;

#[async_controller]
impl Files {
    #[get("/files/{*path}/meta")]
    fn meta(&self) -> &'static str {
        "meta"
    }
}

fn main() {}
