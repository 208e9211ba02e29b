//! Tests of the SSE wire format: exact bytes (Spring's appendix W), validation, and properties
//! checked against the independent WHATWG parser of `sse-reference`.

use std::time::Duration;

use proptest::prelude::*;
use serde::Serialize;

use sse_reference::{parse, Dispatched};

use super::*;

fn wire(event: &SseEvent) -> &str {
    std::str::from_utf8(event.bytes()).unwrap()
}

fn built(builder: SseEventBuilder) -> String {
    wire(&builder.build().unwrap()).to_owned()
}

// --- Appendix W: byte-exact with Spring's SseEmitterTests ---

#[test]
fn w1_send_string() {
    assert_eq!(wire(&SseEvent::data("foo")), "data:foo\n\n");
    assert_eq!(built(SseEvent::builder().data("foo")), "data:foo\n\n");
}

#[test]
fn w2_two_data_calls() {
    assert_eq!(
        built(SseEvent::builder().data("foo").data("bar")),
        "data:foo\ndata:bar\n\n"
    );
}

#[test]
fn w3_multiline_data_with_lf_cr_and_crlf() {
    for nl in ["\n", "\r", "\r\n"] {
        let text = format!("foo{nl}bar{nl}baz");
        assert_eq!(
            built(SseEvent::builder().data(&text)),
            "data:foo\ndata:bar\ndata:baz\n\n",
            "line break {nl:?}"
        );
        assert_eq!(
            wire(&SseEvent::data(&text)),
            "data:foo\ndata:bar\ndata:baz\n\n"
        );
    }
}

#[test]
fn w4_fields_in_call_order() {
    let event = SseEvent::builder()
        .comment("blah")
        .event("test")
        .retry(Duration::from_millis(5000))
        .id("1")
        .data("foo");
    assert_eq!(
        built(event),
        ":blah\nevent:test\nretry:5000\nid:1\ndata:foo\n\n"
    );
}

#[test]
fn w5_data_before_other_fields() {
    let event = SseEvent::builder()
        .comment("blah")
        .data("foo")
        .data("bar")
        .event("test")
        .retry(Duration::from_millis(5000))
        .id("1");
    assert_eq!(
        built(event),
        ":blah\ndata:foo\ndata:bar\nevent:test\nretry:5000\nid:1\n\n"
    );
}

#[test]
fn w6_multiline_comment() {
    let event = SseEvent::builder().comment("foo\nbar\nbaz").data("payload");
    assert_eq!(built(event), ":foo\n:bar\n:baz\ndata:payload\n\n");
}

#[derive(Serialize)]
struct Person {
    id: u32,
    name: &'static str,
}

#[test]
fn w7_json_data() {
    let event = SseEvent::builder()
        .comment("a test")
        .event("update")
        .id("1")
        .retry(Duration::from_millis(5000))
        .json_data(&Person { id: 1, name: "Joe" })
        .json_data(&Person {
            id: 2,
            name: "John",
        });
    assert_eq!(
        built(event),
        ":a test\nevent:update\nid:1\nretry:5000\n\
         data:{\"id\":1,\"name\":\"Joe\"}\ndata:{\"id\":2,\"name\":\"John\"}\n\n"
    );
}

#[test]
fn w11_empty_builder_is_zero_bytes() {
    let event = SseEvent::builder().build().unwrap();
    assert!(event.is_empty());
    assert_eq!(event.bytes().len(), 0);
    assert_eq!(event.id(), None);
}

#[test]
fn w12_heartbeat() {
    assert_eq!(wire(&SseEvent::heartbeat()), ":\n\n");
    assert_eq!(SseEvent::heartbeat(), SseEvent::comment(""));
    assert_eq!(built(SseEvent::builder().comment("")), ":\n\n");
}

// --- Other encodings ---

#[test]
fn trailing_newline_gives_empty_last_data_line() {
    assert_eq!(wire(&SseEvent::data("a\n")), "data:a\ndata:\n\n");
    assert_eq!(wire(&SseEvent::data("a\r\n")), "data:a\ndata:\n\n");
    assert_eq!(wire(&SseEvent::data("\n")), "data:\ndata:\n\n");
}

#[test]
fn empty_data() {
    assert_eq!(wire(&SseEvent::data("")), "data:\n\n");
    assert_eq!(built(SseEvent::builder().data("")), "data:\n\n");
}

#[test]
fn cr_lf_counts_once_but_lf_cr_twice() {
    assert_eq!(wire(&SseEvent::data("a\r\nb")), "data:a\ndata:b\n\n");
    assert_eq!(wire(&SseEvent::data("a\n\rb")), "data:a\ndata:\ndata:b\n\n");
    assert_eq!(wire(&SseEvent::data("a\r\rb")), "data:a\ndata:\ndata:b\n\n");
}

