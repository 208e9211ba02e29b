//! In-process workloads under a counting allocator; the `bench` orchestrator runs one per
//! process and reads the line starting with `RESULT`.
//!
//! - `bench-inproc --workload w2b --impl I --n N`: `N` long polls (`GET /w2/{id}`, each with a
//!   timeout) driven through the router with `tower::ServiceExt::oneshot`, no sockets; live heap
//!   bytes per pending request, time to create and to complete them all.
//! - `bench-inproc --workload w4 --impl I --n SUBSCRIBERS --events E`: `E` events from one
//!   producer to `SUBSCRIBERS` SSE subscriptions (response bodies read in process); deliveries
//!   per second, first-event latency, heap bytes allocated per delivered event.

use std::{
    alloc::System,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_mvc_bench::{
    apps::{self, Impl, SSE_CAPACITY},
    clock,
};
use axum::{body::Body, http::Request, Router};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::ServiceExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Every wait of this binary gives up after this long.
const MAX_WAIT: Duration = Duration::from_secs(180);

fn live_allocations() -> i64 {
    let s = GLOBAL.stats();
    s.allocations as i64 - s.deallocations as i64
}

fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64 + s.bytes_reallocated as i64
}

fn main() {
    let mut workload = String::new();
    let mut imp = None;
    let mut n = 0usize;
    let mut events = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--workload" => workload = value,
            "--impl" => imp = Impl::parse(&value),
            "--n" => n = value.parse().unwrap_or(0),
            "--events" => events = value.parse().unwrap_or(0),
            other => {
                eprintln!("bench-inproc: unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    let Some(imp) = imp else {
        eprintln!(
            "usage: bench-inproc --workload w2b|w4 --impl baseline|async-mvc --n N [--events E]"
        );
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = match workload.as_str() {
        "w2b" => runtime.block_on(w2b(imp, n)),
        "w4" => runtime.block_on(w4(imp, n, events)),
        other => {
            eprintln!("bench-inproc: unknown workload `{other}`");
            std::process::exit(2);
        }
    };
    println!("RESULT {result}");
    // Pending work (if a wait gave up) must not hold the process.
    std::process::exit(0);
}

/// Waits until `done()` or [`MAX_WAIT`]; returns whether it became true.
async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > MAX_WAIT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn w2b(imp: Impl, n: usize) -> String {
    let (router, control) = apps::app(imp);
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let request = |i: usize| {
        Request::get(format!("/w2/{i}"))
            .body(Body::empty())
            .expect("a valid request")
    };
    // Warm up lazily initialised state (the manager, the timer wheel) outside the figure.
    warm_up(&router, &control, request(0)).await;

    let before = live_bytes();
    let allocations_before = live_allocations();
    let start = Instant::now();
    for i in 0..n {
        let router = router.clone();
        let req = request(i);
        let (done, errors) = (done.clone(), errors.clone());
        tokio::spawn(async move {
            match router.oneshot(req).await {
                Ok(response) if response.status().is_success() => {
                    if response.into_body().collect().await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        });
        if i % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let all_pending = wait_until(|| control.pending() >= n).await;
    let create_s = start.elapsed().as_secs_f64();
    let held = live_bytes();
    let allocations_held = live_allocations();
    let pending = control.pending();

    let start = Instant::now();
    control.complete_all();
    let all_done = wait_until(|| done.load(Ordering::Relaxed) >= n).await;
    let complete_s = start.elapsed().as_secs_f64();
    let missing = if all_pending && all_done {
        0
    } else {
        n.saturating_sub(done.load(Ordering::Relaxed))
    };
    format!(
        "pending={pending} bytes_per_pending={:.1} allocs_per_pending={:.2} create_s={create_s:.3} complete_s={complete_s:.3} \
         errors={}",
        (held - before) as f64 / n.max(1) as f64,
        (allocations_held - allocations_before) as f64 / n.max(1) as f64,
        errors.load(Ordering::Relaxed) + missing,
    )
}

async fn warm_up(router: &Router, control: &apps::Control, request: Request<Body>) {
    let router = router.clone();
    let task = tokio::spawn(async move {
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let _ = response.into_body().collect().await;
    });
    wait_until(|| control.pending() >= 1).await;
    control.complete_all();
    let _ = tokio::time::timeout(MAX_WAIT, task).await;
}

async fn w4(imp: Impl, subscribers: usize, events: usize) -> String {
    let (router, control) = apps::app(imp);
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let first_ns: Arc<Vec<AtomicU64>> =
        Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let last_ns = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let target = events as u64;

    for s in 0..subscribers {
        let router = router.clone();
        let (progress, first_ns, errors) = (progress.clone(), first_ns.clone(), errors.clone());
        let last_ns = last_ns.clone();
        tokio::spawn(async move {
            let request = Request::get("/w4/events")
                .body(Body::empty())
                .expect("a valid request");
            let mut body = match router.oneshot(request).await {
                Ok(response) if response.status().is_success() => response.into_body(),
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let mut seen = 0u64;
            while seen < target {
                let frame = match tokio::time::timeout(MAX_WAIT, body.frame()).await {
                    Ok(Some(Ok(frame))) => frame,
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                if let Ok(data) = frame.into_data() {
                    let k = data.windows(2).filter(|w| w == b"\n\n").count() as u64;
                    if seen == 0 && k > 0 {
                        first_ns[s].store(clock::now_ns(), Ordering::Relaxed);
                    }
                    seen += k;
                    progress[s].store(seen, Ordering::Release);
                }
            }
            last_ns.fetch_max(clock::now_ns(), Ordering::Relaxed);
        });
    }
    let subscribed = wait_until(|| control.subscribers() >= subscribers).await;

    let payloads: Vec<String> = (0..events)
        .map(|i| format!("{{\"seq\":{i},\"price\":\"101.25\",\"symbol\":\"ACME\"}}"))
        .collect();
    let allocated = |s: stats_alloc::Stats| (s.bytes_allocated, s.allocations);
    let (bytes_before, allocs_before) = allocated(GLOBAL.stats());
    let start_ns = clock::now_ns();
    let producer = {
        let (control, progress) = (control.clone(), progress.clone());
        tokio::spawn(async move {
            let window = (SSE_CAPACITY / 2) as u64;
            let deadline = Instant::now() + MAX_WAIT;
            let mut min_seen = 0u64;
            for (i, payload) in payloads.iter().enumerate() {
                let i = i as u64;
                while i >= min_seen + window {
                    min_seen = progress
                        .iter()
                        .map(|p| p.load(Ordering::Acquire))
                        .min()
                        .unwrap_or(0);
                    if i >= min_seen + window {
                        if Instant::now() > deadline {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                control.publish(payload);
            }
        })
    };
    let _ = tokio::time::timeout(MAX_WAIT, producer).await;
    let delivered_all = wait_until(|| {
        progress.iter().all(|p| p.load(Ordering::Acquire) >= target)
            || errors.load(Ordering::Relaxed) > 0
    })
    .await;
    let end_ns = match last_ns.load(Ordering::Relaxed) {
        0 => clock::now_ns(),
        last => last,
    };
    let elapsed_s = end_ns.saturating_sub(start_ns).max(1) as f64 / 1e9;
    let (bytes_after, allocs_after) = allocated(GLOBAL.stats());
    let deliveries: u64 = progress
        .iter()
        .map(|p| p.load(Ordering::Acquire).min(target))
        .sum();
    let mut first = Histogram::<u64>::new(3).expect("a histogram");
    for ns in first_ns
        .iter()
        .map(|f| f.load(Ordering::Relaxed))
        .filter(|&f| f > 0)
    {
        let _ = first.record(ns.saturating_sub(start_ns) / 1000);
    }
    let lost = subscribers as u64 * target - deliveries;
    format!(
        "subscribed={} deliveries={deliveries} deliveries_per_s={:.0} first_p50_us={} first_p99_us={} \
         first_max_us={} bytes_per_delivery={:.1} allocs_per_delivery={:.3} errors={}",
        subscribed as u8,
        deliveries as f64 / elapsed_s,
        first.value_at_quantile(0.5),
        first.value_at_quantile(0.99),
        first.max(),
        (bytes_after - bytes_before) as f64 / deliveries.max(1) as f64,
        (allocs_after - allocs_before) as f64 / deliveries.max(1) as f64,
        errors.load(Ordering::Relaxed) as u64 + if delivered_all { 0 } else { lost },
    )
}
