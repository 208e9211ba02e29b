//! What an operator scrapes and probes on every demo process: `GET /metrics` (Prometheus text,
//! through `metrics-exporter-prometheus`), `GET /healthz` (live: `200`) and `GET /readyz`
//! (`200` when the process can serve — on a cluster, when its broker is connected — else
//! `503` with the reason in JSON).

use std::sync::{Arc, OnceLock};

use async_mvc::telemetry::{
    describe, DURATION_BUCKETS, LAG_BUCKETS, PUBSUB_LAG, REPLY_DURATION, REQUEST_DURATION,
    TIMEOUT_LATENESS,
};
use axum::{http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

/// Whether the process can serve now: `Err(reason)` if not. A cheap `Clone`.
#[derive(Clone)]
pub struct Readiness(Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl Readiness {
    /// Ready when `check` says so.
    pub fn new(check: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Readiness(Arc::new(check))
    }

    /// Always ready: one process, nothing outside it to wait for.
    pub fn always() -> Self {
        Readiness::new(|| Ok(()))
    }

    /// Ready while `broker` is connected (its commands and its subscription).
    pub fn broker(broker: async_mvc_redis::RedisBroker) -> Self {
        Readiness::new(move || {
            let state = broker.metrics();
            match (state.connected, state.subscribed) {
                (true, true) => Ok(()),
                (false, _) => Err("the broker (redis) does not answer commands".to_owned()),
                (true, false) => Err("the broker's (redis) subscription is down".to_owned()),
            }
        })
    }

    /// `Ok` if ready now, else why not.
    pub fn check(&self) -> Result<(), String> {
        (self.0)()
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readiness")
    }
}

/// The process's Prometheus recorder, installed on the first call (before anything that takes
/// metric handles is built: the async manager, the executor, the server).
///
/// `None` if another recorder was installed first (the process's own choice).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .with_recommended_naming(true)
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION.to_owned()),
                    DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(REPLY_DURATION.to_owned()),
                        DURATION_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(TIMEOUT_LATENESS.to_owned()),
                        LAG_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(PUBSUB_LAG.to_owned()), LAG_BUCKETS)
                });
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => handle,
                Ok(Err(error)) | Err(error) => {
                    tracing::warn!(%error, "no Prometheus recorder: /metrics is empty");
                    return None;
                }
            };
            describe();
            Some(handle)
        })
        .as_ref()
}

/// `/metrics`, `/healthz` and `/readyz`, ready to merge into a router.
pub fn routes(ready: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let answer = match ready.check() {
                    Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
                    Err(reason) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({ "status": "unavailable", "reason": reason })),
                    ),
                };
                std::future::ready(answer)
            }),
        )
}

async fn metrics() -> impl IntoResponse {
    let body = prometheus().map_or_else(String::new, |handle| {
        handle.run_upkeep();
        handle.render()
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
