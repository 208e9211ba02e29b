//! Work queues on Redis Streams with consumer groups: `XADD … MAXLEN ~`, `XREADGROUP … BLOCK`
//! on a connection of each consumer's own, `XAUTOCLAIM`, `XACK`, `XCLAIM … JUSTID` to touch.

use std::{fmt, time::Duration};

use async_mvc::cluster::{BoxFuture, BrokerError, Job, JobConsumer};
use bytes::Bytes;
use redis::{aio::ConnectionManager, Value};

/// The field a job's bytes are stored under in its stream entry.
pub(crate) const FIELD: &str = "j";
/// How much longer than its `BLOCK` a read may take before the connection counts as lost.
const READ_GRACE: Duration = Duration::from_secs(1);

/// One consumer of a group, on its own connection: its blocking reads hold up nothing else.
pub(crate) struct RedisConsumer {
    pub(crate) connection: ConnectionManager,
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) name: String,
    /// Where the next `XAUTOCLAIM` scan of the group's pending jobs starts.
    pub(crate) cursor: String,
}

/// `XGROUP CREATE stream group 0 MKSTREAM`, where the group may exist already: it receives
/// every job still in the stream.
pub(crate) async fn create_group(
    connection: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(connection)
        .await;
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

impl RedisConsumer {
    /// A command failed: its error, with the group made again if Redis lost it (restarted
    /// without persistence), so that the next attempt works.
    async fn failed(&mut self, error: redis::RedisError) -> BrokerError {
        if error.code() == Some("NOGROUP") {
            if let Err(again) = create_group(&mut self.connection, &self.stream, &self.group).await
            {
                return BrokerError::Unavailable(again.to_string());
            }
        }
        BrokerError::Unavailable(error.to_string())
    }
}

impl JobConsumer for RedisConsumer {
    fn read(
        &mut self,
        count: usize,
        block: Duration,
    ) -> BoxFuture<'_, Result<Vec<Job>, BrokerError>> {
        Box::pin(async move {
            let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut command = redis::cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(count.max(1))
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">");
            let read = command.query_async::<Value>(&mut self.connection);
            match tokio::time::timeout(block + READ_GRACE, read).await {
                Ok(Ok(value)) => Ok(read_reply(&value, false)),
                Ok(Err(error)) => Err(self.failed(error).await),
                Err(_) => Err(BrokerError::Unavailable(
                    "a blocking read did not return".to_owned(),
                )),
            }
        })
    }

    fn claim(
        &mut self,
        min_idle: Duration,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, BrokerError>> {
        Box::pin(async move {
            let idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
            let mut command = redis::cmd("XAUTOCLAIM");
            command
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.name)
                .arg(idle_ms)
                .arg(&self.cursor)
                .arg("COUNT")
                .arg(count.max(1));
            let claimed = command.query_async::<Value>(&mut self.connection);
            let value = match tokio::time::timeout(READ_GRACE, claimed).await {
                Ok(Ok(value)) => value,
                Ok(Err(error)) => return Err(self.failed(error).await),
                Err(_) => {
                    return Err(BrokerError::Unavailable(
                        "a claim did not return".to_owned(),
                    ))
                }
            };
            // [next cursor, entries, deleted ids]
            let Value::Array(parts) = value else {
                return Err(BrokerError::Protocol("XAUTOCLAIM's reply".to_owned()));
            };
            if let Some(cursor) = parts.first().and_then(text) {
                self.cursor = cursor;
            }
            Ok(parts
                .get(1)
                .map(|entries| entries_of(entries, true))
                .unwrap_or_default())
        })
    }
}

/// `XREADGROUP`'s reply (nil, or per stream its entries; an array in RESP2, a map in RESP3).
fn read_reply(value: &Value, redelivered: bool) -> Vec<Job> {
    match value {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|stream| match stream {
                Value::Array(pair) if pair.len() == 2 => entries_of(&pair[1], redelivered),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams
            .iter()
            .flat_map(|(_, entries)| entries_of(entries, redelivered))
            .collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, …]], …]`: the jobs, skipping entries whose fields are gone (deleted
/// by trimming while pending).
fn entries_of(entries: &Value, redelivered: bool) -> Vec<Job> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let id = text(entry.first()?)?;
            let payload = match entry.get(1)? {
                Value::Array(fields) => field(fields.iter()),
                Value::Map(fields) => field(fields.iter().flat_map(|(k, v)| [k, v])),
                _ => None,
            }?;
            Some(Job {
                id,
                payload,
                redelivered,
            })
        })
        .collect()
}

/// The value of [`FIELD`] in a flat `field, value, …` sequence.
fn field<'a>(mut fields: impl Iterator<Item = &'a Value>) -> Option<Bytes> {
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if text(name).as_deref() == Some(FIELD) {
            return match value {
                Value::BulkString(bytes) => Some(Bytes::copy_from_slice(bytes)),
                Value::SimpleString(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
                _ => None,
            };
        }
    }
    None
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

impl fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
