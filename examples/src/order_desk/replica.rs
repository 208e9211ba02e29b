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
//! answering `404`, so `POST` on A then `GET` on B always finds the order. A client that saw a
//! version on another instance is never behind this one: [`caught_up_to`](Replica::caught_up_to)
//! reads the broker's history before this instance answers from an older copy.
//!
//! Every operation that waits on the broker takes the request's one deadline: time spent
//! waiting for a broker that is down or paused counts against it, and the answer comes by it.

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
use tokio::{
    sync::{Mutex, Notify},
    time::Instant,
};

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
/// How long a request that writes (an order placed, a status appended) may wait for the broker:
/// the Redis broker's outbox wait, 5 s.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
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
                inner.catch_up_logged().await;
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
                        inner.catch_up_logged().await;
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
                            inner.catch_up_logged().await;
                        }
                    }
                    BrokerEvent::Reconnected => inner.catch_up_logged().await,
                }
            }
        });
        replica
    }

    /// Places an order on the cluster by `deadline`: its id is the next of the cluster's ids.
    /// Once the broker took it, it is placed: the answer does not wait past the deadline for
    /// this instance to apply it.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot take it by the deadline (nothing was placed).
    pub async fn create(&self, item: String, deadline: Instant) -> Result<Order, BrokerError> {
        let id = by(
            deadline,
            self.inner.broker.append(IDS, IDS, Bytes::new(), 1),
        )
        .await?
        .offset;
        let offset = self
            .append_change(
                &Change::Placed {
                    id,
                    item: item.clone(),
                },
                deadline,
            )
            .await?;
        if let Err(error) = self.inner.applied_by(offset, deadline).await {
            tracing::warn!(%error, id, "order placed; not applied here yet");
        }
        Ok(self
            .inner
            .store
            .get(&id.to_string())
            .unwrap_or_else(|| Order {
                id: id.to_string(),
                item,
                status: "placed".to_owned(),
                version: 1,
            }))
    }

    /// Appends a status to order `id` on the cluster by `deadline`, and completes the long
    /// polls waiting for the version it makes, on every instance (in a task: the answer does
    /// not wait for it); `None` if there is no such order.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot take it by the deadline, or if this instance has
    /// not applied it by then (it is stored: the order has the status).
    pub async fn append(
        &self,
        id: &str,
        status: String,
        deadline: Instant,
    ) -> Result<Option<Order>, BrokerError> {
        if !self.knows(id, deadline).await? {
            return Ok(None);
        }
        let change = Change::Status {
            id: id.to_owned(),
            status,
        };
        let offset = self.append_change(&change, deadline).await?;
        self.inner.applied_by(offset, deadline).await?;
        let Some(order) = self
            .inner
            .made_by(offset)
            .or_else(|| self.inner.store.get(id))
        else {
            return Ok(None);
        };
        let inner = Arc::clone(&self.inner);
        let changed = order.clone();
        tokio::spawn(async move {
            let key = (changed.id.clone(), changed.version);
            if let Err(error) = inner.polls.complete(&key, &Polled::Changed(changed)).await {
                // The change is stored: the polls answer `304` at their timeout and the next
                // poll sees the new version.
                tracing::warn!(%error, id = key.0, "cannot complete the order's long polls");
            }
        });
        Ok(Some(order))
    }

    /// A long poll for order `id` that answers by `deadline`: the order at once if its version
    /// is greater than `after`, else a waiter for version `after + 1` (versions grow by one
    /// per change), answered [`Polled::NotModified`] at the deadline. Never a version of
    /// `after` or less, however far this instance lags. `None` if there is no such order.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if this instance does not know the order and cannot read the broker's
    /// history by the deadline.
    pub async fn watch(
        &self,
        id: &str,
        after: u64,
        deadline: Instant,
    ) -> Result<Option<DeferredResult<Polled>>, BrokerError> {
        if !self.knows(id, deadline).await? {
            return Ok(None);
        }
        let Some(order) = self.inner.store.get(id) else {
            return Ok(None);
        };
        if order.version > after {
            let poll = DeferredResult::new();
            poll.set_result(Polled::Changed(order));
            return Ok(Some(poll));
        }
        // A completion published since the look above is retained: the registry reads it
        // after registering the waiter.
        let key = (order.id, after.saturating_add(1));
        let left = deadline.saturating_duration_since(Instant::now());
        Ok(Some(self.inner.polls.wait(key, left, Polled::NotModified)))
    }

    /// This instance's copy of the orders.
    pub fn store(&self) -> &OrderStore {
        &self.inner.store
    }

    /// How many long polls wait on this instance.
    pub fn waiting(&self) -> usize {
        self.inner.polls.waiting()
    }

    /// Whether order `id` exists, catching up with the cluster first (by `deadline`) if this
    /// instance does not know it yet.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if this instance does not know it and cannot read the broker's history
    /// by the deadline: whether it exists is not known.
    pub async fn knows(&self, id: &str, deadline: Instant) -> Result<bool, BrokerError> {
        if self.inner.store.get(id).is_some() {
            return Ok(true);
        }
        by(deadline, self.inner.catch_up()).await?;
        Ok(self.inner.store.get(id).is_some())
    }

    /// Makes sure this instance has applied version `version` of order `id` if the cluster
    /// has it: a client that saw it on another instance resumes here after it, not from an
    /// older copy. A version this instance has is answered at once; a newer one reads the
    /// broker's history first (by `deadline`). A version still missing after that is ahead of
    /// the whole cluster.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if this instance has an older version and cannot read the broker's
    /// history by the deadline.
    pub async fn caught_up_to(
        &self,
        id: &str,
        version: u64,
        deadline: Instant,
    ) -> Result<(), BrokerError> {
        let has = |store: &OrderStore| store.get(id).is_some_and(|order| order.version >= version);
        if has(&self.inner.store) {
            return Ok(());
        }
        by(deadline, self.inner.catch_up()).await
    }

    /// Appends `change` to the cluster's history by `deadline`; its offset.
    async fn append_change(&self, change: &Change, deadline: Instant) -> Result<u64, BrokerError> {
        let payload = serde_json::to_vec(change).map_err(|e| BrokerError::Codec(e.to_string()))?;
        let position = by(
            deadline,
            self.inner
                .broker
                .append(CHANGES, CHANGES, Bytes::from(payload), HISTORY),
        )
        .await?;
        Ok(position.offset)
    }
}

