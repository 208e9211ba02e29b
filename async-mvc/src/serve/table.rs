//! [`Table`]: the open connections, and the connection limit — at the limit the cheapest
//! connection is shed (one still reading its head, then an idle keep-alive, oldest first), so
//! that `accept` never fails for want of descriptors and a new client is served — and the
//! sweeper that applies every connection's timeouts and tells them when the server stops.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::Duration,
};

use tokio::sync::Notify;

use super::{
    conn::{Clock, CloseReason, Conn, Phase},
    settings::Settings,
    stats::ConnectionStats,
};

/// The least number of candidates collected when the table looks for connections to shed.
const MIN_CANDIDATES: usize = 64;

/// What [`Table::make_room`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    /// Below the limit.
    Free,
    /// A connection in this phase was shed to make room.
    Shed(Phase),
    /// At the limit, and every connection has a request in progress.
    Full,
}

pub(super) struct Table {
    state: Mutex<State>,
    /// A connection closed.
    freed: Notify,
    limit: usize,
    clock: Arc<Clock>,
    stats: ConnectionStats,
    /// The server stops: connections registered from now on are told at once.
    stopping: AtomicBool,
}

struct State {
    open: HashMap<u64, Arc<Conn>>,
    next_id: u64,
    /// Connections chosen to be shed whose tasks have not ended yet.
    shedding: usize,
    /// The best candidates to shed, best last; checked again when taken.
    candidates: Vec<Weak<Conn>>,
}

impl Table {
    pub(super) fn new(limit: usize, clock: Arc<Clock>, stats: ConnectionStats) -> Self {
        stats
            .counters()
            .max_connections
            .store(limit.max(1) as u64, Relaxed);
        Table {
            state: Mutex::new(State {
                open: HashMap::new(),
                next_id: 0,
                shedding: 0,
                candidates: Vec::new(),
            }),
            freed: Notify::new(),
            limit: limit.max(1),
            clock,
            stats,
            stopping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Adds an accepted connection; it leaves the table when the entry is dropped.
    pub(super) fn register(self: &Arc<Self>) -> Entry {
        let mut state = self.lock();
        let stopping = self.stopping.load(Relaxed);
        let conn = Arc::new(Conn::new(Arc::clone(&self.clock), stopping));
        let id = state.next_id;
        state.next_id += 1;
        state.open.insert(id, Arc::clone(&conn));
        let counters = self.stats.counters();
        counters.open.store(state.open.len() as u64, Relaxed);
        counters.accepted.fetch_add(1, Relaxed);
        crate::telemetry::connection_accepted();
        crate::telemetry::open_connections(state.open.len() as u64);
        Entry {
            table: Arc::clone(self),
            id,
            conn,
        }
    }

    /// Over the limit (just accepted one too many): room made by shedding one if need be.
    pub(super) fn make_room(&self) -> Room {
        let mut state = self.lock();
        if state.open.len().saturating_sub(state.shedding) <= self.limit {
            return Room::Free;
        }
        for pass in 0..2 {
            while let Some(candidate) = state.candidates.pop() {
                let Some(conn) = candidate.upgrade() else {
                    continue;
                };
                if let Some((phase, _)) = conn.sheddable() {
                    if conn.request_close(CloseReason::Shed) {
                        state.shedding += 1;
                        return Room::Shed(phase);
                    }
                }
            }
            if pass == 0 {
                state.collect_candidates();
            }
        }
        Room::Full
    }

    /// Resolves when a connection closes.
    pub(super) async fn freed(&self) {
        self.freed.notified().await;
    }

    /// How many connections are open.
    pub(super) fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Resolves once no connection is open.
    pub(super) async fn drained(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a close in between is not missed.
            freed.as_mut().enable();
            if self.lock().open.is_empty() {
                return;
            }
            freed.await;
        }
    }

    /// Tells every connection, and every one registered from now on, that the server stops.
    pub(super) fn stop_all(&self) {
        let state = self.lock();
        self.stopping.store(true, Relaxed);
        for conn in state.open.values() {
            conn.stop();
        }
    }

    /// Advances the clock and asks every connection past a timeout to close.
    fn sweep(&self, settings: &Settings) {
        let now = self.clock.tick();
        let state = self.lock();
        for conn in state.open.values() {
            if let Some(reason) = conn.verdict(settings, now) {
                conn.request_close(reason);
            }
        }
    }

    /// Starts the sweeper: every `every`, [`sweep`](Self::sweep), until the table is dropped.
    ///
    /// It runs on a thread of its own, not as a tokio timer: a runtime with a timer reads the
    /// clock each time it parks, which a busy keep-alive server would pay on every request.
    /// Should the thread not start, a tokio task does the same.
    pub(super) fn start_sweeper(table: &Arc<Table>, settings: Settings, every: Duration) {
        let weak = Arc::downgrade(table);
        let on_thread = std::thread::Builder::new()
            .name("async-mvc-sweeper".to_owned())
            .spawn({
                let weak = weak.clone();
                move || loop {
                    std::thread::sleep(every);
                    let Some(table) = weak.upgrade() else {
                        return;
                    };
                    table.sweep(&settings);
                }
            });
        if let Err(error) = on_thread {
            tracing::warn!(%error, "no thread for the connection sweeper; using a task");
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    let Some(table) = weak.upgrade() else {
                        return;
                    };
                    table.sweep(&settings);
                }
            });
        }
    }
}

impl State {
    /// The oldest connections reading their head, then the oldest idle ones: an eighth of the
    /// table (at least [`MIN_CANDIDATES`]), so that a flood sheds many before the next scan.
    fn collect_candidates(&mut self) {
        // Ranked by phase, then age; the clock is coarse, so ties go to the earlier accept.
        let mut found: Vec<((u8, u64, u64), Weak<Conn>)> = self
            .open
            .iter()
            .filter_map(|(id, conn)| {
                conn.sheddable()
                    .map(|(phase, since)| ((phase as u8, since, *id), Arc::downgrade(conn)))
            })
            .collect();
        let keep = (self.open.len() / 8).max(MIN_CANDIDATES).min(found.len());
        if keep < found.len() {
            found.select_nth_unstable_by_key(keep, |(rank, _)| *rank);
            found.truncate(keep);
        }
        found.sort_unstable_by_key(|(rank, _)| *rank);
        // Best last, for `pop`.
        self.candidates = found.into_iter().rev().map(|(_, conn)| conn).collect();
    }
}

/// A connection's place in the [`Table`]: dropping it removes the connection.
pub(super) struct Entry {
    table: Arc<Table>,
    id: u64,
    conn: Arc<Conn>,
}

impl Entry {
    pub(super) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    fn remove(&self) {
        let mut state = self.table.lock();
        state.open.remove(&self.id);
        if self.conn.is_shed() {
            state.shedding = state.shedding.saturating_sub(1);
        }
        let open = state.open.len() as u64;
        self.table.stats.counters().open.store(open, Relaxed);
        crate::telemetry::open_connections(open);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.remove();
        self.table.freed.notify_waiters();
    }
}
