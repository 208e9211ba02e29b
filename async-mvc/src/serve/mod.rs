//! [`serve`]: runs a router on a TCP listener as a servlet container would — with a header
//! read timeout, a keep-alive timeout, a send timeout, a limit of requests per connection, a
//! connection limit that sheds the cheapest connections rather than failing `accept`,
//! HTTP/1.1 and HTTP/2 (h2c with prior knowledge), and a graceful shutdown that answers every
//! connection it accepted.
//!
//! One connection's path: the accept loop (`Serve::run`) makes room in the [`table`] (shedding
//! one connection at the limit), registers the connection and spawns
//! [`connection::serve_connection`]; that task reads the first byte, hands the socket
//! ([`io::TrackedStream`]) to hyper-util's auto builder with the router as service
//! ([`service::ConnService`]), and closes it when its [`conn::Conn`]'s timer says so.

mod conn;
mod connection;
mod io;
mod service;
mod settings;
mod stats;
mod table;

use std::{
    fmt,
    future::{Future, IntoFuture},
    io as std_io,
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto,
};
use tokio::net::{TcpListener, TcpStream};

pub use settings::{
    default_max_connections, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_KEEP_ALIVE_REQUESTS, DEFAULT_SEND_TIMEOUT, MIN_RESERVED_FILES,
};
pub use stats::{ConnectionMetrics, ConnectionStats};

use self::{
    conn::{Clock, Phase},
    connection::{serve_connection, ConnectionShared},
    service::ServiceShared,
    settings::Settings,
    stats::LogThrottle,
    table::{Room, Table},
};

/// hyper's read and write buffer limit per HTTP/1 connection: 64 KiB (hyper's default is about
/// 400 KiB). It bounds how much of a response hyper holds for a client that does not read,
/// and the size of a request head (Tomcat's `maxHttpHeaderSize` is 8 KiB).
const MAX_HTTP1_BUFFER: usize = 64 * 1024;

/// How long the accept loop waits, at the limit with every connection busy, before it looks
/// again for a connection to shed (a closing connection wakes it sooner).
const FULL_RECHECK: Duration = Duration::from_millis(100);

