//! The Server-Sent Events wire format: [`SseEvent`], built by [`SseEventBuilder`]
//! (Spring's `SseEmitter.event()` / `SseEmitter.SseEventBuilder`), and the
//! [`LastEventId`] request extractor.
//!
//! The encoding follows Spring's `SseEmitter` byte for byte (`name:value\n` fields in call
//! order, no space after the colon, a final blank line) and is lossless for the event stream
//! interpretation algorithm of the WHATWG HTML standard ("Server-sent events"): a parser gets
//! back exactly the id, event type, data and retry that were given to the builder.

use std::{fmt, sync::Arc, time::Duration};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use bytes::Bytes;
use http::{request::Parts, HeaderMap, StatusCode};
use serde::Serialize;

/// One encoded Server-Sent Event, ready to be written to a `text/event-stream` response.
///
/// This is the result of Spring's `SseEmitter.event()…build()`, or of `SseEmitter.send(object)`
/// for a data-only event. The bytes are encoded once, when the event is built, and shared
/// ([`Bytes`]): cloning an `SseEvent` is cheap, so a broadcaster can send one event to many
/// clients.
///
/// Each field is written as `name:value\n` with no space after the colon (as Spring does),
/// in the order the builder's methods were called, and the event ends with a blank line. When a
/// value itself starts with a space, one extra space is written after the colon
/// (`data:  x` for `" x"`), because an SSE parser strips exactly one leading space: the encoding
/// is lossless.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use async_mvc::SseEvent;
///
/// let event = SseEvent::builder()
///     .id("42")
///     .event("price")
///     .retry(Duration::from_secs(5))
///     .data("line one\nline two")
///     .build()?;
/// assert_eq!(
///     event.bytes().as_ref(),
///     b"id:42\nevent:price\nretry:5000\ndata:line one\ndata:line two\n\n"
/// );
/// assert_eq!(event.id(), Some("42"));
///
/// // Spring's `emitter.send("foo")`:
/// assert_eq!(SseEvent::data("foo").bytes().as_ref(), b"data:foo\n\n");
/// // A keep-alive comment:
/// assert_eq!(SseEvent::heartbeat().bytes().as_ref(), b":\n\n");
/// # Ok::<(), async_mvc::SseEventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    bytes: Bytes,
    id: Option<Arc<str>>,
}

impl SseEvent {
    /// Starts building an event with several fields (Spring's `SseEmitter.event()`).
    pub fn builder() -> SseEventBuilder {
        SseEventBuilder {
            // Enough for an id, an event name and a short line of data without regrowing.
            buf: Vec::with_capacity(128),
            ..SseEventBuilder::default()
        }
    }

    /// A data-only event (Spring's `SseEmitter.send(String)`): `data:foo\n\n` for `"foo"`.
    ///
    /// Multi-line text becomes one `data:` line per line (lines end at CRLF, CR or LF).
    /// Infallible: any text can be sent as data.
    pub fn data(text: impl AsRef<str>) -> SseEvent {
        let mut buf = Vec::new();
        write_data(&mut buf, text.as_ref());
        buf.push(b'\n');
        SseEvent {
            bytes: Bytes::from(buf),
            id: None,
        }
    }

    /// A data-only event whose data is `value` serialized as compact JSON
    /// (Spring's `SseEmitter.send(object)` with Jackson): `data:{"id":1}\n\n`.
    ///
    /// # Errors
    ///
    /// [`SseEventError::Json`] if `value` cannot be serialized to JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<SseEvent, SseEventError> {
        SseEvent::builder().json_data(value).build()
    }

    /// A comment-only event, `:text\n\n` (one `:` line per line of `text`).
    ///
    /// Clients ignore comments; they are useful to keep a connection alive.
    pub fn comment(text: impl AsRef<str>) -> SseEvent {
        let mut buf = Vec::new();
        write_comment(&mut buf, text.as_ref());
        buf.push(b'\n');
        SseEvent {
            bytes: Bytes::from(buf),
            id: None,
        }
    }

    /// The empty comment `:\n\n`, the smallest event that keeps a connection alive.
    pub fn heartbeat() -> SseEvent {
        SseEvent {
            bytes: Bytes::from_static(b":\n\n"),
            id: None,
        }
    }

    /// The value of the event's `id` field (the last one, if `id` was set several times), or
    /// `None` when it has none.
    ///
    /// A client sends the last id it received back in the `Last-Event-ID` header when it
    /// reconnects (see [`LastEventId`]); a broadcaster's replay buffer can use it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The encoded event, exactly as it goes on the wire.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The encoded event, exactly as it goes on the wire.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// `true` for the empty event (a builder on which no field was set): it encodes to zero
    /// bytes and sending it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Builds an [`SseEvent`] field by field: Spring's `SseEmitter.SseEventBuilder`, obtained from
