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

use std::process::ExitCode;

/// jemalloc, with background threads that return freed memory to the system: after 2,000 slow
/// SSE readers leave, RSS falls back to within ~3 KB per reader of where it started, where the
/// system allocator keeps all of it (BENCHMARKS.md, W8j).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    async_mvc_examples::demo::init_logging();
    async_mvc_examples::demo::run(std::env::args().skip(1)).await
}
