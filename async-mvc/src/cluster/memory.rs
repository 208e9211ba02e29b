//! [`InMemoryBroker`]: the broker of one process — the default, with no configuration.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use tokio::sync::mpsc;

use super::{
    broker::{BoxFuture, BrokerError, BrokerEvent, History, Message, MessageBroker, Position},
    memory_queue::Queues,
    queue::JobConsumer,
};

/// How many messages a subscription buffers before newer ones are dropped for it (they are
/// at most once, as on any broker's pub/sub; appended entries are recovered by offset).
const SUBSCRIPTION_BUFFER: usize = 65_536;

/// A [`MessageBroker`] inside one process: what every instance of a test, or the one instance
/// of a deployment without a broker, shares. A cheap `Clone` of an `Arc`; clones are the same
/// broker. Histories keep their newest `max_len` entries; values expire after their TTL; queues
/// keep their newest `max_len` jobs, and a job pending with a consumer keeps its bytes until it
/// is acknowledged.
///
/// ```
/// use std::sync::Arc;
/// use async_mvc::cluster::{InMemoryBroker, MessageBroker};
///
/// let broker: Arc<dyn MessageBroker> = Arc::new(InMemoryBroker::new());
/// # let _ = broker;
/// ```
#[derive(Clone, Default)]
pub struct InMemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Taken for every publish and subscribe: publishing never waits on a subscriber.
    channels: Mutex<HashMap<String, Vec<mpsc::Sender<BrokerEvent>>>>,
    /// Taken around an append's publish too, so that entries are published in offset order.
    histories: Mutex<HashMap<String, TopicHistory>>,
    values: Mutex<Values>,
    queues: Arc<Queues>,
    epoch: u64,
}

#[derive(Default)]
struct TopicHistory {
    /// The offset of the last entry appended (0: none yet).
    last: u64,
    entries: VecDeque<(u64, Bytes)>,
}

#[derive(Default)]
struct Values {
    entries: HashMap<String, (Bytes, Instant)>,
    /// The size after the last sweep of expired entries.
    swept_at: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only map operations run under these locks, never user code.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InMemoryBroker {
    /// A new, empty broker; its epoch is the time it was created (ns since the Unix epoch), so
    /// ids from an earlier process are recognised as from another history.
    pub fn new() -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        InMemoryBroker {
            inner: Arc::new(Inner {
                epoch,
                ..Inner::default()
            }),
        }
    }

    fn send(&self, channel: &str, message: Message) {
        let mut channels = lock(&self.inner.channels);
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        subscribers.retain(|subscriber| {
            match subscriber.try_send(BrokerEvent::Message(message.clone())) {
                Ok(()) => true,
                // A subscriber that cannot keep up loses this message (it sees the offset
                // jump, for appended ones); one that is gone is dropped.
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if subscribers.is_empty() {
            channels.remove(channel);
        }
    }
}

impl MessageBroker for InMemoryBroker {
    fn publish(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.send(
            channel,
            Message {
                topic: topic.to_owned(),
                position: None,
                payload,
            },
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(&self, channel: &str) -> BoxStream<'static, BrokerEvent> {
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        lock(&self.inner.channels)
            .entry(channel.to_owned())
            .or_default()
            .push(sender);
        tokio_stream::wrappers::ReceiverStream::new(receiver).boxed()
    }

    fn append(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        let mut histories = lock(&self.inner.histories);
        let history = histories.entry(topic.to_owned()).or_default();
        history.last += 1;
        let offset = history.last;
        history.entries.push_back((offset, payload.clone()));
        while history.entries.len() > max_len.max(1) {
            history.entries.pop_front();
        }
        let position = Position {
            epoch: self.inner.epoch,
            offset,
        };
        self.send(
            channel,
            Message {
                topic: topic.to_owned(),
                position: Some(position),
                payload,
            },
        );
        drop(histories);
        Box::pin(std::future::ready(Ok(position)))
    }

    fn range(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let histories = lock(&self.inner.histories);
        let history = match histories.get(topic) {
            None => History {
                epoch: self.inner.epoch,
                first: 1,
                last: 0,
                entries: Vec::new(),
            },
            Some(history) => History {
                epoch: self.inner.epoch,
                first: history
                    .entries
                    .front()
                    .map_or(history.last + 1, |(offset, _)| *offset),
                last: history.last,
                entries: history
                    .entries
                    .iter()
                    .filter(|(offset, _)| *offset > after)
                    .take(limit)
                    .cloned()
                    .collect(),
            },
        };
        Box::pin(std::future::ready(Ok(history)))
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let now = Instant::now();
        let mut values = lock(&self.inner.values);
        values.entries.insert(key.to_owned(), (value, now + ttl));
        // Expired values go when the map has doubled since the last sweep: bounded, amortised.
        if values.entries.len() > 2 * values.swept_at.max(512) {
            values.entries.retain(|_, (_, expires)| *expires > now);
            values.swept_at = values.entries.len();
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BrokerError>> {
        let now = Instant::now();
        let mut values = lock(&self.inner.values);
        let value = match values.entries.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                values.entries.remove(key);
                None
            }
            None => None,
        };
        Box::pin(std::future::ready(Ok(value)))
    }

    fn enqueue(
        &self,
        queue: &str,
        job: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<String, BrokerError>> {
        let id = self.inner.queues.enqueue(queue, job, max_len);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn consumer(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BoxFuture<'_, Result<Box<dyn JobConsumer>, BrokerError>> {
        let consumer: Box<dyn JobConsumer> =
            Box::new(self.inner.queues.join(queue, group, consumer));
        Box::pin(std::future::ready(Ok(consumer)))
    }

    fn ack(&self, queue: &str, group: &str, id: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.inner.queues.ack(queue, group, id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn touch(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.inner.queues.touch(queue, group, consumer, ids);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl fmt::Debug for InMemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryBroker")
            .field("epoch", &self.inner.epoch)
            .field("topics", &lock(&self.inner.histories).len())
            .finish_non_exhaustive()
    }
}

impl From<InMemoryBroker> for Arc<dyn MessageBroker> {
    fn from(broker: InMemoryBroker) -> Self {
        Arc::new(broker)
    }
}
