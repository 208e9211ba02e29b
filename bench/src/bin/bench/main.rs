//! The one benchmark command: `cargo run --release -p async-mvc-bench --bin bench`.
//!
//! Runs every workload against the baseline (hand-written axum) and async-mvc, on loopback
//! only, and prints a table of medians with the ratio async-mvc / baseline and the target.
//!
//! Flags: `--smoke` (tiny sizes, a few seconds each: proves the harness works, asserts no
//! timing), `--runs N` (default 3; medians are taken), `--subscribers N` (W4, default 1,000),
//! `--only W1,W3` (a subset).
//!
//! W1s, W2s, W7 and W8 compare serve paths, not implementations: async-mvc's app under
//! `axum::serve` (the "baseline" column) and under `async_mvc::serve`; W8m compares
//! allocators: `async_mvc::serve` on the system allocator ("baseline") and on mimalloc; W8j
//! the same with jemalloc.
//!
//! Socket workloads (W1, W2, W3, W3b — W3 opened as a burst —, W5, W1s, W2s, W7, W8, W8m) run against a fresh `bench-server` process per run and
//! implementation; in-process ones (W2b, W4) in a fresh `bench-inproc` process, which counts
//! allocations. The load generator is this process: a multi-threaded tokio runtime whose sockets
//! are spread over 127.0.0.1–127.0.0.4, with its open-file limit raised to the hard limit.

mod load;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_mvc_bench::{apps::Impl, apps::W3_TIMEOUT, clock, limits};

/// The figures of one run of one workload for one implementation.
type Figures = BTreeMap<&'static str, f64>;

#[derive(Debug, Clone)]
struct Options {
    smoke: bool,
    runs: usize,
    subscribers: usize,
    only: Option<Vec<String>>,
}

/// Sizes of every workload.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    w1_warmup: Duration,
    w1_measure: Duration,
    w2_sockets: usize,
    w2b_requests: usize,
    w3_sockets: usize,
    w4_subscribers: usize,
    w4_events: usize,
    w5_warmup: Duration,
    w5_measure: Duration,
    w7_stalled: usize,
    w7_requests: usize,
    w8_subscribers: usize,
    w8_rate: u64,
    w8_seconds: u64,
    /// How long after the 3 s "after" figure W8 waits for its "settled" one.
    w8_settle: Duration,
    w6_pending: usize,
    w6_subscribers: usize,
    w6_events: usize,
    w6_every_ms: u64,
}

impl Sizes {
    fn new(options: &Options) -> Sizes {
        if options.smoke {
            Sizes {
                w1_warmup: Duration::from_millis(300),
                w1_measure: Duration::from_secs(1),
                w2_sockets: 200,
                w2b_requests: 10_000,
                w3_sockets: 200,
                w4_subscribers: 20,
                w4_events: 20,
                w5_warmup: Duration::from_millis(300),
                w5_measure: Duration::from_secs(2),
                w7_stalled: 200,
                w7_requests: 20,
                w8_subscribers: 20,
                w8_rate: 1_000,
                w8_seconds: 2,
                w8_settle: Duration::from_secs(1),
                w6_pending: 200,
                w6_subscribers: 30,
                w6_events: 20,
                w6_every_ms: 10,
            }
        } else {
            let subscribers = options.subscribers.max(1);
            Sizes {
                w1_warmup: Duration::from_secs(1),
                w1_measure: Duration::from_secs(8),
                w2_sockets: 15_000,
                w2b_requests: 1_000_000,
                w3_sockets: 15_000,
                w4_subscribers: subscribers,
                // About 2 million deliveries per run.
                w4_events: (2_000_000 / subscribers).clamp(20, 20_000),
                w5_warmup: Duration::from_secs(1),
                w5_measure: Duration::from_secs(8),
                w7_stalled: 19_000,
                w7_requests: 500,
                w8_subscribers: 2_000,
                w8_rate: 8_000,
                w8_seconds: 60,
                w8_settle: Duration::from_secs(12),
                w6_pending: 15_000,
                w6_subscribers: 3_000,
                w6_events: 200,
                w6_every_ms: 50,
            }
        }
    }
}

/// W2's background task completes this many long polls per millisecond (10,000/s): a steady
/// stream, so the latency is that of one completion, not of a queue of 15,000.
const W2_COMPLETIONS_PER_MS: usize = 10;

/// W3 opens its long polls at this rate (15,000 in 3 s), so the timeouts fire as a stream
/// and measure the timer, not a CPU saturated by thousands of simultaneous writes.
const W3_OPENS_PER_SECOND: u64 = 5_000;

const WORKLOADS: [&str; 19] = [
    "W1", "W2", "W2b", "W3", "W3b", "W4", "W5", "W1s", "W2s", "W7", "W8", "W8m", "W8j", "W6a",
    "W6b", "W6b2", "W6c1", "W6c64", "W6c512",
];

/// W6b2's subscriptions per HTTP/2 connection (100 connections for 3,000 subscribers would be
/// 30; hyper's server allows 200 streams per connection).
const W6B2_STREAMS_PER_CONNECTION: usize = 100;

fn parse_options() -> Options {
    let mut options = Options {
        smoke: false,
        runs: 3,
        subscribers: 1_000,
        only: None,
    };
    let mut runs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()),
            "--subscribers" => {
                options.subscribers = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000)
            }
            "--only" => {
                options.only = args.next().map(|list| {
                    list.split(',')
                        .map(|w| w.trim().to_ascii_uppercase())
                        .collect()
                })
            }
            "-h" | "--help" => {
                println!(
                    "usage: bench [--smoke] [--runs N] [--subscribers N] [--only W1,W2,W2b,W3,W3b,W4,W5,W1s,W2s,W7,W8,W8m,W8j,W6a,W6b,W6b2,W6c1,W6c64,W6c512]"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("bench: unknown argument `{other}` (try --help)");
                std::process::exit(2);
            }
        }
    }
    options.runs = runs
        .unwrap_or(if options.smoke { 1 } else { 3 })
        .clamp(1, 50);
    options
}

