//! [`DemoProcess`]: a `demo` binary running as a separate process in a given role, for the
//! cluster's fault tests and `soak --cluster` — started on a free port, read for its address,
//! killed with SIGKILL like a crashed node.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// A running `demo` process; killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct DemoProcess {
    child: Child,
    /// Where a `web` (or `all`) process serves; `None` for a `worker`.
    pub addr: Option<SocketAddr>,
    /// Where its standard error goes, when the test reads its log.
    log: Option<PathBuf>,
}

impl DemoProcess {
    /// Starts `binary --role {role} --redis {redis} --port 0` (plus `extra` arguments) and
    /// waits for its first line: the address it serves on, or the worker's banner.
    ///
    /// # Errors
    ///
    /// The process did not start, or exited before saying it runs.
    pub fn start(
        binary: &Path,
        role: &str,
        redis: &str,
        extra: &[&str],
    ) -> std::io::Result<DemoProcess> {
        Self::start_with(Command::new(binary), role, redis, extra)
    }

    /// [`start`](Self::start) with `command` as the demo (a binary that runs
    /// [`demo::run`](crate::demo::run) after arguments of its own, as `soak demo`).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(
        command: Command,
        role: &str,
        redis: &str,
        extra: &[&str],
    ) -> std::io::Result<DemoProcess> {
        Self::spawn(command, role, redis, extra, None)
    }

    /// [`start`](Self::start) with the process's standard error written to `log` (created
    /// anew), for a test to read with [`log`](Self::log).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or `log` cannot be created.
    pub fn start_logging(
        binary: &Path,
        role: &str,
        redis: &str,
        extra: &[&str],
        log: &Path,
    ) -> std::io::Result<DemoProcess> {
        Self::spawn(Command::new(binary), role, redis, extra, Some(log))
    }

    fn spawn(
        mut command: Command,
        role: &str,
        redis: &str,
        extra: &[&str],
        log: Option<&Path>,
    ) -> std::io::Result<DemoProcess> {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::inherit(),
        };
        let mut child = command
            .args(["--role", role, "--redis", redis, "--port", "0"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.is_empty() {
            let _ = child.kill();
            let status = child.wait()?;
            return Err(std::io::Error::other(format!(
                "demo --role {role} exited before it ran: {status}"
            )));
        }
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok());
        Ok(DemoProcess {
            child,
            addr,
            log: log.map(Path::to_owned),
        })
    }

    /// What the process wrote to its standard error so far, if it was started with
    /// [`start_logging`](Self::start_logging).
    pub fn log(&self) -> Option<String> {
        std::fs::read_to_string(self.log.as_ref()?).ok()
    }

    /// `http://{addr}{path}` of a web process.
    ///
    /// # Panics
    ///
    /// For a worker, which serves nothing.
    pub fn url(&self, path: &str) -> String {
        match self.addr {
            Some(addr) => format!("http://{addr}{path}"),
            None => panic!("a worker process serves no HTTP"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (it did not exit or crash on its own).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The resident set size now, in bytes (`VmRSS`), if the process is there.
    pub fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// SIGKILL, as a crashed node: no shutdown, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
