//! [`Replica`]: the order desk on many instances. Every change — an order placed, a status
//! appended — is appended to one topic of the cluster's broker (its history is where the orders
//! are stored: a Redis stream under `--redis`), and every instance applies the topic, in offset
//! order, to its own [`OrderStore`]. So a long poll, an event stream or a receipt on any
//! instance sees a change made on any other, with the same versions everywhere.
//!
//! Long polls wait in the cluster's [`DeferredResultRegistry`], keyed by the order and the
//! version they wait for: the instance that makes a change completes them on every instance,
//! and the registry retains the value for a minute for a poll that arrives just after.
//!
//! An instance that sees an offset jump, or that the broker reconnected to, reads what it
//! missed from history first; a request for an order it does not know yet catches up before
//! answering `404`, so `POST` on A then `GET` on B always finds the order.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError,
    },
    time::Duration,
};

use async_mvc::{
    cluster::{BrokerError, BrokerEvent, DeferredResultRegistry, MessageBroker},
    DeferredResult,
};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};

use super::{Order, OrderStore, Polled};

/// The topic that holds every change, and the channel it is published on.
const CHANGES: &str = "order-desk:changes";
/// The topic whose offsets are the order ids.
const IDS: &str = "order-desk:ids";
/// How many changes the history keeps: every change of a demo's lifetime.
const HISTORY: usize = 1_000_000;
/// How many changes one catch-up read takes.
const PAGE: usize = 1_000;
/// How long the replica goes without a change before it looks at history for one it missed.
const QUIET_CHECK: Duration = Duration::from_secs(1);
/// How long a writer waits for its own change to come back before it reads history.
const APPLIED_WAIT: Duration = Duration::from_secs(2);
/// The long polls' registry, on the cluster's broker.
const POLLS: &str = "order-desk:next";
/// How long a completed long poll's value stays for a poll that registers just after.
const POLL_RETENTION: Duration = Duration::from_secs(60);
/// How many long polls one order version may have waiting on one instance: past any demo
/// load (the manager's admission limit bounds the total).
const POLLS_PER_VERSION: usize = 65_536;
/// How many applied status changes are remembered with the order they produced, for the
/// writer of each to complete its long polls with exactly that version.
const RECENT: usize = 4_096;

/// A long poll's key in the registry: the order and the version it waits for.
type PollKey = (String, u64);

/// One change, as the topic holds it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Change {
    Placed { id: u64, item: String },
    Status { id: String, status: String },
}

/// An instance's replica of the cluster's orders; a cheap `Clone`.
#[derive(Debug, Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Arc<dyn MessageBroker>,
    store: OrderStore,
    /// The offset of the last change applied.
    applied: AtomicU64,
    progressed: Notify,
    /// Held while changes are applied: by the listener and by catch-ups alike.
    applying: Mutex<()>,
    /// The last [`RECENT`] status changes applied: offset, and the order they made.
    recent: std::sync::Mutex<VecDeque<(u64, Order)>>,
    polls: DeferredResultRegistry<PollKey, Polled>,
}

