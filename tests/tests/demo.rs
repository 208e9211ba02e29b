//! End-to-end tests of the order desk demo's HTTP contract: a real server on `127.0.0.1:0`, a
//! real HTTP client.

use std::time::{Duration, Instant};

use async_mvc::AsyncTaskExecutor;
use async_mvc_examples::order_desk::{DemoConfig, OrderDesk};
use reqwest::{header::CONTENT_TYPE, Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Worker delays long enough that the worker never touches an order during a test.
const QUIET: Duration = Duration::from_secs(3600);

struct Server {
    base: String,
    desk: OrderDesk,
    client: Client,
}

impl Server {
    /// The demo with a worker that stays out of the way.
    async fn quiet() -> Server {
        Server::start(DemoConfig::new().packed_after(QUIET).shipped_after(QUIET)).await
    }

    async fn start(config: DemoConfig) -> Server {
        let desk = OrderDesk::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let router = desk.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Server {
            base: format!("http://{address}"),
            desk,
            client: Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request")
    }

    async fn post_json(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST request")
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> Response {
        self.client
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("POST request")
    }

    /// `POST /api/orders/{id}/invoice`, without a body.
    async fn invoice(&self, id: &str) -> Response {
        self.invoice_in_background(id)
            .await
            .expect("invoice request task")
    }

    /// Sends `POST /api/orders/{id}/invoice` from its own task, as another client would.
    fn invoice_in_background(&self, id: &str) -> tokio::task::JoinHandle<Response> {
        let request = self
            .client
            .post(self.url(&format!("/api/orders/{id}/invoice")))
            .send();
        tokio::spawn(async move { request.await.expect("POST request") })
    }

    /// Sends `GET path` from its own task, as another client would.
    fn get_in_background(&self, path: &str) -> tokio::task::JoinHandle<Response> {
        let request = self.client.get(self.url(path)).send();
        tokio::spawn(async move { request.await.expect("GET request") })
    }

    /// Places an order and returns its id.
    async fn create(&self, item: &str) -> String {
        let response = self.post_json("/api/orders", json!({ "item": item })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let order = json_of(response).await;
        order["id"].as_str().expect("string id").to_owned()
    }

    /// Waits until `count` long polls are registered in the store.
    async fn until_waiting(&self, count: usize) {
        let store = self.desk.store().clone();
        eventually(
            move || store.waiting() == count,
            "the expected number of waiting polls",
        )
        .await;
    }
}

async fn json_of(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Polls `condition` for up to 5 s.
async fn eventually(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn order(id: &str, item: &str, status: &str, version: u64) -> Value {
    json!({ "id": id, "item": item, "status": status, "version": version })
}

#[tokio::test]
async fn create_returns_201_and_the_placed_order() {
    let server = Server::quiet().await;
    let response = server
        .post_json("/api/orders", json!({ "item": "teapot" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"].to_str().ok(),
        Some("/api/orders/1")
    );
    assert_eq!(json_of(response).await, order("1", "teapot", "placed", 1));

    let second = server
        .post_json("/api/orders", json!({ "item": "cups" }))
        .await;
    assert_eq!(json_of(second).await, order("2", "cups", "placed", 1));
}

#[tokio::test]
async fn get_returns_the_order() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let response = server.get(&format!("/api/orders/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, order(&id, "teapot", "placed", 1));
}

#[tokio::test]
async fn unknown_order_is_404_everywhere() {
    let server = Server::quiet().await;
    let response = server.get("/api/orders/42").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(response).await,
        json!({ "error": "no order with id `42`" })
    );

    let next = server.get("/api/orders/42/next?after=0").await;
    assert_eq!(next.status(), StatusCode::NOT_FOUND);
    assert!(json_of(next).await["error"].is_string());

    let event = server
        .post_json("/api/orders/42/events", json!({ "status": "paid" }))
        .await;
    assert_eq!(event.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.desk.store().waiting(), 0);
}

#[tokio::test]
async fn next_answers_at_once_when_the_order_is_newer() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let started = Instant::now();
    let response = server
        .get(&format!("/api/orders/{id}/next?after=0&timeout_ms=5000"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, order(&id, "teapot", "placed", 1));
    assert!(started.elapsed() < Duration::from_secs(2));

    // `after` defaults to 0.
    let response = server.get(&format!("/api/orders/{id}/next")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, order(&id, "teapot", "placed", 1));
    assert_eq!(server.desk.store().waiting(), 0);
}

#[tokio::test]
async fn next_waits_until_another_request_posts_an_event() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;

    let poll = server.get_in_background(&format!("/api/orders/{id}/next?after=1&timeout_ms=10000"));
    server.until_waiting(1).await;
    assert!(!poll.is_finished());

    let event = server
        .post_json(
            &format!("/api/orders/{id}/events"),
            json!({ "status": "paid" }),
        )
        .await;
    assert_eq!(event.status(), StatusCode::OK);
    assert_eq!(json_of(event).await, order(&id, "teapot", "paid", 2));

    let response = poll.await.expect("poll task");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, order(&id, "teapot", "paid", 2));
    assert_eq!(server.desk.store().waiting(), 0);
}

#[tokio::test]
async fn one_event_completes_every_waiting_poll_of_the_order() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let other = server.create("cups").await;

    let polls: Vec<_> = (0..3)
        .map(|_| server.get_in_background(&format!("/api/orders/{id}/next?after=1")))
        .collect();
    let unrelated =
        server.get_in_background(&format!("/api/orders/{other}/next?after=1&timeout_ms=300"));
    server.until_waiting(4).await;

    server
        .post_json(
            &format!("/api/orders/{id}/events"),
            json!({ "status": "paid" }),
        )
        .await;
    for poll in polls {
        let response = poll.await.expect("poll task");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(json_of(response).await, order(&id, "teapot", "paid", 2));
    }
    let unrelated = unrelated.await.expect("poll task");
    assert_eq!(unrelated.status(), StatusCode::NOT_MODIFIED);
    server.until_waiting(0).await;
}

#[tokio::test]
async fn the_fulfilment_worker_packs_then_ships() {
    let server = Server::start(
        DemoConfig::new()
            .packed_after(Duration::from_millis(100))
            .shipped_after(Duration::from_millis(300)),
    )
    .await;
    let started = Instant::now();
    let id = server.create("teapot").await;

    let packed = server
        .get(&format!("/api/orders/{id}/next?after=1&timeout_ms=5000"))
        .await;
    assert_eq!(packed.status(), StatusCode::OK);
    assert_eq!(json_of(packed).await, order(&id, "teapot", "packed", 2));
    assert!(started.elapsed() >= Duration::from_millis(100));

    let shipped = server
        .get(&format!("/api/orders/{id}/next?after=2&timeout_ms=5000"))
        .await;
    assert_eq!(shipped.status(), StatusCode::OK);
    assert_eq!(json_of(shipped).await, order(&id, "teapot", "shipped", 3));
    assert!(started.elapsed() >= Duration::from_millis(300));

    let current = server.get(&format!("/api/orders/{id}")).await;
    assert_eq!(json_of(current).await, order(&id, "teapot", "shipped", 3));
}

#[tokio::test]
async fn the_worker_appends_after_other_events() {
    let server = Server::start(
        DemoConfig::new()
            .packed_after(Duration::from_millis(200))
            .shipped_after(Duration::from_millis(400)),
    )
    .await;
    let id = server.create("teapot").await;
    let paid = server
        .post_json(
            &format!("/api/orders/{id}/events"),
            json!({ "status": "paid" }),
        )
        .await;
    assert_eq!(json_of(paid).await, order(&id, "teapot", "paid", 2));

    let packed = server
        .get(&format!("/api/orders/{id}/next?after=2&timeout_ms=5000"))
        .await;
    assert_eq!(json_of(packed).await, order(&id, "teapot", "packed", 3));
    let shipped = server
        .get(&format!("/api/orders/{id}/next?after=3&timeout_ms=5000"))
        .await;
    assert_eq!(json_of(shipped).await, order(&id, "teapot", "shipped", 4));
}

#[tokio::test]
async fn next_answers_only_with_a_version_greater_than_after() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let ahead =
        server.get_in_background(&format!("/api/orders/{id}/next?after=3&timeout_ms=10000"));
    let far_ahead =
        server.get_in_background(&format!("/api/orders/{id}/next?after=100&timeout_ms=600"));
    server.until_waiting(2).await;
    for (status, version) in [("paid", 2), ("packed", 3)] {
        let event = server
            .post_json(
                &format!("/api/orders/{id}/events"),
                json!({ "status": status }),
            )
            .await;
        assert_eq!(json_of(event).await["version"], version);
    }
    // Versions 2 and 3 answer neither poll.
    server.until_waiting(2).await;
    assert!(!ahead.is_finished());
    server
        .post_json(
            &format!("/api/orders/{id}/events"),
            json!({ "status": "shipped" }),
        )
        .await;
    let response = ahead.await.expect("poll task");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, order(&id, "teapot", "shipped", 4));
    // A poll for a version the order never reaches times out, whatever happened meanwhile.
    let response = far_ahead.await.expect("poll task");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    server.until_waiting(0).await;
}

#[tokio::test]
async fn next_times_out_with_304_and_forgets_the_poll() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let started = Instant::now();
    let response = server
        .get(&format!("/api/orders/{id}/next?after=1&timeout_ms=200"))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.bytes().await.expect("body").len(), 0);
    assert_eq!(server.desk.store().waiting(), 0);
    let metrics = server.desk.manager().metrics();
    assert_eq!((metrics.timed_out, metrics.in_flight), (1, 0));

    // A poll that reaches the current version times out the same way.
    let response = server
        .get(&format!("/api/orders/{id}/next?after=7&timeout_ms=0"))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn an_abandoned_poll_is_forgotten() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let impatient = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let result = impatient
        .get(server.url(&format!("/api/orders/{id}/next?after=1&timeout_ms=10000")))
        .send()
        .await;
    assert!(result.is_err_and(|error| error.is_timeout()));

    server.until_waiting(0).await;
    let manager = server.desk.manager().clone();
    eventually(
        move || manager.metrics().disconnected == 1,
        "the disconnect to be noticed",
    )
    .await;
    assert_eq!(server.desk.manager().metrics().in_flight, 0);
}

#[tokio::test]
async fn a_bad_query_is_400() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    for query in [
        "after=abc",
        "timeout_ms=x",
        "after=-1",
        "after=1&timeout_ms=1.5",
    ] {
        let response = server.get(&format!("/api/orders/{id}/next?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(server.desk.store().waiting(), 0);
}

#[tokio::test]
async fn malformed_json_is_rejected_by_axum() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let events = format!("/api/orders/{id}/events");

    let syntax = server.post_raw("/api/orders", "{\"item\": ").await;
    assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);
    let syntax = server.post_raw(&events, "not json").await;
    assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);

    let missing = server.post_raw("/api/orders", "{}").await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let wrong_type = server.post_raw(&events, "{\"status\": 7}").await;
    assert_eq!(wrong_type.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let no_content_type = server
        .client
        .post(server.url("/api/orders"))
        .body("{\"item\": \"teapot\"}")
        .send()
        .await
        .expect("POST request");
    assert_eq!(no_content_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let unchanged = server.get(&format!("/api/orders/{id}")).await;
    assert_eq!(json_of(unchanged).await, order(&id, "teapot", "placed", 1));
}

#[tokio::test]
async fn an_empty_item_is_422() {
    let server = Server::quiet().await;
    for item in ["", "   "] {
        let response = server
            .post_json("/api/orders", json!({ "item": item }))
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(json_of(response).await["error"].is_string());
    }
    assert_eq!(
        server.get("/api/orders/1").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_empty_or_overlong_status_is_422() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let events = format!("/api/orders/{id}/events");
    for status in [String::new(), "x".repeat(65)] {
        let response = server.post_json(&events, json!({ "status": status })).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(json_of(response).await["error"].is_string());
    }
    let unchanged = server.get(&format!("/api/orders/{id}")).await;
    assert_eq!(json_of(unchanged).await, order(&id, "teapot", "placed", 1));

    let longest = "x".repeat(64);
    let response = server
        .post_json(&events, json!({ "status": longest }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, order(&id, "teapot", &longest, 2));
}

#[tokio::test]
async fn a_status_may_repeat() {
    let server = Server::quiet().await;
    let id = server.create("teapot").await;
    let events = format!("/api/orders/{id}/events");
    for version in [2, 3] {
        let response = server.post_json(&events, json!({ "status": "paid" })).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            json_of(response).await,
            order(&id, "teapot", "paid", version)
        );
    }
}

#[tokio::test]
async fn the_page_is_served_at_the_root() {
    let server = Server::quiet().await;
    let response = server.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .expect("ASCII content type")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("a body");
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("<title>Order desk"));
    assert!(page.contains("/next?after="));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );
}

/// A quiet demo whose invoices take `rounds` extra hash rounds and time out after `timeout`.
async fn invoicing(rounds: u32, timeout: Duration, executor: Option<AsyncTaskExecutor>) -> Server {
    let mut config = DemoConfig::new()
        .packed_after(QUIET)
        .shipped_after(QUIET)
        .invoice_hash_rounds(rounds)
        .invoice_timeout(timeout);
    if let Some(executor) = executor {
        config = config.task_executor(executor);
    }
    Server::start(config).await
}

/// One thread, no queue: a second invoice while one renders is rejected.
fn single_thread_executor() -> AsyncTaskExecutor {
    AsyncTaskExecutor::builder()
        .thread_name_prefix("invoice-test-")
        .core_pool_size(1)
        .max_pool_size(1)
        .queue_capacity(0)
        .retry_after(Duration::from_secs(2))
        .build()
        .expect("a valid pool")
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `text` has `word` as a whole whitespace-separated word.
fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}

#[tokio::test]
async fn an_invoice_names_the_order_and_carries_its_sha256() {
    let server = invoicing(1_000, Duration::from_secs(10), None).await;
    let id = server.create("teapot").await;
    server.create("cups").await;

    let response = server.invoice(&id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .expect("ASCII content type");
    assert_eq!(content_type, "application/json");
    let body = json_of(response).await;
    let fields = body.as_object().expect("a JSON object");
    let mut keys: Vec<_> = fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "invoice", "sha256", "status", "version"]);
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["version"], json!(1));
    assert_eq!(body["status"], json!("placed"));

    let invoice = body["invoice"].as_str().expect("invoice text");
    let sha256 = body["sha256"].as_str().expect("sha256 string");
    assert_eq!(sha256, sha256_hex(invoice));
    assert_eq!(sha256.len(), 64);
    assert!(sha256
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert!(has_word(invoice, "teapot"), "{invoice}");
    assert!(has_word(invoice, &id), "{invoice}");
    assert!(!invoice.contains("cups"));

    // The same order version renders the same invoice; rendering changes nothing.
    let again = json_of(server.invoice(&id).await).await;
    assert_eq!(again, body);
    let order_now = server.get(&format!("/api/orders/{id}")).await;
    assert_eq!(json_of(order_now).await, order(&id, "teapot", "placed", 1));
    let metrics = server.desk.manager().metrics();
    assert_eq!((metrics.completed, metrics.in_flight), (2, 0));
}

