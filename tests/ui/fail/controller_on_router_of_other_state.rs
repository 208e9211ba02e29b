use async_mvc::prelude::*;
use axum::extract::State;
use axum::Router;

#[derive(Clone)]
struct AppState;

struct Notes;

#[async_controller(path = "/notes", state = AppState)]
impl Notes {
    #[get("/")]
    fn list(&self, State(_state): State<AppState>) -> &'static str {
        "notes"
    }
}

fn main() {
    // A stateless router: the controller was declared for `Router<AppState>`.
    let router: Router<()> = Router::new();
    let _app = router.controller(Notes);
}