#[test]
fn non_ascii_data() {
    let event = SseEvent::data("héllo 😀\n日本");
    assert_eq!(wire(&event), "data:héllo 😀\ndata:日本\n\n");
    assert_eq!(
        event.bytes().as_ref(),
        "data:héllo 😀\ndata:日本\n\n".as_bytes()
    );
}

#[test]
fn leading_space_gets_one_extra_space() {
    let event = SseEvent::builder()
        .id(" 1")
        .event("  e")
        .data(" a\nb\n b")
        .build()
        .unwrap();
    assert_eq!(
        wire(&event),
        "id:  1\nevent:   e\ndata:  a\ndata:b\ndata:  b\n\n"
    );
    assert_eq!(event.id(), Some(" 1"));
    let parsed = parse(event.bytes());
    assert_eq!(parsed.events[0].data, " a\nb\n b");
    assert_eq!(parsed.events[0].event_type, "  e");
    assert_eq!(parsed.events[0].last_event_id, " 1");
}

#[test]
fn comment_is_written_verbatim() {
    assert_eq!(wire(&SseEvent::comment(" x")), ": x\n\n");
    assert_eq!(wire(&SseEvent::comment("a\r\nb\r")), ":a\n:b\n:\n\n");
}

#[test]
fn retry_is_whole_milliseconds() {
    assert_eq!(
        built(SseEvent::builder().retry(Duration::from_micros(1_999))),
        "retry:1\n\n"
    );
    assert_eq!(
        built(SseEvent::builder().retry(Duration::ZERO)),
        "retry:0\n\n"
    );
    assert_eq!(
        built(SseEvent::builder().retry(Duration::MAX)),
        format!("retry:{}\n\n", Duration::MAX.as_millis())
    );
}

#[test]
fn json_event() {
    let event = SseEvent::json(&Person { id: 1, name: "Joe" }).unwrap();
    assert_eq!(wire(&event), "data:{\"id\":1,\"name\":\"Joe\"}\n\n");
    assert_eq!(wire(&SseEvent::json("a\nb").unwrap()), "data:\"a\\nb\"\n\n");
}

#[test]
fn id_accessor_gives_last_id() {
    let event = SseEvent::builder()
        .id("1")
        .id("2")
        .data("x")
        .build()
        .unwrap();
    assert_eq!(event.id(), Some("2"));
    assert_eq!(wire(&event), "id:1\nid:2\ndata:x\n\n");
    assert_eq!(SseEvent::data("x").id(), None);
    assert_eq!(event.clone().into_bytes(), event.bytes().clone());
    assert!(!event.is_empty());
}

#[test]
fn empty_id_and_event_are_written() {
    assert_eq!(
        built(SseEvent::builder().id("").event("").data("x")),
        "id:\nevent:\ndata:x\n\n"
    );
}

// --- Errors ---

