//! `soak --cluster`: the order desk as a real cluster — one `redis-server` (append-only file
//! on), two `--role web` and two `--role worker` processes — under mixed load, through one kill
//! of each kind: a worker (SIGKILL), a web instance (SIGKILL), Redis (SIGKILL for 5 s, then
//! restarted).
//!
//! Each client repeats a *visit*: place an order, long-poll its next version, ask for its
//! invoice, follow its event stream to `shipped` (reconnecting to the other web instance with
//! `Last-Event-ID` when a stream breaks). Every request is counted: answered (any status), or
//! lost — except requests cut by the web instance's kill, counted apart. Every event a client
//! receives is checked for duplicates and gaps. At the end, every order answered `201` must
//! be shipped exactly once (version 3). The report prints the counts and each process's RSS
//! before and after.

use std::{
    collections::BTreeSet,
    fmt,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::{processes::DemoProcess, redis_server::RedisServer, sse_reader::EventReader};

/// How a cluster soak runs.
#[derive(Debug, Clone)]
pub struct ClusterSoakConfig {
    /// Clients visiting at once.
    pub clients: usize,
    /// How long the load runs; the kills happen at 1/5, 2/5 and 3/5 of it.
    pub duration: Duration,
    /// How long Redis stays down.
    pub redis_outage: Duration,
    /// How long, after the load, every placed order has to be shipped.
    pub settle_limit: Duration,
}

impl Default for ClusterSoakConfig {
    /// 64 clients for 60 s; Redis down for 5 s; 60 s to settle.
    fn default() -> Self {
        ClusterSoakConfig {
            clients: 64,
            duration: Duration::from_secs(60),
            redis_outage: Duration::from_secs(5),
            settle_limit: Duration::from_secs(60),
        }
    }
}

impl ClusterSoakConfig {
    /// The shortened run of the tests: 8 clients for 20 s.
    pub fn quick() -> Self {
        ClusterSoakConfig {
            clients: 8,
            duration: Duration::from_secs(20),
            redis_outage: Duration::from_secs(5),
            settle_limit: Duration::from_secs(40),
        }
    }
}

/// What a cluster soak saw.
#[derive(Debug, Clone, Default)]
pub struct ClusterSoakReport {
    /// HTTP requests sent.
    pub sent: u64,
    /// Requests answered (any status).
    pub answered: u64,
    /// Requests with no answer (a connection error or no response in 20 s), or event streams
    /// that broke before their order was shipped, on a process that was not killed: must be 0.
    pub lost: u64,
    /// Requests and event streams cut by the web instance's kill (their connections are the only
    /// loss allowed).
    pub cut_by_kill: u64,
    /// Of the answers: `503`s (timeouts, no worker, Redis down) — allowed, not lost.
    pub unavailable: u64,
    /// Events a client received twice, or orders advanced more than once: must be 0.
    pub duplicated: u64,
    /// Events a client never received between two it did (a gap in versions): must be 0.
    pub missed_events: u64,
    /// Orders answered `201`.
    pub orders_placed: u64,
    /// Of those, shipped exactly once (version 3) at the end.
    pub orders_shipped: u64,
    /// Each process: its name, RSS before the load and after it (bytes; `None` once killed).
    pub rss: Vec<(String, Option<u64>, Option<u64>)>,
    /// Processes that exited on their own (not killed by the soak): must be empty.
    pub exited: Vec<String>,
}

impl ClusterSoakReport {
    /// What went wrong; empty when the soak passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.lost > 0 {
            failures.push(format!("{} requests lost", self.lost));
        }
        if self.duplicated > 0 {
            failures.push(format!("{} duplicates", self.duplicated));
        }
        if self.missed_events > 0 {
            failures.push(format!("{} events missed", self.missed_events));
        }
        if self.orders_shipped < self.orders_placed {
            failures.push(format!(
                "{} of {} placed orders not shipped exactly once",
                self.orders_placed - self.orders_shipped,
                self.orders_placed
            ));
        }
        if !self.exited.is_empty() {
            failures.push(format!("exited on their own: {:?}", self.exited));
        }
        failures
    }
}

