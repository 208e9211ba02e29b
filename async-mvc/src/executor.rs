//! [`AsyncTaskExecutor`]: the bounded executor that runs blocking `Callable`s (Spring's
//! `ThreadPoolTaskExecutor`). Admission, threads, cancellation and shutdown are documented on the
//! type.

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    mem,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    runtime::{Handle, Runtime},
    sync::oneshot,
};

use crate::guard;

/// The message of the [`TaskPanicked`] a handle resolves to when its task was dropped without
/// running: only when the executor could not start a thread for it.
const LOST_TASK_MESSAGE: &str = "the task was dropped before it could run";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Config {
    core_pool_size: usize,
    max_pool_size: usize,
    queue_capacity: usize,
    keep_alive: Duration,
    thread_name_prefix: String,
    retry_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            core_pool_size: AsyncTaskExecutor::DEFAULT_CORE_POOL_SIZE,
            max_pool_size: AsyncTaskExecutor::DEFAULT_MAX_POOL_SIZE,
            queue_capacity: AsyncTaskExecutor::DEFAULT_QUEUE_CAPACITY,
            keep_alive: AsyncTaskExecutor::DEFAULT_KEEP_ALIVE,
            thread_name_prefix: AsyncTaskExecutor::DEFAULT_THREAD_NAME_PREFIX.to_owned(),
            retry_after: AsyncTaskExecutor::DEFAULT_RETRY_AFTER,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), ExecutorConfigError> {
        if self.max_pool_size == 0 {
            return Err(ExecutorConfigError::ZeroMaxPoolSize);
        }
        if self.max_pool_size > AsyncTaskExecutor::MAX_POOL_SIZE_LIMIT {
            return Err(ExecutorConfigError::MaxPoolSizeTooLarge {
                max: self.max_pool_size,
                limit: AsyncTaskExecutor::MAX_POOL_SIZE_LIMIT,
            });
        }
        if self.core_pool_size > self.max_pool_size {
            return Err(ExecutorConfigError::CoreExceedsMax {
                core: self.core_pool_size,
                max: self.max_pool_size,
            });
        }
        if self.thread_name_prefix.is_empty() {
            return Err(ExecutorConfigError::EmptyThreadNamePrefix);
        }
        if self.thread_name_prefix.contains('\0') {
            return Err(ExecutorConfigError::ThreadNamePrefixContainsNul);
        }
        Ok(())
    }
}

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

    /// The `Retry-After` hint every [`Rejected`] carries (default 1 s).
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

        Ok(AsyncTaskExecutor {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
                state: Mutex::new(State::default()),
                config,
            }),
        })
    }
}

/// Why [`AsyncTaskExecutorBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorConfigError {
    /// `max_pool_size` was 0: nothing could ever run.
    #[error("max_pool_size must be at least 1")]
    ZeroMaxPoolSize,
    /// `max_pool_size` was above [`AsyncTaskExecutor::MAX_POOL_SIZE_LIMIT`].
    #[error("max_pool_size ({max}) exceeds the limit of {limit} threads")]
    MaxPoolSizeTooLarge {
        /// The configured `max_pool_size`.
        max: usize,
        /// The limit.
        limit: usize,
    },
    /// `core_pool_size` was larger than `max_pool_size`.
    #[error("core_pool_size ({core}) exceeds max_pool_size ({max})")]
    CoreExceedsMax {
        /// The configured `core_pool_size`.
        core: usize,
        /// The configured `max_pool_size`.
        max: usize,
    },
    /// The thread name prefix was empty.
    #[error("thread_name_prefix must not be empty")]
    EmptyThreadNamePrefix,
    /// The thread name prefix held a NUL byte, which thread names cannot contain.
    #[error("thread_name_prefix must not contain a NUL byte")]
    ThreadNamePrefixContainsNul,
    /// The executor's runtime could not be started (the OS refused a thread, …).
    #[error("could not start the executor's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

// ---------------------------------------------------------------------------------------------
// The executor
// ---------------------------------------------------------------------------------------------

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
/// A panic is caught (`catch_unwind`): the handle resolves to [`TaskPanicked`] with the panic
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
/// | `setCorePoolSize` / `setMaxPoolSize` / `setQueueCapacity` | [`core_pool_size`](AsyncTaskExecutorBuilder::core_pool_size) / [`max_pool_size`](AsyncTaskExecutorBuilder::max_pool_size) / [`queue_capacity`](AsyncTaskExecutorBuilder::queue_capacity) |
/// | `setKeepAliveSeconds` / `setThreadNamePrefix` | [`keep_alive`](AsyncTaskExecutorBuilder::keep_alive) / [`thread_name_prefix`](AsyncTaskExecutorBuilder::thread_name_prefix) |
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