/// How long the accept loop pauses after `accept` failed for want of resources.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// One log line per this interval for floods (failed accepts, shed connections).
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` over HTTP/1.1 and HTTP/2 (h2c with prior knowledge): the
/// counterpart of `axum::serve(listener, router.into_make_service())`, built on hyper-util's
/// connection builders, with the limits a servlet container has.
///
/// | setting | default | Tomcat | nginx |
/// |---|---|---|---|
/// | [`header_read_timeout`](Serve::header_read_timeout) | 20 s | `connectionTimeout` | `client_header_timeout` |
/// | [`keep_alive_timeout`](Serve::keep_alive_timeout) | 20 s | `keepAliveTimeout` | `keepalive_timeout` |
/// | [`send_timeout`](Serve::send_timeout) | 60 s | — | `send_timeout` (+ `reset_timedout_connection`) |
/// | [`max_keep_alive_requests`](Serve::max_keep_alive_requests) | 1,000 | `maxKeepAliveRequests` | `keepalive_requests` |
/// | [`max_connections`](Serve::max_connections) | open-file limit − 5% | `maxConnections` | `worker_connections` |
///
/// At the connection limit the server sheds the cheapest connection for each new one: one
/// still reading its request head, else an idle keep-alive, oldest first; when every connection
/// has a request in progress it stops accepting for a moment (new clients wait in the listen
/// backlog, Tomcat's `acceptCount`), so `accept` never fails in a loop for want of descriptors.
/// Floods are logged once per 5 s, with counts; [`connection_stats`](Serve::connection_stats)
/// counts everything. `TCP_NODELAY` is off unless [`tcp_nodelay`](Serve::tcp_nodelay) says
/// otherwise, and the backlog is the listener's, as with `axum::serve`.
///
/// The router is prepared once, not for every connection. Await the returned [`Serve`]; with
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown), it stops accepting once the
/// signal resolves, answers every connection already accepted or queued (each gets its current
/// or first request answered, then `Connection: close`, or `GOAWAY` over HTTP/2), waits for
/// them, and returns. `axum::serve` closes, at shutdown, connections whose first bytes it has
/// not read and drops those still queued in the backlog.
///
/// Pair it with [`AsyncManager::shutdown_on`](crate::AsyncManager::shutdown_on) so that long
/// polls, streams and tasks end first (Spring MVC has no counterpart: the servlet container
/// serves).
///
/// # Errors
///
/// The future fails only if the listener does; errors of single connections (a client that
/// resets, a malformed request, a timeout) are logged at `DEBUG` and affect nobody else.
///
/// ```no_run
/// use std::time::Duration;
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
///     .send_timeout(Duration::from_secs(30))
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
        settings: Settings::default(),
        stats: ConnectionStats::default(),
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server being set up by [`serve`]; `.await` it to run.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    signal: Option<Signal>,
    settings: Settings,
    stats: ConnectionStats,
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
    /// closed: from the accept for the first request, from its first byte for the next ones
    /// ([`DEFAULT_HEADER_READ_TIMEOUT`] unless set; Tomcat's `connectionTimeout`). It also
    /// bounds how long a shutdown waits for a client that connected but never sent anything.
    /// A zero timeout closes every connection before its first request.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.header_read_timeout = timeout;
        self
    }

    /// How long a connection may stay idle between two requests — over HTTP/2, without an
    /// open stream ([`DEFAULT_KEEP_ALIVE_TIMEOUT`] unless set; Tomcat's `keepAliveTimeout`).
    /// Long polls and event streams are requests in progress: they are never idle.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.settings.keep_alive_timeout = timeout;
        self
    }

    /// How long a response may wait for the client to accept any byte before the connection
    /// is closed, with a reset ([`DEFAULT_SEND_TIMEOUT`] unless set; nginx's `send_timeout`).
    /// The emitters and deferred results on it see their client go (`on_error` with
    /// [`AsyncError::ClientDisconnected`](crate::AsyncError::ClientDisconnected)). Over
    /// HTTP/2 it applies to the connection as a whole; one slow stream among others is bounded
    /// by its emitter's buffer and HTTP/2 flow control.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.settings.send_timeout = timeout;
        self
    }

    /// How many requests one HTTP/1.1 connection may carry: the response to the last says
    /// `Connection: close` ([`DEFAULT_MAX_KEEP_ALIVE_REQUESTS`] unless set; Tomcat's
    /// `maxKeepAliveRequests`). `1` turns keep-alive off, `u64::MAX` lifts the limit; `0` is
    /// taken as `1`.
    pub fn max_keep_alive_requests(mut self, requests: u64) -> Self {
        self.settings.max_keep_alive_requests = requests.max(1);
        self
    }

    /// How many connections may be open at once (Tomcat's `maxConnections`); unless set,
    /// [`default_max_connections`], from the process's open-file limit. At the limit the server
    /// sheds connections as [`serve`] describes. `0` is taken as `1`.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.settings.max_connections = Some(connections.max(1));
        self
    }

    /// Serves HTTP/1.1 only: a client opening with the HTTP/2 preface gets an error. On by
    /// default is both.
    pub fn http1_only(mut self) -> Self {
        self.settings.http2 = false;
        self
    }

    /// Sets `TCP_NODELAY` on accepted connections (off unless set, as with `axum::serve`'s
    /// `tcp_nodelay`): responses go out without waiting for the client's acknowledgement of
    /// the previous segment.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.settings.tcp_nodelay = nodelay;
        self
    }

    /// A handle on the server's connection counters, for metrics and tests.
    pub fn connection_stats(&self) -> ConnectionStats {
        self.stats.clone()
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> std_io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn builder(settings: &Settings) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // The header read timeout is the connection's own (hyper's also starts on idle
            // connections, which would make it the keep-alive timeout too).
            .header_read_timeout(None)
            // Vectored writes, as `axum::serve`'s connections use: a body is queued, not copied.
            .writev(true)
            .max_buf_size(MAX_HTTP1_BUFFER);
        builder.http2().timer(TokioTimer::new());
        if settings.http2 {
            builder
        } else {
            builder.http1_only()
        }
    }

    async fn run(self) -> std_io::Result<()> {
        let Serve {
            listener,
            router,
            signal,
            settings,
            stats,
        } = self;
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        let resolution = sweep_interval(&settings);
        let clock = Arc::new(Clock::new(resolution));
        let limit = settings
            .max_connections
            .unwrap_or_else(default_max_connections);
        let table = Arc::new(Table::new(limit, clock, stats.clone()));
        Table::start_sweeper(&table, settings, resolution);
        let shared = Arc::new(ConnectionShared {
            builder: Self::builder(&settings),
            // Converted once: `with_state` turns every handler into a route, which a plain
            // clone per connection then shares.
            router: router.with_state(()),
            service: Arc::new(ServiceShared {
                max_keep_alive_requests: settings.max_keep_alive_requests,
                stats: stats.clone(),
            }),
            stats: stats.clone(),
        });
        let serve = |stream: TcpStream| {
            if settings.tcp_nodelay {
                let _ = stream.set_nodelay(true);
            }
            let entry = table.register();
            tokio::spawn(serve_connection(stream, entry, Arc::clone(&shared)));
        };
        let shed_log = LogThrottle::new(LOG_INTERVAL);
        let full_log = LogThrottle::new(LOG_INTERVAL);
        let accept_log = LogThrottle::new(LOG_INTERVAL);

        // `true` while over the limit with no connection to shed: accept no more until there
        // is room (clients wait in the backlog).
        let mut full = false;
        loop {
            if full {
                tokio::select! {
                    biased;
                    () = &mut signal => break,
                    () = table.freed() => {}
                    () = tokio::time::sleep(FULL_RECHECK) => {}
                }
            } else {
                tokio::select! {
                    biased;
                    () = &mut signal => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => serve(stream),
                        Err(error) if is_connection_error(&error) => {}
                        Err(error) => {
                            stats.counters().accept_errors.fetch_add(1, Ordering::Relaxed);
                            accept_log.log(|more| {
                                tracing::error!(
                                    %error,
                                    more,
                                    "accept failed; pausing 50 ms ({more} more since the last line)"
                                );
                            });
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        }
                    },
                }
            }
            full = match table.make_room() {
                Room::Free => false,
                Room::Shed(phase) => {
                    let counters = stats.counters();
                    let (counter, reason) = match phase {
                        Phase::ReadingHead => (&counters.shed_reading_head, "reading_head"),
                        Phase::Idle => (&counters.shed_idle, "idle"),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    crate::telemetry::connection_shed(reason);
                    shed_log.log(|more| {
                        tracing::warn!(
                            limit = table.limit(),
                            ?phase,
                            more,
                            "at the connection limit: shed the oldest connection without a \
                             request in progress ({more} more since the last line)"
                        );
                    });
                    false
                }
                Room::Full => {
                    if !full {
                        stats
                            .counters()
                            .limit_reached
                            .fetch_add(1, Ordering::Relaxed);
                        crate::telemetry::connection_shed("limit_reached");
                        full_log.log(|more| {
                            tracing::warn!(
                                limit = table.limit(),
                                more,
                                "at the connection limit with a request in progress on every \
                                 connection: new clients wait in the listen backlog"
                            );
                        });
                    }
                    true
                }
            };
        }

        // Stop: what the kernel already queued is accepted and served before the listener
        // closes, with plain `accept(2)` calls until the queue is empty.
        table.stop_all();
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
                Err(error) if error.kind() == std_io::ErrorKind::WouldBlock => break,
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    tracing::warn!(%error, "accepting the queued connections failed");
                    break;
                }
            }
        }
        drop(listener);
        tracing::debug!(
            connections = table.open(),
            "stopped accepting; finishing connections"
        );
        // Every connection's task holds its entry in the table until it ends.
        table.drained().await;
        Ok(())
    }
}

/// How often the sweeper applies the timeouts (and advances the connections' clock): a tenth
/// of the shortest timeout, between 5 ms and 250 ms. A connection is closed at most about two
/// intervals after its timeout, never before.
fn sweep_interval(settings: &Settings) -> Duration {
    let shortest = settings
        .header_read_timeout
        .min(settings.keep_alive_timeout)
        .min(settings.send_timeout);
    (shortest / 10).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// An error of one connection (it was reset before we took it), not of the listener.
fn is_connection_error(error: &std_io::Error) -> bool {
    matches!(
        error.kind(),
        std_io::ErrorKind::ConnectionRefused
            | std_io::ErrorKind::ConnectionAborted
            | std_io::ErrorKind::ConnectionReset
    )
}

impl IntoFuture for Serve {
    type Output = std_io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = std_io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("graceful_shutdown", &self.signal.is_some())
            .field("settings", &self.settings)
            .finish()
    }
}
