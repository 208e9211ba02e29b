//! A Redis [`MessageBroker`] for async-mvc: the same `DeferredResultRegistry` and
//! `ClusteredSseBroadcaster` on many instances, through one Redis.
//!
//! | feature | Redis |
//! |---|---|
//! | [`publish`](MessageBroker::publish) | `PUBLISH am:{ns}:{channel}` (at most once) |
//! | [`subscribe`](MessageBroker::subscribe) | one pub/sub connection per instance, all channels on it; reconnected with jittered backoff (50 ms → 500 ms, forever), resubscribed, then [`BrokerEvent::Reconnected`] |
//! | [`append`](MessageBroker::append) | one Lua script: `HINCRBY` of the topic's offset (and its epoch, set once), `XADD am:{ns}:h:{topic} MAXLEN ~ n`, `PUBLISH` — atomic, and once per call (a token remembered for 60 s makes a retry after a lost reply return the first position) |
//! | [`range`](MessageBroker::range) | one Lua script: `XRANGE` after an offset, with the epoch and the first and last offsets |
//! | [`put`](MessageBroker::put) / [`get`](MessageBroker::get) | `SET am:{ns}:v:{key} PX ttl` / `GET` |
//! | [`enqueue`](MessageBroker::enqueue) | `XADD am:{ns}:q:{queue} MAXLEN ~ n * j <job>` |
//! | [`consumer`](MessageBroker::consumer) | `XGROUP CREATE … 0 MKSTREAM` (once per group), and a **connection of the consumer's own** for its blocking reads: `XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS q >`, and `XAUTOCLAIM` for jobs of dead consumers (a group lost with Redis's data is made again) |
//! | [`ack`](MessageBroker::ack) / [`touch`](MessageBroker::touch) | `XACK` / `XCLAIM … 0 ids… JUSTID` (resets a job's idle time) |
//!
//! While Redis is unreachable — or answers `LOADING` after a restart, still reading its data
//! set — an operation waits for it at most
//! [`outbox_wait`](RedisBrokerBuilder::outbox_wait) (default 5 s), and at most
//! [`outbox`](RedisBrokerBuilder::outbox) operations (default 10,000) wait at once: beyond
//! either, it fails with [`BrokerError::Unavailable`] — memory stays bounded. Open SSE streams
//! stay open meanwhile (their heartbeats go on), long polls end by their own timeouts.
//!
//! ```no_run
//! # async fn run() -> Result<(), async_mvc::cluster::BrokerError> {
//! use async_mvc::cluster::{ClusteredSseBroadcaster, DeferredResultRegistry};
//! let broker = async_mvc_redis::RedisBroker::builder("redis://127.0.0.1:6379/")
//!     .namespace("shop")
//!     .connect()
//!     .await?;
//! let orders = ClusteredSseBroadcaster::new(broker.clone(), "orders");
//! let waits = DeferredResultRegistry::<String, String>::new(broker, "orders");
//! # let _ = (orders, waits);
//! # Ok(())
//! # }
//! ```

mod queue;
mod subscriber;
mod wire;

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_mvc::cluster::{
    BoxFuture, BrokerError, BrokerEvent, History, JobConsumer, MessageBroker, Position,
};
use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Semaphore;

use subscriber::Subscriptions;

/// How many operations may wait for Redis at once, unless set: 10,000.
pub const DEFAULT_OUTBOX: usize = 10_000;
/// How long an operation waits for Redis to come back, unless set: 5 s.
pub const DEFAULT_OUTBOX_WAIT: Duration = Duration::from_secs(5);
/// How long one Redis command may take: 1 s.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a waiting operation tries again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Settings for a [`RedisBroker`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBrokerBuilder {
    url: String,
    namespace: String,
    outbox: usize,
    outbox_wait: Duration,
}

impl RedisBrokerBuilder {
    /// Prefixes every key and channel with `am:{namespace}:` (default `default`): instances
    /// of one application share a namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How many operations may wait for an unreachable Redis at once (default
    /// [`DEFAULT_OUTBOX`]).
    pub fn outbox(mut self, operations: usize) -> Self {
        self.outbox = operations.max(1);
        self
    }

