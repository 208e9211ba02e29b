use async_mvc::prelude::*;
use axum::extract::State;

#[derive(Clone)]
struct AppState;

struct Notes;

#[async_controller(path = "/notes")]
impl Notes {
    #[get("/")]
    fn list(&self, State(_state): State<AppState>) -> &'static str {
        "notes"
    }
}

fn main() {}
