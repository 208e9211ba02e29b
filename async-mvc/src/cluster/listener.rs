//! [`JobListener`]: the worker side of request/reply — a consumer of a queue's group that runs
//! a handler for each job and replies to the instance that asked.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{
    broker::MessageBroker,
    envelope::{alive_key, reply_key, unique_id, JobEnvelope, ReplyBody},
    queue::{Job, JobConsumer},
};
use crate::guard;

/// How many jobs one listener works at once, unless
/// [`concurrency`](JobListener::concurrency) says otherwise: 16.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// How long a job may stay unacknowledged and untouched before another consumer claims it,
/// unless [`claim_idle`](JobListener::claim_idle) says otherwise: 5 s.
pub const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(5);
/// How long one read waits for a job.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// How long a listener counts as alive after its last heartbeat (it beats every second).
const ALIVE_TTL: Duration = Duration::from_secs(3);
/// How often a listener says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The longest pause after a broker error, doubled from 50 ms: a listener reads again within
/// half a second of the broker's return, as the pub/sub connection resubscribes.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A worker for the jobs of `queue`, as one consumer of `group` (Spring's
/// `@KafkaListener`/`@RabbitListener` with a reply, or `@JmsListener` + `@SendTo`): jobs are
/// shared among the group's consumers on every instance (competing consumers), each delivered
/// at least once. The handler's `Ok` is the reply; its `Err` (or a panic) becomes an error reply,
/// answered `502` by the requesting instance.
///
/// A consumer that dies mid-job leaves the job pending: after
/// [`claim_idle`](Self::claim_idle) another consumer claims it. A job received again whose reply
/// is still retained is answered with that reply, not worked again; a job whose requester has
/// stopped waiting is dropped unworked. Jobs sent without a reply wanted
/// ([`ReplyingTemplate::send`](super::ReplyingTemplate::send)) may be worked twice when their
/// worker dies: make such handlers idempotent.
///
/// While running, the listener keeps the queue's "alive" mark set in the broker (every second,
/// for 3 s): without it requesters answer `503` at once.
///
/// ```no_run
/// use async_mvc::cluster::{InMemoryBroker, JobListener};
///
/// # async fn run() {
/// let worker = JobListener::new(InMemoryBroker::new(), "invoices", "renderers")
///     .concurrency(4)
///     .run(|order_id: String| async move { Ok::<_, String>(format!("invoice of {order_id}")) });
/// // … later, on shutdown: stop reading, finish the jobs in progress.
/// worker.shutdown().await;
/// # }
/// ```
#[must_use]
pub struct JobListener {
    broker: Arc<dyn MessageBroker>,
    queue: String,
    group: String,
    consumer: String,
    concurrency: usize,
    claim_idle: Duration,
}

/// A snapshot of a [`JobListener`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ListenerMetrics {
    /// Jobs worked to their end, successfully or not.
    pub processed: u64,
    /// Of those, the ones whose handler failed or panicked.
    pub failed: u64,
    /// Jobs claimed from a consumer presumed dead.
    pub claimed: u64,
    /// Jobs received again and answered with their retained reply, not worked again.
    pub replayed: u64,
    /// Jobs dropped unworked: their requester had stopped waiting, or they did not decode.
    pub dropped: u64,
    /// Jobs in progress now.
    pub in_progress: usize,
}

/// A running [`JobListener`]: dropping it stops reading (jobs in progress still finish);
/// [`shutdown`](Self::shutdown) also waits for them.
pub struct JobListenerHandle {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    state: Arc<State>,
}

struct State {
    broker: Arc<dyn MessageBroker>,
    queue: String,
    group: String,
    consumer: String,
    concurrency: usize,
    claim_idle: Duration,
    permits: Arc<Semaphore>,
    in_progress: Mutex<HashSet<String>>,
    processed: AtomicU64,
    failed: AtomicU64,
    claimed: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
}