impl fmt::Display for ClusterSoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests: {} sent, {} answered ({} of them 503), {} lost, {} cut by the web kill",
            self.sent, self.answered, self.unavailable, self.lost, self.cut_by_kill
        )?;
        writeln!(
            f,
            "events: {} duplicated, {} missed; orders: {} placed, {} shipped exactly once",
            self.duplicated, self.missed_events, self.orders_placed, self.orders_shipped
        )?;
        for (name, before, after) in &self.rss {
            let kib = |rss: &Option<u64>| rss.map_or("-".to_owned(), |b| (b / 1024).to_string());
            writeln!(
                f,
                "RSS {name}: {} KiB before, {} KiB after",
                kib(before),
                kib(after)
            )?;
        }
        let failures = self.failures();
        if failures.is_empty() {
            write!(f, "PASS")
        } else {
            write!(f, "FAIL: {}", failures.join("; "))
        }
    }
}

/// The counters the clients share.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    lost: AtomicU64,
    cut: AtomicU64,
    unavailable: AtomicU64,
    duplicated: AtomicU64,
    missed: AtomicU64,
    placed: Mutex<Vec<String>>,
}

/// The web processes' base URLs, and whether (and when) the first was killed.
struct Webs {
    urls: Vec<String>,
    killed: AtomicBool,
}

