//! End-to-end tests of `DeferredResult` through the async manager, on the test kit
//! (`async_mvc_test::TestClient`: through the router, no socket; timeouts under paused time),
//! plain axum handlers (the macro routes are covered in `controller.rs`); the raw bytes of a
//! completed long poll over real HTTP on loopback.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_mvc::{AsyncConfig, AsyncManager, DeferredResult, RouterExt};
use async_mvc_test::TestClient;
use async_mvc_tests::{eventually, within, TestServer};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Long polls by key, completed by another request.
#[derive(Clone, Default)]
struct Waiters(Arc<Mutex<HashMap<String, DeferredResult<String>>>>);

impl Waiters {
    fn insert(&self, key: String, result: DeferredResult<String>) {
        self.0.lock().unwrap().insert(key, result);
    }
    fn get(&self, key: &str) -> Option<DeferredResult<String>> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn wait(State(waiters): State<Waiters>, Path(key): Path<String>) -> DeferredResult<String> {
    let result = DeferredResult::new();
    waiters.insert(key, result.clone());
    result
}

/// Sets the waiting result; answers whether this value won.
async fn complete(
    State(waiters): State<Waiters>,
    Path(key): Path<String>,
    value: String,
) -> Response {
    match waiters.get(&key) {
        Some(result) => result.set_result(value).to_string().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn long_poll_app(waiters: Waiters, manager: AsyncManager) -> Router {
    Router::new()
        .route("/wait/{key}", get(wait))
        .route("/complete/{key}", post(complete))
        .with_state(waiters)
        .async_support(manager)
}

#[tokio::test]
async fn long_poll_is_completed_by_another_http_request() {
    let waiters = Waiters::default();
    let manager = AsyncManager::new(AsyncConfig::new());
    let server = TestClient::new(long_poll_app(waiters.clone(), manager.clone()));

    let poll = server.get("/wait/a").start();
    assert!(poll.async_started().await);

    let won = server.post("/complete/a").body("hello").send().await;
    assert_eq!(won.text(), "true");

    let response = poll.response().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text(), "hello");

    let metrics = manager.metrics();
    assert_eq!(metrics.in_flight, 0);
    assert_eq!(metrics.completed, 1);
    assert_eq!(metrics.timed_out, 0);
}

#[tokio::test]
async fn second_set_result_returns_false_and_the_client_sees_the_first_value() {
    let waiters = Waiters::default();
    let manager = AsyncManager::new(AsyncConfig::new());
    let server = TestClient::new(long_poll_app(waiters.clone(), manager.clone()));

    let poll = server.get("/wait/k").start();
    assert!(poll.async_started().await);

    let first = server.post("/complete/k").body("first");
    assert_eq!(first.send().await.text(), "true");
    let second = server.post("/complete/k").body("second");
    assert_eq!(second.send().await.text(), "false");

    let response = poll.response().await;
    assert_eq!(response.text(), "first");
    let result = waiters.get("k").unwrap();
    assert!(result.has_result());
    assert!(result.is_set_or_expired());
}

#[tokio::test]
async fn result_set_from_a_std_thread_without_a_runtime() {
    async fn handler() -> DeferredResult<String> {
        let result = DeferredResult::new();
        let handle = result.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            assert!(tokio::runtime::Handle::try_current().is_err());
            assert!(handle.set_result("from a thread".to_owned()));
        });
        result
    }
    let app = Router::new()
        .route("/", get(handler))
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text(), "from a thread");
}

#[tokio::test]
async fn result_set_before_the_handler_returns_completes_at_once() {
    async fn handler() -> DeferredResult<&'static str> {
        // An hour-long timeout: only the value already set can answer this request.
        let result = DeferredResult::with_timeout(Duration::from_secs(3600));
        assert!(result.set_result("ready"));
        assert!(result.has_result());
        result
    }
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/", get(handler))
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text(), "ready");
    assert_eq!(manager.metrics().completed, 1);
    assert_eq!(manager.metrics().timed_out, 0);
}

