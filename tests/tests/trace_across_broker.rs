//! One trace across the broker, on a real Redis: a request/reply round trip — the requester's
//! span, the job on a Redis Stream, the worker's span — is one OpenTelemetry trace, the
//! worker's span a child of the requester's, through the W3C `traceparent` the job carries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use async_mvc::{
    cluster::{set_trace_propagator, JobListener, ReplyError, ReplyingTemplate},
    DeferredResult,
};
use async_mvc_examples::{otel::OtelPropagator, redis_server::RedisServer};
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reply_round_trip_through_redis_is_one_trace() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // The only test of this binary: the subscriber and the propagator are the process's.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    assert!(set_trace_propagator(OtelPropagator));

    let broker = async_mvc_redis::RedisBroker::builder(redis.url())
        .namespace("trace")
        .connect()
        .await
        .unwrap();
    let _worker = JobListener::new(broker.clone(), "squares", "workers")
        .run(|n: u64| async move { Ok::<_, String>(n * n) });
    let template = ReplyingTemplate::new(broker, "squares");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !template.has_listeners().await.unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "the worker never marked itself alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let request = tracing::info_span!("web request");
    let answer = async {
        let reply: DeferredResult<u64, ReplyError> = template
            .send_and_receive(&12_u64, Duration::from_secs(5))
            .await;
        reply.await
    }
    .instrument(request.clone())
    .await;
    assert_eq!(answer, Some(Ok(144)));
    drop(request);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let web = spans
        .iter()
        .find(|span| span.name == "web request")
        .expect("the requester's span");
    let job = spans
        .iter()
        .find(|span| span.name == "async_mvc.job")
        .expect("the worker's span");
    assert_eq!(
        job.span_context.trace_id(),
        web.span_context.trace_id(),
        "one trace"
    );
    assert_eq!(job.parent_span_id, web.span_context.span_id());
    let attribute = |key: &str| {
        job.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute("messaging.destination.name").as_deref(),
        Some("squares")
    );
}
