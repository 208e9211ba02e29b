//! The soak test ("No leaks"): every kind of async request, many times over, in one process.
//!
//! ```text
//! cargo run --release -p async-mvc-examples --bin soak -- [--requests N] [--rounds R]
//!     [--concurrency C] [--seed S]
//! ```
//!
//! Serves the soak app (`async_mvc_examples::soak`) on `127.0.0.1:0`, sends `N` mixed requests
//! a round (100,000 by default; long polls, callables, web tasks, SSE emitter and broadcaster
//! streams, NDJSON streams; 10% of the clients disconnect mid-wait or mid-stream) with `C` in
//! flight (256), for `R` rounds (2). After each round it waits for the async manager to settle
//! and prints its counters, the live tokio tasks against the idle count, and the RSS. Exits
//! with 1 if `in_flight` or the live tasks do not return to idle, 2 on a usage error.

use std::process::ExitCode;

use async_mvc_examples::soak::{self, SoakConfig};
use tracing_subscriber::EnvFilter;

const USAGE: &str =
    "usage: soak [--requests N] [--rounds R] [--concurrency C] [--seed S]   (defaults: 100000, 2, 256)";

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

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

/// The config from the arguments (`--flag N` or `--flag=N`), defaults otherwise.
fn parse(mut args: impl Iterator<Item = String>) -> Result<SoakConfig, String> {
    let mut config = SoakConfig::default();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err("Soaks the async-mvc async request kinds and checks for leaks.".to_owned());
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => {
                let value = args.next().ok_or(format!("{arg} needs a value"))?;
                (arg, value)
            }
        };
        let number = |min: u64| -> Result<u64, String> {
            match value.trim().parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(format!(
                    "invalid {flag} `{value}`: expected a number >= {min}"
                )),
            }
        };
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
    use super::parse;

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
}