impl Replica {
    /// Starts applying the cluster's changes to `store`: history first, then live.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(broker: Arc<dyn MessageBroker>, store: OrderStore) -> Replica {
        let mut changes = broker.subscribe(CHANGES);
        let polls = DeferredResultRegistry::new(Arc::clone(&broker), POLLS)
            .retain(POLL_RETENTION)
            .max_waiters_per_key(POLLS_PER_VERSION);
        let replica = Replica {
            inner: Arc::new(Inner {
                broker,
                store,
                applied: AtomicU64::new(0),
                progressed: Notify::new(),
                applying: Mutex::new(()),
                recent: std::sync::Mutex::new(VecDeque::with_capacity(RECENT)),
                polls,
            }),
        };
        let weak = Arc::downgrade(&replica.inner);
        tokio::spawn(async move {
            if let Some(inner) = weak.upgrade() {
                inner.catch_up().await;
            }
            // A change lost on the way is noticed at the next one (its offset jumps); the last
            // one before a quiet spell, by this look at history after a second without news.
            let mut quiet = tokio::time::interval(QUIET_CHECK);
            loop {
                let event = tokio::select! {
                    event = changes.next() => event,
                    _ = quiet.tick() => {
                        let Some(inner) = weak.upgrade() else {
                            return;
                        };
                        inner.catch_up().await;
                        continue;
                    }
                };
                let Some(event) = event else {
                    return;
                };
                quiet.reset();
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                match event {
                    BrokerEvent::Message(message) => {
                        let Some(position) = message.position else {
                            continue;
                        };
                        let _applying = inner.applying.lock().await;
                        let applied = inner.applied.load(Ordering::Acquire);
                        if position.offset == applied + 1 {
                            inner.apply(position.offset, &message.payload);
                        } else if position.offset > applied + 1 {
                            drop(_applying);
                            inner.catch_up().await;
                        }
                    }
                    BrokerEvent::Reconnected => inner.catch_up().await,
                }
            }
        });
        replica
    }

    /// Places an order on the cluster: its id is the next of the cluster's ids.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot take it (nothing was placed).
    pub async fn create(&self, item: String) -> Result<Order, BrokerError> {
        let id = self
            .inner
            .broker
            .append(IDS, IDS, Bytes::new(), 1)
            .await?
            .offset;
        self.write(&Change::Placed { id, item }).await?;
        self.inner
            .store
            .get(&id.to_string())
            .ok_or_else(|| BrokerError::Protocol(format!("order {id} was not applied")))
    }

    /// Appends a status to order `id` on the cluster and completes the long polls waiting for
    /// the version it makes, on every instance; `None` if there is no such order.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot take it.
    pub async fn append(&self, id: &str, status: String) -> Result<Option<Order>, BrokerError> {
        if !self.knows(id).await {
            return Ok(None);
        }
        let offset = self
            .write(&Change::Status {
                id: id.to_owned(),
                status,
            })
            .await?;
        let Some(order) = self
            .inner
            .made_by(offset)
            .or_else(|| self.inner.store.get(id))
        else {
            return Ok(None);
        };
        let key = (order.id.clone(), order.version);
        if let Err(error) = self
            .inner
            .polls
            .complete(&key, &Polled::Changed(order.clone()))
            .await
        {
            // The change is stored: the polls answer `304` at their timeout and the next
            // poll sees the new version.
            tracing::warn!(%error, id, "cannot complete the order's long polls");
        }
        Ok(Some(order))
    }

    /// A long poll for order `id`: the order at once if its version is greater than `after`,
    /// else a waiter for version `after + 1` (versions grow by one per change), answered
    /// [`Polled::NotModified`] after `timeout`. `None` if there is no such order.
    pub async fn watch(
        &self,
        id: &str,
        after: u64,
        timeout: Duration,
    ) -> Option<DeferredResult<Polled>> {
        if !self.knows(id).await {
            return None;
        }
        let order = self.inner.store.get(id)?;
        if order.version > after {
            let poll = DeferredResult::new();
            poll.set_result(Polled::Changed(order));
            return Some(poll);
        }
        // A completion published since the look above is retained: the registry reads it
        // after registering the waiter.
        let key = (order.id, after.saturating_add(1));
        Some(self.inner.polls.wait(key, timeout, Polled::NotModified))
    }

    /// This instance's copy of the orders.
    pub fn store(&self) -> &OrderStore {
        &self.inner.store
    }

    /// How many long polls wait on this instance.
    pub fn waiting(&self) -> usize {
        self.inner.polls.waiting()
    }

    /// Whether order `id` exists, catching up with the cluster first if this instance does not
    /// know it yet.
    pub async fn knows(&self, id: &str) -> bool {
        if self.inner.store.get(id).is_some() {
            return true;
        }
        self.inner.catch_up().await;
        self.inner.store.get(id).is_some()
    }

    /// Appends `change`, then waits until this instance has applied it; its offset.
    async fn write(&self, change: &Change) -> Result<u64, BrokerError> {
        let payload = serde_json::to_vec(change).map_err(|e| BrokerError::Codec(e.to_string()))?;
        let position = self
            .inner
            .broker
            .append(CHANGES, CHANGES, Bytes::from(payload), HISTORY)
            .await?;
        loop {
            let progressed = self.inner.progressed.notified();
            if self.inner.applied.load(Ordering::Acquire) >= position.offset {
                return Ok(position.offset);
            }
            if tokio::time::timeout(APPLIED_WAIT, progressed)
                .await
                .is_err()
            {
                self.inner.catch_up().await;
            }
        }
    }
}

impl Inner {
    /// The order as status change `offset` left it, if it is among the recent ones.
    fn made_by(&self, offset: u64) -> Option<Order> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|(applied, _)| *applied == offset)
            .map(|(_, order)| order.clone())
    }

    /// Applies every change after the last one applied, from history.
    async fn catch_up(&self) {
        let _applying = self.applying.lock().await;
        loop {
            let after = self.applied.load(Ordering::Acquire);
            let history = match self.broker.range(CHANGES, after, PAGE).await {
                Ok(history) => history,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the order changes from the broker");
                    return;
                }
            };
            let read = history.entries.len();
            for (offset, payload) in history.entries {
                if offset > after {
                    if offset > self.applied.load(Ordering::Acquire) + 1 {
                        tracing::warn!(offset, "order changes are missing from history");
                    }
                    self.apply(offset, &payload);
                }
            }
            if read < PAGE {
                return;
            }
        }
    }

    /// Applies change `offset` (the caller holds `applying`).
    fn apply(&self, offset: u64, payload: &[u8]) {
        match serde_json::from_slice::<Change>(payload) {
            Ok(Change::Placed { id, item }) => {
                self.store.create_with_id(id, item);
            }
            Ok(Change::Status { id, status }) => {
                if let Some(order) = self.store.append(&id, status) {
                    let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back((offset, order));
                }
            }
            Err(error) => tracing::warn!(offset, %error, "an order change did not decode"),
        }
        self.applied.store(offset, Ordering::Release);
        self.progressed.notify_waiters();
    }
}
