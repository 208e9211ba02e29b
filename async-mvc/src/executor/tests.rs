//! The executor's admission, queue, cancellation, panics and shutdown.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Barrier, Condvar, Mutex,
    },
    time::Duration,
};

use tokio::{runtime::Handle, sync::mpsc};

use super::*;

/// Hang guard only: no test asserts on time.
const GUARD: Duration = Duration::from_secs(30);

async fn guarded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(GUARD, future)
        .await
        .expect("hang guard: the test is stuck")
}

/// A latch blocking tasks until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let (open, _) = self
            .opened
            .wait_timeout_while(open, GUARD, |open| !*open)
            .unwrap();
        assert!(*open, "hang guard: gate never opened");
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

fn executor(core: usize, max: usize, queue: usize) -> AsyncTaskExecutor {
    AsyncTaskExecutor::builder()
        .core_pool_size(core)
        .max_pool_size(max)
        .queue_capacity(queue)
        .build()
        .unwrap()
}

/// Submits a task that reports `id` when it starts, then waits for the gate.
fn blocked(
    executor: &AsyncTaskExecutor,
    gate: &Arc<Gate>,
    started: &mpsc::UnboundedSender<usize>,
    id: usize,
) -> Result<TaskHandle<usize>, Rejected> {
    let gate = Arc::clone(gate);
    let started = started.clone();
    executor.try_submit(move || {
        started.send(id).unwrap();
        gate.wait();
        id
    })
}

#[test]
fn handle_is_send_sync_and_unpin() {
    fn assert_traits<T: Send + Sync + Unpin>() {}
    assert_traits::<TaskHandle<String>>();
    assert_traits::<AsyncTaskExecutor>();
    assert_traits::<Rejected>();
    assert_traits::<TaskPanicked>();
}

#[tokio::test]
async fn values_come_back() {
    let executor = executor(2, 4, 16);
    let handles: Vec<_> = (0..10u64)
        .map(|i| executor.try_submit(move || i * i).unwrap())
        .collect();
    for (i, handle) in (0..10u64).zip(handles) {
        assert_eq!(guarded(handle).await.unwrap(), i * i);
    }
    let text = executor.try_submit(|| String::from("hello")).unwrap();
    assert_eq!(guarded(text).await.unwrap(), "hello");

    let metrics = executor.metrics();
    assert_eq!(metrics.completed, 11);
    assert_eq!((metrics.active, metrics.queued), (0, 0));
}

#[tokio::test]
async fn queued_tasks_run_in_fifo_order() {
    let executor = executor(1, 1, 3);
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let order = Arc::new(Mutex::new(Vec::new()));

    let first = blocked(&executor, &gate, &started, 0).unwrap();
    assert_eq!(guarded(started_rx.recv()).await, Some(0));
    let queued: Vec<_> = (1..=3)
        .map(|i| {
            let order = Arc::clone(&order);
            executor
                .try_submit(move || order.lock().unwrap().push(i))
                .unwrap()
        })
        .collect();
    assert_eq!(executor.metrics().queued, 3);
    assert!(executor.try_submit(|| ()).is_err(), "queue is full");

    gate.open();
    assert_eq!(guarded(first).await.unwrap(), 0);
    for handle in queued {
        guarded(handle).await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
}

#[tokio::test]
async fn saturated_executor_rejects_at_once_and_recovers() {
    let executor = executor(2, 2, 2);
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));

    let submit = |gate: &Arc<Gate>, id: usize| {
        let (gate, started) = (Arc::clone(gate), started.clone());
        let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
        executor.try_submit(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            started.send(id).unwrap();
            gate.wait();
            running.fetch_sub(1, Ordering::SeqCst);
            id
        })
    };

    let results: Vec<_> = (0..20).map(|id| submit(&gate, id)).collect();
    let (admitted, rejected): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(admitted.len(), 4);
    assert_eq!(rejected.len(), 16);
    for rejection in rejected {
        let rejection = rejection.unwrap_err();
        assert_eq!(rejection.retry_after, Duration::from_secs(1));
        assert_eq!((rejection.active, rejection.queued), (2, 2));
        assert!(rejection.to_string().contains("retry after 1000 ms"));
    }
    let metrics = executor.metrics();
    assert_eq!((metrics.active, metrics.queued), (2, 2));
    assert_eq!(metrics.rejected, 16);

    // Two run, two wait.
    guarded(started_rx.recv()).await.unwrap();
    guarded(started_rx.recv()).await.unwrap();
    gate.open();
    let mut values = Vec::new();
    for handle in admitted {
        values.push(guarded(handle.unwrap()).await.unwrap());
    }
    assert_eq!(values, vec![0, 1, 2, 3]);
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "never more than max_pool_size"
    );

    // Slots are released before handles resolve: the full capacity is back.
    let metrics = executor.metrics();
    assert_eq!((metrics.active, metrics.queued), (0, 0));
    assert_eq!(metrics.completed, 4);
    assert_eq!(metrics.largest_active, 2);
    assert_eq!(metrics.largest_queued, 2);
    let second_gate = Arc::new(Gate::default());
    let again: Vec<_> = (0..4)
        .map(|i| submit(&second_gate, 100 + i).unwrap())
        .collect();
    let metrics = executor.metrics();
    assert_eq!((metrics.active, metrics.queued), (2, 2));
    assert!(
        submit(&second_gate, 200).is_err(),
        "exactly max + queue admitted again"
    );
    second_gate.open();
    for handle in again {
        guarded(handle).await.unwrap();
    }
    assert_eq!(executor.metrics().rejected, 17);
}

