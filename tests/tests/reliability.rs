//! Admission control, the per-route limit and graceful shutdown, over real HTTP.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_mvc::{
    AsyncConfig, AsyncError, AsyncLimitLayer, AsyncManager, Callable, DeferredResult, RouterExt,
};
use async_mvc_tests::{client, eventually, within};
use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

type Waiting = Arc<Mutex<Vec<DeferredResult<String>>>>;

fn long_polls(waiting: &Waiting) -> Router {
    let waiting = waiting.clone();
    Router::new().route(
        "/poll",
        get(move || {
            let waiting = waiting.clone();
            async move {
                let result = DeferredResult::new();
                waiting.lock().unwrap().push(result.clone());
                result
            }
        }),
    )
}

#[tokio::test]
async fn over_max_concurrent_is_503_at_once_and_admitted_requests_are_untouched() {
    let waiting = Waiting::default();
    let manager = AsyncManager::new(AsyncConfig::new().max_concurrent(3));
    let app = long_polls(&waiting).async_support(manager.clone());
    let server = async_mvc_tests::TestServer::start(app).await;
    let http = client();

    let admitted: Vec<_> = (0..3)
        .map(|_| tokio::spawn(http.get(server.url("/poll")).send()))
        .collect();
    eventually("three pending", || manager.metrics().in_flight == 3).await;

    // The fourth is refused at once; the handler ran, so its result learned why.
    let refused = http.get(server.url("/poll")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.text().await.unwrap().contains("limit 3"));
    assert!(waiting.lock().unwrap()[3].is_set_or_expired());
    assert_eq!(manager.metrics().rejected, 1);

    for (n, result) in waiting.lock().unwrap().iter().take(3).enumerate() {
        assert!(result.set_result(format!("value {n}")));
    }
    for (n, poll) in admitted.into_iter().enumerate() {
        let response = within("admitted poll", poll).await.unwrap().unwrap();
        assert_eq!(response.text().await.unwrap(), format!("value {n}"));
    }
    // Room again.
    let again = tokio::spawn(http.get(server.url("/poll")).send());
    eventually("admitted again", || manager.metrics().in_flight == 1).await;
    waiting.lock().unwrap()[4].set_result("again".into());
    assert_eq!(
        within("poll", again)
            .await
            .unwrap()
            .unwrap()
            .text()
            .await
            .unwrap(),
        "again"
    );
}

