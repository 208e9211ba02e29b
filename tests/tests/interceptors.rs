//! The processing interceptors' call sequences, asserted against Spring's order (checklist
//! C.40–C.52, D.60–D.64, E.71–E.75) for success, timeout, error, rejection and client
//! disconnect, for both `Callable` and `DeferredResult`.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test
#![allow(clippy::result_large_err)] // hooks fail with a `Response`, as in axum

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_mvc::{
    AsyncConfig, AsyncError, AsyncHandlerInterceptor, AsyncManager, AsyncRequest,
    AsyncTaskExecutor, Callable, CallableProcessingInterceptor, DeferredResult,
    DeferredResultProcessingInterceptor, HookResult, RouterExt, WebAsyncTask,
};
use async_mvc_tests::{client, eventually, TestServer};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tokio::io::AsyncWriteExt;

type Log = Arc<Mutex<Vec<String>>>;

fn log_of(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Records every hook as `NAME.hook`; optionally fails one of them.
struct Recorder {
    name: &'static str,
    log: Log,
    fail: Option<&'static str>,
    /// The hook that panics (after recording itself): `timeout`, `error` or `completion`.
    panic: Option<&'static str>,
}

impl Recorder {
    fn new(name: &'static str, log: &Log) -> Self {
        Recorder {
            name,
            log: log.clone(),
            fail: None,
            panic: None,
        }
    }
    fn failing(name: &'static str, log: &Log, hook: &'static str) -> Self {
        Recorder {
            fail: Some(hook),
            ..Recorder::new(name, log)
        }
    }
    fn panicking(name: &'static str, log: &Log, hook: &'static str) -> Self {
        Recorder {
            panic: Some(hook),
            ..Recorder::new(name, log)
        }
    }
    fn maybe_panic(&self, hook: &'static str) {
        if self.panic == Some(hook) {
            panic!("{} panics in {hook}", self.name);
        }
    }
    fn record(&self, entry: String) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}.{entry}", self.name));
    }
    /// Logs `hook`; fails with `403 "NAME refused in HOOK"` if this recorder fails there.
    fn hook(&self, hook: &'static str) -> HookResult {
        self.record(hook.to_owned());
        self.outcome(hook)
    }
    fn outcome(&self, hook: &'static str) -> HookResult {
        match self.fail {
            Some(failing) if failing == hook => Err((
                StatusCode::FORBIDDEN,
                format!("{} refused in {hook}", self.name),
            )
                .into_response()),
            _ => Ok(()),
        }
    }
    fn post(&self, result: Result<&Response, &AsyncError>) -> HookResult {
        self.record(format!("post({})", describe(result)));
        self.outcome("post")
    }
    /// Logs `timeout`; supplies `202 "NAME timeout value"` if this recorder "fails" there.
    fn timeout(&self) -> Option<Response> {
        self.record("timeout".into());
        self.maybe_panic("timeout");
        (self.fail == Some("timeout"))
            .then(|| (StatusCode::ACCEPTED, format!("{} timeout value", self.name)).into_response())
    }
}

fn describe(result: Result<&Response, &AsyncError>) -> String {
    match result {
        Ok(response) => response.status().as_u16().to_string(),
        Err(error) => format!("error({error})"),
    }
}

impl CallableProcessingInterceptor for Recorder {
    fn before_concurrent_handling(&self, request: &AsyncRequest) -> HookResult {
        assert_eq!(request.method(), "GET");
        self.hook("before")
    }
    fn pre_process(&self, _: &AsyncRequest) -> HookResult {
        self.hook("pre")
    }
    fn post_process(&self, _: &AsyncRequest, result: Result<&Response, &AsyncError>) -> HookResult {
        self.post(result)
    }
    fn handle_timeout(&self, _: &AsyncRequest) -> Option<Response> {
        self.timeout()
    }
    fn handle_error(&self, _: &AsyncRequest, error: &AsyncError) -> Option<Response> {
        self.record(format!("error({error})"));
        self.maybe_panic("error");
        None
    }
    fn after_completion(&self, _: &AsyncRequest) {
        self.record("completion".into());
        self.maybe_panic("completion");
    }
}