struct Inner {
    config: Config,
    state: Mutex<State>,
    /// Spawns onto `runtime`, which lives as long as this struct.
    handle: Handle,
    /// Taken out and shut down in the background on drop: dropping a runtime the usual way
    /// blocks, and panics inside async code.
    runtime: Option<Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Default)]
struct State {
    /// Tasks holding a slot (running, or handed to a thread that is about to run them).
    active: usize,
    /// Waiting tasks by admission number: FIFO order, and removal by id when a handle drops.
    queue: BTreeMap<u64, Box<dyn Job>>,
    next_id: u64,
    completed: u64,
    panicked: u64,
    rejected: u64,
    cancelled: u64,
    largest_active: usize,
    largest_queued: usize,
}

impl State {
    fn take_slot(&mut self) {
        self.active += 1;
        self.largest_active = self.largest_active.max(self.active);
    }

    fn free_slot(&mut self) {
        debug_assert!(self.active > 0, "slot released twice");
        self.active = self.active.saturating_sub(1);
    }
}

impl Inner {
    /// The lock guards bookkeeping only, never user code, so a poisoned lock (impossible in
    /// practice) still holds consistent counts.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a finished task, then hands its slot to the first queued task, or frees it.
    fn finish(&self, outcome: Outcome) -> Option<Box<dyn Job>> {
        let mut state = self.lock();
        match outcome {
            Outcome::Completed => state.completed += 1,
            Outcome::Panicked => state.panicked += 1,
            Outcome::Cancelled => state.cancelled += 1,
        }
        match state.queue.pop_first() {
            Some((_, next)) => Some(next),
            None => {
                state.free_slot();
                None
            }
        }
    }

    /// A worker was dropped before it ran (the OS could not give it a thread): frees its slot.
    /// If nothing runs any more, the queue would never drain, so the queued tasks are given up
    /// too (their handles resolve to an error instead of waiting forever).
    fn abandon_slot(&self) -> BTreeMap<u64, Box<dyn Job>> {
        let mut state = self.lock();
        state.free_slot();
        state.cancelled += 1;
        if state.active == 0 {
            let orphans = mem::take(&mut state.queue);
            state.cancelled += orphans.len() as u64;
            orphans
        } else {
            BTreeMap::new()
        }
    }
}

enum Admission {
    Run(Box<dyn Job>),
    Queued(u64),
    Rejected(Rejected, Box<dyn Job>),
}

impl AsyncTaskExecutor {
    /// Default `core_pool_size`: 8.
    pub const DEFAULT_CORE_POOL_SIZE: usize = 8;
    /// Default `max_pool_size`: 32.
    pub const DEFAULT_MAX_POOL_SIZE: usize = 32;
    /// Default `queue_capacity`: 256.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
    /// Default `keep_alive`: 60 s.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
    /// Default thread name prefix: `async-mvc-task-`.
    pub const DEFAULT_THREAD_NAME_PREFIX: &'static str = "async-mvc-task-";
    /// Default `Retry-After` hint of a [`Rejected`]: 1 s.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
    /// The largest `max_pool_size` accepted: 65 536 threads.
    pub const MAX_POOL_SIZE_LIMIT: usize = 65_536;

    /// A builder starting from the [defaults](Self::default).
    pub fn builder() -> AsyncTaskExecutorBuilder {
        AsyncTaskExecutorBuilder::default()
    }

    /// Admits `task` or rejects it at once (pool busy and queue full).
    ///
    /// Never blocks beyond a short bookkeeping lock, so it is fine to call from async code.
    /// An admitted task runs now or waits in the FIFO queue; its [`TaskHandle`] resolves to
    /// its value, or to [`TaskPanicked`] if it panicked. Dropping the handle of a queued task
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
        let (tx, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TaskCell {
            task: Some(task),
            result: None,
            tx,
        });

        let config = &self.inner.config;
        let admission = {
            let mut state = self.inner.lock();
            // `max(1)`: with core 0 the first task still runs at once, as in Java.
            if state.active < config.core_pool_size.max(1) {
                state.take_slot();
                Admission::Run(job)
            } else if state.queue.len() < config.queue_capacity {
                let id = state.next_id;
                state.next_id += 1;
                state.queue.insert(id, job);
                state.largest_queued = state.largest_queued.max(state.queue.len());
                Admission::Queued(id)
            } else if state.active < config.max_pool_size {
                state.take_slot();
                Admission::Run(job)
            } else {
                state.rejected += 1;
                let rejected = Rejected {
                    retry_after: config.retry_after,
                    active: state.active,
                    queued: state.queue.len(),
                    max_pool_size: config.max_pool_size,
                    queue_capacity: config.queue_capacity,
                };
                Admission::Rejected(rejected, job)
            }
        };