fn main() {
    let options = parse_options();
    let sizes = Sizes::new(&options);
    let fd_limit = limits::raise_fd_limit();
    let binaries = match Binaries::locate() {
        Ok(binaries) => binaries,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let load_before = load_average();
    let started = Instant::now();
    println!(
        "async-mvc benchmarks: {} run(s) per workload{}; open-file limit {fd_limit}; load average {load_before}",
        options.runs,
        if options.smoke { ", smoke sizes" } else { "" },
    );

    let selected: Vec<&str> = WORKLOADS
        .iter()
        .copied()
        .filter(|w| {
            options
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o.eq_ignore_ascii_case(w)))
        })
        .collect();
    // results[workload][impl] = one `Figures` per run.
    let mut results: BTreeMap<&str, BTreeMap<&str, Vec<Figures>>> = BTreeMap::new();
    let mut failures = Vec::new();
    for &workload in &selected {
        for run in 0..options.runs {
            // Alternate which implementation goes first.
            let order = if run % 2 == 0 {
                Impl::ALL
            } else {
                [Impl::AsyncMvc, Impl::Baseline]
            };
            for imp in order {
                let launch = Launch::new(&binaries, workload, imp);
                let outcome = match workload {
                    "W1" | "W1s" => runtime.block_on(w1(&launch, &sizes)),
                    "W2" | "W2s" => runtime.block_on(w2(&launch, &sizes)),
                    "W2b" => binaries.inproc(&[
                        "--workload",
                        "w2b",
                        "--impl",
                        imp.name(),
                        "--n",
                        &sizes.w2b_requests.to_string(),
                    ]),
                    "W3" => runtime.block_on(w3(&launch, &sizes, Some(W3_OPENS_PER_SECOND))),
                    "W3b" => runtime.block_on(w3(&launch, &sizes, None)),
                    "W4" => binaries.inproc(&[
                        "--workload",
                        "w4",
                        "--impl",
                        imp.name(),
                        "--n",
                        &sizes.w4_subscribers.to_string(),
                        "--events",
                        &sizes.w4_events.to_string(),
                    ]),
                    "W7" => runtime.block_on(w7(&launch, &sizes)),
                    "W8" | "W8m" | "W8j" => runtime.block_on(w8(&launch, &sizes)),
                    "W6a" => runtime.block_on(w6a(&binaries, imp, &sizes)),
                    "W6b" => runtime.block_on(w6b(&binaries, imp, &sizes, None)),
                    "W6c1" => runtime.block_on(w6c(&binaries, imp, &sizes, 1)),
                    "W6c64" => runtime.block_on(w6c(&binaries, imp, &sizes, 64)),
                    "W6c512" => runtime.block_on(w6c(&binaries, imp, &sizes, 512)),
                    "W6b2" => runtime.block_on(w6b(
                        &binaries,
                        imp,
                        &sizes,
                        Some(W6B2_STREAMS_PER_CONNECTION),
                    )),
                    _ => runtime.block_on(w5(&launch, &sizes)),
                };
                match outcome {
                    Ok(figures) => {
                        println!(
                            "  {workload} run {}/{} {:<9} {}",
                            run + 1,
                            options.runs,
                            imp.name(),
                            render_figures(&figures)
                        );
                        results
                            .entry(workload)
                            .or_default()
                            .entry(imp.name())
                            .or_default()
                            .push(figures);
                    }
                    Err(message) => {
                        println!(
                            "  {workload} run {} {}: FAILED: {message}",
                            run + 1,
                            imp.name()
                        );
                        failures.push(format!("{workload} {}: {message}", imp.name()));
                    }
                }
            }
        }
    }

    let load_after = load_average();
    println!();
    println!(
        "Medians of {} run(s); ratio = async-mvc / baseline (or difference where the target is one). \
         Load average before {load_before}, after {load_after}; {:.0} s in all.",
        options.runs,
        started.elapsed().as_secs_f64()
    );
    if options.smoke {
        println!("Smoke sizes: the figures prove the harness runs; targets are not judged.");
    }
    print_table(&results, &sizes, options.smoke);
    if !failures.is_empty() {
        eprintln!("bench: {} workload run(s) failed:", failures.len());
        for failure in &failures {
            eprintln!("  {failure}");
        }
        std::process::exit(1);
    }
}

