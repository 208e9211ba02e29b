//! [`RedisServer`]: a real `redis-server` for one test (defined with the demo's other process
//! helpers, which the soak binary uses too).

pub use async_mvc_examples::redis_server::RedisServer;
