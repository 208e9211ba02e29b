//! [`Workers`]: the order desk's "other application" on a cluster — the fulfilment worker and
//! the invoice renderer as [`JobListener`]s on the cluster's queues, run by `--role worker`
//! processes (and by `--role all`).
//!
//! | queue | job | reply |
//! |---|---|---|
//! | [`FULFILMENT_QUEUE`] | [`FulfilJob`]: pack the order after 2 s, ship it after 4 s | none |
//! | [`INVOICE_QUEUE`] | [`InvoiceJob`]: render the order's invoice | the [`Invoice`] |

use std::{sync::Arc, time::Duration};

use async_mvc::cluster::{JobListener, JobListenerHandle, ListenerMetrics, MessageBroker};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{replica::WRITE_TIMEOUT, DemoConfig, Invoice, OrderStore, Replica};

/// The queue of orders to pack and ship.
pub const FULFILMENT_QUEUE: &str = "order-desk:fulfilment";
/// The queue of invoices to render (request/reply).
pub const INVOICE_QUEUE: &str = "order-desk:invoices";
/// How long a job may go untouched before another worker takes over from one presumed dead.
const CLAIM_IDLE: Duration = Duration::from_secs(2);
/// Orders packed and shipped at once by one worker (each mostly waits).
const FULFILMENT_CONCURRENCY: usize = 4_096;
/// Invoices rendered at once by one worker (each is CPU work on the blocking pool).
const INVOICE_CONCURRENCY: usize = 8;
/// How long a fulfilment step keeps trying through a broker outage (or an order this
/// worker's replica has not caught up with yet) before it gives up.
const STEP_PATIENCE: Duration = Duration::from_secs(60);
/// The pause between two tries.
const STEP_RETRY: Duration = Duration::from_millis(250);

/// Pack and ship order `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FulfilJob {
    /// The order's id.
    pub id: String,
}

/// Render the invoice of order `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvoiceJob {
    /// The order's id.
    pub id: String,
}

/// A worker process's listeners.
#[derive(Debug)]
pub struct Workers {
    fulfilment: JobListenerHandle,
    invoices: JobListenerHandle,
}

impl Workers {
    /// Starts both listeners on `broker`, reading and writing orders through `replica`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(broker: &Arc<dyn MessageBroker>, replica: &Replica, config: &DemoConfig) -> Self {
        let (packed_after, shipped_after) = (
            config.packed_after,
            config.shipped_after.max(config.packed_after),
        );
        let fulfiller = replica.clone();
        let fulfilment = JobListener::new(Arc::clone(broker), FULFILMENT_QUEUE, "fulfilment")
            .concurrency(FULFILMENT_CONCURRENCY)
            .claim_idle(CLAIM_IDLE)
            .run(move |job: FulfilJob| {
                let replica = fulfiller.clone();
                async move { fulfil(&replica, &job.id, packed_after, shipped_after).await }
            });
        let (rounds, timeout) = (config.invoice_hash_rounds, config.invoice_timeout);
        let renderer = replica.clone();
        let invoices = JobListener::new(Arc::clone(broker), INVOICE_QUEUE, "invoices")
            .concurrency(INVOICE_CONCURRENCY)
            .claim_idle(CLAIM_IDLE)
            .run(move |job: InvoiceJob| {
                let replica = renderer.clone();
                async move { render(&replica, &job.id, rounds, timeout).await }
            });
        Workers {
            fulfilment,
            invoices,
        }
    }

    /// The workers of a `--role worker` process: listeners and their own [`Replica`] of the
    /// orders.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn standalone(broker: &Arc<dyn MessageBroker>, config: &DemoConfig) -> Self {
        let replica = Replica::start(Arc::clone(broker), OrderStore::new());
        Self::start(broker, &replica, config)
    }

    /// The fulfilment and the invoice listeners' counters.
    pub fn metrics(&self) -> (ListenerMetrics, ListenerMetrics) {
        (self.fulfilment.metrics(), self.invoices.metrics())
    }

    /// Stops taking jobs and finishes those in progress.
    pub async fn shutdown(self) {
        tokio::join!(self.fulfilment.shutdown(), self.invoices.shutdown());
    }
}

/// Packs, then ships order `id`; a step the order has had already (a job worked again after a
/// worker died) is skipped, so each order is advanced once. Each step rides out a broker
/// outage (for [`STEP_PATIENCE`]): the job's end is its acknowledgement.
async fn fulfil(
    replica: &Replica,
    id: &str,
    packed_after: Duration,
    shipped_after: Duration,
) -> Result<(), String> {
    let known = patiently(|| async {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        replica
            .knows(id, deadline)
            .await
            .ok()
            .filter(|known| *known)
            .ok_or(())
    })
    .await;
    if known.is_err() {
        return Err(format!("no order with id `{id}`"));
    }
    tokio::time::sleep(packed_after).await;
    advance(replica, id, "packed").await?;
    tokio::time::sleep(shipped_after.saturating_sub(packed_after)).await;
    advance(replica, id, "shipped").await
}

async fn advance(replica: &Replica, id: &str, status: &str) -> Result<(), String> {
    patiently(|| async {
        let had = replica
            .store()
            .history(id)
            .is_some_and(|(_, changes)| changes.iter().any(|change| change.status == status));
        if had {
            return Ok(());
        }
        // A change stored but not applied here by its deadline is found by `had` next time.
        let deadline = Instant::now() + STEP_PATIENCE;
        replica
            .append(id, status.to_owned(), deadline)
            .await
            .map(|_| ())
    })
    .await
    .map_err(|error| format!("order `{id}` could not be {status}: {error:?}"))
}

/// Tries `step` until it succeeds or [`STEP_PATIENCE`] has passed: its last error then.
async fn patiently<T, E, F, Fut>(mut step: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + STEP_PATIENCE;
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(STEP_RETRY).await,
        }
    }
}

/// Renders order `id`'s invoice on the blocking pool, giving up after `timeout`.
async fn render(
    replica: &Replica,
    id: &str,
    rounds: u32,
    timeout: Duration,
) -> Result<Invoice, String> {
    let deadline = Instant::now() + timeout;
    let known = replica
        .knows(id, deadline)
        .await
        .map_err(|error| format!("order `{id}` could not be read: {error}"))?;
    let order = replica
        .store()
        .get(id)
        .filter(|_| known)
        .ok_or_else(|| format!("no order with id `{id}`"))?;
    tokio::task::spawn_blocking(move || {
        Invoice::render(&order, rounds, || Instant::now() >= deadline)
    })
    .await
    .map_err(|error| format!("the invoice renderer failed: {error}"))?
    .ok_or_else(|| format!("the invoice of order `{id}` was not ready in time"))
}
