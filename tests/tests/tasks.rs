//! End-to-end tests of `Callable` and `WebAsyncTask`: values, panics, timeouts, the bounded
//! executor's rejections, and custom error responses, on the test kit (`TestClient`, through
//! the router). Interceptor order is in `interceptors.rs`.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use async_mvc::{
    AsyncConfig, AsyncError, AsyncManager, AsyncTaskExecutor, Callable, RouterExt, WebAsyncTask,
};
use async_mvc_test::TestClient;
use async_mvc_tests::{eventually, within, WAIT_LIMIT};
use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};

/// A gate blocking tasks until the test opens it (with a hang guard).
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, changed) = &*self.0;
        let guard = open.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, WAIT_LIMIT, |open| !*open)
            .unwrap();
        assert!(*guard, "the gate was never opened");
    }
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
}

fn executor(core: usize, max: usize, queue: usize) -> AsyncTaskExecutor {
    AsyncTaskExecutor::builder()
        .core_pool_size(core)
        .max_pool_size(max)
        .queue_capacity(queue)
        .build()
        .unwrap()
}

#[tokio::test]
async fn callable_values_from_a_thread_and_from_a_future() {
    let app = Router::new()
        .route(
            "/blocking/{n}",
            get(|Path(n): Path<u64>| async move {
                Callable::new(move || Json(serde_json::json!({ "square": n * n })))
            }),
        )
        .route(
            "/future",
            get(|| async {
                Callable::from_future(async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    (StatusCode::ACCEPTED, "from a future")
                })
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let response = server.get("/blocking/12").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text(), r#"{"square":144}"#);
    let response = server.get("/future").send().await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.text(), "from a future");
}

#[tokio::test]
async fn blocking_tasks_run_on_the_executors_named_threads() {
    let executor = AsyncTaskExecutor::builder()
        .thread_name_prefix("invoice-")
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                Callable::new(|| std::thread::current().name().unwrap_or("").to_owned())
            }),
        )
        .async_support(AsyncConfig::new().task_executor(executor));
    let server = TestClient::new(app);
    let name = server.get("/").send().await.text();
    assert!(name.starts_with("invoice-"), "{name}");
}

#[tokio::test]
async fn a_panicking_task_is_500_for_that_request_only() {
    let manager = AsyncManager::new(AsyncConfig::new().task_executor(executor(1, 1, 0)));
    let app = Router::new()
        .route(
            "/{fail}",
            get(|Path(fail): Path<bool>| async move {
                Callable::new(move || {
                    if fail {
                        panic!("invoice template missing");
                    }
                    "rendered"
                })
            }),
        )
        .async_support(manager.clone());
    let server = TestClient::new(app);

    for _ in 0..3 {
        let failed = server.get("/true").send().await;
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.text(), "the async task failed");
        // A pool of one thread still serves the next request.
        let ok = server.get("/false").send().await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.text(), "rendered");
    }
    let metrics = manager.metrics();
    assert_eq!(
        (metrics.errors, metrics.completed, metrics.in_flight),
        (3, 6, 0)
    );
}

#[tokio::test]
async fn on_error_may_replace_a_panic_with_a_value() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                WebAsyncTask::new(|| -> String { panic!("boom") }).on_error(|error| {
                    matches!(error, AsyncError::TaskPanicked { message } if message == "boom")
                        .then(|| "recovered".to_owned())
                })
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);
    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text(), "recovered");
}

