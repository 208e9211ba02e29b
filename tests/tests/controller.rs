//! End-to-end tests of `#[async_controller]` routes: extractors, base paths, `produces`,
//! registration next to `.nest()`, `.merge()` and `.layer()`, and the shared async manager.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use async_mvc::prelude::*;
use async_mvc_tests::{client, eventually, within, TestServer};
use axum::{
    extract::{Path, Query},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get as axum_get,
    Json, Router,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Item {
    name: String,
    qty: u32,
}

#[derive(Deserialize)]
struct Page {
    limit: u32,
    #[serde(default)]
    offset: u32,
}

#[derive(Default)]
struct Shop {
    created: AtomicUsize,
    waiting: Mutex<HashMap<String, DeferredResult<Json<Item>>>>,
}

impl Shop {
    fn waiting(&self, key: &str) -> Option<DeferredResult<Json<Item>>> {
        self.waiting.lock().unwrap().get(key).cloned()
    }
}

#[async_controller(path = "/shop")]
impl Shop {
    #[get("/items/{name}/{qty}")]
    async fn by_path(&self, Path((name, qty)): Path<(String, u32)>) -> Json<Item> {
        Json(Item { name, qty })
    }

    #[get("/items")]
    fn by_query(&self, Query(page): Query<Page>) -> String {
        format!("limit={} offset={}", page.limit, page.offset)
    }

    #[post("/items")]
    async fn create(&self, Json(item): Json<Item>) -> (StatusCode, Json<Item>) {
        self.created.fetch_add(1, Ordering::Relaxed);
        (StatusCode::CREATED, Json(item))
    }

    #[put("/items/{name}")]
    fn replace(&self, Path(name): Path<String>, headers: HeaderMap, body: String) -> String {
        let agent = headers
            .get("x-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        format!("{name} <- {body} by {agent}")
    }

    #[delete("/items/{name}")]
    fn remove(&self, Path(name): Path<String>) -> StatusCode {
        if name == "missing" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::NO_CONTENT
        }
    }

    #[patch("/items/{name}")]
    fn rename(&self, Path(name): Path<String>) -> String {
        format!("patched {name}")
    }

    #[request_mapping(path = "/ping", method = "GET")]
    fn ping(&self) -> &'static str {
        "pong"
    }

    #[request_mapping(path = "/any")]
    async fn any_method(&self, method: axum::http::Method) -> String {
        method.to_string()
    }

    #[get("/poll/{key}")]
    fn poll(&self, Path(key): Path<String>) -> DeferredResult<Json<Item>> {
        let result = DeferredResult::new();
        self.waiting.lock().unwrap().insert(key, result.clone());
        result
    }

    #[get("/raw", produces = "text/csv")]
    fn raw(&self) -> Response {
        "a,b\n1,2\n".into_response().into_body().into_response()
    }

    #[get("/typed", produces = "text/csv")]
    fn typed(&self) -> Json<u32> {
        Json(7)
    }

    /// Not a route: an ordinary method the routes can call.
    fn count(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }
}

struct Health;

#[async_controller]
impl Health {
    #[get("/health")]
    async fn health(&self) -> &'static str {
        "ok"
    }
}

