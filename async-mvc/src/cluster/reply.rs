//! [`ReplyingTemplate`]: request/reply through the broker — the job goes to a queue worked by
//! a group of workers on any instance, and the reply comes back to this instance to complete
//! the request it still holds.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::{Duration, Instant},
};

use axum::{
    http::{header::RETRY_AFTER, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::task::AbortOnDropHandle;

use super::{
    broker::{listen, BrokerError, BrokerEvent, MessageBroker},
    envelope::{alive_key, ms_after, reply_key, unique_id, JobEnvelope, ReplyBody},
};
use crate::{config::DEFAULT_RETRY_AFTER, deferred_result::DeferredResult};

/// How many requests one template lets wait for replies at once, unless
/// [`max_outstanding`](ReplyingTemplate::max_outstanding) says otherwise: 10,000.
pub const DEFAULT_MAX_OUTSTANDING: usize = 10_000;
/// How many jobs a queue keeps (Redis: `MAXLEN ~`), unless
/// [`queue_max_len`](ReplyingTemplate::queue_max_len) says otherwise: 100,000.
pub const DEFAULT_QUEUE_MAX_LEN: usize = 100_000;
/// How long a reply is kept in the broker at most, for a requester that missed it during an
/// outage and for a worker that receives the job again: 60 s — and never more than 5 s past its
/// request's timeout, so the broker holds about one reply per request in flight.
pub const DEFAULT_REPLY_RETENTION: Duration = Duration::from_secs(60);
/// How long a "some worker is alive" answer is trusted before the broker is asked again.
const ALIVE_CACHE: Duration = Duration::from_millis(250);

/// Why a request through a [`ReplyingTemplate`] got no reply. As a response: `503` with
/// `Retry-After` for what may pass ([`NoResponders`](Self::NoResponders),
/// [`Overloaded`](Self::Overloaded), [`Broker`](Self::Broker)), `502` for a worker's error,
/// `500` for a job or reply that does not (de)serialize. A timeout is not here: it takes the
/// manager's usual timeout path (`503`, or the request's own timeout handling).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// No worker listens on the queue (NATS's "no responders"): refused at once.
    #[error("no worker is listening on queue `{queue}`")]
    NoResponders {
        /// The queue.
        queue: String,
        /// Sent as `Retry-After` (whole seconds, rounded up).
        retry_after: Duration,
    },
    /// This instance already has `limit` requests waiting for replies.
    #[error("{limit} requests are already waiting for replies")]
    Overloaded {
        /// The template's [`max_outstanding`](ReplyingTemplate::max_outstanding).
        limit: usize,
        /// Sent as `Retry-After`.
        retry_after: Duration,
    },
    /// The broker did not take the job.
    #[error(transparent)]
    Broker(BrokerError),
    /// The worker's handler failed (its error's message) or panicked.
    #[error("the worker failed: {0}")]
    Failed(String),
    /// The job did not serialize, or the reply did not deserialize to the expected type.
    #[error("a job or its reply did not (de)serialize: {0}")]
    Codec(String),
}

impl ReplyError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ReplyError::NoResponders { .. }
            | ReplyError::Overloaded { .. }
            | ReplyError::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
            ReplyError::Failed(_) => StatusCode::BAD_GATEWAY,
            ReplyError::Codec(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ReplyError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ReplyError::NoResponders { retry_after, .. }
            | ReplyError::Overloaded { retry_after, .. } => Some(*retry_after),
            ReplyError::Broker(_) => Some(DEFAULT_RETRY_AFTER),
            ReplyError::Failed(_) | ReplyError::Codec(_) => None,
        };
        let mut response = (self.status(), self.to_string()).into_response();
        if let Some(after) = retry_after {
            // Whole seconds on the wire (RFC 9110), rounded up, at least 1.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// A snapshot of a [`ReplyingTemplate`]'s counters on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct TemplateMetrics {
    /// Requests waiting for their reply now.
    pub outstanding: usize,
    /// Jobs put on the queue (with or without a reply awaited).
    pub sent: u64,
    /// Replies that completed a waiting request.
    pub replies: u64,
    /// Replies for a request no longer waiting (answered already, timed out): ignored.
    pub ignored_replies: u64,
    /// Requests refused because no worker was listening.
    pub no_responders: u64,
}

/// Request/reply over a [`MessageBroker`]: [`send_and_receive`](Self::send_and_receive) puts a
/// job on a named queue, consumed by a group of [`JobListener`](super::JobListener)s on any
/// instance (competing consumers, at least once), and returns a [`DeferredResult`] that the
/// reply completes — the reply comes back on this instance's own channel, keyed by a
/// correlation id; the first reply wins, later ones are ignored. Spring's
/// `ReplyingKafkaTemplate.sendAndReceive` with its `DeferredResult` glue, as one thing.
///
/// Bounded: at most [`max_outstanding`](Self::max_outstanding) requests wait on an instance
/// (beyond: `503` at once), a queue keeps at most [`queue_max_len`](Self::queue_max_len) jobs,
/// replies are retained for [`reply_retention`](Self::reply_retention). With no worker
/// listening the request is refused at once with `503` and `Retry-After`.
///
/// A cheap `Clone`; one per queue and instance (each subscribes once for its replies).
///
/// ```no_run
/// use std::time::Duration;
/// use async_mvc::cluster::{InMemoryBroker, JobListener, ReplyingTemplate};
/// use async_mvc::DeferredResult;
/// use async_mvc::cluster::ReplyError;
///
/// # async fn run() {
/// let broker = InMemoryBroker::new();
/// // A worker, here or on another instance:
/// let _worker = JobListener::new(broker.clone(), "squares", "workers")
///     .run(|n: u64| async move { Ok::<_, String>(n * n) });
/// // In a handler:
/// let template = ReplyingTemplate::new(broker, "squares");
/// let answer: DeferredResult<u64, ReplyError> =
///     template.send_and_receive(&12_u64, Duration::from_secs(5)).await;
/// # let _ = answer;
/// # }
/// ```
#[derive(Clone)]
pub struct ReplyingTemplate {
    inner: Arc<Inner>,
}

/// A request waiting for its reply.
trait Waiting: Send {
    /// Completes it with `reply`.
    fn complete(self: Box<Self>, reply: ReplyBody) -> bool;
    /// Answered or expired already (its handler may have dropped it).
    fn is_done(&self) -> bool;
}

impl<R, E> Waiting for DeferredResult<R, E>
where
    R: DeserializeOwned + Send + 'static,
    E: From<ReplyError> + Send + 'static,
{
    fn complete(self: Box<Self>, reply: ReplyBody) -> bool {
        match reply {
            ReplyBody::Ok(value) => match serde_json::from_value::<R>(value) {
                Ok(value) => self.set_result(value),
                Err(error) => self.set_error_result(ReplyError::Codec(error.to_string()).into()),
            },
            ReplyBody::Err(message) => self.set_error_result(ReplyError::Failed(message).into()),
        }
    }

    fn is_done(&self) -> bool {
        self.is_set_or_expired()
    }
}

/// The requests waiting for their replies, by correlation id: each with when it was sent.
type PendingRequests = HashMap<String, (Box<dyn Waiting>, Instant)>;

struct Inner {
    broker: Arc<dyn MessageBroker>,
    queue: String,
    /// This template's reply channel.
    reply_to: String,
    /// This template's part of every correlation id.
    instance: String,
    next: AtomicU64,
    /// By correlation id: the request, and when it was sent.
    pending: Mutex<PendingRequests>,
    max_outstanding: AtomicUsize,
    queue_max_len: AtomicUsize,
    retention_ms: AtomicU64,
    /// Until when a worker is known to be alive.
    alive_until: Mutex<Option<Instant>>,
    sent: AtomicU64,
    replies: AtomicU64,
    ignored: AtomicU64,
    no_responders: AtomicU64,
    /// Ends the reply listener when the last handle goes.
    _listener: AbortOnDropHandle<()>,
}

impl ReplyingTemplate {
    /// A template for jobs on `queue`, listening on `broker` for its replies (one
    /// subscription, in a task).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the replies are read by a task).
    pub fn new(broker: impl Into<Arc<dyn MessageBroker>>, queue: &str) -> Self {
        let broker = broker.into();
        let instance = unique_id();
        let reply_to = format!("replies:{queue}:{instance}");
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let listener = listen(
                broker.subscribe(&reply_to),
                weak.clone(),
                |inner: Arc<Inner>, event| async move {
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
                queue: queue.to_owned(),
                reply_to: reply_to.clone(),
                instance,
                next: AtomicU64::new(0),
                pending: Mutex::new(HashMap::new()),
                max_outstanding: AtomicUsize::new(DEFAULT_MAX_OUTSTANDING),
                queue_max_len: AtomicUsize::new(DEFAULT_QUEUE_MAX_LEN),
                retention_ms: AtomicU64::new(duration_ms(DEFAULT_REPLY_RETENTION)),
                alive_until: Mutex::new(None),
                sent: AtomicU64::new(0),
                replies: AtomicU64::new(0),
                ignored: AtomicU64::new(0),
                no_responders: AtomicU64::new(0),
                _listener: listener,
            }
        });
        ReplyingTemplate { inner }
    }

    /// At most `requests` requests wait for replies on this instance at once (at least 1;
    /// default [`DEFAULT_MAX_OUTSTANDING`]). Settings are the template's, shared by its
    /// clones.
    #[must_use]
    pub fn max_outstanding(self, requests: usize) -> Self {
        self.inner
            .max_outstanding
            .store(requests.max(1), Ordering::Relaxed);
        self
    }

    /// The queue keeps about its newest `jobs` jobs (at least 1; default
    /// [`DEFAULT_QUEUE_MAX_LEN`]).
    #[must_use]
    pub fn queue_max_len(self, jobs: usize) -> Self {
        self.inner
            .queue_max_len
            .store(jobs.max(1), Ordering::Relaxed);
        self
    }

    /// How long the workers keep each reply in the broker (default
    /// [`DEFAULT_REPLY_RETENTION`]; at least 1 ms). Travels with each job.
    #[must_use]
    pub fn reply_retention(self, ttl: Duration) -> Self {
        self.inner
            .retention_ms
            .store(duration_ms(ttl).max(1), Ordering::Relaxed);
        self
    }

    /// Puts `job` on the queue and returns the request's [`DeferredResult`], completed by the
    /// first reply, or by the manager's timeout path `timeout` after this call (a worker that
    /// finds the request expired drops the job unworked). Return it from the handler.
    ///
    /// `timeout` is the request's one deadline: the time spent asking the broker whether a
    /// worker listens, and the time the job waits in the broker's outbox while the broker is
    /// unreachable, count against it. The job carries the same expiry, and the answer comes by
    /// the deadline — never a timeout's worth after an outage ends.
    ///
    /// Answered at once with an error when no worker listens on the queue
    /// ([`ReplyError::NoResponders`]), when this instance has
    /// [`max_outstanding`](Self::max_outstanding) requests waiting
    /// ([`ReplyError::Overloaded`]), or when the job does not serialize
    /// ([`ReplyError::Codec`]); with [`ReplyError::Broker`] when the broker does not take the
    /// job before the deadline. The error type `E` is [`ReplyError`] or the application's own
    /// error, made from it (`impl From<ReplyError>`), to answer in the application's format.
    pub async fn send_and_receive<J, R, E>(
        &self,
        job: &J,
        timeout: Duration,
    ) -> DeferredResult<R, E>
    where
        J: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
        E: From<ReplyError> + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let inner = &self.inner;
        let n = inner.next.fetch_add(1, Ordering::Relaxed);
        let correlation_id = format!("{}-{n:x}", inner.instance);
        let envelope = JobEnvelope {
            correlation_id: Some(correlation_id.as_str()),
            reply_to: Some(inner.reply_to.as_str()),
            expires_at_ms: Some(ms_after(timeout)),
            retain_ms: Some(inner.retention_ms.load(Ordering::Relaxed)),
            traceparent: super::trace::current(),
            job,
        };
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(bytes) => bytes,
            Err(error) => return failed(ReplyError::Codec(error.to_string())),
        };
        match tokio::time::timeout_at(deadline, inner.check_alive()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return failed(error),
            // The deadline passed while the broker was asked: the timeout path, at once.
            Err(_) => return DeferredResult::with_timeout(Duration::ZERO),
        }
        let result = DeferredResult::with_timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        );
        {
            let mut pending = inner.lock();
            let limit = inner.max_outstanding.load(Ordering::Relaxed);
            if pending.len() >= limit {
                // Requests whose handler dropped them go here.
                pending.retain(|_, (waiting, _)| !waiting.is_done());
            }
            if pending.len() >= limit {
                result.set_error_result(
                    ReplyError::Overloaded {
                        limit,
                        retry_after: DEFAULT_RETRY_AFTER,
                    }
                    .into(),
                );
                return result;
            }
            pending.insert(
                correlation_id.clone(),
                (Box::new(result.clone()), Instant::now()),
            );
        }
        let weak = Arc::downgrade(inner);
        let leaving = correlation_id.clone();
        result.on_completion(move || {
            if let Some(inner) = weak.upgrade() {
                // Still listed: no reply came (a timeout, or the client left).
                if let Some((_, sent)) = inner.lock().remove(&leaving) {
                    crate::telemetry::reply_finished(&inner.queue, "timed_out", sent.elapsed());
                }
            }
        });
        // Sent while the request's timer runs: a job that waits in the outbox (the broker
        // unreachable) waits on the request's time, and is given up at its deadline.
        let (inner, sending) = (Arc::clone(inner), result.clone());
        tokio::spawn(async move {
            if let Ok(Err(error)) = tokio::time::timeout_at(deadline, inner.enqueue(bytes)).await {
                inner.lock().remove(&correlation_id);
                sending.set_error_result(error.into());
            }
        });
        result
    }

    /// Puts `job` on the queue without waiting for a reply (Spring's `KafkaTemplate.send`):
    /// a worker of the queue's group works it once it listens, even if none does now. Its
    /// id in the queue.
    ///
    /// # Errors
    ///
    /// [`ReplyError::Broker`] if the broker does not take it, [`ReplyError::Codec`] if it does
    /// not serialize.
    pub async fn send<J: Serialize + ?Sized>(&self, job: &J) -> Result<String, ReplyError> {
        let envelope: JobEnvelope<&J, &str> = JobEnvelope {
            correlation_id: None,
            reply_to: None,
            expires_at_ms: None,
            retain_ms: None,
            traceparent: super::trace::current(),
            job,
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| ReplyError::Codec(e.to_string()))?;
        self.inner.enqueue(bytes).await
    }

    /// Whether a [`JobListener`](super::JobListener) of the queue is alive now (it marked
    /// itself in the last 3 s): what [`send_and_receive`](Self::send_and_receive) checks
    /// before it sends, for a readiness probe.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    pub async fn has_listeners(&self) -> Result<bool, BrokerError> {
        let alive = self.inner.broker.get(&alive_key(&self.inner.queue)).await?;
        Ok(alive.is_some())
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// The counters now.
    pub fn metrics(&self) -> TemplateMetrics {
        let inner = &self.inner;
        TemplateMetrics {
            outstanding: inner.lock().len(),
            sent: inner.sent.load(Ordering::Relaxed),
            replies: inner.replies.load(Ordering::Relaxed),
            ignored_replies: inner.ignored.load(Ordering::Relaxed),
            no_responders: inner.no_responders.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, PendingRequests> {
        // Only map operations run under this lock: a reply completes its request after.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok` if a worker listens on the queue (asked at most every [`ALIVE_CACHE`]).
    async fn check_alive(&self) -> Result<(), ReplyError> {
        let now = Instant::now();
        let known = *self
            .alive_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.is_some_and(|until| until > now) {
            return Ok(());
        }
        match self.broker.get(&alive_key(&self.queue)).await {
            Ok(Some(_)) => {
                *self
                    .alive_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(now + ALIVE_CACHE);
                Ok(())
            }
            Ok(None) => {
                self.no_responders.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::no_responders(&self.queue);
                Err(ReplyError::NoResponders {
                    queue: self.queue.clone(),
                    retry_after: DEFAULT_RETRY_AFTER,
                })
            }
            Err(error) => Err(ReplyError::Broker(error)),
        }
    }

    /// Puts an envelope's bytes on the queue.
    async fn enqueue(&self, bytes: Vec<u8>) -> Result<String, ReplyError> {
        let max_len = self.queue_max_len.load(Ordering::Relaxed);
        let id = self
            .broker
            .enqueue(&self.queue, Bytes::from(bytes), max_len)
            .await
            .map_err(ReplyError::Broker)?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// A reply arrived for `correlation_id`.
    fn deliver(&self, correlation_id: &str, payload: &[u8]) {
        let Ok(reply) = serde_json::from_slice::<ReplyBody>(payload) else {
            tracing::warn!(queue = %self.queue, "a reply did not deserialize: ignored");
            return;
        };
        let outcome = match &reply {
            ReplyBody::Ok(_) => "reply",
            ReplyBody::Err(_) => "error",
        };
        let waiting = self.lock().remove(correlation_id);
        let sent = waiting.as_ref().map(|(_, sent)| *sent);
        let completed = waiting.is_some_and(|(waiting, _)| waiting.complete(reply));
        if let (true, Some(sent)) = (completed, sent) {
            crate::telemetry::reply_finished(&self.queue, outcome, sent.elapsed());
            self.replies.fetch_add(1, Ordering::Relaxed);
        } else {
            crate::telemetry::ignored_reply(&self.queue);
            self.ignored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// After a broker outage: replies published meanwhile may be lost; the retained ones are
    /// read for every request still waiting.
    async fn recover(&self) {
        let waiting: Vec<String> = self.lock().keys().cloned().collect();
        for correlation_id in waiting {
            if let Ok(Some(reply)) = self
                .broker
                .get(&reply_key(&self.queue, &correlation_id))
                .await
            {
                self.deliver(&correlation_id, &reply);
            }
        }
    }
}

/// A request answered at once with `error`.
fn failed<R, E: From<ReplyError>>(error: ReplyError) -> DeferredResult<R, E> {
    let result = DeferredResult::new();
    result.set_error_result(error.into());
    result
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for ReplyingTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyingTemplate")
            .field("queue", &self.inner.queue)
            .field("reply_to", &self.inner.reply_to)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
