//! Streaming responses: Spring MVC's `ResponseBodyEmitter`, `SseEmitter`,
//! `StreamingResponseBody` and reactive (multi-value) return values.
//!
//! One concept per file: `channel.rs` (the bounded queue between an emitter handle and its
//! body, and the channel as a body source), `body.rs` (the response body: timeout, heartbeat,
//! disconnect, and what it counts), `lifecycle.rs` (admitting a stream and building its body),
//! `error.rs` ([`EmitterError`]),
//! `response_body.rs` ([`ResponseBodyEmitter`]), `sse.rs` ([`SseEmitter`]; the wire format is
//! the crate's `sse` module), `broadcast.rs` ([`SseBroadcaster`]), `streaming.rs`
//! ([`StreamingResponseBody`]) and `reactive.rs` ([`ReactiveStream`]).

mod body;
mod broadcast;
mod channel;
mod error;
mod lifecycle;
mod reactive;
mod response_body;
mod sse;
mod streaming;

pub use broadcast::{SseBroadcaster, DEFAULT_REPLAY, DEFAULT_SLOW_SUBSCRIBER_TIMEOUT};
pub use error::EmitterError;
pub use reactive::{ReactiveFuture, ReactiveStream};
pub use response_body::{
    EmitterBuilder, ResponseBodyEmitter, DEFAULT_BUFFER_BYTES, DEFAULT_CAPACITY,
    DEFAULT_EMITTER_SEND_TIMEOUT,
};
pub use sse::{SseEmitter, SseEmitterBuilder, DEFAULT_HEARTBEAT};
pub use streaming::{BodyWriter, StreamingResponseBody};
