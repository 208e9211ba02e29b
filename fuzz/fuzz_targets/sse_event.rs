//! Fuzzes the SSE encoder: an arbitrary sequence of `SseEventBuilder` calls either fails to build
//! — exactly when an id contains CR, LF or NUL, or an event name contains CR or LF — or encodes
//! to bytes that an independent WHATWG parser reads back as the same id, event type, data and
//! retry. Also checks the `SseEvent::data` and `SseEvent::comment` shortcuts. Never panics.

#![no_main]

use std::{collections::BTreeMap, time::Duration};

use arbitrary::Arbitrary;
use async_mvc::{SseEvent, SseEventError};
use sse_reference::{normalize, parse, Dispatched};
use libfuzzer_sys::fuzz_target;

/// A value for `json_data`: all of these serialize.
#[derive(Arbitrary, Debug, Clone)]
enum Json {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

/// One builder call.
#[derive(Arbitrary, Debug, Clone)]
enum Op {
    Id(String),
    Event(String),
    Data(String),
    Json(Json),
    Retry { secs: u64, nanos: u32 },
    Comment(String),
}

fn json_text(value: &Json) -> String {
    let text = match value {
        Json::Str(v) => serde_json::to_string(v),
        Json::Int(v) => serde_json::to_string(v),
        Json::Float(v) => serde_json::to_string(v),
        Json::Bool(v) => serde_json::to_string(v),
        Json::List(v) => serde_json::to_string(v),
        Json::Map(v) => serde_json::to_string(v),
    };
    text.expect("these values serialize")
}

fuzz_target!(|ops: Vec<Op>| {
    let mut builder = SseEvent::builder();
    let mut invalid = false;
    let mut id: Option<String> = None;
    let mut event_type: Option<String> = None;
    let mut data: Vec<String> = Vec::new();
    let mut retry: Option<u128> = None;
    for op in &ops {
        builder = match op.clone() {
            Op::Id(value) => {
                invalid |= value.contains(['\r', '\n', '\0']);
                id = Some(value.clone());
                builder.id(value)
            }
            Op::Event(value) => {
                invalid |= value.contains(['\r', '\n']);
                event_type = Some(value.clone());
                builder.event(value)
            }
            Op::Data(value) => {
                data.push(normalize(&value));
                builder.data(value)
            }
            Op::Json(value) => {
                data.push(json_text(&value));
                match &value {
                    Json::Str(v) => builder.json_data(v),
                    Json::Int(v) => builder.json_data(v),
                    Json::Float(v) => builder.json_data(v),
                    Json::Bool(v) => builder.json_data(v),
                    Json::List(v) => builder.json_data(v),
                    Json::Map(v) => builder.json_data(v),
                }
            }
            Op::Retry { secs, nanos } => {
                let value = Duration::new(secs, nanos % 1_000_000_000);
                retry = Some(value.as_millis());
                builder.retry(value)
            }
            Op::Comment(value) => builder.comment(value),
        };
    }

    let event = match builder.build() {
        Err(error) => {
            assert!(invalid, "unexpected error for {ops:?}: {error}");
            assert!(
                matches!(
                    error,
                    SseEventError::InvalidId { .. } | SseEventError::InvalidEventName { .. }
                ),
                "{error:?}"
            );
            return;
        }
        Ok(event) => {
            assert!(
                !invalid,
                "built an event with an invalid id or name: {ops:?}"
            );
            event
        }
    };

    let bytes = event.bytes();
    assert_eq!(event.is_empty(), ops.is_empty(), "{ops:?}");
    assert_eq!(event.id(), id.as_deref());
    if !bytes.is_empty() {
        assert!(bytes.ends_with(b"\n\n"), "{bytes:?}");
        // Exactly one blank line: the one that ends the event.
        assert!(
            !bytes[..bytes.len() - 1].windows(2).any(|w| w == b"\n\n"),
            "{bytes:?}"
        );
        assert!(!bytes.contains(&b'\r'), "{bytes:?}");
    }

    let parsed = parse(bytes);
    let id = id.unwrap_or_default();
    assert_eq!(parsed.last_event_id, id, "{bytes:?}");
    assert_eq!(parsed.retry, retry, "{bytes:?}");
    if data.is_empty() {
        assert!(parsed.events.is_empty(), "{bytes:?} -> {parsed:?}");
    } else {
        let event_type = event_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "message".to_owned());
        assert_eq!(
            parsed.events,
            vec![Dispatched {
                event_type,
                data: data.join("\n"),
                last_event_id: id,
            }],
            "{bytes:?}"
        );
    }

    // The shortcuts, on every text of the input.
    for op in &ops {
        if let Op::Data(text) | Op::Comment(text) = op {
            let parsed = parse(SseEvent::data(text).bytes());
            assert_eq!(
                parsed.events,
                vec![Dispatched {
                    event_type: "message".to_owned(),
                    data: normalize(text),
                    last_event_id: String::new(),
                }]
            );
            let comment = SseEvent::comment(text);
            assert_eq!(parse(comment.bytes()), Default::default(), "{comment:?}");
            let json = SseEvent::json(text).expect("a string serializes");
            let parsed = parse(json.bytes());
            assert_eq!(parsed.events.len(), 1);
            let back: String =
                serde_json::from_str(&parsed.events[0].data).expect("the data is JSON");
            assert_eq!(&back, text);
        }
    }
});
