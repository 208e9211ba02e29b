//! [`Invoice`]: an order's invoice, rendered as text and hashed — the blocking work behind
//! `POST /api/orders/{id}/invoice`.

use std::fmt::Write as _;

use async_mvc::WebAsyncTask;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiError, Order};

/// The value of `POST /api/orders/{id}/invoice`: blocking work on the executor, with a timeout
/// (Spring's `WebAsyncTask<ResponseEntity<Invoice>>`). Its value is the invoice as JSON; an
/// [`ApiError::Unavailable`] (`503`) when its timeout fires.
pub type InvoiceTask = WebAsyncTask<Result<Json<Invoice>, ApiError>>;

/// What `POST /api/orders/{id}/invoice` returns: on one process an [`InvoiceTask`] on this
/// process's executor; on a cluster a request/reply to a worker
/// ([`ReplyingTemplate::send_and_receive`](async_mvc::cluster::ReplyingTemplate::send_and_receive)).
/// Both answer the same JSON, and `503` when the invoice is not ready in time.
#[derive(Debug)]
pub enum InvoiceAnswer {
    /// Rendered here.
    Local(InvoiceTask),
    /// Rendered by a worker.
    Cluster(async_mvc::DeferredResult<Invoice, ApiError>),
}

impl axum::response::IntoResponse for InvoiceAnswer {
    fn into_response(self) -> axum::response::Response {
        match self {
            InvoiceAnswer::Local(task) => task.into_response(),
            InvoiceAnswer::Cluster(reply) => reply.into_response(),
        }
    }
}

/// The VAT rate applied to every invoice, in percent.
const VAT_PERCENT: u64 = 20;

/// The fixed lines after the ordered item: description and unit price in cents.
const EXTRA_LINES: [(&str, u64); 2] = [("Packaging", 150), ("Shipping (standard)", 490)];

/// How many seal rounds run between two looks at the cancellation flag.
const ROUNDS_PER_CHECK: u32 = 1024;

/// The width of the description column; longer descriptions get a line of their own.
const DESCRIPTION_CHARS: usize = 36;

/// An order's invoice as the API renders it.
///
/// Rendering is deterministic: the same order version always gives the same text and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The order's id.
    pub id: String,
    /// The order's version when the invoice was rendered.
    pub version: u64,
    /// The order's status when the invoice was rendered.
    pub status: String,
    /// The invoice as plain text: header, line items, totals and a seal line.
    pub invoice: String,
    /// The SHA-256 of the UTF-8 bytes of [`invoice`](Self::invoice), as 64 lowercase hex
    /// digits.
    pub sha256: String,
}

/// `200` with the invoice as JSON: what a worker's reply becomes on a cluster.
impl axum::response::IntoResponse for Invoice {
    fn into_response(self) -> axum::response::Response {
        Json(self).into_response()
    }
}

impl Invoice {
    /// Renders the invoice of `order` and hashes it.
    ///
    /// The text ends with a *seal*: SHA-256 applied `1 + hash_rounds` times to the lines above
    /// it — the extra rounds are the deliberately slow part, so that rendering takes measurable
    /// time. `cancelled` is asked before the work starts and every 1024 rounds; once it answers
    /// `true` the work stops and the result is `None`.
    pub fn render(order: &Order, hash_rounds: u32, cancelled: impl Fn() -> bool) -> Option<Self> {
        if cancelled() {
            return None;
        }
        let body = body(order);
        let seal = seal(&body, hash_rounds, cancelled)?;
        let invoice = format!(
            "{body}\nSeal: {seal}\n      (SHA-256 of the lines above, applied {} times)\n",
            u64::from(hash_rounds) + 1
        );
        let sha256 = format!("{:x}", Sha256::digest(invoice.as_bytes()));
        Some(Invoice {
            id: order.id.clone(),
            version: order.version,
            status: order.status.clone(),
            invoice,
            sha256,
        })
    }
}