/// The handler, type-erased: the job's JSON in, the reply out.
type Work =
    Arc<dyn Fn(serde_json::Value) -> futures::future::BoxFuture<'static, ReplyBody> + Send + Sync>;

impl JobListener {
    /// A consumer of `group` on `queue`, named uniquely for this process (see
    /// [`consumer_name`](Self::consumer_name)).
    pub fn new(broker: impl Into<Arc<dyn MessageBroker>>, queue: &str, group: &str) -> Self {
        JobListener {
            broker: broker.into(),
            queue: queue.to_owned(),
            group: group.to_owned(),
            consumer: format!("{}-{}", std::process::id(), unique_id()),
            concurrency: DEFAULT_CONCURRENCY,
            claim_idle: DEFAULT_CLAIM_IDLE,
        }
    }

    /// Works at most `jobs` jobs at once (at least 1; default [`DEFAULT_CONCURRENCY`]).
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs.max(1);
        self
    }

    /// Claims jobs other consumers left unacknowledged and untouched for `idle` (default
    /// [`DEFAULT_CLAIM_IDLE`]; at least 100 ms). Jobs in progress are touched every third of
    /// it, so a slow job is not claimed from a live consumer.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle.max(Duration::from_millis(100));
        self
    }

    /// The consumer's name in the group; unique per process unless set. A process restarted
    /// with the same name takes its own pending jobs back at once.
    pub fn consumer_name(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// Starts working jobs with `handler`, in a task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn run<J, R, E, F, Fut>(self, handler: F) -> JobListenerHandle
    where
        J: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let work: Work = Arc::new(move |job: serde_json::Value| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let job = match serde_json::from_value::<J>(job) {
                    Ok(job) => job,
                    Err(error) => {
                        return ReplyBody::Err(format!("the job did not decode: {error}"))
                    }
                };
                match guard::catch_future("job handler", async move { handler(job).await }).await {
                    Ok(Ok(reply)) => match serde_json::to_value(reply) {
                        Ok(reply) => ReplyBody::Ok(reply),
                        Err(error) => {
                            ReplyBody::Err(format!("the reply did not serialize: {error}"))
                        }
                    },
                    Ok(Err(error)) => ReplyBody::Err(error.to_string()),
                    Err(panic) => ReplyBody::Err(format!("the job handler panicked: {panic}")),
                }
            })
        });
        let state = Arc::new(State {
            permits: Arc::new(Semaphore::new(self.concurrency)),
            broker: self.broker,
            queue: self.queue,
            group: self.group,
            consumer: self.consumer,
            concurrency: self.concurrency,
            claim_idle: self.claim_idle,
            in_progress: Mutex::new(HashSet::new()),
            processed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(read_loop(Arc::clone(&state), work, stop.clone()));
        JobListenerHandle {
            stop,
            task: Some(task),
            state,
        }
    }
}

impl JobListenerHandle {
    /// The counters now.
    pub fn metrics(&self) -> ListenerMetrics {
        let state = &self.state;
        ListenerMetrics {
            processed: state.processed.load(Ordering::Relaxed),
            failed: state.failed.load(Ordering::Relaxed),
            claimed: state.claimed.load(Ordering::Relaxed),
            replayed: state.replayed.load(Ordering::Relaxed),
            dropped: state.dropped.load(Ordering::Relaxed),
            in_progress: state.in_progress().len(),
        }
    }

    /// The consumer's name in its group.
    pub fn consumer_name(&self) -> &str {
        &self.state.consumer
    }

    /// Stops reading jobs and waits for those in progress to finish (their replies sent and
    /// acknowledged).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let all = u32::try_from(self.state.concurrency).unwrap_or(u32::MAX);
        let _ = self.state.permits.acquire_many(all).await;
    }
}

