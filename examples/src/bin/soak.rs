//! The soak test ("No leaks"): every kind of async request, many times over, in one process.
//!
//! ```text
//! cargo run --release -p async-mvc-examples --bin soak -- [--requests N] [--rounds R]
//!     [--concurrency C] [--seed S]
//! ```
//!
//! ```text
//! cargo run --release -p async-mvc-examples --bin soak -- --cluster [--clients N]
//!     [--duration-s S]
//! ```
//!
//! `--cluster` runs [`async_mvc_examples::soak_cluster`] instead: a real `redis-server`, two
//! `--role web` and two `--role worker` demo processes (this binary, as `soak demo …`), mixed
//! load (64 clients, 60 s) through a worker SIGKILL, a web SIGKILL and Redis killed for 5 s;
//! it prints requests sent, answered, lost, cut by the web kill, duplicated, and every
//! process's RSS before and after, and exits with 1 if anything was lost or duplicated.
//!
//! Serves the soak app (`async_mvc_examples::soak`) on `127.0.0.1:0`, sends `N` mixed requests
//! a round (100,000 by default; long polls, callables, web tasks, SSE emitter and broadcaster
//! streams, NDJSON streams; 10% of the clients disconnect mid-wait or mid-stream) with `C` in
//! flight (256), for `R` rounds (2). After each round it waits for the async manager to settle
//! and prints its counters, the live tokio tasks against the idle count, and the RSS. Exits
//! with 1 if `in_flight` or the live tasks do not return to idle, 2 on a usage error.

use std::process::ExitCode;

use async_mvc_examples::{
    soak::{self, SoakConfig},
    soak_cluster::{self, ClusterSoakConfig},
};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: soak [--requests N] [--rounds R] [--concurrency C] [--seed S]   (defaults: 100000, 2, 256)
       soak --cluster [--clients N] [--duration-s S]   (defaults: 64, 60)";

/// The demo's allocator, for the demo processes `--cluster` starts from this binary.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        // A child process of `--cluster`: this binary as the demo.
        Some("demo") => {
            args.next();
            async_mvc_examples::demo::init_logging();
            return async_mvc_examples::demo::run(args).await;
        }
        Some("--cluster") => {
            args.next();
            return cluster(args).await;
        }
        _ => {}
    }
    let config = match parse(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();

    let files = soak::raise_fd_limit();
    println!(
        "soak: {} requests x {} rounds, {} in flight, {}% disconnects, seed {:#x}; open files limit {files}; {} worker threads",
        config.requests,
        config.rounds,
        config.concurrency,
        config.disconnect_percent,
        config.seed,
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    let report = match soak::run(&config, |round| println!("{round}")).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("cannot start the soak server: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    if report.leaks().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Warnings and errors to stderr, unless `RUST_LOG` says otherwise.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `soak --cluster`: the cluster soak, with this binary as the demo.
async fn cluster(args: impl Iterator<Item = String>) -> ExitCode {
    let config = match parse_cluster(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find this binary to start the demo processes");
        return ExitCode::FAILURE;
    };
    println!(
        "soak --cluster: {} clients for {} s; redis + 2 web + 2 worker processes",
        config.clients,
        config.duration.as_secs()
    );
    let demo = || {
        let mut command = std::process::Command::new(&me);
        command.arg("demo");
        command
    };
    match soak_cluster::run(demo, &config, |step| println!("{step}")).await {
        Ok(report) => {
            println!("{report}");
            if report.failures().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("the cluster did not start: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_cluster(args: impl Iterator<Item = String>) -> Result<ClusterSoakConfig, String> {
    let mut config = ClusterSoakConfig::default();
    for (flag, value) in flags(args)? {
        let number = whole_number(&flag, &value, 1)?;
        match flag.as_str() {
            "--clients" => config.clients = usize::try_from(number.min(4_096)).unwrap_or(64),
            "--duration-s" => config.duration = std::time::Duration::from_secs(number.max(10)),
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(config)
}

/// `--flag N` and `--flag=N` pairs, in order.
fn flags(mut args: impl Iterator<Item = String>) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err("Soaks the async-mvc async request kinds and checks for leaks.".to_owned());
        }
        pairs.push(match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => {
                let value = args.next().ok_or(format!("{arg} needs a value"))?;
                (arg, value)
            }
        });
    }
    Ok(pairs)
}

/// `value` of `flag` as a whole number of at least `min`.
fn whole_number(flag: &str, value: &str, min: u64) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "invalid {flag} `{value}`: expected a number >= {min}"
        )),
    }
}

/// The config from the arguments (`--flag N` or `--flag=N`), defaults otherwise.
fn parse(args: impl Iterator<Item = String>) -> Result<SoakConfig, String> {
    let mut config = SoakConfig::default();
    for (flag, value) in flags(args)? {
        let number = |min: u64| whole_number(&flag, &value, min);
        match flag.as_str() {
            "--requests" => config.requests = number(1)?,
            "--rounds" => {
                config.rounds = u32::try_from(number(1)?).map_err(|_| "too many rounds")?;
            }
            "--concurrency" => {
                config.concurrency =
                    usize::try_from(number(1)?.min(10_000)).map_err(|_| "invalid concurrency")?;
            }
            "--seed" => config.seed = number(0)?,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_cluster};

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn flags_override_defaults() {
        let config = parse(args(&[])).unwrap();
        assert_eq!(
            (config.requests, config.rounds, config.concurrency),
            (100_000, 2, 256)
        );
        let config = parse(args(&[
            "--requests",
            "500",
            "--rounds=3",
            "--concurrency",
            "8",
        ]))
        .unwrap();
        assert_eq!(
            (config.requests, config.rounds, config.concurrency),
            (500, 3, 8)
        );
        assert!(parse(args(&["--requests"])).is_err());
        assert!(parse(args(&["--requests", "0"])).is_err());
        assert!(parse(args(&["--rounds", "x"])).is_err());
        assert!(parse(args(&["--verbose", "1"])).is_err());
    }

    #[test]
    fn cluster_flags_override_defaults() {
        let config = parse_cluster(args(&[])).unwrap();
        assert_eq!((config.clients, config.duration.as_secs()), (64, 60));
        let config = parse_cluster(args(&["--clients", "8", "--duration-s=20"])).unwrap();
        assert_eq!((config.clients, config.duration.as_secs()), (8, 20));
        assert!(parse_cluster(args(&["--clients", "0"])).is_err());
        assert!(parse_cluster(args(&["--requests", "5"])).is_err());
    }
}
