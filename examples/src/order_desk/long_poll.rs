//! What `GET /api/orders/{id}/next` returns: on one process a poll registered with the
//! [`OrderStore`](super::OrderStore); on a cluster a waiter of the
//! [`Replica`](super::Replica)'s [`DeferredResultRegistry`](async_mvc::cluster::DeferredResultRegistry),
//! completed from whichever instance made the change. Both answer the same bytes.

use async_mvc::DeferredResult;
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

use super::{Order, OrderPoll};

/// A clustered long poll's outcome, as it crosses the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Polled {
    /// The order at the version the poll waited for: `200` with its JSON.
    Changed(Order),
    /// The poll's timeout fired first: `304 Not Modified`.
    NotModified,
}

impl IntoResponse for Polled {
    fn into_response(self) -> Response {
        match self {
            Polled::Changed(order) => Json(order).into_response(),
            Polled::NotModified => StatusCode::NOT_MODIFIED.into_response(),
        }
    }
}

/// The long poll a handler returns, on one process or on a cluster.
#[derive(Debug)]
pub enum OrderLongPoll {
    /// Registered with this process's store.
    Local(OrderPoll),
    /// Registered with the cluster's registry.
    Cluster(DeferredResult<Polled>),
}

impl IntoResponse for OrderLongPoll {
    fn into_response(self) -> Response {
        match self {
            OrderLongPoll::Local(poll) => poll.into_response(),
            OrderLongPoll::Cluster(poll) => poll.into_response(),
        }
    }
}