        let queued_id = match admission {
            Admission::Run(job) => {
                let worker = Worker {
                    inner: Arc::clone(&self.inner),
                    job: Some(job),
                };
                // The JoinHandle is not needed: the result travels by the oneshot.
                drop(self.inner.handle.spawn_blocking(move || worker.run()));
                None
            }
            Admission::Queued(id) => Some(id),
            Admission::Rejected(rejected, job) => {
                // Drop the closure outside the lock.
                drop(job);
                tracing::debug!(
                    active = rejected.active,
                    queued = rejected.queued,
                    "async task executor saturated: task rejected"
                );
                return Err(rejected);
            }
        };

        Ok(TaskHandle {
            rx,
            inner: Arc::downgrade(&self.inner),
            queued_id,
            done: false,
        })
    }

    /// A consistent snapshot of the executor's counts.
    pub fn metrics(&self) -> ExecutorMetrics {
        let state = self.inner.lock();
        ExecutorMetrics {
            active: state.active,
            queued: state.queue.len(),
            completed: state.completed,
            panicked: state.panicked,
            rejected: state.rejected,
            cancelled: state.cancelled,
            largest_active: state.largest_active,
            largest_queued: state.largest_queued,
        }
    }

    /// Tasks that run at once before further ones queue.
    pub fn core_pool_size(&self) -> usize {
        self.inner.config.core_pool_size
    }

    /// The most tasks running at once (and task threads).
    pub fn max_pool_size(&self) -> usize {
        self.inner.config.max_pool_size
    }

    /// The most tasks waiting in the queue.
    pub fn queue_capacity(&self) -> usize {
        self.inner.config.queue_capacity
    }

    /// How long an idle thread lives.
    pub fn keep_alive(&self) -> Duration {
        self.inner.config.keep_alive
    }

    /// The start of every thread's name.
    pub fn thread_name_prefix(&self) -> &str {
        &self.inner.config.thread_name_prefix
    }

    /// The `Retry-After` hint of a [`Rejected`].
    pub fn retry_after(&self) -> Duration {
        self.inner.config.retry_after
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

impl fmt::Debug for AsyncTaskExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner.config;
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

/// A snapshot of an [`AsyncTaskExecutor`]'s counts (Spring's `getActiveCount()`,
/// `getQueueSize()`, `getCompletedTaskCount()`, `getLargestPoolSize()`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExecutorMetrics {
    /// Tasks holding a slot (running on a thread); never more than `max_pool_size`.
    pub active: usize,
    /// Tasks waiting in the queue; never more than `queue_capacity`.
    pub queued: usize,
    /// Tasks that returned a value.
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Submissions refused because the pool was busy and the queue full.
    pub rejected: u64,
    /// Admitted tasks that never ran: their handle was dropped while they were queued (or,
    /// rarely, the OS could not give them a thread).
    pub cancelled: u64,
    /// The most tasks that ever ran at once.
    pub largest_active: usize,
    /// The most tasks that ever waited at once.
    pub largest_queued: usize,
}

// ---------------------------------------------------------------------------------------------
// Tasks, workers, handles
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Panicked,
    Cancelled,
}

/// A type-erased admitted task.
trait Job: Send {
    /// Its handle is gone: no one wants the result.
    fn is_abandoned(&self) -> bool;
    /// Runs the closure (catching a panic) and keeps its result.
    fn run(&mut self) -> Outcome;
    /// Sends the kept result to the handle.
    fn deliver(self: Box<Self>);
}

struct TaskCell<F, T> {
    task: Option<F>,
    result: Option<Result<T, TaskPanicked>>,
    tx: oneshot::Sender<Result<T, TaskPanicked>>,
}

impl<F, T> Job for TaskCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn is_abandoned(&self) -> bool {
        self.tx.is_closed()
    }

    fn run(&mut self) -> Outcome {
        let Some(task) = self.task.take() else {
            return Outcome::Cancelled;
        };
        match guard::catch("async task", task) {
            Ok(value) => {
                self.result = Some(Ok(value));
                Outcome::Completed
            }
            Err(message) => {
                self.result = Some(Err(TaskPanicked { message }));
                Outcome::Panicked
            }
        }
    }

    fn deliver(self: Box<Self>) {
        let TaskCell { result, tx, .. } = *self;
        if let Some(result) = result {
            // The handle may be gone (a running task whose request ended): drop the value.
            drop(tx.send(result));
        }
    }
}

/// Runs admitted tasks on one blocking thread: its own, then queued ones handed to its slot.
struct Worker {
    inner: Arc<Inner>,
    /// `Some` until the worker starts: if tokio drops it unrun, `Drop` frees the slot.
    job: Option<Box<dyn Job>>,
}

