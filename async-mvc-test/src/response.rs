//! [`TestResponse`] and [`Pending`]: a response, whole; a request still in progress.

use async_mvc::AsyncManager;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// A whole response: status, headers and the exact body bytes.
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl TestResponse {
    pub(crate) fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of header `name` as text, if it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body's bytes, exactly.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as UTF-8 text (invalid bytes replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// If it is not JSON of that shape (the test's assertion, with the body in the message).
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "the body is not the JSON expected ({error}): {}",
                self.text()
            )
        })
    }
}

/// A request started in the background ([`TestRequest::start`](crate::TestRequest::start)):
/// whether async processing started (Spring's `MvcResult.asyncStarted()`), and its response
/// once complete (Spring's `asyncDispatch`).
#[derive(Debug)]
pub struct Pending {
    response: JoinHandle<TestResponse>,
    manager: Option<AsyncManager>,
    /// The manager's requests in flight when the request was started.
    in_flight: u64,
}

/// How many times [`Pending::async_started`] lets other tasks run before it decides: enough
/// for the request to reach its handler and return, with no clock involved.
const SETTLE: usize = 1_000;

impl Pending {
    pub(crate) fn new(
        response: JoinHandle<TestResponse>,
        manager: Option<AsyncManager>,
        in_flight: u64,
    ) -> Self {
        Pending {
            response,
            manager,
            in_flight,
        }
    }

    /// Whether the handler returned an async value that is still pending: the client's manager
    /// ([`TestClient::with_config`](crate::TestClient::with_config),
    /// [`controller`](crate::TestClient::controller)) counts one more request in flight, or —
    /// without a known manager — the response is not there once the handler had every chance to
    /// run. `false` for a response that completed at once. Decided without waiting on a clock:
    /// it lets the runtime's other tasks run a bounded number of times.
    pub async fn async_started(&self) -> bool {
        for _ in 0..SETTLE {
            if self.response.is_finished() {
                return false;
            }
            if let Some(manager) = &self.manager {
                if manager.metrics().in_flight > self.in_flight {
                    return true;
                }
            }
            tokio::task::yield_now().await;
        }
        !self.response.is_finished()
    }

    /// Whether the response is complete.
    pub fn is_complete(&self) -> bool {
        self.response.is_finished()
    }

    /// Waits for the response (under paused time, timeouts fire as soon as nothing else runs).
    ///
    /// # Panics
    ///
    /// If sending it panicked (see [`TestRequest::send`](crate::TestRequest::send)).
    pub async fn response(self) -> TestResponse {
        match self.response.await {
            Ok(response) => response,
            Err(error) => panic!("the request failed: {error}"),
        }
    }

    /// Drops the request as a client that leaves would: the server sees a disconnect.
    pub fn disconnect(self) {
        self.response.abort();
    }
}
