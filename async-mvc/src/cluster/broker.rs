//! [`MessageBroker`]: what the cluster features need from a broker, and nothing more.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use tokio_util::task::AbortOnDropHandle;

use super::queue::JobConsumer;

/// A boxed future, as the object-safe [`MessageBroker`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an entry sits in a topic's history: an `offset` that grows by one per entry, within an
/// `epoch` that changes when the history is lost (a broker restarted without persistence). An
/// offset from another epoch means nothing in this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Which history the offset belongs to.
    pub epoch: u64,
    /// The entry's number in its topic: 1 for the first, contiguous.
    pub offset: u64,
}

/// A message delivered to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What the message is about: a key (the registry) or a topic (SSE).
    pub topic: String,
    /// Set for an entry [appended](MessageBroker::append) to the topic's history.
    pub position: Option<Position>,
    /// The application's bytes.
    pub payload: Bytes,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A published message.
    Message(Message),
    /// The connection to the broker was lost and is back: messages published meanwhile may be
    /// missing, and subscribers catch up from history (or from retained values).
    Reconnected,
}

/// Reads `subscription` in a task for as long as `owner` lives, handing each event to
/// `on_event` with the owner: the listener of a feature's one subscription per instance. The
/// task ends with the returned handle.
pub(super) fn listen<T, F, Fut>(
    mut subscription: BoxStream<'static, BrokerEvent>,
    owner: Weak<T>,
    on_event: F,
) -> AbortOnDropHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, BrokerEvent) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(event) = subscription.next().await {
            let Some(owner) = owner.upgrade() else {
                return;
            };
            on_event(owner, event).await;
        }
    }))
}

/// Entries of a topic's history, from [`MessageBroker::range`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The history's epoch.
    pub epoch: u64,
    /// The offset of the oldest entry still retained (the next offset if none is).
    pub first: u64,
    /// The offset of the newest entry (0 if the topic has none).
    pub last: u64,
    /// The entries asked for, oldest first.
    pub entries: Vec<(u64, Bytes)>,
}

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached and the outbox (if any) is full: nothing was sent. Retry
    /// later; render as `503` with `Retry-After`.
    #[error("the message broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker answered something unexpected.
    #[error("the message broker answered unexpectedly: {0}")]
    Protocol(String),
    /// A value did not serialize or deserialize.
    #[error("a value did not (de)serialize: {0}")]
    Codec(String),
}

/// A message broker shared by the instances of one application: the scale-out abstraction of
/// [`DeferredResultRegistry`](super::DeferredResultRegistry),
/// [`ClusteredSseBroadcaster`](super::ClusteredSseBroadcaster),
/// [`ReplyingTemplate`](super::ReplyingTemplate) and [`JobListener`](super::JobListener).
/// Object-safe: features hold an `Arc<dyn MessageBroker>`.
///
/// Guarantees an implementation gives: [`publish`](Self::publish) is at most once to the
/// subscriptions that exist when it is published (every instance, this one included);
/// [`append`](Self::append) numbers entries contiguously per topic and publishes them in that
/// order, so a subscriber that sees an offset jump knows it missed some and reads them with
/// [`range`](Self::range). No operation blocks a thread; none panics on what the broker sends.
pub trait MessageBroker: Send + Sync + fmt::Debug + 'static {
    /// Publishes `payload` about `topic` on `channel`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when it cannot be sent (nor queued).
    fn publish(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// The messages published on `channel` from now on, for as long as the stream is held
    /// (and [`BrokerEvent::Reconnected`] after an outage). Keep one per channel and instance.
    fn subscribe(&self, channel: &str) -> BoxStream<'static, BrokerEvent>;

    /// Appends `payload` to `topic`'s history, keeping about its newest `max_len` entries, and
    /// publishes it on `channel` with its position — one atomic step.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached (nothing was appended).
    fn append(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<Position, BrokerError>>;

    /// At most `limit` entries of `topic`'s history with an offset greater than `after`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn range(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>>;

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn put(&self, key: &str, value: Bytes, ttl: Duration)
        -> BoxFuture<'_, Result<(), BrokerError>>;

    /// The value under `key`, if it is there and has not expired.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BrokerError>>;

    /// Adds `job` to `queue`, keeping about its newest `max_len` jobs (older ones are dropped,
    /// taken or not: the bound on a queue nobody consumes). Its id.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached (nothing was queued).
    fn enqueue(
        &self,
        queue: &str,
        job: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<String, BrokerError>>;

    /// Consumer `consumer` of `group` on `queue` (the group is created if it is new, and
    /// receives every job still queued), with a connection of its own.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn consumer(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BoxFuture<'_, Result<Box<dyn JobConsumer>, BrokerError>>;

    /// Acknowledges job `id` of `queue` for `group`: done, never delivered again.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached (the job stays pending
    /// and is claimed again).
    fn ack(&self, queue: &str, group: &str, id: &str) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Tells the group that `consumer` is still working on jobs `ids`: their idle time starts
    /// again, so no other consumer [claims](JobConsumer::claim) them.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn touch(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> BoxFuture<'_, Result<(), BrokerError>>;
}