impl Worker {
    fn run(mut self) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        loop {
            let outcome = if job.is_abandoned() {
                Outcome::Cancelled
            } else {
                // `Job::run` catches the task's panic; this is the backstop for anything else
                // in it that unwinds.
                guard::contain("async task", || job.run()).unwrap_or(Outcome::Panicked)
            };
            // Release (or hand over) the slot before the handle learns the result.
            let next = self.inner.finish(outcome);
            // Sending (or dropping an unwanted value) runs user `Drop` code: keep the thread.
            guard::contain("delivering an async task's value", move || job.deliver());
            match next {
                Some(next) => job = next,
                None => return,
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let orphans = self.inner.abandon_slot();
            drop(job);
            drop(orphans);
        }
    }
}

/// An admitted task's result: resolves to the task's value, or to [`TaskPanicked`] if it
/// panicked.
///
/// Dropping the handle of a **queued** task cancels it (it leaves the queue at once and never
/// runs); a **running** task runs to its end and keeps its slot until then. `Send`, `Unpin`;
/// like other futures it must not be polled again after it resolved.
#[must_use = "dropping the handle of a queued task cancels it"]
pub struct TaskHandle<T> {
    rx: oneshot::Receiver<Result<T, TaskPanicked>>,
    inner: Weak<Inner>,
    /// The queue id, if the task was queued when admitted.
    queued_id: Option<u64>,
    done: bool,
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskPanicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(received) => {
                this.done = true;
                Poll::Ready(received.unwrap_or_else(|_| {
                    Err(TaskPanicked {
                        message: LOST_TASK_MESSAGE.to_owned(),
                    })
                }))
            }
        }
    }
}

impl<T> Drop for TaskHandle<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(id) = self.queued_id else {
            return;
        };
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let removed = {
            let mut state = inner.lock();
            let removed = state.queue.remove(&id);
            if removed.is_some() {
                state.cancelled += 1;
            }
            removed
        };
        // The task's closure is dropped here, outside the lock.
        drop(removed);
    }
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("queued_when_admitted", &self.queued_id.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The executor refused a task at once: `max_pool_size` tasks were running and the queue was
/// full (Spring's `RejectedExecutionException`). Answer `503` with `Retry-After`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "task rejected: the executor is busy ({active}/{max_pool_size} running, \
     {queued}/{queue_capacity} queued); retry after {} ms",
    .retry_after.as_millis()
)]
#[non_exhaustive]
pub struct Rejected {
    /// When to try again: the executor's [`retry_after`](AsyncTaskExecutorBuilder::retry_after).
    pub retry_after: Duration,
    /// Tasks running when the task was refused.
    pub active: usize,
    /// Tasks queued when the task was refused.
    pub queued: usize,
    /// The executor's `max_pool_size`.
    pub max_pool_size: usize,
    /// The executor's `queue_capacity`.
    pub queue_capacity: usize,
}

/// The task panicked; `message` is the panic payload as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task panicked: {message}")]
pub struct TaskPanicked {
    /// The panic message (`&str` and `String` payloads), else `"non-string panic payload"`.
    /// In the rare case that the task was dropped before it ran (the OS could not start a
    /// thread for it), a message saying so.
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::sync::{Barrier, Condvar};

    use tokio::sync::mpsc;

    use super::*;

    /// Hang guard only: no test asserts on time.
    const GUARD: Duration = Duration::from_secs(30);

