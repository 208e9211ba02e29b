//! [`AsyncTaskExecutorBuilder`]: builds an executor from checked settings (also
//! [`AsyncTaskExecutor::builder`] and `Default`).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use super::{
    config::{Config, ExecutorConfigError},
    pool::Inner,
    task_executor::AsyncTaskExecutor,
};

/// Builds an [`AsyncTaskExecutor`]: Spring's `ThreadPoolTaskExecutor` setters, as consuming
/// setters. Starts from the [defaults](AsyncTaskExecutor::default); nothing is checked until
/// [`build`](Self::build).
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct AsyncTaskExecutorBuilder {
    config: Config,
}

impl AsyncTaskExecutorBuilder {
    /// Tasks that run at once before further ones queue (Spring's `corePoolSize`; default 8).
    /// It governs admission only: idle threads are retired after
    /// [`keep_alive`](Self::keep_alive) whatever this number.
    pub fn core_pool_size(mut self, threads: usize) -> Self {
        self.config.core_pool_size = threads;
        self
    }

    /// The most tasks running at once, hence the most task threads (Spring's `maxPoolSize`;
    /// default 32). Must be at least 1 and at least `core_pool_size`.
    pub fn max_pool_size(mut self, threads: usize) -> Self {
        self.config.max_pool_size = threads;
        self
    }

    /// The most tasks waiting for a thread (Spring's `queueCapacity`; default 256). `0` means no
    /// queue: a task runs at once or is rejected.
    pub fn queue_capacity(mut self, tasks: usize) -> Self {
        self.config.queue_capacity = tasks;
        self
    }

    /// How long an idle task thread lives before it exits (Spring's `keepAliveSeconds`;
    /// default 60 s). Applies to every idle thread, "core" ones included.
    pub fn keep_alive(mut self, idle: Duration) -> Self {
        self.config.keep_alive = idle;
        self
    }

    /// The start of every thread's name, followed by a number from 1 (Spring's
    /// `threadNamePrefix`; default `async-mvc-task-`). Must be non-empty, without NUL bytes.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.thread_name_prefix = prefix.into();
        self
    }

    /// The `Retry-After` hint every [`Rejected`](super::Rejected) carries (default 1 s).
    pub fn retry_after(mut self, hint: Duration) -> Self {
        self.config.retry_after = hint;
        self
    }

    /// Checks the settings and starts the executor's runtime (its driver thread; task threads
    /// start on demand).
    ///
    /// # Errors
    ///
    /// [`ExecutorConfigError`] when `max_pool_size` is 0 or above
    /// [`MAX_POOL_SIZE_LIMIT`](AsyncTaskExecutor::MAX_POOL_SIZE_LIMIT), `core_pool_size`
    /// exceeds it, the thread name prefix is empty or holds a NUL byte, or the runtime cannot
    /// be started.
    pub fn build(self) -> Result<AsyncTaskExecutor, ExecutorConfigError> {
        let config = self.config;
        config.validate()?;

        let prefix = config.thread_name_prefix.clone();
        let counter = AtomicUsize::new(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(config.max_pool_size)
            .thread_keep_alive(config.keep_alive)
            .thread_name_fn(move || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                format!("{prefix}{n}")
            })
            .enable_all()
            .build()
            .map_err(ExecutorConfigError::Runtime)?;

        Ok(AsyncTaskExecutor::from_pool(Arc::new(Inner::new(
            config, runtime,
        ))))
    }
}

impl AsyncTaskExecutor {
    /// A builder starting from the [defaults](Self::default).
    pub fn builder() -> AsyncTaskExecutorBuilder {
        AsyncTaskExecutorBuilder::default()
    }
}

impl Default for AsyncTaskExecutor {
    /// The executor that is safe under load: core 8, max 32 threads, queue capacity 256,
    /// keep-alive 60 s, prefix `async-mvc-task-`, `Retry-After` 1 s. Bounded everywhere.
    ///
    /// # Panics
    ///
    /// If the OS refuses to start the runtime's driver thread; use
    /// `AsyncTaskExecutor::builder().build()` to get that as an error.
    fn default() -> Self {
        AsyncTaskExecutor::builder()
            .build()
            .unwrap_or_else(|error| panic!("cannot start the default async task executor: {error}"))
    }
}