/// [`SseEvent::builder`] (Spring's `SseEmitter.event()`).
///
/// Every setter consumes and returns the builder, and writes its field at once: fields appear on
/// the wire in the order the setters were called, and a setter called twice writes its field
/// twice (for `id`, `event` and `retry`, clients keep the last one). Errors (an invalid id or
/// event name, a value that cannot be serialized to JSON) are kept and returned by
/// [`build`](SseEventBuilder::build); the first one wins.
///
/// ```
/// use std::time::Duration;
///
/// use async_mvc::SseEvent;
///
/// let event = SseEvent::builder()
///     .comment("a test")
///     .event("update")
///     .id("1")
///     .retry(Duration::from_millis(5000))
///     .json_data(&[1, 2, 3])
///     .build()?;
/// assert_eq!(event.bytes().as_ref(), b":a test\nevent:update\nid:1\nretry:5000\ndata:[1,2,3]\n\n");
/// # Ok::<(), async_mvc::SseEventError>(())
/// ```
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct SseEventBuilder {
    buf: Vec<u8>,
    id: Option<String>,
    // `Arc` keeps the builder `Clone` although `serde_json::Error` is not.
    error: Option<Arc<SseEventError>>,
}

impl SseEventBuilder {
    /// Adds the `id` field, `id:<id>\n`: the client's "last event ID", sent back in the
    /// `Last-Event-ID` header when it reconnects (see [`LastEventId`]).
    ///
    /// # Errors
    ///
    /// An id containing a carriage return, a line feed or NUL cannot be encoded (clients drop
    /// ids with NUL): [`build`](SseEventBuilder::build) returns [`SseEventError::InvalidId`].
    pub fn id(mut self, id: impl Into<String>) -> Self {
        if self.error.is_some() {
            return self;
        }
        let id = id.into();
        if let Some(at) = memchr::memchr3(b'\r', b'\n', b'\0', id.as_bytes()) {
            let character = char::from(id.as_bytes()[at]);
            self.error = Some(Arc::new(SseEventError::InvalidId { id, character }));
            return self;
        }
        write_field(&mut self.buf, "id", &id);
        self.id = Some(id);
        self
    }

    /// Adds the `event` field, `event:<name>\n`: the event type a browser's `EventSource`
    /// dispatches it as (`message` when absent or empty). Spring calls this `name()`.
    ///
    /// # Errors
    ///
    /// A name containing a carriage return or a line feed cannot be encoded:
    /// [`build`](SseEventBuilder::build) returns [`SseEventError::InvalidEventName`].
    #[doc(alias = "name")]
    pub fn event(mut self, name: impl AsRef<str>) -> Self {
        if self.error.is_some() {
            return self;
        }
        let name = name.as_ref();
        if let Some(at) = memchr::memchr2(b'\r', b'\n', name.as_bytes()) {
            let character = char::from(name.as_bytes()[at]);
            self.error = Some(Arc::new(SseEventError::InvalidEventName {
                name: name.to_owned(),
                character,
            }));
            return self;
        }
        write_field(&mut self.buf, "event", name);
        self
    }

    /// Adds `text` as data: one `data:<line>\n` per line of `text`, where lines end at CRLF,
    /// CR or LF (CRLF counts as one line break). Calling it several times adds more lines;
    /// a client joins all data lines of an event with LF.
    ///
    /// Empty text writes one empty `data:` line; text ending with a line break writes an empty
    /// last line, so the client gets the trailing LF back.
    pub fn data(mut self, text: impl AsRef<str>) -> Self {
        if self.error.is_none() {
            write_data(&mut self.buf, text.as_ref());
        }
        self
    }

