//! [`ClusteredSseBroadcaster`]: SSE keyed by topic, across instances, with replay from the
//! broker's shared history.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::Duration,
};

use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderValue;
use tokio_util::task::AbortOnDropHandle;

use super::broker::{BrokerError, BrokerEvent, MessageBroker, Position};
use crate::{
    emitter::{EmitterError, SseEmitter, SseEmitterBuilder},
    sse::SseEvent,
};

/// How many events of each topic the broker keeps for replay, unless
/// [`history`](ClusteredSseBroadcaster::history) says otherwise: 1,000.
pub const DEFAULT_HISTORY: usize = 1_000;

/// How long a topic with subscribers may go without news from the broker before its history
/// is looked at for an event missed on the way (at most [`POSITION_CHECK_TOPICS`] topics per
/// look): 2 s.
const POSITION_CHECK: Duration = Duration::from_secs(2);

/// How many events one history read of a replay takes.
const REPLAY_PAGE: usize = 1_000;

/// The most quiet topics one position check reads the history of.
const POSITION_CHECK_TOPICS: usize = 64;

/// The response header that tells a reconnecting client whether replay after its
/// `Last-Event-ID` was complete: `recovered`, or `reset` (its id was unknown, trimmed or of an
/// earlier history: the retained window was replayed instead — Mercure's `earliest`).
pub const LAST_EVENT_ID_STATUS: &str = "last-event-id-status";

/// How replay went for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStatus {
    /// No `Last-Event-ID`: live events only.
    Live,
    /// Every event after the client's `Last-Event-ID` was replayed.
    Recovered,
    /// The id was unknown, trimmed from history or from another epoch: every retained event
    /// was replayed, and the client may have missed older ones.
    Reset,
}

type ResetCallback = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// An [`SseBroadcaster`](crate::SseBroadcaster) for many instances: events are keyed by topic,
/// appended to the broker's history of that topic (one atomic step that numbers them), and
/// delivered by every instance to its own subscribers — encoded once per instance.
///
/// - [`send`](Self::send) on any instance reaches the topic's subscribers on every instance.
/// - [`subscribe`](Self::subscribe) on any instance replays from the shared history after the
///   client's `Last-Event-ID`, then goes live, with no gap and no duplicate: live events that
///   arrive during the replay are held, then sent after it, and each instance drops an event
///   whose offset it has already delivered.
/// - Event ids are `{epoch}:{offset}` (opaque to the browser). An id that is unknown, trimmed
///   or from another epoch replays the whole retained window and says so: the
///   [`LAST_EVENT_ID_STATUS`] response header is `reset`, and the
///   [`on_replay_reset`](Self::on_replay_reset) callback runs.
/// - An instance that sees an offset jump (messages lost while the broker was unreachable)
///   reads the missing events from history before delivering more.
/// - A subscriber whose buffer is full is given up (its stream ends abruptly; counted as a slow
///   consumer): its `EventSource` reconnects with its last id and loses nothing the history
///   still holds.
///
/// A cheap `Clone` of an `Arc`.
#[derive(Clone)]
pub struct ClusteredSseBroadcaster {
    hub: Arc<Hub>,
}

struct Hub {
    broker: Arc<dyn MessageBroker>,
    name: String,
    channel: String,
    settings: Mutex<Settings>,
    topics: Mutex<HashMap<String, Topic>>,
    gaps_backfilled: AtomicU64,
    replay_resets: AtomicU64,
    _listener: AbortOnDropHandle<()>,
}

/// A snapshot of a [`ClusteredSseBroadcaster`]'s counters on this instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterSseMetrics {
    /// Topics with subscribers here.
    pub topics: u64,
    /// Times events missing on the way (an offset jump, a broker reconnect) were read from
    /// history.
    pub gaps_backfilled: u64,
    /// Subscribers whose `Last-Event-ID` could not be resumed from (`reset`).
    pub replay_resets: u64,
}

/// What a new subscriber is sent before it goes live.
struct Replay {
    status: ReplayStatus,
    /// The history's newest position when it was read (`None`: it could not be read).
    head: Option<Position>,
    /// The position the replay starts after: the client's id when it resumes, the start of
    /// the retained window on a reset.
    after: Option<Position>,
    /// The events after `after`, up to `head`, oldest first.
    events: Vec<(Position, Bytes)>,
}

/// A broadcaster's settings.
struct Settings {
    history: usize,
    subscriber: SseEmitterBuilder,
    on_reset: Option<ResetCallback>,
}

