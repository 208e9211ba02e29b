//! [`AsyncTaskExecutor`]: the handle to one pool — submission, counts, settings.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    config,
    handle::{Rejected, TaskHandle},
    pool::{ExecutorMetrics, Inner},
};

/// Spring's `ThreadPoolTaskExecutor`, bounded: runs blocking closures on a pool of at most
/// `max_pool_size` threads with a bounded FIFO queue, and rejects at once what does not fit.
///
/// Cheap to clone (an `Arc`); clones share one pool.
///
/// Spring's default executor starts a thread per call and falls over under load; a bounded
/// servlet-container pool throws `RejectedExecutionException`; tokio's `spawn_blocking` queues
/// without limit. This executor is bounded everywhere: every submission is either **admitted**
/// (it runs now, or waits in a bounded FIFO queue) or **rejected at once** with a [`Rejected`]
/// that carries a `Retry-After` hint.
///
/// # Admission (Spring's `ThreadPoolExecutor` rules)
///
/// [`try_submit`](AsyncTaskExecutor::try_submit) decides under one short lock, in this order:
///
/// 1. fewer than `core_pool_size` tasks running → the task runs now;
/// 2. else, fewer than `queue_capacity` tasks queued → it waits in the FIFO queue;
/// 3. else, fewer than `max_pool_size` tasks running → it runs now on an extra thread;
/// 4. else → [`Rejected`], counted in [`ExecutorMetrics::rejected`].
///
/// So the pool grows beyond `core_pool_size` only once the queue is full, exactly like Java's
/// `ThreadPoolExecutor`. With `core_pool_size(0)` the first task still runs at once (Java starts
/// a worker when none is running), so queued tasks never wait while nothing runs.
///
/// When a running task returns, its thread takes the first queued task and runs it (the slot is
/// handed over, the running count is unchanged); with nothing queued the slot is freed. The slot
/// is released **before** the task's [`TaskHandle`] resolves: once you have a task's result, its
/// capacity is available again.
///
/// # Cancellation
///
/// * A **queued** task whose [`TaskHandle`] is dropped (the request timed out, the client left)
///   is taken out of the queue at once: it frees its queue place, its closure is dropped on the
///   spot and it never runs ([`ExecutorMetrics::cancelled`]).
/// * A **running** task whose handle is dropped runs to its end — a thread cannot be interrupted;
///   pass a cancellation token into the closure and check it — and holds its slot until it
///   returns, so the counts stay honest.
///
/// # Panics in tasks
///
/// A panic is caught (`catch_unwind`): the handle resolves to [`TaskPanicked`](super::TaskPanicked) with the panic
/// message, the slot is released, and the thread lives on; the pool keeps its full capacity.
/// (The process's panic hook still reports the panic, as usual.)
///
/// # Threads
///
/// Each executor owns a dedicated tokio runtime:
///
/// * admitted tasks run on its **blocking threads** (`spawn_blocking`), at most `max_pool_size`
///   of them, started on demand;
/// * one **driver thread** (the runtime's single async worker) drives timers and I/O, so code
///   inside a task may use `tokio::runtime::Handle::current().block_on(..)` with tokio timers
///   and I/O. It runs no tasks of yours.
///
/// Every thread is named `{thread_name_prefix}{n}`, `n` counting from 1 per executor (the
/// driver thread included), e.g. `async-mvc-task-3`.
///
/// **Keep-alive:** a blocking thread idle for `keep_alive` exits, and a new one is started when
/// needed. Unlike Java, tokio retires idle threads regardless of `core_pool_size` — *core* ones
/// included: `core_pool_size` governs admission (how many tasks run before others queue), not
/// how many threads are kept warm.
///
/// A thread that has just freed its slot needs a moment to return to the pool; a task admitted
/// in that moment waits for it rather than start a thread beyond `max_pool_size`. Tasks should
/// not call `spawn_blocking` on the executor's runtime themselves: such work would share the
/// `max_pool_size` threads and wait behind them.
///
/// # Shutdown
///
/// Dropping the last clone of the executor does not cancel admitted work: running and queued tasks still run and their handles resolve; the
/// runtime shuts down (without blocking, so dropping inside async code is fine) once the last
/// of them has returned.
///
/// # Defaults — safe under load
///
/// [`AsyncTaskExecutor::default()`]: core 8, max 32 threads, queue capacity 256, keep-alive
/// 60 s, thread name prefix `async-mvc-task-`, `Retry-After` 1 s. At most 32 blocking calls
/// run and 256 wait; anything beyond is rejected at once instead of piling up.
///
/// | Spring | async-mvc |
/// |---|---|
/// | `ThreadPoolTaskExecutor` | [`AsyncTaskExecutor`] |
/// | `setCorePoolSize` / `setMaxPoolSize` / `setQueueCapacity` | [`core_pool_size`](super::AsyncTaskExecutorBuilder::core_pool_size) / [`max_pool_size`](super::AsyncTaskExecutorBuilder::max_pool_size) / [`queue_capacity`](super::AsyncTaskExecutorBuilder::queue_capacity) |
/// | `setKeepAliveSeconds` / `setThreadNamePrefix` | [`keep_alive`](super::AsyncTaskExecutorBuilder::keep_alive) / [`thread_name_prefix`](super::AsyncTaskExecutorBuilder::thread_name_prefix) |
/// | `submit(Callable)` → `Future` | [`try_submit`](AsyncTaskExecutor::try_submit) → [`TaskHandle`] |
/// | `RejectedExecutionException` | [`Rejected`] |
/// | `getActiveCount()`, `getQueueSize()`, … | [`metrics`](AsyncTaskExecutor::metrics) |
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use async_mvc::AsyncTaskExecutor;
///
/// let executor = AsyncTaskExecutor::builder()
///     .core_pool_size(2)
///     .max_pool_size(4)
///     .queue_capacity(10)
///     .retry_after(Duration::from_secs(2))
///     .build()
///     .expect("a valid pool");
///
/// match executor.try_submit(|| 6 * 7) {
///     Ok(handle) => assert_eq!(handle.await.expect("no panic"), 42),
///     Err(rejected) => println!("busy, retry after {:?}", rejected.retry_after),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncTaskExecutor {
    inner: Arc<Inner>,
}

