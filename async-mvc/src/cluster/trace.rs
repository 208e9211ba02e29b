//! How a trace crosses the broker: a W3C `traceparent` rides in each request/reply job, so one
//! trace spans the web instance's request, the queue and the worker that answers it.
//!
//! The core takes no OpenTelemetry dependency: the application installs a
//! [`TracePropagator`] that reads and sets its spans' contexts (with `tracing-opentelemetry`,
//! `OpenTelemetrySpanExt::context` and `set_parent` through a `TraceContextPropagator`; the
//! demo's `otel` feature has one). Without one, nothing is sent.

use std::sync::OnceLock;

/// Reads the current trace context as a W3C `traceparent`, and makes a span a child of one:
/// the bridge between async-mvc's broker envelopes and the application's tracer (Spring's
/// Micrometer Tracing `Propagator`).
pub trait TracePropagator: Send + Sync + 'static {
    /// The current span's context as a `traceparent` header value
    /// (`00-{trace id}-{span id}-{flags}`), if there is one.
    fn current(&self) -> Option<String>;

    /// Makes `span` a child of the context in `traceparent` (what [`current`](Self::current)
    /// returned on the sending instance). A malformed value is ignored.
    fn attach(&self, span: &tracing::Span, traceparent: &str);
}

static PROPAGATOR: OnceLock<Box<dyn TracePropagator>> = OnceLock::new();

/// Installs the process's [`TracePropagator`]; `false` if one was installed already (the first
/// one stays).
pub fn set_trace_propagator(propagator: impl TracePropagator) -> bool {
    PROPAGATOR.set(Box::new(propagator)).is_ok()
}

/// The current context's `traceparent`, if a propagator is installed and gives one.
pub(super) fn current() -> Option<String> {
    PROPAGATOR.get()?.current()
}

/// The span a worker runs job `id` of `queue` in (`messaging.*` semconv fields), a child of
/// the job's `traceparent` when it carries one.
pub(super) fn job_span(queue: &str, id: &str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "async_mvc.job",
        "messaging.operation.type" = "process",
        "messaging.destination.name" = queue,
        "messaging.message.id" = id,
    );
    if let (Some(propagator), Some(traceparent)) = (PROPAGATOR.get(), traceparent) {
        propagator.attach(&span, traceparent);
    }
    span
}
