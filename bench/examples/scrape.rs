//! How long a Prometheus scrape takes with many series: registers `N` request-duration series
//! (distinct routes × kinds, each a histogram with async-mvc's 20 buckets) in
//! `metrics-exporter-prometheus`, as async-mvc's metrics would, then renders the scrape `R`
//! times and prints the time per render.
//!
//! ```text
//! cargo run --release -p async-mvc-bench --features metrics --example scrape -- 10000 20
//! ```

use std::time::Instant;

use async_mvc::telemetry::{DURATION_BUCKETS, REQUEST_DURATION};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let renders: usize = args.next().map_or(Ok(20), |n| n.parse())?;
    let handle = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), DURATION_BUCKETS)?
        .install_recorder()?;
    async_mvc::telemetry::describe();
    let kinds = [
        "deferred",
        "callable",
        "task",
        "reactive",
        "sse",
        "emitter",
        "streaming",
        "sync",
    ];
    for n in 0..series {
        let route = format!("/api/resource{}/{{id}}", n / kinds.len());
        let kind = kinds[n % kinds.len()];
        metrics::histogram!(REQUEST_DURATION, "http.request.method" => "GET", "http.route" => route, "http.response.status_code" => "200", "async_mvc.kind" => kind)
            .record(0.01 * (n % 100) as f64);
    }
    handle.run_upkeep();
    let first = handle.render();
    let lines = first.lines().filter(|line| !line.starts_with('#')).count();
    let mut times = Vec::with_capacity(renders);
    for _ in 0..renders {
        let started = Instant::now();
        let text = handle.render();
        times.push(started.elapsed());
        std::hint::black_box(text);
    }
    times.sort();
    println!(
        "{series} histogram series ({lines} sample lines, {} KiB): render median {:.2} ms, max {:.2} ms over {renders} renders",
        first.len() / 1024,
        times[renders / 2].as_secs_f64() * 1e3,
        times[renders - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