    /// How long an operation waits for an unreachable Redis (default [`DEFAULT_OUTBOX_WAIT`]).
    pub fn outbox_wait(mut self, wait: Duration) -> Self {
        self.outbox_wait = wait;
        self
    }

    /// Connects (the command connection must succeed once; pub/sub reconnects on its own).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] if the URL is malformed or Redis cannot be reached.
    pub async fn connect(self) -> Result<RedisBroker, BrokerError> {
        let client = redis::Client::open(self.url.as_str()).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let commands = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| BrokerError::Unavailable("connecting timed out".to_owned()))?
        .map_err(unavailable)?;
        let subscriptions = Arc::new(Subscriptions::default());
        let listener = tokio::spawn(subscriber::run(client.clone(), Arc::clone(&subscriptions)));
        Ok(RedisBroker {
            inner: Arc::new(Inner {
                client,
                commands,
                prefix: format!("am:{}:", self.namespace),
                subscriptions,
                outbox: Semaphore::new(self.outbox),
                outbox_capacity: self.outbox,
                outbox_wait: self.outbox_wait,
                commands_ok: AtomicBool::new(true),
                append: redis::Script::new(wire::APPEND),
                range: redis::Script::new(wire::RANGE),
                listener,
                instance: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64),
                appends: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

/// A [`MessageBroker`] on Redis (see the crate's docs). A cheap `Clone` of an `Arc`.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    /// For the consumers' own connections.
    client: redis::Client,
    commands: ConnectionManager,
    prefix: String,
    subscriptions: Arc<Subscriptions>,
    outbox: Semaphore,
    outbox_capacity: usize,
    outbox_wait: Duration,
    commands_ok: AtomicBool,
    append: redis::Script,
    range: redis::Script,
    listener: tokio::task::JoinHandle<()>,
    /// This broker's part of every append token (the time it connected, in ns).
    instance: u64,
    appends: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// A token no other append of any instance uses.
    fn token(&self) -> String {
        let n = self.appends.fetch_add(1, Ordering::Relaxed);
        format!("{:x}.{n:x}", self.instance)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// A snapshot of a [`RedisBroker`]'s state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisMetrics {
    /// The pub/sub connection is up.
    pub subscribed: bool,
    /// The last command succeeded.
    pub connected: bool,
    /// Operations waiting for Redis to come back.
    pub outbox_len: usize,
    /// Times the pub/sub connection came back after a loss.
    pub reconnects: u64,
}

impl RedisBroker {
    /// Settings for a broker on the Redis at `url` (`redis://host:port/db`,
    /// `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisBrokerBuilder {
        RedisBrokerBuilder {
            url: url.into(),
            namespace: "default".to_owned(),
            outbox: DEFAULT_OUTBOX,
            outbox_wait: DEFAULT_OUTBOX_WAIT,
        }
    }

    /// The broker's state now.
    pub fn metrics(&self) -> RedisMetrics {
        let inner = &self.inner;
        RedisMetrics {
            subscribed: inner.subscriptions.connected.load(Ordering::Relaxed),
            connected: inner.commands_ok.load(Ordering::Relaxed),
            outbox_len: inner.outbox_capacity - inner.outbox.available_permits(),
            reconnects: inner.subscriptions.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Runs `command` on the command connection; while Redis is unreachable, waits for it (in
    /// the outbox) as the crate's docs say.
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, BrokerError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // Taken on the first failure: the operation then waits in the outbox.
        let mut waiting = None;
        loop {
            let attempt =
                tokio::time::timeout(COMMAND_TIMEOUT, command(self.inner.commands.clone())).await;
            match attempt {
                Ok(Ok(value)) => {
                    self.inner.commands_ok.store(true, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(error)) if !is_connection_error(&error) => {
                    return Err(BrokerError::Protocol(error.to_string()));
                }
                _ => {}
            }
            self.inner.commands_ok.store(false, Ordering::Relaxed);
            let deadline = match &waiting {
                Some((_permit, deadline)) => *deadline,
                None => {
                    let Ok(permit) = self.inner.outbox.try_acquire() else {
                        return Err(BrokerError::Unavailable(
                            "redis is unreachable and the outbox is full".to_owned(),
                        ));
                    };
                    let permit = OutboxSlot::taken(permit);
                    let deadline = tokio::time::Instant::now() + self.inner.outbox_wait;
                    waiting = Some((permit, deadline));
                    deadline
                }
            };
            tokio::time::sleep(RETRY_EVERY).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Unavailable(format!(
                    "redis was unreachable for {} ms",
                    self.inner.outbox_wait.as_millis()
                )));
            }
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.inner.prefix)
    }
}

/// An operation's place in the outbox while it waits for Redis, counted in
/// `async_mvc.cluster.outbox.depth` with the `metrics` feature.
struct OutboxSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> OutboxSlot<'a> {
    fn taken(permit: tokio::sync::SemaphorePermit<'a>) -> Self {
        #[cfg(feature = "metrics")]
        metrics::gauge!(async_mvc::telemetry::OUTBOX_DEPTH).increment(1.0);
        OutboxSlot { _permit: permit }
    }
}

#[cfg(feature = "metrics")]
impl Drop for OutboxSlot<'_> {
    fn drop(&mut self) {
        metrics::gauge!(async_mvc::telemetry::OUTBOX_DEPTH).decrement(1.0);
    }
}

/// Whether `error` means Redis cannot serve now (rather than that it refused the command): a
/// lost or refused connection, a timeout, or an answer that says "later" — `LOADING` (a restart
/// still reading its data set), `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`. The operation waits
/// in the outbox and is tried again, as during an outage.
fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(error.retry_method(), redis::RetryMethod::WaitAndRetry)
}

fn unavailable(error: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// Milliseconds since the Unix epoch, by this instance's clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The epoch a new history starts with: the time in microseconds.
fn new_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_micros() as u64)
}

