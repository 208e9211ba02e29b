//! [`AsyncTaskExecutor`]: the bounded executor that runs blocking `Callable`s (Spring's
//! `ThreadPoolTaskExecutor`). Admission, threads, cancellation and shutdown are documented on the
//! type. Bottom up: `config.rs` (settings, defaults, validation), `handle.rs` (what a submission
//! gives back), `pool.rs` (the admission and queue state machine, the workers),
//! `task_executor.rs` (the handle), `builder.rs` (building one).

mod builder;
mod config;
mod handle;
mod pool;
mod task_executor;
#[cfg(test)]
mod tests;

pub use builder::AsyncTaskExecutorBuilder;
pub use config::ExecutorConfigError;
pub use handle::{Rejected, TaskHandle, TaskPanicked};
pub use pool::ExecutorMetrics;
pub use task_executor::AsyncTaskExecutor;
