//! `#[async_controller(state = AppState)]`: methods take `State<AppState>` and `State` of a
//! sub-state (`FromRef`), beside other extractors; the controller mounts on a
//! `Router<AppState>` before `.with_state(..)`.

use std::sync::{Arc, Mutex};

use async_mvc::prelude::*;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Router;

#[derive(Clone, Default)]
struct AppState {
    notes: Arc<Mutex<Vec<String>>>,
    limits: Limits,
}

#[derive(Clone, Copy, Default)]
struct Limits {
    max_notes: usize,
}

impl FromRef<AppState> for Limits {
    fn from_ref(state: &AppState) -> Self {
        state.limits
    }
}

struct Notes;

#[async_controller(path = "/notes", state = AppState)]
impl Notes {
    #[get("/{n}")]
    fn one(&self, State(state): State<AppState>, Path(n): Path<usize>) -> Result<String, StatusCode> {
        let notes = state.notes.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        notes.get(n).cloned().ok_or(StatusCode::NOT_FOUND)
    }

    #[post("/")]
    async fn add(&self, State(state): State<AppState>, State(limits): State<Limits>, body: String) -> StatusCode {
        let Ok(mut notes) = state.notes.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        if notes.len() >= limits.max_notes {
            return StatusCode::INSUFFICIENT_STORAGE;
        }
        notes.push(body);
        StatusCode::CREATED
    }

    #[get("/later")]
    fn later(&self, State(state): State<AppState>) -> DeferredResult<String> {
        let result = DeferredResult::new();
        result.set_result(format!("{} notes", state.notes.lock().map_or(0, |n| n.len())));
        result
    }
}

fn main() {
    let _app: Router = Router::new()
        .controller(Notes)
        .async_support(AsyncConfig::new())
        .with_state(AppState::default());
}
