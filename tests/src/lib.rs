//! Shared helpers for async-mvc's end-to-end tests: a real server on `127.0.0.1:0`, a real
//! client, and bounded waits.

pub mod cluster;
pub mod faulty;
pub mod redis;

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::Router;
use tokio::{net::TcpListener, task::JoinHandle};

/// How long any single wait in a test may take before the test fails instead of hanging.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A server running `router` on a loopback port chosen by the OS. Aborted on drop.
#[derive(Debug)]
pub struct TestServer {
    /// The address the server listens on.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and serves `router` in a background task.
    pub async fn start(router: Router) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        TestServer { addr, task }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client whose every request gives up after [`WAIT_LIMIT`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT_LIMIT)
        .build()
        .expect("build reqwest client")
}

/// Polls `condition` every 5 ms until it holds; panics after [`WAIT_LIMIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Awaits `future`, failing the test after [`WAIT_LIMIT`] instead of hanging.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT_LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
