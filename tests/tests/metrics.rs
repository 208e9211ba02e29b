//! Metrics (`async_mvc::telemetry`, the `metrics` feature) over real HTTP, read from the
//! Prometheus recorder the demo installs: exact names, labels and values for each kind of
//! return value — a long poll's whole wait to its timeout, a client that leaves, an SSE stream
//! to its last event, a full executor, a panicking task, a plain handler — and the demo's
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! The recorder is the process's: each test reads deltas of its own routes' series, one test at
//! a time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use async_mvc::{prelude::*, AsyncManager, AsyncTaskExecutor, SseEmitter};
use async_mvc_examples::{
    ops,
    order_desk::{DemoConfig, OrderDesk},
};
use async_mvc_tests::{client, TestServer};
use axum::{http::StatusCode, routing::get, Router};
use tokio::sync::Mutex;

/// One test at a time: the outcome counters and the active-requests gauge are the process's.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The recorder's text now.
fn scrape() -> String {
    let handle = ops::prometheus().expect("the demo's recorder is installed");
    handle.run_upkeep();
    handle.render()
}

/// The value of `name` whose labels are exactly `labels` (in any order); 0 if absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            (metric == name).then_some((set, value))
        })
        .find(|(set, _)| {
            let mut found: Vec<(&str, &str)> = set
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key, value.trim_matches('"')))
                })
                .collect();
            let mut wanted = labels.to_vec();
            found.sort_unstable();
            wanted.sort_unstable();
            found == wanted
        })
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

fn outcome(text: &str, outcome: &str) -> f64 {
    value(
        text,
        "async_mvc_request_outcome_total",
        &[("outcome", outcome)],
    )
}

fn active(text: &str) -> f64 {
    value(text, "http_server_active_requests", &[])
}

/// A router whose manager takes its handles after the recorder is installed.
fn observed(router: Router<()>, manager: AsyncManager) -> Router {
    router.async_support(manager)
}

fn manager() -> AsyncManager {
    ops::prometheus();
    AsyncManager::new(AsyncConfig::new())
}

/// Waits (at most 5 s) until `condition` holds on a fresh scrape.
async fn until(what: &str, condition: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape();
        if condition(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_long_poll_records_its_whole_wait_until_its_timeout() {
    let _one = SERIAL.lock().await;
    let app = observed(
        Router::new().route(
            "/m/poll/{id}",
            get(|| async {
                DeferredResult::<StatusCode>::with_timeout_result(
                    Duration::from_millis(300),
                    StatusCode::NOT_MODIFIED,
                )
            }),
        ),
        manager(),
    );
    let server = TestServer::start(app).await;
    let before = scrape();
    let answer = client().get(server.url("/m/poll/7")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/m/poll/{id}"),
        ("http_response_status_code", "304"),
        ("async_mvc_kind", "deferred"),
    ];
    let after = until("the poll recorded", |text| {
        value(text, "http_server_request_duration_seconds_count", &labels) == 1.0
    })
    .await;
    let seconds = value(&after, "http_server_request_duration_seconds_sum", &labels);
    assert!((0.3..0.35).contains(&seconds), "recorded {seconds} s");
    assert!(!after.contains("/m/poll/7"), "no raw path in any label");
    assert_eq!(
        outcome(&after, "timed_out") - outcome(&before, "timed_out"),
        1.0
    );
    let late = |text: &str| value(text, "async_mvc_timeout_lateness_seconds_count", &[]);
    assert_eq!(late(&after) - late(&before), 1.0);
    assert_eq!(active(&after), active(&before));
}

#[tokio::test]
async fn a_client_that_leaves_is_recorded_at_the_disconnect() {
    let _one = SERIAL.lock().await;
    let app = observed(
        Router::new().route(
            "/m/hang",
            get(|| async { DeferredResult::<String>::with_timeout(Duration::from_secs(30)) }),
        ),
        manager(),
    );
    let server = TestServer::start(app).await;
    let before = scrape();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(impatient.get(server.url("/m/hang")).send().await.is_err());
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/m/hang"),
        ("async_mvc_kind", "deferred"),
        ("error_type", "disconnected"),
    ];
    let after = until("the disconnect recorded", |text| {
        value(text, "http_server_request_duration_seconds_count", &labels) == 1.0
    })
    .await;
    let seconds = value(&after, "http_server_request_duration_seconds_sum", &labels);
    assert!((0.3..1.0).contains(&seconds), "recorded {seconds} s");
    assert_eq!(
        outcome(&after, "disconnected") - outcome(&before, "disconnected"),
        1.0
    );
    assert_eq!(active(&after), active(&before));
}

#[tokio::test]
async fn an_sse_stream_records_until_its_last_event() {
    let _one = SERIAL.lock().await;
    let app = observed(
        Router::new().route(
            "/m/sse",
            get(|| async {
                let emitter = SseEmitter::new();
                let sender = emitter.clone();
                tokio::spawn(async move {
                    for n in 1..=3 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        sender.send(&n).await.unwrap();
                    }
                    sender.complete();
                });
                emitter
            }),
        ),
        manager(),
    );
    let server = TestServer::start(app).await;
    let before = scrape();
    let body = client()
        .get(server.url("/m/sse"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "data:1\n\ndata:2\n\ndata:3\n\n");
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/m/sse"),
        ("http_response_status_code", "200"),
        ("async_mvc_kind", "sse"),
    ];
    let after = until("the stream recorded", |text| {
        value(text, "http_server_request_duration_seconds_count", &labels) == 1.0
    })
    .await;
    let seconds = value(&after, "http_server_request_duration_seconds_sum", &labels);
    assert!((0.3..1.0).contains(&seconds), "recorded {seconds} s");
    let events = |text: &str| value(text, "async_mvc_sse_events_total", &[]);
    let bytes = |text: &str| value(text, "async_mvc_sse_bytes_total", &[]);
    assert_eq!(events(&after) - events(&before), 3.0);
    assert_eq!(bytes(&after) - bytes(&before), 24.0);
    let open = |text: &str| value(text, "async_mvc_sse_subscribers", &[]);
    assert_eq!(open(&after), open(&before));
    assert_eq!(
        outcome(&after, "completed") - outcome(&before, "completed"),
        1.0
    );
}

