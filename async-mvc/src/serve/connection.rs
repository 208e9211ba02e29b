//! [`serve_connection`]: one connection's task, from accept to close.
//!
//! 1. Its first byte is awaited before hyper takes it: hyper closes a connection that has read
//!    nothing yet as soon as it is asked to shut down, and here the first request of every
//!    accepted connection is read and answered.
//! 2. hyper-util's auto builder serves it: HTTP/1.1, or HTTP/2 when the client opens with the
//!    HTTP/2 preface (h2c with prior knowledge).
//! 3. All along, the task listens for its [`Conn`]'s signal: the table's sweeper asks it to
//!    close at a timeout, the table sheds it at the limit, or the server stops. [`Driven`]
//!    polls hyper's connection and that signal in one future, with no timer of its own.
//!    Dropping hyper's connection drops its response bodies: emitters and deferred results see
//!    their client go, as on any disconnect.
//! 4. Once the server stops, the request in progress (or the first one) is finished with
//!    keep-alive off (`Connection: close`; `GOAWAY` over HTTP/2), then the connection closes.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpStream, time::Sleep};

use super::{
    conn::{CloseReason, Conn, Signal},
    io::TrackedStream,
    service::{ConnService, ServiceShared},
    stats::ConnectionStats,
    table::Entry,
};

/// How long, once the server stops, a connection that has sent nothing yet may take to send
/// its first bytes, and an idle keep-alive connection its next request: a request already on
/// its way as the server stops is still answered (with `Connection: close`).
pub(super) const LINGER_AT_SHUTDOWN: Duration = Duration::from_millis(500);

/// What every connection's task shares.
pub(super) struct ConnectionShared {
    pub(super) builder: auto::Builder<TokioExecutor>,
    pub(super) router: axum::Router,
    pub(super) service: Arc<ServiceShared>,
    pub(super) stats: ConnectionStats,
}

type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// Serves one accepted connection until it ends or the server closes it.
pub(super) async fn serve_connection(
    stream: TcpStream,
    entry: Entry,
    shared: Arc<ConnectionShared>,
) {
    let conn = Arc::clone(entry.conn());
    if !first_byte(&stream, &conn, &shared.stats).await {
        // Nothing was asked on it (or the client closed it): closing it answers nobody wrongly.
        return;
    }
    let service = ConnService {
        router: shared.router.clone(),
        conn: Arc::clone(&conn),
        shared: Arc::clone(&shared.service),
    };
    let io = TokioIo::new(TrackedStream::new(stream, Arc::clone(&conn)));
    let connection = shared
        .builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    let ended = Driven {
        connection: pin!(connection),
        conn: &conn,
        stop_seen: false,
        linger: None,
        registered: None,
    }
    .await;
    match ended {
        Ok(()) => {}
        Err(Ended::Failed(error)) => tracing::debug!(%error, "connection ended with an error"),
        Err(Ended::Closed(reason)) => {
            shared.stats.counters().closed(reason);
            tracing::debug!(?reason, "connection closed by the server");
        }
    }
    // hyper's connection, and with it the socket, is gone before the entry leaves the table.
    drop(entry);
}

/// Waits for the connection's first byte: `false` if it closes, times out, is shed, or the
/// server stops and nothing arrives within [`LINGER_AT_SHUTDOWN`].
async fn first_byte(stream: &TcpStream, conn: &Conn, stats: &ConnectionStats) -> bool {
    // `peek`, not `readable`: readiness can be reported before any byte is there.
    let mut first = [0_u8; 1];
    let mut peek = pin!(stream.peek(&mut first));
    let mut linger: Option<Pin<Box<Sleep>>> = None;
    let mut stop_seen = false;
    let mut registered = None;
    poll_fn(|cx| {
        if let Poll::Ready(peeked) = peek.as_mut().poll(cx) {
            return Poll::Ready(matches!(peeked, Ok(n) if n > 0));
        }
        if let Some(linger) = &mut linger {
            if linger.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
        }
        match conn.poll_signal(cx, stop_seen, &mut registered) {
            Poll::Ready(Signal::Close(reason)) => {
                stats.counters().closed(reason);
                Poll::Ready(false)
            }
            Poll::Ready(Signal::Stop) => {
                stop_seen = true;
                let mut sleep = Box::pin(tokio::time::sleep(LINGER_AT_SHUTDOWN));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
                linger = Some(sleep);
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// How a served connection ended, other than cleanly.
enum Ended {
    Failed(ConnectionError),
    Closed(CloseReason),
}

/// hyper-util's connection of one of our sockets and services.
type Connection<'a> = auto::UpgradeableConnection<
    'a,
    TokioIo<TrackedStream>,
    TowerToHyperService<ConnService>,
    TokioExecutor,
>;

/// hyper's connection together with its [`Conn`]'s signal: one future, polled as one, so a
/// request costs no extra timer or notification poll.
struct Driven<'a, 'b> {
    connection: Pin<&'a mut Connection<'b>>,
    conn: &'a Conn,
    /// The server's stop was seen: from then on it lingers, then shuts down gracefully.
    stop_seen: bool,
    /// After a stop: when to ask hyper to shut down gracefully.
    linger: Option<Pin<Box<Sleep>>>,
    /// The waker last registered with the signal.
    registered: Option<Waker>,
}

impl Future for Driven<'_, '_> {
    type Output = Result<(), Ended>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Polled first: hyper reads the bytes that are there before it hears of anything else.
        if let Poll::Ready(result) = this.connection.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(Ended::Failed));
        }
        if let Some(linger) = &mut this.linger {
            if linger.as_mut().poll(cx).is_ready() {
                this.linger = None;
                // An idle connection had its moment for a request on its way: close it; a
                // busy one ends after its response.
                this.connection.as_mut().graceful_shutdown();
                cx.waker().wake_by_ref();
            }
        }
        match this
            .conn
            .poll_signal(cx, this.stop_seen, &mut this.registered)
        {
            Poll::Ready(Signal::Close(reason)) => Poll::Ready(Err(Ended::Closed(reason))),
            Poll::Ready(Signal::Stop) => {
                // Every HTTP/1 response from now on says `Connection: close`, and hyper closes
                // after it.
                this.stop_seen = true;
                this.linger = Some(Box::pin(tokio::time::sleep(LINGER_AT_SHUTDOWN)));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