    async fn guarded<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(GUARD, future)
            .await
            .expect("hang guard: the test is stuck")
    }

    /// A latch blocking tasks until the test opens it.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gate {
        fn wait(&self) {
            let open = self.open.lock().unwrap();
            let (open, _) = self
                .opened
                .wait_timeout_while(open, GUARD, |open| !*open)
                .unwrap();
            assert!(*open, "hang guard: gate never opened");
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    fn executor(core: usize, max: usize, queue: usize) -> AsyncTaskExecutor {
        AsyncTaskExecutor::builder()
            .core_pool_size(core)
            .max_pool_size(max)
            .queue_capacity(queue)
            .build()
            .unwrap()
    }

    /// Submits a task that reports `id` when it starts, then waits for the gate.
    fn blocked(
        executor: &AsyncTaskExecutor,
        gate: &Arc<Gate>,
        started: &mpsc::UnboundedSender<usize>,
        id: usize,
    ) -> Result<TaskHandle<usize>, Rejected> {
        let gate = Arc::clone(gate);
        let started = started.clone();
        executor.try_submit(move || {
            started.send(id).unwrap();
            gate.wait();
            id
        })
    }

    #[test]
    fn handle_is_send_sync_and_unpin() {
        fn assert_traits<T: Send + Sync + Unpin>() {}
        assert_traits::<TaskHandle<String>>();
        assert_traits::<AsyncTaskExecutor>();
        assert_traits::<Rejected>();
        assert_traits::<TaskPanicked>();
    }

    #[tokio::test]
    async fn values_come_back() {
        let executor = executor(2, 4, 16);
        let handles: Vec<_> = (0..10u64)
            .map(|i| executor.try_submit(move || i * i).unwrap())
            .collect();
        for (i, handle) in (0..10u64).zip(handles) {
            assert_eq!(guarded(handle).await.unwrap(), i * i);
        }
        let text = executor.try_submit(|| String::from("hello")).unwrap();
        assert_eq!(guarded(text).await.unwrap(), "hello");

        let metrics = executor.metrics();
        assert_eq!(metrics.completed, 11);
        assert_eq!((metrics.active, metrics.queued), (0, 0));
    }

    #[tokio::test]
    async fn queued_tasks_run_in_fifo_order() {
        let executor = executor(1, 1, 3);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();
        let order = Arc::new(Mutex::new(Vec::new()));

        let first = blocked(&executor, &gate, &started, 0).unwrap();
        assert_eq!(guarded(started_rx.recv()).await, Some(0));
        let queued: Vec<_> = (1..=3)
            .map(|i| {
                let order = Arc::clone(&order);
                executor
                    .try_submit(move || order.lock().unwrap().push(i))
                    .unwrap()
            })
            .collect();
        assert_eq!(executor.metrics().queued, 3);
        assert!(executor.try_submit(|| ()).is_err(), "queue is full");

        gate.open();
        assert_eq!(guarded(first).await.unwrap(), 0);
        for handle in queued {
            guarded(handle).await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn saturated_executor_rejects_at_once_and_recovers() {
        let executor = executor(2, 2, 2);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));

        let submit = |gate: &Arc<Gate>, id: usize| {
            let (gate, started) = (Arc::clone(gate), started.clone());
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            executor.try_submit(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                started.send(id).unwrap();
                gate.wait();
                running.fetch_sub(1, Ordering::SeqCst);
                id
            })
        };

        let results: Vec<_> = (0..20).map(|id| submit(&gate, id)).collect();
        let (admitted, rejected): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        assert_eq!(admitted.len(), 4);
        assert_eq!(rejected.len(), 16);
        for rejection in rejected {
            let rejection = rejection.unwrap_err();
            assert_eq!(rejection.retry_after, Duration::from_secs(1));
            assert_eq!((rejection.active, rejection.queued), (2, 2));
            assert!(rejection.to_string().contains("retry after 1000 ms"));
        }
        let metrics = executor.metrics();
        assert_eq!((metrics.active, metrics.queued), (2, 2));
        assert_eq!(metrics.rejected, 16);

        // Two run, two wait.
        guarded(started_rx.recv()).await.unwrap();
        guarded(started_rx.recv()).await.unwrap();
        gate.open();
        let mut values = Vec::new();
        for handle in admitted {
            values.push(guarded(handle.unwrap()).await.unwrap());
        }
        assert_eq!(values, vec![0, 1, 2, 3]);
        assert!(
            peak.load(Ordering::SeqCst) <= 2,
            "never more than max_pool_size"
        );

        // Slots are released before handles resolve: the full capacity is back.
        let metrics = executor.metrics();
        assert_eq!((metrics.active, metrics.queued), (0, 0));
        assert_eq!(metrics.completed, 4);
        assert_eq!(metrics.largest_active, 2);
        assert_eq!(metrics.largest_queued, 2);
        let second_gate = Arc::new(Gate::default());
        let again: Vec<_> = (0..4)
            .map(|i| submit(&second_gate, 100 + i).unwrap())
            .collect();
        let metrics = executor.metrics();
        assert_eq!((metrics.active, metrics.queued), (2, 2));
        assert!(
            submit(&second_gate, 200).is_err(),
            "exactly max + queue admitted again"
        );
        second_gate.open();
        for handle in again {
            guarded(handle).await.unwrap();
        }
        assert_eq!(executor.metrics().rejected, 17);
    }

    #[tokio::test]
    async fn grows_from_core_to_max_only_when_queue_is_full() {
        let executor = executor(1, 2, 1);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();

        let first = blocked(&executor, &gate, &started, 1).unwrap();
        assert_eq!(
            (executor.metrics().active, executor.metrics().queued),
            (1, 0)
        );
        let second = blocked(&executor, &gate, &started, 2).unwrap();
        assert_eq!(
            (executor.metrics().active, executor.metrics().queued),
            (1, 1)
        );
        let third = blocked(&executor, &gate, &started, 3).unwrap();
        assert_eq!(
            (executor.metrics().active, executor.metrics().queued),
            (2, 1)
        );
        assert!(blocked(&executor, &gate, &started, 4).is_err());

        // The 1st and the 3rd run; the 2nd still waits.
        let mut running = vec![
            guarded(started_rx.recv()).await.unwrap(),
            guarded(started_rx.recv()).await.unwrap(),
        ];
        running.sort_unstable();
        assert_eq!(running, vec![1, 3]);
        assert_eq!(executor.metrics().queued, 1);

        gate.open();
        assert_eq!(guarded(first).await.unwrap(), 1);
        assert_eq!(guarded(second).await.unwrap(), 2);
        assert_eq!(guarded(third).await.unwrap(), 3);
        let metrics = executor.metrics();
        assert_eq!(
            (metrics.rejected, metrics.completed, metrics.active),
            (1, 3, 0)
        );
    }

    #[tokio::test]
    async fn core_zero_still_runs_the_first_task() {
        let executor = executor(0, 2, 2);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();

        let handles: Vec<_> = (0..4)
            .map(|i| blocked(&executor, &gate, &started, i).unwrap())
            .collect();
        assert!(blocked(&executor, &gate, &started, 4).is_err());
        let metrics = executor.metrics();
        assert_eq!((metrics.active, metrics.queued), (2, 2));
        let mut running = vec![
            guarded(started_rx.recv()).await.unwrap(),
            guarded(started_rx.recv()).await.unwrap(),
        ];
        running.sort_unstable();
        assert_eq!(running, vec![0, 3]);
        gate.open();
        for handle in handles {
            guarded(handle).await.unwrap();
        }
    }

    #[tokio::test]
    async fn zero_queue_capacity_runs_or_rejects() {
        let executor = executor(1, 2, 0);
        let gate = Arc::new(Gate::default());
        let (started, _started_rx) = mpsc::unbounded_channel();
        let a = blocked(&executor, &gate, &started, 0).unwrap();
        let b = blocked(&executor, &gate, &started, 1).unwrap();
        assert!(blocked(&executor, &gate, &started, 2).is_err());
        let metrics = executor.metrics();
        assert_eq!(
            (metrics.active, metrics.queued, metrics.rejected),
            (2, 0, 1)
        );
        gate.open();
        assert_eq!(guarded(a).await.unwrap(), 0);
        assert_eq!(guarded(b).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn zero_keep_alive_still_runs_tasks() {
        let executor = AsyncTaskExecutor::builder()
            .core_pool_size(1)
            .max_pool_size(1)
            .queue_capacity(0)
            .keep_alive(Duration::ZERO)
            .build()
            .unwrap();
        for i in 0..5 {
            // Each time the previous thread may have exited; a new one starts.
            assert_eq!(
                guarded(executor.try_submit(move || i).unwrap())
                    .await
                    .unwrap(),
                i
            );
        }
    }

    #[tokio::test]
    async fn panicking_task_reports_message_and_keeps_full_capacity() {
        const MAX: usize = 3;
        let executor = executor(MAX, MAX, 0);

        // Every slot panics once.
        for i in 0..MAX {
            let handle = executor
                .try_submit(move || -> u32 { panic!("boom {i}") })
                .unwrap();
            let error = guarded(handle).await.unwrap_err();
            assert!(error.message.contains(&format!("boom {i}")), "{error}");
            assert!(error.to_string().starts_with("task panicked: boom"));
        }
        let metrics = executor.metrics();
        assert_eq!((metrics.panicked, metrics.active), (MAX as u64, 0));

        // All MAX slots still run at once: the barrier only opens with MAX parties.
        let barrier = Arc::new(Barrier::new(MAX));
        let handles: Vec<_> = (0..MAX)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                executor
                    .try_submit(move || barrier.wait().is_leader())
                    .unwrap()
            })
            .collect();
        let mut leaders = 0;
        for handle in handles {
            leaders += usize::from(guarded(handle).await.unwrap());
        }
        assert_eq!(leaders, 1);
        assert_eq!(executor.metrics().completed, MAX as u64);
    }

    #[tokio::test]
    async fn panic_payloads_become_text() {
        let executor = executor(1, 1, 4);
        let literal = executor.try_submit(|| panic!("static text")).unwrap();
        let formatted = executor
            .try_submit(|| -> () { panic!("{} text", "formatted") })
            .unwrap();
        let other = executor
            .try_submit(|| std::panic::panic_any(42_u8))
            .unwrap();
        assert_eq!(guarded(literal).await.unwrap_err().message, "static text");
        assert_eq!(
            guarded(formatted).await.unwrap_err().message,
            "formatted text"
        );
        assert_eq!(
            guarded(other).await.unwrap_err().message,
            "non-string panic payload"
        );
        assert_eq!(executor.metrics().panicked, 3);
    }

    #[tokio::test]
    async fn dropped_queued_handle_leaves_queue_and_never_runs() {
        let executor = executor(1, 1, 1);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();
        let first = blocked(&executor, &gate, &started, 0).unwrap();
        guarded(started_rx.recv()).await.unwrap();

        let ran = Arc::new(AtomicUsize::new(0));
        let captured = Arc::clone(&ran);
        let queued = executor
            .try_submit(move || captured.fetch_add(1, Ordering::SeqCst))
            .unwrap();
        assert_eq!(executor.metrics().queued, 1);
        assert!(executor.try_submit(|| 0).is_err(), "queue is full");

        drop(queued);
        let metrics = executor.metrics();
        assert_eq!((metrics.queued, metrics.cancelled), (0, 1));
        assert_eq!(
            Arc::strong_count(&ran),
            1,
            "the closure was dropped at once"
        );

        // Its queue place is free again.
        let next = executor.try_submit(|| 7).unwrap();
        gate.open();
        guarded(first).await.unwrap();
        assert_eq!(guarded(next).await.unwrap(), 7);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "the cancelled task never ran"
        );
        assert_eq!(executor.metrics().completed, 2);
    }

    #[tokio::test]
    async fn dropped_running_handle_keeps_slot_until_task_returns() {
        let executor = executor(1, 1, 1);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();
        let finished = Arc::new(AtomicUsize::new(0));

        let running = {
            let (gate, started, finished) =
                (Arc::clone(&gate), started.clone(), Arc::clone(&finished));
            executor
                .try_submit(move || {
                    started.send(0).unwrap();
                    gate.wait();
                    finished.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        };
        guarded(started_rx.recv()).await.unwrap();
        drop(running);

        // Still holding its slot: the next task has to queue.
        let metrics = executor.metrics();
        assert_eq!((metrics.active, metrics.cancelled), (1, 0));
        let finished_seen = Arc::clone(&finished);
        let next = executor
            .try_submit(move || finished_seen.load(Ordering::SeqCst))
            .unwrap();
        assert_eq!(executor.metrics().queued, 1);

        gate.open();
        // The queued task ran only after the dropped one finished and handed over its slot.
        assert_eq!(guarded(next).await.unwrap(), 1);
        let metrics = executor.metrics();
        assert_eq!(
            (metrics.active, metrics.queued, metrics.completed),
            (0, 0, 2)
        );
    }

    #[tokio::test]
    async fn threads_are_named_with_the_prefix() {
        let executor = AsyncTaskExecutor::builder()
            .thread_name_prefix("orders-worker-")
            .build()
            .unwrap();
        let name = executor
            .try_submit(|| std::thread::current().name().map(str::to_owned))
            .unwrap();
        let name = guarded(name).await.unwrap().unwrap();
        assert!(name.starts_with("orders-worker-"), "{name}");
        assert!(
            name["orders-worker-".len()..].parse::<usize>().is_ok(),
            "{name}"
        );
    }

    #[tokio::test]
    async fn tasks_can_block_on_tokio_timers() {
        let executor = executor(1, 1, 0);
        let handle = executor
            .try_submit(|| {
                Handle::current().block_on(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    "woke up"
                })
            })
            .unwrap();
        assert_eq!(guarded(handle).await.unwrap(), "woke up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_submitters_keep_counts_consistent() {
        let executor = executor(2, 4, 4);
        let peak = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..8)
            .map(|submitter| {
                let (executor, peak, running) =
                    (executor.clone(), Arc::clone(&peak), Arc::clone(&running));
                tokio::spawn(async move {
                    let (mut admitted, mut rejected) = (0_u64, 0_u64);
                    for i in 0..200_usize {
                        let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
                        let task = move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            running.fetch_sub(1, Ordering::SeqCst);
                            assert!(i % 50 != 3, "odd task {submitter}/{i}");
                            i
                        };
                        match executor.try_submit(task) {
                            Err(_) => rejected += 1,
                            Ok(handle) => {
                                admitted += 1;
                                match i % 3 {
                                    // Dropped at once: cancelled if still queued.
                                    0 => drop(handle),
                                    _ => match handle.await {
                                        Ok(value) => assert_eq!(value, i),
                                        Err(panicked) => {
                                            assert!(panicked.message.contains("odd task"));
                                        }
                                    },
                                }
                            }
                        }
                        if i % 10 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    (admitted, rejected)
                })
            })
            .collect();
        let (mut admitted, mut rejected) = (0, 0);
        for submitter in submitters {
            let (a, r) = guarded(submitter).await.unwrap();
            admitted += a;
            rejected += r;
        }
        // Tasks whose handles were dropped while running may still be finishing.
        let metrics = guarded(async {
            loop {
                let metrics = executor.metrics();
                if metrics.active == 0 && metrics.queued == 0 {
                    break metrics;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(metrics.rejected, rejected);
        assert_eq!(
            metrics.completed + metrics.panicked + metrics.cancelled,
            admitted
        );
        assert!(metrics.largest_active <= 4 && metrics.largest_queued <= 4);
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn invalid_configurations_are_errors() {
        let error = |builder: AsyncTaskExecutorBuilder| builder.build().unwrap_err();
        assert!(matches!(
            error(
                AsyncTaskExecutor::builder()
                    .core_pool_size(0)
                    .max_pool_size(0)
            ),
            ExecutorConfigError::ZeroMaxPoolSize
        ));
        assert!(matches!(
            error(
                AsyncTaskExecutor::builder()
                    .core_pool_size(5)
                    .max_pool_size(4)
            ),
            ExecutorConfigError::CoreExceedsMax { core: 5, max: 4 }
        ));
        // The default core (8) exceeds a smaller max.
        assert!(matches!(
            error(AsyncTaskExecutor::builder().max_pool_size(2)),
            ExecutorConfigError::CoreExceedsMax { core: 8, max: 2 }
        ));
        assert!(matches!(
            error(AsyncTaskExecutor::builder().max_pool_size(usize::MAX)),
            ExecutorConfigError::MaxPoolSizeTooLarge { .. }
        ));
        assert!(matches!(
            error(AsyncTaskExecutor::builder().thread_name_prefix("")),
            ExecutorConfigError::EmptyThreadNamePrefix
        ));
        assert!(matches!(
            error(AsyncTaskExecutor::builder().thread_name_prefix("a\0b")),
            ExecutorConfigError::ThreadNamePrefixContainsNul
        ));
        assert_eq!(
            ExecutorConfigError::CoreExceedsMax { core: 5, max: 4 }.to_string(),
            "core_pool_size (5) exceeds max_pool_size (4)"
        );
    }

    #[test]
    fn builder_settings_are_kept() {
        let executor = AsyncTaskExecutor::builder()
            .core_pool_size(0)
            .max_pool_size(3)
            .queue_capacity(0)
            .keep_alive(Duration::from_secs(5))
            .thread_name_prefix("x-")
            .retry_after(Duration::from_secs(7))
            .build()
            .unwrap();
        assert_eq!(executor.core_pool_size(), 0);
        assert_eq!(executor.max_pool_size(), 3);
        assert_eq!(executor.queue_capacity(), 0);
        assert_eq!(executor.keep_alive(), Duration::from_secs(5));
        assert_eq!(executor.thread_name_prefix(), "x-");
        assert_eq!(executor.retry_after(), Duration::from_secs(7));
    }

    #[test]
    fn default_is_the_documented_bounded_pool() {
        let executor = AsyncTaskExecutor::default();
        assert_eq!(executor.core_pool_size(), 8);
        assert_eq!(executor.max_pool_size(), 32);
        assert_eq!(executor.queue_capacity(), 256);
        assert_eq!(executor.keep_alive(), Duration::from_secs(60));
        assert_eq!(executor.thread_name_prefix(), "async-mvc-task-");
        assert_eq!(executor.retry_after(), Duration::from_secs(1));
        assert_eq!(executor.metrics(), ExecutorMetrics::default());
        let debug = format!("{executor:?}");
        assert!(debug.contains("max_pool_size: 32"), "{debug}");
    }

    #[tokio::test]
    async fn dropping_last_clone_inside_async_context_does_not_panic() {
        let executor = executor(1, 2, 2);
        let clone = executor.clone();
        let handle = clone.try_submit(|| 1).unwrap();
        assert_eq!(guarded(handle).await.unwrap(), 1);
        drop(clone);
        // The last clone: its runtime shuts down in the background, no panic.
        drop(executor);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_executor_lets_admitted_tasks_finish() {
        let executor = executor(1, 1, 1);
        let weak = Arc::downgrade(&executor.inner);
        let gate = Arc::new(Gate::default());
        let (started, mut started_rx) = mpsc::unbounded_channel();
        let running = blocked(&executor, &gate, &started, 0).unwrap();
        let queued = blocked(&executor, &gate, &started, 1).unwrap();
        guarded(started_rx.recv()).await.unwrap();

        drop(executor);
        gate.open();
        assert_eq!(guarded(running).await.unwrap(), 0);
        assert_eq!(guarded(queued).await.unwrap(), 1);

        // The last worker drops the executor's state (on its own thread) once it is done.
        guarded(async {
            while weak.strong_count() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}
