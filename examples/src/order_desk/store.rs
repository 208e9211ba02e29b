//! [`OrderStore`]: the orders, and the long polls waiting for them to change.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use async_mvc::DeferredResult;
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

use super::Order;

/// A long poll for the next version of an order: the order as JSON when it changes, or
/// `304 Not Modified` when its timeout fires (Spring's
/// `new DeferredResult<>(timeout, NOT_MODIFIED)`).
pub type OrderPoll = DeferredResult<Response>;

/// The orders, in memory, and the long polls waiting for each of them to change.
///
/// A cheap `Clone` (an `Arc`): the controller and the fulfilment worker share one store. Every
/// version change completes the order's waiting polls; a poll that completes in any other way
/// (timeout, client gone) removes itself through `on_completion`, so abandoned polls never pile
/// up.
#[derive(Debug, Clone, Default)]
pub struct OrderStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    last_order: u64,
    last_waiter: u64,
    orders: HashMap<String, Order>,
    /// Order id → waiter id → the waiting poll.
    waiters: HashMap<String, HashMap<u64, OrderPoll>>,
}

impl OrderStore {
    /// An empty store.
    pub fn new() -> Self {
        OrderStore::default()
    }

    /// Places an order for `item`: status `placed`, version 1.
    pub fn create(&self, item: String) -> Order {
        let mut inner = self.lock();
        inner.last_order += 1;
        let order = Order {
            id: inner.last_order.to_string(),
            item,
            status: "placed".to_owned(),
            version: 1,
        };
        inner.orders.insert(order.id.clone(), order.clone());
        order
    }

    /// The order with this id.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.lock().orders.get(id).cloned()
    }

    /// Moves an order to `status` (which may equal the current one) and bumps its version, then
    /// completes every poll waiting for it. `None` if there is no such order.
    pub fn append(&self, id: &str, status: String) -> Option<Order> {
        let (order, waiting) = {
            let mut inner = self.lock();
            let order = inner.orders.get_mut(id)?;
            order.status = status;
            order.version += 1;
            let order = order.clone();
            (order, inner.waiters.remove(id).unwrap_or_default())
        };
        // Completed outside the lock: the polls' `on_completion` takes it again.
        let completed = waiting
            .into_values()
            .filter(|poll| poll.set_result(Json(order.clone()).into_response()))
            .count();
        tracing::info!(
            id = %order.id,
            status = %order.status,
            version = order.version,
            completed,
            "order changed"
        );
        Some(order)
    }

    /// A long poll for order `id`, answered with the order once its version is greater than
    /// `after` — at once if it already is — or with `304 Not Modified` after `timeout`. `None`
    /// if there is no such order.
    pub fn watch(&self, id: &str, after: u64, timeout: Duration) -> Option<OrderPoll> {
        let poll =
            OrderPoll::with_timeout_result(timeout, StatusCode::NOT_MODIFIED.into_response());
        let mut inner = self.lock();
        let order = inner.orders.get(id)?;
        if order.version > after {
            let order = order.clone();
            drop(inner);
            poll.set_result(Json(order).into_response());
            return Some(poll);
        }
        inner.last_waiter += 1;
        let waiter = inner.last_waiter;
        inner
            .waiters
            .entry(id.to_owned())
            .or_default()
            .insert(waiter, poll.clone());
        drop(inner);
        // Registered before the handler returns, so it runs however the poll ends.
        let store = Arc::downgrade(&self.inner);
        let id = id.to_owned();
        poll.on_completion(move || forget(&store, &id, waiter));
        Some(poll)
    }

    /// Answers every waiting long poll with `304 Not Modified`, as if its timeout had fired:
    /// lets a server shut down gracefully without waiting for them. Returns how many there were.
    pub fn release_waiting(&self) -> usize {
        let waiting = std::mem::take(&mut self.lock().waiters);
        waiting
            .into_values()
            .flat_map(HashMap::into_values)
            .filter(|poll| poll.set_result(StatusCode::NOT_MODIFIED.into_response()))
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