impl AsyncTaskExecutor {
    /// Wraps a built pool.
    pub(super) fn from_pool(inner: Arc<Inner>) -> Self {
        AsyncTaskExecutor { inner }
    }

    /// The pool, for the tests' look at its lifetime.
    #[cfg(test)]
    pub(super) fn pool(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Default `core_pool_size`: 8.
    pub const DEFAULT_CORE_POOL_SIZE: usize = config::DEFAULT_CORE_POOL_SIZE;
    /// Default `max_pool_size`: 32.
    pub const DEFAULT_MAX_POOL_SIZE: usize = config::DEFAULT_MAX_POOL_SIZE;
    /// Default `queue_capacity`: 256.
    pub const DEFAULT_QUEUE_CAPACITY: usize = config::DEFAULT_QUEUE_CAPACITY;
    /// Default `keep_alive`: 60 s.
    pub const DEFAULT_KEEP_ALIVE: Duration = config::DEFAULT_KEEP_ALIVE;
    /// Default thread name prefix: `async-mvc-task-`.
    pub const DEFAULT_THREAD_NAME_PREFIX: &'static str = config::DEFAULT_THREAD_NAME_PREFIX;
    /// Default `Retry-After` hint of a [`Rejected`]: 1 s.
    pub const DEFAULT_RETRY_AFTER: Duration = config::DEFAULT_RETRY_AFTER;
    /// The largest `max_pool_size` accepted: 65 536 threads.
    pub const MAX_POOL_SIZE_LIMIT: usize = config::MAX_POOL_SIZE_LIMIT;

    /// Admits `task` or rejects it at once (pool busy and queue full).
    ///
    /// Never blocks beyond a short bookkeeping lock, so it is fine to call from async code.
    /// An admitted task runs now or waits in the FIFO queue; its [`TaskHandle`] resolves to
    /// its value, or to [`TaskPanicked`](super::TaskPanicked) if it panicked. Dropping the handle of a queued task
    /// cancels it; a running task runs to its end regardless.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when `max_pool_size` tasks are running and `queue_capacity` are waiting;
    /// `task` is dropped (on this thread) without running.
    ///
    /// # Panics
    ///
    /// Only if the operating system refuses to start a thread while none of the executor's
    /// threads is free (tokio's `spawn_blocking` panics then).
    pub fn try_submit<F, T>(&self, task: F) -> Result<TaskHandle<T>, Rejected>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.inner.submit(task)
    }

    /// A consistent snapshot of the executor's counts.
    pub fn metrics(&self) -> ExecutorMetrics {
        self.inner.metrics()
    }

    /// Tasks that run at once before further ones queue.
    pub fn core_pool_size(&self) -> usize {
        self.inner.config().core_pool_size
    }

    /// The most tasks running at once (and task threads).
    pub fn max_pool_size(&self) -> usize {
        self.inner.config().max_pool_size
    }

    /// The most tasks waiting in the queue.
    pub fn queue_capacity(&self) -> usize {
        self.inner.config().queue_capacity
    }

    /// How long an idle thread lives.
    pub fn keep_alive(&self) -> Duration {
        self.inner.config().keep_alive
    }

    /// The start of every thread's name.
    pub fn thread_name_prefix(&self) -> &str {
        &self.inner.config().thread_name_prefix
    }

    /// The `Retry-After` hint of a [`Rejected`].
    pub fn retry_after(&self) -> Duration {
        self.inner.config().retry_after
    }
}

impl fmt::Debug for AsyncTaskExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.inner.config();
        f.debug_struct("AsyncTaskExecutor")
            .field("core_pool_size", &config.core_pool_size)
            .field("max_pool_size", &config.max_pool_size)
            .field("queue_capacity", &config.queue_capacity)
            .field("keep_alive", &config.keep_alive)
            .field("thread_name_prefix", &config.thread_name_prefix)
            .field("retry_after", &config.retry_after)
            .field("metrics", &self.metrics())
            .finish()
    }
}
