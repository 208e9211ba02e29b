//! The [`InMemoryBroker`](super::InMemoryBroker)'s work queues: each queue a bounded list of
//! jobs, each group a cursor into it and its pending jobs, as a Redis Stream's consumer group
//! keeps them.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::Notify;

use super::{
    broker::{BoxFuture, BrokerError},
    queue::{Job, JobConsumer},
};

/// Every queue of one broker.
#[derive(Default)]
pub(super) struct Queues {
    queues: Mutex<HashMap<String, Queue>>,
}

#[derive(Default)]
struct Queue {
    /// The id of the last job enqueued (0: none yet).
    last: u64,
    jobs: VecDeque<(u64, Bytes)>,
    groups: HashMap<String, Group>,
    /// Woken at each enqueue, for consumers waiting in `read`.
    arrived: Arc<Notify>,
}

#[derive(Default)]
struct Group {
    /// The id of the last job handed to a consumer of the group.
    delivered: u64,
    pending: BTreeMap<u64, Pending>,
}

struct Pending {
    consumer: String,
    /// When it was delivered or last touched.
    since: Instant,
    payload: Bytes,
}

impl Queues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        // Only map operations run under this lock, never user code.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn enqueue(&self, queue: &str, job: Bytes, max_len: usize) -> String {
        let mut queues = self.lock();
        let queue = queues.entry(queue.to_owned()).or_default();
        queue.last += 1;
        let id = queue.last;
        queue.jobs.push_back((id, job));
        while queue.jobs.len() > max_len.max(1) {
            queue.jobs.pop_front();
        }
        queue.arrived.notify_waiters();
        id.to_string()
    }

    pub(super) fn join(
        self: &Arc<Self>,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> MemoryConsumer {
        self.lock()
            .entry(queue.to_owned())
            .or_default()
            .groups
            .entry(group.to_owned())
            .or_default();
        MemoryConsumer {
            queues: Arc::clone(self),
            queue: queue.to_owned(),
            group: group.to_owned(),
            name: consumer.to_owned(),
        }
    }

    pub(super) fn ack(&self, queue: &str, group: &str, id: &str) {
        let Ok(id) = id.parse::<u64>() else {
            return;
        };
        if let Some(group) = self
            .lock()
            .get_mut(queue)
            .and_then(|q| q.groups.get_mut(group))
        {
            group.pending.remove(&id);
        }
    }

    pub(super) fn touch(&self, queue: &str, group: &str, consumer: &str, ids: &[String]) {
        let mut queues = self.lock();
        let Some(group) = queues.get_mut(queue).and_then(|q| q.groups.get_mut(group)) else {
            return;
        };
        let now = Instant::now();
        for id in ids.iter().filter_map(|id| id.parse::<u64>().ok()) {
            if let Some(pending) = group.pending.get_mut(&id) {
                if pending.consumer == consumer {
                    pending.since = now;
                }
            }
        }
    }
}

/// A consumer of one group of an in-memory queue.
pub(super) struct MemoryConsumer {
    queues: Arc<Queues>,
    queue: String,
    group: String,
    name: String,
}

impl MemoryConsumer {
    /// New jobs for this consumer, or the notification to wait on when there are none.
    fn take(&self, count: usize) -> Result<Vec<Job>, Arc<Notify>> {
        let mut queues = self.queues.lock();
        let queue = queues.entry(self.queue.clone()).or_default();
        let group = queue.groups.entry(self.group.clone()).or_default();
        let now = Instant::now();
        let mut jobs = Vec::new();
        let after = group.delivered;
        for (id, payload) in queue.jobs.iter().filter(|(id, _)| *id > after) {
            if jobs.len() == count.max(1) {
                break;
            }
            group.delivered = *id;
            group.pending.insert(
                *id,
                Pending {
                    consumer: self.name.clone(),
                    since: now,
                    payload: payload.clone(),
                },
            );
            jobs.push(Job {
                id: id.to_string(),
                payload: payload.clone(),
                redelivered: false,
            });
        }
        if jobs.is_empty() {
            Err(Arc::clone(&queue.arrived))
        } else {
            Ok(jobs)
        }
    }
}

impl JobConsumer for MemoryConsumer {
    fn read(
        &mut self,
        count: usize,
        block: Duration,
    ) -> BoxFuture<'_, Result<Vec<Job>, BrokerError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + block;
            loop {
                let arrived = match self.take(count) {
                    Ok(jobs) => return Ok(jobs),
                    Err(arrived) => arrived,
                };
                let notified = arrived.notified();
                // An enqueue between `take` and here is seen by looking once more.
                if let Ok(jobs) = self.take(count) {
                    return Ok(jobs);
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn claim(
        &mut self,
        min_idle: Duration,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, BrokerError>> {
        let mut queues = self.queues.lock();
        let mut jobs = Vec::new();
        if let Some(group) = queues
            .get_mut(&self.queue)
            .and_then(|queue| queue.groups.get_mut(&self.group))
        {
            let now = Instant::now();
            for (id, pending) in &mut group.pending {
                if jobs.len() == count.max(1) {
                    break;
                }
                if now.duration_since(pending.since) >= min_idle {
                    pending.consumer.clone_from(&self.name);
                    pending.since = now;
                    jobs.push(Job {
                        id: id.to_string(),
                        payload: pending.payload.clone(),
                        redelivered: true,
                    });
                }
            }
        }
        Box::pin(std::future::ready(Ok(jobs)))
    }
}

impl fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("queue", &self.queue)
            .field("group", &self.group)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
