//! [`serve_connection`]: one connection's task, from accept to close.
//!
//! 1. Its first byte is awaited before hyper takes it: hyper closes a connection that has read
//!    nothing yet as soon as it is asked to shut down, and here the first request of every
//!    accepted connection is read and answered.
//! 2. hyper-util's auto builder serves it: HTTP/1.1, or HTTP/2 when the client opens with the
//!    HTTP/2 preface (h2c with prior knowledge).
//! 3. All along, one timer ([`Watchdog`]) applies the header read, keep-alive and send
//!    timeouts from the [`Conn`]'s phases, and the connection closes at once when the table
//!    sheds it. Dropping hyper's connection drops its response bodies: emitters and deferred
//!    results see their client go, as on any disconnect.
//! 4. Once the server stops, the request in progress (or the first one) is finished with
//!    keep-alive off (`Connection: close`; `GOAWAY` over HTTP/2), then the connection closes.

use std::{pin::pin, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpStream, sync::watch, time::Sleep};

use super::{
    conn::{CloseReason, Conn, Verdict},
    io::TrackedStream,
    service::{ConnService, ServiceShared},
    settings::Settings,
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
    pub(super) settings: Settings,
    pub(super) stopping: watch::Receiver<bool>,
    pub(super) stats: ConnectionStats,
}

/// Serves one accepted connection until it ends or the server closes it.
pub(super) async fn serve_connection(
    stream: TcpStream,
    entry: Entry,
    shared: Arc<ConnectionShared>,
) {
    let conn = Arc::clone(entry.conn());
    let mut watchdog = Watchdog::new(&conn, &shared.settings);

    // `peek`, not `readable`: readiness can be reported before any byte is there.
    let mut first = [0_u8; 1];
    let arrived = tokio::select! {
        peeked = stream.peek(&mut first) => matches!(peeked, Ok(n) if n > 0),
        reason = watchdog.expired() => {
            shared.stats.counters().closed(reason);
            false
        }
        () = async {
            stopped(shared.stopping.clone()).await;
            tokio::time::sleep(LINGER_AT_SHUTDOWN).await;
        } => false,
    };
    if !arrived {
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
    let mut connection = pin!(connection);

    let ended = tokio::select! {
        // Polled first: hyper reads the bytes that are there before it hears of anything else.
        biased;
        result = connection.as_mut() => Ended::Served(result),
        reason = watchdog.expired() => Ended::Closed(reason),
        () = stopped(shared.stopping.clone()) => {
            // Every HTTP/1 response from now on says `Connection: close`, and hyper closes
            // after it; an idle connection gets a moment for a request already on its way.
            let lingered = tokio::select! {
                biased;
                result = tokio::time::timeout(LINGER_AT_SHUTDOWN, connection.as_mut()) => {
                    result.ok().map(Ended::Served)
                }
                reason = watchdog.expired() => Some(Ended::Closed(reason)),
            };
            match lingered {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        biased;
                        result = connection.as_mut() => Ended::Served(result),
                        reason = watchdog.expired() => Ended::Closed(reason),
                    }
                }
            }
        }
    };
    match ended {
        Ended::Served(Ok(())) => {}
        Ended::Served(Err(error)) => tracing::debug!(%error, "connection ended with an error"),
        Ended::Closed(reason) => {
            shared.stats.counters().closed(reason);
            tracing::debug!(?reason, "connection closed by the server");
        }
    }
    // hyper's connection (and with it the socket) is dropped before the entry leaves the
    // table: locals drop in reverse order of declaration.
}

enum Ended {
    Served(Result<(), Box<dyn std::error::Error + Send + Sync>>),
    Closed(CloseReason),
}

/// One connection's timer: fires at the next deadline its phases imply, and looks again.
struct Watchdog<'a> {
    conn: &'a Conn,
    settings: &'a Settings,
    sleep: std::pin::Pin<Box<Sleep>>,
}

impl<'a> Watchdog<'a> {
    fn new(conn: &'a Conn, settings: &'a Settings) -> Self {
        let first = match conn.verdict(settings) {
            Verdict::CheckAt(at) => at,
            Verdict::Close(_) => tokio::time::Instant::now(),
        };
        Watchdog {
            conn,
            settings,
            sleep: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    /// Resolves when the connection is to be closed, and why.
    async fn expired(&mut self) -> CloseReason {
        loop {
            tokio::select! {
                () = self.sleep.as_mut() => match self.conn.verdict(self.settings) {
                    Verdict::Close(reason) => return reason,
                    Verdict::CheckAt(at) => self.sleep.as_mut().reset(at),
                },
                () = self.conn.shed_requested() => return CloseReason::Shed,
            }
        }
    }
}

/// Resolves once the server stops (or is gone).
pub(super) async fn stopped(mut stopping: watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across an await.
    let _ = stopping.wait_for(|stop| *stop).await.is_ok();
}
