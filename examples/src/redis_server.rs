//! [`RedisServer`]: a real `redis-server` (Debian's package) for one test, on a free loopback
//! port, with persistence off unless asked; it can be killed, paused and restarted.
//!
//! Without `redis-server` on the machine, [`RedisServer::start`] returns `None` after printing
//! a loud message, so the test skips — except under `CI=true`, where it panics: CI installs it.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` child process; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    appendonly: bool,
}

impl RedisServer {
    /// Starts a server with persistence off. `None` (after a loud message) if `redis-server`
    /// is not installed and `CI` is not `true`.
    ///
    /// # Panics
    ///
    /// Under `CI=true` without `redis-server`, or if it does not start.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(false)
    }

    /// Starts a server with the append-only file on (`appendfsync always`), so that a restart
    /// keeps what it accepted.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_persistent() -> Option<RedisServer> {
        Self::start_with(true)
    }

    fn start_with(appendonly: bool) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is not installed, and CI=true: apt-get install redis-server"
            );
            eprintln!(
                "\n*** SKIPPED: redis-server is not installed (apt-get install redis-server); \
                 the Redis tests did not run ***\n"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port");
        let dir =
            std::env::temp_dir().join(format!("async-mvc-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            appendonly,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--dir"])
            .arg(&self.dir)
            .args([
                "--appendonly",
                if self.appendonly { "yes" } else { "no" },
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (and, persistent, with what it had accepted).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs `redis-cli` against the server with `args`: what it printed.
    ///
    /// # Panics
    ///
    /// If `redis-cli` (installed with `redis-server`) cannot be run.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Writes `keys` filler keys (20-byte values, in `MSET`s of 10 through `redis-cli --pipe`):
    /// a persistent server then takes a while to load its append-only file after a restart,
    /// answering `LOADING` meanwhile — promptly, since it serves clients between every 1,024
    /// commands it loads.
    ///
    /// # Panics
    ///
    /// If `redis-cli` cannot be run or reports errors.
    pub fn fill(&self, keys: usize) {
        use std::io::Write;
        let mut commands = Vec::with_capacity(keys * 48);
        for batch in (0..keys).step_by(10) {
            let end = (batch + 10).min(keys);
            let _ = write!(commands, "*{}\r\n$4\r\nMSET\r\n", 1 + 2 * (end - batch));
            for key in batch..end {
                let name = format!("filler:{key}");
                let _ = write!(
                    commands,
                    "${}\r\n{name}\r\n$20\r\n{}\r\n",
                    name.len(),
                    "v".repeat(20)
                );
            }
        }
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli --pipe");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&commands).expect("write to redis-cli");
        }
        let output = child.wait_with_output().expect("redis-cli --pipe");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(report.contains("errors: 0"), "redis-cli --pipe: {report}");
    }

    /// Waits (at most 30 s) until the server has loaded its data set and answers commands:
    /// how long that took from the call.
    ///
    /// # Panics
    ///
    /// If it is still loading after 30 s.
    pub fn wait_loaded(&self) -> Duration {
        let started = Instant::now();
        while self.cli(&["GET", "filler:0"]).contains("LOADING")
            || self.cli(&["PING"]).trim() != "PONG"
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis is still loading"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        started.elapsed()
    }

    /// Pauses the process (SIGSTOP): a broker that accepts connections and answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