#[tokio::test]
async fn grows_from_core_to_max_only_when_queue_is_full() {
    let executor = executor(1, 2, 1);
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();

    let first = blocked(&executor, &gate, &started, 1).unwrap();
    assert_eq!(
        (executor.metrics().active, executor.metrics().queued),
        (1, 0)
    );
    let second = blocked(&executor, &gate, &started, 2).unwrap();
    assert_eq!(
        (executor.metrics().active, executor.metrics().queued),
        (1, 1)
    );
    let third = blocked(&executor, &gate, &started, 3).unwrap();
    assert_eq!(
        (executor.metrics().active, executor.metrics().queued),
        (2, 1)
    );
    assert!(blocked(&executor, &gate, &started, 4).is_err());

    // The 1st and the 3rd run; the 2nd still waits.
    let mut running = vec![
        guarded(started_rx.recv()).await.unwrap(),
        guarded(started_rx.recv()).await.unwrap(),
    ];
    running.sort_unstable();
    assert_eq!(running, vec![1, 3]);
    assert_eq!(executor.metrics().queued, 1);

    gate.open();
    assert_eq!(guarded(first).await.unwrap(), 1);
    assert_eq!(guarded(second).await.unwrap(), 2);
    assert_eq!(guarded(third).await.unwrap(), 3);
    let metrics = executor.metrics();
    assert_eq!(
        (metrics.rejected, metrics.completed, metrics.active),
        (1, 3, 0)
    );
}

#[tokio::test]
async fn core_zero_still_runs_the_first_task() {
    let executor = executor(0, 2, 2);
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();

    let handles: Vec<_> = (0..4)
        .map(|i| blocked(&executor, &gate, &started, i).unwrap())
        .collect();
    assert!(blocked(&executor, &gate, &started, 4).is_err());
    let metrics = executor.metrics();
    assert_eq!((metrics.active, metrics.queued), (2, 2));
    let mut running = vec![
        guarded(started_rx.recv()).await.unwrap(),
        guarded(started_rx.recv()).await.unwrap(),
    ];
    running.sort_unstable();
    assert_eq!(running, vec![0, 3]);
    gate.open();
    for handle in handles {
        guarded(handle).await.unwrap();
    }
}