    /// Adds `value` serialized as compact JSON (`serde_json`) as data, like Spring's
    /// `data(object)` with Jackson: `data:{"id":1,"name":"Joe"}\n`.
    ///
    /// # Errors
    ///
    /// If `value` cannot be serialized, [`build`](SseEventBuilder::build) returns
    /// [`SseEventError::Json`].
    pub fn json_data<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        if self.error.is_some() {
            return self;
        }
        match serde_json::to_string(value) {
            // Compact JSON has no line breaks, unless a `RawValue` brings some: splitting keeps
            // the framing intact either way.
            Ok(json) => write_data(&mut self.buf, &json),
            Err(error) => self.error = Some(Arc::new(SseEventError::Json(error))),
        }
        self
    }

    /// Adds the `retry` field: how long a client waits before reconnecting after the connection
    /// is lost. Written in whole milliseconds (`retry:5000\n` for 5 s; sub-millisecond parts are
    /// dropped). Spring calls this `reconnectTime(long millis)`.
    #[doc(alias = "reconnect_time")]
    pub fn retry(mut self, reconnect: Duration) -> Self {
        if self.error.is_none() {
            let millis = reconnect.as_millis().to_string();
            write_field(&mut self.buf, "retry", &millis);
        }
        self
    }

    /// Adds a comment: one `:<line>\n` per line of `text` (lines end at CRLF, CR or LF);
    /// an empty comment writes a lone `:` line. Clients ignore comments.
    pub fn comment(mut self, text: impl AsRef<str>) -> Self {
        if self.error.is_none() {
            write_comment(&mut self.buf, text.as_ref());
        }
        self
    }

    /// Finishes the event: appends the blank line that ends it, unless no field was set, in
    /// which case the event is empty (zero bytes, see [`SseEvent::is_empty`]).
    ///
    /// # Errors
    ///
    /// The first error met by a setter: [`SseEventError::InvalidId`],
    /// [`SseEventError::InvalidEventName`] or [`SseEventError::Json`]. Nothing is encoded then.
    pub fn build(self) -> Result<SseEvent, SseEventError> {
        let SseEventBuilder { mut buf, id, error } = self;
        if let Some(error) = error {
            return Err(Arc::try_unwrap(error).unwrap_or_else(|shared| shared.duplicate()));
        }
        if !buf.is_empty() {
            buf.push(b'\n');
        }
        Ok(SseEvent {
            bytes: Bytes::from(buf),
            id: id.map(Arc::from),
        })
    }
}

/// Why an [`SseEventBuilder`] could not build its event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SseEventError {
    /// The id contains a carriage return or a line feed, which would end the `id` line early,
    /// or NUL, for which clients ignore the id.
    #[error(
        "invalid SSE event id {id:?}: it contains {}, but an id must not contain CR, LF or NUL",
        describe(*.character)
    )]
    InvalidId {
        /// The rejected id.
        id: String,
        /// The first offending character: `'\r'`, `'\n'` or `'\0'`.
        character: char,
    },
    /// The event name contains a carriage return or a line feed, which would end the `event`
    /// line early.
    #[error(
        "invalid SSE event name {name:?}: it contains {}, but an event name must not contain CR or LF",
        describe(*.character)
    )]
    InvalidEventName {
        /// The rejected event name.
        name: String,
        /// The first offending character: `'\r'` or `'\n'`.
        character: char,
    },
    /// The value given to [`SseEventBuilder::json_data`] or [`SseEvent::json`] could not be
    /// serialized to JSON.
    #[error("SSE event data could not be serialized to JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl SseEventError {
    /// A copy of an error shared by clones of a builder (`serde_json::Error` is not `Clone`:
    /// its copy keeps the message only).
    fn duplicate(&self) -> SseEventError {
        match self {
            SseEventError::InvalidId { id, character } => SseEventError::InvalidId {
                id: id.clone(),
                character: *character,
            },
            SseEventError::InvalidEventName { name, character } => {
                SseEventError::InvalidEventName {
                    name: name.clone(),
                    character: *character,
                }
            }
            SseEventError::Json(error) => {
                SseEventError::Json(<serde_json::Error as serde::ser::Error>::custom(error))
            }
        }
    }
}

