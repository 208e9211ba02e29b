//! Runs `N` requests to `GET /w1` (`/w3`, `/w5` in the modes named for them), for instruction counts under `valgrind --tool=callgrind`:
//!
//! ```text
//! per_request baseline|async-mvc|layer|controller|noop-layer|w5-baseline|w5-async-mvc|w5-floor|timeout-baseline|timeout-async-mvc N [router|http|serve]
//! ```
//!
//! `noop-layer` is the baseline's handler under a layer that does nothing but hold state (an
//! `Arc`), as any middleware with settings does: the floor axum's per-route layering sets for
//! a layer such as `async_support`. `w5-floor` is W5's baseline with what a `Callable` cannot
//! go without: a timeout (`tokio::time::timeout`, 30 s as the manager's default) and such a
//! layer. `timeout-baseline` and `timeout-async-mvc` are W3's path with a 1 ms timeout: a
//! oneshot under `tokio::time::timeout`, and a `DeferredResult::with_timeout` nobody sets,
//! each answered by its timeout with the same `503` and text body.
//!
//! `layer` is the baseline's plain handler under `async_support`: what the layer alone costs;
//! `controller` is the same plain handler as an `#[async_controller]` method; the `w5-` modes
//! send W5's `GET /w5` to the benchmark's own servers.
//!
//! Built with `--features metrics`, async-mvc measures every request into an installed
//! Prometheus recorder (`metrics-exporter-prometheus`): what its metrics cost.
//!
//! `router` (the default) drives the router in process with `oneshot`; `http` serves it on
//! 127.0.0.1 with `axum::serve` and sends the requests over one keep-alive hyper connection,
//! both in this one thread; `serve` does the same with `async_mvc::serve` (its keep-alive request
//! limit lifted, so the one connection carries every request). Run it with two values of `N`: the difference of the totals divided
//! by the difference of `N` is the cost of one request, without the start-up.

use std::future::IntoFuture;

use async_mvc::prelude::*;
use axum::{body::Body, http::Request, routing::get, Router};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // With `--features metrics`: async-mvc's metrics into a Prometheus recorder, as the demo.
    #[cfg(feature = "metrics")]
    let _prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let mut args = std::env::args().skip(1);
    let mode = args.next();
    let mut path = "/w1";
    let router = match mode.as_deref() {
        Some("w5-baseline") => {
            path = "/w5";
            async_mvc_bench::apps::app(async_mvc_bench::apps::Impl::Baseline).0
        }
        Some("w5-async-mvc") => {
            path = "/w5";
            async_mvc_bench::apps::app(async_mvc_bench::apps::Impl::AsyncMvc).0
        }
        Some("baseline") => Router::new().route("/w1", get(plain)),
        Some("timeout-baseline") => {
            path = "/w3";
            Router::new().route("/w3", get(timeout_baseline))
        }
        Some("timeout-async-mvc") => {
            path = "/w3";
            Router::new()
                .route("/w3", get(timeout_async_mvc))
                .async_support(AsyncConfig::new())
        }
        Some("noop-layer") => Router::new().route("/w1", get(plain)).layer(noop_layer()),
        Some("w5-floor") => {
            path = "/w5";
            Router::new()
                .route("/w5", get(w5_with_timeout))
                .layer(noop_layer())
        }
        Some("controller") => Router::new()
            .controller(Hello)
            .async_support(AsyncConfig::new()),
        Some("layer") => Router::new()
            .route("/w1", get(plain))
            .async_support(AsyncConfig::new()),
        _ => Router::new()
            .route("/w1", get(deferred))
            .async_support(AsyncConfig::new()),
    };
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let transport = args.next();
    let over_http = matches!(transport.as_deref(), Some("http" | "serve"));
    let async_mvc_serve = transport.as_deref() == Some("serve");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if over_http {
            http(router, n, path, async_mvc_serve).await
        } else {
            in_process(router, n, path).await
        }
    })
}

/// The plain handler as a controller method.
struct Hello;

#[async_controller]
impl Hello {
    #[get("/w1")]
    fn hello(&self) -> &'static str {
        async_mvc_bench::apps::HELLO
    }
}

/// W1's baseline handler.
async fn plain() -> &'static str {
    async_mvc_bench::apps::HELLO
}

/// W1's async-mvc handler.
async fn deferred() -> DeferredResult<&'static str> {
    let result = DeferredResult::new();
    result.set_result(async_mvc_bench::apps::HELLO);
    result
}

/// W3's timeout in `timeout-*` modes.
const TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1);

/// W3's baseline handler, with [`TIMEOUT`].
async fn timeout_baseline() -> axum::response::Response {
    use axum::response::IntoResponse;
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let outcome = tokio::time::timeout(TIMEOUT, rx).await;
    drop(tx);
    match outcome {
        Ok(Ok(body)) => body.into_response(),
        // async-mvc's timeout response, byte for byte (as the bench's W3 baseline).
        _ => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("async request timed out after {} ms", TIMEOUT.as_millis()),
        )
            .into_response(),
    }
}

/// W3's async-mvc handler, with [`TIMEOUT`].
async fn timeout_async_mvc() -> DeferredResult<String> {
    DeferredResult::with_timeout(TIMEOUT)
}

/// A layer that holds state and does nothing with it.
fn noop_layer() -> tower::util::MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone> {
    let state = std::sync::Arc::new(());
    tower::util::MapRequestLayer::new(move |request| {
        let _ = &state;
        request
    })
}

/// W5's baseline handler with a timeout.
async fn w5_with_timeout() -> axum::response::Response {
    use axum::response::IntoResponse;
    let work = tokio::task::spawn_blocking(|| {
        std::thread::sleep(async_mvc_bench::apps::W5_WORK);
        "done"
    });
    match tokio::time::timeout(std::time::Duration::from_secs(30), work).await {
        Ok(Ok(body)) => body.into_response(),
        _ => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn in_process(router: Router, n: u64, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..n {
        let request = Request::get(path).body(Body::empty())?;
        let Ok(response) = router.clone().oneshot(request).await;
        response.into_body().collect().await?;
    }
    Ok(())
}

async fn http(
    router: Router,
    n: u64,
    path: &str,
    async_mvc_serve: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    if async_mvc_serve {
        let serve = async_mvc::serve(listener, router).max_keep_alive_requests(u64::MAX);
        tokio::spawn(serve.into_future());
    } else {
        tokio::spawn(async move { axum::serve(listener, router).await });
    }
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    for _ in 0..n {
        let request = Request::get(path)
            .header("host", "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        // The `timeout-*` modes are answered `503` by their timeout.
        let expected = response.status().is_success()
            || (path == "/w3" && response.status() == http::StatusCode::SERVICE_UNAVAILABLE);
        if !expected {
            return Err(format!("status {}", response.status()).into());
        }
        response.into_body().collect().await?;
    }
    Ok(())
}