/// The invoice text up to (without) the seal.
fn body(order: &Order) -> String {
    // Items come from clients: no control characters in the layout.
    let item: String = order
        .item
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let (quantity, unit_cents) = price(&order.item);
    let mut lines = vec![(item, quantity, unit_cents)];
    lines.extend(
        EXTRA_LINES
            .iter()
            .map(|&(description, cents)| (description.to_owned(), 1, cents)),
    );
    let subtotal: u64 = lines.iter().map(|(_, qty, unit)| qty * unit).sum();
    let vat = (subtotal * VAT_PERCENT + 50) / 100;
    let rule = "=".repeat(75);
    let thin = "-".repeat(75);

    let mut text = String::with_capacity(2048);
    // `write!` to a `String` cannot fail.
    let _ = writeln!(text, "INVOICE INV-{}-{}", order.id, order.version);
    let _ = writeln!(text, "{rule}");
    let _ = writeln!(text, "Order desk (async-mvc demo)");
    let _ = writeln!(text, "1 Callable Court, Deferred Street, Axum Valley");
    let _ = writeln!(text);
    let _ = writeln!(text, "Order:    {}", order.id);
    let _ = writeln!(text, "Version:  {}", order.version);
    let _ = writeln!(text, "Status:   {}", order.status);
    let _ = writeln!(text, "Currency: EUR");
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "{:>3}  {:<DESCRIPTION_CHARS$}  {:>4}  {:>12}  {:>12}",
        "#", "Description", "Qty", "Unit price", "Amount"
    );
    let _ = writeln!(text, "{thin}");
    for (n, (description, quantity, unit)) in lines.iter().enumerate() {
        let numbers = format!(
            "{quantity:>4}  {:>12}  {:>12}",
            money(*unit),
            money(quantity * unit)
        );
        if description.chars().count() <= DESCRIPTION_CHARS {
            let _ = writeln!(
                text,
                "{:>3}  {description:<DESCRIPTION_CHARS$}  {numbers}",
                n + 1
            );
        } else {
            let _ = writeln!(text, "{:>3}  {description}", n + 1);
            let _ = writeln!(text, "{:>3}  {:<DESCRIPTION_CHARS$}  {numbers}", "", "");
        }
    }
    let _ = writeln!(text, "{thin}");
    for (label, cents) in [
        ("Subtotal".to_owned(), subtotal),
        (format!("VAT {VAT_PERCENT} %"), vat),
        ("Total".to_owned(), subtotal + vat),
    ] {
        let _ = writeln!(text, "{label:>61}  {:>12}", money(cents));
    }
    let _ = writeln!(text, "{rule}");
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Payment is due within 14 days of the invoice date. Please quote INV-{}-{}",
        order.id, order.version
    );
    let _ = writeln!(
        text,
        "with your payment. This invoice reflects version {} of order {}; a later",
        order.version, order.id
    );
    let _ = writeln!(text, "version of the order renders a new invoice.");
    text
}

/// A made-up but stable quantity and unit price (in cents) for `item`: from its SHA-256.
fn price(item: &str) -> (u64, u64) {
    let digest = Sha256::digest(item.as_bytes());
    let quantity = 1 + u64::from(digest[0] % 3);
    let unit = 500 + (u64::from(digest[1]) << 8 | u64::from(digest[2])) % 9_500;
    (quantity, unit)
}

/// `1234` → `"12.34"`.
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// SHA-256 of `body`, then `rounds` more times of the previous digest; `None` once `cancelled`.
fn seal(body: &str, rounds: u32, cancelled: impl Fn() -> bool) -> Option<String> {
    let mut digest = Sha256::digest(body.as_bytes());
    for round in 0..rounds {
        if round % ROUNDS_PER_CHECK == 0 && cancelled() {
            return None;
        }
        digest = Sha256::digest(digest);
    }
    Some(format!("{digest:x}"))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn order(item: &str) -> Order {
        Order {
            id: "7".to_owned(),
            item: item.to_owned(),
            status: "paid".to_owned(),
            version: 3,
        }
    }

    #[test]
    fn the_invoice_names_the_order_and_hashes_its_text() {
        let invoice = Invoice::render(&order("teapot"), 10, || false).expect("not cancelled");
        assert_eq!(
            (
                invoice.id.as_str(),
                invoice.version,
                invoice.status.as_str()
            ),
            ("7", 3, "paid")
        );
        assert!(invoice.invoice.starts_with("INVOICE INV-7-3\n"));
        assert!(invoice.invoice.contains("teapot"));
        assert!(invoice.invoice.contains("Status:   paid"));
        assert!(invoice.invoice.contains("applied 11 times"));
        assert_eq!(
            invoice.sha256,
            format!("{:x}", Sha256::digest(invoice.invoice.as_bytes()))
        );
        assert_eq!(invoice.sha256.len(), 64);
        // Deterministic; the rounds change the seal and so the hash.
        assert_eq!(
            Invoice::render(&order("teapot"), 10, || false),
            Some(invoice.clone())
        );
        let other = Invoice::render(&order("teapot"), 11, || false).expect("not cancelled");
        assert_ne!(other.sha256, invoice.sha256);
    }

    #[test]
    fn totals_add_up() {
        let (quantity, unit) = price("teapot");
        let subtotal = quantity * unit + 150 + 490;
        let vat = (subtotal * 20 + 50) / 100;
        let invoice = Invoice::render(&order("teapot"), 0, || false).expect("not cancelled");
        for line in [
            format!("Subtotal  {:>12}", money(subtotal)),
            format!("VAT 20 %  {:>12}", money(vat)),
            format!("Total  {:>12}", money(subtotal + vat)),
        ] {
            assert!(invoice.invoice.contains(&line), "{line}");
        }
        assert_eq!(money(5), "0.05");
        assert_eq!(money(12_345), "123.45");
    }

    #[test]
    fn long_or_odd_items_keep_the_layout() {
        let long = "x".repeat(200);
        let invoice = Invoice::render(&order(&long), 0, || false).expect("not cancelled");
        assert!(invoice.invoice.contains(&long));
        let odd = Invoice::render(&order("tea\npot\u{7}"), 0, || false).expect("not cancelled");
        assert!(odd.invoice.contains("tea pot "));
    }

    #[test]
    fn cancelling_stops_the_rounds() {
        let asked = Cell::new(0_u32);
        let cancelled = || {
            asked.set(asked.get() + 1);
            asked.get() > 3
        };
        assert_eq!(Invoice::render(&order("teapot"), u32::MAX, cancelled), None);
        assert_eq!(asked.get(), 4);
        assert_eq!(Invoice::render(&order("teapot"), 0, || true), None);
    }
}