#[tokio::test]
async fn path_query_json_and_header_extractors() {
    let server = TestServer::start(Router::new().controller(Shop::default())).await;
    let http = client();

    let response = http
        .get(server.url("/shop/items/tea/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Item>().await.unwrap(),
        Item {
            name: "tea".into(),
            qty: 3
        }
    );

    let response = http
        .get(server.url("/shop/items?limit=10&offset=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "limit=10 offset=5");

    let response = http
        .post(server.url("/shop/items"))
        .json(&Item {
            name: "cup".into(),
            qty: 2,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.text().await.unwrap(), r#"{"name":"cup","qty":2}"#);

    let response = http
        .put(server.url("/shop/items/cup"))
        .header("x-agent", "tests")
        .body("mug")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "cup <- mug by tests");

    let deleted = http
        .delete(server.url("/shop/items/cup"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let missing = http
        .delete(server.url("/shop/items/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let patched = http
        .patch(server.url("/shop/items/cup"))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.text().await.unwrap(), "patched cup");
}

#[tokio::test]
async fn extractor_rejections_are_axums_4xx() {
    let server = TestServer::start(Router::new().controller(Shop::default())).await;
    let http = client();

    let malformed = http
        .post(server.url("/shop/items"))
        .header("content-type", "application/json")
        .body(r#"{"name": "cup", "qty": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let wrong_shape = http
        .post(server.url("/shop/items"))
        .header("content-type", "application/json")
        .body(r#"{"name": "cup"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_shape.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let no_content_type = http
        .post(server.url("/shop/items"))
        .body(r#"{"name": "cup", "qty": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_content_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let bad_path = http
        .get(server.url("/shop/items/tea/many"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_path.status(), StatusCode::BAD_REQUEST);
    let bad_query = http
        .get(server.url("/shop/items?limit=ten"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status(), StatusCode::BAD_REQUEST);

    let wrong_method = http.post(server.url("/shop/ping")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn request_mapping_with_and_without_method() {
    let server = TestServer::start(Router::new().controller(Shop::default())).await;
    let http = client();
    let pong = http.get(server.url("/shop/ping")).send().await.unwrap();
    assert_eq!(pong.text().await.unwrap(), "pong");
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http
            .request(method.clone(), server.url("/shop/any"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), method.as_str());
    }
}

#[tokio::test]
async fn produces_sets_the_content_type_only_where_the_value_leaves_it_open() {
    let server = TestServer::start(Router::new().controller(Shop::default())).await;
    let http = client();
    let raw = http.get(server.url("/shop/raw")).send().await.unwrap();
    assert_eq!(raw.headers()["content-type"], "text/csv");
    assert_eq!(raw.text().await.unwrap(), "a,b\n1,2\n");
    // Json sets its own content type, which wins over `produces`.
    let typed = http.get(server.url("/shop/typed")).send().await.unwrap();
    assert_eq!(typed.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn produces_applies_to_a_deferred_result_once_it_completes() {
    let shop = Arc::new(Mutex::new(None::<DeferredResult<Response>>));
    struct Waits(Arc<Mutex<Option<DeferredResult<Response>>>>);
    #[async_controller]
    impl Waits {
        #[get("/w", produces = "application/vnd.shop+json")]
        fn wait(&self) -> DeferredResult<Response> {
            let result = DeferredResult::new();
            *self.0.lock().unwrap() = Some(result.clone());
            result
        }
    }
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .controller(Waits(shop.clone()))
        .async_support(manager.clone());
    let server = TestServer::start(app).await;

    let poll = tokio::spawn(client().get(server.url("/w")).send());
    eventually("pending", || manager.metrics().in_flight == 1).await;
    let result = shop.lock().unwrap().clone().unwrap();
    assert!(result.set_result(r#"{"ok":true}"#.into_response().into_body().into_response()));
    let response = within("poll", poll).await.unwrap().unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.shop+json"
    );
    assert_eq!(response.text().await.unwrap(), r#"{"ok":true}"#);
}

#[tokio::test]
async fn controllers_share_the_manager_of_an_enclosing_async_support() {
    let shop = Arc::new(Shop::default());
    // A controller registered by value; keep a second handle on its state through a wrapper.
    struct Shared(Arc<Shop>);
    #[async_controller(path = "/s")]
    impl Shared {
        #[get("/poll/{key}")]
        fn poll(&self, key: Path<String>) -> DeferredResult<Json<Item>> {
            self.0.poll(key)
        }
    }
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .controller(Shared(shop.clone()))
        .controller(Health)
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let http = client();

    let poll = tokio::spawn(http.get(server.url("/s/poll/x")).send());
    eventually("pending in the router's manager", || {
        manager.metrics().in_flight == 1
    })
    .await;
    let result = shop.waiting("x").unwrap();
    assert!(result.set_result(Json(Item {
        name: "x".into(),
        qty: 1
    })));
    let response = within("poll", poll).await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), r#"{"name":"x","qty":1}"#);
    assert_eq!(manager.metrics().completed, 1);

    let health = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn controllers_work_with_nest_merge_and_layer() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let api = Router::new()
        .controller(Shop::default())
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::Relaxed);
                    next.run(request).await
                }
            },
        ));
    let app = Router::new()
        .nest("/v1", api)
        .merge(Router::new().controller(Health))
        .route("/plain", axum_get(|| async { "plain" }));
    let server = TestServer::start(app).await;
    let http = client();

    let response = http.get(server.url("/v1/shop/ping")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "pong");
    let response = http
        .get(server.url("/v1/shop/items/a/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::Relaxed), 2);
    let response = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let response = http.get(server.url("/plain")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "plain");
    let response = http.get(server.url("/shop/ping")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn controller_without_async_support_uses_the_shared_default_manager() {
    let shop = Arc::new(Shop::default());
    struct Shared(Arc<Shop>);
    #[async_controller]
    impl Shared {
        #[get("/poll/{key}")]
        fn poll(&self, key: Path<String>) -> DeferredResult<Json<Item>> {
            self.0.poll(key)
        }
    }
    let server = TestServer::start(Router::new().controller(Shared(shop.clone()))).await;
    let poll = tokio::spawn(client().get(server.url("/poll/d")).send());
    eventually("registered", || shop.waiting("d").is_some()).await;
    let result = shop.waiting("d").unwrap();
    // The handler may have registered before the manager started waiting; either way it wins.
    assert!(result.set_result(Json(Item {
        name: "d".into(),
        qty: 4
    })));
    let response = within("poll", poll).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"name":"d","qty":4}"#);
    assert_eq!(
        AsyncManager::shared_default()
            .config()
            .get_default_timeout(),
        Some(async_mvc::DEFAULT_TIMEOUT)
    );
}

#[test]
fn ordinary_methods_stay_callable() {
    let shop = Shop::default();
    assert_eq!(shop.count(), 0);
}

// ---------------------------------------------------------------- state and attribute paths

#[derive(Clone)]
struct NotesState {
    greeting: &'static str,
    notes: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy)]
struct MaxNotes(usize);

impl axum::extract::FromRef<NotesState> for MaxNotes {
    fn from_ref(_: &NotesState) -> Self {
        MaxNotes(2)
    }
}

struct Notes;

#[async_controller(path = "/notes", state = NotesState)]
impl Notes {
    #[get("/greeting")]
    fn greeting(&self, axum::extract::State(state): axum::extract::State<NotesState>) -> String {
        state.greeting.to_owned()
    }

    #[async_mvc::post("/")]
    fn add(
        &self,
        axum::extract::State(state): axum::extract::State<NotesState>,
        axum::extract::State(MaxNotes(max)): axum::extract::State<MaxNotes>,
        body: String,
    ) -> DeferredResult<(StatusCode, String)> {
        let result = DeferredResult::new();
        let mut notes = state.notes.lock().unwrap();
        if notes.len() >= max {
            result.set_result((StatusCode::INSUFFICIENT_STORAGE, "full".to_owned()));
        } else {
            notes.push(body);
            result.set_result((StatusCode::CREATED, notes.len().to_string()));
        }
        result
    }
}

#[tokio::test]
async fn controller_methods_take_the_routers_state() {
    let state = NotesState {
        greeting: "hello from the state",
        notes: Arc::default(),
    };
    let app = Router::new()
        .controller(Notes)
        .route("/plain", axum_get(|| async { "plain" }))
        .async_support(AsyncConfig::new())
        .with_state(state.clone());
    let server = TestServer::start(app).await;
    let http = client();
    let greeting = http
        .get(server.url("/notes/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(greeting.status(), StatusCode::OK);
    assert_eq!(greeting.text().await.unwrap(), "hello from the state");
    for (expected, body) in [(201, "1"), (201, "2"), (507, "full")] {
        let added = http
            .post(server.url("/notes/"))
            .body("a note")
            .send()
            .await
            .unwrap();
        assert_eq!(added.status().as_u16(), expected);
        assert_eq!(added.text().await.unwrap(), body);
    }
    assert_eq!(state.notes.lock().unwrap().len(), 2);
    let plain = http.get(server.url("/plain")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "plain");
}
