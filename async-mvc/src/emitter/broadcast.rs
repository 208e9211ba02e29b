//! [`SseBroadcaster`]: one event, encoded once, to every subscriber, with replay on reconnect.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use super::{
    error::EmitterError,
    response_body::DEFAULT_CAPACITY,
    sse::{SseEmitter, SseEmitterBuilder},
};
use crate::sse::SseEvent;

/// The replay buffer of [`SseBroadcaster::new`]: none.
pub const DEFAULT_REPLAY: usize = 0;

/// A hub that publishes each SSE event to every subscribed [`SseEmitter`] (beyond Spring,
/// which leaves fan-out to the application).
///
/// An event is encoded once, when it is built; every subscriber gets the same shared bytes.
/// Subscribers that disconnect are removed at the next publish.
///
/// # Replay
///
/// With a replay buffer ([`with_replay`](Self::with_replay)), the last N published events are
/// kept. A client that reconnects sends `Last-Event-ID` (see
/// [`LastEventId`](crate::LastEventId)); [`subscribe`](Self::subscribe) with that id first sends
/// every buffered event published after it, then live events — no gap and no duplicate, because
/// subscribing and publishing take the same lock. An id that is not in the buffer (too old, or
/// from before a restart) replays the whole buffer: the client may see events twice, never miss
/// one the buffer still holds. Events without an id can be replayed, but not resumed after.
///
/// # Slow subscribers
///
/// Publishing never waits for a client: a subscriber whose buffer is full is completed (its
/// stream ends cleanly after what it has queued), so one slow client cannot hold up the others.
/// An `EventSource` reconnects with its last event id and catches up from the replay buffer.
///
/// The handle is a cheap `Clone` of an `Arc`.
///
/// ```
/// use async_mvc::{LastEventId, SseBroadcaster, SseEmitter, SseEvent};
///
/// let hub = SseBroadcaster::with_replay(100);
///
/// // GET /events
/// let subscribe = {
///     let hub = hub.clone();
///     move |last: Option<LastEventId>| {
///         let hub = hub.clone();
///         async move { hub.subscribe(last.as_ref().map(LastEventId::as_str)) }
///     }
/// };
///
/// // Anywhere else:
/// let event = SseEvent::builder().id("7").event("status").data("shipped").build();
/// if let Ok(event) = event {
///     hub.publish(&event);
/// }
/// # let _ = subscribe;
/// ```
#[derive(Clone)]
pub struct SseBroadcaster {
    hub: Arc<Mutex<Hub>>,
    subscriber: SseEmitterBuilder,
}

struct Hub {
    subscribers: Vec<SseEmitter>,
    replay: VecDeque<SseEvent>,
    replay_capacity: usize,
    closed: bool,
}

impl SseBroadcaster {
    /// A broadcaster without replay. Subscribers have no timeout and the default heartbeat.
    pub fn new() -> Self {
        Self::with_replay(DEFAULT_REPLAY)
    }

    /// A broadcaster that keeps the last `events` events for reconnecting clients.
    pub fn with_replay(events: usize) -> Self {
        SseBroadcaster {
            hub: Arc::new(Mutex::new(Hub {
                subscribers: Vec::new(),
                replay: VecDeque::with_capacity(events.min(1024)),
                replay_capacity: events,
                closed: false,
            })),
            subscriber: SseEmitter::builder()
                .no_timeout()
                .capacity(DEFAULT_CAPACITY + events),
        }
    }

    /// Uses `builder` for new subscribers (timeout, heartbeat, capacity). The capacity is raised
    /// to hold the replay buffer plus [`DEFAULT_CAPACITY`] live events if it is smaller.
    #[must_use]
    pub fn subscriber_settings(mut self, builder: SseEmitterBuilder) -> Self {
        let least = DEFAULT_CAPACITY + self.lock().replay_capacity;
        let capacity = builder.buffer_capacity().max(least);
        self.subscriber = builder.capacity(capacity);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // Only queue operations run under this lock, never user code.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new subscriber: replays what it missed after `last_event_id` (see the type's docs),
    /// then receives every published event. Return it from the handler.
    ///
    /// After [`complete_all`](Self::complete_all) the emitter is returned already completed.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> SseEmitter {
        let emitter = self.subscriber.clone().build();
        let mut hub = self.lock();
        if hub.closed {
            emitter.complete();
            return emitter;
        }
        if let Some(last) = last_event_id {
            let start = hub
                .replay
                .iter()
                .rposition(|event| event.id() == Some(last))
                .map_or(0, |seen| seen + 1);
            for event in hub.replay.iter().skip(start) {
                // The capacity holds the whole replay buffer, so this cannot be full.
                let _ = emitter.try_send_event(event);
            }
        }
        hub.subscribers
            .retain(|subscriber| !subscriber.is_completed());
        hub.subscribers.push(emitter.clone());
        emitter
    }

    /// Sends `event` to every subscriber and keeps it for replay. Returns how many subscribers
    /// it was queued for.
    pub fn publish(&self, event: &SseEvent) -> usize {
        let mut hub = self.lock();
        if hub.closed {
            return 0;
        }
        if hub.replay_capacity > 0 {
            if hub.replay.len() == hub.replay_capacity {
                hub.replay.pop_front();
            }
            hub.replay.push_back(event.clone());
        }
        let mut delivered = 0;
        hub.subscribers
            .retain(|subscriber| match subscriber.try_send_event(event) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(EmitterError::Full) => {
                    tracing::debug!("SSE subscriber too slow: completing its stream");
                    subscriber.complete();
                    false
                }
                Err(_) => false,
            });
        delivered
    }

    /// How many subscribers are connected (those gone are noticed at the next publish).
    pub fn subscribers(&self) -> usize {
        let mut hub = self.lock();
        hub.subscribers
            .retain(|subscriber| !subscriber.is_completed());
        hub.subscribers.len()
    }

    /// Completes every current subscriber's stream (after what it has queued) but stays open:
    /// clients reconnect with `Last-Event-ID` and resume from the replay buffer. Returns how
    /// many streams were ended. Useful to shed connections, or to test reconnects.
    pub fn disconnect_subscribers(&self) -> usize {
        let mut hub = self.lock();
        let ended = hub.subscribers.len();
        for subscriber in hub.subscribers.drain(..) {
            subscriber.complete();
        }
        ended
    }

    /// Sends `last` (if any) to every subscriber, completes their streams and refuses new ones —
    /// for a graceful shutdown.
    pub fn complete_all(&self, last: Option<&SseEvent>) {
        let mut hub = self.lock();
        hub.closed = true;
        for subscriber in hub.subscribers.drain(..) {
            if let Some(last) = last {
                let _ = subscriber.try_send_event(last);
            }
            subscriber.complete();
        }
    }
}

impl Default for SseBroadcaster {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SseBroadcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hub = self.lock();
        f.debug_struct("SseBroadcaster")
            .field("subscribers", &hub.subscribers.len())
            .field("replay", &hub.replay.len())
            .field("replay_capacity", &hub.replay_capacity)
            .finish()
    }
}
