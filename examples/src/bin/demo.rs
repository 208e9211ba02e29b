//! The order desk demo server.
//!
//! ```text
//! cargo run --release -p async-mvc-examples --bin demo [-- --port N] [--send-timeout-ms N] …
//! ```
//!
//! Serves on `127.0.0.1:8080`; the port comes from `--port N` (or `--port=N`), else the `PORT`
//! environment variable, else 8080. `--redis URL` (or `REDIS_URL`) makes it one instance of a
//! cluster: any number of instances on one Redis share one order desk. `--role web` serves
//! only the HTTP side and `--role worker` runs only the fulfilment worker and the invoice
//! renderer (no port); the default `all` runs both. The server's limits (header read,
//! keep-alive and send timeouts, the connection limit) take flags and variables too: see
//! [`async_mvc_examples::cli`]. Logs go to stderr; `RUST_LOG` overrides the default filter.
//! Ctrl+C answers the waiting long polls with `304`, ends the open event streams and feeds, and
//! shuts down gracefully.

use std::{net::SocketAddr, process::ExitCode};

use std::sync::Arc;

use async_mvc::cluster::MessageBroker;
use async_mvc_examples::{
    cli::{self, Role, USAGE},
    order_desk::{DemoConfig, OrderDesk, Workers},
};
use tracing_subscriber::EnvFilter;

/// jemalloc, with background threads that return freed memory to the system: after 2,000 slow
/// SSE readers leave, RSS falls back to within ~3 KB per reader of where it started, where the
/// system allocator keeps all of it (BENCHMARKS.md, W8j).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let port = args.port;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,async_mvc=debug")),
        )
        .with_writer(std::io::stderr)
        .init();

    // The open-file limit sizes the server's connection limit (5% kept for everything else):
    // raised from the soft to the hard limit first, as servers usually do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let broker: Option<Arc<dyn MessageBroker>> = match &args.redis {
        None => None,
        Some(url) => match async_mvc_redis::RedisBroker::builder(url.as_str())
            .namespace("order-desk")
            .outbox(args.redis_outbox.unwrap_or(async_mvc_redis::DEFAULT_OUTBOX))
            .connect()
            .await
        {
            Ok(broker) => {
                tracing::info!(%url, role = ?args.role, "order desk on a cluster");
                Some(Arc::new(broker))
            }
            Err(error) => {
                eprintln!("cannot connect to redis at {url}: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    if let (Role::Worker, Some(broker)) = (args.role, &broker) {
        // The other application: packs, ships and renders invoices; no HTTP port.
        let workers = Workers::standalone(broker, &DemoConfig::default());
        println!(
            "Order desk worker on {}  (Ctrl+C to stop)",
            args.redis.as_deref().unwrap_or_default()
        );
        terminate_requested().await;
        tracing::info!("shutting down: finishing the jobs in progress");
        workers.shutdown().await;
        return ExitCode::SUCCESS;
    }
    let listener =
        match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
                return ExitCode::FAILURE;
            }
        };
    let address = listener
        .local_addr()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], port)));
    println!("Order desk listening on http://{address}/  (Ctrl+C to stop)");

    let desk = match (broker, args.role) {
        (None, _) => OrderDesk::new(DemoConfig::default()),
        (Some(broker), Role::Web) => OrderDesk::web(DemoConfig::default(), broker),
        (Some(broker), _) => OrderDesk::clustered(DemoConfig::default(), broker),
    };
    // Ctrl+C or SIGTERM: the async manager answers every long poll (304, its timeout result),
    // ends every stream, refuses new async requests (a reconnecting EventSource gets 204), and
    // gives running invoice tasks its grace period; then the server stops.
    let shutdown = desk.manager().clone().shutdown_on(async {
        terminate_requested().await;
        tracing::info!("shutting down");
    });
    // `async_mvc::serve` rather than `axum::serve`: at shutdown it still answers a connection
    // accepted (or queued) as the signal arrives, where axum's would close it unanswered.
    let serve = args.limits.apply(async_mvc::serve(listener, desk.router()));
    desk.attach_connection_stats(serve.connection_stats());
    match serve.with_graceful_shutdown(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl+C or SIGTERM.
async fn terminate_requested() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl+C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
