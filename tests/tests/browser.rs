//! The order desk's page in a real browser: headless Chromium, driven over WebDriver by
//! `fantoccini` through `/usr/bin/chromedriver`, which the test starts on a free loopback port
//! and stops at the end.
//!
//! The page follows an order with an `EventSource` on `GET /api/orders/{id}/stream`. The test
//! checks that the events arrive, then drops the server's SSE connections
//! ([`OrderDesk::drop_streams`]), changes the order while the browser is disconnected, and
//! checks that the browser reconnects with `Last-Event-ID` and gets each missed event exactly
//! once.
//!
//! Without Chromium or chromedriver the test is skipped with a loud message — unless `CI` is
//! set, where it fails.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_mvc_examples::order_desk::{DemoConfig, OrderDesk};
use axum::{extract::Request, middleware::Next};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The whole test's time limit.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// How long the page may take to show an expected state. An `EventSource` waits about 3 s
/// before it reconnects.
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// `Some(reason)` when Chromium or chromedriver is not installed.
fn browser_missing() -> Option<String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).is_file())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not found (Debian packages `chromium` and `chromium-driver`)",
            missing.join(" and ")
        )
    })
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let path =
            std::env::temp_dir().join(format!("async-mvc-browser-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (free when asked: chromedriver binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running chromedriver; stopped (with its browsers) on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    async fn start(dir: &Path) -> ChromeDriver {
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut driver = ChromeDriver { child, port, log };
        let status = format!("{}/status", driver.url());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited early ({exit}); {}", driver.log_tail());
            }
            let ready = client
                .get(&status)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(response) = ready {
                if let Ok(body) = response.json::<Value>().await {
                    if body["value"]["ready"] == json!(true) {
                        return driver;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 15 s; {}",
                driver.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The end of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(3000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        format!("chromedriver log tail:\n{}", &log[start..])
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` quits every session's browser too; killing chromedriver alone could leave
        // Chromium running if the test failed before closing its session.
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let request = format!(
                "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read(&mut [0; 1024]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session with headless Chromium and a fresh profile.
async fn open_browser(driver: &ChromeDriver, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // chromedriver speaks plain HTTP on loopback: no TLS connector needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url()),
    )
    .await
    .unwrap_or_else(|_| panic!("no browser session within 30 s; {}", driver.log_tail()))
    .unwrap_or_else(|error| panic!("no browser session: {error}; {}", driver.log_tail()))
}

/// The demo on `127.0.0.1:0`, recording the `Last-Event-ID` of every stream request.
struct Demo {
    base: String,
    desk: OrderDesk,
    /// `Last-Event-ID` of each `GET /api/orders/{id}/stream`, in arrival order.
    resumes: Arc<Mutex<Vec<Option<String>>>>,
}

impl Demo {
    async fn start(config: DemoConfig) -> Demo {
        let desk = OrderDesk::new(config);
        let resumes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&resumes);
        let router = desk.router().layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let seen = Arc::clone(&seen);
                async move {
                    if request.uri().path().ends_with("/stream") {
                        let last = request
                            .headers()
                            .get("last-event-id")
                            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(last);
                    }
                    next.run(request).await
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Demo {
            base: format!("http://{address}"),
            desk,
            resumes,
        }
    }

    fn resumes(&self) -> Vec<Option<String>> {
        self.resumes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn post_status(&self, id: &str, status: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/orders/{id}/events", self.base))
            .json(&json!({ "status": status }))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("POST request");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
}

/// What the page shows and has received.
async fn page_state(browser: &Client) -> Value {
    browser
        .execute(
            "const text = (id) => document.getElementById(id).textContent;
             return {
               ids: window.__receivedIds || [],
               opens: window.__streamOpens || 0,
               id: text('order-id'),
               status: text('order-status'),
               version: text('order-version'),
               log: Array.from(document.querySelectorAll('#log li'), (li) => li.textContent),
             };",
            vec![],
        )
        .await
        .expect("run a script in the page")
}

/// Waits until the page's state satisfies `expected`; returns that state.
async fn until_page(browser: &Client, what: &str, expected: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let state = page_state(browser).await;
        if expected(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show {what} within {PAGE_WAIT:?}: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `condition` holds, for up to 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(state: &Value) -> Vec<String> {
    state["ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|id| id.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_page_follows_the_event_stream_and_resumes_after_a_drop() {
    if let Some(missing) = browser_missing() {
        if std::env::var_os("CI").is_some() {
            panic!("the browser test needs Chromium and chromedriver on CI: {missing}");
        }
        // Straight to stderr: the test harness would capture `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "\n\n******** SKIPPED the browser test: {missing}. ********\n\
             ******** Install them: apt-get install chromium chromium-driver ********\n"
        );
        return;
    }
    let dir = TempDir::new();
    let profile = dir.0.join("profile");
    let driver = ChromeDriver::start(&dir.0).await;
    let outcome = tokio::time::timeout(TEST_LIMIT, async {
        let browser = open_browser(&driver, &profile).await;
        let result = drive(&browser).await;
        // Closed on success and failure alike; the driver's drop is the last resort.
        let _ = browser.close().await;
        result
    })
    .await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("{message}; {}", driver.log_tail()),
        Err(_) => panic!(
            "the browser test took over {TEST_LIMIT:?}; {}",
            driver.log_tail()
        ),
    }
}

/// The test proper; a panic inside is turned into an `Err` so the browser is always closed.
async fn drive(browser: &Client) -> Result<(), String> {
    let demo = Demo::start(
        DemoConfig::new()
            .packed_after(Duration::from_millis(800))
            .shipped_after(Duration::from_millis(1600)),
    )
    .await;
    let run = async {
        browser
            .goto(&format!("{}/", demo.base))
            .await
            .expect("open the page");
        browser
            .find(Locator::Id("item"))
            .await
            .expect("the item field")
            .send_keys("teapot")
            .await
            .expect("type the item");
        browser
            .find(Locator::Id("place"))
            .await
            .expect("the place button")
            .click()
            .await
            .expect("place the order");

        // The worker packs and ships the order; the page's EventSource gets every version.
        let shipped = until_page(browser, "the order shipped", |state| {
            state["status"] == json!("shipped") && ids(state).len() >= 3
        })
        .await;
        let id = shipped["id"].as_str().expect("the order id").to_owned();
        assert_eq!(id, "1");
        assert_eq!(ids(&shipped), ["1", "2", "3"], "{shipped:#}");
        assert_eq!(shipped["version"], json!("3"));
        assert_eq!(shipped["opens"], json!(1));
        let receipt = browser
            .find(Locator::Id("receipt"))
            .await
            .expect("the receipt link")
            .attr("href")
            .await
            .expect("its href");
        assert_eq!(receipt.as_deref(), Some("/api/orders/1/receipt"));

        // The server drops the stream; the order changes while the browser is disconnected.
        let store = demo.desk.store().clone();
        eventually("the page's stream to be open", || store.streams() == 1).await;
        assert_eq!(demo.desk.drop_streams(), 1);
        assert_eq!(store.streams(), 0);
        demo.post_status(&id, "paid").await;
        demo.post_status(&id, "gift-wrapped").await;
        assert_eq!(
            store.streams(),
            0,
            "the browser reconnected before the events were published"
        );

        // It reconnects with the last id it got and receives exactly what it missed.
        let resumed = until_page(browser, "the missed events", |state| {
            ids(state).len() >= 5 && state["opens"] == json!(2)
        })
        .await;
        assert_eq!(ids(&resumed), ["1", "2", "3", "4", "5"], "{resumed:#}");
        assert_eq!(resumed["status"], json!("gift-wrapped"));
        assert_eq!(resumed["version"], json!("5"));
        assert_eq!(demo.resumes(), [None, Some("3".to_owned())]);

        // Still live after the reconnect, and nothing arrives twice.
        demo.post_status(&id, "delivered").await;
        let live = until_page(browser, "a live event after the reconnect", |state| {
            ids(state).len() >= 6
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let last = page_state(browser).await;
        assert_eq!(ids(&last), ["1", "2", "3", "4", "5", "6"], "{last:#}");
        assert_eq!(live["status"], json!("delivered"));
        assert_eq!(last["opens"], json!(2));
        assert_eq!(demo.resumes().len(), 2);
        eprintln!("the page's log, newest first: {:#}", last["log"]);
    };
    // A failed assertion must not skip closing the browser.
    AssertUnwindSafe(run).catch_unwind().await.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the browser test panicked".to_owned())
    })
}
