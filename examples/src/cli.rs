//! The demo binary's command line: flags, each with an environment variable, and the server
//! limits they set.
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--port N` | `PORT` | 8080 |
//! | `--header-read-timeout-ms N` | `HEADER_READ_TIMEOUT_MS` | [`async_mvc::DEFAULT_HEADER_READ_TIMEOUT`] |
//! | `--keep-alive-timeout-ms N` | `KEEP_ALIVE_TIMEOUT_MS` | [`async_mvc::DEFAULT_KEEP_ALIVE_TIMEOUT`] |
//! | `--send-timeout-ms N` | `SEND_TIMEOUT_MS` | [`async_mvc::DEFAULT_SEND_TIMEOUT`] |
//! | `--max-connections N` | `MAX_CONNECTIONS` | [`async_mvc::default_max_connections`] |
//! | `--redis URL` | `REDIS_URL` | none: one process, orders in memory |
//! | `--redis-outbox N` | `REDIS_OUTBOX` | [`async_mvc_redis::DEFAULT_OUTBOX`]: operations that may wait for an unreachable Redis at once |
//! | `--role web\|worker\|all` | `ROLE` | `all`: the HTTP side and the workers in one process; `web` and `worker` need `--redis` |
//! | `--metrics-port N` | `METRICS_PORT` | none: a `--role worker` process serves `/metrics`, `/healthz` and `/readyz` on 127.0.0.1:N (`0`: any free port) |
//!
//! A flag wins over its variable; `--flag=N` works as well as `--flag N`.

use std::time::Duration;

use async_mvc::Serve;

/// The demo's default port.
pub const DEFAULT_PORT: u16 = 8080;

/// One line per flag, for `--help` and errors.
pub const USAGE: &str = "\
usage: demo [--port N] [--header-read-timeout-ms N] [--keep-alive-timeout-ms N]
            [--send-timeout-ms N] [--max-connections N] [--redis URL]
            [--redis-outbox N] [--role web|worker|all] [--metrics-port N]
Each flag may also be set by its environment variable: PORT, HEADER_READ_TIMEOUT_MS,
KEEP_ALIVE_TIMEOUT_MS, SEND_TIMEOUT_MS, MAX_CONNECTIONS, REDIS_URL, REDIS_OUTBOX, ROLE,
METRICS_PORT. Unset: the library's
defaults, and one process with its orders in memory. `--role web` serves HTTP only and
`--role worker` runs only the fulfilment worker and the invoice renderer (no HTTP port); both
need --redis. A worker with --metrics-port serves /metrics, /healthz and /readyz there; every
web process serves them on its own port.";

/// Which parts of the order desk a process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// The HTTP side and the workers (the default; without `--redis`, today's one process).
    #[default]
    All,
    /// The HTTP side only: fulfilment and invoices go to worker processes through Redis.
    Web,
    /// The workers only: packing, shipping and invoice rendering, no HTTP port.
    Worker,
}

/// What the demo was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoArgs {
    /// The port on 127.0.0.1 (`0`: any free port).
    pub port: u16,
    /// The server limits; `None` leaves the library's default.
    pub limits: ServeLimits,
    /// `--redis URL`: run as one instance of a cluster sharing that Redis.
    pub redis: Option<String>,
    /// `--role`: which parts run.
    pub role: Role,
    /// `--redis-outbox N`: how many operations may wait for an unreachable Redis at once.
    pub redis_outbox: Option<usize>,
    /// `--metrics-port N`: where a worker serves `/metrics`, `/healthz` and `/readyz`.
    pub metrics_port: Option<u16>,
}

/// Server limits from the command line; `None` keeps [`async_mvc::serve`]'s default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeLimits {
    /// `--header-read-timeout-ms`.
    pub header_read_timeout: Option<Duration>,
    /// `--keep-alive-timeout-ms`.
    pub keep_alive_timeout: Option<Duration>,
    /// `--send-timeout-ms`.
    pub send_timeout: Option<Duration>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
}

impl ServeLimits {
    /// `serve` with these limits.
    pub fn apply(&self, mut serve: Serve) -> Serve {
        if let Some(timeout) = self.header_read_timeout {
            serve = serve.header_read_timeout(timeout);
        }
        if let Some(timeout) = self.keep_alive_timeout {
            serve = serve.keep_alive_timeout(timeout);
        }
        if let Some(timeout) = self.send_timeout {
            serve = serve.send_timeout(timeout);
        }
        if let Some(connections) = self.max_connections {
            serve = serve.max_connections(connections);
        }
        serve
    }
}

/// The flags, each with its variable.
const FLAGS: [(&str, &str); 9] = [
    ("--port", "PORT"),
    ("--header-read-timeout-ms", "HEADER_READ_TIMEOUT_MS"),
    ("--keep-alive-timeout-ms", "KEEP_ALIVE_TIMEOUT_MS"),
    ("--send-timeout-ms", "SEND_TIMEOUT_MS"),
    ("--max-connections", "MAX_CONNECTIONS"),
    ("--redis", "REDIS_URL"),
    ("--role", "ROLE"),
    ("--redis-outbox", "REDIS_OUTBOX"),
    ("--metrics-port", "METRICS_PORT"),
];

/// Parses `args` (without the program name), falling back on `env` for each unset flag.
///
/// # Errors
///
/// A message naming the flag and the value expected: an unknown flag, a missing or malformed
/// value, `-h`/`--help` (the usage).
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<DemoArgs, String> {
    let mut given: [Option<String>; FLAGS.len()] = Default::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err("Serves the async-mvc order desk demo on 127.0.0.1.".to_owned());
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let Some(index) = FLAGS.iter().position(|(flag, _)| *flag == name) else {
            return Err(format!("unknown argument `{arg}`"));
        };
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or(format!("{name} needs a value"))?,
        };
        given[index] = Some(value);
    }
    let value = |index: usize| -> Option<(String, &'static str)> {
        let (flag, variable) = FLAGS[index];
        given[index]
            .clone()
            .map(|value| (value, flag))
            .or_else(|| env(variable).map(|value| (value, variable)))
    };
    let number = |index: usize| -> Result<Option<u64>, String> {
        value(index)
            .map(|(value, from)| {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("invalid {from} `{value}`: expected a whole number"))
            })
            .transpose()
    };
    let port = match value(0) {
        None => DEFAULT_PORT,
        Some((value, _)) => value
            .trim()
            .parse()
            .map_err(|_| format!("invalid port `{value}`: expected a number from 0 to 65535"))?,
    };
    let ms = |index| number(index).map(|n| n.map(Duration::from_millis));
    let max_connections = match number(4)? {
        Some(0) => return Err("invalid --max-connections `0`: at least 1".to_owned()),
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    let redis = value(5)
        .map(|(url, _)| url.trim().to_owned())
        .filter(|url| !url.is_empty());
    let role = match value(6) {
        None => Role::All,
        Some((value, from)) => match value.trim() {
            "all" => Role::All,
            "web" => Role::Web,
            "worker" => Role::Worker,
            _ => {
                return Err(format!(
                    "invalid {from} `{value}`: expected web, worker or all"
                ))
            }
        },
    };
    if role != Role::All && redis.is_none() {
        return Err(format!(
            "--role {} needs --redis URL (or REDIS_URL): the web side and the workers meet in Redis",
            if role == Role::Web { "web" } else { "worker" }
        ));
    }
    let redis_outbox = match number(7)? {
        Some(0) => return Err("invalid --redis-outbox `0`: at least 1".to_owned()),
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    let metrics_port =
        match value(8) {
            None => None,
            Some((value, from)) => Some(value.trim().parse().map_err(|_| {
                format!("invalid {from} `{value}`: expected a number from 0 to 65535")
            })?),
        };
    Ok(DemoArgs {
        port,
        redis,
        role,
        redis_outbox,
        metrics_port,
        limits: ServeLimits {
            header_read_timeout: ms(1)?,
            keep_alive_timeout: ms(2)?,
            send_timeout: ms(3)?,
            max_connections,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn port_flag_wins_over_env_which_wins_over_default() {
        let port = |list: &[&str], env: Option<&str>| {
            parse(args(list), |name| {
                (name == "PORT").then(|| env.map(str::to_owned)).flatten()
            })
            .map(|parsed| parsed.port)
        };
        assert_eq!(port(&[], None), Ok(8080));
        assert_eq!(port(&[], Some("9000")), Ok(9000));
        assert_eq!(port(&["--port", "9001"], Some("9000")), Ok(9001));
        assert_eq!(port(&["--port=9002"], None), Ok(9002));
        assert!(port(&["--port"], None).is_err());
        assert!(port(&["--port", "x"], None).is_err());
        assert!(port(&[], Some("70000")).is_err());
        assert!(port(&["--verbose"], None).is_err());
    }

    #[test]
    fn limits_come_from_flags_or_their_variables() {
        let parsed = parse(
            args(&[
                "--header-read-timeout-ms",
                "1500",
                "--send-timeout-ms=250",
                "--max-connections",
                "64",
            ]),
            |name| (name == "KEEP_ALIVE_TIMEOUT_MS").then(|| "700".to_owned()),
        )
        .unwrap();
        assert_eq!(
            parsed.limits,
            ServeLimits {
                header_read_timeout: Some(Duration::from_millis(1500)),
                keep_alive_timeout: Some(Duration::from_millis(700)),
                send_timeout: Some(Duration::from_millis(250)),
                max_connections: Some(64),
            }
        );
        assert_eq!(
            parse(args(&[]), no_env).unwrap().limits,
            ServeLimits::default()
        );
    }

    #[test]
    fn malformed_limits_name_the_flag_or_variable() {
        let error = parse(args(&["--send-timeout-ms", "soon"]), no_env).unwrap_err();
        assert!(error.contains("--send-timeout-ms"), "{error}");
        let error = parse(args(&[]), |name| {
            (name == "MAX_CONNECTIONS").then(|| "-1".to_owned())
        })
        .unwrap_err();
        assert!(error.contains("MAX_CONNECTIONS"), "{error}");
        assert!(parse(args(&["--max-connections", "0"]), no_env).is_err());
    }

    #[test]
    fn a_role_is_all_web_or_worker_and_the_last_two_need_redis() {
        assert_eq!(parse(args(&[]), no_env).unwrap().role, Role::All);
        let web = parse(
            args(&["--role", "web", "--redis", "redis://127.0.0.1:1/"]),
            no_env,
        );
        assert_eq!(web.unwrap().role, Role::Web);
        let env = |name: &str| match name {
            "ROLE" => Some("worker".to_owned()),
            "REDIS_URL" => Some("redis://127.0.0.1:1/".to_owned()),
            _ => None,
        };
        assert_eq!(parse(args(&[]), env).unwrap().role, Role::Worker);
        let alone = parse(args(&["--role=worker"]), no_env).unwrap_err();
        assert!(alone.contains("--role worker needs --redis"), "{alone}");
        let bad = parse(args(&["--role", "boss"]), no_env).unwrap_err();
        assert!(bad.contains("invalid --role `boss`"), "{bad}");
    }
}
