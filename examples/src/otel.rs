//! [`OtelPropagator`]: async-mvc's [`TracePropagator`] on OpenTelemetry — the current
//! `tracing` span's OpenTelemetry context (through `tracing-opentelemetry`) as a W3C
//! `traceparent` in each broker job, and the worker's span made its child — so one trace spans
//! the web request, the queue and the worker. With the `otel` feature.

use std::collections::HashMap;

use async_mvc::cluster::TracePropagator;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// W3C Trace Context between `tracing` spans (with a `tracing-opentelemetry` layer) and the
/// broker's envelopes. Install it with
/// [`set_trace_propagator`](async_mvc::cluster::set_trace_propagator).
#[derive(Debug, Default, Clone, Copy)]
pub struct OtelPropagator;

impl TracePropagator for OtelPropagator {
    fn current(&self) -> Option<String> {
        let context = tracing::Span::current().context();
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove("traceparent")
    }

    fn attach(&self, span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(context);
    }
}
