//! [`DemoConfig`]: the knobs of the order desk.

use std::time::Duration;

use async_mvc::AsyncConfig;

/// Settings of an [`OrderDesk`](super::OrderDesk), built with consuming setters.
///
/// The defaults are those of the demo binary: an order is `packed` 2 s after it was placed and
/// `shipped` 4 s after it was placed. Tests use a few hundred milliseconds.
#[derive(Debug, Clone)]
#[must_use]
pub struct DemoConfig {
    pub(crate) packed_after: Duration,
    pub(crate) shipped_after: Duration,
    pub(crate) async_config: AsyncConfig,
}

impl DemoConfig {
    /// The default settings (2 s to `packed`, 4 s to `shipped`, [`AsyncConfig::new`]).
    pub fn new() -> Self {
        DemoConfig {
            packed_after: Duration::from_secs(2),
            shipped_after: Duration::from_secs(4),
            async_config: AsyncConfig::new(),
        }
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

    /// The async support settings of the API routes.
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
