//! The one-page UI served at `/`.

use axum::response::Html;

/// The page: places an order and follows its status live with an `EventSource` on the order's
/// stream, falling back to long polling `…/next?after=V` where `EventSource` is missing or the
/// server closed the stream. One self-contained file, no external resources.
pub const INDEX_HTML: &str = include_str!("index.html");

/// `GET /`: the page.
pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}
