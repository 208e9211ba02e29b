//! [`DeferredResultRegistry`]: long polls keyed by a value, completed from any instance.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    marker::PhantomData,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::Duration,
};

use axum::response::IntoResponse;
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::task::AbortOnDropHandle;

use super::broker::{listen, BrokerError, BrokerEvent, MessageBroker};
use crate::{deferred_result::DeferredResult, error::AsyncError};

/// How many waiters one key may have on one instance, unless
/// [`max_waiters_per_key`](DeferredResultRegistry::max_waiters_per_key) says otherwise: 1,024.
pub const DEFAULT_MAX_WAITERS_PER_KEY: usize = 1_024;

/// Long polls keyed by `K`, completed with a `T` from any instance: the `HashMap<key,
/// Vec<DeferredResult>>` every Spring application writes for itself, made to work across
/// instances through a [`MessageBroker`].
///
/// [`wait`](Self::wait) registers a waiter on this instance and returns its
/// [`DeferredResult`]; [`complete`](Self::complete), on any instance, publishes the value once
/// and every instance completes its own waiters for that key. Waiters leave the registry when
/// they complete, time out or their client disconnects; nothing is written to the broker per
/// waiter, and each key holds at most [`DEFAULT_MAX_WAITERS_PER_KEY`] on an instance (beyond:
/// `503` with `Retry-After` at once), on top of the manager's own admission limit.
///
/// With [`retain`](Self::retain), a completed value is also kept in the broker for a while: a
/// waiter that registers just after the completion (a client retrying, perhaps on another
/// instance) gets it at once. The waiter registers first and reads the retained value second,
/// so a completion between the two is never lost.
///
/// Keys and values cross the broker as JSON (serde). One subscription per registry and
/// instance, whatever the number of keys.
///
/// ```no_run
/// use std::time::Duration;
/// use async_mvc::cluster::{DeferredResultRegistry, InMemoryBroker};
///
/// # async fn run() -> Result<(), async_mvc::cluster::BrokerError> {
/// let quotes = DeferredResultRegistry::<String, String>::new(InMemoryBroker::new(), "quotes")
///     .retain(Duration::from_secs(30));
/// // GET /quotes/{symbol}: the next quote, or "" after 30 s.
/// let next = quotes.wait("ACME".to_owned(), Duration::from_secs(30), String::new());
/// // POST /quotes/{symbol}, on any instance:
/// quotes.complete(&"ACME".to_owned(), &"171.25".to_owned()).await?;
/// # let _ = next;
/// # Ok(())
/// # }
/// ```
pub struct DeferredResultRegistry<K, T> {
    inner: Arc<Inner<K, T>>,
}

/// The waiters of this instance, by key, each with its id.
type Waiters<K, T> = HashMap<K, Vec<(u64, DeferredResult<T>)>>;

struct Inner<K, T> {
    broker: Arc<dyn MessageBroker>,
    name: String,
    channel: String,
    waiters: Mutex<Waiters<K, T>>,
    next_id: AtomicU64,
    /// How long completed values are retained, in ms; 0: not at all.
    retain_ms: AtomicU64,
    max_per_key: AtomicUsize,
    completed_here: AtomicU64,
    /// Ends the listener when the last handle goes.
    _listener: AbortOnDropHandle<()>,
    _types: PhantomData<fn() -> (K, T)>,
}

