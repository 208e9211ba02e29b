//! The order desk as real processes for the fault tests: [`Cluster`] — one real
//! `redis-server`, `demo --role web` and `demo --role worker` processes — and readers of what
//! they answer.
#![allow(dead_code, unreachable_pub)] // each test binary uses its part, from its crate root

use std::{
    path::Path,
    time::{Duration, Instant},
};

use async_mvc_examples::{
    processes::DemoProcess, redis_server::RedisServer, sse_reader::EventReader,
};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// One scenario at a time.
pub static SERIAL: Mutex<()> = Mutex::const_new(());

/// The longest any request of these tests may take.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(20);

/// Dropped in field order: the processes before Redis.
pub struct Cluster {
    pub webs: Vec<DemoProcess>,
    pub workers: Vec<DemoProcess>,
    pub redis: RedisServer,
    pub http: Client,
}

impl Cluster {
    /// Redis (persistent if asked), `webs` web processes and `workers` worker processes, with
    /// `extra` arguments for the web ones. `None` without `redis-server` (outside CI).
    pub fn start(persistent: bool, webs: usize, workers: usize, extra: &[&str]) -> Option<Cluster> {
        Self::start_with(persistent, webs, workers, extra, false)
    }

    /// [`start`](Self::start), with each process's standard error kept for [`logs`](Self::logs).
    pub fn start_logging(persistent: bool, webs: usize, workers: usize) -> Option<Cluster> {
        Self::start_with(persistent, webs, workers, &[], true)
    }

    fn start_with(
        persistent: bool,
        webs: usize,
        workers: usize,
        extra: &[&str],
        logging: bool,
    ) -> Option<Cluster> {
        let redis = if persistent {
            RedisServer::start_persistent()?
        } else {
            RedisServer::start()?
        };
        let binary = Path::new(env!("CARGO_BIN_EXE_demo"));
        let url = redis.url();
        let dir = std::env::temp_dir();
        let start = |role: &str, n: usize, extra: &[&str]| {
            let log = dir.join(format!(
                "async-mvc-demo-{}-{role}-{n}.log",
                std::process::id()
            ));
            let process = if logging {
                DemoProcess::start_logging(binary, role, &url, extra, &log)
            } else {
                DemoProcess::start(binary, role, &url, extra)
            };
            process.expect("a demo process")
        };
        let webs = (0..webs).map(|n| start("web", n, extra)).collect();
        let workers = (0..workers).map(|n| start("worker", n, &[])).collect();
        let http = Client::builder().timeout(REQUEST_LIMIT).build().unwrap();
        Some(Cluster {
            redis,
            webs,
            workers,
            http,
        })
    }

    /// Every process's log so far (those started with [`start_logging`](Self::start_logging)).
    pub fn logs(&self) -> String {
        self.webs
            .iter()
            .chain(&self.workers)
            .filter_map(DemoProcess::log)
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn web(&self, i: usize) -> &DemoProcess {
        &self.webs[i % self.webs.len()]
    }

    pub async fn place(&self, on: usize, item: &str) -> Value {
        let placed = self
            .http
            .post(self.web(on).url("/api/orders"))
            .json(&json!({ "item": item }))
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status(), StatusCode::CREATED);
        placed.json().await.unwrap()
    }

    pub async fn order(&self, on: usize, id: &str) -> Value {
        let order = self
            .http
            .get(self.web(on).url(&format!("/api/orders/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(order.status(), StatusCode::OK);
        order.json().await.unwrap()
    }

    /// Waits (at most 10 s) until an invoice is answered `200`: a worker listens.
    pub async fn wait_for_workers(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self
                .http
                .post(self.web(0).url(&format!("/api/orders/{id}/invoice")))
                .send()
                .await
                .unwrap();
            if answer.status() == StatusCode::OK {
                return;
            }
            assert!(Instant::now() < deadline, "no worker answered in 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `limit`) until every order of `ids` is `shipped` at version 3 on every
    /// web process: packed and shipped exactly once.
    pub async fn all_shipped_once(&self, ids: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        for id in ids {
            loop {
                let order = self.order(0, id).await;
                let version = order["version"].as_u64().unwrap();
                assert!(version <= 3, "order {id} advanced more than once: {order}");
                if order["status"] == "shipped" {
                    assert_eq!(version, 3, "{order}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "order {id} was not shipped: {order}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // And nothing more happens to them, on either web process.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for id in ids {
            for on in 0..self.webs.len() {
                let order = self.order(on, id).await;
                assert_eq!(
                    (order["status"].as_str(), order["version"].as_u64()),
                    (Some("shipped"), Some(3)),
                    "{order}"
                );
            }
        }
    }

    pub fn all_running(&mut self) -> bool {
        self.webs
            .iter_mut()
            .chain(self.workers.iter_mut())
            .all(DemoProcess::is_running)
    }
}

/// An invoice answer: `200` with a well-formed invoice of order `id`, or `503`.
pub async fn check_invoice(answer: reqwest::Response, id: &str) -> StatusCode {
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    match status {
        StatusCode::OK => {
            assert_eq!(body["id"], id, "{body}");
            let text = body["invoice"].as_str().unwrap();
            assert_eq!(
                body["sha256"].as_str().unwrap(),
                format!("{:x}", Sha256::digest(text.as_bytes()))
            );
            assert!(body["version"].as_u64().is_some() && body["status"].is_string());
        }
        StatusCode::SERVICE_UNAVAILABLE => assert!(body["error"].is_string(), "{body}"),
        other => panic!("an invoice answered {other}: {body}"),
    }
    status
}

/// The `(id, data)` of SSE events read from `response` until one has id `until` (or the
/// stream ends, or `limit` passes).
pub async fn events_until(
    response: reqwest::Response,
    until: u64,
    limit: Duration,
) -> Vec<(u64, Value)> {
    let mut reader = EventReader::new(response);
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = Vec::new();
    while events.last().map(|(id, _)| *id) != Some(until) {
        let Some(event) = reader.next(deadline).await else {
            break;
        };
        if let (Some(id), Ok(data)) = (
            event.id.and_then(|id| id.parse().ok()),
            serde_json::from_str(&event.data),
        ) {
            events.push((id, data));
        }
    }
    events
}

pub fn ids_of(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|order| order["id"].as_str().unwrap().to_owned())
        .collect()
}
