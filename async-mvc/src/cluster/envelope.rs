//! What crosses the broker for request/reply: a job with its correlation id and where to
//! reply, and the reply. JSON, so a worker in another language can take part.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::reply::DEFAULT_REPLY_RETENTION;

/// A job on its queue: the requester writes it from references (`J = &job`, `S = &str`,
/// serialised once); the worker reads the job as JSON and the texts as `String`s.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct JobEnvelope<J = serde_json::Value, S = String> {
    /// The request's correlation id; absent for a job sent without waiting for a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) correlation_id: Option<S>,
    /// The channel the requesting instance listens on for its replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reply_to: Option<S>,
    /// When the requester stops waiting (ms since the Unix epoch): later, nobody reads a reply
    /// and the job is dropped unworked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expires_at_ms: Option<u64>,
    /// How long the worker keeps the reply in the broker, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) retain_ms: Option<u64>,
    /// The sender's trace context (W3C `traceparent`), when a
    /// [`TracePropagator`](super::TracePropagator) is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) traceparent: Option<String>,
    /// The application's job.
    pub(super) job: J,
}

/// How long past its request's expiry a reply is still kept: for a requester that reads it
/// after an outage, and a redelivered job answered from it.
const RETAINED_PAST_EXPIRY: Duration = Duration::from_secs(5);

impl<J, S> JobEnvelope<J, S> {
    /// Whether the requester has stopped waiting.
    pub(super) fn expired(&self) -> bool {
        self.expires_at_ms.is_some_and(|at| at < now_ms())
    }

    /// How long to keep the reply: the requester's retention, but no longer than
    /// [`RETAINED_PAST_EXPIRY`] after the request expires — a reply nobody waits for is not
    /// kept, so the broker holds replies for about the requests in flight (at least 1 ms).
    pub(super) fn retention(&self) -> Duration {
        let asked = self
            .retain_ms
            .map_or(DEFAULT_REPLY_RETENTION, Duration::from_millis);
        let until_expiry = self
            .expires_at_ms
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms())) + RETAINED_PAST_EXPIRY);
        until_expiry
            .map_or(asked, |left| asked.min(left))
            .max(Duration::from_millis(1))
    }
}

/// A worker's answer: its value, or its error's message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum ReplyBody {
    Ok(serde_json::Value),
    Err(String),
}

/// The key under which the reply to `correlation_id` is retained.
pub(super) fn reply_key(queue: &str, correlation_id: &str) -> String {
    format!("jobs:{queue}:reply:{correlation_id}")
}

/// The key a queue's live workers keep set.
pub(super) fn alive_key(queue: &str) -> String {
    format!("jobs:{queue}:alive")
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// `now + after`, in ms since the Unix epoch.
pub(super) fn ms_after(after: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
}

/// An id no other process is likely to use: 64 random bits, in hex.
pub(super) fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(expires_at_ms: Option<u64>, retain_ms: Option<u64>) -> JobEnvelope {
        JobEnvelope {
            correlation_id: Some("c".to_owned()),
            reply_to: Some("r".to_owned()),
            expires_at_ms,
            retain_ms,
            traceparent: None,
            job: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_reply_is_kept_no_longer_than_5_s_past_its_request() {
        // Asked for 60 s, the request expires in 2 s: about 7 s.
        let soon = envelope(Some(ms_after(Duration::from_secs(2))), Some(60_000));
        let kept = soon.retention();
        assert!(
            kept <= Duration::from_secs(7) && kept > Duration::from_secs(6),
            "{kept:?}"
        );
        // Asked for 1 s: 1 s.
        let short = envelope(Some(ms_after(Duration::from_secs(30))), Some(1_000));
        assert_eq!(short.retention(), Duration::from_secs(1));
        // Expired already: just the margin.
        let old = envelope(Some(1), None);
        assert_eq!(old.retention(), RETAINED_PAST_EXPIRY);
        assert!(old.expired() && !soon.expired());
        // No expiry (a job sent without waiting): the asked retention, or the default.
        assert_eq!(envelope(None, None).retention(), DEFAULT_REPLY_RETENTION);
    }

    #[test]
    fn envelopes_round_trip_and_omit_what_they_lack() {
        let sent = serde_json::to_string(&envelope(None, None)).unwrap_or_default();
        assert_eq!(sent, r#"{"correlation_id":"c","reply_to":"r","job":null}"#);
        let back: Result<JobEnvelope, _> = serde_json::from_str(r#"{"job":{"n":1}}"#);
        assert!(back.is_ok_and(|e| e.correlation_id.is_none() && e.job["n"] == 1));
    }
}
