//! The order desk demo server.
//!
//! ```text
//! cargo run --release -p async-mvc-examples --bin demo [-- --port N]
//! ```
//!
//! Serves on `127.0.0.1:8080`; the port comes from `--port N` (or `--port=N`), else the `PORT`
//! environment variable, else 8080. Logs go to stderr; `RUST_LOG` overrides the default filter.
//! Ctrl+C answers the waiting long polls with `304`, ends the open event streams and feeds, and
//! shuts down gracefully.

use std::{net::SocketAddr, process::ExitCode};

use async_mvc_examples::order_desk::{DemoConfig, OrderDesk};
use tracing_subscriber::EnvFilter;

const DEFAULT_PORT: u16 = 8080;

const USAGE: &str = "usage: demo [--port N]   (or set PORT; default 8080)";

#[tokio::main]
async fn main() -> ExitCode {
    let port = match port(std::env::args().skip(1), std::env::var("PORT").ok()) {
        Ok(port) => port,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,async_mvc=debug")),
        )
        .with_writer(std::io::stderr)
        .init();

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

    let desk = OrderDesk::new(DemoConfig::default());
    // Ctrl+C or SIGTERM: the async manager answers every long poll (304, its timeout result),
    // ends every stream, refuses new async requests (a reconnecting EventSource gets 204), and
    // gives running invoice tasks its grace period; then the server stops.
    let shutdown = desk.manager().clone().shutdown_on(async {
        terminate_requested().await;
        tracing::info!("shutting down");
    });
    // `async_mvc::serve` rather than `axum::serve`: at shutdown it still answers a connection
    // accepted (or queued) as the signal arrives, where axum's would close it unanswered.
    match async_mvc::serve(listener, desk.router())
        .with_graceful_shutdown(shutdown)
        .await
    {
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

/// The port from the arguments (`--port N`, `--port=N`), else `env_port`, else 8080.
fn port(mut args: impl Iterator<Item = String>, env_port: Option<String>) -> Result<u16, String> {
    let mut flag = None;
    while let Some(arg) = args.next() {
        let value = if arg == "--port" {
            args.next().ok_or("--port needs a value")?
        } else if let Some(value) = arg.strip_prefix("--port=") {
            value.to_owned()
        } else if arg == "-h" || arg == "--help" {
            return Err("Serves the async-mvc order desk demo on 127.0.0.1.".to_owned());
        } else {
            return Err(format!("unknown argument `{arg}`"));
        };
        flag = Some(value);
    }
    match flag.or(env_port) {
        None => Ok(DEFAULT_PORT),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("invalid port `{value}`: expected a number from 0 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::port;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn flag_wins_over_env_which_wins_over_default() {
        assert_eq!(port(args(&[]), None), Ok(8080));
        assert_eq!(port(args(&[]), Some("9000".into())), Ok(9000));
        assert_eq!(
            port(args(&["--port", "9001"]), Some("9000".into())),
            Ok(9001)
        );
        assert_eq!(port(args(&["--port=9002"]), None), Ok(9002));
        assert!(port(args(&["--port"]), None).is_err());
        assert!(port(args(&["--port", "x"]), None).is_err());
        assert!(port(args(&[]), Some("70000".into())).is_err());
        assert!(port(args(&["--verbose"]), None).is_err());
    }
}