#[test]
fn invalid_ids_are_rejected() {
    for (id, bad) in [
        ("a\nb", '\n'),
        ("a\rb", '\r'),
        ("a\r\nb", '\r'),
        ("a\0b", '\0'),
    ] {
        match SseEvent::builder().data("x").id(id).data("y").build() {
            Err(SseEventError::InvalidId { id: got, character }) => {
                assert_eq!(got, id);
                assert_eq!(character, bad);
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
}

#[test]
fn invalid_event_names_are_rejected() {
    for (name, bad) in [("a\nb", '\n'), ("a\rb", '\r'), ("\r\n", '\r')] {
        match SseEvent::builder().event(name).build() {
            Err(SseEventError::InvalidEventName {
                name: got,
                character,
            }) => {
                assert_eq!(got, name);
                assert_eq!(character, bad);
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // NUL is harmless in an event name.
    assert_eq!(built(SseEvent::builder().event("a\0b")), "event:a\0b\n\n");
}

#[test]
fn error_messages_name_the_character() {
    let message = |builder: SseEventBuilder| builder.build().unwrap_err().to_string();
    let text = message(SseEvent::builder().id("a\rb"));
    assert!(text.contains("carriage return (CR, U+000D)"), "{text}");
    assert!(text.contains("\"a\\rb\""), "{text}");
    let text = message(SseEvent::builder().id("a\nb"));
    assert!(text.contains("line feed (LF, U+000A)"), "{text}");
    let text = message(SseEvent::builder().id("\0"));
    assert!(text.contains("NUL character (U+0000)"), "{text}");
    let text = message(SseEvent::builder().event("x\ny"));
    assert!(
        text.contains("event name") && text.contains("line feed"),
        "{text}"
    );
}

struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("boom"))
    }
}

#[test]
fn json_error_is_returned_by_build() {
    let error = SseEvent::builder()
        .data("x")
        .json_data(&Unserializable)
        .build()
        .unwrap_err();
    assert!(matches!(error, SseEventError::Json(_)));
    assert!(error.to_string().contains("boom"), "{error}");
    assert!(matches!(
        SseEvent::json(&Unserializable),
        Err(SseEventError::Json(_))
    ));
}

#[test]
fn first_error_wins_and_survives_cloning() {
    let builder = SseEvent::builder()
        .json_data(&Unserializable)
        .id("\n")
        .event("\r");
    let copy = builder.clone();
    let first = builder.build().unwrap_err();
    let second = copy.build().unwrap_err();
    assert!(matches!(first, SseEventError::Json(_)));
    assert!(matches!(second, SseEventError::Json(_)));
    assert!(second.to_string().contains("boom"), "{second}");

    let builder = SseEvent::builder().id("\n");
    let copy = builder.clone();
    drop(builder);
    assert!(matches!(
        copy.clone().build(),
        Err(SseEventError::InvalidId { .. })
    ));
    assert!(matches!(copy.build(), Err(SseEventError::InvalidId { .. })));
}

#[test]
fn cloned_event_shares_bytes() {
    let event = SseEvent::data("x".repeat(1000));
    let copy = event.clone();
    assert_eq!(copy, event);
    assert_eq!(copy.bytes().as_ptr(), event.bytes().as_ptr());
}

// --- Properties ---

#[derive(Debug, Clone)]
enum Op {
    Id(String),
    Event(String),
    Data(String),
    Json(String),
    Retry(Duration),
    Comment(String),
}

/// Strings made of awkward pieces: line breaks, spaces, NUL, colons, non-ASCII, anything.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        1 => Just("\r".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("\0".to_owned()),
        3 => Just(" ".to_owned()),
        2 => Just(":".to_owned()),
        2 => Just("é😀\u{FEFF}".to_owned()),
        6 => "[a-z0-9]{1,4}",
        2 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => text().prop_map(Op::Id),
        2 => text().prop_map(Op::Event),
        4 => text().prop_map(Op::Data),
        1 => text().prop_map(Op::Json),
        1 => (any::<u64>(), 0..1_000_000_000u32)
            .prop_map(|(secs, nanos)| Op::Retry(Duration::new(secs, nanos))),
        2 => text().prop_map(Op::Comment),
    ]
}

fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn encoding_is_lossless(ops in prop::collection::vec(op(), 0..8)) {
        let mut builder = SseEvent::builder();
        let mut invalid = false;
        let mut id = None;
        let mut event_type = None;
        let mut data: Vec<String> = Vec::new();
        let mut retry = None;
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
                    data.push(serde_json::to_string(&value).unwrap());
                    builder.json_data(&value)
                }
                Op::Retry(value) => {
                    retry = Some(value.as_millis());
                    builder.retry(value)
                }
                Op::Comment(value) => builder.comment(value),
            };
        }
        let result = builder.build();
        prop_assert_eq!(result.is_err(), invalid, "{:?}", result);
        let Ok(event) = result else { return Ok(()) };

        prop_assert_eq!(event.is_empty(), ops.is_empty());
        prop_assert_eq!(event.id(), id.as_deref());
        if !event.is_empty() {
            prop_assert!(event.bytes().ends_with(b"\n\n"));
            // Exactly one blank line: the one that ends the event.
            prop_assert!(!event.bytes()[..event.bytes().len() - 1].windows(2).any(|w| w == b"\n\n"));
            prop_assert!(!event.bytes().contains(&b'\r'));
        }

        let parsed = parse(event.bytes());
        let id = id.unwrap_or_default();
        prop_assert_eq!(&parsed.last_event_id, &id);
        prop_assert_eq!(parsed.retry, retry);
        if data.is_empty() {
            prop_assert!(parsed.events.is_empty(), "{:?}", parsed.events);
        } else {
            let event_type = event_type
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "message".to_owned());
            prop_assert_eq!(
                parsed.events,
                vec![Dispatched { event_type, data: data.join("\n"), last_event_id: id }]
            );
        }
    }

    #[test]
    fn shortcuts_are_lossless(text in text()) {
        let parsed = parse(SseEvent::data(&text).bytes());
        prop_assert_eq!(parsed.events.len(), 1);
        prop_assert_eq!(&parsed.events[0].data, &normalize(&text));

        prop_assert!(parse(SseEvent::comment(&text).bytes()).events.is_empty());

        let parsed = parse(SseEvent::json(&text).unwrap().bytes());
        prop_assert_eq!(
            serde_json::from_str::<String>(&parsed.events[0].data).unwrap(),
            text
        );
    }
}