/// A readable name for a character rejected in an id or event name.
fn describe(character: char) -> impl fmt::Display {
    struct Describe(char);
    impl fmt::Display for Describe {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                '\r' => f.write_str("a carriage return (CR, U+000D)"),
                '\n' => f.write_str("a line feed (LF, U+000A)"),
                '\0' => f.write_str("a NUL character (U+0000)"),
                other => write!(f, "{other:?} (U+{:04X})", u32::from(other)),
            }
        }
    }
    Describe(character)
}

/// Writes `name:value\n`, with one extra space when `value` starts with a space (a parser strips
/// exactly one). `value` must not contain CR or LF.
fn write_field(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    buf.push(b':');
    if value.starts_with(' ') {
        buf.push(b' ');
    }
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

/// Writes one `data:` field per line of `text`.
fn write_data(buf: &mut Vec<u8>, text: &str) {
    // `data:` and a line break per line; one line per 64 bytes is a fair guess, and growing
    // once more is cheap.
    buf.reserve(text.len() + (text.len() / 64 + 1) * 6 + 1);
    for line in Lines::new(text) {
        write_field(buf, "data", line);
    }
}

/// Writes one `:` comment line per line of `text`.
fn write_comment(buf: &mut Vec<u8>, text: &str) {
    buf.reserve(text.len() + 3);
    for line in Lines::new(text) {
        buf.push(b':');
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
}

/// The lines of a text, split at CRLF, CR or LF like an SSE parser does. Unlike
/// [`str::lines`], a trailing line break yields a final empty line and `""` yields one empty line.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        // CR and LF are ASCII, so the byte found is a char boundary.
        match memchr::memchr2(b'\r', b'\n', rest.as_bytes()) {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(end) => {
                let (line, after) = rest.split_at(end);
                let after = after
                    .strip_prefix("\r\n")
                    .or_else(|| after.strip_prefix('\r'))
                    .or_else(|| after.strip_prefix('\n'))
                    .unwrap_or(after);
                self.rest = Some(after);
                Some(line)
            }
        }
    }
}

/// The `Last-Event-ID` request header: the id of the last event a client received, which a
/// browser's `EventSource` sends when it reconnects (the WHATWG standard's "last event ID"), so
/// the server can resume after that event.
///
/// An axum extractor. As `LastEventId` it requires the header (`400 Bad Request` when it is
/// missing); as `Option<LastEventId>` it gives `None` when the header is absent. Either way, a
/// value that is not valid UTF-8 is rejected with `400 Bad Request`. When the header is repeated,
/// the first one is used.
///
/// ```
/// use async_mvc::LastEventId;
/// use axum::{routing::get, Router};
///
/// async fn events(last: Option<LastEventId>) -> String {
///     match last {
///         Some(last) => format!("resuming after {}", last.as_str()),
///         None => "starting".to_owned(),
///     }
/// }
///
/// let app: Router = Router::new().route("/events", get(events));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastEventId(String);

