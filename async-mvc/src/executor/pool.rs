//! The pool's state machine: admission (core → queue → max, as Spring's
//! `ThreadPoolTaskExecutor`), the FIFO queue, slots handed from a finished task to the next,
//! and the workers that run tasks on the runtime's blocking threads.

use std::{
    collections::BTreeMap,
    mem,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
};

use tokio::{
    runtime::{Handle, Runtime},
    sync::oneshot,
};

use super::{
    config::Config,
    handle::{Queue, Rejected, TaskHandle, TaskPanicked},
};
use crate::{guard, telemetry::ExecutorInstruments};

pub(super) struct Inner {
    config: Config,
    state: Mutex<State>,
    /// Spawns onto `runtime`, which lives as long as this struct.
    handle: Handle,
    /// Taken out and shut down in the background on drop: dropping a runtime the usual way
    /// blocks, and panics inside async code.
    runtime: Option<Runtime>,
    /// The `metrics` gauges and counter, by the executor's name (nothing without the feature).
    instruments: ExecutorInstruments,
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
    /// The pool of `config`, on `runtime`'s blocking threads.
    pub(super) fn new(config: Config, runtime: Runtime) -> Self {
        // The thread name prefix without its separator names the executor: `async-mvc`.
        let name = config.thread_name_prefix.trim_end_matches(['-', '_', ' ']);
        Inner {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            state: Mutex::new(State::default()),
            instruments: ExecutorInstruments::new(name),
            config,
        }
    }

    /// The settings.
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// Removes the queued task `id` (its handle was dropped); it never runs.
    fn cancel_queued(&self, id: u64) {
        let removed = {
            let mut state = self.lock();
            let removed = state.queue.remove(&id);
            if removed.is_some() {
                state.cancelled += 1;
            }
            removed
        };
        // The task's closure is dropped here, outside the lock.
        drop(removed);
    }

    /// A consistent snapshot of the counts.
    pub(super) fn metrics(&self) -> ExecutorMetrics {
        let state = self.lock();
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

    /// Admits `task` or rejects it at once; see [`AsyncTaskExecutor::try_submit`].
    pub(super) fn submit<F, T>(self: &Arc<Self>, task: F) -> Result<TaskHandle<T>, Rejected>
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

        let config = &self.config;
        let admission = {
            let mut state = self.lock();
            // `max(1)`: with core 0 the first task still runs at once, as in Java.
            let admission = if state.active < config.core_pool_size.max(1) {
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
                self.instruments.rejected();
                Admission::Rejected(rejected, job)
            };
            self.instruments.state(state.active, state.queue.len());
            admission
        };

        let queued_id = match admission {
            Admission::Run(job) => {
                let worker = Worker {
                    inner: Arc::clone(self),
                    job: Some(job),
                };
                // The JoinHandle is not needed: the result travels by the oneshot.
                drop(self.handle.spawn_blocking(move || worker.run()));
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

        let queue: Weak<dyn Queue> = Arc::downgrade(self) as Weak<dyn Queue>;
        Ok(TaskHandle::new(rx, queue, queued_id))
    }

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
        let next = match state.queue.pop_first() {
            Some((_, next)) => Some(next),
            None => {
                state.free_slot();
                None
            }
        };
        self.instruments.state(state.active, state.queue.len());
        next
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

impl Queue for Inner {
    fn cancel(&self, id: u64) {
        self.cancel_queued(id);
    }
}

/// A snapshot of an [`AsyncTaskExecutor`](super::AsyncTaskExecutor)'s counts (Spring's `getActiveCount()`,
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