#[tokio::test(start_paused = true)]
async fn per_result_timeout_renders_the_timeout_result() {
    async fn handler() -> DeferredResult<Response> {
        DeferredResult::with_timeout_result(
            Duration::from_millis(100),
            StatusCode::NOT_MODIFIED.into_response(),
        )
    }
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/", get(handler))
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let metrics = manager.metrics();
    assert_eq!(
        (metrics.timed_out, metrics.completed, metrics.in_flight),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn lazy_timeout_result_is_computed_only_when_the_timeout_fires() {
    let calls = Arc::new(Mutex::new(0));
    let app = Router::new()
        .route(
            "/{set}",
            get({
                let calls = calls.clone();
                move |Path(set): Path<bool>| async move {
                    let result = DeferredResult::<String>::with_timeout_result_fn(
                        Duration::from_millis(100),
                        move || {
                            *calls.lock().unwrap() += 1;
                            "computed at timeout".to_owned()
                        },
                    );
                    if set {
                        result.set_result("set in time".to_owned());
                    }
                    result
                }
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let in_time = server.get("/true").send().await;
    assert_eq!(in_time.text(), "set in time");
    assert_eq!(*calls.lock().unwrap(), 0);

    let timed_out = server.get("/false").send().await;
    assert_eq!(timed_out.status(), StatusCode::OK);
    assert_eq!(timed_out.text(), "computed at timeout");
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn on_timeout_may_set_the_result_and_callbacks_run_in_spring_order() {
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = Router::new()
        .route(
            "/",
            get({
                let events = events.clone();
                move || async move {
                    // A fixed timeout result too: the value `on_timeout` sets wins over it (A.8).
                    let result = DeferredResult::<String>::with_timeout_result(
                        Duration::from_millis(100),
                        "fallback".to_owned(),
                    );
                    let handle = result.clone();
                    let log = events.clone();
                    result.on_timeout(move || {
                        log.lock().unwrap().push("timeout".into());
                        let won = handle.set_result("set by on_timeout".to_owned());
                        log.lock().unwrap().push(format!("set:{won}"));
                    });
                    let log = events.clone();
                    result.on_error(move |e| log.lock().unwrap().push(format!("error:{e}")));
                    let log = events.clone();
                    result.on_completion(move || log.lock().unwrap().push("completion".into()));
                    result
                }
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text(), "set by on_timeout");
    assert_eq!(
        *events.lock().unwrap(),
        ["timeout", "set:true", "completion"]
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_without_a_result_is_503_and_the_result_expires() {
    let results = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/",
            get({
                let results = results.clone();
                move || async move {
                    let result = DeferredResult::<String>::with_timeout(Duration::from_millis(100));
                    results.lock().unwrap().push(result.clone());
                    result
                }
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text(), "async request timed out after 100 ms");
    let result = results.lock().unwrap()[0].clone();
    assert!(result.is_set_or_expired());
    assert!(!result.has_result());
    assert!(!result.set_result("too late".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn default_timeout_from_async_config_applies_when_the_result_has_none() {
    async fn handler() -> DeferredResult<String> {
        DeferredResult::new()
    }
    let manager = AsyncManager::new(
        AsyncConfig::new()
            .default_timeout(Duration::from_millis(150))
            .timeout_response(|error| {
                (StatusCode::GATEWAY_TIMEOUT, format!("custom: {error}")).into_response()
            }),
    );
    let app = Router::new()
        .route("/", get(handler))
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.text(),
        "custom: async request timed out after 150 ms"
    );
    assert_eq!(manager.metrics().timed_out, 1);
}

#[tokio::test]
async fn error_result_is_rendered_through_its_into_response() {
    #[derive(Debug)]
    struct OrderError(&'static str);
    impl IntoResponse for OrderError {
        fn into_response(self) -> Response {
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({ "error": self.0 })),
            )
                .into_response()
        }
    }
    async fn handler() -> DeferredResult<Json<serde_json::Value>, OrderError> {
        let result = DeferredResult::new();
        let handle = result.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(handle.set_error_result(OrderError("already shipped")));
            assert!(!handle.set_result(Json(serde_json::json!({}))));
        });
        result
    }
    let app = Router::new()
        .route("/", get(handler))
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text(), r#"{"error":"already shipped"}"#);
}

#[tokio::test]
async fn client_disconnect_while_pending_runs_error_then_completion() {
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route(
            "/",
            get({
                let (events, results) = (events.clone(), results.clone());
                move || async move {
                    let result = DeferredResult::<String>::new();
                    let log = events.clone();
                    result.on_error(move |e| log.lock().unwrap().push(format!("error: {e}")));
                    let log = events.clone();
                    result.on_completion(move || log.lock().unwrap().push("completion".into()));
                    results.lock().unwrap().push(result.clone());
                    result
                }
            }),
        )
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let request = server.get("/").start();
    assert!(request.async_started().await);
    request.disconnect();

    eventually("on_completion ran", || events.lock().unwrap().len() == 2).await;
    assert_eq!(
        *events.lock().unwrap(),
        [
            "error: the client disconnected before the async result was sent",
            "completion"
        ]
    );
    let metrics = manager.metrics();
    assert_eq!(
        (metrics.in_flight, metrics.disconnected, metrics.completed),
        (0, 1, 0)
    );
    let result = results.lock().unwrap()[0].clone();
    assert!(result.is_set_or_expired());
    assert!(!result.set_result("nobody listens".to_owned()));
}

#[tokio::test]
async fn callbacks_registered_after_the_handler_returned_still_run() {
    let waiters = Waiters::default();
    let manager = AsyncManager::new(AsyncConfig::new());
    let server = TestClient::new(long_poll_app(waiters.clone(), manager.clone()));

    let poll = server.get("/wait/late").start();
    assert!(poll.async_started().await);
    let completed = Arc::new(Mutex::new(0));
    let result = waiters.get("late").unwrap();
    // Registered from a plain thread, after the handler returned; the second replaces the first.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let first = completed.clone();
            result.on_completion(move || *first.lock().unwrap() += 100);
            let second = completed.clone();
            result.on_completion(move || *second.lock().unwrap() += 1);
        });
    });
    assert!(result.set_result("done".to_owned()));

    let response = poll.response().await;
    assert_eq!(response.text(), "done");
    eventually("on_completion ran", || *completed.lock().unwrap() != 0).await;
    assert_eq!(*completed.lock().unwrap(), 1);
}

#[tokio::test]
async fn thousand_concurrent_long_polls_each_receive_their_own_value() {
    const CLIENTS: usize = 1_000;
    let waiters = Waiters::default();
    let manager = AsyncManager::new(AsyncConfig::new());
    let server = TestClient::new(long_poll_app(waiters.clone(), manager.clone()));

    let polls: Vec<_> = (0..CLIENTS)
        .map(|i| server.get(&format!("/wait/{i}")).start())
        .collect();
    eventually("all long polls are pending", || {
        manager.metrics().in_flight == CLIENTS as u64
    })
    .await;
    assert_eq!(waiters.len(), CLIENTS);

    // Complete them from another thread, in reverse order.
    let completer = waiters.clone();
    std::thread::spawn(move || {
        for i in (0..CLIENTS).rev() {
            let result = completer.get(&i.to_string()).expect("registered");
            assert!(result.set_result(format!("value-{i}")));
        }
    });
    for (i, poll) in polls.into_iter().enumerate() {
        let response = poll.response().await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text(), format!("value-{i}"));
    }
    let metrics = manager.metrics();
    assert_eq!((metrics.in_flight, metrics.completed), (0, CLIENTS as u64));
}

#[tokio::test]
async fn without_async_support_the_response_names_the_fix_and_the_result_expires() {
    let results = Arc::new(Mutex::new(Vec::new()));
    let completed = Arc::new(Mutex::new(false));
    let app = Router::new().route(
        "/",
        get({
            let (results, completed) = (results.clone(), completed.clone());
            move || async move {
                let result = DeferredResult::<String>::new();
                result.on_completion(move || *completed.lock().unwrap() = true);
                results.lock().unwrap().push(result.clone());
                result
            }
        }),
    );
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.text();
    assert!(
        body.contains(".async_support(AsyncConfig::default())"),
        "{body}"
    );
    let result = results.lock().unwrap()[0].clone();
    eventually("the unprocessed result expired", || {
        result.is_set_or_expired()
    })
    .await;
    assert!(!result.set_result("nobody listens".to_owned()));
    assert!(*completed.lock().unwrap());
}

#[tokio::test]
async fn raw_http_bytes_of_a_completed_long_poll() {
    async fn handler() -> DeferredResult<(StatusCode, [(&'static str, &'static str); 1], String)> {
        let result = DeferredResult::new();
        let handle = result.clone();
        tokio::spawn(async move {
            handle.set_result((
                StatusCode::ACCEPTED,
                [("x-order", "7")],
                "queued".to_owned(),
            ));
        });
        result
    }
    let app = Router::new()
        .route("/", get(handler))
        .async_support(AsyncConfig::new());
    let server = TestServer::start(app).await;

    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    within("response", socket.read_to_string(&mut raw))
        .await
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 202 Accepted\r\n"), "{raw}");
    assert!(raw.contains("\r\nx-order: 7\r\n"), "{raw}");
    assert!(raw.contains("\r\ncontent-length: 6\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nqueued"), "{raw}");
}
