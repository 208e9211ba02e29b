//! [`ShutdownSignal`]: how a graceful shutdown reaches the results still waiting.
//!
//! Thousands of long polls register and leave at once when a burst of them times out. A
//! `CancellationToken` keeps its waiters behind one mutex, and that lock was the bottleneck:
//! 15,000 polls opened as a burst were answered late by their own timeouts (bench W3b, p99
//! 3.8× the hand-written baseline). The waiters are spread over [`SHARDS`] `Notify`s instead,
//! chosen by a key the waiter already has (its result's address), so that they rarely meet.

use std::{
    future::Future,
    pin::pin,
    sync::atomic::{AtomicBool, Ordering},
};

use tokio::sync::Notify;

/// How many independent waiter lists there are.
const SHARDS: usize = 32;

/// Resolves every [`wait`](Self::wait) once [`fire`](Self::fire) was called.
pub(super) struct ShutdownSignal {
    fired: AtomicBool,
    shards: [Notify; SHARDS],
}

impl ShutdownSignal {
    pub(super) fn new() -> Self {
        ShutdownSignal {
            fired: AtomicBool::new(false),
            shards: std::array::from_fn(|_| Notify::new()),
        }
    }

    /// Resolves every waiter, now and from now on.
    pub(super) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        for shard in &self.shards {
            shard.notify_waiters();
        }
    }

    /// Resolves once the signal fired; `key` spreads waiters over the shards (any number that
    /// differs between waiters, such as an address).
    pub(super) fn wait(&self, key: usize) -> impl Future<Output = ()> + Send + '_ {
        let shard = &self.shards[(key >> 4) % SHARDS];
        async move {
            let mut notified = pin!(shard.notified());
            // Registered before the flag is read: a `fire` in between is not missed.
            notified.as_mut().enable();
            if self.fired.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_waiters_before_and_after_it_fires() {
        let signal = std::sync::Arc::new(ShutdownSignal::new());
        let waiters: Vec<_> = (0..100_usize)
            .map(|key| {
                let signal = signal.clone();
                tokio::spawn(async move { signal.wait(key * 64).await })
            })
            .collect();
        tokio::task::yield_now().await;
        signal.fire();
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("no panic");
        }
        // Fired already: resolves at once.
        signal.wait(7).await;
    }
}
