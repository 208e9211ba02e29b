//! [`FaultyBroker`]: the test kit's (`async_mvc_test::FaultyBroker`), re-exported where the
//! end-to-end tests have always found it.

pub use async_mvc_test::{Faults, FaultyBroker};
