//! [`Replica`]: the order desk on many instances. Every change — an order placed, a status
//! appended — is appended to one topic of the cluster's broker (its history is where the orders
//! are stored: a Redis stream under `--redis`), and every instance applies the topic, in offset
//! order, to its own [`OrderStore`]. So a long poll, an event stream or a receipt on any
//! instance sees a change made on any other, with the same versions everywhere.
//!
//! An instance that sees an offset jump, or that the broker reconnected to, reads what it
//! missed from history first; a request for an order it does not know yet catches up before
//! answering `404`, so `POST` on A then `GET` on B always finds the order.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_mvc::cluster::{BrokerError, BrokerEvent, MessageBroker};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};

use super::{Order, OrderStore};

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
}

impl Replica {
    /// Starts applying the cluster's changes to `store`: history first, then live.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(broker: Arc<dyn MessageBroker>, store: OrderStore) -> Replica {
        let mut changes = broker.subscribe(CHANGES);
        let replica = Replica {
            inner: Arc::new(Inner {
                broker,
                store,
                applied: AtomicU64::new(0),
                progressed: Notify::new(),
                applying: Mutex::new(()),
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

    /// Appends a status to order `id` on the cluster; `None` if there is no such order.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot take it.
    pub async fn append(&self, id: &str, status: String) -> Result<Option<Order>, BrokerError> {
        if !self.knows(id).await {
            return Ok(None);
        }
        self.write(&Change::Status {
            id: id.to_owned(),
            status,
        })
        .await?;
        Ok(self.inner.store.get(id))
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

    /// Appends `change`, then waits until this instance has applied it.
    async fn write(&self, change: &Change) -> Result<(), BrokerError> {
        let payload = serde_json::to_vec(change).map_err(|e| BrokerError::Codec(e.to_string()))?;
        let position = self
            .inner
            .broker
            .append(CHANGES, CHANGES, Bytes::from(payload), HISTORY)
            .await?;
        loop {
            let progressed = self.inner.progressed.notified();
            if self.inner.applied.load(Ordering::Acquire) >= position.offset {
                return Ok(());
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
                self.store.append(&id, status);
            }
            Err(error) => tracing::warn!(offset, %error, "an order change did not decode"),
        }
        self.applied.store(offset, Ordering::Release);
        self.progressed.notify_waiters();
    }
}
