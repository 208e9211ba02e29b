//! The pub/sub message format and the Lua scripts that keep history and publishing in step.
//!
//! A message is `{topic length}:{topic}{epoch}:{offset}:{sent}:{payload}`; `0:0:` for the
//! position when it has none; `sent` is when it was published, in ms since the Unix epoch (the
//! publishing instance's clock, or Redis's `TIME` for an append), for the pub/sub lag metric.
//! The append script writes the same format, so both paths decode alike.

use async_mvc::cluster::{Message, Position};
use bytes::Bytes;

/// Encodes a message about `topic`, with `position` if it was appended, published at
/// `sent_ms`.
pub(crate) fn encode(
    topic: &str,
    position: Option<Position>,
    sent_ms: u64,
    payload: &[u8],
) -> Vec<u8> {
    let (epoch, offset) = position.map_or((0, 0), |p| (p.epoch, p.offset));
    let mut message = format!("{}:{topic}{epoch}:{offset}:{sent_ms}:", topic.len()).into_bytes();
    message.extend_from_slice(payload);
    message
}

/// Decodes a message, and when it was published (ms since the Unix epoch); `None` if it is not
/// one of ours.
pub(crate) fn decode(raw: &[u8]) -> Option<(Message, u64)> {
    let colon = raw.iter().position(|&b| b == b':')?;
    let length: usize = std::str::from_utf8(&raw[..colon]).ok()?.parse().ok()?;
    let rest = raw.get(colon + 1..)?;
    let topic = std::str::from_utf8(rest.get(..length)?).ok()?.to_owned();
    let rest = rest.get(length..)?;
    let (epoch, rest) = number(rest)?;
    let (offset, rest) = number(rest)?;
    let (sent_ms, payload) = number(rest)?;
    let message = Message {
        topic,
        position: (offset > 0).then_some(Position { epoch, offset }),
        payload: Bytes::copy_from_slice(payload),
    };
    Some((message, sent_ms))
}

/// A decimal number followed by `:`, and what follows.
fn number(raw: &[u8]) -> Option<(u64, &[u8])> {
    let colon = raw.iter().position(|&b| b == b':')?;
    let value = std::str::from_utf8(&raw[..colon]).ok()?.parse().ok()?;
    Some((value, &raw[colon + 1..]))
}

/// Appends to a topic's stream with the next offset and publishes it, atomically, once per
/// token: a retry after a lost reply (Redis killed between running the script and answering)
/// gets the first run's position instead of appending twice.
/// KEYS: stream, meta, token. ARGV: channel, topic, payload, max length, epoch for a new
/// history. Returns `{epoch, offset}`.
pub(crate) const APPEND: &str = r"
local done = redis.call('GET', KEYS[3])
if done then
  local epoch, offset = string.match(done, '^(%d+):(%d+)$')
  return {epoch, tonumber(offset)}
end
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[2], 'e', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 's', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], offset .. '-0', 'p', ARGV[3])
local now = redis.call('TIME')
local sent = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
redis.call('PUBLISH', ARGV[1], string.len(ARGV[2]) .. ':' .. ARGV[2] .. epoch .. ':' .. offset .. ':' .. sent .. ':' .. ARGV[3])
redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'PX', 60000)
return {epoch, offset}
";

/// A topic's history after an offset. KEYS: stream, meta. ARGV: after, limit.
/// Returns `{epoch, last, first, {offset, payload, …}}`.
pub(crate) const RANGE: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'e') or '0'
local last = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
local first = last + 1
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #oldest > 0 then first = tonumber(string.match(oldest[1][1], '^(%d+)')) end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
local out = {}
for _, entry in ipairs(entries) do
  out[#out + 1] = string.match(entry[1], '^(%d+)')
  out[#out + 1] = entry[2][2]
end
return {epoch, last, first, out}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_and_without_a_position() {
        let position = Position {
            epoch: 17,
            offset: 42,
        };
        let raw = encode("a:b", Some(position), 1_700_000_000_123, b"data:x\n\n");
        assert_eq!(raw, b"3:a:b17:42:1700000000123:data:x\n\n");
        let (message, sent_ms) = decode(&raw).expect("decodes");
        assert_eq!(message.topic, "a:b");
        assert_eq!(message.position, Some(position));
        assert_eq!(&message.payload[..], b"data:x\n\n");
        assert_eq!(sent_ms, 1_700_000_000_123);
        let (plain, _) = decode(&encode("\"k\"", None, 0, b"1")).expect("decodes");
        assert_eq!((plain.topic.as_str(), plain.position), ("\"k\"", None));
        assert!(decode(b"garbage").is_none());
        assert!(decode(b"99:short").is_none());
    }
}