impl DeferredResultProcessingInterceptor for Recorder {
    fn before_concurrent_handling(&self, _: &AsyncRequest) -> HookResult {
        self.hook("before")
    }
    fn pre_process(&self, _: &AsyncRequest) -> HookResult {
        self.hook("pre")
    }
    fn post_process(&self, _: &AsyncRequest, result: Result<&Response, &AsyncError>) -> HookResult {
        self.post(result)
    }
    fn handle_timeout(&self, _: &AsyncRequest) -> Option<Response> {
        self.timeout()
    }
    fn handle_error(&self, _: &AsyncRequest, error: &AsyncError) {
        self.record(format!("error({error})"));
        self.maybe_panic("error");
    }
    fn after_completion(&self, _: &AsyncRequest) {
        self.record("completion".into());
        self.maybe_panic("completion");
    }
}

struct Started(Log);
impl AsyncHandlerInterceptor for Started {
    fn after_concurrent_handling_started(&self, request: &AsyncRequest) {
        self.0
            .lock()
            .unwrap()
            .push(format!("started {}", request.path()));
    }
}

const DISCONNECTED: &str = "the client disconnected before the async result was sent";

// ---------------------------------------------------------------- Callable

fn callable_app(
    log: &Log,
    a: Recorder,
    b: Recorder,
    executor: AsyncTaskExecutor,
) -> (Router, AsyncManager) {
    let manager = AsyncManager::new(
        AsyncConfig::new()
            .task_executor(executor)
            .callable_interceptor(a)
            .callable_interceptor(b)
            .handler_interceptor(Started(log.clone())),
    );
    let on_completion = |log: &Log| {
        let log = log.clone();
        move || log.lock().unwrap().push("task.on_completion".into())
    };
    let app = Router::new()
        .route(
            "/ok",
            get({
                let c = on_completion(log);
                move || async move { WebAsyncTask::new(|| "value").on_completion(c) }
            }),
        )
        .route(
            "/panic",
            get({
                let c = on_completion(log);
                move || async move {
                    WebAsyncTask::new(|| -> &'static str { panic!("bug") }).on_completion(c)
                }
            }),
        )
        .route(
            "/slow",
            get({
                let (c, log) = (on_completion(log), log.clone());
                move || async move {
                    WebAsyncTask::cancellable(move |token| linger_until_completed(&token, &log))
                        .timeout(Duration::from_millis(50))
                        .on_completion(c)
                }
            }),
        )
        .route(
            "/hold",
            get({
                let (c, log) = (on_completion(log), log.clone());
                move || async move {
                    WebAsyncTask::cancellable(move |token| linger_until_completed(&token, &log))
                        .timeout(Duration::from_secs(60))
                        .on_completion(c)
                }
            }),
        )
        .async_support(manager.clone());
    (app, manager)
}

/// A blocking task that works until cancelled, then returns only once its request has completed,
/// so that its late `post_process` comes after every request-side hook.
fn linger_until_completed(token: &async_mvc::CancellationToken, log: &Log) -> &'static str {
    let deadline = std::time::Instant::now() + async_mvc_tests::WAIT_LIMIT;
    while !token.is_cancelled() || !log_of(log).contains(&"task.on_completion".to_owned()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never completed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    "late"
}

fn pool(max: usize, queue: usize) -> AsyncTaskExecutor {
    AsyncTaskExecutor::builder()
        .core_pool_size(max)
        .max_pool_size(max)
        .queue_capacity(queue)
        .build()
        .unwrap()
}

#[tokio::test]
async fn callable_success_sequence() {
    let log = Log::default();
    let (app, _) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "value");
    eventually("completion", || {
        log_of(&log).contains(&"task.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /ok",
            "A.pre",
            "B.pre",
            "B.post(200)",
            "A.post(200)",
            "B.completion",
            "A.completion",
            "task.on_completion"
        ]
    );
}

#[tokio::test]
async fn callable_error_sequence_post_sees_the_panic() {
    let log = Log::default();
    let (app, _) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/panic")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    eventually("completion", || {
        log_of(&log).contains(&"task.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /panic",
            "A.pre",
            "B.pre",
            "B.post(error(the async task panicked: bug))",
            "A.post(error(the async task panicked: bug))",
            "B.completion",
            "A.completion",
            "task.on_completion"
        ]
    );
}

