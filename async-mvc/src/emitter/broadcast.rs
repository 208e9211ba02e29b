//! [`SseBroadcaster`]: one event, encoded once, to every subscriber, with replay on reconnect.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use super::{
    error::EmitterError,
    response_body::DEFAULT_CAPACITY,
    sse::{SseEmitter, SseEmitterBuilder},
};
use crate::sse::SseEvent;

/// The replay buffer of [`SseBroadcaster::new`]: none.
pub const DEFAULT_REPLAY: usize = 0;

/// How long a subscriber's buffer may stay full before the broadcaster gives it up, unless
/// [`SseBroadcaster::slow_subscriber_timeout`] says otherwise: 5 s.
pub const DEFAULT_SLOW_SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(5);

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
/// Publishing never waits for a client, and a subscriber's buffer is bounded in events and in
/// bytes ([`DEFAULT_BUFFER_BYTES`](crate::DEFAULT_BUFFER_BYTES); the bytes of an event are
/// shared by all subscribers). An event that does not fit is not lost for it: the subscriber
/// is *lagging*, and is caught up from the replay buffer, in order, at the next publishes once
/// it has room. A subscriber that lags for longer than the
/// [slow-subscriber timeout](Self::slow_subscriber_timeout) (or whose missed events the replay
/// buffer no longer holds — at once without replay) is given up: its stream ends abruptly, so
/// that an `EventSource` reconnects with its last event id; `on_error`
/// ([`AsyncError::SlowConsumer`](crate::AsyncError::SlowConsumer)) and `on_completion` run,
/// it stops counting as in flight at once, and it is counted in
/// [`AsyncMetrics::slow_consumers`](crate::AsyncMetrics::slow_consumers). Its socket is then
/// closed by the server's send timeout ([`Serve::send_timeout`](crate::Serve::send_timeout)).
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
    subscribers: Vec<Subscriber>,
    /// The last events, each with its sequence number.
    replay: VecDeque<(u64, SseEvent)>,
    replay_capacity: usize,
    /// The sequence number of the next published event.
    next_seq: u64,
    slow_after: Duration,
    closed: bool,
}

struct Subscriber {
    emitter: SseEmitter,
    /// Set while events that did not fit wait to be caught up from the replay buffer.
    lag: Option<Lag>,
}

struct Lag {
    /// When the first event did not fit.
    since: Instant,
    /// The sequence number of the first event not queued.
    from: u64,
}

impl Subscriber {
    /// Queues `event` (sequence `seq`, already in `replay` if the hub keeps one), catching up
    /// first if lagging. `Ok(true)`: queued; `Ok(false)`: lagging; `Err(())`: gone.
    fn deliver(
        &mut self,
        event: &SseEvent,
        seq: u64,
        replay: &VecDeque<(u64, SseEvent)>,
        slow_after: Duration,
    ) -> Result<bool, ()> {
        let from = match &self.lag {
            None => match self.emitter.try_send_event(event) {
                Ok(()) => return Ok(true),
                Err(EmitterError::Full) => {
                    self.lag = Some(Lag {
                        since: Instant::now(),
                        from: seq,
                    });
                    seq
                }
                Err(_) => return Err(()),
            },
            Some(lag) => lag.from,
        };
        let since = self.lag.as_ref().map_or_else(Instant::now, |lag| lag.since);
        // Missed events the replay buffer no longer holds (or never held) cannot be caught up.
        let retained = replay.front().is_some_and(|(first, _)| *first <= from);
        if !retained || since.elapsed() >= slow_after {
            self.give_up(since.elapsed());
            return Err(());
        }
        for (event_seq, missed) in replay.iter().skip_while(|(s, _)| *s < from) {
            match self.emitter.try_send_event(missed) {
                Ok(()) => {}
                Err(EmitterError::Full) => {
                    if let Some(lag) = &mut self.lag {
                        lag.from = *event_seq;
                    }
                    return Ok(false);
                }
                Err(_) => return Err(()),
            }
        }
        self.lag = None;
        Ok(true)
    }

    fn give_up(&self, after: Duration) {
        tracing::debug!(
            after_ms = after.as_millis() as u64,
            "SSE subscriber too slow: giving up its stream"
        );
        self.emitter.give_up(after);
    }
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
                next_seq: 0,
                slow_after: DEFAULT_SLOW_SUBSCRIBER_TIMEOUT,
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

    /// How long a subscriber may lag — events waiting to be caught up because its buffer was
    /// full — before it is given up (default [`DEFAULT_SLOW_SUBSCRIBER_TIMEOUT`]); see "Slow
    /// subscribers". `Duration::ZERO` gives up a subscriber at its first full buffer.
    #[must_use]
    pub fn slow_subscriber_timeout(self, timeout: Duration) -> Self {
        self.lock().slow_after = timeout;
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
                .rposition(|(_, event)| event.id() == Some(last))
                .map_or(0, |seen| seen + 1);
            for (_, event) in hub.replay.iter().skip(start) {
                // Queued whatever the buffer's bounds: the replay buffer bounds it.
                let _ = emitter.force_send_event(event);
            }
        }
        hub.subscribers
            .retain(|subscriber| !subscriber.emitter.is_completed());
        hub.subscribers.push(Subscriber {
            emitter: emitter.clone(),
            lag: None,
        });
        emitter
    }

    /// Sends `event` to every subscriber and keeps it for replay. Returns how many subscribers
    /// it was queued for (a lagging subscriber gets it later, or is given up).
    pub fn publish(&self, event: &SseEvent) -> usize {
        let mut hub = self.lock();
        if hub.closed {
            return 0;
        }
        let seq = hub.next_seq;
        hub.next_seq += 1;
        if hub.replay_capacity > 0 {
            if hub.replay.len() == hub.replay_capacity {
                hub.replay.pop_front();
            }
            hub.replay.push_back((seq, event.clone()));
        }
        let Hub {
            subscribers,
            replay,
            slow_after,
            ..
        } = &mut *hub;
        let mut delivered = 0;
        subscribers.retain_mut(|subscriber| {
            match subscriber.deliver(event, seq, replay, *slow_after) {
                Ok(queued) => {
                    delivered += usize::from(queued);
                    true
                }
                Err(()) => false,
            }
        });
        delivered
    }

    /// How many subscribers are connected (those gone are noticed at the next publish).
    pub fn subscribers(&self) -> usize {
        let mut hub = self.lock();
        hub.subscribers
            .retain(|subscriber| !subscriber.emitter.is_completed());
        hub.subscribers.len()
    }

    /// Completes every current subscriber's stream (after what it has queued) but stays open:
    /// clients reconnect with `Last-Event-ID` and resume from the replay buffer. Returns how
    /// many streams were ended. Useful to shed connections, or to test reconnects.
    pub fn disconnect_subscribers(&self) -> usize {
        let mut hub = self.lock();
        let ended = hub.subscribers.len();
        for subscriber in hub.subscribers.drain(..) {
            subscriber.emitter.complete();
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
                let _ = subscriber.emitter.force_send_event(last);
            }
            subscriber.emitter.complete();
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
