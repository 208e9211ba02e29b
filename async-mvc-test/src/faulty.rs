//! [`FaultyBroker`]: an [`InMemoryBroker`] with the faults a real broker has, made on purpose.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_mvc::cluster::{
    BoxFuture, BrokerError, BrokerEvent, History, InMemoryBroker, JobConsumer, MessageBroker,
    Position,
};
use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use tokio::sync::watch;

/// An [`InMemoryBroker`] as one instance sees it, with faults: subscriptions that lose
/// messages (as pub/sub does while a connection is down) or deliver them late (an instance
/// lagging behind), acknowledgements that fail (a worker that dies between its reply and its
/// `XACK`), and an outage — [`Faults::down`]: every operation fails with
/// [`BrokerError::Unavailable`] and nothing is delivered, until [`Faults::up`], when every
/// subscription gets [`BrokerEvent::Reconnected`] (and catches up, as after a Redis outage).
///
/// It shares the inner broker's state: several `FaultyBroker`s over one `InMemoryBroker` are
/// several instances of one cluster, each with its own faults. A cheap `Clone` (the clones
/// share the faults).
///
/// ```
/// use async_mvc::cluster::{InMemoryBroker, MessageBroker};
/// use async_mvc_test::FaultyBroker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shared = InMemoryBroker::new();
/// let instance = FaultyBroker::new(shared.clone());
/// instance.faults().down();
/// assert!(instance.get("key").await.is_err(), "unavailable while down");
/// instance.faults().up();
/// assert_eq!(instance.get("key").await, Ok(None));
/// # }
/// ```
#[derive(Clone)]
pub struct FaultyBroker {
    broker: InMemoryBroker,
    keep: fn(usize) -> bool,
    delay: Duration,
    faults: Faults,
}

/// The switches of a [`FaultyBroker`], to flip while a test runs. A cheap `Clone`.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Switches>,
}

struct Switches {
    /// `true` while the broker is "down" for this instance.
    down: watch::Sender<bool>,
    fail_acks: AtomicBool,
    /// Messages dropped while down, for the test to read.
    dropped: AtomicUsize,
}

impl Faults {
    fn new() -> Self {
        Faults {
            shared: Arc::new(Switches {
                down: watch::channel(false).0,
                fail_acks: AtomicBool::new(false),
                dropped: AtomicUsize::new(0),
            }),
        }
    }

    /// The broker is unreachable from now on: operations fail, messages are lost.
    pub fn down(&self) {
        self.shared.down.send_replace(true);
    }

    /// The broker is back: operations work, and every subscription gets
    /// [`BrokerEvent::Reconnected`].
    pub fn up(&self) {
        self.shared.down.send_replace(false);
    }

    /// Whether the broker is down.
    pub fn is_down(&self) -> bool {
        *self.shared.down.borrow()
    }

    /// Acknowledgements fail (`true`) or work again (`false`).
    pub fn fail_acks(&self, fail: bool) {
        self.shared.fail_acks.store(fail, Ordering::Relaxed);
    }

    /// How many messages this instance's subscriptions lost while the broker was down (counted
    /// as their readers read them).
    pub fn dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), BrokerError> {
        if self.is_down() {
            return Err(BrokerError::Unavailable(
                "the broker is down (FaultyBroker)".to_owned(),
            ));
        }
        Ok(())
    }
}

impl FaultyBroker {
    /// An instance of `broker`'s cluster with no fault yet.
    pub fn new(broker: InMemoryBroker) -> Self {
        FaultyBroker {
            broker,
            keep: |_| true,
            delay: Duration::ZERO,
            faults: Faults::new(),
        }
    }

    /// Its subscriptions deliver only the messages `keep` accepts (by their number on the
    /// subscription, from 0): what an instance must recover from history.
    pub fn lossy(broker: InMemoryBroker, keep: fn(usize) -> bool) -> Self {
        FaultyBroker {
            keep,
            ..Self::new(broker)
        }
    }

    /// Its subscriptions deliver every message `delay` after it was published, in order: an
    /// instance whose pub/sub lags behind the broker's history.
    pub fn delayed(broker: InMemoryBroker, delay: Duration) -> Self {
        FaultyBroker {
            delay,
            ..Self::new(broker)
        }
    }

    /// Every acknowledgement fails: jobs stay pending, as when their worker dies after
    /// replying.
    pub fn failing_acks(broker: InMemoryBroker) -> Self {
        let faulty = Self::new(broker);
        faulty.faults.fail_acks(true);
        faulty
    }

    /// The switches to flip while the test runs.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn failed<T: Send + 'static>(&self) -> Option<BoxFuture<'_, Result<T, BrokerError>>> {
        self.faults
            .check()
            .err()
            .map(|error| Box::pin(std::future::ready(Err(error))) as BoxFuture<'_, _>)
    }
}

impl MessageBroker for FaultyBroker {
    fn publish(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.publish(channel, topic, payload))
    }

    fn subscribe(&self, channel: &str) -> BoxStream<'static, BrokerEvent> {
        let seen = AtomicUsize::new(0);
        let (keep, delay, faults) = (self.keep, self.delay, self.faults.clone());
        let messages = self.broker.subscribe(channel).filter(move |_| {
            let n = seen.fetch_add(1, Ordering::Relaxed);
            let lost = faults.is_down();
            if lost {
                faults.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            std::future::ready(!lost && keep(n))
        });
        let messages = if delay.is_zero() {
            messages.boxed()
        } else {
            // Each message is held until `delay` after it arrived; order is kept.
            messages
                .map(move |event| {
                    let due = tokio::time::Instant::now() + delay;
                    async move {
                        tokio::time::sleep_until(due).await;
                        event
                    }
                })
                .buffered(usize::MAX)
                .boxed()
        };
        // Each return from down to up is a reconnect.
        let mut down = self.faults.shared.down.subscribe();
        let was_down = *down.borrow_and_update();
        let reconnects =
            futures::stream::unfold((down, was_down), |(mut down, mut was_down)| async move {
                loop {
                    down.changed().await.ok()?;
                    let now_down = *down.borrow_and_update();
                    if was_down && !now_down {
                        return Some((BrokerEvent::Reconnected, (down, false)));
                    }
                    was_down = now_down;
                }
            });
        futures::stream::select(messages, reconnects).boxed()
    }

    fn append(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.append(channel, topic, payload, max_len))
    }

    fn range(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.range(topic, after, limit))
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.put(key, value, ttl))
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BrokerError>> {
        self.failed().unwrap_or_else(|| self.broker.get(key))
    }

    fn enqueue(
        &self,
        queue: &str,
        job: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<String, BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.enqueue(queue, job, max_len))
    }

    fn consumer(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BoxFuture<'_, Result<Box<dyn JobConsumer>, BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.consumer(queue, group, consumer))
    }

    fn ack(&self, queue: &str, group: &str, id: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        if self.faults.shared.fail_acks.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err(BrokerError::Unavailable(
                "acknowledgements fail here (FaultyBroker)".to_owned(),
            ))));
        }
        self.failed()
            .unwrap_or_else(|| self.broker.ack(queue, group, id))
    }

    fn touch(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.failed()
            .unwrap_or_else(|| self.broker.touch(queue, group, consumer, ids))
    }
}

impl fmt::Debug for FaultyBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyBroker")
            .field("delay", &self.delay)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("down", &self.is_down())
            .field("fail_acks", &self.shared.fail_acks.load(Ordering::Relaxed))
            .field("dropped", &self.dropped())
            .finish()
    }
}
