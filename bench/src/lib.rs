//! Benchmark harness of async-mvc: the two servers under test and what the binaries share.
//!
//! - [`apps`]: the same endpoints twice, once hand-written on plain axum + tokio (the
//!   **baseline**) and once with async-mvc.
//! - [`clock`]: `CLOCK_MONOTONIC` nanoseconds, comparable across processes on one machine.
//! - [`limits`]: raising the open-file limit, reading a process's resident memory.
//!
//! Binaries: `bench` (the one command: orchestrator and load generator), `bench-server` (one
//! server process per implementation; [`server`]), `bench-server-mimalloc` (the same on
//! mimalloc) and `bench-inproc` (in-process workloads under a counting
//! allocator). See `BENCHMARKS.md` at the repository root.

pub mod apps;
pub mod clock;
pub mod cluster_app;
pub mod limits;
pub mod server;
