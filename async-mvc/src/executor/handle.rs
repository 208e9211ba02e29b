//! What a submission gives back: a [`TaskHandle`] to the result, or [`Rejected`]; and
//! [`TaskPanicked`](super::TaskPanicked).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Weak,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::oneshot;

/// The queue a task waits in, as its handle sees it: cancelling a task that has not started.
pub(super) trait Queue: Send + Sync {
    /// Removes the queued task `id`; it never runs.
    fn cancel(&self, id: u64);
}

/// The message of the [`TaskPanicked`](super::TaskPanicked) a handle resolves to when its task was dropped without
/// running: only when the executor could not start a thread for it.
const LOST_TASK_MESSAGE: &str = "the task was dropped before it could run";

/// An admitted task's result: resolves to the task's value, or to [`TaskPanicked`](super::TaskPanicked) if it
/// panicked.
///
/// Dropping the handle of a **queued** task cancels it (it leaves the queue at once and never
/// runs); a **running** task runs to its end and keeps its slot until then. `Send`, `Unpin`;
/// like other futures it must not be polled again after it resolved.
#[must_use = "dropping the handle of a queued task cancels it"]
pub struct TaskHandle<T> {
    rx: oneshot::Receiver<Result<T, TaskPanicked>>,
    queue: Weak<dyn Queue>,
    /// The queue id, if the task was queued when admitted.
    queued_id: Option<u64>,
    done: bool,
}

impl<T> TaskHandle<T> {
    pub(super) fn new(
        rx: oneshot::Receiver<Result<T, TaskPanicked>>,
        queue: Weak<dyn Queue>,
        queued_id: Option<u64>,
    ) -> Self {
        TaskHandle {
            rx,
            queue,
            queued_id,
            done: false,
        }
    }
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
        if let Some(queue) = self.queue.upgrade() {
            queue.cancel(id);
        }
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
    /// When to try again: the executor's [`retry_after`](super::AsyncTaskExecutorBuilder::retry_after).
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
