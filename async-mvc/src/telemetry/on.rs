//! The measurements, with the `metrics` feature: handles taken once where a measurement is per
//! request, the facade's macros elsewhere.

use rustc_hash::FxHashMap;
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::extract::MatchedPath;
use http::{Method, StatusCode};
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use super::{Kind, *};

/// An async manager's per-request instruments, taken when the manager is built.
#[derive(Clone)]
pub(crate) struct ManagerInstruments {
    series: Arc<DurationSeries>,
    /// In the order of `Outcome`.
    outcomes: [Counter; 6],
    lateness: Histogram,
}

/// The request-duration histograms a manager has recorded into, by their labels: a request
/// finds its series by a hash of a few words instead of building its labels (and the route's
/// string) and asking the recorder's registry.
struct DurationSeries {
    active_requests: Gauge,
    cache: Mutex<FxHashMap<SeriesKey, Histogram>>,
}

/// How many label sets a manager remembers; past it (an application with that many routes ×
/// statuses), series are looked up in the recorder each time.
const SERIES_CACHE: usize = 4_096;

/// A request-duration series' labels, cheap to hash: the route by its template's address (the
/// key holds the template, so the address stays its own).
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    route: Option<RouteKey>,
    method: &'static str,
    status: Option<u16>,
    kind: Kind,
    error: Option<&'static str>,
}

#[derive(Clone)]
struct RouteKey(MatchedPath);

impl PartialEq for RouteKey {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0.as_str(), other.0.as_str())
    }
}

impl Eq for RouteKey {}

impl std::hash::Hash for RouteKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0.as_str(), state);
    }
}

/// How an async request ended: the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Completed = 0,
    TimedOut = 1,
    Disconnected = 2,
    Rejected = 3,
    Error = 4,
    SlowConsumer = 5,
}

const OUTCOMES: [&str; 6] = [
    "completed",
    "timed_out",
    "disconnected",
    "rejected",
    "error",
    "slow_consumer",
];

impl ManagerInstruments {
    pub(crate) fn new() -> Self {
        ManagerInstruments {
            series: Arc::new(DurationSeries {
                active_requests: gauge!(ACTIVE_REQUESTS),
                cache: Mutex::new(FxHashMap::default()),
            }),
            outcomes: OUTCOMES.map(|outcome| counter!(REQUEST_OUTCOME, "outcome" => outcome)),
            lateness: histogram!(TIMEOUT_LATENESS),
        }
    }

    /// Counts one request that ended so.
    #[inline]
    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].increment(1);
    }

    /// A timeout due at `due` fired now.
    pub(crate) fn timeout_fired(&self, due: tokio::time::Instant) {
        let late = tokio::time::Instant::now().saturating_duration_since(due);
        self.lateness.record(late.as_secs_f64());
    }

    /// One request from its arrival to its last byte.
    pub(crate) fn observe(&self, method: &Method, route: Option<&MatchedPath>) -> Observation {
        self.series.active_requests.increment(1.0);
        Observation {
            started: Instant::now(),
            method: method_label(method),
            route: route.cloned(),
            kind: Kind::Sync,
            status: None,
            series: Some(Arc::clone(&self.series)),
        }
    }
}

impl std::fmt::Debug for ManagerInstruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagerInstruments")
    }
}

/// One request under observation: recorded once, when its response's body ends or is dropped
/// (the client left), or when the request is dropped before it had a response.
pub(crate) struct Observation {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
    kind: Kind,
    status: Option<StatusCode>,
    /// `None` once recorded.
    series: Option<Arc<DurationSeries>>,
}

impl Observation {
    /// The kind of value the response came from.
    pub(crate) fn set_kind(&mut self, kind: Kind) {
        self.kind = kind;
    }