#[tokio::test]
async fn per_route_limit_counts_until_the_response_ends() {
    let waiting = Waiting::default();
    let limit = AsyncLimitLayer::new(2);
    let app = long_polls(&waiting)
        .route_layer(limit.clone())
        .route("/free", get(|| async { "free" }))
        .async_support(AsyncConfig::new());
    let server = async_mvc_tests::TestServer::start(app).await;
    let http = client();

    let first = tokio::spawn(http.get(server.url("/poll")).send());
    let second = tokio::spawn(http.get(server.url("/poll")).send());
    eventually("two in flight", || limit.in_flight() == 2).await;
    let refused = http.get(server.url("/poll")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    // Other routes are not limited.
    let free = http.get(server.url("/free")).send().await.unwrap();
    assert_eq!(free.text().await.unwrap(), "free");

    waiting.lock().unwrap()[0].set_result("one".into());
    assert_eq!(
        within("first", first)
            .await
            .unwrap()
            .unwrap()
            .text()
            .await
            .unwrap(),
        "one"
    );
    eventually("the permit is back", || limit.in_flight() == 1).await;
    let third = tokio::spawn(http.get(server.url("/poll")).send());
    eventually("admitted", || limit.in_flight() == 2).await;
    for result in waiting.lock().unwrap().iter().skip(1) {
        result.set_result("done".into());
    }
    assert_eq!(
        within("second", second).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        within("third", third).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    eventually("all permits back", || limit.in_flight() == 0).await;
}

#[tokio::test]
async fn graceful_shutdown_completes_pending_results_and_refuses_new_ones() {
    let app_manager = AsyncManager::new(
        AsyncConfig::new()
            .default_timeout(Duration::from_secs(3600))
            .shutdown_grace(Duration::from_millis(300)),
    );
    let app = Router::new()
        .route(
            "/poll/{kind}",
            get(|Path(kind): Path<String>| async move {
                match kind.as_str() {
                    // Completes with its timeout result.
                    "fallback" => DeferredResult::<Response>::with_timeout_result(
                        Duration::from_secs(3600),
                        StatusCode::NOT_MODIFIED.into_response(),
                    ),
                    // No timeout result: 503.
                    _ => DeferredResult::new(),
                }
            }),
        )
        .route(
            "/task",
            get(|| async {
                Callable::cancellable(|token| {
                    while !token.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    "finished late"
                })
            }),
        )
        .async_support(app_manager.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = app_manager.clone().shutdown_on(async {
        let _ = signal.await;
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    let http = client();
    let url = |path: &str| format!("http://{addr}{path}");

    let polls: Vec<_> = (0..20)
        .map(|n| {
            let kind = if n % 2 == 0 { "fallback" } else { "plain" };
            tokio::spawn(http.get(url(&format!("/poll/{kind}"))).send())
        })
        .collect();
    let task = tokio::spawn(http.get(url("/task")).send());
    eventually("all pending", || app_manager.metrics().in_flight == 21).await;

    trigger.send(()).unwrap();
    for (n, poll) in polls.into_iter().enumerate() {
        let response = within("a poll answered at shutdown", poll)
            .await
            .unwrap()
            .unwrap();
        let expected = if n % 2 == 0 {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        assert_eq!(response.status(), expected, "poll {n}");
    }
    // The running task had the grace period, then timed out.
    let task = within("the task answered", task).await.unwrap().unwrap();
    assert_eq!(task.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(app_manager.is_shutting_down());
    within("the server returned", server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app_manager.metrics().in_flight, 0);
}

#[tokio::test]
async fn after_shutdown_new_async_requests_are_refused() {
    let manager = AsyncManager::new(AsyncConfig::new());
    let waiting = Waiting::default();
    let app = long_polls(&waiting).async_support(manager.clone());
    let server = async_mvc_tests::TestServer::start(app).await;
    manager.shutdown();
    let response = client().get(server.url("/poll")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(
        response.text().await.unwrap(),
        AsyncError::ShuttingDown.to_string()
    );
    assert!(waiting.lock().unwrap()[0].is_set_or_expired());
}

#[tokio::test]
async fn per_route_limit_outside_the_async_support_counts_the_same() {
    let waiting = Waiting::default();
    let limit = AsyncLimitLayer::new(1);
    // Added after `async_support`, the limit wraps it: it sees the final response directly.
    let app = long_polls(&waiting)
        .async_support(AsyncConfig::new())
        .route_layer(limit.clone());
    let server = async_mvc_tests::TestServer::start(app).await;
    let http = client();
    let first = tokio::spawn(http.get(server.url("/poll")).send());
    eventually("one in flight", || limit.in_flight() == 1).await;
    let refused = http.get(server.url("/poll")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    waiting.lock().unwrap()[0].set_result("one".into());
    assert_eq!(
        within("first", first)
            .await
            .unwrap()
            .unwrap()
            .text()
            .await
            .unwrap(),
        "one"
    );
    eventually("the permit is back", || limit.in_flight() == 0).await;
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_server_keeps_serving() {
    async fn boom(Path(fail): Path<bool>) -> DeferredResult<&'static str> {
        assert!(!fail, "handler bug");
        let result = DeferredResult::new();
        result.set_result("fine");
        result
    }
    let manager = AsyncManager::new(AsyncConfig::new());
    let app = Router::new()
        .route("/{fail}", get(boom))
        .async_support(manager.clone());
    let server = async_mvc_tests::TestServer::start(app).await;
    let http = client();
    for _ in 0..3 {
        let failed = http.get(server.url("/true")).send().await.unwrap();
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let ok = http.get(server.url("/false")).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "fine");
    }
    assert_eq!(manager.metrics().in_flight, 0);
}