impl Drop for JobListenerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl State {
    fn in_progress(&self) -> MutexGuard<'_, HashSet<String>> {
        // Only set operations run under this lock.
        self.in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Joins the group, then reads and claims jobs while slots are free, until `stop`.
async fn read_loop(state: Arc<State>, work: Work, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut consumer: Box<dyn JobConsumer> = loop {
        let joined = tokio::select! {
            joined = state.broker.consumer(&state.queue, &state.group, &state.consumer) => joined,
            () = stop.cancelled() => return,
        };
        match joined {
            Ok(consumer) => break consumer,
            Err(error) => {
                backoff.log(&error, &state.queue, "cannot join the queue's group");
                if backoff.pause(&stop).await {
                    return;
                }
            }
        }
    };
    let _heartbeat = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(heartbeat(
        Arc::clone(&state),
        stop.clone(),
    )));
    let claim_every = state.claim_idle / 2;
    let mut last_claim: Option<tokio::time::Instant> = None;
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&state.permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let free = state.permits.available_permits() + 1;
        let mut jobs = Vec::new();
        if last_claim.map_or(true, |at| at.elapsed() >= claim_every) {
            last_claim = Some(tokio::time::Instant::now());
            match consumer.claim(state.claim_idle, free).await {
                Ok(claimed) => {
                    state
                        .claimed
                        .fetch_add(claimed.len() as u64, Ordering::Relaxed);
                    if !claimed.is_empty() {
                        crate::telemetry::jobs_claimed(&state.queue, claimed.len() as u64);
                    }
                    jobs = claimed;
                }
                Err(error) => backoff.log(&error, &state.queue, "cannot claim jobs"),
            }
        }
        if jobs.is_empty() {
            let read = tokio::select! {
                read = consumer.read(free, READ_BLOCK) => read,
                () = stop.cancelled() => return,
            };
            match read {
                Ok(read) => {
                    backoff.reset(&state.queue);
                    jobs = read;
                }
                Err(error) => {
                    backoff.log(&error, &state.queue, "cannot read jobs");
                    drop(first);
                    if backoff.pause(&stop).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let mut first = Some(first);
        for job in jobs {
            let permit = match first.take() {
                Some(permit) => permit,
                // This loop is the only one taking permits: `free` of them are there.
                None => match Arc::clone(&state.permits).acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            tokio::spawn(work_one(Arc::clone(&state), Arc::clone(&work), job, permit));
        }
    }
}

/// Works one job: decode, skip if expired or already answered, run the handler, reply, ack.
async fn work_one(state: Arc<State>, work: Work, job: Job, _permit: OwnedSemaphorePermit) {
    let Ok(envelope) = serde_json::from_slice::<JobEnvelope>(&job.payload) else {
        tracing::warn!(queue = %state.queue, id = %job.id, "a job did not decode: dropped");
        state.dropped.fetch_add(1, Ordering::Relaxed);
        ack(&state, &job.id).await;
        return;
    };
    if envelope.expired() {
        state.dropped.fetch_add(1, Ordering::Relaxed);
        ack(&state, &job.id).await;
        return;
    }
    let reply_to = envelope
        .correlation_id
        .as_deref()
        .zip(envelope.reply_to.as_deref());
    if let (Some((correlation_id, reply_to)), true) = (reply_to, job.redelivered) {
        let retained = state
            .broker
            .get(&reply_key(&state.queue, correlation_id))
            .await;
        if let Ok(Some(reply)) = retained {
            state.replayed.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::job_redelivered(&state.queue);
            if publish(&state, reply_to, correlation_id, reply).await {
                ack(&state, &job.id).await;
            }
            return;
        }
    }
    state.in_progress().insert(job.id.clone());
    let retain = envelope.retention();
    let span = super::trace::job_span(&state.queue, &job.id, envelope.traceparent.as_deref());
    let reply = tracing::Instrument::instrument(work(envelope.job), span).await;
    state.processed.fetch_add(1, Ordering::Relaxed);
    if matches!(reply, ReplyBody::Err(_)) {
        state.failed.fetch_add(1, Ordering::Relaxed);
    }
    let delivered = match reply_to {
        None => {
            if let ReplyBody::Err(error) = &reply {
                tracing::warn!(queue = %state.queue, %error, "a job failed");
            }
            true
        }
        Some((correlation_id, reply_to)) => match serde_json::to_vec(&reply) {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                let key = reply_key(&state.queue, correlation_id);
                if let Err(error) = state.broker.put(&key, bytes.clone(), retain).await {
                    tracing::warn!(%error, queue = %state.queue, "cannot retain a reply");
                }
                publish(&state, reply_to, correlation_id, bytes).await
            }
            Err(error) => {
                tracing::warn!(%error, queue = %state.queue, "a reply did not serialize");
                true
            }
        },
    };
    // A reply that could not be sent leaves the job pending: it is claimed, and answered, again.
    if delivered {
        ack(&state, &job.id).await;
    }
    state.in_progress().remove(&job.id);
}

async fn publish(state: &State, reply_to: &str, correlation_id: &str, reply: Bytes) -> bool {
    match state.broker.publish(reply_to, correlation_id, reply).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, queue = %state.queue, "cannot send a reply");
            false
        }
    }
}