#[tokio::test]
async fn an_invoice_reflects_the_events_posted_before() {
    let server = invoicing(1_000, Duration::from_secs(10), None).await;
    let id = server.create("teapot").await;
    let events = format!("/api/orders/{id}/events");
    for status in ["paid", "gift-wrapped"] {
        let response = server.post_json(&events, json!({ "status": status })).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    let response = server.invoice(&id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(
        (&body["id"], &body["version"], &body["status"]),
        (&json!(id), &json!(3), &json!("gift-wrapped"))
    );
    let invoice = body["invoice"].as_str().expect("invoice text");
    assert_eq!(body["sha256"], json!(sha256_hex(invoice)));
    assert!(has_word(invoice, "gift-wrapped"), "{invoice}");
    assert!(has_word(invoice, "teapot"), "{invoice}");
}

#[tokio::test]
async fn the_invoice_of_an_unknown_order_is_404_before_any_work() {
    let executor = single_thread_executor();
    let server = invoicing(1_000, Duration::from_secs(10), Some(executor.clone())).await;
    let response = server.invoice("42").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(response).await,
        json!({ "error": "no order with id `42`" })
    );
    let id = server.create("teapot").await;
    let response = server.invoice(&format!("{id}0")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let metrics = executor.metrics();
    assert_eq!((metrics.completed, metrics.rejected), (0, 0));
    assert_eq!(server.desk.manager().metrics().completed, 0);
}

#[tokio::test]
async fn a_slow_invoice_times_out_with_503_and_stops_rendering() {
    let executor = single_thread_executor();
    let server = invoicing(u32::MAX, Duration::from_millis(200), Some(executor.clone())).await;
    let id = server.create("teapot").await;

    let started = Instant::now();
    let response = server.invoice(&id).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        json_of(response).await,
        json!({ "error": format!("the invoice of order `{id}` was not ready within 200 ms") })
    );
    assert_eq!(server.desk.manager().metrics().timed_out, 1);

    // Billions of rounds would take hours: the thread is free again only if they stopped.
    let idle = executor.clone();
    eventually(
        move || idle.metrics().active == 0,
        "the cancelled rendering to stop",
    )
    .await;
    assert_eq!(executor.metrics().completed, 1);
}

#[tokio::test]
async fn a_busy_executor_answers_503_with_retry_after() {
    let executor = single_thread_executor();
    let server = invoicing(u32::MAX, Duration::from_secs(1), Some(executor.clone())).await;
    let id = server.create("teapot").await;

    let first = server.invoice_in_background(&id);
    let running = executor.clone();
    eventually(
        move || running.metrics().active == 1,
        "the first invoice to run",
    )
    .await;

    let busy = server.invoice(&id).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        busy.headers()["retry-after"].to_str().ok(),
        Some("2"),
        "the executor's hint"
    );
    assert_eq!(executor.metrics().rejected, 1);
    assert_eq!(server.desk.manager().metrics().rejected, 1);

    let first = first.await.expect("first invoice task");
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(json_of(first).await["error"].is_string());
    let idle = executor.clone();
    eventually(move || idle.metrics().active == 0, "the pool to be idle").await;
}