#[tokio::test]
async fn timeout_with_on_timeout_fallback_cancels_the_blocking_task() {
    let cancelled_seen = Arc::new(AtomicBool::new(false));
    let completions = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/",
            get({
                let (cancelled_seen, completions) = (cancelled_seen.clone(), completions.clone());
                move || async move {
                    WebAsyncTask::cancellable(move |token| {
                        // Works until told to stop; its late value is ignored.
                        while !token.is_cancelled() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        cancelled_seen.store(true, Ordering::SeqCst);
                        (StatusCode::OK, "late value".to_owned())
                    })
                    .timeout(Duration::from_millis(100))
                    .on_timeout(|| (StatusCode::ACCEPTED, "still working".to_owned()))
                    .on_completion(move || {
                        completions.fetch_add(1, Ordering::SeqCst);
                    })
                }
            }),
        )
        .async_support(AsyncConfig::new());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.text(), "still working");
    eventually("the task saw its token cancelled", || {
        cancelled_seen.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(completions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeout_without_fallback_is_503_and_drops_an_async_task() {
    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let manager = AsyncManager::new(AsyncConfig::new().default_timeout(Duration::from_millis(100)));
    let app = Router::new()
        .route(
            "/",
            get({
                let dropped = dropped.clone();
                move || async move {
                    let flag = DropFlag(dropped);
                    Callable::from_future(async move {
                        let _flag = flag;
                        std::future::pending::<()>().await;
                        "never"
                    })
                }
            }),
        )
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let response = server.get("/").send().await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text(), "async request timed out after 100 ms");
    assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    assert_eq!(manager.metrics().timed_out, 1);
}

#[tokio::test]
async fn saturated_executor_answers_exactly_four_200_and_sixteen_503_at_once() {
    const CLIENTS: usize = 20;
    let gate = Gate::default();
    let started = Arc::new(AtomicUsize::new(0));
    let manager = AsyncManager::new(AsyncConfig::new().task_executor(executor(2, 2, 2)));
    let app = Router::new()
        .route(
            "/",
            get({
                let (gate, started) = (gate.clone(), started.clone());
                move || async move {
                    Callable::new(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.wait();
                        "done"
                    })
                }
            }),
        )
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..CLIENTS {
        let (request, tx) = (server.get("/").send(), tx.clone());
        tokio::spawn(async move {
            let response = request.await;
            let retry_after = response.headers().get("retry-after").cloned();
            let status = response.status();
            let body = response.text();
            tx.send((status, retry_after, body)).unwrap();
        });
    }
    // The 16 rejections arrive while every admitted task is still blocked on the gate.
    for _ in 0..16 {
        let (status, retry_after, body) = within("a rejection", rx.recv()).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(retry_after.unwrap(), "1");
        assert!(body.contains("executor is busy"), "{body}");
    }
    // Two run (their threads may still be starting), two wait in the queue.
    eventually("two running", || started.load(Ordering::SeqCst) == 2).await;
    assert_eq!(manager.metrics().rejected, 16);
    assert_eq!(manager.metrics().in_flight, 4);

    gate.open();
    for _ in 0..4 {
        let (status, _, body) = within("an admitted task", rx.recv()).await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    }
    eventually("nothing pending", || manager.metrics().in_flight == 0).await;
    let metrics = manager.metrics();
    assert_eq!((metrics.completed, metrics.rejected), (20, 16));
    assert_eq!(started.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn custom_error_mapping_replaces_the_default_bodies() {
    let gate = Gate::default();
    let config = AsyncConfig::new()
        .task_executor(executor(1, 1, 0))
        .error_response(|error| {
            let code = match error {
                AsyncError::Timeout { .. } => "timeout",
                AsyncError::Rejected { .. } => "busy",
                AsyncError::TaskPanicked { .. } => "failed",
                _ => "other",
            };
            let mut response =
                (error.status(), Json(serde_json::json!({ "error": code }))).into_response();
            if let AsyncError::Rejected { .. } = error {
                response.headers_mut().insert("retry-after", 5.into());
            }
            response
        });
    let app = Router::new()
        .route(
            "/slow",
            get({
                let gate = gate.clone();
                move || async move {
                    WebAsyncTask::new(move || {
                        gate.wait();
                        "slow"
                    })
                    .timeout(Duration::from_millis(100))
                }
            }),
        )
        .route(
            "/panic",
            get(|| async { Callable::new(|| -> &'static str { panic!("bug") }) }),
        )
        .async_support(config);
    let server = TestClient::new(app);

    let timed_out = server.get("/slow").send().await;
    assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(timed_out.text(), r#"{"error":"timeout"}"#);
    // The timed-out task still holds the only thread: the next one is rejected.
    let busy = server.get("/panic").send().await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()["retry-after"], "5");
    assert_eq!(busy.text(), r#"{"error":"busy"}"#);
    gate.open();
    let mut failed: Option<Response> = None;
    // Once the thread is free again, the panic maps to the custom 500 body.
    for _ in 0..200 {
        let response = server.get("/panic").send().await;
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(response.text(), r#"{"error":"failed"}"#);
            failed = Some(StatusCode::OK.into_response());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(failed.is_some(), "the executor never freed its thread");
}

#[tokio::test]
async fn client_disconnect_cancels_the_task_and_runs_on_error_then_on_completion() {
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route(
            "/",
            get({
                let events = events.clone();
                move || async move {
                    let (on_err, on_done, task_log) =
                        (events.clone(), events.clone(), events.clone());
                    WebAsyncTask::cancellable(move |token| {
                        task_log.lock().unwrap().push("task started".into());
                        while !token.is_cancelled() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        task_log.lock().unwrap().push("task cancelled".into());
                        "unseen"
                    })
                    .on_error(move |error| {
                        on_err.lock().unwrap().push(format!("on_error: {error}"));
                        None
                    })
                    .on_completion(move || on_done.lock().unwrap().push("on_completion".into()))
                }
            }),
        )
        .async_support(manager.clone());
    let server = TestClient::new(app);

    let request = server.get("/").start();
    eventually("the task is running", || {
        events.lock().unwrap().contains(&"task started".to_owned())
    })
    .await;
    request.disconnect();
    eventually("the task stopped", || events.lock().unwrap().len() == 4).await;
    // The request side runs its callbacks in order; the task's thread stops concurrently.
    let events = events.lock().unwrap().clone();
    let request_side: Vec<_> = events.iter().filter(|e| !e.starts_with("task")).collect();
    assert_eq!(
        request_side,
        [
            "on_error: the client disconnected before the async result was sent",
            "on_completion"
        ]
    );
    assert_eq!(events[0], "task started");
    assert!(events.contains(&"task cancelled".to_owned()));
    let metrics = manager.metrics();
    assert_eq!((metrics.in_flight, metrics.disconnected), (0, 1));
}

#[tokio::test]
async fn a_task_refused_at_shutdown_tells_on_error_which_may_answer() {
    let manager = AsyncManager::new(AsyncConfig::new());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = Router::new()
        .route(
            "/task",
            get({
                let seen = seen.clone();
                move || {
                    let (on_error, on_done) = (seen.clone(), seen.clone());
                    async move {
                        WebAsyncTask::new(|| "ran")
                            .on_error(move |error| {
                                on_error.lock().unwrap().push(format!("on_error: {error}"));
                                Some("closed for the night")
                            })
                            .on_completion(move || {
                                on_done.lock().unwrap().push("on_completion".into())
                            })
                    }
                }
            }),
        )
        .async_support(manager.clone());
    let server = TestClient::new(app);
    manager.shutdown();
    let response = server.get("/task").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text(), "closed for the night");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "on_error: the server is shutting down".to_owned(),
            "on_completion".to_owned()
        ]
    );
    assert_eq!(manager.metrics().rejected, 1);
}