#[tokio::test]
async fn callable_timeout_sequence_and_the_late_post() {
    let log = Log::default();
    let (app, _) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/slow")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The cancelled task returns later on its thread; its post hooks still run (B.31).
    eventually("late post", || log_of(&log).len() == 12).await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /slow",
            "A.pre",
            "B.pre",
            "A.timeout",
            "B.timeout",
            "B.completion",
            "A.completion",
            "task.on_completion",
            "B.post(200)",
            "A.post(200)"
        ]
    );
}

#[tokio::test]
async fn callable_timeout_value_from_the_first_interceptor_that_gives_one() {
    let log = Log::default();
    let (app, _) = callable_app(
        &log,
        Recorder::failing("A", &log, "timeout"),
        Recorder::new("B", &log),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/slow")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.text().await.unwrap(), "A timeout value");
    eventually("completion", || {
        log_of(&log).contains(&"task.on_completion".to_owned())
    })
    .await;
    assert!(
        !log_of(&log).contains(&"B.timeout".to_owned()),
        "{:?}",
        log_of(&log)
    );
}

#[tokio::test]
async fn callable_rejection_sequence() {
    let log = Log::default();
    // One thread, no queue: a held task occupies it, so the next request is rejected.
    let (app, manager) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        pool(1, 0),
    );
    let server = TestServer::start(app).await;
    let http = client();
    let hold = tokio::spawn(http.get(server.url("/hold")).send());
    eventually("the held task runs", || {
        log_of(&log).contains(&"B.pre".to_owned())
    })
    .await;

    let rejected = http.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "1");
    let busy = "error(the async task executor is busy; retry after 1000 ms)";
    assert_eq!(
        log_of(&log)[5..],
        [
            "A.before",
            "B.before",
            "started /ok",
            &format!("A.{busy}"),
            &format!("B.{busy}"),
            "B.completion",
            "A.completion",
            "task.on_completion"
        ]
    );
    assert_eq!(manager.metrics().rejected, 1);
    hold.abort();
}

#[tokio::test]
async fn callable_disconnect_sequence() {
    let log = Log::default();
    let (app, manager) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        pool(2, 2),
    );
    let manager_check = manager.clone();
    let server = TestServer::start(app).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The held task's 60 s timeout cannot fire first: only the disconnect ends it.
    socket
        .write_all(b"GET /hold HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    eventually("the task runs", || {
        log_of(&log).contains(&"B.pre".to_owned())
    })
    .await;
    drop(socket);
    eventually("late post", || log_of(&log).len() == 12).await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /hold",
            "A.pre",
            "B.pre",
            &format!("A.error({DISCONNECTED})"),
            &format!("B.error({DISCONNECTED})"),
            "B.completion",
            "A.completion",
            "task.on_completion",
            "B.post(200)",
            "A.post(200)"
        ]
    );
    assert_eq!(manager_check.metrics().disconnected, 1);
}

#[tokio::test]
async fn callable_before_and_pre_failures() {
    let log = Log::default();
    let (app, _) = callable_app(
        &log,
        Recorder::failing("A", &log, "before"),
        Recorder::new("B", &log),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "A refused in before");
    assert_eq!(log_of(&log), ["A.before", "task.on_completion"]);

    let log = Log::default();
    let (app, _) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::failing("B", &log, "pre"),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "B refused in pre");
    eventually("completion", || {
        log_of(&log).contains(&"task.on_completion".to_owned())
    })
    .await;
    // The task is skipped; only A (whose pre succeeded) gets post, with B's response.
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /ok",
            "A.pre",
            "B.pre",
            "A.post(403)",
            "B.completion",
            "A.completion",
            "task.on_completion"
        ]
    );
}

