//! Without the `metrics` feature: the same calls, doing nothing (and compiled away).
#![allow(dead_code)]

use axum::extract::MatchedPath;
use http::{Method, StatusCode};

use super::Kind;

/// Nothing to hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ManagerInstruments;

/// How an async request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Completed,
    TimedOut,
    Disconnected,
    Rejected,
    Error,
    SlowConsumer,
}

impl ManagerInstruments {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        ManagerInstruments
    }

    #[inline(always)]
    pub(crate) fn outcome(&self, _outcome: Outcome) {}

    #[inline(always)]
    pub(crate) fn timeout_fired(&self, _due: tokio::time::Instant) {}

    #[inline(always)]
    pub(crate) fn observe(&self, _method: &Method, _route: Option<&MatchedPath>) -> Observation {
        Observation
    }
}

/// Nothing observed.
#[derive(Debug)]
pub(crate) struct Observation;

impl Observation {
    #[inline(always)]
    pub(crate) fn set_kind(&mut self, _kind: Kind) {}
    #[inline(always)]
    pub(crate) fn set_status(&mut self, _status: StatusCode) {}
    #[inline(always)]
    pub(crate) fn finish(&mut self, _error: Option<&'static str>) {}
}

/// Nothing to hold.
#[derive(Debug)]
pub(crate) struct ExecutorInstruments;

impl ExecutorInstruments {
    #[inline(always)]
    pub(crate) fn new(_name: &str) -> Self {
        ExecutorInstruments
    }
    #[inline(always)]
    pub(crate) fn state(&self, _active: usize, _queued: usize) {}
    #[inline(always)]
    pub(crate) fn rejected(&self) {}
}

#[inline(always)]
pub(crate) fn connection_shed(_reason: &'static str) {}
#[inline(always)]
pub(crate) fn connection_timeout(_kind: &'static str) {}
#[inline(always)]
pub(crate) fn connection_accepted() {}
#[inline(always)]
pub(crate) fn connection_http2() {}
#[inline(always)]
pub(crate) fn open_connections(_open: u64) {}
#[inline(always)]
pub(crate) fn sse_event(_bytes: usize) {}
#[inline(always)]
pub(crate) fn sse_replay(_result: &'static str) {}
#[inline(always)]
pub(crate) fn sse_slow_consumer() {}
#[inline(always)]
pub(crate) fn reply_finished(_queue: &str, _outcome: &'static str, _elapsed: std::time::Duration) {}
#[inline(always)]
pub(crate) fn no_responders(_queue: &str) {}
#[inline(always)]
pub(crate) fn ignored_reply(_queue: &str) {}
#[inline(always)]
pub(crate) fn jobs_claimed(_queue: &str, _n: u64) {}
#[inline(always)]
pub(crate) fn job_redelivered(_queue: &str) {}

/// Nothing counted.
pub(crate) struct SseStream;

impl SseStream {
    #[inline(always)]
    pub(crate) fn open() -> Self {
        SseStream
    }
}