/// One topic with subscribers on this instance.
#[derive(Default)]
struct Topic {
    /// The epoch and offset of the last event delivered here (`None`: none yet).
    last: Option<Position>,
    subscribers: Vec<Subscriber>,
    /// Set while missing events are read from history: live ones wait here.
    backfilling: Option<Vec<(Position, Bytes)>>,
    /// When the topic last heard from the broker (an event, or a look at its history).
    heard: Option<std::time::Instant>,
}

struct Subscriber {
    emitter: SseEmitter,
    /// Set while its replay is read: live events wait here.
    replaying: Option<Vec<(Position, Bytes)>>,
    /// The last event sent to it. A subscriber that resumed on an instance lagging behind the
    /// broker has been sent, from history, events this instance has not delivered yet: when
    /// they arrive live, they are not sent to it again.
    sent: Option<Position>,
}

impl ClusteredSseBroadcaster {
    /// A broadcaster named `name` on `broker` (instances that use the same name and broker
    /// share it), keeping [`DEFAULT_HISTORY`] events per topic. Subscribers have no timeout
    /// and the default heartbeat. Subscribes once, in a task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the subscription is read by a task).
    pub fn new(broker: impl Into<Arc<dyn MessageBroker>>, name: &str) -> Self {
        let broker = broker.into();
        let channel = format!("sse:{name}");
        let hub = Arc::new_cyclic(|weak: &Weak<Hub>| {
            let mut subscription = broker.subscribe(&channel);
            let weak = weak.clone();
            let listener = tokio::spawn(async move {
                // An event lost on the way is noticed at the next one (its offset jumps); the
                // last one before a quiet spell, by a look at the history of quiet topics.
                let mut check = tokio::time::interval(POSITION_CHECK);
                loop {
                    let event = tokio::select! {
                        event = subscription.next() => event,
                        _ = check.tick() => {
                            let Some(hub) = weak.upgrade() else {
                                return;
                            };
                            Hub::check_quiet_topics(&hub);
                            continue;
                        }
                    };
                    let Some(event) = event else {
                        return;
                    };
                    let Some(hub) = weak.upgrade() else {
                        return;
                    };
                    match event {
                        BrokerEvent::Message(message) => {
                            if let Some(position) = message.position {
                                Hub::live(&hub, &message.topic, position, message.payload);
                            }
                        }
                        BrokerEvent::Reconnected => {
                            let topics: Vec<String> = hub.lock().keys().cloned().collect();
                            for topic in topics {
                                Hub::start_backfill(&hub, &topic);
                            }
                        }
                    }
                }
            });
            Hub {
                broker: Arc::clone(&broker),
                name: name.to_owned(),
                channel: channel.clone(),
                settings: Mutex::new(Settings {
                    history: DEFAULT_HISTORY,
                    subscriber: SseEmitter::builder().no_timeout(),
                    on_reset: None,
                }),
                topics: Mutex::new(HashMap::new()),
                gaps_backfilled: AtomicU64::new(0),
                replay_resets: AtomicU64::new(0),
                _listener: AbortOnDropHandle::new(listener),
            }
        });
        ClusteredSseBroadcaster { hub }
    }

    /// Keeps the newest `events` events of each topic in the broker (at least 1). Settings
    /// are the broadcaster's, shared by its clones: set them when it is created.
    #[must_use]
    pub fn history(self, events: usize) -> Self {
        self.hub.settings().history = events.max(1);
        self
    }

    /// Uses `builder` for new subscribers (timeout, heartbeat, buffer bounds).
    #[must_use]
    pub fn subscriber_settings(self, builder: SseEmitterBuilder) -> Self {
        self.hub.settings().subscriber = builder;
        self
    }

    /// Runs `callback(topic, last_event_id)` when a client's `Last-Event-ID` could not be
    /// resumed from (see [`ReplayStatus::Reset`]): the application may resend state from its
    /// own store.
    #[must_use]
    pub fn on_replay_reset<F>(self, callback: F) -> Self
    where
        F: Fn(&str, &str) + Send + Sync + 'static,
    {
        self.hub.settings().on_reset = Some(Arc::new(callback));
        self
    }

    /// Appends `event` to `topic`'s history and sends it to the topic's subscribers on every
    /// instance. Returns its id (`{epoch}:{offset}`). An id set on the event is replaced.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] if the broker cannot take it: nobody received it.
    pub async fn send(&self, topic: &str, event: &SseEvent) -> Result<String, BrokerError> {
        let history = self.hub.settings().history;
        let position = self
            .hub
            .broker
            .append(&self.hub.channel, topic, event.bytes().clone(), history)
            .await?;
        Ok(event_id(position))
    }

