//! [`OrderStore`]: the orders, their histories, and the clients waiting for them to change.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use async_mvc::{CancellationToken, DeferredResult, SseBroadcaster, SseEmitter, SseEvent};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::Order;

/// A long poll for the next version of an order: the order as JSON when it changes, or
/// `304 Not Modified` when its timeout fires (Spring's
/// `new DeferredResult<>(timeout, NOT_MODIFIED)`).
pub type OrderPoll = DeferredResult<Response>;

/// How many events an order's SSE broadcaster keeps for replay: more changes than any order of
/// the demo gets, so a client can resume after any version (beyond it, the oldest are dropped
/// and a resume from before them replays the 1024 newest changes).
pub const STREAM_REPLAY: usize = 1024;

/// How many order changes the feed keeps for a slow `application/x-ndjson` reader before it
/// skips the oldest.
pub const FEED_CAPACITY: usize = 256;

/// The `Last-Event-ID` used when a client sends none: no event has id `0` (versions start at
/// 1), and the broadcaster replays its whole buffer for an id it does not hold.
const REPLAY_ALL: &str = "0";

/// One status change of an order, as the receipt lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The order's version after the change: 1 for `placed`, then 2, 3, …
    pub version: u64,
    /// The status it moved to.
    pub status: String,
}

/// The orders, in memory, with their histories and the clients waiting for them to change.
///
/// A cheap `Clone` (an `Arc`): the controller and the fulfilment worker share one store. Every
/// version change, under the store's lock so that changes reach every client in version order:
/// - completes the order's waiting long polls whose version it passes (a poll waits for a
///   version greater than its `after`); a poll that completes in any other way (timeout, client
///   gone) removes itself through `on_completion`, so abandoned polls never pile up;
/// - publishes a `status` event (id = version) to the order's [`SseBroadcaster`], which keeps
///   the last [`STREAM_REPLAY`] events for clients resuming with `Last-Event-ID`;
/// - sends the order to the [feed](Self::changes).
#[derive(Debug, Clone)]
pub struct OrderStore {
    inner: Arc<Mutex<Inner>>,
    feed: broadcast::Sender<Order>,
    /// Cancelled by [`close_streams`](OrderStore::close_streams): ends the feeds.
    closed: CancellationToken,
}

#[derive(Debug, Default)]
struct Inner {
    last_order: u64,
    last_waiter: u64,
    orders: HashMap<String, Entry>,
    /// Order id → waiter id → the waiting poll.
    waiters: HashMap<String, HashMap<u64, Waiter>>,
}

/// A long poll waiting for a version of an order greater than `after`.
#[derive(Debug)]
struct Waiter {
    after: u64,
    poll: OrderPoll,
}

/// An order with what follows it.
#[derive(Debug)]
struct Entry {
    order: Order,
    history: Vec<Change>,
    stream: SseBroadcaster,
    /// The streams handed out, so that [`OrderStore::drop_streams`] can end them; completed ones
    /// are pruned whenever the list is touched.
    subscribers: Vec<SseEmitter>,
}

impl Entry {
    fn prune(&mut self) {
        self.subscribers.retain(|emitter| !emitter.is_completed());
    }
}

impl Default for OrderStore {
    fn default() -> Self {
        OrderStore {
            inner: Arc::default(),
            feed: broadcast::channel(FEED_CAPACITY).0,
            closed: CancellationToken::new(),
        }
    }
}

/// The SSE event of one version of an order: `id:<version>`, `event:status`, `data:<order JSON>`.
fn status_event(order: &Order) -> Option<SseEvent> {
    let event = SseEvent::builder()
        .id(order.version.to_string())
        .event("status")
        .json_data(order)
        .build();
    match event {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::error!(id = %order.id, %error, "cannot encode the order's status event");
            None
        }
    }
}

impl OrderStore {
    /// An empty store.
    pub fn new() -> Self {
        OrderStore::default()
    }

    /// Places an order for `item`: status `placed`, version 1. Its stream and the feed get
    /// this first version.
    pub fn create(&self, item: String) -> Order {
        let id = self.lock().last_order + 1;
        self.create_with_id(id, item)
    }