impl<K, T> DeferredResultRegistry<K, T>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A registry named `name` on `broker` (instances that use the same name and broker share
    /// it). Subscribes once, in a task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the subscription is read by a task).
    pub fn new(broker: impl Into<Arc<dyn MessageBroker>>, name: &str) -> Self
    where
        Self: Sized,
    {
        let broker = broker.into();
        let channel = format!("registry:{name}");
        let inner = Arc::new_cyclic(|weak: &Weak<Inner<K, T>>| {
            let listener = listen(
                broker.subscribe(&channel),
                weak.clone(),
                |inner: Arc<Inner<K, T>>, event| async move {
                    match event {
                        BrokerEvent::Message(message) => {
                            inner.deliver(&message.topic, &message.payload);
                        }
                        BrokerEvent::Reconnected => inner.recover().await,
                    }
                },
            );
            Inner {
                broker: Arc::clone(&broker),
                name: name.to_owned(),
                channel: channel.clone(),
                waiters: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                retain_ms: AtomicU64::new(0),
                max_per_key: AtomicUsize::new(DEFAULT_MAX_WAITERS_PER_KEY),
                completed_here: AtomicU64::new(0),
                _listener: listener,
                _types: PhantomData,
            }
        });
        DeferredResultRegistry { inner }
    }

    /// Keeps each completed value in the broker for `ttl` (at least 1 ms), for waiters that
    /// come just after. Settings are the registry's, shared by its clones: set them when it is
    /// created.
    #[must_use]
    pub fn retain(self, ttl: Duration) -> Self {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner.retain_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// At most `waiters` waiters per key on this instance (at least 1).
    #[must_use]
    pub fn max_waiters_per_key(self, waiters: usize) -> Self {
        self.inner
            .max_per_key
            .store(waiters.max(1), Ordering::Relaxed);
        self
    }

    /// A waiter for `key`: completed by the next [`complete`](Self::complete) of that key on
    /// any instance (or at once with a value retained from a recent one), else answered with
    /// `timeout_result` after `timeout` (Spring's `new DeferredResult<>(timeout, result)`).
    /// Over the per-key limit it is refused at once: `503` with `Retry-After`.
    ///
    /// Return it from the handler.
    pub fn wait(&self, key: K, timeout: Duration, timeout_result: T) -> DeferredResult<T> {
        let result = DeferredResult::with_timeout_result(timeout, timeout_result);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut waiters = self.inner.lock();
            let waiting = waiters.entry(key.clone()).or_default();
            // Waiters never served (their handler dropped them) go here.
            waiting.retain(|(_, waiter)| !waiter.is_set_or_expired());
            let limit = self.inner.max_per_key.load(Ordering::Relaxed);
            if waiting.len() >= limit {
                let refused = AsyncError::Overloaded {
                    limit,
                    retry_after: crate::config::DEFAULT_RETRY_AFTER,
                };
                result.set_error_result(refused.into_response());
                return result;
            }
            waiting.push((id, result.clone()));
        }
        let weak = Arc::downgrade(&self.inner);
        let leaving = key.clone();
        result.on_completion(move || {
            if let Some(inner) = weak.upgrade() {
                inner.remove(&leaving, id);
            }
        });
        if self.inner.retain().is_some() {
            // Registered first, read second: a completion in between reaches the waiter
            // through the subscription, one before is read here.
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                if let Ok(Some(value)) = inner.broker.get(&inner.retained_key(&key)).await {
                    if let Ok(value) = serde_json::from_slice::<T>(&value) {
                        inner.complete_local(&key, &value);
                    }
                }
            });
        }
        result
    }

    /// Completes every waiter for `key`, on every instance, with `value` (and retains it, if
    /// the registry [retains](Self::retain)).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] if the broker cannot take it; [`BrokerError::Codec`] if the
    /// key or value does not serialize. Nothing was completed then.
    pub async fn complete(&self, key: &K, value: &T) -> Result<(), BrokerError> {
        let topic = key_topic(key)?;
        let payload = Bytes::from(
            serde_json::to_vec(value).map_err(|error| BrokerError::Codec(error.to_string()))?,
        );
        if let Some(ttl) = self.inner.retain() {
            let retained = self.inner.retained_key_topic(&topic);
            self.inner
                .broker
                .put(&retained, payload.clone(), ttl)
                .await?;
        }
        self.inner
            .broker
            .publish(&self.inner.channel, &topic, payload)
            .await
    }

    /// How many waiters wait on this instance.
    pub fn waiting(&self) -> usize {
        self.inner.lock().values().map(Vec::len).sum()
    }

    /// How many waiters this instance completed with a value from the broker (or a retained
    /// one) since it was created.
    pub fn completed(&self) -> u64 {
        self.inner.completed_here.load(Ordering::Relaxed)
    }
}

fn key_topic<K: Serialize>(key: &K) -> Result<String, BrokerError> {
    serde_json::to_string(key).map_err(|error| BrokerError::Codec(error.to_string()))
}

impl<K, T> Inner<K, T>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn lock(&self) -> MutexGuard<'_, Waiters<K, T>> {
        // Only map operations run under this lock: `set_result` runs after it is released.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn retained_key(&self, key: &K) -> String {
        self.retained_key_topic(&key_topic(key).unwrap_or_default())
    }

    fn retained_key_topic(&self, topic: &str) -> String {
        format!("registry:{}:{topic}", self.name)
    }

    /// A value arrived for the key published as `topic`.
    fn deliver(&self, topic: &str, payload: &[u8]) {
        let (Ok(key), Ok(value)) = (
            serde_json::from_str::<K>(topic),
            serde_json::from_slice::<T>(payload),
        ) else {
            tracing::warn!(registry = %self.name, "a completion did not deserialize: ignored");
            return;
        };
        self.complete_local(&key, &value);
    }

    fn complete_local(&self, key: &K, value: &T) {
        let waiting = self.lock().remove(key).unwrap_or_default();
        for (_, waiter) in waiting {
            if waiter.set_result(value.clone()) {
                self.completed_here.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn remove(&self, key: &K, id: u64) {
        let mut waiters = self.lock();
        if let Some(waiting) = waiters.get_mut(key) {
            waiting.retain(|(waiter, _)| *waiter != id);
            if waiting.is_empty() {
                waiters.remove(key);
            }
        }
    }

    /// After a broker outage: completions published meanwhile may be lost; retained values
    /// are read again for every key with waiters.
    async fn recover(&self) {
        if self.retain().is_none() {
            return;
        }
        let keys: Vec<K> = self.lock().keys().cloned().collect();
        for key in keys {
            if let Ok(Some(value)) = self.broker.get(&self.retained_key(&key)).await {
                if let Ok(value) = serde_json::from_slice::<T>(&value) {
                    self.complete_local(&key, &value);
                }
            }
        }
    }
}

impl<K, T> Inner<K, T> {
    /// How long completed values are retained, if they are.
    fn retain(&self) -> Option<Duration> {
        match self.retain_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

impl<K, T> Clone for DeferredResultRegistry<K, T> {
    fn clone(&self) -> Self {
        DeferredResultRegistry {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, T> fmt::Debug for DeferredResultRegistry<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredResultRegistry")
            .field("name", &self.inner.name)
            .field("retain", &self.inner.retain())
            .field(
                "max_waiters_per_key",
                &self.inner.max_per_key.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}
