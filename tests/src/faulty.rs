//! [`FaultyBroker`]: an [`InMemoryBroker`] with the faults a real broker has, made on purpose:
//! subscriptions that lose messages (as pub/sub does while a connection is down) or deliver them
//! late (an instance lagging behind the broker), and acknowledgements that fail (a worker that
//! dies between its reply and its `XACK`).

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use async_mvc::cluster::{
    BoxFuture, BrokerError, BrokerEvent, History, InMemoryBroker, JobConsumer, MessageBroker,
    Position,
};
use axum::body::Bytes;
use futures::{stream::BoxStream, StreamExt};

/// An [`InMemoryBroker`] with faults; it shares the inner broker's state.
#[derive(Debug, Clone)]
pub struct FaultyBroker {
    broker: InMemoryBroker,
    keep: fn(usize) -> bool,
    delay: Duration,
    fail_acks: bool,
}

impl FaultyBroker {
    /// Its subscriptions deliver only the messages `keep` accepts (by their number on the
    /// subscription): what an instance must recover from history.
    pub fn lossy(broker: InMemoryBroker, keep: fn(usize) -> bool) -> Self {
        FaultyBroker {
            broker,
            keep,
            delay: Duration::ZERO,
            fail_acks: false,
        }
    }

    /// Its subscriptions deliver every message `delay` after it was published, in order: an
    /// instance whose pub/sub lags behind the broker's history.
    pub fn delayed(broker: InMemoryBroker, delay: Duration) -> Self {
        FaultyBroker {
            broker,
            keep: |_| true,
            delay,
            fail_acks: false,
        }
    }

    /// Every acknowledgement fails: jobs stay pending, as when their worker dies after
    /// replying.
    pub fn failing_acks(broker: InMemoryBroker) -> Self {
        FaultyBroker {
            broker,
            keep: |_| true,
            delay: Duration::ZERO,
            fail_acks: true,
        }
    }
}

impl MessageBroker for FaultyBroker {
    fn publish(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.broker.publish(channel, topic, payload)
    }

    fn subscribe(&self, channel: &str) -> BoxStream<'static, BrokerEvent> {
        let seen = AtomicUsize::new(0);
        let (keep, delay) = (self.keep, self.delay);
        let kept = self.broker.subscribe(channel).filter(move |_| {
            let n = seen.fetch_add(1, Ordering::Relaxed);
            std::future::ready(keep(n))
        });
        if delay.is_zero() {
            return kept.boxed();
        }
        // Each message is held until `delay` after it arrived; order is kept.
        kept.map(move |event| {
            let due = tokio::time::Instant::now() + delay;
            async move {
                tokio::time::sleep_until(due).await;
                event
            }
        })
        .buffered(usize::MAX)
        .boxed()
    }

    fn append(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        self.broker.append(channel, topic, payload, max_len)
    }

    fn range(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        self.broker.range(topic, after, limit)
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.broker.put(key, value, ttl)
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BrokerError>> {
        self.broker.get(key)
    }

    fn enqueue(
        &self,
        queue: &str,
        job: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<String, BrokerError>> {
        self.broker.enqueue(queue, job, max_len)
    }

    fn consumer(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BoxFuture<'_, Result<Box<dyn JobConsumer>, BrokerError>> {
        self.broker.consumer(queue, group, consumer)
    }

    fn ack(&self, queue: &str, group: &str, id: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        if self.fail_acks {
            return Box::pin(std::future::ready(Err(BrokerError::Unavailable(
                "acknowledgements fail here".to_owned(),
            ))));
        }
        self.broker.ack(queue, group, id)
    }

    fn touch(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.broker.touch(queue, group, consumer, ids)
    }
}
