//! The executor's settings ([`Config`]), their defaults, and what makes them invalid
//! ([`ExecutorConfigError`]). The lowest file of the executor.

use std::time::Duration;

/// Default `core_pool_size`: 8.
pub(super) const DEFAULT_CORE_POOL_SIZE: usize = 8;
/// Default `max_pool_size`: 32.
pub(super) const DEFAULT_MAX_POOL_SIZE: usize = 32;
/// Default `queue_capacity`: 256.
pub(super) const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default `keep_alive`: 60 s.
pub(super) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Default thread name prefix.
pub(super) const DEFAULT_THREAD_NAME_PREFIX: &str = "async-mvc-task-";
/// Default `Retry-After` hint of a rejection: 1 s.
pub(super) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The largest `max_pool_size` accepted: 65 536 threads.
pub(super) const MAX_POOL_SIZE_LIMIT: usize = 65_536;

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) core_pool_size: usize,
    pub(super) max_pool_size: usize,
    pub(super) queue_capacity: usize,
    pub(super) keep_alive: Duration,
    pub(super) thread_name_prefix: String,
    pub(super) retry_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            core_pool_size: DEFAULT_CORE_POOL_SIZE,
            max_pool_size: DEFAULT_MAX_POOL_SIZE,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            thread_name_prefix: DEFAULT_THREAD_NAME_PREFIX.to_owned(),
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), ExecutorConfigError> {
        if self.max_pool_size == 0 {
            return Err(ExecutorConfigError::ZeroMaxPoolSize);
        }
        if self.max_pool_size > MAX_POOL_SIZE_LIMIT {
            return Err(ExecutorConfigError::MaxPoolSizeTooLarge {
                max: self.max_pool_size,
                limit: MAX_POOL_SIZE_LIMIT,
            });
        }
        if self.core_pool_size > self.max_pool_size {
            return Err(ExecutorConfigError::CoreExceedsMax {
                core: self.core_pool_size,
                max: self.max_pool_size,
            });
        }
        if self.thread_name_prefix.is_empty() {
            return Err(ExecutorConfigError::EmptyThreadNamePrefix);
        }
        if self.thread_name_prefix.contains('\0') {
            return Err(ExecutorConfigError::ThreadNamePrefixContainsNul);
        }
        Ok(())
    }
}

/// Why [`AsyncTaskExecutorBuilder::build`](super::AsyncTaskExecutorBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorConfigError {
    /// `max_pool_size` was 0: nothing could ever run.
    #[error("max_pool_size must be at least 1")]
    ZeroMaxPoolSize,
    /// `max_pool_size` was above [`AsyncTaskExecutor::MAX_POOL_SIZE_LIMIT`](super::AsyncTaskExecutor::MAX_POOL_SIZE_LIMIT).
    #[error("max_pool_size ({max}) exceeds the limit of {limit} threads")]
    MaxPoolSizeTooLarge {
        /// The configured `max_pool_size`.
        max: usize,
        /// The limit.
        limit: usize,
    },
    /// `core_pool_size` was larger than `max_pool_size`.
    #[error("core_pool_size ({core}) exceeds max_pool_size ({max})")]
    CoreExceedsMax {
        /// The configured `core_pool_size`.
        core: usize,
        /// The configured `max_pool_size`.
        max: usize,
    },
    /// The thread name prefix was empty.
    #[error("thread_name_prefix must not be empty")]
    EmptyThreadNamePrefix,
    /// The thread name prefix held a NUL byte, which thread names cannot contain.
    #[error("thread_name_prefix must not contain a NUL byte")]
    ThreadNamePrefixContainsNul,
    /// The executor's runtime could not be started (the OS refused a thread, …).
    #[error("could not start the executor's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
