use async_mvc::prelude::*;

struct NotAnExtractor;

struct Notes;

#[async_controller(path = "/notes")]
impl Notes {
    #[get("/")]
    fn list(&self, _first: NotAnExtractor, _body: String) -> &'static str {
        "notes"
    }
}

fn main() {}
