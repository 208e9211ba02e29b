//! Property tests of the in-memory broker: whatever the interleaving of appends, subscribes
//! and dropped subscriptions, a subscription sees the entries appended while it is held,
//! contiguous and in order, and history holds the newest `max_len`.

use std::collections::HashMap;

use futures::StreamExt;
use proptest::prelude::*;

use super::{BrokerEvent, InMemoryBroker, MessageBroker};

#[derive(Debug, Clone)]
enum Step {
    Append(u8),
    Subscribe,
    Drop(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3).prop_map(Step::Append),
        1 => Just(Step::Subscribe),
        1 => (0usize..8).prop_map(Step::Drop),
    ]
}

proptest! {
    #[test]
    fn subscriptions_see_every_append_while_held_in_order(steps in proptest::collection::vec(step(), 1..120)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|error| panic!("{error}"));
        runtime.block_on(async {
            let broker = InMemoryBroker::new();
            // Each live subscription, with what it must see: (topic, offset) in order.
            let mut subscriptions = Vec::new();
            let mut appended: HashMap<String, u64> = HashMap::new();
            for step in steps {
                match step {
                    Step::Append(topic) => {
                        let topic = format!("t{topic}");
                        let position = broker.append("c", &topic, bytes::Bytes::from_static(b"x"), 5).await.unwrap_or_else(|error| panic!("{error}"));
                        let last = appended.entry(topic.clone()).or_default();
                        prop_assert_eq!(position.offset, *last + 1);
                        *last = position.offset;
                        for (_, expected) in &mut subscriptions {
                            let expected: &mut Vec<(String, u64)> = expected;
                            expected.push((topic.clone(), position.offset));
                        }
                    }
                    Step::Subscribe => subscriptions.push((broker.subscribe("c"), Vec::new())),
                    Step::Drop(n) => {
                        if !subscriptions.is_empty() {
                            let index = n % subscriptions.len();
                            drop(subscriptions.remove(index));
                        }
                    }
                }
            }
            for (mut stream, expected) in subscriptions {
                let mut seen = Vec::new();
                while seen.len() < expected.len() {
                    match stream.next().await {
                        Some(BrokerEvent::Message(message)) => {
                            let offset = message.position.map_or(0, |p| p.offset);
                            seen.push((message.topic, offset));
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                prop_assert_eq!(seen, expected);
            }
            for (topic, last) in appended {
                let history = broker.range(&topic, 0, 100).await.unwrap_or_else(|error| panic!("{error}"));
                let offsets: Vec<u64> = history.entries.iter().map(|(offset, _)| *offset).collect();
                let first = last.saturating_sub(4).max(1);
                prop_assert_eq!(offsets, (first..=last).collect::<Vec<_>>());
                prop_assert_eq!((history.first, history.last), (first, last));
            }
            Ok(())
        })?;
    }
}
