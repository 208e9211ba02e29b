//! The server's limits and their defaults, named after their Tomcat and nginx counterparts.

use std::time::Duration;

/// How long a client may take to send a whole request head — from the connection's accept,
/// or from the first byte of a next request — before the connection is closed: 20 s, Tomcat's
/// `connectionTimeout` (nginx's `client_header_timeout` is 60 s). Blank lines before a request
/// line are part of the head: a flood of them is closed at this timeout too.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a keep-alive connection may wait for its next request: 20 s, Tomcat's
/// `keepAliveTimeout` (which defaults to `connectionTimeout`; nginx's `keepalive_timeout` is
/// 75 s). Over HTTP/2, how long a connection may have no open stream.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a response may wait for the client to accept a byte before the connection is
/// closed (with a reset, freeing its buffers): 60 s, nginx's `send_timeout`. This is what
/// finally frees the socket of an event stream whose client stopped reading.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How many requests one HTTP/1.1 connection may carry before the server answers with
/// `Connection: close`: 1,000, nginx's `keepalive_requests` (Tomcat's `maxKeepAliveRequests`
/// is 100).
pub const DEFAULT_MAX_KEEP_ALIVE_REQUESTS: u64 = 1_000;

/// The share of the open-file limit that the default connection limit leaves for everything
/// else (files, the broker, logs): 1/20, and at least [`MIN_RESERVED_FILES`].
const RESERVED_FILES_DIVISOR: u64 = 20;

/// The least number of file descriptors the default connection limit leaves free: 64.
pub const MIN_RESERVED_FILES: u64 = 64;

/// The connection limit when the open-file limit is unknown (or not on Unix): 8,192, Tomcat's
/// `maxConnections` for its NIO connector.
const FALLBACK_MAX_CONNECTIONS: usize = 8_192;

/// The resolved settings of one server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) header_read_timeout: Duration,
    pub(super) keep_alive_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) max_keep_alive_requests: u64,
    /// `None`: from the open-file limit, when the server starts.
    pub(super) max_connections: Option<usize>,
    pub(super) http2: bool,
    pub(super) tcp_nodelay: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_keep_alive_requests: DEFAULT_MAX_KEEP_ALIVE_REQUESTS,
            max_connections: None,
            http2: true,
            tcp_nodelay: false,
        }
    }
}

/// The default connection limit: the process's open-file limit (the soft `RLIMIT_NOFILE`)
/// minus a reserve of 1/20 of it, at least [`MIN_RESERVED_FILES`]; 19,000 under a limit of
/// 20,000. Where the limit cannot be read, 8,192 (Tomcat's `maxConnections`).
pub fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(limit) => {
            let reserve = (limit / RESERVED_FILES_DIVISOR).max(MIN_RESERVED_FILES);
            usize::try_from(limit.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
        }
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_leaves_a_reserve_below_the_open_file_limit() {
        let limit = default_max_connections();
        if let Some(files) = open_file_limit() {
            let limit = limit as u64;
            assert!(limit < files, "{limit} < {files}");
            assert!(files - limit >= MIN_RESERVED_FILES.min(files - 1));
        }
    }
}
