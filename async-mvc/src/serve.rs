//! [`serve`]: runs a router on a TCP listener, with a graceful shutdown that answers every
//! connection it accepted.
//!
//! `axum::serve` closes, at shutdown, the connections whose first bytes it has not read yet
//! (hyper-util's protocol detection is cancelled) and drops the connections still queued in the
//! listen backlog: a client that connected just as the server stopped gets no response at all.
//! Here every accepted connection — the backlog included, accepted before the listener closes —
//! has its first request read and answered (with `Connection: close`), so it gets its result or
//! the manager's `503`.

use std::{
    convert::Infallible,
    fmt,
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use axum::{extract::Request, response::Response, routing::future::RouteFuture, Router};
use http::{header::CONNECTION, HeaderValue};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::task::TaskTracker;

/// How long a client may take to send a whole request head before its connection is closed:
/// 30 s, hyper's default (Tomcat's `connectionTimeout` is 20 s, nginx's
/// `client_header_timeout` 60 s).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` over HTTP/1.1: the counterpart of
/// `axum::serve(listener, router.into_make_service())`, built on hyper's connection builder.
///
/// The router is prepared once, not for every connection. Await the returned [`Serve`]; with
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown), it stops accepting once the
/// signal resolves, answers every connection already accepted or queued (each gets its current
/// or first request answered, then `Connection: close`), waits for them, and returns.
///
/// Pair it with [`AsyncManager::shutdown_on`](crate::AsyncManager::shutdown_on) so that long
/// polls, streams and tasks end first (Spring MVC has no counterpart: the servlet container
/// serves).
///
/// # Errors
///
/// The future fails only if the listener does; errors of single connections (a client that
/// resets, a malformed request) are logged at `DEBUG` and affect nobody else.
///
/// ```no_run
/// use async_mvc::{AsyncConfig, AsyncManager, RouterExt};
/// use axum::{routing::get, Router};
///
/// # async fn run() -> std::io::Result<()> {
/// let manager = AsyncManager::new(AsyncConfig::new());
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .async_support(manager.clone());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// async_mvc::serve(listener, app)
///     .with_graceful_shutdown(manager.shutdown_on(async {
///         let _ = tokio::signal::ctrl_c().await;
///     }))
///     .await
/// # }
/// ```
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        signal: None,
        header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server being set up by [`serve`]; `.await` it to run.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    signal: Option<Signal>,
    header_read_timeout: Duration,
}

impl Serve {
    /// Shuts down gracefully once `signal` resolves; see [`serve`].
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// How long a client may take to send a request head, in full, before its connection is
    /// closed ([`DEFAULT_HEADER_READ_TIMEOUT`] unless set). It also bounds how long a shutdown
    /// waits for a client that connected but never sent anything. A zero timeout closes every
    /// connection before its first request.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    async fn run(self) -> io::Result<()> {
        let Serve {
            listener,
            router,
            signal,
            header_read_timeout,
        } = self;
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        // Converted once: `with_state` turns every handler into a route, which a plain clone
        // per connection then shares.
        let router = router.with_state(());
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let (stop, stopping) = watch::channel(false);
        // Read by every response (no lock); `stopping` wakes the connections.
        let stopped_flag = Arc::new(AtomicBool::new(false));
        let connections = TaskTracker::new();
        let serve = |stream: TcpStream| {
            let (builder, router) = (builder.clone(), router.clone());
            connections.spawn(serve_connection(
                stream,
                builder,
                router,
                stopping.clone(),
                Arc::clone(&stopped_flag),
                header_read_timeout,
            ));
        };