#[tokio::test]
async fn zero_queue_capacity_runs_or_rejects() {
    let executor = executor(1, 2, 0);
    let gate = Arc::new(Gate::default());
    let (started, _started_rx) = mpsc::unbounded_channel();
    let a = blocked(&executor, &gate, &started, 0).unwrap();
    let b = blocked(&executor, &gate, &started, 1).unwrap();
    assert!(blocked(&executor, &gate, &started, 2).is_err());
    let metrics = executor.metrics();
    assert_eq!(
        (metrics.active, metrics.queued, metrics.rejected),
        (2, 0, 1)
    );
    gate.open();
    assert_eq!(guarded(a).await.unwrap(), 0);
    assert_eq!(guarded(b).await.unwrap(), 1);
}

#[tokio::test]
async fn zero_keep_alive_still_runs_tasks() {
    let executor = AsyncTaskExecutor::builder()
        .core_pool_size(1)
        .max_pool_size(1)
        .queue_capacity(0)
        .keep_alive(Duration::ZERO)
        .build()
        .unwrap();
    for i in 0..5 {
        // Each time the previous thread may have exited; a new one starts.
        assert_eq!(
            guarded(executor.try_submit(move || i).unwrap())
                .await
                .unwrap(),
            i
        );
    }
}

#[tokio::test]
async fn panicking_task_reports_message_and_keeps_full_capacity() {
    const MAX: usize = 3;
    let executor = executor(MAX, MAX, 0);

    // Every slot panics once.
    for i in 0..MAX {
        let handle = executor
            .try_submit(move || -> u32 { panic!("boom {i}") })
            .unwrap();
        let error = guarded(handle).await.unwrap_err();
        assert!(error.message.contains(&format!("boom {i}")), "{error}");
        assert!(error.to_string().starts_with("task panicked: boom"));
    }
    let metrics = executor.metrics();
    assert_eq!((metrics.panicked, metrics.active), (MAX as u64, 0));

    // All MAX slots still run at once: the barrier only opens with MAX parties.
    let barrier = Arc::new(Barrier::new(MAX));
    let handles: Vec<_> = (0..MAX)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            executor
                .try_submit(move || barrier.wait().is_leader())
                .unwrap()
        })
        .collect();
    let mut leaders = 0;
    for handle in handles {
        leaders += usize::from(guarded(handle).await.unwrap());
    }
    assert_eq!(leaders, 1);
    assert_eq!(executor.metrics().completed, MAX as u64);
}

#[tokio::test]
async fn panic_payloads_become_text() {
    let executor = executor(1, 1, 4);
    let literal = executor.try_submit(|| panic!("static text")).unwrap();
    let formatted = executor
        .try_submit(|| -> () { panic!("{} text", "formatted") })
        .unwrap();
    let other = executor
        .try_submit(|| std::panic::panic_any(42_u8))
        .unwrap();
    assert_eq!(guarded(literal).await.unwrap_err().message, "static text");
    assert_eq!(
        guarded(formatted).await.unwrap_err().message,
        "formatted text"
    );
    assert_eq!(
        guarded(other).await.unwrap_err().message,
        "non-string panic payload"
    );
    assert_eq!(executor.metrics().panicked, 3);
}

#[tokio::test]
async fn dropped_queued_handle_leaves_queue_and_never_runs() {
    let executor = executor(1, 1, 1);
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let first = blocked(&executor, &gate, &started, 0).unwrap();
    guarded(started_rx.recv()).await.unwrap();

    let ran = Arc::new(AtomicUsize::new(0));
    let captured = Arc::clone(&ran);
    let queued = executor
        .try_submit(move || captured.fetch_add(1, Ordering::SeqCst))
        .unwrap();
    assert_eq!(executor.metrics().queued, 1);
    assert!(executor.try_submit(|| 0).is_err(), "queue is full");

    drop(queued);
    let metrics = executor.metrics();
    assert_eq!((metrics.queued, metrics.cancelled), (0, 1));
    assert_eq!(
        Arc::strong_count(&ran),
        1,
        "the closure was dropped at once"
    );

    // Its queue place is free again.
    let next = executor.try_submit(|| 7).unwrap();
    gate.open();
    guarded(first).await.unwrap();
    assert_eq!(guarded(next).await.unwrap(), 7);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the cancelled task never ran"
    );
    assert_eq!(executor.metrics().completed, 2);
}

