//! [`Fulfilment`]: how placed orders reach the worker that packs and ships them.

use std::time::Duration;

use async_mvc::cluster::ReplyingTemplate;
use tokio::sync::mpsc;

use super::{jobs::FulfilJob, DemoConfig, OrderStore};

/// How long a placed order's fulfilment job is tried through a broker outage: 60 s, as a
/// worker's steps are.
pub const QUEUE_PATIENCE: Duration = Duration::from_secs(60);
/// The pause between two tries.
const QUEUE_RETRY: Duration = Duration::from_millis(250);

/// The fulfilment worker's inbox: "another application" that does the work while clients
/// wait.
///
/// On one process, new order ids reach a tokio task through a channel, standing in for a
/// message broker; for each order it appends `packed` and then `shipped` after the configured
/// delays — completing long polls from a task that is not the one serving them. It appends its
/// statuses even if the order got other events meanwhile. The task ends once every
/// `Fulfilment` handle is dropped.
///
/// On a cluster, each order is a job on the fulfilment queue, worked once by one of the
/// cluster's workers ([`Workers`](super::Workers)), whichever instance placed it.
#[derive(Debug, Clone)]
pub struct Fulfilment {
    inbox: Inbox,
}

#[derive(Debug, Clone)]
enum Inbox {
    Local(mpsc::UnboundedSender<String>),
    Queue(ReplyingTemplate),
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
        Fulfilment {
            inbox: Inbox::Local(orders),
        }
    }

    /// A cluster's inbox: orders go to the fulfilment queue through `queue`.
    pub fn queued(queue: ReplyingTemplate) -> Self {
        Fulfilment {
            inbox: Inbox::Queue(queue),
        }
    }

    /// Hands a new order to the worker. On a cluster the job is queued by a task that rides
    /// out a broker outage (for up to [`QUEUE_PATIENCE`]): the request that placed the order
    /// does not wait for it.
    pub fn submit(&self, id: &str) {
        match &self.inbox {
            Inbox::Local(orders) => {
                if orders.send(id.to_owned()).is_err() {
                    tracing::warn!(id, "the fulfilment worker has stopped; order not submitted");
                }
            }
            Inbox::Queue(queue) => {
                let (queue, job) = (queue.clone(), FulfilJob { id: id.to_owned() });
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + QUEUE_PATIENCE;
                    while let Err(error) = queue.send(&job).await {
                        if tokio::time::Instant::now() >= deadline {
                            tracing::warn!(id = job.id, %error, "the order could not be queued for fulfilment");
                            return;
                        }
                        tokio::time::sleep(QUEUE_RETRY).await;
                    }
                });
            }
        }
    }
}

async fn fulfil(store: OrderStore, id: String, packed_after: Duration, shipped_after: Duration) {
    tokio::time::sleep(packed_after).await;
    store.append(&id, "packed".to_owned());
    tokio::time::sleep(shipped_after.saturating_sub(packed_after)).await;
    store.append(&id, "shipped".to_owned());
}
