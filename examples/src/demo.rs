//! The demo binary's `main`, as a library function: the `demo` binary runs it, and
//! `soak --cluster` runs it in its own child processes (`soak demo --role web …`), so that the
//! soak needs no second binary built beside it.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use async_mvc::cluster::MessageBroker;
use tracing_subscriber::EnvFilter;

use crate::{
    cli::{self, Role, USAGE},
    ops::{self, Readiness},
    order_desk::{DemoConfig, OrderDesk, Workers},
};

/// The demo's log output: stderr, `info,async_mvc=debug` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,async_mvc=debug")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the demo with `args` (without the program name), reading unset flags from the
/// environment; returns when it has shut down (Ctrl+C or SIGTERM). Logs go through `tracing`:
/// install a subscriber first ([`init_logging`]).
pub async fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match cli::parse(args, |name| std::env::var(name).ok()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let port = args.port;
    // Before anything takes its metric handles (the executor, the manager, the server).
    ops::prometheus();

    // The open-file limit sizes the server's connection limit (5% kept for everything else):
    // raised from the soft to the hard limit first, as servers usually do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let mut ready = Readiness::always();
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
                ready = Readiness::broker(broker.clone());
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
        let metrics = match args.metrics_port {
            None => String::new(),
            Some(port) => match serve_ops(port, ready).await {
                Ok(address) => format!("; metrics on http://{address}/metrics"),
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::FAILURE;
                }
            },
        };
        println!(
            "Order desk worker on {}{metrics}  (Ctrl+C to stop)",
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
    }
    .ready_when(ready);
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

/// Serves `/metrics`, `/healthz` and `/readyz` on 127.0.0.1:`port` in a task: a worker's
/// operator port. Its address.
async fn serve_ops(port: u16, ready: Readiness) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|error| format!("cannot listen on 127.0.0.1:{port}: {error}"))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("no local address: {error}"))?;
    tokio::spawn(async move {
        if let Err(error) = async_mvc::serve(listener, ops::routes(ready)).await {
            tracing::error!(%error, "the metrics port stopped");
        }
    });
    Ok(address)
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