    /// The response's status, once known.
    pub(crate) fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    /// Records the request: ended normally (`error` `None`), or with that error type.
    pub(crate) fn finish(&mut self, error: Option<&'static str>) {
        let Some(series) = self.series.take() else {
            return;
        };
        series.active_requests.decrement(1.0);
        let seconds = self.started.elapsed().as_secs_f64();
        // A 5xx without another error type is its status code (the semconv's rule).
        let error = error.or_else(|| {
            self.status
                .filter(StatusCode::is_server_error)
                .map(|status| server_error_label(status.as_u16()))
        });
        let key = SeriesKey {
            route: self.route.take().map(RouteKey),
            method: self.method,
            status: self.status.map(|status| status.as_u16()),
            kind: self.kind,
            error,
        };
        let cached = series
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let histogram = match cached {
            Some(histogram) => histogram,
            None => {
                let histogram = histogram!(REQUEST_DURATION, labels(&key));
                let mut cache = series.cache.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() < SERIES_CACHE {
                    cache.insert(key, histogram.clone());
                }
                histogram
            }
        };
        histogram.record(seconds);
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        // Not finished by a body: the client left before the response ended.
        self.finish(Some("disconnected"));
    }
}

/// A series' labels, in the semconv's names.
fn labels(key: &SeriesKey) -> Vec<metrics::Label> {
    let mut labels = Vec::with_capacity(5);
    labels.push(metrics::Label::new("http.request.method", key.method));
    labels.push(metrics::Label::new("async_mvc.kind", key.kind.as_str()));
    if let Some(route) = &key.route {
        labels.push(metrics::Label::new(
            "http.route",
            route.0.as_str().to_owned(),
        ));
    }
    if let Some(status) = key.status {
        labels.push(metrics::Label::new(
            "http.response.status_code",
            status.to_string(),
        ));
    }
    if let Some(error) = key.error {
        labels.push(metrics::Label::new("error.type", error));
    }
    labels
}

/// `error.type` of a 5xx status: its code, as a static text for the common ones.
fn server_error_label(status: u16) -> &'static str {
    match status {
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "5xx",
    }
}

/// The semconv's method values: the standard ones, else `_OTHER` (bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// An executor's instruments, labelled with its name.
pub(crate) struct ExecutorInstruments {
    active: Gauge,
    queued: Gauge,
    pool_size: Gauge,
    rejected: Counter,
}

impl ExecutorInstruments {
    pub(crate) fn new(name: &str) -> Self {
        let name = name.to_owned();
        ExecutorInstruments {
            active: gauge!(EXECUTOR_ACTIVE, "name" => name.clone()),
            queued: gauge!(EXECUTOR_QUEUED, "name" => name.clone()),
            pool_size: gauge!(EXECUTOR_POOL_SIZE, "name" => name.clone()),
            rejected: counter!(EXECUTOR_REJECTED, "name" => name),
        }
    }

    /// The executor's state changed: `active` tasks on as many threads, `queued` waiting.
    pub(crate) fn state(&self, active: usize, queued: usize) {
        self.active.set(active as f64);
        self.pool_size.set(active as f64);
        self.queued.set(queued as f64);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }
}

/// Why a connection was shed: the `reason` label.
pub(crate) fn connection_shed(reason: &'static str) {
    counter!(SHED_CONNECTIONS, "reason" => reason).increment(1);
}

/// A connection closed by a timeout of this `kind`.
pub(crate) fn connection_timeout(kind: &'static str) {
    counter!(CONNECTION_TIMEOUTS, "kind" => kind).increment(1);
}

/// A connection was accepted.
pub(crate) fn connection_accepted() {
    counter!(ACCEPTED_CONNECTIONS).increment(1);
}

/// A connection spoke HTTP/2.
pub(crate) fn connection_http2() {
    counter!(HTTP2_CONNECTIONS).increment(1);
}

/// The server holds `open` connections.
pub(crate) fn open_connections(open: u64) {
    gauge!(OPEN_CONNECTIONS).set(open as f64);
}

/// An SSE event of `bytes` bytes was queued for a client.
pub(crate) fn sse_event(bytes: usize) {
    counter!(SSE_EVENTS).increment(1);
    counter!(SSE_BYTES).increment(bytes as u64);
}

/// A clustered subscriber's replay went so: `full` or `reset`.
pub(crate) fn sse_replay(result: &'static str) {
    counter!(SSE_REPLAYS, "result" => result).increment(1);
}

/// An SSE stream was given up: its client read too slowly.
pub(crate) fn sse_slow_consumer() {
    counter!(SSE_SLOW_CONSUMERS).increment(1);
}

