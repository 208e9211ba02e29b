//! Demo servers for async-mvc.