/// Runs the cluster soak: `demo` makes a command that runs the demo binary (the `demo` binary,
/// or `soak demo`).
///
/// # Errors
///
/// Redis or a process did not start.
pub async fn run(
    demo: impl Fn() -> Command,
    config: &ClusterSoakConfig,
    progress: impl Fn(&str),
) -> Result<ClusterSoakReport, String> {
    let mut redis = RedisServer::start_persistent().ok_or("redis-server is not installed")?;
    let url = redis.url();
    let start = |role: &str| {
        DemoProcess::start_with(demo(), role, &url, &[])
            .map_err(|e| format!("demo --role {role}: {e}"))
    };
    let mut webs = [start("web")?, start("web")?];
    let mut workers = [start("worker")?, start("worker")?];
    let http = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    wait_for_workers(&http, &webs[1].url("")).await?;
    let mut rss: Vec<(String, Option<u64>, Option<u64>)> = webs
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("web {i}"), p.rss(), None))
        .chain(
            workers
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("worker {i}"), p.rss(), None)),
        )
        .collect();

    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Webs {
        urls: webs.iter().map(|web| web.url("")).collect(),
        killed: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..config.clients)
        .map(|c| {
            let (http, counters, shared, stop) = (
                http.clone(),
                Arc::clone(&counters),
                Arc::clone(&shared),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    visit(&http, &counters, &shared, n).await;
                    n += 1;
                }
            })
        })
        .collect();

    let fifth = config.duration / 5;
    let began = Instant::now();
    tokio::time::sleep(fifth).await;
    progress("killing worker 0 (SIGKILL)");
    workers[0].kill();
    tokio::time::sleep(fifth).await;
    progress("killing web 0 (SIGKILL)");
    shared.killed.store(true, Ordering::Relaxed);
    webs[0].kill();
    tokio::time::sleep(fifth).await;
    progress("killing redis (SIGKILL)");
    redis.kill();
    tokio::time::sleep(config.redis_outage).await;
    redis.restart();
    progress("redis restarted");
    tokio::time::sleep(config.duration.saturating_sub(began.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    progress("load stopped; waiting for the visits in progress");
    for client in clients {
        let _ = client.await;
    }

    // Every order answered 201 is shipped exactly once.
    let placed: Vec<String> = counters
        .placed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let deadline = Instant::now() + config.settle_limit;
    let mut shipped = 0;
    for id in &placed {
        loop {
            let order = get_json(&http, &format!("{}/api/orders/{id}", shared.urls[1])).await;
            let version = order.as_ref().and_then(|o| o["version"].as_u64());
            if version.is_some_and(|v| v > 3) {
                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if order.as_ref().is_some_and(|o| o["status"] == "shipped") {
                shipped += 1;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut exited = Vec::new();
    if !webs[1].is_running() {
        exited.push("web 1".to_owned());
    }
    if !workers[1].is_running() {
        exited.push("worker 1".to_owned());
    }
    let after = [
        webs[0].rss(),
        webs[1].rss(),
        workers[0].rss(),
        workers[1].rss(),
    ];
    for ((_, _, slot), now) in rss.iter_mut().zip(after) {
        *slot = now;
    }
    Ok(ClusterSoakReport {
        sent: counters.sent.load(Ordering::Relaxed),
        answered: counters.answered.load(Ordering::Relaxed),
        lost: counters.lost.load(Ordering::Relaxed),
        cut_by_kill: counters.cut.load(Ordering::Relaxed),
        unavailable: counters.unavailable.load(Ordering::Relaxed),
        duplicated: counters.duplicated.load(Ordering::Relaxed),
        missed_events: counters.missed.load(Ordering::Relaxed),
        orders_placed: placed.len() as u64,
        orders_shipped: shipped,
        rss,
        exited,
    })
}

/// Waits (at most 20 s) until an invoice is answered `200`: a worker listens.
async fn wait_for_workers(http: &Client, base: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let placed = http
            .post(format!("{base}/api/orders"))
            .json(&json!({ "item": "probe" }))
            .send()
            .await;
        if let Ok(placed) = placed {
            if let Ok(order) = placed.json::<Value>().await {
                let id = order["id"].as_str().unwrap_or_default().to_owned();
                let invoice = http
                    .post(format!("{base}/api/orders/{id}/invoice"))
                    .send()
                    .await;
                if invoice.is_ok_and(|answer| answer.status() == StatusCode::OK) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("no worker answered an invoice within 20 s".to_owned())
}

async fn get_json(http: &Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// One visit by client `n`: place, long-poll, invoice, follow the stream to `shipped`.
async fn visit(http: &Client, counters: &Counters, webs: &Webs, n: usize) {
    // After the kill, everything goes to the survivor.
    let pick = |i: usize| -> usize {
        if webs.killed.load(Ordering::Relaxed) {
            1
        } else {
            i % webs.urls.len()
        }
    };
    let on = pick(n);
    let Some(order) = request(
        counters,
        webs,
        on,
        http.post(format!("{}/api/orders", webs.urls[on]))
            .json(&json!({ "item": format!("soak {n}") })),
    )
    .await
    else {
        return;
    };
    if order.status() != StatusCode::CREATED {
        return;
    }
    let Ok(order) = order.json::<Value>().await else {
        return;
    };
    let Some(id) = order["id"].as_str().map(str::to_owned) else {
        return;
    };
    counters
        .placed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(id.clone());

    let on = pick(n + 1);
    let url = format!(
        "{}/api/orders/{id}/next?after=1&timeout_ms=5000",
        webs.urls[on]
    );
    let _ = request(counters, webs, on, http.get(url)).await;
    let on = pick(n);
    let url = format!("{}/api/orders/{id}/invoice", webs.urls[on]);
    let _ = request(counters, webs, on, http.post(url)).await;
    follow(http, counters, webs, &id, pick(n + 1)).await;
}

/// Sends one request to web `on`, counting it; `None` when it got no answer.
async fn request(
    counters: &Counters,
    webs: &Webs,
    on: usize,
    request: reqwest::RequestBuilder,
) -> Option<reqwest::Response> {
    counters.sent.fetch_add(1, Ordering::Relaxed);
    match request.send().await {
        Ok(answer) => {
            counters.answered.fetch_add(1, Ordering::Relaxed);
            if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
                counters.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Some(answer)
        }
        Err(_) if on == 0 && webs.killed.load(Ordering::Relaxed) => {
            counters.cut.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Follows order `id`'s stream until version 3 (or 15 s), resuming on the surviving web
/// instance with `Last-Event-ID` when the stream breaks; counts duplicates and gaps.
async fn follow(http: &Client, counters: &Counters, webs: &Webs, id: &str, first: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seen = BTreeSet::new();
    let mut last: Option<u64> = None;
    let mut on = first;
    for _attempt in 0..4 {
        let mut builder = http.get(format!("{}/api/orders/{id}/stream", webs.urls[on]));
        if let Some(last) = last {
            builder = builder.header("last-event-id", last.to_string());
        }
        let Some(response) = request(counters, webs, on, builder).await else {
            on = 1;
            continue;
        };
        if response.status() != StatusCode::OK {
            break;
        }
        let mut reader = EventReader::new(response);
        while let Some(event) = reader.next(deadline).await {
            let Some(version) = event.id.and_then(|id| id.parse::<u64>().ok()) else {
                continue;
            };
            if !seen.insert(version) {
                counters.duplicated.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(before) = last.filter(|before| version > before + 1) {
                counters
                    .missed
                    .fetch_add(version - before - 1, Ordering::Relaxed);
            }
            last = Some(last.map_or(version, |before| before.max(version)));
            if last == Some(3) {
                return;
            }
        }
        if last == Some(3) || tokio::time::Instant::now() >= deadline {
            return;
        }
        // The stream broke before the order was shipped: cut by the kill, or lost.
        if on == 0 && webs.killed.load(Ordering::Relaxed) {
            counters.cut.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.lost.fetch_add(1, Ordering::Relaxed);
        }
        // Resume on the survivor.
        on = 1;
    }
}
