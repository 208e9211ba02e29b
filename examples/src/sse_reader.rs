//! [`EventReader`]: Server-Sent Events read off an HTTP response as they arrive — the client
//! side of the demo's cluster tests and of `soak --cluster`. Events are split at the blank line
//! and their `id:` and `data:` fields read as the demo writes them (one `data:` line each); the
//! full WHATWG algorithm is `sse-reference`'s.

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use tokio::time::Instant;

/// One event: its `id` (if it had one) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined with LF.
    pub data: String,
}

/// Reads events from a streaming response, one at a time.
pub struct EventReader {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl EventReader {
    /// Reads `response`'s body.
    pub fn new(response: reqwest::Response) -> Self {
        EventReader {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` when the stream ends, fails, or `deadline` passes first.
    pub async fn next(&mut self, deadline: Instant) -> Option<ReadEvent> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                let mut event = ReadEvent {
                    id: None,
                    data: String::new(),
                };
                let mut data = Vec::new();
                for line in text.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        event.id = Some(id.trim_start().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if data.is_empty() {
                    // A comment or a heartbeat: no event.
                    continue;
                }
                event.data = data.join("\n");
                return Some(event);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}
