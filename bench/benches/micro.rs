//! Micro-benchmarks (criterion): `cargo bench -p async-mvc-bench --bench micro`.
//!
//! - `sse_encode`: building an encoded SSE event, small and 4 KiB multi-line, against axum's
//!   `sse::Event` (which also encodes when built); bytes/s.
//! - `deferred_result`: a `DeferredResult` created, set and awaited through a router `oneshot`
//!   (set at once, and set by another task), against a plain handler and a oneshot channel.
//! - `handler`: a `#[async_controller]` route against the same hand-written axum handler.
#![allow(missing_docs)] // criterion's macros generate undocumented public functions

use std::{sync::Arc, time::Duration};

use async_mvc::prelude::*;
use axum::{
    body::Body,
    extract::State,
    http::{Request, StatusCode},
    response::{sse, IntoResponse, Response},
    routing::get as axum_get,
    Router,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tower::ServiceExt;

fn sse_encode(c: &mut Criterion) {
    let small = "{\"seq\":42,\"price\":\"101.25\",\"symbol\":\"ACME\"}";
    let line = "0123456789abcdef".repeat(4); // 64 bytes
    let big: String = (0..64)
        .map(|_| line.as_str())
        .collect::<Vec<_>>()
        .join("\n"); // ~4 KiB
    let mut group = c.benchmark_group("sse_encode");
    for (name, text) in [("small", small), ("4KiB_multiline", big.as_str())] {
        let encoded = SseEvent::data(text).bytes().len() as u64;
        group.throughput(Throughput::Bytes(encoded));
        group.bench_with_input(BenchmarkId::new("async-mvc data", name), text, |b, text| {
            b.iter(|| SseEvent::data(std::hint::black_box(text)))
        });
        group.bench_with_input(
            BenchmarkId::new("async-mvc builder id+event+data", name),
            text,
            |b, text| {
                b.iter(|| {
                    SseEvent::builder()
                        .id("42")
                        .event("price")
                        .data(std::hint::black_box(text))
                        .build()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("axum Event data", name),
            text,
            |b, text| b.iter(|| sse::Event::default().data(std::hint::black_box(text))),
        );
    }
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn call(router: &Router, path: &'static str) -> StatusCode {
    let request = Request::get(path).body(Body::empty()).expect("a request");
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

fn deferred_result(c: &mut Criterion) {
    let rt = runtime();
    let plain = Router::new().route("/", axum_get(|| async { "hello" }));
    let oneshot_set_later = Router::new().route(
        "/",
        axum_get(|| async {
            let (tx, rx) = oneshot::channel::<&'static str>();
            tokio::spawn(async move { tx.send("hello") });
            match tokio::time::timeout(Duration::from_secs(30), rx).await {
                Ok(Ok(body)) => body.into_response(),
                _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }),
    );
    let deferred_set_at_once = Router::new()
        .route(
            "/",
            axum_get(|| async {
                let result = DeferredResult::<&'static str>::new();
                result.set_result("hello");
                result
            }),
        )
        .async_support(AsyncConfig::new());
    let deferred_set_later = Router::new()
        .route(
            "/",
            axum_get(|| async {
                let result = DeferredResult::<&'static str>::new();
                let setter = result.clone();
                tokio::spawn(async move { setter.set_result("hello") });
                result
            }),
        )
        .async_support(AsyncConfig::new());

    let mut group = c.benchmark_group("deferred_result");
    for (name, router) in [
        ("baseline plain handler", &plain),
        ("async-mvc set at once", &deferred_set_at_once),
        ("baseline oneshot set by a task", &oneshot_set_later),
        ("async-mvc set by a task", &deferred_set_later),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| call(router, "/"));
        });
    }
    group.finish();
}

#[derive(Debug, Default)]
struct Greeter {
    greeting: String,
}

#[async_controller]
impl Greeter {
    #[get("/hello")]
    fn hello(&self) -> String {
        self.greeting.clone()
    }
}

async fn hand_written(State(greeter): State<Arc<Greeter>>) -> Response {
    greeter.greeting.clone().into_response()
}

fn handler(c: &mut Criterion) {
    let rt = runtime();
    let greeter = || Greeter {
        greeting: "hello".to_owned(),
    };
    let generated = Router::new()
        .controller(greeter())
        .async_support(AsyncConfig::new());
    let hand = Router::new()
        .route("/hello", axum_get(hand_written))
        .with_state(Arc::new(greeter()));
    let hand_with_layer = Router::new()
        .route("/hello", axum_get(hand_written))
        .with_state(Arc::new(greeter()))
        .async_support(AsyncConfig::new());
    let mut group = c.benchmark_group("handler");
    for (name, router) in [
        ("hand-written axum", &hand),
        ("hand-written + async_support layer", &hand_with_layer),
        ("#[async_controller]", &generated),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| call(router, "/hello"));
        });
    }
    group.finish();
}

criterion_group!(benches, sse_encode, deferred_result, handler);
criterion_main!(benches);