// ---------------------------------------------------------------- DeferredResult

struct DeferredApp {
    server: TestServer,
    manager: AsyncManager,
    results: Arc<Mutex<Vec<DeferredResult<String, Response>>>>,
}

async fn deferred_app(log: &Log, a: Recorder, b: Recorder, timeout: Duration) -> DeferredApp {
    let manager = AsyncManager::new(
        AsyncConfig::new()
            .default_timeout(timeout)
            .deferred_result_interceptor(a)
            .deferred_result_interceptor(b)
            .handler_interceptor(Started(log.clone())),
    );
    let results = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/poll",
            get({
                let (log, results) = (log.clone(), results.clone());
                move || async move {
                    let result = DeferredResult::<String, Response>::new();
                    let (on_error, on_done) = (log.clone(), log.clone());
                    result.on_error(move |e| {
                        on_error
                            .lock()
                            .unwrap()
                            .push(format!("result.on_error({e})"))
                    });
                    result.on_completion(move || {
                        on_done.lock().unwrap().push("result.on_completion".into())
                    });
                    results.lock().unwrap().push(result.clone());
                    result
                }
            }),
        )
        .async_support(manager.clone());
    DeferredApp {
        server: TestServer::start(app).await,
        manager,
        results,
    }
}

impl DeferredApp {
    async fn pending_result(&self) -> DeferredResult<String, Response> {
        eventually("the poll is pending", || {
            self.manager.metrics().in_flight == 1
        })
        .await;
        self.results.lock().unwrap()[0].clone()
    }
}

#[tokio::test]
async fn deferred_success_sequence() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        Duration::from_secs(10),
    )
    .await;
    let poll = tokio::spawn(client().get(app.server.url("/poll")).send());
    app.pending_result().await.set_result("value".into());
    assert_eq!(poll.await.unwrap().unwrap().text().await.unwrap(), "value");
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /poll",
            "A.pre",
            "B.pre",
            "B.post(200)",
            "A.post(200)",
            "B.completion",
            "A.completion",
            "result.on_completion"
        ]
    );
}

#[tokio::test]
async fn deferred_error_result_sequence() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        Duration::from_secs(10),
    )
    .await;
    let poll = tokio::spawn(client().get(app.server.url("/poll")).send());
    app.pending_result()
        .await
        .set_error_result(StatusCode::CONFLICT.into_response());
    assert_eq!(poll.await.unwrap().unwrap().status(), StatusCode::CONFLICT);
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /poll",
            "A.pre",
            "B.pre",
            "B.post(409)",
            "A.post(409)",
            "B.completion",
            "A.completion",
            "result.on_completion"
        ]
    );
}

#[tokio::test]
async fn deferred_post_failure_replaces_the_result_and_skips_the_rest() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::new("A", &log),
        Recorder::failing("B", &log, "post"),
        Duration::from_secs(10),
    )
    .await;
    let poll = tokio::spawn(client().get(app.server.url("/poll")).send());
    app.pending_result().await.set_result("value".into());
    let response = poll.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "B refused in post");
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert!(
        !log_of(&log).iter().any(|e| e.starts_with("A.post")),
        "{:?}",
        log_of(&log)
    );
}

#[tokio::test]
async fn deferred_timeout_sequence() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        Duration::from_millis(50),
    )
    .await;
    let response = client().get(app.server.url("/poll")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    let timeout = "error(async request timed out after 50 ms)";
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /poll",
            "A.pre",
            "B.pre",
            "A.timeout",
            "B.timeout",
            &format!("B.post({timeout})"),
            &format!("A.post({timeout})"),
            "B.completion",
            "A.completion",
            "result.on_completion"
        ]
    );
}