#[tokio::test]
async fn the_page_offers_the_invoice() {
    let server = Server::quiet().await;
    let page = server.get("/").await.text().await.expect("a body");
    assert!(page.contains("Render invoice"));
    assert!(page.contains("/invoice"));
}

// ---------------------------------------------------------------------------------------------
// Streaming: the order's SSE stream, the feed and the receipt.

/// How long a test waits for the next bytes of a stream before it fails.
const STREAM_WAIT: Duration = Duration::from_secs(5);

/// The most chunks a test reads from one stream: a guard against a stream that never ends.
const MAX_CHUNKS: usize = 10_000;

/// The exact wire form of the `status` event of one order version.
fn status_event(id: &str, item: &str, status: &str, version: u64) -> String {
    let data = serde_json::to_string(&order(id, item, status, version)).expect("JSON");
    format!("id:{version}\nevent:status\ndata:{data}\n\n")
}

/// A streamed response read raw, chunk by chunk, with a bounded wait for each read.
struct RawStream {
    response: Response,
    buffer: String,
    chunks: usize,
    ended: bool,
}

impl RawStream {
    fn new(response: Response) -> RawStream {
        RawStream {
            response,
            buffer: String::new(),
            chunks: 0,
            ended: false,
        }
    }

    /// Reads one more chunk into the buffer; `false` once the stream has ended.
    async fn read(&mut self) -> bool {
        if self.ended {
            return false;
        }
        self.chunks += 1;
        assert!(self.chunks <= MAX_CHUNKS, "too many chunks");
        let chunk = tokio::time::timeout(STREAM_WAIT, self.response.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing new within {STREAM_WAIT:?}; so far: {:?}",
                    self.buffer
                )
            })
            .expect("a readable stream");
        match chunk {
            Some(bytes) => {
                self.buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8 chunk"));
                true
            }
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The next `count` SSE events, each exactly as on the wire (`field:value` lines and the
    /// blank line that ends it); comment-only blocks (heartbeats) are skipped.
    async fn events(&mut self, count: usize) -> Vec<String> {
        let mut events = Vec::new();
        while events.len() < count {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if !block
                    .lines()
                    .all(|line| line.is_empty() || line.starts_with(':'))
                {
                    events.push(block);
                }
                continue;
            }
            assert!(
                self.read().await,
                "the stream ended after {events:?}; left: {:?}",
                self.buffer
            );
        }
        events
    }

    /// The next `count` lines (without their `\n`).
    async fn lines(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::new();
        while lines.len() < count {
            if let Some(end) = self.buffer.find('\n') {
                let line: String = self.buffer.drain(..=end).collect();
                lines.push(line.trim_end_matches('\n').to_owned());
                continue;
            }
            assert!(self.read().await, "the stream ended after {lines:?}");
        }
        lines
    }

    /// Reads until the stream ends; what is left must be heartbeats only.
    async fn until_end(&mut self) {
        while self.read().await {}
        assert!(
            self.buffer
                .lines()
                .all(|line| line.is_empty() || line.starts_with(':')),
            "unexpected bytes before the end: {:?}",
            self.buffer
        );
    }
}

