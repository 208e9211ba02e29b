//! [`SseEvent`], built by [`SseEventBuilder`] (Spring's `SseEmitter.event()` /
//! `SseEmitter.SseEventBuilder`): one event, encoded once.
//!
//! The encoding follows Spring's `SseEmitter` byte for byte (`name:value\n` fields in call
//! order, no space after the colon, a final blank line) and is lossless for the event stream
//! interpretation algorithm of the WHATWG HTML standard ("Server-sent events"): a parser gets
//! back exactly the id, event type, data and retry that were given to the builder.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
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
    /// reconnects (see [`LastEventId`](super::LastEventId)); a broadcaster's replay buffer can use it.
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
    /// `Last-Event-ID` header when it reconnects (see [`LastEventId`](super::LastEventId)).
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

#[cfg(test)]
mod tests;
