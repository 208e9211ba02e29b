//! [`Fulfilment`]: the background worker that packs and ships orders.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{DemoConfig, OrderStore};

/// The fulfilment worker: "another application" that does the work while clients wait.
///
/// New order ids reach it through a channel, standing in for a message broker. A tokio task
/// receives them and, for each order, appends `packed` and then `shipped` after the configured
/// delays — completing long polls from a task that is not the one serving them. It appends its
/// statuses even if the order got other events meanwhile. The task ends once every `Fulfilment`
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Fulfilment {
    orders: mpsc::UnboundedSender<String>,
}

impl Fulfilment {
    /// Starts the worker on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(store: OrderStore, config: &DemoConfig) -> Self {
        let (orders, mut received) = mpsc::unbounded_channel::<String>();
        let packed_after = config.packed_after;
        let shipped_after = config.shipped_after.max(packed_after);
        tokio::spawn(async move {
            while let Some(id) = received.recv().await {
                tokio::spawn(fulfil(store.clone(), id, packed_after, shipped_after));
            }
        });
        Fulfilment { orders }
    }

    /// Hands a new order to the worker.
    pub fn submit(&self, id: &str) {
        if self.orders.send(id.to_owned()).is_err() {
            tracing::warn!(id, "the fulfilment worker has stopped; order not submitted");
        }
    }
}

async fn fulfil(store: OrderStore, id: String, packed_after: Duration, shipped_after: Duration) {
    tokio::time::sleep(packed_after).await;
    store.append(&id, "packed".to_owned());
    tokio::time::sleep(shipped_after.saturating_sub(packed_after)).await;
    store.append(&id, "shipped".to_owned());
}
