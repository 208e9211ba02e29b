//! One server under test: `bench-server --impl baseline|async-mvc [--port 0]`.
//!
//! Binds `127.0.0.1` (loopback only), prints `PORT <n>` on stdout once it listens, and serves
//! until its standard input closes (the orchestrator holds it open) or it is killed.

use std::{io::Write, net::SocketAddr};

use async_mvc_bench::{
    apps::{self, Impl, W5_THREADS},
    limits,
};
use axum::serve::ListenerExt;
use tokio::net::TcpSocket;

fn main() {
    let mut imp = None;
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--impl" => imp = args.next().as_deref().and_then(Impl::parse),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            other => {
                eprintln!("bench-server: unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    let Some(imp) = imp else {
        eprintln!("usage: bench-server --impl baseline|async-mvc [--port N]");
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

        let (router, _control) = apps::app(imp);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // Stop when the orchestrator closes our stdin (or dies).
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        });
        let serve =
            axum::serve(listener, router.into_make_service()).with_graceful_shutdown(async move {
                let _ = stdin_closed.await;
            });
        if let Err(error) = serve.await {
            eprintln!("bench-server: {error}");
        }
    });
    // Don't wait for pending long polls: exit at once.
    std::process::exit(0);
}