fn render_figures(figures: &Figures) -> String {
    figures
        .iter()
        .map(|(k, v)| format!("{k}={}", fmt_value(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// The sibling binaries this command starts.
#[derive(Debug)]
struct Binaries {
    server: PathBuf,
    server_mimalloc: PathBuf,
    server_jemalloc: PathBuf,
    inproc: PathBuf,
}

impl Binaries {
    /// Finds `bench-server` and `bench-inproc` next to this executable, building them first
    /// (`cargo run --bin bench` builds only `bench`).
    fn locate() -> Result<Binaries, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let dir = exe.parent().ok_or("no executable directory")?;
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        if manifest.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build
                .arg("build")
                .arg("--quiet")
                .arg("--manifest-path")
                .arg(&manifest)
                .args([
                    "-p",
                    "async-mvc-bench",
                    "--bin",
                    "bench-server",
                    "--bin",
                    "bench-server-mimalloc",
                    "--bin",
                    "bench-server-jemalloc",
                    "--bin",
                    "bench-inproc",
                ]);
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            match build.status() {
                Ok(status) if status.success() => {}
                Ok(status) => eprintln!("bench: building the sibling binaries failed ({status})"),
                Err(e) => {
                    eprintln!("bench: could not run cargo to build the sibling binaries: {e}")
                }
            }
        }
        let server = dir.join("bench-server");
        let server_mimalloc = dir.join("bench-server-mimalloc");
        let server_jemalloc = dir.join("bench-server-jemalloc");
        let inproc = dir.join("bench-inproc");
        for path in [&server, &server_mimalloc, &server_jemalloc, &inproc] {
            if !path.exists() {
                return Err(format!("{} is missing", path.display()));
            }
        }
        Ok(Binaries {
            server,
            server_mimalloc,
            server_jemalloc,
            inproc,
        })
    }

    /// Runs `bench-inproc` with `args` and parses its `RESULT key=value …` line.
    fn inproc(&self, args: &[&str]) -> Result<Figures, String> {
        let output = Command::new(&self.inproc)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("bench-inproc: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .ok_or_else(|| format!("bench-inproc printed no result ({})", output.status))?;
        let mut figures = Figures::new();
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=').ok_or("malformed result")?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("malformed value {pair}"))?;
            figures.insert(intern(key), value);
        }
        Ok(figures)
    }
}

/// Result keys as `&'static str` (a closed set, so leaking is bounded).
fn intern(key: &str) -> &'static str {
    const KEYS: [&str; 17] = [
        "pending",
        "allocs_per_pending",
        "bytes_per_pending",
        "create_s",
        "complete_s",
        "errors",
        "subscribed",
        "deliveries",
        "deliveries_per_s",
        "first_p50_us",
        "first_p99_us",
        "first_max_us",
        "bytes_per_delivery",
        "allocs_per_delivery",
        "req_s",
        "p50_us",
        "p99_us",
    ];
    KEYS.iter()
        .find(|k| **k == key)
        .copied()
        .unwrap_or("unknown")
}

/// How to start the server of one workload's column: which binary, which arguments.
#[derive(Debug, Clone)]
struct Launch {
    binary: PathBuf,
    args: Vec<&'static str>,
}

impl Launch {
    /// The server for `workload` in `slot`'s column: `slot`'s implementation for most; for
    /// W1s, W2s, W7, W8 async-mvc's app under `axum::serve` (baseline) or `async_mvc::serve`;
    /// for W8m and W8j `async_mvc::serve` on the system allocator (baseline) or mimalloc,
    /// jemalloc.
    fn new(binaries: &Binaries, workload: &str, slot: Impl) -> Launch {
        let baseline = slot == Impl::Baseline;
        let (binary, args) = match workload {
            "W1s" | "W2s" | "W7" | "W8" => (
                &binaries.server,
                vec![
                    "--impl",
                    "async-mvc",
                    "--serve",
                    if baseline { "axum" } else { "async-mvc" },
                ],
            ),
            "W8m" | "W8j" => (
                if baseline {
                    &binaries.server
                } else if workload == "W8m" {
                    &binaries.server_mimalloc
                } else {
                    &binaries.server_jemalloc
                },
                vec!["--impl", "async-mvc", "--serve", "async-mvc"],
            ),
            _ => (&binaries.server, vec!["--impl", slot.name()]),
        };
        Launch {
            binary: binary.clone(),
            args,
        }
    }
}

/// A `bench-server` child process; killed on drop.
#[derive(Debug)]
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(launch: &Launch) -> Result<Server, String> {
        let mut child = Command::new(&launch.binary)
            .args(&launch.args)
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("bench-server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Server { child, port }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "bench-server did not print its port (got {line:?})"
                ))
            }
        }
    }

    fn rss(&self) -> f64 {
        limits::rss_bytes(self.child.id()).map_or(f64::NAN, |b| b as f64)
    }

    /// The CPU seconds the server has used so far.
    fn cpu(&self) -> f64 {
        limits::cpu_seconds(self.child.id()).unwrap_or(f64::NAN)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Socket workloads
// ---------------------------------------------------------------------------------------------

async fn w1(launch: &Launch, sizes: &Sizes) -> Result<Figures, String> {
    let server = Server::start(launch)?;
    let stats = load::closed_loop(server.port, "/w1", 64, sizes.w1_warmup, sizes.w1_measure).await;
    Ok(loop_figures(&stats))
}

async fn w5(launch: &Launch, sizes: &Sizes) -> Result<Figures, String> {
    let server = Server::start(launch)?;
    let stats = load::closed_loop(server.port, "/w5", 200, sizes.w5_warmup, sizes.w5_measure).await;
    let mut figures = loop_figures(&stats);
    figures.insert("503s", stats.unavailable as f64);
    Ok(figures)
}

fn loop_figures(stats: &load::LoopStats) -> Figures {
    Figures::from([
        ("req_s", stats.ok as f64 / stats.seconds),
        ("p50_us", stats.latency_us.value_at_quantile(0.5) as f64),
        ("p99_us", stats.latency_us.value_at_quantile(0.99) as f64),
        ("errors", stats.errors as f64),
    ])
}

/// Waits (bounded) until the server holds `n` long polls.
async fn wait_for_pending(port: u16, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + load::RESPONSE_DEADLINE;
    let mut last = 0;
    while Instant::now() < deadline {
        if let Ok(response) = load::raw_request(0, port, "GET", "/w2/count", None).await {
            last = String::from_utf8_lossy(&response.body)
                .parse()
                .unwrap_or(0usize);
            if last >= n {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("only {last} of {n} long polls arrived in time"))
}

/// Completion latencies (µs, receive − the ns each `200` body names as its completion time)
/// of long polls, and how many failed or named no earlier time.
fn completion_latency<E>(
    results: impl IntoIterator<Item = Result<load::RawResponse, E>>,
) -> (hdrhistogram::Histogram<u64>, u64) {
    let mut latency = load::histogram();
    let mut errors = 0;
    for result in results {
        match result {
            Ok(response) if response.status == 200 => {
                let set_ns: u64 = String::from_utf8_lossy(&response.body)
                    .parse()
                    .unwrap_or(u64::MAX);
                match response.received_ns.checked_sub(set_ns) {
                    Some(ns) => {
                        let _ = latency.record((ns / 1000).max(1));
                    }
                    None => errors += 1,
                }
            }
            _ => errors += 1,
        }
    }
    (latency, errors)
}

async fn w2(launch: &Launch, sizes: &Sizes) -> Result<Figures, String> {
    let n = sizes.w2_sockets;
    let server = Server::start(launch)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_fresh = server.rss();
    let tasks = load::open_many(n, server.port, |i| format!("/w2/{i}"), None);
    let held = wait_for_pending(server.port, n).await;
    // Let the last connections settle before reading memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_held = server.rss();
    let complete = format!("/w2/complete?per_ms={W2_COMPLETIONS_PER_MS}");
    if let Err(e) = load::raw_request(1, server.port, "POST", &complete, None).await {
        return Err(format!("POST /w2/complete: {e}"));
    }
    let (latency, failed) = completion_latency(load::join_all(tasks).await);
    let errors = failed + u64::from(held.is_err());
    Ok(Figures::from([
        ("rss_per_pending_b", (rss_held - rss_fresh) / n as f64),
        ("rss_held_mib", rss_held / (1024.0 * 1024.0)),
        ("p50_us", latency.value_at_quantile(0.5) as f64),
        ("p99_us", latency.value_at_quantile(0.99) as f64),
        ("max_us", latency.max() as f64),
        ("errors", errors as f64),
    ]))
}

/// W3: `sizes.w3_sockets` long polls that time out after [`W3_TIMEOUT`], opened at
/// `opens_per_second` — or, for W3b, as a burst (as fast as the client's concurrent connects
/// allow), so that their timeouts all fire at about the same moment.
async fn w3(
    launch: &Launch,
    sizes: &Sizes,
    opens_per_second: Option<u64>,
) -> Result<Figures, String> {
    let n = sizes.w3_sockets;
    let server = Server::start(launch)?;
    let tasks = load::open_many(n, server.port, |_| "/w3".to_owned(), opens_per_second);
    let results = load::join_all(tasks).await;
    let timeout_ns = W3_TIMEOUT.as_nanos() as u64;
    let mut lateness = load::histogram();
    let mut errors = 0u64;
    let mut early = 0u64;
    for result in results {
        match result {
            Ok(response) if response.status == 503 => {
                let from = response.started_ns.unwrap_or(response.sent_ns);
                let waited = response.received_ns.saturating_sub(from);
                if waited < timeout_ns {
                    early += 1;
                }
                let _ = lateness.record((waited.saturating_sub(timeout_ns) / 1000).max(1));
            }
            _ => errors += 1,
        }
    }
    Ok(Figures::from([
        ("late_p50_us", lateness.value_at_quantile(0.5) as f64),
        ("late_p99_us", lateness.value_at_quantile(0.99) as f64),
        ("late_max_us", lateness.max() as f64),
        ("early", early as f64),
        ("errors", errors as f64),
    ]))
}

/// W7: `sizes.w7_stalled` connections that send half a request head and stall, then a
/// legitimate client issuing `sizes.w7_requests` requests, each on a new connection: its
/// latency (connect to last byte) and errors (no answer within 2 s).
async fn w7(launch: &Launch, sizes: &Sizes) -> Result<Figures, String> {
    let server = Server::start(launch)?;
    let (stalled, refused) = load::open_stalled(sizes.w7_stalled, server.port).await;
    let (latency, errors) = load::fresh_connection_requests(
        server.port,
        "/w1",
        sizes.w7_requests,
        Duration::from_secs(2),
    )
    .await;
    let still_open = load::count_open(&stalled);
    drop(stalled);
    Ok(Figures::from([
        ("stalled", (sizes.w7_stalled - refused) as f64),
        ("stalled_left", still_open as f64),
        ("p50_us", latency.value_at_quantile(0.5) as f64),
        ("p99_us", latency.value_at_quantile(0.99) as f64),
        ("max_us", latency.max() as f64),
        ("errors", errors as f64),
    ]))
}

/// `GET /w8/stats`: in flight, subscribers, slow consumers.
async fn w8_stats(port: u16) -> Result<[f64; 3], String> {
    let response = load::raw_request(0, port, "GET", "/w8/stats", None)
        .await
        .map_err(|e| format!("GET /w8/stats: {e}"))?;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let mut numbers = text
        .split_whitespace()
        .map(|n| n.parse().unwrap_or(f64::NAN));
    Ok([(); 3].map(|()| numbers.next().unwrap_or(f64::NAN)))
}

/// W8: `sizes.w8_subscribers` SSE subscribers that never read (4 KiB receive buffers) while
/// events are published at `sizes.w8_rate`/s for `sizes.w8_seconds` s; RSS before, at its
/// peak, 3 s and 15 s after the subscribers closed; in flight at the end of publishing and
/// after.
async fn w8(launch: &Launch, sizes: &Sizes) -> Result<Figures, String> {
    let n = sizes.w8_subscribers;
    let server = Server::start(launch)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_fresh = server.rss();
    let subscribers = load::open_non_reading(n, server.port, "/w8/events").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let [_, subscribed, _] = w8_stats(server.port).await?;
        if subscribed as usize >= subscribers.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {subscribed} of {n} subscribed"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = format!(
        "/w8/publish?rate={}&seconds={}",
        sizes.w8_rate, sizes.w8_seconds
    );
    load::raw_request(1, server.port, "POST", &publish, None)
        .await
        .map_err(|e| format!("POST {publish}: {e}"))?;
    let mut rss_peak = server.rss();
    let end = Instant::now() + Duration::from_secs(sizes.w8_seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss_peak = rss_peak.max(server.rss());
    }
    let [in_flight_end, _, slow_consumers] = w8_stats(server.port).await?;
    drop(subscribers);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = server.rss();
    let [in_flight_after, _, _] = w8_stats(server.port).await?;
    tokio::time::sleep(sizes.w8_settle).await;
    let rss_settled = server.rss();
    let per = |rss: f64| (rss - rss_fresh) / n as f64;
    Ok(Figures::from([
        ("rss_fresh_mib", rss_fresh / (1024.0 * 1024.0)),
        ("rss_peak_mib", rss_peak / (1024.0 * 1024.0)),
        ("rss_after_mib", rss_after / (1024.0 * 1024.0)),
        ("peak_per_reader_b", per(rss_peak)),
        ("after_per_reader_b", per(rss_after)),
        ("rss_settled_mib", rss_settled / (1024.0 * 1024.0)),
        ("settled_per_reader_b", per(rss_settled)),
        ("in_flight_end", in_flight_end),
        ("in_flight_after", in_flight_after),
        ("slow_consumers", slow_consumers),
    ]))
}

/// A `redis-server` for W6, on a free loopback port, persistence off; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--maxclients", "10000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server (apt-get install redis-server): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not start".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Redis { child, port })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// W6's servers: the baseline is one process on an in-memory broker; async-mvc is three
/// processes on one Redis. The Redis (if any) is returned to be kept alive.
fn w6_servers(
    binaries: &Binaries,
    slot: Impl,
    http2: bool,
) -> Result<(Option<Redis>, Vec<Server>), String> {
    let launch = |cluster: String| {
        let mut args = vec!["--impl", "async-mvc", "--cluster"];
        args.push(Box::leak(cluster.into_boxed_str()));
        if http2 {
            // h2c with prior knowledge is `async_mvc::serve`'s.
            args.extend(["--serve", "async-mvc"]);
        }
        Launch {
            binary: binaries.server.clone(),
            args,
        }
    };
    if slot == Impl::Baseline {
        return Ok((None, vec![Server::start(&launch("memory".to_owned()))?]));
    }
    let redis = Redis::start()?;
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let servers = (0..3)
        .map(|_| Server::start(&launch(url.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Some(redis), servers))
}

/// The sum of `GET path` (a number) over `servers`.
async fn sum_of(servers: &[&Server], path: &str) -> usize {
    let mut sum = 0;
    for server in servers {
        if let Ok(response) = load::raw_request(0, server.port, "GET", path, None).await {
            sum += String::from_utf8_lossy(&response.body)
                .parse()
                .unwrap_or(0usize);
        }
    }
    sum
}

/// W6a: `sizes.w6_pending` long polls on a `DeferredResultRegistry`, completed at 10,000/s by
/// a task on another instance (on the baseline's one instance, by its own task): completion
/// latency and RSS per pending key.
async fn w6a(binaries: &Binaries, slot: Impl, sizes: &Sizes) -> Result<Figures, String> {
    let n = sizes.w6_pending;
    let (_redis, servers) = w6_servers(binaries, slot, false)?;
    // The last server completes; the others hold (the baseline's one does both).
    let (completer, holders): (&Server, Vec<&Server>) = match servers.as_slice() {
        [one] => (one, vec![one]),
        [first, rest @ ..] => (first, rest.iter().collect()),
        [] => return Err("no server".to_owned()),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh: f64 = holders.iter().map(|server| server.rss()).sum();
    let share = holders.len();
    let mut tasks = Vec::new();
    for (h, holder) in holders.iter().enumerate() {
        let count = n / share + usize::from(h < n % share);
        tasks.extend(load::open_many(
            count,
            holder.port,
            move |i| format!("/w6/wait/{}", i * share + h),
            None,
        ));
    }
    let deadline = Instant::now() + load::RESPONSE_DEADLINE;
    let mut held = 0;
    while held < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = sum_of(&holders, "/w6/count").await;
    }
    if held < n {
        return Err(format!("only {held} of {n} long polls arrived"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_held: f64 = holders.iter().map(|server| server.rss()).sum();
    let complete = format!("/w6/complete?n={n}&per_ms={W2_COMPLETIONS_PER_MS}");
    load::raw_request(1, completer.port, "POST", &complete, None)
        .await
        .map_err(|e| format!("POST /w6/complete: {e}"))?;
    let (latency, errors) = completion_latency(load::join_all(tasks).await);
    Ok(Figures::from([
        ("rss_per_pending_b", (rss_held - fresh) / n as f64),
        ("p50_us", latency.value_at_quantile(0.5) as f64),
        ("p99_us", latency.value_at_quantile(0.99) as f64),
        ("max_us", latency.max() as f64),
        ("errors", errors as f64),
    ]))
}

/// W6b: `sizes.w6_subscribers` SSE subscribers spread over the instances, one publisher on
/// the first sending `sizes.w6_events` events: deliveries per second and publish-to-receive
/// latency. Each subscriber has its own HTTP/1.1 connection, or (W6b2) `http2` of them share
/// each HTTP/2 connection.
async fn w6b(
    binaries: &Binaries,
    slot: Impl,
    sizes: &Sizes,
    http2: Option<usize>,
) -> Result<Figures, String> {
    let (n, events) = (sizes.w6_subscribers, sizes.w6_events);
    let (_redis, servers) = w6_servers(binaries, slot, http2.is_some())?;
    let ports: Vec<u16> = servers.iter().map(|server| server.port).collect();
    let (readers, refused) = match http2 {
        None => load::sse_readers(n, &ports, "/w6/events", events).await,
        Some(per_connection) => {
            load::sse_readers_h2(n, &ports, "/w6/events", events, per_connection).await
        }
    };
    if refused > 0 {
        return Err(format!("{refused} of {n} subscribers could not connect"));
    }
    let all: Vec<&Server> = servers.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sum_of(&all, "/w6/subscribers").await < n {
        if Instant::now() > deadline {
            return Err("the subscribers did not all subscribe".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = format!("/w6/publish?n={events}&every_ms={}", sizes.w6_every_ms);
    let cpu_before: f64 = servers.iter().map(Server::cpu).sum();
    let client_before = limits::cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
    let started = Instant::now();
    load::raw_request(1, ports[0], "POST", &publish, None)
        .await
        .map_err(|e| format!("POST /w6/publish: {e}"))?;
    let limit = Duration::from_millis(sizes.w6_every_ms * events as u64) + Duration::from_secs(20);
    let (latency, delivered, last_ns) = load::join_sse_readers(readers, limit).await;
    let server_cpu = servers.iter().map(Server::cpu).sum::<f64>() - cpu_before;
    let client_cpu = limits::cpu_seconds(std::process::id()).unwrap_or(f64::NAN) - client_before;
    let expected = (n * events) as u64;
    let first_ns = clock::now_ns().saturating_sub(started.elapsed().as_nanos() as u64);
    let seconds = (last_ns.saturating_sub(first_ns) as f64 / 1e9).max(1e-3);
    Ok(Figures::from([
        ("deliveries_per_s", delivered as f64 / seconds),
        (
            "server_cpu_us",
            server_cpu * 1e6 / (delivered as f64).max(1.0),
        ),
        (
            "client_cpu_us",
            client_cpu * 1e6 / (delivered as f64).max(1.0),
        ),
        ("p50_us", latency.value_at_quantile(0.5) as f64),
        ("p99_us", latency.value_at_quantile(0.99) as f64),
        ("max_us", latency.max() as f64),
        ("errors", expected.saturating_sub(delivered) as f64),
    ]))
}

/// W6c: request/reply round trips at `concurrency` requests in flight (closed loop, one
/// connection each). Baseline: a `WebAsyncTask` in one process. async-mvc: a web process's
/// `send_and_receive` through Redis to a worker process's `JobListener`.
async fn w6c(
    binaries: &Binaries,
    slot: Impl,
    sizes: &Sizes,
    concurrency: usize,
) -> Result<Figures, String> {
    let (_redis, servers, path) = if slot == Impl::Baseline {
        let launch = Launch {
            binary: binaries.server.clone(),
            args: vec!["--impl", "async-mvc", "--cluster", "memory"],
        };
        (None, vec![Server::start(&launch)?], "/w6/task/7")
    } else {
        let redis = Redis::start()?;
        let url: &'static str =
            Box::leak(format!("redis://127.0.0.1:{}/", redis.port).into_boxed_str());
        let web = Launch {
            binary: binaries.server.clone(),
            args: vec!["--impl", "async-mvc", "--cluster", url],
        };
        let worker = Launch {
            binary: binaries.server.clone(),
            args: vec!["--impl", "async-mvc", "--cluster", url, "--worker"],
        };
        let servers = vec![Server::start(&web)?, Server::start(&worker)?];
        (Some(redis), servers, "/w6/rr/7")
    };
    // The worker marks itself alive within a second of starting.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = load::raw_request(0, servers[0].port, "GET", path, None).await;
        if probe.is_ok_and(|response| response.status == 200) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("GET {path} never answered 200"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = load::closed_loop(
        servers[0].port,
        path,
        concurrency,
        sizes.w1_warmup,
        sizes.w1_measure,
    )
    .await;
    Ok(loop_figures(&stats))
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// How a figure is judged.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// No target: informational.
    None,
    /// async-mvc / baseline ≥ x.
    RatioAtLeast(f64),
    /// async-mvc / baseline ≤ x.
    RatioAtMost(f64),
    /// async-mvc − baseline ≤ x.
    DiffAtMost(f64),
    /// async-mvc ≤ x.
    AtMost(f64),
    /// async-mvc ≥ x, and ≥ ratio × baseline.
    AtLeastAndRatio(f64, f64),
}

struct Row {
    workload: &'static str,
    key: &'static str,
    label: String,
    target: Target,
    target_text: String,
}

fn rows(sizes: &Sizes) -> Vec<Row> {
    let row = |workload, key, label: &str, target, target_text: &str| Row {
        workload,
        key,
        label: label.to_owned(),
        target,
        target_text: target_text.to_owned(),
    };
    let w4 = format!(
        "W4 ({} subs × {} ev)",
        sizes.w4_subscribers, sizes.w4_events
    );
    let w4: &'static str = Box::leak(w4.into_boxed_str());
    vec![
        row(
            "W1",
            "req_s",
            "req/s",
            Target::RatioAtLeast(0.95),
            "≥ 0.95×",
        ),
        row("W1", "p50_us", "p50 µs", Target::None, ""),
        row("W1", "p99_us", "p99 µs", Target::RatioAtMost(1.1), "≤ 1.1×"),
        row("W1", "errors", "errors", Target::None, ""),
        row(
            "W2",
            "rss_per_pending_b",
            "RSS B / pending",
            Target::DiffAtMost(1024.0),
            "≤ base + 1 KiB",
        ),
        row("W2", "rss_held_mib", "RSS at hold MiB", Target::None, ""),
        row("W2", "p50_us", "completion p50 µs", Target::None, ""),
        row(
            "W2",
            "p99_us",
            "completion p99 µs",
            Target::AtMost(5000.0),
            "≤ 5,000",
        ),
        row("W2", "max_us", "completion max µs", Target::None, ""),
        row("W2", "errors", "errors", Target::AtMost(0.0), "0"),
        row(
            "W2b",
            "bytes_per_pending",
            "heap B / pending",
            Target::DiffAtMost(1024.0),
            "lib ≤ 1 KiB over base",
        ),
        row(
            "W2b",
            "allocs_per_pending",
            "live allocations / pending",
            Target::None,
            "",
        ),
        row("W2b", "create_s", "create all s", Target::None, ""),
        row("W2b", "complete_s", "complete all s", Target::None, ""),
        row("W2b", "errors", "errors", Target::AtMost(0.0), "0"),
        row("W3", "late_p50_us", "late p50 µs", Target::None, ""),
        row(
            "W3",
            "late_p99_us",
            "late p99 µs",
            Target::AtMost(10_000.0),
            "≤ 10,000",
        ),
        row("W3", "late_max_us", "late max µs", Target::None, ""),
        row("W3", "early", "early", Target::AtMost(0.0), "0"),
        row("W3", "errors", "errors", Target::AtMost(0.0), "0"),
        row("W3b", "late_p50_us", "burst: late p50 µs", Target::None, ""),
        row(
            "W3b",
            "late_p99_us",
            "burst: late p99 µs",
            Target::RatioAtMost(1.1),
            "≤ 1.1×",
        ),
        row("W3b", "late_max_us", "burst: late max µs", Target::None, ""),
        row("W3b", "early", "burst: early", Target::AtMost(0.0), "0"),
        row("W3b", "errors", "burst: errors", Target::AtMost(0.0), "0"),
        row(
            w4,
            "deliveries_per_s",
            "deliveries/s",
            Target::AtLeastAndRatio(1_000_000.0, 0.9),
            "≥ 0.9× and ≥ 1M",
        ),
        row(w4, "first_p50_us", "first event p50 µs", Target::None, ""),
        row(w4, "first_p99_us", "first event p99 µs", Target::None, ""),
        row(
            w4,
            "bytes_per_delivery",
            "heap B alloc / delivery",
            Target::None,
            "",
        ),
        row(
            w4,
            "allocs_per_delivery",
            "allocs / delivery",
            Target::None,
            "",
        ),
        row(w4, "errors", "errors", Target::AtMost(0.0), "0"),
        row("W5", "req_s", "req/s", Target::None, ""),
        row("W5", "p99_us", "p99 µs", Target::None, ""),
        row("W5", "503s", "503s", Target::None, ""),
        row("W5", "errors", "errors", Target::AtMost(0.0), "0"),
        row(
            "W1s",
            "req_s",
            "serve: req/s",
            Target::RatioAtLeast(0.97),
            "≥ 0.97×",
        ),
        row("W1s", "p99_us", "serve: p99 µs", Target::None, ""),
        row("W1s", "errors", "serve: errors", Target::AtMost(0.0), "0"),
        row(
            "W2s",
            "rss_per_pending_b",
            "serve: RSS B / pending",
            Target::DiffAtMost(128.0),
            "≤ base + 128 B",
        ),
        row(
            "W2s",
            "p99_us",
            "serve: completion p99 µs",
            Target::None,
            "",
        ),
        row("W2s", "errors", "serve: errors", Target::AtMost(0.0), "0"),
        row("W7", "stalled", "stalled connections", Target::None, ""),
        row("W7", "stalled_left", "stalled still open", Target::None, ""),
        row("W7", "p50_us", "new client p50 µs", Target::None, ""),
        row("W7", "p99_us", "new client p99 µs", Target::None, ""),
        row(
            "W7",
            "max_us",
            "new client max µs",
            Target::AtMost(1_000_000.0),
            "≤ 1 s",
        ),
        row(
            "W7",
            "errors",
            "new client errors",
            Target::AtMost(0.0),
            "0",
        ),
        row("W8", "rss_fresh_mib", "RSS fresh MiB", Target::None, ""),
        row("W8", "rss_peak_mib", "RSS peak MiB", Target::None, ""),
        row("W8", "rss_after_mib", "RSS after MiB", Target::None, ""),
        row(
            "W8",
            "peak_per_reader_b",
            "RSS peak B / reader",
            Target::AtMost(86_016.0),
            "≤ 64 KiB + 20 KB",
        ),
        row(
            "W8",
            "after_per_reader_b",
            "RSS after B / reader",
            Target::None,
            "",
        ),
        row(
            "W8",
            "in_flight_end",
            "in flight at end",
            Target::AtMost(0.0),
            "0",
        ),
        row(
            "W8",
            "in_flight_after",
            "in flight after",
            Target::AtMost(0.0),
            "0",
        ),
        row("W8", "slow_consumers", "slow consumers", Target::None, ""),
        row(
            "W8",
            "rss_settled_mib",
            "RSS 15 s after MiB",
            Target::None,
            "",
        ),
        row(
            "W8m",
            "rss_peak_mib",
            "mimalloc: RSS peak MiB",
            Target::None,
            "",
        ),
        row(
            "W8m",
            "rss_after_mib",
            "mimalloc: RSS after MiB",
            Target::None,
            "",
        ),
        row(
            "W8m",
            "rss_settled_mib",
            "mimalloc: RSS 15 s after MiB",
            Target::None,
            "",
        ),
        row(
            "W8m",
            "peak_per_reader_b",
            "mimalloc: RSS peak B / reader",
            Target::None,
            "",
        ),
        row(
            "W8j",
            "rss_peak_mib",
            "jemalloc: RSS peak MiB",
            Target::None,
            "",
        ),
        row(
            "W8j",
            "rss_after_mib",
            "jemalloc: RSS after MiB",
            Target::None,
            "",
        ),
        row(
            "W8j",
            "rss_settled_mib",
            "jemalloc: RSS 15 s after MiB",
            Target::None,
            "",
        ),
        row(
            "W8j",
            "peak_per_reader_b",
            "jemalloc: RSS peak B / reader",
            Target::None,
            "",
        ),
        row(
            "W6a",
            "p50_us",
            "cluster completion p50 µs",
            Target::None,
            "",
        ),
        row(
            "W6a",
            "p99_us",
            "cluster completion p99 µs",
            Target::AtMost(5_000.0),
            "≤ 5,000",
        ),
        row(
            "W6a",
            "max_us",
            "cluster completion max µs",
            Target::None,
            "",
        ),
        row(
            "W6a",
            "rss_per_pending_b",
            "RSS B / pending key",
            Target::DiffAtMost(256.0),
            "≤ base + 256 B",
        ),
        row("W6a", "errors", "errors", Target::AtMost(0.0), "0"),
        row(
            "W6b",
            "deliveries_per_s",
            "SSE deliveries/s",
            Target::AtLeastAndRatio(20_000.0, 0.0),
            "≥ 20,000",
        ),
        row("W6b", "p50_us", "publish→receive p50 µs", Target::None, ""),
        row(
            "W6b",
            "server_cpu_us",
            "server CPU µs / delivery",
            Target::None,
            "",
        ),
        row(
            "W6b",
            "client_cpu_us",
            "client CPU µs / delivery",
            Target::None,
            "",
        ),
        row(
            "W6b",
            "p99_us",
            "publish→receive p99 µs",
            Target::AtMost(10_000.0),
            "≤ 10,000",
        ),
        row(
            "W6b",
            "errors",
            "missing deliveries",
            Target::AtMost(0.0),
            "0",
        ),
        row(
            "W6b2",
            "deliveries_per_s",
            "SSE deliveries/s",
            Target::AtLeastAndRatio(20_000.0, 0.0),
            "≥ 20,000",
        ),
        row("W6b2", "p50_us", "publish→receive p50 µs", Target::None, ""),
        row(
            "W6b2",
            "server_cpu_us",
            "server CPU µs / delivery",
            Target::None,
            "",
        ),
        row(
            "W6b2",
            "client_cpu_us",
            "client CPU µs / delivery",
            Target::None,
            "",
        ),
        row(
            "W6b2",
            "p99_us",
            "publish→receive p99 µs",
            Target::AtMost(10_000.0),
            "≤ 10,000",
        ),
        row(
            "W6b2",
            "errors",
            "missing deliveries",
            Target::AtMost(0.0),
            "0",
        ),
        row("W6c1", "req_s", "round trips/s", Target::None, ""),
        row("W6c1", "p50_us", "round trip p50 µs", Target::None, ""),
        row("W6c1", "p99_us", "round trip p99 µs", Target::None, ""),
        row("W6c1", "errors", "errors", Target::AtMost(0.0), "0"),
        row("W6c64", "req_s", "round trips/s", Target::None, ""),
        row("W6c64", "p50_us", "round trip p50 µs", Target::None, ""),
        row("W6c64", "p99_us", "round trip p99 µs", Target::None, ""),
        row("W6c64", "errors", "errors", Target::AtMost(0.0), "0"),
        row("W6c512", "req_s", "round trips/s", Target::None, ""),
        row("W6c512", "p50_us", "round trip p50 µs", Target::None, ""),
        row("W6c512", "p99_us", "round trip p99 µs", Target::None, ""),
        row("W6c512", "errors", "errors", Target::AtMost(0.0), "0"),
    ]
}

fn median(values: &mut Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn print_table(results: &BTreeMap<&str, BTreeMap<&str, Vec<Figures>>>, sizes: &Sizes, smoke: bool) {
    let header = [
        "workload",
        "figure",
        "baseline",
        "async-mvc",
        "ratio",
        "target",
        "met",
    ];
    let mut lines: Vec<[String; 7]> = Vec::new();
    for row in rows(sizes) {
        let key = row.workload.split(' ').next().unwrap_or(row.workload);
        let Some(by_impl) = results.get(key) else {
            continue;
        };
        let med = |imp: Impl| {
            let mut values: Vec<f64> = by_impl
                .get(imp.name())
                .map(|runs| {
                    runs.iter()
                        .filter_map(|f| f.get(row.key).copied())
                        .collect()
                })
                .unwrap_or_default();
            median(&mut values)
        };
        let (base, mvc) = (med(Impl::Baseline), med(Impl::AsyncMvc));
        let ratio = match row.target {
            Target::DiffAtMost(_) => format!("{:+.0}", mvc - base),
            _ if base > 0.0 && !mvc.is_nan() => format!("{:.2}×", mvc / base),
            _ => "-".to_owned(),
        };
        let met = match row.target {
            _ if mvc.is_nan() => None,
            Target::None => None,
            Target::RatioAtLeast(x) => Some(mvc >= x * base),
            Target::RatioAtMost(x) => Some(mvc <= x * base),
            Target::DiffAtMost(x) => Some(mvc - base <= x),
            Target::AtMost(x) => Some(mvc <= x),
            Target::AtLeastAndRatio(floor, x) => Some(mvc >= floor && mvc >= x * base),
        };
        let met = match (met, smoke) {
            (None, _) => "",
            (Some(_), true) => "(smoke)",
            (Some(true), false) => "yes",
            (Some(false), false) => "NO",
        };
        lines.push([
            row.workload.to_owned(),
            row.label.clone(),
            fmt_value(base),
            fmt_value(mvc),
            ratio,
            row.target_text.clone(),
            met.to_owned(),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("{}", render(&header.map(str::to_owned)));
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for line in &lines {
        println!("{}", render(line));
    }
}
