//! One pub/sub connection per instance: subscribes to every channel asked for, dispatches
//! messages to the local subscriptions, and when the connection is lost reconnects with
//! jittered backoff — forever — resubscribes, and tells every subscription
//! [`BrokerEvent::Reconnected`] so that it catches up.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use async_mvc::cluster::BrokerEvent;
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};

use crate::wire;

/// How many messages a local subscription buffers before newer ones are dropped for it.
const SUBSCRIPTION_BUFFER: usize = 65_536;
/// The first and the longest wait between two reconnection attempts: a Redis that comes back
/// is resubscribed to within about half a second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(500));
/// How often the connection is pinged, and how long a ping may take: a broker that stopped
/// answering (paused, or a dead peer without a reset) is noticed within about 2 s.
const PING: Duration = Duration::from_secs(1);

/// The local subscriptions, by (prefixed) channel.
#[derive(Default)]
pub(crate) struct Subscriptions {
    channels: Mutex<HashMap<String, Vec<mpsc::Sender<BrokerEvent>>>>,
    /// A channel was added: the task subscribes to it.
    added: Notify,
    pub(crate) connected: AtomicBool,
    pub(crate) reconnects: AtomicU64,
}

impl Subscriptions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<mpsc::Sender<BrokerEvent>>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new local subscription to `channel`.
    pub(crate) fn add(&self, channel: String) -> mpsc::Receiver<BrokerEvent> {
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        self.lock().entry(channel).or_default().push(sender);
        self.added.notify_one();
        receiver
    }

    fn dispatch(&self, channel: &str, event: &BrokerEvent) {
        let mut channels = self.lock();
        if let Some(senders) = channels.get_mut(channel) {
            senders.retain(|sender| match sender.try_send(event.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }

    fn reconnected(&self) {
        let channels: Vec<String> = self.lock().keys().cloned().collect();
        for channel in channels {
            self.dispatch(&channel, &BrokerEvent::Reconnected);
        }
    }

    fn wanted(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// Runs the pub/sub connection until `subscriptions` is the last reference to itself.
pub(crate) async fn run(client: redis::Client, subscriptions: Arc<Subscriptions>) {
    let mut backoff = BACKOFF.0;
    let mut first = true;
    loop {
        if Arc::strong_count(&subscriptions) == 1 {
            return;
        }
        match session(&client, &subscriptions, first).await {
            Ok(()) => {
                backoff = BACKOFF.0;
                first = false;
            }
            Err(error) => {
                tracing::debug!(%error, "redis pub/sub connection failed");
            }
        }
        if subscriptions.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!("redis pub/sub connection lost; reconnecting");
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// One connection's life: subscribe to everything wanted, then read until it breaks.
async fn session(
    client: &redis::Client,
    subscriptions: &Subscriptions,
    first: bool,
) -> redis::RedisResult<()> {
    let pubsub = tokio::time::timeout(PING, client.get_async_pubsub())
        .await
        .map_err(|_| timeout_error())??;
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed = HashSet::new();
    for channel in subscriptions.wanted() {
        sink.subscribe(&channel).await?;
        subscribed.insert(channel);
    }
    subscriptions.connected.store(true, Ordering::Relaxed);
    if !first {
        subscriptions.reconnects.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(async_mvc::telemetry::BROKER_RECONNECTS).increment(1);
        tracing::info!("redis pub/sub connection back; resubscribed");
        subscriptions.reconnected();
    }
    let mut ping = tokio::time::interval(PING);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ok(());
                };
                match wire::decode(message.get_payload_bytes()) {
                    Some((decoded, sent_ms)) => {
                        #[cfg(feature = "metrics")]
                        record_lag(sent_ms);
                        #[cfg(not(feature = "metrics"))]
                        let _ = sent_ms;
                        subscriptions
                            .dispatch(message.get_channel_name(), &BrokerEvent::Message(decoded));
                    }
                    None => tracing::warn!("an undecodable pub/sub message: ignored"),
                }
            }
            () = subscriptions.added.notified() => {
                for channel in subscriptions.wanted() {
                    if !subscribed.contains(&channel) {
                        sink.subscribe(&channel).await?;
                        subscribed.insert(channel);
                    }
                }
            }
            _ = ping.tick() => {
                let pong: redis::RedisResult<()> = tokio::time::timeout(PING, sink.ping())
                    .await
                    .unwrap_or_else(|_| Err(timeout_error()));
                pong?;
            }
        }
    }
}

/// `async_mvc.cluster.pubsub.lag`: from a message's publication (`sent_ms`, ms since the Unix
/// epoch; instances' and Redis's clocks must agree) to its arrival on this instance.
#[cfg(feature = "metrics")]
fn record_lag(sent_ms: u64) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let lag = Duration::from_millis(now_ms.saturating_sub(sent_ms));
    metrics::histogram!(async_mvc::telemetry::PUBSUB_LAG).record(lag.as_secs_f64());
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis did not answer in time",
    ))
}

/// `base` ± 25%, from the clock's nanoseconds (no random-number crate for this).
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let quarter = base / 4;
    base - quarter + quarter * 2 * (nanos % 1000) / 1000
}
