//! [`DemoConfig`]: the knobs of the order desk.

use std::time::Duration;

use async_mvc::{AsyncConfig, AsyncTaskExecutor};

/// The default timeout of an invoice: 5 s.
pub const DEFAULT_INVOICE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default number of extra SHA-256 rounds spent sealing an invoice: 100 000, about 6 ms of
/// work in a release build (nearly a second in a debug build).
pub const DEFAULT_INVOICE_HASH_ROUNDS: u32 = 100_000;

/// Settings of an [`OrderDesk`](super::OrderDesk), built with consuming setters.
///
/// The defaults are those of the demo binary: an order is `packed` 2 s after it was placed and
/// `shipped` 4 s after it was placed. Tests use a few hundred milliseconds.
#[derive(Debug, Clone)]
#[must_use]
pub struct DemoConfig {
    pub(crate) packed_after: Duration,
    pub(crate) shipped_after: Duration,
    pub(crate) invoice_timeout: Duration,
    pub(crate) invoice_hash_rounds: u32,
    pub(crate) task_executor: AsyncTaskExecutor,
    pub(crate) async_config: AsyncConfig,
}

impl DemoConfig {
    /// The default settings: 2 s to `packed`, 4 s to `shipped`; invoices time out after
    /// [`DEFAULT_INVOICE_TIMEOUT`], spend [`DEFAULT_INVOICE_HASH_ROUNDS`] on their seal and run
    /// on the demo's own executor ([`invoice_executor`](Self::invoice_executor)); otherwise
    /// [`AsyncConfig::new`].
    pub fn new() -> Self {
        DemoConfig {
            packed_after: Duration::from_secs(2),
            shipped_after: Duration::from_secs(4),
            invoice_timeout: DEFAULT_INVOICE_TIMEOUT,
            invoice_hash_rounds: DEFAULT_INVOICE_HASH_ROUNDS,
            task_executor: DemoConfig::invoice_executor(),
            async_config: AsyncConfig::new(),
        }
    }

    /// The demo's executor for blocking tasks: threads named `invoice-…`, 2 core threads, at
    /// most 4, 16 queued tasks; beyond that a task is rejected (`503` with `Retry-After`).
    ///
    /// Should the pool not build, the library's default executor is used instead (logged).
    pub fn invoice_executor() -> AsyncTaskExecutor {
        AsyncTaskExecutor::builder()
            .thread_name_prefix("invoice-")
            .core_pool_size(2)
            .max_pool_size(4)
            .queue_capacity(16)
            .build()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot build the invoice executor; using the default");
                AsyncTaskExecutor::default()
            })
    }

    /// How long after an order was placed the fulfilment worker marks it `packed`.
    pub fn packed_after(mut self, delay: Duration) -> Self {
        self.packed_after = delay;
        self
    }

    /// How long after an order was placed the fulfilment worker marks it `shipped` (never
    /// before it is `packed`).
    pub fn shipped_after(mut self, delay: Duration) -> Self {
        self.shipped_after = delay;
        self
    }

    /// How long `POST /api/orders/{id}/invoice` may take before it answers `503`.
    pub fn invoice_timeout(mut self, timeout: Duration) -> Self {
        self.invoice_timeout = timeout;
        self
    }

    /// How many extra SHA-256 rounds an invoice's seal takes: the knob for how long rendering
    /// an invoice blocks an executor thread. `0` makes it nearly instant.
    pub fn invoice_hash_rounds(mut self, rounds: u32) -> Self {
        self.invoice_hash_rounds = rounds;
        self
    }

    /// The executor running the blocking tasks (invoices); installed into the
    /// [`async_config`](Self::async_config) with [`AsyncConfig::task_executor`], replacing any
    /// executor set there.
    pub fn task_executor(mut self, executor: AsyncTaskExecutor) -> Self {
        self.task_executor = executor;
        self
    }

    /// The async support settings of the API routes. Its task executor is replaced by
    /// [`task_executor`](Self::task_executor).
    pub fn async_config(mut self, config: AsyncConfig) -> Self {
        self.async_config = config;
        self
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig::new()
    }
}
