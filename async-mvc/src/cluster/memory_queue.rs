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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::cluster::{InMemoryBroker, MessageBroker};

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|error| panic!("{error}"))
            .block_on(future)
    }

    #[test]
    fn a_group_shares_jobs_and_claims_only_untouched_ones() {
        block_on(async {
            let broker = InMemoryBroker::new();
            for n in 0..3u8 {
                let id = broker.enqueue("q", Bytes::from(vec![n]), 10).await;
                assert!(id.is_ok());
            }
            let mut a = broker
                .consumer("q", "g", "a")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut b = broker
                .consumer("q", "g", "b")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let taken = a.read(2, Duration::ZERO).await.unwrap_or_default();
            let rest = b.read(5, Duration::ZERO).await.unwrap_or_default();
            let payloads: Vec<u8> = taken
                .iter()
                .chain(&rest)
                .map(|job| job.payload[0])
                .collect();
            assert_eq!(
                payloads,
                [0, 1, 2],
                "each job to one consumer of the group, in order"
            );

            // Nothing idle yet; a's first job touched, its second acknowledged... then idle.
            assert!(b
                .claim(Duration::from_millis(50), 10)
                .await
                .unwrap_or_default()
                .is_empty());
            let _ = broker.ack("q", "g", &taken[1].id).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
            let _ = broker.touch("q", "g", "a", &[taken[0].id.clone()]).await;
            let claimed = b
                .claim(Duration::from_millis(50), 10)
                .await
                .unwrap_or_default();
            // b's own job (2) is idle too; a's touched job is not; a's acknowledged one is gone.
            let ids: Vec<&str> = claimed.iter().map(|job| job.id.as_str()).collect();
            assert_eq!(ids, [rest[0].id.as_str()]);
            assert!(claimed.iter().all(|job| job.redelivered));
        });
    }

    #[test]
    fn a_queue_keeps_its_newest_max_len_jobs() {
        block_on(async {
            let broker = InMemoryBroker::new();
            for n in 0..5u8 {
                let _ = broker.enqueue("q", Bytes::from(vec![n]), 3).await;
            }
            let mut consumer = broker
                .consumer("q", "g", "c")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let jobs = consumer.read(10, Duration::ZERO).await.unwrap_or_default();
            let payloads: Vec<u8> = jobs.iter().map(|job| job.payload[0]).collect();
            assert_eq!(payloads, [2, 3, 4]);
        });
    }

    #[test]
    fn a_read_waits_for_a_job_at_most_its_block_time() {
        block_on(async {
            let broker = InMemoryBroker::new();
            let mut consumer = broker
                .consumer("q", "g", "c")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let none = consumer.read(1, Duration::from_millis(20)).await;
            assert_eq!(none.map(|jobs| jobs.len()), Ok(0));
            let later = broker.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = later.enqueue("q", Bytes::from_static(b"x"), 10).await;
            });
            let one = consumer
                .read(1, Duration::from_secs(5))
                .await
                .unwrap_or_default();
            assert_eq!(one.len(), 1);
        });
    }
}