impl Server {
    /// `GET /api/orders/{id}/stream`, with `Last-Event-ID` if given; answers `200` as an event
    /// stream.
    async fn stream(&self, id: &str, last_event_id: Option<&str>) -> RawStream {
        let mut request = self
            .client
            .get(self.url(&format!("/api/orders/{id}/stream")))
            .header("accept", "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = tokio::time::timeout(STREAM_WAIT, request.send())
            .await
            .expect("the stream's headers in time")
            .expect("GET request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE].to_str().ok(),
            Some("text/event-stream")
        );
        RawStream::new(response)
    }

    async fn post_status(&self, id: &str, status: &str) -> Value {
        let response = self
            .post_json(
                &format!("/api/orders/{id}/events"),
                json!({ "status": status }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        json_of(response).await
    }

    /// `GET /api/orders/feed` with this `Accept` (none if `None`).
    async fn feed(&self, accept: Option<&str>) -> Response {
        let mut request = self.client.get(self.url("/api/orders/feed"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        tokio::time::timeout(STREAM_WAIT, request.send())
            .await
            .expect("the feed's headers in time")
            .expect("GET request")
    }
}

/// Runs a test body with an overall time limit.
async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("the test finished within 30 s");
}

#[tokio::test]
async fn the_stream_replays_the_history_then_sends_live_events() {
    bounded(async {
        let server = Server::quiet().await;
        let id = server.create("teapot").await;
        server.post_status(&id, "paid").await;

        let mut stream = server.stream(&id, None).await;
        assert_eq!(
            stream.events(2).await,
            [
                status_event(&id, "teapot", "placed", 1),
                status_event(&id, "teapot", "paid", 2),
            ]
        );
        assert_eq!(server.desk.store().streams(), 1);

        for (status, version) in [("packed", 3), ("packed", 4)] {
            server.post_status(&id, status).await;
            assert_eq!(
                stream.events(1).await,
                [status_event(&id, "teapot", status, version)]
            );
        }
        // Other orders do not show up.
        let other = server.create("cups").await;
        server.post_status(&other, "paid").await;
        server.post_status(&id, "shipped").await;
        assert_eq!(
            stream.events(1).await,
            [status_event(&id, "teapot", "shipped", 5)]
        );
    })
    .await;
}

#[tokio::test]
async fn the_stream_resumes_after_last_event_id() {
    bounded(async {
        let server = Server::quiet().await;
        let id = server.create("teapot").await;
        for status in ["paid", "packed", "shipped"] {
            server.post_status(&id, status).await;
        }

        let mut resumed = server.stream(&id, Some("2")).await;
        assert_eq!(
            resumed.events(2).await,
            [
                status_event(&id, "teapot", "packed", 3),
                status_event(&id, "teapot", "shipped", 4),
            ]
        );
        // Up to date: nothing is replayed, the next event is the next change.
        let mut current = server.stream(&id, Some("4")).await;
        // `0` is before every version: the whole history.
        let mut everything = server.stream(&id, Some("0")).await;
        let history: Vec<_> = [(1, "placed"), (2, "paid"), (3, "packed"), (4, "shipped")]
            .into_iter()
            .map(|(version, status)| status_event(&id, "teapot", status, version))
            .collect();
        assert_eq!(everything.events(4).await, history);

        server.post_status(&id, "returned").await;
        let fifth = status_event(&id, "teapot", "returned", 5);
        assert_eq!(resumed.events(1).await, [fifth.as_str()]);
        assert_eq!(current.events(1).await, [fifth.as_str()]);
        assert_eq!(everything.events(1).await, [fifth.as_str()]);
    })
    .await;
}

#[tokio::test]
async fn the_stream_replays_the_buffer_for_a_future_or_non_numeric_last_event_id() {
    bounded(async {
        let server = Server::quiet().await;
        let id = server.create("teapot").await;
        server.post_status(&id, "paid").await;
        let history = [
            status_event(&id, "teapot", "placed", 1),
            status_event(&id, "teapot", "paid", 2),
        ];
        for last in ["99", "abc", "-1", ""] {
            let mut stream = server.stream(&id, Some(last)).await;
            assert_eq!(stream.events(2).await, history, "Last-Event-ID: {last:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_stream_of_an_unknown_order_is_404() {
    bounded(async {
        let server = Server::quiet().await;
        for path in ["/api/orders/42/stream", "/api/orders/42/receipt"] {
            let response = server.get(path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                json_of(response).await,
                json!({ "error": "no order with id `42`" }),
                "{path}"
            );
        }
        assert_eq!(server.desk.store().streams(), 0);
    })
    .await;
}

#[tokio::test]
async fn the_worker_publishes_to_the_stream() {
    bounded(async {
        let server = Server::start(
            DemoConfig::new()
                .packed_after(Duration::from_millis(100))
                .shipped_after(Duration::from_millis(300)),
        )
        .await;
        let id = server.create("teapot").await;
        let mut stream = server.stream(&id, None).await;
        assert_eq!(
            stream.events(3).await,
            [
                status_event(&id, "teapot", "placed", 1),
                status_event(&id, "teapot", "packed", 2),
                status_event(&id, "teapot", "shipped", 3),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn dropped_streams_end_and_resume_from_the_replay_buffer() {
    bounded(async {
        let server = Server::quiet().await;
        let id = server.create("teapot").await;
        let mut stream = server.stream(&id, None).await;
        assert_eq!(
            stream.events(1).await,
            [status_event(&id, "teapot", "placed", 1)]
        );

        assert_eq!(server.desk.drop_streams(), 1);
        stream.until_end().await;
        assert_eq!(server.desk.store().streams(), 0);

        // Missed while disconnected, then replayed exactly once on resuming.
        server.post_status(&id, "paid").await;
        server.post_status(&id, "packed").await;
        let mut resumed = server.stream(&id, Some("1")).await;
        assert_eq!(
            resumed.events(2).await,
            [
                status_event(&id, "teapot", "paid", 2),
                status_event(&id, "teapot", "packed", 3),
            ]
        );
        // The broadcaster is still open: live events go on.
        server.post_status(&id, "shipped").await;
        assert_eq!(
            resumed.events(1).await,
            [status_event(&id, "teapot", "shipped", 4)]
        );
    })
    .await;
}

#[tokio::test]
async fn the_ndjson_feed_streams_changes_made_after_connecting() {
    bounded(async {
        let server = Server::quiet().await;
        let before = server.create("teapot").await;

        let response = server.feed(Some("application/x-ndjson")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE].to_str().ok(),
            Some("application/x-ndjson")
        );
        let mut feed = RawStream::new(response);

        let id = server.create("cups").await;
        server.post_status(&before, "paid").await;
        server.post_status(&id, "packed").await;
        let lines = feed.lines(3).await;
        let parsed: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(
            parsed,
            [
                order(&id, "cups", "placed", 1),
                order(&before, "teapot", "paid", 2),
                order(&id, "cups", "packed", 2),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn the_feed_streams_sse_for_an_event_stream_accept_and_a_snapshot_for_any_other() {
    bounded(async {
        let server = Server::quiet().await;
        let id = server.create("teapot").await;
        let response = server.feed(Some("text/event-stream")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE].to_str().ok(),
            Some("text/event-stream")
        );
        let mut feed = RawStream::new(response);
        server.post_status(&id, "paid").await;
        let paid = serde_json::to_string(&order(&id, "teapot", "paid", 2)).unwrap();
        assert_eq!(feed.events(1).await, [format!("data:{paid}\n\n")]);

        for accept in ["*/*", "text/plain", "text/html"] {
            let response = server.feed(Some(accept)).await;
            assert_eq!(
                response.headers()[CONTENT_TYPE].to_str().ok(),
                Some("application/json"),
                "{accept}"
            );
            assert_eq!(
                json_of(response).await,
                json!([order(&id, "teapot", "paid", 2)]),
                "{accept}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_json_feed_is_the_current_orders_sorted_by_id() {
    bounded(async {
        let server = Server::quiet().await;
        let empty = server.feed(Some("application/json")).await;
        assert_eq!(empty.status(), StatusCode::OK);
        assert_eq!(json_of(empty).await, json!([]));

        // Eleven orders: "10" and "11" sort after "9", not after "1".
        for n in 1..=11 {
            server.create(&format!("item {n}")).await;
        }
        server.post_status("10", "paid").await;
        let expected: Vec<Value> = (1..=11)
            .map(|n| {
                let (status, version) = if n == 10 { ("paid", 2) } else { ("placed", 1) };
                order(&n.to_string(), &format!("item {n}"), status, version)
            })
            .collect();
        for accept in [Some("application/json"), None] {
            let response = server.feed(accept).await;
            assert_eq!(response.status(), StatusCode::OK, "{accept:?}");
            assert_eq!(
                response.headers()[CONTENT_TYPE].to_str().ok(),
                Some("application/json"),
                "{accept:?}"
            );
            assert_eq!(json_of(response).await, json!(expected), "{accept:?}");
        }
        // `/api/orders/{id}` still answers for real ids.
        let one = server.get("/api/orders/1").await;
        assert_eq!(json_of(one).await, order("1", "item 1", "placed", 1));
    })
    .await;
}

#[tokio::test]
async fn the_receipt_is_a_text_download() {
    bounded(async {
        let server = Server::quiet().await;
        let id = server.create("blue teapot").await;
        server.post_status(&id, "paid").await;
        server.post_status(&id, "shipped").await;

        let response = server.get(&format!("/api/orders/{id}/receipt")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            headers[CONTENT_TYPE].to_str().ok(),
            Some("text/plain; charset=utf-8")
        );
        let disposition = format!("attachment; filename=\"receipt-{id}.txt\"");
        assert_eq!(
            headers["content-disposition"].to_str().ok(),
            Some(disposition.as_str())
        );
        let body = tokio::time::timeout(STREAM_WAIT, response.text())
            .await
            .expect("the receipt in time")
            .expect("a text body");
        assert!(body.contains("blue teapot"), "{body}");
        assert!(body.contains(&format!("Receipt for order {id}")), "{body}");
        assert!(body.contains("Status:  shipped"), "{body}");
        assert!(body.contains("Version: 3"), "{body}");
        assert!(
            body.contains("  version 1  placed\n  version 2  paid\n  version 3  shipped\n"),
            "{body}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_page_follows_the_stream_and_offers_the_receipt() {
    let server = Server::quiet().await;
    let page = server.get("/").await.text().await.expect("a body");
    assert!(page.contains("new EventSource("));
    assert!(page.contains("/stream"));
    assert!(page.contains("Download receipt"));
    assert!(page.contains("/receipt"));
}