#[tokio::test]
async fn a_full_executor_is_a_rejection_and_a_panic_an_error() {
    let _one = SERIAL.lock().await;
    ops::prometheus();
    let executor = AsyncTaskExecutor::builder()
        .core_pool_size(1)
        .max_pool_size(1)
        .queue_capacity(0)
        .thread_name_prefix("metrics-test-")
        .build()
        .unwrap();
    let app = observed(
        Router::new()
            .route(
                "/m/slow",
                get(|| async {
                    Callable::new(|| {
                        std::thread::sleep(Duration::from_millis(300));
                        "done"
                    })
                }),
            )
            .route(
                "/m/panic",
                get(|| async { Callable::new(|| -> &'static str { panic!("a bug") }) }),
            ),
        AsyncManager::new(AsyncConfig::new().task_executor(executor)),
    );
    let server = TestServer::start(app).await;
    let before = scrape();
    let http = client();
    let (first, second) = tokio::join!(http.get(server.url("/m/slow")).send(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        http.get(server.url("/m/slow")).send().await
    });
    assert_eq!(first.unwrap().status(), StatusCode::OK);
    assert_eq!(second.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let panicked = http.get(server.url("/m/panic")).send().await.unwrap();
    assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let rejected = [
        ("http_request_method", "GET"),
        ("http_route", "/m/slow"),
        ("http_response_status_code", "503"),
        ("async_mvc_kind", "callable"),
        ("error_type", "503"),
    ];
    let failed = [
        ("http_request_method", "GET"),
        ("http_route", "/m/panic"),
        ("http_response_status_code", "500"),
        ("async_mvc_kind", "callable"),
        ("error_type", "500"),
    ];
    let after = until("both recorded", |text| {
        value(
            text,
            "http_server_request_duration_seconds_count",
            &rejected,
        ) == 1.0
            && value(text, "http_server_request_duration_seconds_count", &failed) == 1.0
    })
    .await;
    assert_eq!(
        outcome(&after, "rejected") - outcome(&before, "rejected"),
        1.0
    );
    assert_eq!(outcome(&after, "error") - outcome(&before, "error"), 1.0);
    let name = [("name", "metrics-test")];
    assert_eq!(value(&after, "executor_rejected_total", &name), 1.0);
    assert_eq!(value(&after, "executor_active", &name), 0.0);
    assert_eq!(value(&after, "executor_queued", &name), 0.0);
}

#[tokio::test]
async fn a_storm_of_cut_long_polls_leaves_no_active_request() {
    let _one = SERIAL.lock().await;
    let manager = manager();
    let app = observed(
        Router::new().route(
            "/m/storm",
            get(|| async { DeferredResult::<String>::with_timeout(Duration::from_secs(30)) }),
        ),
        manager.clone(),
    );
    let server = TestServer::start(app).await;
    let before = scrape();
    let http = client();
    let polls: Vec<_> = (0..500)
        .map(|_| tokio::spawn(http.get(server.url("/m/storm")).send()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while manager.metrics().in_flight < 500 {
        assert!(Instant::now() < deadline, "{:?}", manager.metrics());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(active(&scrape()) - active(&before), 500.0);
    // Every client leaves at once.
    for poll in &polls {
        poll.abort();
    }
    drop(http);
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/m/storm"),
        ("async_mvc_kind", "deferred"),
        ("error_type", "disconnected"),
    ];
    let after = until("every cut poll recorded", |text| {
        value(text, "http_server_request_duration_seconds_count", &labels) == 500.0
    })
    .await;
    assert_eq!(active(&after), active(&before));
}

#[tokio::test]
async fn the_demo_serves_metrics_health_and_readiness() {
    let _one = SERIAL.lock().await;
    let desk = OrderDesk::new(DemoConfig::default());
    let server = TestServer::start(desk.router()).await;
    let http = client();
    let placed = http
        .post(server.url("/api/orders"))
        .json(&serde_json::json!({ "item": "kettle" }))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let id = placed.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = http
        .get(server.url(&format!("/api/orders/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    let scraped = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = scraped.text().await.unwrap();
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    let shown = [
        ("http_request_method", "GET"),
        ("http_route", "/api/orders/{id}"),
        ("http_response_status_code", "200"),
        ("async_mvc_kind", "sync"),
    ];
    assert!(value(&text, "http_server_request_duration_seconds_count", &shown) >= 1.0);
    assert!(
        !text.contains(&format!("/api/orders/{id}\"")),
        "no raw path in any label"
    );
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
}

#[tokio::test]
async fn a_value_set_before_the_handler_returned_is_still_a_deferred_result() {
    let _one = SERIAL.lock().await;
    let app = observed(
        Router::new()
            .route(
                "/m/early",
                get(|| async {
                    let result = DeferredResult::<&'static str>::new();
                    result.set_result("early");
                    result
                }),
            )
            .route("/m/plain", get(|| async { "plain" })),
        manager(),
    );
    let server = TestServer::start(app).await;
    for path in ["/m/early", "/m/plain"] {
        let answer = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let series = |route: &'static str, kind: &'static str| {
        [
            ("http_request_method", "GET"),
            ("http_route", route),
            ("http_response_status_code", "200"),
            ("async_mvc_kind", kind),
        ]
    };
    until("both recorded with their kinds", |text| {
        value(
            text,
            "http_server_request_duration_seconds_count",
            &series("/m/early", "deferred"),
        ) == 1.0
            && value(
                text,
                "http_server_request_duration_seconds_count",
                &series("/m/plain", "sync"),
            ) == 1.0
    })
    .await;
}

#[tokio::test]
async fn every_kind_of_return_value_has_its_label() {
    use async_mvc::{
        ReactiveFuture, ReactiveStream, ResponseBodyEmitter, StreamingResponseBody, WebAsyncTask,
    };
    use tokio::io::AsyncWriteExt;
    let _one = SERIAL.lock().await;
    let app = observed(
        Router::new()
            .route(
                "/m/kinds/task",
                get(|| async { WebAsyncTask::from_future(async { "task" }) }),
            )
            .route(
                "/m/kinds/future",
                get(|| async { ReactiveFuture::new(async { "future" }) }),
            )
            .route(
                "/m/kinds/stream",
                get(|| async { ReactiveStream::new(futures::stream::iter(["a", "b"])) }),
            )
            .route(
                "/m/kinds/emitter",
                get(|| async {
                    let emitter = ResponseBodyEmitter::new();
                    let sender = emitter.clone();
                    tokio::spawn(async move {
                        sender.send_bytes("chunk").await.unwrap();
                        sender.complete();
                    });
                    emitter
                }),
            )
            .route(
                "/m/kinds/download",
                get(|| async {
                    StreamingResponseBody::new(|mut out| async move {
                        out.write_all(b"bytes").await?;
                        out.shutdown().await
                    })
                }),
            ),
        manager(),
    );
    let server = TestServer::start(app).await;
    let routes = [
        ("/m/kinds/task", "task"),
        ("/m/kinds/future", "reactive"),
        ("/m/kinds/stream", "reactive"),
        ("/m/kinds/emitter", "emitter"),
        ("/m/kinds/download", "streaming"),
    ];
    for (route, _) in routes {
        let answer = client().get(server.url(route)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{route}");
        answer.bytes().await.unwrap();
    }
    until("each kind recorded", |text| {
        routes.iter().all(|(route, kind)| {
            value(
                text,
                "http_server_request_duration_seconds_count",
                &[
                    ("http_request_method", "GET"),
                    ("http_route", route),
                    ("http_response_status_code", "200"),
                    ("async_mvc_kind", kind),
                ],
            ) == 1.0
        })
    })
    .await;
}
