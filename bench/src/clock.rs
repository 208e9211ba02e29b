//! A monotonic clock whose readings two processes on the same machine can compare.

use rustix::time::{clock_gettime, ClockId};

/// `CLOCK_MONOTONIC` in nanoseconds. The server stamps a long poll's body with it when it sets
/// the result; the client subtracts that from its own reading when the response arrives.
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}
