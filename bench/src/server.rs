//! The server process under test, shared by `bench-server` (the system allocator) and
//! `bench-server-mimalloc`: `--impl baseline|async-mvc [--port 0] [--serve axum|async-mvc]
//! [--send-timeout-ms N]`.
//!
//! Binds `127.0.0.1` (loopback only), prints `PORT <n>` on stdout once it listens, and serves
//! until its standard input closes (the orchestrator holds it open) or it is killed. `--serve`
//! picks the serve path: `axum::serve(listener, router.into_make_service())` (the default, with
//! `TCP_NODELAY` on accepted sockets) or `async_mvc::serve` with its default limits.
//! `--cluster memory|redis://…` serves W6's app ([`crate::cluster_app`]) on that broker
//! instead.

use std::{io::Write, net::SocketAddr, sync::Arc, time::Duration};

use async_mvc::cluster::InMemoryBroker;

use axum::serve::ListenerExt;
use tokio::net::TcpSocket;

use crate::{
    apps::{self, Impl, W5_THREADS},
    limits,
};

/// Which serve path runs the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServePath {
    /// `axum::serve(listener, router.into_make_service())`.
    Axum,
    /// `async_mvc::serve(listener, router)`.
    AsyncMvc,
}

/// Parses the arguments and runs the server; exits the process when done.
pub fn main() {
    let mut imp = None;
    let mut port = 0u16;
    let mut serve_path = ServePath::Axum;
    let mut send_timeout = None;
    let mut cluster = None;
    let mut worker = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--impl" => imp = args.next().as_deref().and_then(Impl::parse),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            "--serve" => {
                serve_path = match args.next().as_deref() {
                    Some("async-mvc") => ServePath::AsyncMvc,
                    _ => ServePath::Axum,
                }
            }
            "--cluster" => cluster = args.next(),
            // With `--cluster`: also run W6c's `JobListener`.
            "--worker" => worker = true,
            "--send-timeout-ms" => {
                send_timeout = args
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .map(Duration::from_millis)
            }
            other => {
                eprintln!("bench-server: unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    let Some(imp) = imp else {
        eprintln!("usage: bench-server --impl baseline|async-mvc [--port N] [--serve axum|async-mvc] [--send-timeout-ms N]");
        std::process::exit(2);
    };
    limits::raise_fd_limit();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The baseline's `spawn_blocking` gets as many threads as async-mvc's executor.
        .max_blocking_threads(W5_THREADS)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .expect("bind 127.0.0.1");
        let listener = socket.listen(4096).expect("listen");
        let port = listener.local_addr().expect("local address").port();
        println!("PORT {port}");
        std::io::stdout().flush().expect("stdout");

        // `--cluster memory|redis://…`: W6's app on that broker.
        let router = match cluster.as_deref() {
            None => apps::app(imp).0,
            Some("memory") => crate::cluster_app::router(Arc::new(InMemoryBroker::new()), worker),
            Some(url) => {
                let broker = async_mvc_redis::RedisBroker::builder(url)
                    .namespace("bench")
                    .connect()
                    .await
                    .expect("connect to redis");
                while !broker.metrics().subscribed {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                crate::cluster_app::router(broker.into(), worker)
            }
        };
        // Stop when the orchestrator closes our stdin (or dies).
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        };
        let result = match serve_path {
            ServePath::Axum => {
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, router.into_make_service())
                    .with_graceful_shutdown(stdin_closed)
                    .await
            }
            ServePath::AsyncMvc => {
                // `TCP_NODELAY` as on the `axum::serve` side.
                let mut serve = async_mvc::serve(listener, router).tcp_nodelay(true);
                if let Some(timeout) = send_timeout {
                    serve = serve.send_timeout(timeout);
                }
                serve.with_graceful_shutdown(stdin_closed).await
            }
        };
        if let Err(error) = result {
            eprintln!("bench-server: {error}");
        }
    });
    // Don't wait for pending long polls: exit at once.
    std::process::exit(0);
}
