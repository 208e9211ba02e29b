//! The one-page UI served at `/`.

use axum::response::Html;

/// The page: places an order and follows its status by long polling. One self-contained file,
/// no external resources.
pub const INDEX_HTML: &str = include_str!("index.html");

/// `GET /`: the page.
pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}