impl MessageBroker for RedisBroker {
    fn publish(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = self.key("c", channel);
        let message = wire::encode(topic, None, now_ms(), &payload);
        Box::pin(async move {
            self.run(|mut connection| {
                let (channel, message) = (channel.clone(), message.clone());
                async move {
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(message)
                        .query_async::<i64>(&mut connection)
                        .await
                        .map(|_| ())
                }
            })
            .await
        })
    }

    fn subscribe(&self, channel: &str) -> BoxStream<'static, BrokerEvent> {
        let receiver = self.inner.subscriptions.add(self.key("c", channel));
        tokio_stream::wrappers::ReceiverStream::new(receiver).boxed()
    }

    fn append(
        &self,
        channel: &str,
        topic: &str,
        payload: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        let channel = self.key("c", channel);
        let (stream, meta) = (self.key("h", topic), self.key("m", topic));
        let token = self.key("d", &self.inner.token());
        let topic = topic.to_owned();
        Box::pin(async move {
            let script = &self.inner.append;
            let (stream, meta, token, channel, topic, payload) =
                (&stream, &meta, &token, &channel, &topic, &payload);
            let (epoch, offset): (String, u64) = self
                .run(|mut connection| async move {
                    let mut invocation = script.key(stream);
                    invocation
                        .key(meta)
                        .key(token)
                        .arg(channel)
                        .arg(topic)
                        .arg(payload.as_ref())
                        .arg(max_len.max(1))
                        .arg(new_epoch());
                    invocation.invoke_async(&mut connection).await
                })
                .await?;
            let epoch = epoch
                .parse()
                .map_err(|_| BrokerError::Protocol(format!("epoch `{epoch}`")))?;
            Ok(Position { epoch, offset })
        })
    }

    fn range(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let (stream, meta) = (self.key("h", topic), self.key("m", topic));
        Box::pin(async move {
            let script = &self.inner.range;
            let (stream, meta) = (&stream, &meta);
            let (epoch, last, first, flat): (String, u64, u64, Vec<Vec<u8>>) = self
                .run(|mut connection| async move {
                    let mut invocation = script.key(stream);
                    invocation.key(meta).arg(after).arg(limit.max(1));
                    invocation.invoke_async(&mut connection).await
                })
                .await?;
            let epoch = epoch
                .parse()
                .map_err(|_| BrokerError::Protocol(format!("epoch `{epoch}`")))?;
            let mut entries = Vec::with_capacity(flat.len() / 2);
            for pair in flat.chunks_exact(2) {
                let offset = std::str::from_utf8(&pair[0])
                    .ok()
                    .and_then(|offset| offset.parse().ok())
                    .ok_or_else(|| BrokerError::Protocol("a stream entry id".to_owned()))?;
                entries.push((offset, Bytes::copy_from_slice(&pair[1])));
            }
            Ok(History {
                epoch,
                first,
                last,
                entries,
            })
        })
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let key = self.key("v", key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Box::pin(async move {
            self.run(|mut connection| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(value.as_ref())
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async::<()>(&mut connection)
                        .await
                }
            })
            .await
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BrokerError>> {
        let key = self.key("v", key);
        Box::pin(async move {
            let value: Option<Vec<u8>> = self
                .run(|mut connection| {
                    let key = key.clone();
                    async move {
                        redis::cmd("GET")
                            .arg(key)
                            .query_async::<Option<Vec<u8>>>(&mut connection)
                            .await
                    }
                })
                .await?;
            Ok(value.map(Bytes::from))
        })
    }

    fn enqueue(
        &self,
        queue: &str,
        job: Bytes,
        max_len: usize,
    ) -> BoxFuture<'_, Result<String, BrokerError>> {
        let stream = self.key("q", queue);
        Box::pin(async move {
            self.run(|mut connection| {
                let (stream, job) = (stream.clone(), job.clone());
                async move {
                    redis::cmd("XADD")
                        .arg(stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(max_len.max(1))
                        .arg("*")
                        .arg(queue::FIELD)
                        .arg(job.as_ref())
                        .query_async::<String>(&mut connection)
                        .await
                }
            })
            .await
        })
    }

    fn consumer(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BoxFuture<'_, Result<Box<dyn JobConsumer>, BrokerError>> {
        let stream = self.key("q", queue);
        let (group, name) = (group.to_owned(), consumer.to_owned());
        Box::pin(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(COMMAND_TIMEOUT))
                // Reads block up to their own timeout; the consumer bounds each.
                .set_response_timeout(None)
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            let mut connection = tokio::time::timeout(
                COMMAND_TIMEOUT * 2,
                self.inner.client.get_connection_manager_with_config(config),
            )
            .await
            .map_err(|_| BrokerError::Unavailable("connecting timed out".to_owned()))?
            .map_err(unavailable)?;
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                queue::create_group(&mut connection, &stream, &group),
            )
            .await
            .map_err(|_| BrokerError::Unavailable("XGROUP CREATE timed out".to_owned()))?
            .map_err(unavailable)?;
            let consumer: Box<dyn JobConsumer> = Box::new(queue::RedisConsumer {
                connection,
                stream,
                group,
                name,
                cursor: "0-0".to_owned(),
            });
            Ok(consumer)
        })
    }

    fn ack(&self, queue: &str, group: &str, id: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let stream = self.key("q", queue);
        let (group, id) = (group.to_owned(), id.to_owned());
        Box::pin(async move {
            self.run(|mut connection| {
                let (stream, group, id) = (stream.clone(), group.clone(), id.clone());
                async move {
                    redis::cmd("XACK")
                        .arg(stream)
                        .arg(group)
                        .arg(id)
                        .query_async::<i64>(&mut connection)
                        .await
                        .map(|_| ())
                }
            })
            .await
        })
    }

    fn touch(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let stream = self.key("q", queue);
        let (group, consumer, ids) = (group.to_owned(), consumer.to_owned(), ids.to_vec());
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            self.run(|mut connection| {
                let mut command = redis::cmd("XCLAIM");
                command.arg(&stream).arg(&group).arg(&consumer).arg(0);
                for id in &ids {
                    command.arg(id);
                }
                command.arg("JUSTID");
                async move {
                    command
                        .query_async::<redis::Value>(&mut connection)
                        .await
                        .map(|_| ())
                }
            })
            .await
        })
    }
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.inner.prefix)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl From<RedisBroker> for Arc<dyn MessageBroker> {
    fn from(broker: RedisBroker) -> Self {
        Arc::new(broker)
    }
}
