//! A real Prometheus (Debian's `prometheus`) scraping the demo's `/metrics` every second on
//! loopback, asked through its HTTP API what an operator asks: the request rate by route, the
//! p99 of a route's durations, active requests back to 0. Skipped loudly without the binary,
//! unless `CI=true` (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_mvc_examples::order_desk::{DemoConfig, OrderDesk};
use async_mvc_tests::{client, TestServer};
use serde_json::Value;

/// The `prometheus` child, killed on drop, with its data in a directory removed then.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) every second. `None` without the binary (outside CI).
    fn start(target: &str) -> Option<Prometheus> {
        if Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "prometheus is not installed, and CI=true: apt-get install prometheus"
            );
            eprintln!(
                "\n*** SKIPPED: prometheus is not installed (apt-get install prometheus); the \
                 Prometheus test did not run ***\n"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("async-mvc-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: demo\n    metrics_path: /metrics\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Some(Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The instant vector of `query`: each result's labels and value.
    async fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let answer = client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await;
        let Ok(answer) = answer else {
            return Vec::new();
        };
        let Ok(body) = answer.json::<Value>().await else {
            return Vec::new();
        };
        body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|result| {
                let value = result["value"][1].as_str()?.parse().ok()?;
                Some((result["metric"].clone(), value))
            })
            .collect()
    }

    /// Asks `query` until `accept` takes its results (at most 30 s): the accepted results.
    async fn until(
        &self,
        query: &str,
        accept: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Vec<(Value, f64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let results = self.query(query).await;
            if accept(&results) {
                return results;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never answered `{query}` acceptably: {results:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_demo_and_answers_rate_p99_and_active_requests() {
    let desk = OrderDesk::new(DemoConfig::default());
    let server = TestServer::start(desk.router()).await;
    let target = server.url("").trim_start_matches("http://").to_owned();
    let Some(prometheus) = Prometheus::start(target.trim_end_matches('/')) else {
        return;
    };
    let http = client();
    let placed: Value = http
        .post(server.url("/api/orders"))
        .json(&serde_json::json!({ "item": "kettle" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = placed["id"].as_str().unwrap().to_owned();
    // About 8 s of load: reads, and long polls that each wait 200 ms for their 304.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let reads: Vec<_> = (0..20)
            .map(|_| http.get(server.url(&format!("/api/orders/{id}"))).send())
            .collect();
        for read in futures::future::join_all(reads).await {
            assert!(read.unwrap().status().is_success());
        }
        let polls: Vec<_> = (0..5)
            .map(|_| {
                http.get(server.url(&format!("/api/orders/{id}/next?after=99&timeout_ms=200")))
                    .send()
            })
            .collect();
        for poll in futures::future::join_all(polls).await {
            assert_eq!(poll.unwrap().status(), reqwest::StatusCode::NOT_MODIFIED);
        }
    }

    let rates = prometheus
        .until(
            "sum by (http_route) (rate(http_server_request_duration_seconds_count[5s]))",
            |results| {
                results
                    .iter()
                    .any(|(labels, rate)| labels["http_route"] == "/api/orders/{id}" && *rate > 1.0)
            },
        )
        .await;
    eprintln!("request rate by route (req/s): {rates:?}");
    assert!(
        rates.iter().all(|(labels, _)| !labels["http_route"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("/{id}"))),
        "routes are templates"
    );
    let p99 = prometheus
        .until(
            "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route=\"/api/orders/{id}/next\"}[10s])))",
            |results| results.iter().any(|(_, value)| value.is_finite() && *value > 0.0),
        )
        .await;
    eprintln!("p99 of /api/orders/{{id}}/next (s): {p99:?}");
    let (_, p99) = p99[0];
    assert!(
        (0.1..=0.25).contains(&p99),
        "200 ms long polls: p99 {p99} s (buckets 0.1 and 0.25 s around it)"
    );
    let active = prometheus
        .until("http_server_active_requests", |results| {
            results.iter().any(|(_, value)| *value == 0.0)
        })
        .await;
    eprintln!("active requests after the load: {active:?}");
}
