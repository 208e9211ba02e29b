//! The receipt of `GET /api/orders/{id}/receipt`: plain text, streamed as a download.

use async_mvc::StreamingResponseBody;
use axum::http::{
    header::{CONTENT_DISPOSITION, CONTENT_TYPE},
    HeaderName, HeaderValue,
};
use tokio::io::AsyncWriteExt;

use super::{Change, Order};

/// The response of `GET /api/orders/{id}/receipt`: `Content-Type: text/plain; charset=utf-8`,
/// `Content-Disposition: attachment; filename="receipt-<id>.txt"` and a body written line by
/// line by a [`StreamingResponseBody`].
pub type Receipt = ([(HeaderName, HeaderValue); 2], StreamingResponseBody);

/// The receipt of `order` with its `history` (oldest first), as text: a title, the order's id,
/// item, status and version, then one line per status change with its version. Control
/// characters in the item or a status are shown as spaces, so every value stays on its line.
pub fn render_receipt(order: &Order, history: &[Change]) -> Vec<String> {
    let mut lines = vec![
        format!("Receipt for order {}", order.id),
        String::new(),
        format!("Order:   {}", order.id),
        format!("Item:    {}", one_line(&order.item)),
        format!("Status:  {}", one_line(&order.status)),
        format!("Version: {}", order.version),
        String::new(),
        "Status changes:".to_owned(),
    ];
    lines.extend(
        history
            .iter()
            .map(|change| format!("  version {}  {}", change.version, one_line(&change.status))),
    );
    lines.push(String::new());
    lines.push("Thank you for your order.".to_owned());
    lines
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The download of `order`'s receipt, as read from the store when the request came.
pub(crate) fn download(order: Order, history: Vec<Change>) -> Receipt {
    // The id comes from the store (digits), so the header is valid; should it ever not be, the
    // download goes without a file name rather than failing.
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"receipt-{}.txt\"",
        order.id
    ))
    .unwrap_or(HeaderValue::from_static("attachment"));
    let body = StreamingResponseBody::new(move |mut out| async move {
        for line in render_receipt(&order, &history) {
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await
    });
    let headers = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (CONTENT_DISPOSITION, disposition),
    ];
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_lists_every_change() {
        let order = Order {
            id: "7".to_owned(),
            item: "tea\npot".to_owned(),
            status: "shipped".to_owned(),
            version: 2,
        };
        let history = [
            Change {
                version: 1,
                status: "placed".to_owned(),
            },
            Change {
                version: 2,
                status: "shipped".to_owned(),
            },
        ];
        let text = render_receipt(&order, &history).join("\n");
        assert!(text.starts_with("Receipt for order 7\n"), "{text}");
        assert!(text.contains("Item:    tea pot\n"), "{text}");
        assert!(text.contains("Version: 2\n"), "{text}");
        assert!(
            text.contains("  version 1  placed\n  version 2  shipped\n"),
            "{text}"
        );
    }
}