#[tokio::test]
async fn deferred_timeout_value_from_an_interceptor() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::failing("A", &log, "timeout"),
        Recorder::new("B", &log),
        Duration::from_millis(50),
    )
    .await;
    let response = client().get(app.server.url("/poll")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.text().await.unwrap(), "A timeout value");
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert!(!log_of(&log).contains(&"B.timeout".to_owned()));
}

#[tokio::test]
async fn deferred_rejection_in_before_concurrent_handling() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::new("A", &log),
        Recorder::failing("B", &log, "before"),
        Duration::from_secs(10),
    )
    .await;
    let response = client().get(app.server.url("/poll")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "B refused in before");
    // Async never started: no pre, post or completion hooks; the result expired.
    assert_eq!(
        log_of(&log),
        ["A.before", "B.before", "result.on_completion"]
    );
    assert!(app.results.lock().unwrap()[0].is_set_or_expired());
    assert_eq!(app.manager.metrics().in_flight, 0);
}

#[tokio::test]
async fn deferred_disconnect_sequence() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::new("A", &log),
        Recorder::new("B", &log),
        Duration::from_secs(10),
    )
    .await;
    let mut socket = tokio::net::TcpStream::connect(app.server.addr)
        .await
        .unwrap();
    socket
        .write_all(b"GET /poll HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let result = app.pending_result().await;
    drop(socket);
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /poll",
            "A.pre",
            "B.pre",
            &format!("result.on_error({DISCONNECTED})"),
            &format!("A.error({DISCONNECTED})"),
            &format!("B.error({DISCONNECTED})"),
            "B.completion",
            "A.completion",
            "result.on_completion"
        ]
    );
    assert!(!result.set_result("too late".into()));
    assert_eq!(app.manager.metrics().disconnected, 1);
}

#[tokio::test]
async fn callable_from_a_future_runs_pre_and_post_inline() {
    let log = Log::default();
    let manager =
        AsyncManager::new(AsyncConfig::new().callable_interceptor(Recorder::new("A", &log)));
    let app = Router::new()
        .route(
            "/",
            get(|| async { Callable::from_future(async { "async value" }) }),
        )
        .async_support(manager);
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "async value");
    eventually("completion", || {
        log_of(&log).contains(&"A.completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        ["A.before", "A.pre", "A.post(200)", "A.completion"]
    );
}

// ---------------------------------------------------------------- panicking hooks

#[tokio::test]
async fn callable_panicking_handle_timeout_is_500_and_every_completion_runs() {
    let log = Log::default();
    let (app, manager) = callable_app(
        &log,
        Recorder::panicking("A", &log, "timeout"),
        Recorder::failing("B", &log, "timeout"),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/slow")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    eventually("completion", || {
        log_of(&log).contains(&"task.on_completion".to_owned())
    })
    .await;
    let log = log_of(&log);
    // The panic is the result: B's timeout value is never asked for.
    assert!(!log.contains(&"B.timeout".to_owned()), "{log:?}");
    let at = log.iter().position(|e| e == "A.timeout").unwrap();
    assert_eq!(
        log[at..at + 4],
        [
            "A.timeout",
            "B.completion",
            "A.completion",
            "task.on_completion"
        ]
    );
    assert_eq!(manager.metrics().timed_out, 1);
}

