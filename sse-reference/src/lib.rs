//! Test support: an independent parser of the Server-Sent Events wire format, written from the
//! WHATWG HTML standard, "Server-sent events", §9.2.6 "Interpreting an event stream" — kept
//! apart from async-mvc's encoder under test, and shared by its unit tests (`src/sse`), the
//! end-to-end tests and the fuzz targets, so that there is one reference, not several.

/// One dispatched event, as a browser's `EventSource` would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// The event type (`message` when the stream gave none, or an empty one).
    pub event_type: String,
    /// The data lines, joined with LF.
    pub data: String,
    /// The last event ID when the event was dispatched.
    pub last_event_id: String,
}

/// What a client gets from a stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The dispatched events, in order.
    pub events: Vec<Dispatched>,
    /// The last event ID after the whole stream (set at each dispatch, as the standard says).
    pub last_event_id: String,
    /// The last valid `retry` value, in milliseconds.
    pub retry: Option<u128>,
}

/// Interprets `stream` as the standard's event stream interpretation algorithm does.
pub fn parse(stream: &[u8]) -> Parsed {
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
            continue; // A comment.
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

/// `text` with every line break (CRLF, CR, LF) as LF: how a client gets multi-line data back.
pub fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parsed.last_event_id, "7");
    }

    #[test]
    fn unterminated_events_are_dropped() {
        let parsed = parse(b"\xEF\xBB\xBFevent:x\ndata:1\nretry:20\n\ndata:2\n");
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].event_type, "x");
        assert_eq!(parsed.events[0].data, "1");
        assert_eq!(parsed.retry, Some(20));
    }
}
