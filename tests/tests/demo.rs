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
    assert_eq!((metrics.timed_out, metrics.pending), (1, 0));

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
    assert_eq!(server.desk.manager().metrics().pending, 0);
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
    assert_eq!((metrics.completed, metrics.pending), (2, 0));
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
