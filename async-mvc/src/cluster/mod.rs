//! Scale-out: the same async values on many instances, over a message broker.
//!
//! - [`MessageBroker`] — the small, object-safe broker abstraction: publish/subscribe, an
//!   atomic "append to a topic's history and publish" that returns a [`Position`], a range read
//!   of history, values with a time to live. [`InMemoryBroker`] is the default: one process,
//!   no configuration, no dependency. `async-mvc-redis` implements it on Redis.
//! - [`DeferredResultRegistry`] — long polls keyed by a value: `wait(key, …)` on any instance,
//!   `complete(&key, value)` on any instance completes every waiter for that key everywhere.
//! - [`ClusteredSseBroadcaster`] — SSE keyed by topic: `send(topic, event)` on any instance
//!   reaches every subscriber on every instance, and `subscribe(topic, last_event_id)` replays
//!   from the shared history, with no gap and no duplicate.
//! - [`ReplyingTemplate`] and [`JobListener`] — request/reply: `send_and_receive(job, timeout)`
//!   puts a job on a queue consumed by a group of workers on any instance, and the reply comes
//!   back to this instance to complete the request it still holds (Spring's
//!   `ReplyingKafkaTemplate` + `DeferredResult`, made one thing). No live worker: `503` at
//!   once; a worker that dies mid-job: another claims the job.
//!
//! The design follows Centrifugo (append and publish in one step, a contiguous offset per topic
//! and an epoch, so gaps and history resets are visible), Mercure (tell the client when replay
//! was incomplete) and Phoenix.PubSub (one subscription per instance and feature, the topic in
//! the message, local dispatch). Spring MVC has no counterpart: its users pair a
//! `DeferredResult` with their own broker listener.

mod broker;
mod envelope;
mod listener;
mod memory;
mod memory_queue;
mod queue;
mod registry;
mod reply;
mod sse;
mod trace;

pub use broker::{BoxFuture, BrokerError, BrokerEvent, History, Message, MessageBroker, Position};
pub use listener::{
    JobListener, JobListenerHandle, ListenerMetrics, DEFAULT_CLAIM_IDLE, DEFAULT_CONCURRENCY,
};
pub use memory::InMemoryBroker;
pub use queue::{Job, JobConsumer};
pub use registry::{DeferredResultRegistry, DEFAULT_MAX_WAITERS_PER_KEY};
pub use reply::{
    ReplyError, ReplyingTemplate, TemplateMetrics, DEFAULT_MAX_OUTSTANDING, DEFAULT_QUEUE_MAX_LEN,
    DEFAULT_REPLY_RETENTION,
};
pub use sse::{
    ClusterSseMetrics, ClusterSubscription, ClusteredSseBroadcaster, ReplayStatus, DEFAULT_HISTORY,
    LAST_EVENT_ID_STATUS,
};
pub use trace::{set_trace_propagator, TracePropagator};

#[cfg(test)]
mod tests;
