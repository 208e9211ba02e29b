//! [`TestClient`] and [`TestRequest`]: requests to a router, through it or over loopback HTTP.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use async_mvc::{AsyncManager, Controller, RouterExt};
use axum::{response::IntoResponse, routing::get, Router};
use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt, TryStreamExt};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;
use tower::ServiceExt;

use crate::{
    probe::{ChunkProbe, SseProbe},
    response::{Pending, TestResponse},
};

/// A client of one application under test: requests go through the router itself (no socket;
/// the same manager, layers and extractors as in production), or — [`serve`](Self::serve),
/// [`over_http`](Self::over_http) — over real HTTP on 127.0.0.1. A cheap `Clone`.
///
/// The Spring counterparts: MockMvc (in process) and WebTestClient (either way).
///
/// ```
/// use async_mvc_test::TestClient;
/// use axum::{routing::get, Router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = TestClient::new(Router::new().route("/hello", get(|| async { "hi" })));
/// let answer = client.get("/hello").send().await;
/// assert_eq!(answer.status(), 200);
/// assert_eq!(answer.text(), "hi");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TestClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    router: Router,
    /// Set once served over HTTP: where, and the client that speaks to it.
    http: Option<Http>,
    manager: Option<AsyncManager>,
}

#[derive(Debug)]
struct Http {
    address: SocketAddr,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Http {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestClient {
    /// A client of `router` as it is (with its own `async_support`, or with controller routes
    /// on the default manager).
    pub fn new(router: Router) -> Self {
        TestClient {
            inner: Arc::new(Inner {
                router,
                http: None,
                manager: None,
            }),
        }
    }

    /// A client of `routes` under async support by `manager` (an
    /// [`AsyncManager`] or an [`AsyncConfig`](async_mvc::AsyncConfig)) — kept, so that
    /// [`Pending::async_started`] and [`manager`](Self::manager) can read it.
    pub fn with_config(routes: Router, manager: impl Into<AsyncManager>) -> Self {
        let manager = manager.into();
        TestClient {
            inner: Arc::new(Inner {
                router: routes.async_support(manager.clone()),
                http: None,
                manager: Some(manager),
            }),
        }
    }

    /// A client of one `#[async_controller]`, mounted with a manager of the default
    /// [`AsyncConfig`](async_mvc::AsyncConfig): the one-line start of a controller's tests.
    ///
    /// ```
    /// use async_mvc::prelude::*;
    /// use async_mvc_test::TestClient;
    ///
    /// struct Greeter;
    ///
    /// #[async_controller(path = "/greet")]
    /// impl Greeter {
    ///     #[get("/{name}")]
    ///     fn greet(&self, axum::extract::Path(name): axum::extract::Path<String>) -> DeferredResult<String> {
    ///         let result = DeferredResult::new();
    ///         result.set_result(format!("hello {name}"));
    ///         result
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let client = TestClient::controller(Greeter);
    /// assert_eq!(client.get("/greet/ada").send().await.text(), "hello ada");
    /// # }
    /// ```
    pub fn controller<C: Controller<()>>(controller: C) -> Self {
        Self::with_config(
            Router::new().controller(controller),
            async_mvc::AsyncConfig::new(),
        )
    }

    /// [`controller`](Self::controller) for a controller declared with `state = S`, with
    /// `state` injected.
    ///
    /// ```
    /// use async_mvc::prelude::*;
    /// use async_mvc_test::TestClient;
    /// use axum::extract::State;
    ///
    /// #[derive(Clone)]
    /// struct AppState { greeting: &'static str }
    /// struct Greeter;
    ///
    /// #[async_controller(path = "/greet", state = AppState)]
    /// impl Greeter {
    ///     #[get("")]
    ///     fn greet(&self, State(state): State<AppState>) -> String {
    ///         state.greeting.to_owned()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let client = TestClient::controller_with_state(Greeter, AppState { greeting: "hi" });
    /// assert_eq!(client.get("/greet").send().await.text(), "hi");
    /// # }
    /// ```
    pub fn controller_with_state<S, C>(controller: C, state: S) -> Self
    where
        S: Clone + Send + Sync + 'static,
        C: Controller<S>,
    {
        Self::with_config(
            Router::new().controller(controller).with_state(state),
            async_mvc::AsyncConfig::new(),
        )
    }

    /// A client of `router` served over real HTTP on 127.0.0.1 (a free port) by
    /// [`async_mvc::serve`]: the same API, through sockets.
    ///
    /// # Errors
    ///
    /// The loopback listener cannot be bound.
    pub async fn serve(router: Router) -> io::Result<Self> {
        TestClient::new(router).over_http().await
    }

    /// This client's application, served over real HTTP on 127.0.0.1 (the same manager).
    ///
    /// # Errors
    ///
    /// The loopback listener cannot be bound.
    pub async fn over_http(&self) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let router = self.inner.router.clone();
        let server = tokio::spawn(async move {
            let _ = async_mvc::serve(listener, router).await;
        });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(io::Error::other)?;
        Ok(TestClient {
            inner: Arc::new(Inner {
                router: self.inner.router.clone(),
                http: Some(Http {
                    address,
                    client,
                    server,
                }),
                manager: self.inner.manager.clone(),
            }),
        })
    }

    /// Where the application is served, if over HTTP.
    pub fn address(&self) -> Option<SocketAddr> {
        self.inner.http.as_ref().map(|http| http.address)
    }

    /// The manager this client put under its routes ([`with_config`](Self::with_config),
    /// [`controller`](Self::controller)): its [`metrics`](AsyncManager::metrics), its
    /// shutdown.
    pub fn manager(&self) -> Option<&AsyncManager> {
        self.inner.manager.as_ref()
    }

    /// A `GET` of `path` (with its query).
    pub fn get(&self, path: &str) -> TestRequest {
        self.request(Method::GET, path)
    }

    /// A `POST` of `path`.
    pub fn post(&self, path: &str) -> TestRequest {
        self.request(Method::POST, path)
    }

    /// A `PUT` of `path`.
    pub fn put(&self, path: &str) -> TestRequest {
        self.request(Method::PUT, path)
    }

    /// A `DELETE` of `path`.
    pub fn delete(&self, path: &str) -> TestRequest {
        self.request(Method::DELETE, path)
    }

    /// A request with `method` for `path`.
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        TestRequest {
            client: self.clone(),
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// One request being built; [`send`](Self::send) it for the whole response,
/// [`start`](Self::start) it to watch it while it is pending, or read it as it streams:
/// [`sse`](Self::sse), [`stream`](Self::stream).
#[derive(Clone, Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct TestRequest {
    client: TestClient,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A response's head and its body as it arrives.
pub(crate) struct Opened {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: BoxStream<'static, Result<Bytes, String>>,
}

impl TestRequest {
    /// Adds a header.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value (a mistake in the test).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).unwrap_or_else(|_| panic!("header name `{name}`"));
        let value =
            HeaderValue::try_from(value).unwrap_or_else(|_| panic!("header value `{value}`"));
        self.headers.append(name, value);
        self
    }

    /// Sends `Last-Event-ID: id` (in place of one set before), as a reconnecting
    /// `EventSource` does.
    ///
    /// # Panics
    ///
    /// If `id` is not a valid header value (a line break in it).
    pub fn last_event_id(mut self, id: &str) -> Self {
        let value = HeaderValue::try_from(id).unwrap_or_else(|_| panic!("Last-Event-ID `{id}`"));
        self.headers.insert("last-event-id", value);
        self
    }

    /// The body, as it is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// `value` as a JSON body, with `Content-Type: application/json`.
    ///
    /// # Panics
    ///
    /// If `value` does not serialize.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|error| panic!("a JSON body: {error}"));
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.body = Bytes::from(body);
        self
    }

    /// Sends the request and waits for the whole response, its body read to the end.
    ///
    /// # Panics
    ///
    /// If the request cannot be sent or its body breaks off (over HTTP: the server is gone).
    pub async fn send(self) -> TestResponse {
        let opened = self.open().await;
        let body: Vec<Bytes> = opened
            .body
            .try_collect()
            .await
            .unwrap_or_else(|error| panic!("the response body broke off: {error}"));
        TestResponse::new(opened.status, opened.headers, body.concat().into())
    }

    /// Sends the request in a task and returns at once: watch it with [`Pending`].
    pub fn start(self) -> Pending {
        let manager = self.client.inner.manager.clone();
        let in_flight = manager
            .as_ref()
            .map_or(0, |manager| manager.metrics().in_flight);
        Pending::new(tokio::spawn(self.send()), manager, in_flight)
    }

    /// Sends the request and reads its body as Server-Sent Events.
    pub async fn sse(self) -> SseProbe {
        let again = self.clone();
        SseProbe::new(self.open().await, again)
    }

    /// Sends the request and reads its body as it streams: chunks, or NDJSON lines.
    pub async fn stream(self) -> ChunkProbe {
        ChunkProbe::new(self.open().await)
    }

    /// Sends it: the head, and the body as it comes.
    pub(crate) async fn open(self) -> Opened {
        let client = &self.client.inner;
        match &client.http {
            None => {
                let mut request = http::Request::builder()
                    .method(self.method)
                    .uri(&self.path)
                    .body(axum::body::Body::from(self.body))
                    .unwrap_or_else(|error| panic!("a request for `{}`: {error}", self.path));
                *request.headers_mut() = self.headers;
                let response = match client.router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                let (parts, body) = response.into_parts();
                let body = http_body_util::BodyStream::new(body)
                    .filter_map(|frame| async move {
                        match frame {
                            Ok(frame) => frame.into_data().ok().map(Ok),
                            Err(error) => Some(Err(error.to_string())),
                        }
                    })
                    .boxed();
                Opened {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }
            }
            Some(http) => {
                let url = format!("http://{}{}", http.address, self.path);
                let response = http
                    .client
                    .request(self.method, &url)
                    .headers(self.headers)
                    .body(self.body)
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("{url}: {error}"));
                let (status, headers) = (response.status(), response.headers().clone());
                let body = response
                    .bytes_stream()
                    .map_err(|error| error.to_string())
                    .boxed();
                Opened {
                    status,
                    headers,
                    body,
                }
            }
        }
    }
}

/// A request for `value` — an `SseEmitter`, a `ResponseBodyEmitter`, any async value — served
/// by itself in process, under a manager of the default configuration, with no HTTP: read it
/// with [`TestRequest::sse`], [`TestRequest::stream`] or [`TestRequest::send`]. What an emitter
/// sends, captured byte for byte.
///
/// ```
/// use async_mvc::SseEmitter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let emitter = SseEmitter::new();
/// let sender = emitter.clone();
/// tokio::spawn(async move {
///     sender.send(&"tick").await.unwrap();
///     sender.complete();
/// });
/// let mut events = async_mvc_test::capture(emitter).sse().await;
/// assert_eq!(events.next_event().await.unwrap().data, "tick"); // a string is sent as text
/// assert!(events.next_event().await.is_none(), "then the stream ends");
/// # }
/// ```
pub fn capture<V>(value: V) -> TestRequest
where
    V: IntoResponse + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Some(value)));
    let routes = Router::new().route(
        "/",
        get(move || {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            std::future::ready(match taken {
                Some(value) => value.into_response(),
                None => (StatusCode::GONE, "captured once").into_response(),
            })
        }),
    );
    TestClient::with_config(routes, async_mvc::AsyncConfig::new()).get("/")
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