impl LastEventId {
    /// The id, as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, as the client sent it.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl AsRef<str> for LastEventId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The header's name, in the lowercase form `http` uses.
const LAST_EVENT_ID: &str = "last-event-id";

/// The rejection of [`LastEventId`]: `400 Bad Request` with a plain-text reason.
type Rejection = (StatusCode, &'static str);

fn last_event_id(headers: &HeaderMap) -> Result<Option<LastEventId>, Rejection> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    match std::str::from_utf8(value.as_bytes()) {
        Ok(id) => Ok(Some(LastEventId(id.to_owned()))),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "the `Last-Event-ID` header is not valid UTF-8",
        )),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        last_event_id(&parts.headers)?.ok_or((
            StatusCode::BAD_REQUEST,
            "the `Last-Event-ID` header is missing",
        ))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        last_event_id(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{body::Body, routing::get, Router};
    use http::{HeaderValue, Request};
    use proptest::prelude::*;
    use serde::Serialize;
    use tower::ServiceExt;

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

    // --- An independent parser: the WHATWG event stream interpretation algorithm ---

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Dispatched {
        event_type: String,
        data: String,
        last_event_id: String,
    }

    #[derive(Debug, Default)]
    struct Parsed {
        events: Vec<Dispatched>,
        last_event_id: String,
        retry: Option<u128>,
    }

    /// HTML Living Standard, "Server-sent events", §9.2.6 Interpreting an event stream.
    fn parse(stream: &[u8]) -> Parsed {
        // The stream is UTF-8 decoded (with replacement), and one leading BOM is dropped.
        let text = String::from_utf8_lossy(stream);
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);

        // Lines end at CRLF, a lone CR or a lone LF; an unterminated last line is discarded.
        let mut lines = Vec::new();
        let mut line = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(std::mem::take(&mut line));
                }
                '\n' => lines.push(std::mem::take(&mut line)),
                c => line.push(c),
            }
        }

        let mut parsed = Parsed::default();
        let mut data = String::new();
        let mut event_type = String::new();
        let mut last_event_id_buffer = String::new();
        for line in lines {
            if line.is_empty() {
                // Dispatch the event.
                parsed.last_event_id = last_event_id_buffer.clone();
                if data.is_empty() {
                    event_type.clear();
                    continue;
                }
                if data.ends_with('\n') {
                    data.pop();
                }
                let event_type = std::mem::take(&mut event_type);
                parsed.events.push(Dispatched {
                    event_type: if event_type.is_empty() {
                        "message".to_owned()
                    } else {
                        event_type
                    },
                    data: std::mem::take(&mut data),
                    last_event_id: parsed.last_event_id.clone(),
                });
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
                }
                None => (line.as_str(), ""),
            };
            match field {
                "event" => event_type = value.to_owned(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => last_event_id_buffer = value.to_owned(),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    parsed.retry = value.parse().ok();
                }
                _ => {}
            }
        }
        parsed
    }

    #[test]
    fn parser_sanity() {
        let parsed = parse(b"data: a\r\ndata\rid: 7\n: c\nretry:x\n\nevent:e\n\n");
        assert_eq!(
            parsed.events,
            vec![Dispatched {
                event_type: "message".into(),
                data: "a\n".into(),
                last_event_id: "7".into(),
            }]
        );
        assert_eq!(parsed.retry, None);
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

    // --- LastEventId ---

    async fn call(app: Router, header: Option<HeaderValue>) -> (StatusCode, String) {
        let mut request = Request::builder().uri("/");
        if let Some(value) = header {
            request = request.header("Last-Event-ID", value);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn required() -> Router {
        Router::new().route("/", get(|id: LastEventId| async move { id.into_inner() }))
    }

    fn optional() -> Router {
        Router::new().route(
            "/",
            get(|id: Option<LastEventId>| async move {
                match id {
                    Some(id) => format!("some:{}", id.as_str()),
                    None => "none".to_owned(),
                }
            }),
        )
    }

    #[tokio::test]
    async fn last_event_id_present() {
        let value = HeaderValue::from_static("42");
        assert_eq!(
            call(required(), Some(value.clone())).await,
            (StatusCode::OK, "42".to_owned())
        );
        assert_eq!(
            call(optional(), Some(value)).await,
            (StatusCode::OK, "some:42".to_owned())
        );
        // Non-ASCII UTF-8, as a browser sends it.
        let value = HeaderValue::from_bytes("é😀".as_bytes()).unwrap();
        assert_eq!(
            call(required(), Some(value)).await,
            (StatusCode::OK, "é😀".to_owned())
        );
    }

    #[tokio::test]
    async fn last_event_id_absent() {
        let (status, body) = call(required(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("missing"), "{body}");
        assert_eq!(
            call(optional(), None).await,
            (StatusCode::OK, "none".to_owned())
        );
    }

    #[tokio::test]
    async fn last_event_id_not_utf8() {
        let value = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        for app in [required(), optional()] {
            let (status, body) = call(app, Some(value.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(body.contains("not valid UTF-8"), "{body}");
        }
    }

    #[tokio::test]
    async fn last_event_id_from_parts() {
        let (mut parts, ()) = Request::builder()
            .header("last-event-id", "7")
            .body(())
            .unwrap()
            .into_parts();
        let id = <LastEventId as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(id.as_str(), "7");
        assert_eq!(id.as_ref(), "7");
        assert_eq!(id.to_string(), "7");
    }
}
