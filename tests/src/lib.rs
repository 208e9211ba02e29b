//! End-to-end tests for async-mvc.