#[tokio::test]
async fn callable_panicking_handle_error_on_rejection_is_500() {
    let log = Log::default();
    let (app, manager) = callable_app(
        &log,
        Recorder::panicking("A", &log, "error"),
        Recorder::new("B", &log),
        pool(1, 0),
    );
    let server = TestServer::start(app).await;
    let http = client();
    let hold = tokio::spawn(http.get(server.url("/hold")).send());
    eventually("the held task runs", || {
        log_of(&log).contains(&"B.pre".to_owned())
    })
    .await;

    let rejected = http.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(rejected.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(rejected.headers().get("retry-after").is_none());
    let busy = "error(the async task executor is busy; retry after 1000 ms)";
    assert_eq!(
        log_of(&log)[5..],
        [
            "A.before",
            "B.before",
            "started /ok",
            &format!("A.{busy}"),
            "B.completion",
            "A.completion",
            "task.on_completion"
        ]
    );
    assert_eq!(manager.metrics().rejected, 1);
    hold.abort();
}

#[tokio::test]
async fn callable_panicking_after_completion_leaves_the_response_and_the_rest_of_the_chain() {
    let log = Log::default();
    let (app, manager) = callable_app(
        &log,
        Recorder::new("A", &log),
        Recorder::panicking("B", &log, "completion"),
        pool(2, 2),
    );
    let server = TestServer::start(app).await;
    let response = client().get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "value");
    eventually("completion", || {
        log_of(&log).contains(&"task.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log)[7..],
        ["B.completion", "A.completion", "task.on_completion"]
    );
    assert_eq!(manager.metrics().in_flight, 0);
}

#[tokio::test]
async fn deferred_panicking_handle_timeout_is_500_through_post_process() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::panicking("A", &log, "timeout"),
        Recorder::failing("B", &log, "timeout"),
        Duration::from_millis(50),
    )
    .await;
    let response = client().get(app.server.url("/poll")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "A.before",
            "B.before",
            "started /poll",
            "A.pre",
            "B.pre",
            "A.timeout",
            "B.post(500)",
            "A.post(500)",
            "B.completion",
            "A.completion",
            "result.on_completion"
        ]
    );
}

#[tokio::test]
async fn deferred_panicking_after_completion_still_runs_the_others_and_on_completion() {
    let log = Log::default();
    let app = deferred_app(
        &log,
        Recorder::panicking("A", &log, "completion"),
        Recorder::panicking("B", &log, "completion"),
        Duration::from_secs(10),
    )
    .await;
    let request = tokio::spawn(client().get(app.server.url("/poll")).send());
    app.pending_result().await.set_result("done".into());
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "done");
    eventually("completion", || {
        log_of(&log).contains(&"result.on_completion".to_owned())
    })
    .await;
    assert_eq!(
        log_of(&log)[7..],
        ["B.completion", "A.completion", "result.on_completion"]
    );
}

#[tokio::test]
async fn panicking_timeout_callbacks_are_500() {
    let manager = AsyncManager::new(AsyncConfig::new().default_timeout(Duration::from_millis(30)));
    let app = Router::new()
        .route(
            "/task",
            get(|| async {
                WebAsyncTask::cancellable(|token| {
                    while !token.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    "late"
                })
                .on_timeout(|| -> &'static str { panic!("on_timeout bug") })
            }),
        )
        .route(
            "/deferred",
            get(|| async {
                let result = DeferredResult::<String>::new();
                result.on_timeout(|| panic!("on_timeout bug"));
                result
            }),
        )
        .route(
            "/deferred-with-timeout-result",
            get(|| async {
                // Spring sets the timeout result in `finally`: it wins over the panic.
                let result = DeferredResult::<String>::with_timeout_result(
                    Duration::from_millis(30),
                    "fallback".into(),
                );
                result.on_timeout(|| panic!("on_timeout bug"));
                result
            }),
        )
        .route(
            "/supplier",
            get(|| async {
                DeferredResult::<String>::with_timeout_result_fn(Duration::from_millis(30), || {
                    panic!("supplier bug")
                })
            }),
        )
        .async_support(manager.clone());
    let server = TestServer::start(app).await;
    let http = client();
    for path in ["/task", "/deferred", "/supplier"] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
    }
    let kept = http
        .get(server.url("/deferred-with-timeout-result"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(kept.text().await.unwrap(), "fallback");
    eventually("all settled", || manager.metrics().in_flight == 0).await;
    assert_eq!(manager.metrics().timed_out, 4);
}
