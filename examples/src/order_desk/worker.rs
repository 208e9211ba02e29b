//! [`Fulfilment`]: the background worker that packs and ships orders.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{DemoConfig, OrderStore, Replica};

/// The fulfilment worker: "another application" that does the work while clients wait.
///
/// New order ids reach it through a channel, standing in for a message broker. A tokio task
/// receives them and, for each order, appends `packed` and then `shipped` after the configured
/// delays — completing long polls from a task that is not the one serving them. It appends its
/// statuses even if the order got other events meanwhile. The task ends once every `Fulfilment`
/// handle is dropped. On a cluster, the instance that placed an order fulfils it, through the
/// cluster ([`Replica::append`]): each order is advanced once, whatever the number of
/// instances.
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
        Self::spawn_on(Writer::Local(store), config)
    }

    /// Starts the worker of a cluster instance: it appends through `replica`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_clustered(replica: Replica, config: &DemoConfig) -> Self {
        Self::spawn_on(Writer::Cluster(replica), config)
    }

    fn spawn_on(writer: Writer, config: &DemoConfig) -> Self {
        let (orders, mut received) = mpsc::unbounded_channel::<String>();
        let packed_after = config.packed_after;
        let shipped_after = config.shipped_after.max(packed_after);
        tokio::spawn(async move {
            while let Some(id) = received.recv().await {
                tokio::spawn(fulfil(writer.clone(), id, packed_after, shipped_after));
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

/// Where the worker appends.
#[derive(Debug, Clone)]
enum Writer {
    Local(OrderStore),
    Cluster(Replica),
}

impl Writer {
    async fn append(&self, id: &str, status: &str) {
        match self {
            Writer::Local(store) => {
                store.append(id, status.to_owned());
            }
            Writer::Cluster(replica) => {
                if let Err(error) = replica.append(id, status.to_owned()).await {
                    tracing::warn!(id, status, %error, "the worker could not append a status");
                }
            }
        }
    }
}

async fn fulfil(writer: Writer, id: String, packed_after: Duration, shipped_after: Duration) {
    tokio::time::sleep(packed_after).await;
    writer.append(&id, "packed").await;
    tokio::time::sleep(shipped_after.saturating_sub(packed_after)).await;
    writer.append(&id, "shipped").await;
}