#[tokio::test]
async fn dropped_running_handle_keeps_slot_until_task_returns() {
    let executor = executor(1, 1, 1);
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicUsize::new(0));

    let running = {
        let (gate, started, finished) = (Arc::clone(&gate), started.clone(), Arc::clone(&finished));
        executor
            .try_submit(move || {
                started.send(0).unwrap();
                gate.wait();
                finished.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
    };
    guarded(started_rx.recv()).await.unwrap();
    drop(running);

    // Still holding its slot: the next task has to queue.
    let metrics = executor.metrics();
    assert_eq!((metrics.active, metrics.cancelled), (1, 0));
    let finished_seen = Arc::clone(&finished);
    let next = executor
        .try_submit(move || finished_seen.load(Ordering::SeqCst))
        .unwrap();
    assert_eq!(executor.metrics().queued, 1);

    gate.open();
    // The queued task ran only after the dropped one finished and handed over its slot.
    assert_eq!(guarded(next).await.unwrap(), 1);
    let metrics = executor.metrics();
    assert_eq!(
        (metrics.active, metrics.queued, metrics.completed),
        (0, 0, 2)
    );
}

#[tokio::test]
async fn threads_are_named_with_the_prefix() {
    let executor = AsyncTaskExecutor::builder()
        .thread_name_prefix("orders-worker-")
        .build()
        .unwrap();
    let name = executor
        .try_submit(|| std::thread::current().name().map(str::to_owned))
        .unwrap();
    let name = guarded(name).await.unwrap().unwrap();
    assert!(name.starts_with("orders-worker-"), "{name}");
    assert!(
        name["orders-worker-".len()..].parse::<usize>().is_ok(),
        "{name}"
    );
}

#[tokio::test]
async fn tasks_can_block_on_tokio_timers() {
    let executor = executor(1, 1, 0);
    let handle = executor
        .try_submit(|| {
            Handle::current().block_on(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                "woke up"
            })
        })
        .unwrap();
    assert_eq!(guarded(handle).await.unwrap(), "woke up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submitters_keep_counts_consistent() {
    let executor = executor(2, 4, 4);
    let peak = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..8)
        .map(|submitter| {
            let (executor, peak, running) =
                (executor.clone(), Arc::clone(&peak), Arc::clone(&running));
            tokio::spawn(async move {
                let (mut admitted, mut rejected) = (0_u64, 0_u64);
                for i in 0..200_usize {
                    let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
                    let task = move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        running.fetch_sub(1, Ordering::SeqCst);
                        assert!(i % 50 != 3, "odd task {submitter}/{i}");
                        i
                    };
                    match executor.try_submit(task) {
                        Err(_) => rejected += 1,
                        Ok(handle) => {
                            admitted += 1;
                            match i % 3 {
                                // Dropped at once: cancelled if still queued.
                                0 => drop(handle),
                                _ => match handle.await {
                                    Ok(value) => assert_eq!(value, i),
                                    Err(panicked) => {
                                        assert!(panicked.message.contains("odd task"));
                                    }
                                },
                            }
                        }
                    }
                    if i % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (admitted, rejected)
            })
        })
        .collect();
    let (mut admitted, mut rejected) = (0, 0);
    for submitter in submitters {
        let (a, r) = guarded(submitter).await.unwrap();
        admitted += a;
        rejected += r;
    }
    // Tasks whose handles were dropped while running may still be finishing.
    let metrics = guarded(async {
        loop {
            let metrics = executor.metrics();
            if metrics.active == 0 && metrics.queued == 0 {
                break metrics;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(metrics.rejected, rejected);
    assert_eq!(
        metrics.completed + metrics.panicked + metrics.cancelled,
        admitted
    );
    assert!(metrics.largest_active <= 4 && metrics.largest_queued <= 4);
    assert!(peak.load(Ordering::SeqCst) <= 4);
}

#[test]
fn invalid_configurations_are_errors() {
    let error = |builder: AsyncTaskExecutorBuilder| builder.build().unwrap_err();
    assert!(matches!(
        error(
            AsyncTaskExecutor::builder()
                .core_pool_size(0)
                .max_pool_size(0)
        ),
        ExecutorConfigError::ZeroMaxPoolSize
    ));
    assert!(matches!(
        error(
            AsyncTaskExecutor::builder()
                .core_pool_size(5)
                .max_pool_size(4)
        ),
        ExecutorConfigError::CoreExceedsMax { core: 5, max: 4 }
    ));
    // The default core (8) exceeds a smaller max.
    assert!(matches!(
        error(AsyncTaskExecutor::builder().max_pool_size(2)),
        ExecutorConfigError::CoreExceedsMax { core: 8, max: 2 }
    ));
    assert!(matches!(
        error(AsyncTaskExecutor::builder().max_pool_size(usize::MAX)),
        ExecutorConfigError::MaxPoolSizeTooLarge { .. }
    ));
    assert!(matches!(
        error(AsyncTaskExecutor::builder().thread_name_prefix("")),
        ExecutorConfigError::EmptyThreadNamePrefix
    ));
    assert!(matches!(
        error(AsyncTaskExecutor::builder().thread_name_prefix("a\0b")),
        ExecutorConfigError::ThreadNamePrefixContainsNul
    ));
    assert_eq!(
        ExecutorConfigError::CoreExceedsMax { core: 5, max: 4 }.to_string(),
        "core_pool_size (5) exceeds max_pool_size (4)"
    );
}

#[test]
fn builder_settings_are_kept() {
    let executor = AsyncTaskExecutor::builder()
        .core_pool_size(0)
        .max_pool_size(3)
        .queue_capacity(0)
        .keep_alive(Duration::from_secs(5))
        .thread_name_prefix("x-")
        .retry_after(Duration::from_secs(7))
        .build()
        .unwrap();
    assert_eq!(executor.core_pool_size(), 0);
    assert_eq!(executor.max_pool_size(), 3);
    assert_eq!(executor.queue_capacity(), 0);
    assert_eq!(executor.keep_alive(), Duration::from_secs(5));
    assert_eq!(executor.thread_name_prefix(), "x-");
    assert_eq!(executor.retry_after(), Duration::from_secs(7));
}

#[test]
fn default_is_the_documented_bounded_pool() {
    let executor = AsyncTaskExecutor::default();
    assert_eq!(executor.core_pool_size(), 8);
    assert_eq!(executor.max_pool_size(), 32);
    assert_eq!(executor.queue_capacity(), 256);
    assert_eq!(executor.keep_alive(), Duration::from_secs(60));
    assert_eq!(executor.thread_name_prefix(), "async-mvc-task-");
    assert_eq!(executor.retry_after(), Duration::from_secs(1));
    assert_eq!(executor.metrics(), ExecutorMetrics::default());
    let debug = format!("{executor:?}");
    assert!(debug.contains("max_pool_size: 32"), "{debug}");
}

#[tokio::test]
async fn dropping_last_clone_inside_async_context_does_not_panic() {
    let executor = executor(1, 2, 2);
    let clone = executor.clone();
    let handle = clone.try_submit(|| 1).unwrap();
    assert_eq!(guarded(handle).await.unwrap(), 1);
    drop(clone);
    // The last clone: its runtime shuts down in the background, no panic.
    drop(executor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_executor_lets_admitted_tasks_finish() {
    let executor = executor(1, 1, 1);
    let weak = Arc::downgrade(executor.pool());
    let gate = Arc::new(Gate::default());
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let running = blocked(&executor, &gate, &started, 0).unwrap();
    let queued = blocked(&executor, &gate, &started, 1).unwrap();
    guarded(started_rx.recv()).await.unwrap();

    drop(executor);
    gate.open();
    assert_eq!(guarded(running).await.unwrap(), 0);
    assert_eq!(guarded(queued).await.unwrap(), 1);

    // The last worker drops the executor's state (on its own thread) once it is done.
    guarded(async {
        while weak.strong_count() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
