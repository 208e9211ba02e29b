//! The Server-Sent Events wire format: [`SseEvent`] and its builder, and the [`LastEventId`]
//! extractor. A leaf below `config` and `emitter`: it imports nothing else from the crate.
//!
//! The encoding follows Spring's `SseEmitter` byte for byte and is lossless for the WHATWG HTML
//! standard's event stream interpretation; `event/tests.rs` checks both.

mod event;
mod last_event_id;

pub use event::{SseEvent, SseEventBuilder, SseEventError};
pub use last_event_id::LastEventId;