async fn ack(state: &State, id: &str) {
    if let Err(error) = state.broker.ack(&state.queue, &state.group, id).await {
        // Claimed again later, and answered from the retained reply.
        tracing::warn!(%error, queue = %state.queue, id, "cannot acknowledge a job");
    }
}

/// Keeps the queue's alive mark set, and the jobs in progress from being claimed.
async fn heartbeat(state: Arc<State>, stop: CancellationToken) {
    let every = HEARTBEAT.min(state.claim_idle / 3);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let name = Bytes::from(state.consumer.clone());
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = state
            .broker
            .put(&alive_key(&state.queue), name.clone(), ALIVE_TTL)
            .await
        {
            tracing::warn!(%error, queue = %state.queue, "cannot mark the worker alive");
        }
        let ids: Vec<String> = state.in_progress().iter().cloned().collect();
        if !ids.is_empty() {
            if let Err(error) = state
                .broker
                .touch(&state.queue, &state.group, &state.consumer, &ids)
                .await
            {
                tracing::warn!(%error, queue = %state.queue, "cannot touch jobs in progress");
            }
        }
    }
}

/// A pause after a broker error: 50 ms, doubling up to [`MAX_BACKOFF`]. An outage is logged
/// once when it starts and once when it ends.
#[derive(Default)]
struct Backoff {
    next: Option<Duration>,
    /// An error was logged and the broker has not answered since.
    failing: bool,
}

impl Backoff {
    /// Logs `error` as a warning if it is the first of an outage, else at debug level.
    fn log(&mut self, error: &super::broker::BrokerError, queue: &str, what: &str) {
        if self.failing {
            tracing::debug!(%error, queue, "{what}");
        } else {
            self.failing = true;
            tracing::warn!(%error, queue, "{what}; retrying until the broker answers");
        }
    }

    /// Pauses; `true` if `stop` came first.
    async fn pause(&mut self, stop: &CancellationToken) -> bool {
        let pause = self.next.unwrap_or(Duration::from_millis(50));
        self.next = Some((pause * 2).min(MAX_BACKOFF));
        tokio::select! {
            () = tokio::time::sleep(pause) => false,
            () = stop.cancelled() => true,
        }
    }

    fn reset(&mut self, queue: &str) {
        self.next = None;
        if std::mem::take(&mut self.failing) {
            tracing::info!(queue, "reading jobs again");
        }
    }
}

impl fmt::Debug for JobListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobListener")
            .field("queue", &self.queue)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("concurrency", &self.concurrency)
            .field("claim_idle", &self.claim_idle)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for JobListenerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobListenerHandle")
            .field("queue", &self.state.queue)
            .field("consumer", &self.state.consumer)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
