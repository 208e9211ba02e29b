//! Work queues: what a [`MessageBroker`](super::MessageBroker) offers
//! [`JobListener`](super::JobListener)s and [`ReplyingTemplate`](super::ReplyingTemplate)s —
//! a queue consumed by a group of competing consumers, at least once (a Redis Stream with a
//! consumer group; the [`InMemoryBroker`](super::InMemoryBroker) in one process).

use std::{fmt, time::Duration};

use bytes::Bytes;

use super::broker::{BoxFuture, BrokerError};

/// A job as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id in its queue (a stream entry id on Redis): what
    /// [`ack`](super::MessageBroker::ack) and [`touch`](super::MessageBroker::touch) take.
    pub id: String,
    /// The bytes [enqueued](super::MessageBroker::enqueue).
    pub payload: Bytes,
    /// Taken over from another consumer that did not acknowledge it in time (it may have
    /// been worked on already: handlers are idempotent per job).
    pub redelivered: bool,
}

/// One consumer of a queue's group, reading on a connection of its own: a blocking read never
/// holds up the broker's other commands. Owned by one read loop.
pub trait JobConsumer: Send + fmt::Debug {
    /// At most `count` jobs no consumer of the group has received yet, waiting at most `block`
    /// for the first (an empty `Vec` when none came). Each is this consumer's until
    /// [acknowledged](super::MessageBroker::ack).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn read(
        &mut self,
        count: usize,
        block: Duration,
    ) -> BoxFuture<'_, Result<Vec<Job>, BrokerError>>;

    /// At most `count` jobs received by any consumer of the group and neither acknowledged nor
    /// [touched](super::MessageBroker::touch) for `min_idle`: their consumer is presumed dead,
    /// and they are this one's now (Redis's `XAUTOCLAIM`).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn claim(
        &mut self,
        min_idle: Duration,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, BrokerError>>;
}