    /// A subscriber to `topic`: replays what it missed after `last_event_id` (see the type's
    /// docs), then every event sent to the topic on any instance. Return it from the handler:
    /// the response carries the [`LAST_EVENT_ID_STATUS`] header when an id was given.
    ///
    /// If the history cannot be read (the broker is unreachable), the subscriber goes live at
    /// once and the status is `reset`.
    pub async fn subscribe(&self, topic: &str, last_event_id: Option<&str>) -> ClusterSubscription {
        let emitter = self.hub.settings().subscriber.clone().build();
        // Registered first, so that live events from now on are held for it.
        self.hub
            .lock()
            .entry(topic.to_owned())
            .or_default()
            .subscribers
            .push(Subscriber {
                emitter: emitter.clone(),
                replaying: Some(Vec::new()),
                sent: None,
            });
        let replay = match last_event_id {
            None => Replay {
                status: ReplayStatus::Live,
                head: self.head(topic).await,
                after: None,
                events: Vec::new(),
            },
            Some(id) => self.replay(topic, id).await,
        };
        let status = replay.status;
        match status {
            ReplayStatus::Recovered => crate::telemetry::sse_replay("full"),
            ReplayStatus::Reset => crate::telemetry::sse_replay("reset"),
            ReplayStatus::Live => {}
        }
        if status == ReplayStatus::Reset {
            self.hub.replay_resets.fetch_add(1, Ordering::Relaxed);
            let on_reset = self.hub.settings().on_reset.clone();
            if let (Some(callback), Some(id)) = (on_reset, last_event_id) {
                crate::guard::contain("on_replay_reset", || callback(topic, id));
            }
        }
        Hub::finish_replay(&self.hub, topic, &emitter, replay);
        ClusterSubscription {
            emitter,
            status: last_event_id.map(|_| status),
        }
    }

    /// The newest position of `topic`'s history (offset 0 if it has none), for a live
    /// subscriber on a topic this instance has delivered nothing of yet: where this instance
    /// starts to look for events lost on the way. `None` if the broker cannot be reached.
    async fn head(&self, topic: &str) -> Option<Position> {
        if self
            .hub
            .lock()
            .get(topic)
            .is_some_and(|state| state.last.is_some())
        {
            return None;
        }
        let head = self.hub.broker.range(topic, u64::MAX - 1, 1).await.ok()?;
        Some(Position {
            epoch: head.epoch,
            offset: head.last,
        })
    }

    /// How `last_event_id` resumes. The history read is the broker's, not this instance's:
    /// an id this instance has not delivered yet (it lags behind the broker) resumes exactly.
    async fn replay(&self, topic: &str, last_event_id: &str) -> Replay {
        let resume = parse_event_id(last_event_id);
        let after = resume.map_or(0, |position| position.offset);
        let Ok(head) = self.hub.broker.range(topic, after, REPLAY_PAGE).await else {
            return Replay {
                status: ReplayStatus::Reset,
                head: None,
                after: None,
                events: Vec::new(),
            };
        };
        let resumable = resume.is_some_and(|position| {
            position.epoch == head.epoch
                && position.offset + 1 >= head.first
                && position.offset <= head.last
        });
        let (status, from) = if resumable {
            (ReplayStatus::Recovered, after)
        } else {
            // The newest `history` events the broker still holds (it may hold more: Redis
            // trims approximately).
            let from = head
                .last
                .saturating_sub(self.hub.settings().history as u64)
                .max(head.first.saturating_sub(1));
            (ReplayStatus::Reset, from)
        };
        // Every retained event after `from` up to the newest at the first read; live events
        // after it are held for the subscriber meanwhile.
        let mut entries = if from == after {
            head.entries
        } else {
            Vec::new()
        };
        let mut next = entries.last().map_or(from, |(offset, _)| *offset);
        while next < head.last {
            let Ok(page) = self.hub.broker.range(topic, next, REPLAY_PAGE).await else {
                break;
            };
            let Some(&(last, _)) = page.entries.last() else {
                break;
            };
            entries.extend(page.entries);
            next = last;
        }
        let epoch = head.epoch;
        let events = entries
            .into_iter()
            .map(|(offset, payload)| (Position { epoch, offset }, payload))
            .collect();
        Replay {
            status,
            head: Some(Position {
                epoch,
                offset: head.last,
            }),
            after: Some(Position {
                epoch,
                offset: from,
            }),
            events,
        }
    }

    /// This instance's counters.
    pub fn metrics(&self) -> ClusterSseMetrics {
        ClusterSseMetrics {
            topics: self.hub.lock().len() as u64,
            gaps_backfilled: self.hub.gaps_backfilled.load(Ordering::Relaxed),
            replay_resets: self.hub.replay_resets.load(Ordering::Relaxed),
        }
    }