/// `operation`, given up at `deadline` as if the broker were unavailable.
async fn by<T>(
    deadline: Instant,
    operation: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    tokio::time::timeout_at(deadline, operation)
        .await
        .unwrap_or_else(|_| {
            Err(BrokerError::Unavailable(
                "the broker did not answer by the request's deadline".to_owned(),
            ))
        })
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

    /// Waits until change `offset` is applied here, reading history when it does not come
    /// back on its own; gives up at `deadline`.
    async fn applied_by(&self, offset: u64, deadline: Instant) -> Result<(), BrokerError> {
        loop {
            let progressed = self.progressed.notified();
            if self.applied.load(Ordering::Acquire) >= offset {
                return Ok(());
            }
            let look = (Instant::now() + APPLIED_WAIT).min(deadline);
            if tokio::time::timeout_at(look, progressed).await.is_err() {
                if Instant::now() >= deadline {
                    return Err(BrokerError::Unavailable(format!(
                        "change {offset} is stored, but not applied here by the request's deadline"
                    )));
                }
                // A failed read is tried again at the next look.
                let _ = by(deadline, self.catch_up()).await;
            }
        }
    }

    /// [`catch_up`](Self::catch_up) for the replica's own task: a failure is logged, and the
    /// next change or quiet check tries again.
    async fn catch_up_logged(&self) {
        if let Err(error) = self.catch_up().await {
            tracing::warn!(%error, "cannot read the order changes from the broker");
        }
    }

    /// Applies every change after the last one applied, from history.
    async fn catch_up(&self) -> Result<(), BrokerError> {
        let _applying = self.applying.lock().await;
        loop {
            let after = self.applied.load(Ordering::Acquire);
            let history = self.broker.range(CHANGES, after, PAGE).await?;
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
                return Ok(());
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
