use async_mvc::prelude::*;
use axum::extract::State;

#[derive(Clone)]
struct AppState;

#[derive(Clone)]
struct Unrelated;

struct Notes;

#[async_controller(path = "/notes", state = AppState)]
impl Notes {
    #[get("/")]
    fn list(&self, State(_state): State<Unrelated>) -> &'static str {
        "notes"
    }
}

fn main() {}