/// A request/reply on `queue` ended so (`reply`, `error`, `timed_out`) after `elapsed`.
pub(crate) fn reply_finished(queue: &str, outcome: &'static str, elapsed: Duration) {
    histogram!(REPLY_DURATION, "queue" => queue.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// A request on `queue` was refused: no worker listened.
pub(crate) fn no_responders(queue: &str) {
    counter!(NO_RESPONDERS, "queue" => queue.to_owned()).increment(1);
}

/// A reply on `queue` came for a request no longer waiting.
pub(crate) fn ignored_reply(queue: &str) {
    counter!(IGNORED_REPLIES, "queue" => queue.to_owned()).increment(1);
}

/// A listener of `queue` claimed `n` jobs of a dead consumer.
pub(crate) fn jobs_claimed(queue: &str, n: u64) {
    counter!(JOB_CLAIMS, "queue" => queue.to_owned()).increment(n);
}

/// A redelivered job of `queue` was answered from its retained reply.
pub(crate) fn job_redelivered(queue: &str) {
    counter!(JOB_REDELIVERIES, "queue" => queue.to_owned()).increment(1);
}

/// One open SSE stream, counted in [`SSE_SUBSCRIBERS`] while it lives.
pub(crate) struct SseStream;

impl SseStream {
    pub(crate) fn open() -> Self {
        gauge!(SSE_SUBSCRIBERS).increment(1.0);
        SseStream
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        gauge!(SSE_SUBSCRIBERS).decrement(1.0);
    }
}

/// Describes every metric above to the installed recorder — its unit and help text — so that
/// an exporter can render units (a Prometheus exporter with unit suffixes on:
/// `http_server_request_duration_seconds`). Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, to the response's last body byte or the disconnect."
    );
    describe_gauge!(ACTIVE_REQUESTS, "Number of active HTTP server requests.");
    describe_counter!(REQUEST_OUTCOME, "Async requests by how they ended.");
    describe_histogram!(
        TIMEOUT_LATENESS,
        Unit::Seconds,
        "How late async request timeouts fired after their due time."
    );
    describe_gauge!(EXECUTOR_ACTIVE, "Tasks running on the executor.");
    describe_gauge!(EXECUTOR_QUEUED, "Tasks waiting in the executor's queue.");
    describe_gauge!(EXECUTOR_POOL_SIZE, "The executor's worker threads.");
    describe_counter!(EXECUTOR_REJECTED, "Tasks the executor refused.");
    describe_gauge!(OPEN_CONNECTIONS, "Connections the server holds open.");
    describe_counter!(ACCEPTED_CONNECTIONS, "Connections accepted.");
    describe_counter!(HTTP2_CONNECTIONS, "Connections that spoke HTTP/2.");
    describe_counter!(
        SHED_CONNECTIONS,
        "Connections shed at the connection limit."
    );
    describe_counter!(CONNECTION_TIMEOUTS, "Connections closed by a timeout.");
    describe_gauge!(SSE_SUBSCRIBERS, "Open SSE streams.");
    describe_counter!(SSE_EVENTS, "SSE events queued for clients.");
    describe_counter!(
        SSE_BYTES,
        Unit::Bytes,
        "Bytes of SSE events queued for clients."
    );
    describe_counter!(SSE_REPLAYS, "Clustered SSE resumes by result.");
    describe_counter!(
        SSE_SLOW_CONSUMERS,
        "SSE streams given up: the client read too slowly."
    );
    describe_histogram!(
        PUBSUB_LAG,
        Unit::Seconds,
        "From a broker message's publication to its arrival on this instance."
    );
    describe_counter!(
        BROKER_RECONNECTS,
        "Times the broker subscription came back."
    );
    describe_gauge!(
        OUTBOX_DEPTH,
        "Operations waiting for an unreachable broker."
    );
    describe_histogram!(
        REPLY_DURATION,
        Unit::Seconds,
        "Request/reply round trips through the broker."
    );
    describe_counter!(NO_RESPONDERS, "Requests refused: no worker listened.");
    describe_counter!(IGNORED_REPLIES, "Replies for requests no longer waiting.");
    describe_counter!(JOB_CLAIMS, "Jobs taken over from dead consumers.");
    describe_counter!(
        JOB_REDELIVERIES,
        "Redelivered jobs answered from their retained reply."
    );
}
