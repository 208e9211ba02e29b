use async_mvc::get as get_route;
use async_mvc::prelude::*;

struct Notes;

#[async_controller(path = "/notes")]
impl Notes {
    #[get_route("/")]
    fn list(&self) -> &'static str {
        "notes"
    }
}

fn main() {}
