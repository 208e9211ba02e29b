//! The demo with its traces exported over OTLP/HTTP (`opentelemetry-otlp`), one trace per
//! request across instances: a web instance's request, its job on the broker and the worker
//! that answers it share a trace id (the W3C `traceparent` rides in the job).
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!   cargo run -p async-mvc-examples --features otlp --example otlp -- --role web --redis redis://127.0.0.1:6379/
//! ```
//!
//! Takes the demo's flags; the endpoint defaults to `http://127.0.0.1:4318` (a local collector).

use std::process::ExitCode;

use async_mvc_examples::{demo, otel::OtelPropagator};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

#[tokio::main]
async fn main() -> ExitCode {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4318".to_owned());
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("cannot build the OTLP exporter: {error}");
            return ExitCode::FAILURE;
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    tracing_subscriber::registry()
        .with(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,async_mvc=debug")),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("order-desk")))
        .init();
    async_mvc::cluster::set_trace_propagator(OtelPropagator);
    let code = demo::run(std::env::args().skip(1)).await;
    if let Err(error) = provider.shutdown() {
        eprintln!("cannot flush the last traces: {error}");
    }
    code
}