    /// Places order `id` for `item`, as [`create`](Self::create) does: for a replica, whose
    /// ids come from the cluster. An id already present is replaced by a fresh order.
    pub fn create_with_id(&self, id: u64, item: String) -> Order {
        let mut inner = self.lock();
        inner.last_order = inner.last_order.max(id);
        let order = Order {
            id: id.to_string(),
            item,
            status: "placed".to_owned(),
            version: 1,
        };
        let stream = SseBroadcaster::with_replay(STREAM_REPLAY);
        self.publish(&stream, &order);
        let entry = Entry {
            order: order.clone(),
            history: vec![Change {
                version: order.version,
                status: order.status.clone(),
            }],
            stream,
            subscribers: Vec::new(),
        };
        inner.orders.insert(order.id.clone(), entry);
        order
    }

    /// The order with this id.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.lock().orders.get(id).map(|entry| entry.order.clone())
    }

    /// The order with this id and every change it went through, oldest first.
    pub fn history(&self, id: &str) -> Option<(Order, Vec<Change>)> {
        let inner = self.lock();
        let entry = inner.orders.get(id)?;
        Some((entry.order.clone(), entry.history.clone()))
    }

    /// Every order, sorted by id as a number.
    pub fn all(&self) -> Vec<Order> {
        let mut orders: Vec<Order> = self
            .lock()
            .orders
            .values()
            .map(|entry| entry.order.clone())
            .collect();
        orders.sort_by_cached_key(|order| (order.id.parse::<u64>().ok(), order.id.clone()));
        orders
    }

    /// Moves an order to `status` (which may equal the current one) and bumps its version, then
    /// completes every poll waiting for it and publishes the change to its stream and the feed.
    /// `None` if there is no such order.
    pub fn append(&self, id: &str, status: String) -> Option<Order> {
        let (order, waiting, streamed) = {
            let mut inner = self.lock();
            let entry = inner.orders.get_mut(id)?;
            entry.order.status = status;
            entry.order.version += 1;
            entry.history.push(Change {
                version: entry.order.version,
                status: entry.order.status.clone(),
            });
            let order = entry.order.clone();
            // Published under the lock: two changes of one order reach clients in order.
            let streamed = self.publish(&entry.stream, &order);
            entry.prune();
            // Only the polls this version answers: one waiting for a later version (`after`
            // ahead of the order) keeps waiting.
            let mut answered = Vec::new();
            if let Some(waiters) = inner.waiters.get_mut(id) {
                waiters.retain(|_, waiter| {
                    let passed = order.version > waiter.after;
                    if passed {
                        answered.push(waiter.poll.clone());
                    }
                    !passed
                });
                if waiters.is_empty() {
                    inner.waiters.remove(id);
                }
            }
            (order, answered, streamed)
        };
        // Completed outside the lock: the polls' `on_completion` takes it again.
        let completed = waiting
            .into_iter()
            .filter(|poll| poll.set_result(Json(order.clone()).into_response()))
            .count();
        tracing::info!(
            id = %order.id,
            status = %order.status,
            version = order.version,
            completed,
            streamed,
            "order changed"
        );
        Some(order)
    }

    /// Sends a new version to the order's stream and the feed; how many SSE clients got it.
    fn publish(&self, stream: &SseBroadcaster, order: &Order) -> usize {
        // No feed reader is not an error.
        let _ = self.feed.send(order.clone());
        status_event(order).map_or(0, |event| stream.publish(&event))
    }

    /// A long poll for order `id`, answered with the order once its version is greater than
    /// `after` — at once if it already is — or with `304 Not Modified` after `timeout`. `None`
    /// if there is no such order.
    pub fn watch(&self, id: &str, after: u64, timeout: Duration) -> Option<OrderPoll> {
        let poll =
            OrderPoll::with_timeout_result(timeout, StatusCode::NOT_MODIFIED.into_response());
        let mut inner = self.lock();
        let entry = inner.orders.get(id)?;
        if entry.order.version > after {
            let order = entry.order.clone();
            drop(inner);
            poll.set_result(Json(order).into_response());
            return Some(poll);
        }
        inner.last_waiter += 1;
        let waiter = inner.last_waiter;
        inner.waiters.entry(id.to_owned()).or_default().insert(
            waiter,
            Waiter {
                after,
                poll: poll.clone(),
            },
        );
        drop(inner);
        // Registered before the handler returns, so it runs however the poll ends.
        let store = Arc::downgrade(&self.inner);
        let id = id.to_owned();
        poll.on_completion(move || forget(&store, &id, waiter));
        Some(poll)
    }

    /// A Server-Sent Events stream of order `id`'s changes. It first replays the changes after
    /// version `last_event_id` — every change when `last_event_id` is `None` or is not a version
    /// the order's replay buffer holds (`0`, not a number, a version it never had) — then sends
    /// every new change as it happens. `None` if there is no such order.
    pub fn subscribe(&self, id: &str, last_event_id: Option<&str>) -> Option<SseEmitter> {
        let mut inner = self.lock();
        let entry = inner.orders.get_mut(id)?;
        // Under the store's lock: no change is published between the replay and the live part
        // (the broadcaster guarantees that too) nor before the emitter is listed.
        let emitter = entry
            .stream
            .subscribe(Some(last_event_id.unwrap_or(REPLAY_ALL)));
        entry.prune();
        entry.subscribers.push(emitter.clone());
        Some(emitter)
    }

    /// Ends every open SSE stream (what was sent is still written), as a server dropping the
    /// connections would; the orders' broadcasters stay open, so clients reconnect with
    /// `Last-Event-ID` and catch up from the replay buffers. Returns how many streams were open.
    pub fn drop_streams(&self) -> usize {
        let mut inner = self.lock();
        let mut dropped = 0;
        for entry in inner.orders.values_mut() {
            for emitter in entry.subscribers.drain(..) {
                if !emitter.is_completed() {
                    emitter.complete();
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// How many SSE streams are open, over all orders.
    pub fn streams(&self) -> usize {
        let mut inner = self.lock();
        inner
            .orders
            .values_mut()
            .map(|entry| {
                entry.prune();
                entry.subscribers.len()
            })
            .sum()
    }

    /// Every change of any order from now on (new orders included), for the feed; the stream
    /// ends after [`close_streams`](Self::close_streams). A reader more than [`FEED_CAPACITY`]
    /// changes behind skips the ones it missed.
    pub fn changes(&self) -> impl Stream<Item = Order> + Send + 'static {
        // Subscribed now, before the caller's response starts: no change is lost meanwhile.
        BroadcastStream::new(self.feed.subscribe())
            .filter_map(|change| std::future::ready(change.ok()))
            .take_until(self.closed.clone().cancelled_owned())
    }

    /// Ends every SSE stream ([`drop_streams`](Self::drop_streams)) and every feed, now and
    /// from now on, so that a graceful shutdown does not wait for them. Returns how many SSE
    /// streams were open.
    pub fn close_streams(&self) -> usize {
        self.closed.cancel();
        self.drop_streams()
    }

    /// Answers every waiting long poll with `304 Not Modified`, as if its timeout had fired:
    /// lets a server shut down gracefully without waiting for them. Returns how many there were.
    pub fn release_waiting(&self) -> usize {
        let waiting = std::mem::take(&mut self.lock().waiters);
        waiting
            .into_values()
            .flat_map(HashMap::into_values)
            .filter(|waiter| {
                waiter
                    .poll
                    .set_result(StatusCode::NOT_MODIFIED.into_response())
            })
            .count()
    }

    /// How many long polls are waiting, over all orders.
    pub fn waiting(&self) -> usize {
        self.lock().waiters.values().map(HashMap::len).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// Removes a completed poll from the waiters, if it is still there.
fn forget(store: &Weak<Mutex<Inner>>, id: &str, waiter: u64) {
    let Some(store) = store.upgrade() else {
        return;
    };
    let mut inner = lock(&store);
    if let Some(waiting) = inner.waiters.get_mut(id) {
        waiting.remove(&waiter);
        if waiting.is_empty() {
            inner.waiters.remove(id);
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Nothing panics while holding the lock; if something did, the maps are still usable.
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_get_sequential_ids_and_versions() {
        let store = OrderStore::new();
        let first = store.create("tea".to_owned());
        let second = store.create("coffee".to_owned());
        assert_eq!((first.id.as_str(), second.id.as_str()), ("1", "2"));
        assert_eq!(first.status, "placed");
        assert_eq!(first.version, 1);

        let paid = store.append("1", "paid".to_owned());
        assert_eq!(
            paid.map(|o| (o.status, o.version)),
            Some(("paid".to_owned(), 2))
        );
        let again = store.append("1", "paid".to_owned());
        assert_eq!(again.map(|o| o.version), Some(3));
        assert_eq!(store.append("nope", "paid".to_owned()), None);
        assert_eq!(store.get("2"), Some(second));
        assert_eq!(store.get("3"), None);
    }

    #[test]
    fn watching_registers_only_when_nothing_newer_exists() {
        let store = OrderStore::new();
        let order = store.create("tea".to_owned());
        let ready = store.watch(&order.id, 0, Duration::from_secs(1));
        assert!(ready.is_some_and(|poll| poll.has_result()));
        assert_eq!(store.waiting(), 0);

        let waiting = store.watch(&order.id, 1, Duration::from_secs(1));
        assert!(waiting.as_ref().is_some_and(|poll| !poll.has_result()));
        assert_eq!(store.waiting(), 1);
        assert!(store.watch("nope", 0, Duration::from_secs(1)).is_none());

        store.append(&order.id, "paid".to_owned());
        assert!(waiting.is_some_and(|poll| poll.has_result()));
        assert_eq!(store.waiting(), 0);
    }

    #[test]
    fn a_poll_ahead_of_the_order_waits_for_a_version_past_its_own() {
        let store = OrderStore::new();
        let order = store.create("tea".to_owned());
        let ahead = store.watch(&order.id, 3, Duration::from_secs(1));
        let current = store.watch(&order.id, 1, Duration::from_secs(1));
        assert_eq!(store.waiting(), 2);
        store.append(&order.id, "paid".to_owned()); // version 2
        assert!(current.is_some_and(|poll| poll.has_result()));
        assert!(ahead.as_ref().is_some_and(|poll| !poll.has_result()));
        assert_eq!(store.waiting(), 1);
        store.append(&order.id, "packed".to_owned()); // version 3: still not past 3
        assert!(ahead.as_ref().is_some_and(|poll| !poll.has_result()));
        store.append(&order.id, "shipped".to_owned()); // version 4
        assert!(ahead.is_some_and(|poll| poll.has_result()));
        assert_eq!(store.waiting(), 0);
    }

    #[test]
    fn the_store_keeps_each_history_and_lists_orders_by_number() {
        let store = OrderStore::new();
        for n in 1..=10 {
            store.create(format!("item {n}"));
        }
        store.append("2", "paid".to_owned());
        let ids: Vec<_> = store.all().into_iter().map(|order| order.id).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
        let (order, history) = store.history("2").expect("order 2");
        assert_eq!((order.status.as_str(), order.version), ("paid", 2));
        let changes: Vec<_> = history
            .iter()
            .map(|change| (change.version, change.status.as_str()))
            .collect();
        assert_eq!(changes, [(1, "placed"), (2, "paid")]);
        assert!(store.history("11").is_none());
    }

    #[tokio::test]
    async fn streams_are_listed_until_dropped() {
        let store = OrderStore::new();
        let order = store.create("tea".to_owned());
        assert!(store.subscribe("nope", None).is_none());
        let first = store.subscribe(&order.id, None);
        let second = store.subscribe(&order.id, Some("1"));
        assert_eq!(store.streams(), 2);
        assert_eq!(store.drop_streams(), 2);
        assert!(first.is_some_and(|emitter| emitter.is_completed()));
        assert!(second.is_some_and(|emitter| emitter.is_completed()));
        assert_eq!(store.streams(), 0);
        // The broadcaster stays open: a new stream is live.
        let third = store.subscribe(&order.id, None);
        assert!(third.is_some_and(|emitter| !emitter.is_completed()));
        assert_eq!(store.streams(), 1);
    }

    #[tokio::test]
    async fn the_feed_gets_every_change_until_closed() {
        let store = OrderStore::new();
        let mut changes = Box::pin(store.changes());
        let order = store.create("tea".to_owned());
        store.append(&order.id, "paid".to_owned());
        assert_eq!(changes.next().await.map(|o| o.version), Some(1));
        assert_eq!(changes.next().await.map(|o| o.version), Some(2));
        store.close_streams();
        assert_eq!(changes.next().await, None);
    }

    #[test]
    fn releasing_answers_every_waiting_poll() {
        let store = OrderStore::new();
        let order = store.create("tea".to_owned());
        let polls: Vec<_> = (0..2)
            .filter_map(|_| store.watch(&order.id, 1, Duration::from_secs(1)))
            .collect();
        assert_eq!(store.release_waiting(), 2);
        assert!(polls.iter().all(OrderPoll::has_result));
        assert_eq!(store.waiting(), 0);
    }
}