    /// How many subscribers `topic` has on this instance.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.hub.lock().get(topic).map_or(0, |topic| {
            topic
                .subscribers
                .iter()
                .filter(|subscriber| !subscriber.emitter.is_completed())
                .count()
        })
    }
}

impl Hub {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        // Only field reads and writes run under this lock.
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Topic>> {
        // Only queue operations run under this lock, never user code.
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A live event from the broker.
    fn live(hub: &Arc<Hub>, topic: &str, position: Position, payload: Bytes) {
        let mut topics = hub.lock();
        let Some(state) = topics.get_mut(topic) else {
            // Nobody here listens to it.
            return;
        };
        state.heard = Some(std::time::Instant::now());
        if let Some(held) = &mut state.backfilling {
            held.push((position, payload));
            return;
        }
        match state.last {
            Some(last) if last.epoch == position.epoch && position.offset <= last.offset => {
                // Delivered already (a backfill overtook it).
                return;
            }
            Some(last) if last.epoch == position.epoch && position.offset > last.offset + 1 => {
                // Events were lost on the way: read them first, hold this one.
                state.backfilling = Some(vec![(position, payload)]);
                drop(topics);
                Hub::start_backfill(hub, topic);
                return;
            }
            _ => {}
        }
        state.deliver(position, &payload, false);
        if state.subscribers.is_empty() {
            topics.remove(topic);
        }
    }

    /// Looks at the history of topics that heard nothing for [`POSITION_CHECK`].
    fn check_quiet_topics(hub: &Arc<Hub>) {
        let quiet: Vec<String> = {
            let topics = hub.lock();
            topics
                .iter()
                .filter(|(_, state)| {
                    state.backfilling.is_none()
                        && state
                            .heard
                            .map_or(true, |heard| heard.elapsed() >= POSITION_CHECK)
                })
                .map(|(topic, _)| topic.clone())
                .take(POSITION_CHECK_TOPICS)
                .collect()
        };
        for topic in quiet {
            Hub::start_backfill(hub, &topic);
        }
    }

    /// Reads what this instance missed of `topic` since its last delivered event, then
    /// delivers it and what was held meanwhile, in order.
    fn start_backfill(hub: &Arc<Hub>, topic: &str) {
        let after = {
            let mut topics = hub.lock();
            let Some(state) = topics.get_mut(topic) else {
                return;
            };
            state.heard = Some(std::time::Instant::now());
            // Nothing delivered here and no head read yet: nothing to compare history with
            // (its old events are no subscriber's to receive).
            let Some(last) = state.last else {
                return;
            };
            state.backfilling.get_or_insert_with(Vec::new);
            last.offset
        };
        let hub = Arc::clone(hub);
        let topic = topic.to_owned();
        tokio::spawn(async move {
            // Every retained event after `after`, page by page (a long outage may have missed
            // more than one page), read before the lock is taken.
            let mut events: Vec<(Position, Bytes)> = Vec::new();
            let mut next = after;
            loop {
                match hub.broker.range(&topic, next, REPLAY_PAGE).await {
                    Ok(page) => {
                        let Some(&(last, _)) = page.entries.last() else {
                            break;
                        };
                        let epoch = page.epoch;
                        events.extend(
                            page.entries
                                .into_iter()
                                .map(|(offset, payload)| (Position { epoch, offset }, payload)),
                        );
                        if last >= page.last {
                            break;
                        }
                        next = last;
                    }
                    Err(error) => {
                        tracing::warn!(%error, topic, "cannot read missed SSE events from history");
                        break;
                    }
                }
            }
            let from_history = events.len();
            let mut topics = hub.lock();
            let Some(state) = topics.get_mut(&topic) else {
                return;
            };
            let held = state.backfilling.take().unwrap_or_default();
            let known = state.last;
            events.extend(held);
            events.sort_by_key(|(position, _)| (position.epoch, position.offset));
            for (position, payload) in events {
                let fresh = state.last.map_or(true, |last| {
                    last.epoch != position.epoch || position.offset > last.offset
                });
                if fresh {
                    state.deliver(position, &payload, true);
                }
            }
            // Counted when history had events this instance had not delivered.
            if from_history > 0 && state.last != known {
                hub.gaps_backfilled.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// A subscriber's replay was read: send it, then what was held for it, then go live. On
    /// a topic this instance has delivered nothing of, `head` (the history's newest position
    /// when it was read) is where looking for lost events starts.
    fn finish_replay(hub: &Hub, topic: &str, emitter: &SseEmitter, replay: Replay) {
        let mut topics = hub.lock();
        let Some(state) = topics.get_mut(topic) else {
            return;
        };
        if state.last.is_none() {
            state.last = replay.head;
        }
        let Some(subscriber) = state
            .subscribers
            .iter_mut()
            .find(|subscriber| subscriber.emitter.ptr_eq(emitter))
        else {
            return;
        };
        let held = subscriber.replaying.take().unwrap_or_default();
        // What it has (its id) or is given (the replay) counts as sent: a lagging instance
        // delivers those events later, and they are not sent to it again.
        let mut sent = replay.after;
        for (position, payload) in replay.events.into_iter().chain(held) {
            let newer = sent.map_or(true, |sent| {
                sent.epoch != position.epoch || position.offset > sent.offset
            });
            if newer {
                // The replay is bounded by the history length: queued whatever the bounds.
                let _ = subscriber
                    .emitter
                    .force_send_frame(frame(position, &payload));
                sent = Some(position);
            }
        }
        subscriber.sent = sent;
    }
}

impl Topic {
    /// Encodes the event once for this instance and queues it for every live subscriber
    /// (held for those still replaying). A `backfilled` event is queued whatever the buffer's
    /// bounds — a backfill is bounded by the history length — where a live one finding a full
    /// buffer gives its subscriber up.
    fn deliver(&mut self, position: Position, payload: &Bytes, backfilled: bool) {
        self.last = Some(position);
        let frame = frame(position, payload);
        self.subscribers.retain_mut(|subscriber| {
            if subscriber.emitter.is_completed() {
                return false;
            }
            if let Some(held) = &mut subscriber.replaying {
                held.push((position, payload.clone()));
                return true;
            }
            if subscriber
                .sent
                .is_some_and(|sent| sent.epoch == position.epoch && position.offset <= sent.offset)
            {
                // Replayed to it from history already.
                return true;
            }
            subscriber.sent = Some(position);
            let sent = if backfilled {
                subscriber.emitter.force_send_frame(frame.clone())
            } else {
                subscriber.emitter.try_send_frame(frame.clone())
            };
            match sent {
                Ok(()) => true,
                Err(EmitterError::Full) => {
                    // It reconnects with its last id and catches up from history.
                    subscriber.emitter.give_up(Duration::ZERO);
                    false
                }
                Err(_) => false,
            }
        });
    }
}

/// `{epoch}:{offset}`.
fn event_id(position: Position) -> String {
    format!("{}:{}", position.epoch, position.offset)
}

fn parse_event_id(id: &str) -> Option<Position> {
    let (epoch, offset) = id.trim().split_once(':')?;
    Some(Position {
        epoch: epoch.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// The event's frame with its `id:` line last (the last `id` field of an event wins).
fn frame(position: Position, payload: &Bytes) -> Bytes {
    let id = event_id(position);
    // The payload ends with the blank line that dispatches the event.
    let body = payload.strip_suffix(b"\n").unwrap_or(payload);
    let mut frame = BytesMut::with_capacity(body.len() + id.len() + 6);
    frame.put_slice(body);
    frame.put_slice(b"id:");
    frame.put_slice(id.as_bytes());
    frame.put_slice(b"\n\n");
    frame.freeze()
}

/// A subscriber's response: the SSE stream, and the [`LAST_EVENT_ID_STATUS`] header when the
/// client sent a `Last-Event-ID`.
#[derive(Debug)]
pub struct ClusterSubscription {
    emitter: SseEmitter,
    status: Option<ReplayStatus>,
}

impl ClusterSubscription {
    /// How replay went (`None`: no `Last-Event-ID` was given).
    pub fn status(&self) -> Option<ReplayStatus> {
        self.status
    }

    /// The subscriber's emitter (to register callbacks).
    pub fn emitter(&self) -> &SseEmitter {
        &self.emitter
    }
}

impl IntoResponse for ClusterSubscription {
    fn into_response(self) -> Response {
        let status = match self.status {
            Some(ReplayStatus::Reset) => Some("reset"),
            Some(ReplayStatus::Recovered) => Some("recovered"),
            Some(ReplayStatus::Live) | None => None,
        };
        let mut response = self.emitter.into_response();
        if let Some(status) = status {
            response
                .headers_mut()
                .insert(LAST_EVENT_ID_STATUS, HeaderValue::from_static(status));
        }
        response
    }
}

impl fmt::Debug for ClusteredSseBroadcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusteredSseBroadcaster")
            .field("name", &self.hub.name)
            .field("history", &self.hub.settings().history)
            .field("topics", &self.hub.lock().len())
            .finish_non_exhaustive()
    }
}