        loop {
            tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => serve(stream),
                    Err(error) => accept_failed(error).await,
                },
            }
        }

        // Stop: what the kernel already queued is accepted and served before the listener
        // closes, with plain `accept(2)` calls until the queue is empty.
        stopped_flag.store(true, Ordering::Release);
        let _ = stop.send(true);
        let listener = listener.into_std()?;
        loop {
            match listener.accept() {
                Ok((stream, _)) => match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => serve(stream),
                    Err(error) => tracing::debug!(%error, "a queued connection failed"),
                },
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    tracing::warn!(%error, "accepting the queued connections failed");
                    break;
                }
            }
        }
        drop(listener);
        tracing::debug!(
            connections = connections.len(),
            "stopped accepting; finishing connections"
        );
        connections.close();
        connections.wait().await;
        Ok(())
    }
}

/// How long, once the server stops, a connection that has sent nothing yet may take to send
/// its first bytes, and an idle keep-alive connection its next request: a request already on
/// its way as the server stops is still answered (with `Connection: close`).
const LINGER_AT_SHUTDOWN: Duration = Duration::from_millis(500);

/// Serves one connection. Its first bytes are awaited before hyper takes it, because hyper
/// closes a connection that has read nothing yet as soon as it is asked to shut down: here the
/// first request of every accepted connection is read and answered. Once the server stops,
/// the request in progress (or that first one) is finished with keep-alive off, then the
/// connection closes.
async fn serve_connection(
    stream: TcpStream,
    builder: http1::Builder,
    router: Router,
    stopping: watch::Receiver<bool>,
    stopped_flag: Arc<AtomicBool>,
    header_read_timeout: Duration,
) {
    // `peek`, not `readable`: readiness can be reported before any byte is there.
    let mut first = [0_u8; 1];
    let arrived = tokio::select! {
        peeked = stream.peek(&mut first) => matches!(peeked, Ok(n) if n > 0),
        () = tokio::time::sleep(header_read_timeout) => false,
        () = async {
            stopped(stopping.clone()).await;
            tokio::time::sleep(LINGER_AT_SHUTDOWN).await;
        } => false,
    };
    if !arrived {
        // Nothing was asked on it (or the client closed it): closing it answers nobody wrongly.
        return;
    }
    let service = CloseWhenStopping {
        router,
        stopped: stopped_flag,
    };
    let connection = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    let mut connection = pin!(connection);
    let result = tokio::select! {
        // Polled first: hyper reads the bytes that are there before it hears of a shutdown.
        biased;
        result = connection.as_mut() => result,
        () = stopped(stopping) => {
            // Every response from now on says `Connection: close`, and hyper closes after it;
            // an idle connection gets a moment for a request already on its way, then closes.
            match tokio::time::timeout(LINGER_AT_SHUTDOWN, connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The router, answering with `Connection: close` once the server stops, so that clients do
/// not send again on a connection about to close.
#[derive(Clone)]
struct CloseWhenStopping {
    router: Router,
    stopped: Arc<AtomicBool>,
}

impl tower::Service<Request<Incoming>> for CloseWhenStopping {
    type Response = Response;
    type Error = Infallible;
    type Future = CloseWhenStoppingFuture<RouteFuture<Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request<Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        CloseWhenStoppingFuture {
            inner: self.router.call(request),
            stopped: Arc::clone(&self.stopped),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CloseWhenStopping`].
    struct CloseWhenStoppingFuture<F> {
        #[pin]
        inner: F,
        stopped: Arc<AtomicBool>,
    }
}

impl<F> Future for CloseWhenStoppingFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if this.stopped.load(Ordering::Acquire) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

/// Resolves once the server stops (or is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across an await.
    let _ = stopping.wait_for(|stop| *stop).await.is_ok();
}

/// An error of one connection (it was reset before we took it), not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// `accept` failed: a connection error is skipped; anything else (out of file descriptors) is
/// logged and retried after 1 s, as `axum::serve` does.
async fn accept_failed(error: io::Error) {
    if is_connection_error(&error) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("graceful_shutdown", &self.signal.is_some())
            .field("header_read_timeout", &self.header_read_timeout)
            .finish()
    }
}
